-- A database that uses every part of the extension, for the backup/restore test.
\set ON_ERROR_STOP 1
\set QUIET 1
CREATE EXTENSION IF NOT EXISTS pg_statemachine;
\set investigation `cat ../../examples/investigation.json`
\set sla `cat ../../examples/sla.json`
CREATE FUNCTION public.always_yes(case_id uuid, context jsonb) RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS 'SELECT true';
SELECT statemachine.register_guard('always_yes', 'public.always_yes(uuid,jsonb)', 'test guard');
SELECT statemachine.define_machine(:'investigation');
SELECT statemachine.define_machine(:'sla');
SELECT statemachine.define_machine('{"machine": "order", "states": [{"code": "PLACED", "initial": true}, {"code": "PAID", "terminal": true}],
  "transitions": [{"code": "PAY", "from": "PLACED", "to": "PAID", "emit": "OrderPaid", "audit_guards": true,
                   "guards": [{"guard": "sql", "name": "always_yes"}], "reasons": [{"code": "CARD", "label": "Card"}]}]}');
SELECT count(*) FROM (SELECT statemachine.create_case('investigation', 'B-' || n, 'a0000000-0000-0000-0000-000000000001', 'CASE_OWNER',
       gen_random_uuid(), ('b0000000-0000-0000-0000-0000000000' || lpad(n::text, 2, '0'))::uuid) FROM generate_series(1, 20) n) c;
SELECT count(*) FROM (SELECT statemachine.transition_case(('b0000000-0000-0000-0000-0000000000' || lpad(n::text, 2, '0'))::uuid,
       'SUBMIT_CASE', 'a0000000-0000-0000-0000-000000000001', 'CASE_OWNER', gen_random_uuid()) FROM generate_series(1, 15) n) t;
SELECT count(*) FROM (SELECT statemachine.transition_case(('b0000000-0000-0000-0000-0000000000' || lpad(n::text, 2, '0'))::uuid,
       'ASSIGN_REVIEW', 'a0000000-0000-0000-0000-000000000002', 'SUPERVISOR', gen_random_uuid()) FROM generate_series(1, 10) n) t;
SELECT statemachine.add_evidence('b0000000-0000-0000-0000-000000000001', 'REVIEW_REPORT', 's3://r', 'sha256:r',
       'a0000000-0000-0000-0000-000000000003') AS ev \gset
SELECT statemachine.add_evidence('b0000000-0000-0000-0000-000000000001', 'PHOTO', 's3://p', 'sha256:p',
       'a0000000-0000-0000-0000-000000000003') AS photo \gset
SELECT statemachine.deactivate_evidence(:'photo', 'a0000000-0000-0000-0000-000000000003', 'blurred');
SELECT statemachine.assign_case('b0000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000003', 'REVIEWER',
       'a0000000-0000-0000-0000-000000000002', gen_random_uuid());
SELECT statemachine.assign_case('b0000000-0000-0000-0000-000000000002', 'a0000000-0000-0000-0000-000000000004', 'REVIEWER',
       'a0000000-0000-0000-0000-000000000002', gen_random_uuid());
SELECT statemachine.release_assignment('b0000000-0000-0000-0000-000000000002', 'a0000000-0000-0000-0000-000000000004', 'REVIEWER',
       'a0000000-0000-0000-0000-000000000002', gen_random_uuid());
SELECT statemachine.transition_case('b0000000-0000-0000-0000-000000000001', 'APPROVE_CASE', 'a0000000-0000-0000-0000-000000000003',
       'REVIEWER', gen_random_uuid(), reason_text => 'complete', evidence_ids => ARRAY[:'ev']::uuid[]);
SELECT (statemachine.transition_case('b0000000-0000-0000-0000-000000000001', 'CLOSE_CASE', 'a0000000-0000-0000-0000-000000000002',
       'SUPERVISOR', gen_random_uuid())).id AS wrong \gset
SELECT statemachine.correct_transition(:'wrong', 'APPROVED', 'closed too early', 'a0000000-0000-0000-0000-000000000009', 'ADMIN', gen_random_uuid());
SELECT statemachine.attach_dimension('b0000000-0000-0000-0000-000000000003', 'sla', 'a0000000-0000-0000-0000-000000000002', 'SUPERVISOR', gen_random_uuid());
SELECT statemachine.transition_case('b0000000-0000-0000-0000-000000000003', 'PAUSE_SLA', 'a0000000-0000-0000-0000-000000000002',
       'SUPERVISOR', gen_random_uuid(), reason_text => 'waiting');
SELECT statemachine.create_case('order', 'O-1', 'a0000000-0000-0000-0000-000000000001', 'CLERK', gen_random_uuid(), 'c0000000-0000-0000-0000-000000000001');
SELECT statemachine.transition_case('c0000000-0000-0000-0000-000000000001', 'PAY', 'a0000000-0000-0000-0000-000000000001', 'CLERK',
       gen_random_uuid(), reason_code => 'CARD');
SELECT count(*) FROM statemachine.claim_outbox('relay', 10, '1 minute');

-- Application data next to the extension's, owned by a hostile role. The CHECK
-- constraint of its tables calls a function (SECURITY INVOKER: it runs as whoever writes
-- the row, a restoring superuser included) that tries to rewrite every case and forge a
-- history row, swallows the error so that the row is still accepted, and logs in
-- public.tamper_log whether each write got through. Here, without break_glass(), the
-- guard triggers refuse both (SM007); tests/backup/run checks that they refuse them
-- during the documented restore too. The tables are in two schemas: `public`, whose data
-- pg_dump orders before statemachine's, and `tenant`, ordered after it (so that, were
-- all the data restored in the break-glass transaction, the cases would already be there
-- to rewrite). Both reference statemachine.case_file (foreign keys restored in post-data).
DO $$ BEGIN CREATE ROLE sm_hostile_app NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE TABLE public.tamper_log (db text NOT NULL, row_id int NOT NULL, target text NOT NULL, outcome text NOT NULL);
CREATE FUNCTION public.evil_check(n int) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    changed bigint;
BEGIN
    BEGIN
        UPDATE statemachine.case_file SET current_state = 'HACKED' WHERE true;
        GET DIAGNOSTICS changed = ROW_COUNT;
        INSERT INTO public.tamper_log VALUES (current_database(), n, 'case_file', 'written: ' || changed || ' rows');
    EXCEPTION WHEN others THEN
        INSERT INTO public.tamper_log VALUES (current_database(), n, 'case_file', 'refused: ' || SQLSTATE);
    END;
    BEGIN
        INSERT INTO statemachine.case_state_transition (id, case_id, machine, from_state, to_state, transition_code,
               transition_kind, state_version, actor_id, actor_role, policy_version, occurred_at, command_id)
        VALUES (gen_random_uuid(), 'b0000000-0000-0000-0000-000000000001', 'investigation', 'APPROVED', 'HACKED', 'FORGED',
                'admin', 1000 + n, 'a0000000-0000-0000-0000-0000000000ff', 'ATTACKER', 1, now(), gen_random_uuid());
        INSERT INTO public.tamper_log VALUES (current_database(), n, 'case_state_transition', 'written');
    EXCEPTION WHEN others THEN
        INSERT INTO public.tamper_log VALUES (current_database(), n, 'case_state_transition', 'refused: ' || SQLSTATE);
    END;
    RETURN true;
END
$$;
CREATE TABLE public.customer_note (id int PRIMARY KEY, case_id uuid NOT NULL REFERENCES statemachine.case_file (id),
                                   body text NOT NULL, CONSTRAINT customer_note_evil_chk CHECK (public.evil_check(id)));
CREATE SCHEMA tenant;
CREATE TABLE tenant.ticket (id int PRIMARY KEY, case_id uuid NOT NULL REFERENCES statemachine.case_file (id),
                            CONSTRAINT ticket_evil_chk CHECK (public.evil_check(id)));
INSERT INTO public.customer_note VALUES (1, 'b0000000-0000-0000-0000-000000000001', 'called back'),
                                        (2, 'b0000000-0000-0000-0000-000000000002', 'asked for a copy'),
                                        (3, 'c0000000-0000-0000-0000-000000000001', 'paid by card');
INSERT INTO tenant.ticket VALUES (11, 'b0000000-0000-0000-0000-000000000003'), (12, 'b0000000-0000-0000-0000-000000000004');
ALTER FUNCTION public.evil_check(int) OWNER TO sm_hostile_app;
ALTER TABLE public.tamper_log OWNER TO sm_hostile_app;
ALTER TABLE public.customer_note OWNER TO sm_hostile_app;
ALTER SCHEMA tenant OWNER TO sm_hostile_app;
ALTER TABLE tenant.ticket OWNER TO sm_hostile_app;
DO $$
BEGIN
    IF (SELECT count(*) FILTER (WHERE outcome = 'refused: SM007') <> 10 OR count(*) <> 10 FROM public.tamper_log) THEN
        RAISE EXCEPTION 'the guards did not refuse every write of evil_check: %', (SELECT string_agg(outcome, ', ') FROM public.tamper_log);
    END IF;
END
$$;
-- An earlier audited repair: a restore must bring break_glass_event rows along too.
BEGIN;
SELECT count(*) FROM statemachine.break_glass('fill.sql: an earlier repair drill');
COMMIT;
-- A governed table (0.4.0 on): restored with its data (no trigger yet), its
-- governed_table row (with the extension's data, under break_glass) and, post-data, its
-- trigger, created and then set ENABLE ALWAYS as pg_dump writes it. (The upgrade test
-- fills an older version first: there is nothing to govern there.)
SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'govern_table' AND pronamespace = 'statemachine'::regnamespace) AS can_govern \gset
\if :can_govern
SELECT statemachine.define_machine('{"machine": "shelf", "states": [{"code": "full shelf", "initial": true}, {"code": "empty shelf"}],
  "transitions": [{"code": "sell", "from": "full shelf", "to": "empty shelf"}, {"code": "refill", "from": "empty shelf", "to": "full shelf"}]}');
CREATE TABLE public.shelf_item (sku text PRIMARY KEY, status_code int NOT NULL, label text);
INSERT INTO public.shelf_item VALUES ('A-1', 1, 'apples'), ('A-2', 2, 'pears');
SELECT machine FROM statemachine.govern_table('public.shelf_item', 'sku', 'status_code', 'shelf', '{"1": "full shelf", "2": "empty shelf"}');
SELECT to_state FROM statemachine.transition_to((SELECT id FROM statemachine.case_file WHERE machine = 'shelf' AND case_number = 'A-1'),
       'empty shelf', 'a0000000-0000-0000-0000-000000000001', 'CLERK', 'c5000000-0000-0000-0000-000000000001');
\endif
