-- Independent dimensions (seed 003 §11, §21, §23): a case carries its lifecycle and its
-- SLA as two machines, each with its own state, version and history, tied together by a
-- declared invariant: the SLA may be PAUSED only while the investigation is UNDER_REVIEW.
\set VERBOSITY default
\set SHOW_CONTEXT never
\ir fresh_install.psql
\set investigation `cat ../../examples/investigation.json`
\set sla `cat ../../examples/sla.json`
SELECT statemachine.define_machine(:'investigation'), statemachine.define_machine(:'sla');
SELECT when_state, dimension, allowed_states FROM statemachine.state_invariant;

SELECT id, current_state FROM statemachine.create_case('investigation', 'INV-9', 'a0000000-0000-0000-0000-000000000001', 'CASE_OWNER',
       'd0000000-0000-0000-0000-000000000001', case_id => '90000000-0000-0000-0000-000000000001');
SELECT machine, case_number, current_state, state_version, root_case_id FROM statemachine.attach_dimension(
       '90000000-0000-0000-0000-000000000001', 'sla', 'a0000000-0000-0000-0000-000000000001', 'SUPERVISOR',
       'd0000000-0000-0000-0000-000000000002');
-- Replayed: the same dimension.
SELECT case_number FROM statemachine.attach_dimension('90000000-0000-0000-0000-000000000001', 'sla',
       'a0000000-0000-0000-0000-000000000001', 'SUPERVISOR', 'd0000000-0000-0000-0000-000000000002');
SELECT id AS sla_id FROM statemachine.case_file WHERE machine = 'sla' \gset
SELECT machine, current_state, dimensions FROM statemachine.case_file WHERE id = '90000000-0000-0000-0000-000000000001';
-- Refused: the same dimension twice, a dimension of a dimension, codes two machines share.
SELECT statemachine.attach_dimension('90000000-0000-0000-0000-000000000001', 'sla', 'a0000000-0000-0000-0000-000000000001',
       'SUPERVISOR', 'd0000000-0000-0000-0000-000000000003');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.define_machine('{"machine": "escalation", "states": [{"code": "NONE", "initial": true}, {"code": "ESCALATED", "terminal": true}],
  "transitions": [{"code": "ESCALATE", "from": "NONE", "to": "ESCALATED"}, {"code": "CLOSE_CASE", "from": "NONE", "to": "ESCALATED"}]}');
-- (A dimension's id is fresh, so the refusals that name it show it as <sla>.)
CREATE FUNCTION pg_temp.refusal(statement text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    sla text := (SELECT id::text FROM statemachine.case_file WHERE machine = 'sla');
    state text; message text; detail text;
BEGIN
    EXECUTE statement;
    RETURN 'succeeded';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
    RETURN state || ': ' || replace(message || E'\nDETAIL: ' || detail, sla, '<sla>');
END $$;
SELECT pg_temp.refusal(format($$SELECT statemachine.attach_dimension(%L, 'escalation', 'a0000000-0000-0000-0000-000000000001',
       'SUPERVISOR', 'd0000000-0000-0000-0000-000000000003')$$, :'sla_id'));
SELECT statemachine.attach_dimension('90000000-0000-0000-0000-000000000001', 'escalation', 'a0000000-0000-0000-0000-000000000001',
       'SUPERVISOR', 'd0000000-0000-0000-0000-000000000003');
\echo :LAST_ERROR_SQLSTATE

-- transition_case on the case finds the dimension by code: PAUSE_SLA is the SLA's.
-- The investigation is still a DRAFT, so the invariant refuses the pause.
SELECT pg_temp.refusal($$SELECT statemachine.transition_case('90000000-0000-0000-0000-000000000001', 'PAUSE_SLA', 'a0000000-0000-0000-0000-000000000002',
       'SUPERVISOR', 'd1000000-0000-0000-0000-000000000001', reason_text => 'waiting for an external document')$$);
SELECT to_state FROM statemachine.transition_case('90000000-0000-0000-0000-000000000001', 'SUBMIT_CASE', 'a0000000-0000-0000-0000-000000000001',
       'CASE_OWNER', 'd1000000-0000-0000-0000-000000000002');
SELECT to_state FROM statemachine.transition_case('90000000-0000-0000-0000-000000000001', 'ASSIGN_REVIEW', 'a0000000-0000-0000-0000-000000000002',
       'SUPERVISOR', 'd1000000-0000-0000-0000-000000000003');
-- Under review now: the SLA may pause. The history row is the SLA dimension's.
SELECT case_id = :'sla_id' AS on_sla, from_state, to_state, state_version FROM statemachine.transition_case(
       '90000000-0000-0000-0000-000000000001', 'PAUSE_SLA', 'a0000000-0000-0000-0000-000000000002', 'SUPERVISOR',
       'd1000000-0000-0000-0000-000000000001', reason_text => 'waiting for an external document');
-- Replayed through the case: the same row.
SELECT state_version FROM statemachine.transition_case('90000000-0000-0000-0000-000000000001', 'PAUSE_SLA',
       'a0000000-0000-0000-0000-000000000002', 'SUPERVISOR', 'd1000000-0000-0000-0000-000000000001',
       reason_text => 'waiting for an external document');
-- The other direction: the investigation may not leave UNDER_REVIEW while the SLA is paused.
SELECT statemachine.add_evidence('90000000-0000-0000-0000-000000000001', 'REVIEW_REPORT', 's3://r', 'sha256:r',
       'a0000000-0000-0000-0000-000000000003') AS ev \gset
SELECT statemachine.transition_case('90000000-0000-0000-0000-000000000001', 'APPROVE_CASE', 'a0000000-0000-0000-0000-000000000003',
       'REVIEWER', 'd1000000-0000-0000-0000-000000000004', reason_text => 'ok', evidence_ids => ARRAY[:'ev']::uuid[]);
\echo :LAST_ERROR_SQLSTATE
-- An explicit dimension names the machine; an unknown one is SM009.
SELECT statemachine.transition_case('90000000-0000-0000-0000-000000000001', 'RESUME_SLA', 'a0000000-0000-0000-0000-000000000002',
       'SUPERVISOR', 'd1000000-0000-0000-0000-000000000005', dimension => 'escalation');
\echo :LAST_ERROR_SQLSTATE
SELECT pg_sleep(0.05);
SELECT to_state FROM statemachine.transition_case('90000000-0000-0000-0000-000000000001', 'RESUME_SLA', 'a0000000-0000-0000-0000-000000000002',
       'SUPERVISOR', 'd1000000-0000-0000-0000-000000000005', dimension => 'sla');
SELECT to_state FROM statemachine.transition_case('90000000-0000-0000-0000-000000000001', 'APPROVE_CASE', 'a0000000-0000-0000-0000-000000000003',
       'REVIEWER', 'd1000000-0000-0000-0000-000000000004', reason_text => 'ok', evidence_ids => ARRAY[:'ev']::uuid[]);
-- Each dimension has its own version counter and history.
SELECT machine, current_state, state_version FROM statemachine.case_file ORDER BY machine;
SELECT state_version, transition_code, to_state FROM statemachine.case_history(:'sla_id');
-- Pause accounting (seed 003 §23): time spent PAUSED, from the SLA's own history.
SELECT state, entered, total > interval '0' AS counted FROM statemachine.state_durations(:'sla_id') ORDER BY state;
-- A code neither machine knows is still SM009, with the case's own legal transitions.
SELECT statemachine.transition_case('90000000-0000-0000-0000-000000000001', 'FLY', 'a0000000-0000-0000-0000-000000000002',
       'SUPERVISOR', 'd1000000-0000-0000-0000-000000000006');
\echo :LAST_ERROR_SQLSTATE
UPDATE statemachine.case_file SET dimensions = '{}' WHERE id = '90000000-0000-0000-0000-000000000001';
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS disagreements FROM statemachine.reconcile();
