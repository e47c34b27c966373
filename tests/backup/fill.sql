-- A database that uses every part of the extension, for the backup/restore test.
\set ON_ERROR_STOP 1
\set QUIET 1
CREATE EXTENSION IF NOT EXISTS pg_statemachine;
\set investigation `cat ../../examples/investigation.json`
\set sla `cat ../../examples/sla.json`
CREATE FUNCTION public.always_yes(case_id uuid, context jsonb) RETURNS boolean LANGUAGE sql STABLE AS 'SELECT true';
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
