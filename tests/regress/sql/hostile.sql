-- DDL that would weaken the guards, run as a superuser: each refused by the event
-- trigger statemachine_guard_ddl (SM007) unless break_glass(reason) was called earlier
-- in the same transaction; the break is recorded, append-only.
\set VERBOSITY default
\set SHOW_CONTEXT never
\ir fresh_install.psql
SELECT evtname, evtevent, evtenabled, evttags FROM pg_event_trigger WHERE evtname = 'statemachine_guard_ddl';
SELECT * FROM statemachine.guard_weaknesses();

-- Each of these is refused.
ALTER TABLE statemachine.case_file DISABLE TRIGGER zz_guard_direct_write;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE statemachine.case_state_transition DISABLE TRIGGER ALL;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE statemachine.case_file ENABLE REPLICA TRIGGER zz_guard_direct_write;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE statemachine.case_file ENABLE TRIGGER zz_guard_direct_truncate;
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER zz_guard_direct_write ON statemachine.case_evidence;
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION public.sneak() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.current_state := 'APPROVED'; RETURN NEW; END $$;
CREATE TRIGGER aa_sneak BEFORE UPDATE ON statemachine.case_file FOR EACH ROW EXECUTE FUNCTION public.sneak();
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE statemachine.case_file ENABLE ROW LEVEL SECURITY;
\echo :LAST_ERROR_SQLSTATE
-- Also under session_replication_role = replica.
SET session_replication_role = replica;
ALTER TABLE statemachine.case_file DISABLE TRIGGER zz_guard_direct_write;
\echo :LAST_ERROR_SQLSTATE
RESET session_replication_role;
-- DDL elsewhere passes; even harmless-looking DDL on the extension's tables is refused.
ALTER TABLE statemachine.case_file ALTER COLUMN metadata SET STATISTICS 200;
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE public.unrelated (id int);
ALTER TABLE public.unrelated ADD COLUMN note text;
SELECT * FROM statemachine.guard_weaknesses();

-- break_glass: an audited exception for one transaction.
BEGIN;
SELECT reason, session_user_name = session_user AS by_me, transaction_id = txid_current() AS this_transaction
  FROM statemachine.break_glass('emergency repair of a corrupt case, ticket OPS-42');
ALTER TABLE statemachine.case_file DISABLE TRIGGER zz_guard_direct_write;
SELECT * FROM statemachine.guard_weaknesses();
ALTER TABLE statemachine.case_file ENABLE ALWAYS TRIGGER zz_guard_direct_write;
COMMIT;
SELECT reason FROM statemachine.break_glass_event;
-- The next transaction is guarded again.
ALTER TABLE statemachine.case_file DISABLE TRIGGER zz_guard_direct_write;
\echo :LAST_ERROR_SQLSTATE
-- Inside a break-glass transaction a direct write goes through (a repair); reconcile()
-- then shows what it did, and rolling back undoes it. The next transaction is guarded.
SELECT id AS case_id FROM statemachine.create_case((SELECT 'repair'::text WHERE statemachine.define_machine(
  '{"machine": "repair", "states": [{"code": "A", "initial": true}, {"code": "B", "terminal": true}],
    "transitions": [{"code": "GO", "from": "A", "to": "B"}]}') > 0), 'R-1', 'a0000000-0000-0000-0000-000000000001', 'R',
  'e0000000-0000-0000-0000-000000000001', case_id => 'e1000000-0000-0000-0000-000000000001') \gset
BEGIN;
SELECT count(*) FROM statemachine.break_glass('repair drill');
UPDATE statemachine.case_file SET current_state = 'B' WHERE id = :'case_id';
SELECT case_id, current_state, derived_state FROM statemachine.reconcile();
ROLLBACK;
UPDATE statemachine.case_file SET current_state = 'B' WHERE id = :'case_id';
\echo :LAST_ERROR_SQLSTATE
-- A rolled-back break leaves nothing behind.
BEGIN;
SELECT count(*) FROM statemachine.break_glass('tried and abandoned');
ROLLBACK;
SELECT count(*) AS breaks FROM statemachine.break_glass_event;
-- The record cannot be rewritten or erased, and break_glass needs a reason.
DELETE FROM statemachine.break_glass_event;
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.break_glass('  ');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM statemachine.guard_weaknesses();
DROP FUNCTION public.sneak();
DROP TABLE public.unrelated;
-- An older declaration of transition_case (0.1.0 had 12 parameters, no dimension) bound
-- to today's library: the missing trailing argument reads as NULL, nothing past the end.
CREATE FUNCTION public.old_transition_case(uuid, text, uuid, text, uuid, text, text, bigint, uuid[], uuid, uuid, jsonb)
    RETURNS statemachine.case_state_transition LANGUAGE c AS '$libdir/pg_statemachine', 'sm_transition_case';
SELECT to_state, state_version FROM public.old_transition_case('e1000000-0000-0000-0000-000000000001', 'GO',
       'a0000000-0000-0000-0000-000000000001', 'R', 'e0000000-0000-0000-0000-000000000002', NULL, NULL, NULL, NULL, NULL, NULL, '{}');
DROP FUNCTION public.old_transition_case(uuid, text, uuid, text, uuid, text, text, bigint, uuid[], uuid, uuid, jsonb);
