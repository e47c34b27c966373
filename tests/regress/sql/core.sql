-- The psql user's view: definitions, a case's life, every refusal with its text.
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE EXTENSION pg_statemachine;
\set investigation `cat ../../examples/investigation.json`
\set product `cat ../../examples/product_status.json`

-- Definitions: publish, idempotent, validate, read back.
SELECT statemachine.define_machine(:'investigation');
SELECT statemachine.define_machine(:'investigation');
-- The canonical form read back is accepted again as the very same version.
SELECT statemachine.define_machine(statemachine.machine_definition('investigation'));
SELECT code, label, phase, is_initial, is_terminal, sort_order, attributes
  FROM statemachine.state ORDER BY sort_order;
SELECT r.from_state, r.transition_code, r.to_state, r.requires_reason, r.requires_evidence, r.kind,
       (SELECT string_agg(role_code, ',') FROM statemachine.transition_rule_role rr
         WHERE (rr.machine_version_id, rr.from_state, rr.transition_code) = (r.machine_version_id, r.from_state, r.transition_code)) AS roles
  FROM statemachine.transition_rule r ORDER BY 1, 2;
SELECT * FROM statemachine.validate_machine('{"machine": "m", "states": [{"code": "A", "initial": true}, {"code": "B", "colour": 1}], "transitions": [{"code": "GO", "from": "A", "to": "C"}]}');
SELECT statemachine.define_machine('{"machine": "m", "states": [{"code": "A", "initial": true}, {"code": "B"}], "transitions": [{"code": "GO", "from": "A", "to": "C"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.machine_definition('investigation', 7);
\echo :LAST_ERROR_SQLSTATE

-- A case's life.
SELECT id, machine, machine_version, case_number, current_state, state_version
  FROM statemachine.create_case('investigation', 'INV-001', 'a0000000-0000-0000-0000-000000000001', 'CASE_OWNER',
       'c0000000-0000-0000-0000-000000000001', case_id => '10000000-0000-0000-0000-000000000001');
-- create_case replayed: same case back, nothing new.
SELECT id, current_state FROM statemachine.create_case('investigation', 'INV-001', 'a0000000-0000-0000-0000-000000000001', 'CASE_OWNER',
       'c0000000-0000-0000-0000-000000000001');
SELECT statemachine.create_case('investigation', 'INV-001', 'a0000000-0000-0000-0000-000000000001', 'CASE_OWNER',
       'c0000000-0000-0000-0000-000000000099');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.create_case('nope', 'X-1', 'a0000000-0000-0000-0000-000000000001', 'R', 'c0000000-0000-0000-0000-000000000098');
\echo :LAST_ERROR_SQLSTATE

SELECT * FROM statemachine.available_transitions('10000000-0000-0000-0000-000000000001', 'CASE_OWNER');
SELECT from_state, to_state, transition_code, state_version, actor_role
  FROM statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'SUBMIT_CASE',
       'a0000000-0000-0000-0000-000000000001', 'CASE_OWNER', 'c0000000-0000-0000-0000-000000000002');
-- SM001: not legal from here; the HINT lists what is.
SELECT statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'APPROVE_CASE',
       'a0000000-0000-0000-0000-000000000002', 'REVIEWER', 'c0000000-0000-0000-0000-000000000003');
\echo :LAST_ERROR_SQLSTATE
-- SM009: unknown code.
SELECT statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'FLY',
       'a0000000-0000-0000-0000-000000000002', 'REVIEWER', 'c0000000-0000-0000-0000-000000000003');
\echo :LAST_ERROR_SQLSTATE
-- SM006: wrong role.
SELECT statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'ASSIGN_REVIEW',
       'a0000000-0000-0000-0000-000000000001', 'CASE_OWNER', 'c0000000-0000-0000-0000-000000000003');
\echo :LAST_ERROR_SQLSTATE
-- SM003: stale expected_version.
SELECT statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'ASSIGN_REVIEW',
       'a0000000-0000-0000-0000-000000000003', 'SUPERVISOR', 'c0000000-0000-0000-0000-000000000003', expected_version => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT to_state, state_version FROM statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'ASSIGN_REVIEW',
       'a0000000-0000-0000-0000-000000000003', 'SUPERVISOR', 'c0000000-0000-0000-0000-000000000003', expected_version => 1);
-- SM004, SM005.
SELECT statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'APPROVE_CASE',
       'a0000000-0000-0000-0000-000000000002', 'REVIEWER', 'c0000000-0000-0000-0000-000000000004');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'APPROVE_CASE',
       'a0000000-0000-0000-0000-000000000002', 'REVIEWER', 'c0000000-0000-0000-0000-000000000004',
       reason_code => 'COMPLETE');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.add_evidence('10000000-0000-0000-0000-000000000001', 'REVIEW_REPORT', 's3://evidence/r1.pdf',
       'sha256:1111', 'a0000000-0000-0000-0000-000000000002') AS ev1 \gset
SELECT statemachine.add_evidence('10000000-0000-0000-0000-000000000001', 'REVIEW_REPORT', 's3://evidence/r0.pdf',
       'sha256:0000', 'a0000000-0000-0000-0000-000000000002') AS ev0 \gset
SELECT reason FROM statemachine.deactivate_evidence(:'ev0', 'a0000000-0000-0000-0000-000000000002', 'superseded by r1');
\set VERBOSITY terse
SELECT statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'APPROVE_CASE',
       'a0000000-0000-0000-0000-000000000002', 'REVIEWER', 'c0000000-0000-0000-0000-000000000004',
       reason_code => 'COMPLETE', evidence_ids => ARRAY[:'ev0']::uuid[]) IS NULL;
\echo :LAST_ERROR_SQLSTATE
SELECT :'LAST_ERROR_MESSAGE' = 'evidence for APPROVE_CASE is not usable' AS message_ok;
\set VERBOSITY default
SELECT to_state, reason_code FROM statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'APPROVE_CASE',
       'a0000000-0000-0000-0000-000000000002', 'REVIEWER', 'c0000000-0000-0000-0000-000000000004',
       reason_code => 'COMPLETE', reason_text => 'all documents reviewed', evidence_ids => ARRAY[:'ev1']::uuid[]);
SELECT e.evidence_type, l.purpose FROM statemachine.case_transition_evidence l
  JOIN statemachine.case_evidence e ON e.id = l.evidence_id;
-- SM008: a command id reused for something else.
SELECT statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'CLOSE_CASE',
       'a0000000-0000-0000-0000-000000000003', 'SUPERVISOR', 'c0000000-0000-0000-0000-000000000002');
\echo :LAST_ERROR_SQLSTATE
-- Replay of an old command returns its original row even though the case moved on.
SELECT transition_code, state_version FROM statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'SUBMIT_CASE',
       'a0000000-0000-0000-0000-000000000001', 'CASE_OWNER', 'c0000000-0000-0000-0000-000000000002');
SELECT to_state FROM statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'CLOSE_CASE',
       'a0000000-0000-0000-0000-000000000003', 'SUPERVISOR', 'c0000000-0000-0000-0000-000000000005');
-- Terminal: closed except the reopen rule.
SELECT statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'CLOSE_CASE',
       'a0000000-0000-0000-0000-000000000003', 'SUPERVISOR', 'c0000000-0000-0000-0000-000000000006');
\echo :LAST_ERROR_SQLSTATE
SELECT to_state, transition_kind FROM statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'REOPEN_CASE',
       'a0000000-0000-0000-0000-000000000003', 'SUPERVISOR', 'c0000000-0000-0000-0000-000000000006', reason_code => 'NEW_FACTS');

-- SM002: time in state (seed 004: deleted only after 5 years unavailable).
-- The "time left" text follows the session's DateStyle/IntervalStyle; pin them here.
SET DateStyle = ISO, MDY;
SET IntervalStyle = postgres;
SELECT statemachine.define_machine(:'product');
SELECT current_state FROM statemachine.create_case('product_status', 'SKU-1', 'a0000000-0000-0000-0000-000000000009', 'ADMIN',
       'c0000000-0000-0000-0000-000000000010', case_id => '10000000-0000-0000-0000-000000000002');
SELECT to_state FROM statemachine.transition_case('10000000-0000-0000-0000-000000000002', 'DISCONTINUE',
       'a0000000-0000-0000-0000-000000000009', 'ADMIN', 'c0000000-0000-0000-0000-000000000011', reason_code => 'EOL');
SELECT transition_code, allowed, blocked_by ~ '^min_time_in_state: DELETE_PRODUCT requires at least 5 years in state UNAVAILABLE; 4 years 11 mons \d+ days \d\d:\d\d:\d\d left \(until ' AS says_what_is_left
  FROM statemachine.available_transitions('10000000-0000-0000-0000-000000000002', 'ADMIN');
DO $$
BEGIN
  PERFORM statemachine.transition_case('10000000-0000-0000-0000-000000000002', 'DELETE_PRODUCT',
          'a0000000-0000-0000-0000-000000000009', 'ADMIN', 'c0000000-0000-0000-0000-000000000012');
EXCEPTION WHEN SQLSTATE 'SM002' THEN
  RAISE NOTICE 'caught SM002 in PL/pgSQL: %', SQLERRM;
END $$;

-- NULLs and empty strings are refused cleanly.
SELECT statemachine.transition_case(NULL, 'X', NULL, NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.transition_case('10000000-0000-0000-0000-000000000002', '', 'a0000000-0000-0000-0000-000000000009', 'ADMIN', 'c0000000-0000-0000-0000-000000000013');
\echo :LAST_ERROR_SQLSTATE

-- Derived truth.
SELECT transition_code, from_state, to_state, state_version, reason_code, policy_version
  FROM statemachine.case_history('10000000-0000-0000-0000-000000000001');
SELECT case_id, machine, current_state, state_version FROM statemachine.v_case_current_state ORDER BY case_id;
SELECT statemachine.state_at('10000000-0000-0000-0000-000000000001', '2000-01-01'),
       statemachine.state_at('10000000-0000-0000-0000-000000000001', clock_timestamp());
SELECT * FROM statemachine.reconcile();
SELECT * FROM statemachine.case_history('99999999-0000-0000-0000-000000000000');
\echo :LAST_ERROR_SQLSTATE
