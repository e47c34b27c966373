-- pg_statemachine demo: the seed's investigation machine, from definition to reconcile.
\set ON_ERROR_STOP 0
\set VERBOSITY default
\set SHOW_CONTEXT never
\pset footer off
\echo '\n== 1. Install and publish the investigation machine'
DROP EXTENSION IF EXISTS pg_statemachine CASCADE;
CREATE EXTENSION pg_statemachine;
\set investigation `cat examples/investigation.json`
SELECT statemachine.define_machine(:'investigation') AS version;
SELECT from_state, transition_code, to_state, kind FROM statemachine.transition_rule ORDER BY from_state, transition_code;

\echo '\n== 2. Create two cases (each starts in DRAFT with a CREATE history row)'
SELECT id, case_number, current_state, state_version
  FROM statemachine.create_case('investigation', 'INV-2026-001', 'a0000000-0000-0000-0000-0000000000a1', 'CASE_OWNER',
       gen_random_uuid(), case_id => '10000000-0000-0000-0000-000000000001');
SELECT id, case_number, current_state, state_version
  FROM statemachine.create_case('investigation', 'INV-2026-002', 'a0000000-0000-0000-0000-0000000000a1', 'CASE_OWNER',
       gen_random_uuid(), case_id => '10000000-0000-0000-0000-000000000002');

\echo '\n== 3. Legal transitions'
SELECT from_state, to_state, state_version FROM statemachine.transition_case('10000000-0000-0000-0000-000000000001',
       'SUBMIT_CASE', 'a0000000-0000-0000-0000-0000000000a1', 'CASE_OWNER', gen_random_uuid());
SELECT from_state, to_state, state_version FROM statemachine.transition_case('10000000-0000-0000-0000-000000000001',
       'ASSIGN_REVIEW', 'a0000000-0000-0000-0000-0000000000b2', 'SUPERVISOR', gen_random_uuid());
SELECT statemachine.add_evidence('10000000-0000-0000-0000-000000000001', 'REVIEW_REPORT', 's3://evidence/inv-001.pdf',
       'sha256:9f2c', 'a0000000-0000-0000-0000-0000000000c3') AS evidence \gset
SELECT from_state, to_state, reason_code, state_version FROM statemachine.transition_case('10000000-0000-0000-0000-000000000001',
       'APPROVE_CASE', 'a0000000-0000-0000-0000-0000000000c3', 'REVIEWER', gen_random_uuid(),
       reason_code => 'EVIDENCE_SUFFICIENT', evidence_ids => ARRAY[:'evidence']::uuid[]);

\echo '\n== 4. Illegal transitions are refused with SQLSTATE, DETAIL and HINT'
SELECT statemachine.transition_case('10000000-0000-0000-0000-000000000002', 'APPROVE_CASE',
       'a0000000-0000-0000-0000-0000000000c3', 'REVIEWER', gen_random_uuid());
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT statemachine.transition_case('10000000-0000-0000-0000-000000000002', 'SUBMIT_CASE',
       'a0000000-0000-0000-0000-0000000000c3', 'REVIEWER', gen_random_uuid());
\echo SQLSTATE :LAST_ERROR_SQLSTATE

\echo '\n== 5. A direct UPDATE is refused -- even for a superuser'
UPDATE statemachine.case_file SET current_state = 'APPROVED' WHERE case_number = 'INV-2026-002';
\echo SQLSTATE :LAST_ERROR_SQLSTATE

\echo '\n== 6. What may happen next (for the UI)'
SELECT * FROM statemachine.available_transitions('10000000-0000-0000-0000-000000000001', 'SUPERVISOR');

\echo '\n== 7. The history, and state derived from it alone'
SELECT state_version, transition_code, from_state, to_state, actor_role, reason_code
  FROM statemachine.case_history('10000000-0000-0000-0000-000000000001');
SELECT case_id, current_state, state_version FROM statemachine.v_case_current_state ORDER BY case_id;

\echo '\n== 8. reconcile(): zero rows means stored state agrees with history'
SELECT * FROM statemachine.reconcile();
