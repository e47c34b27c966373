-- Guards, structured reasons, typed evidence and assignments, with exact error texts.
\set VERBOSITY default
\set SHOW_CONTEXT errors
\ir fresh_install.psql

------------------------------------------------------------------------------------------
-- Guard functions: what register_guard accepts and refuses.
------------------------------------------------------------------------------------------

-- Configurable policy guard (seed 003 §9.2): approval needs N assigned reviewers.
CREATE TABLE public.approval_policy (case_type text PRIMARY KEY, min_reviewers int NOT NULL);
INSERT INTO public.approval_policy VALUES ('A', 2), ('B', 1);
CREATE FUNCTION public.min_reviewers(case_id uuid, context jsonb, OUT passed boolean, OUT evidence jsonb)
    LANGUAGE sql STABLE SET search_path = public, pg_temp
AS $$
    SELECT n.assigned >= p.min_reviewers,
           jsonb_build_object('reviewers', n.assigned, 'required', p.min_reviewers,
                              'reason', format('%s of %s required reviewers assigned', n.assigned, p.min_reviewers))
      FROM public.approval_policy p,
           LATERAL (SELECT count(*)::int AS assigned FROM statemachine.v_case_assignment_current a
                     WHERE a.case_id = $1 AND a.role_code = 'REVIEWER') n
     WHERE p.case_type = context->'params'->>'case_type'
$$;
-- Aggregate guard (seed 003 §17): close only when no task is open.
CREATE TABLE public.case_task (case_id uuid, done boolean);
CREATE FUNCTION public.no_open_task(case_id uuid, context jsonb) RETURNS boolean
    LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$ SELECT NOT EXISTS (SELECT 1 FROM public.case_task t WHERE t.case_id = $1 AND NOT t.done) $$;
-- Misbehaving guards.
CREATE FUNCTION public.undecided(case_id uuid, context jsonb) RETURNS boolean
    LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$ SELECT NULL::boolean $$;
CREATE FUNCTION public.raises(case_id uuid, context jsonb) RETURNS boolean
    LANGUAGE plpgsql STABLE SET search_path = public, pg_temp AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'AB123', MESSAGE = 'approval policy is not loaded',
        DETAIL = 'no policy row for case type ' || (context->'params'->>'case_type'), HINT = 'Load public.approval_policy.';
END $$;
CREATE FUNCTION public.force_state(id uuid) RETURNS boolean
    LANGUAGE sql VOLATILE AS $$ UPDATE statemachine.case_file SET current_state = 'APPROVED' WHERE case_file.id = $1 RETURNING true $$;
CREATE FUNCTION public.writes_state(case_id uuid, context jsonb) RETURNS boolean
    LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$ SELECT public.force_state($1) $$;
CREATE FUNCTION public.moves_case(case_id uuid, context jsonb) RETURNS boolean
    LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
    SELECT true FROM statemachine.transition_case($1, 'SUBMIT', '0000000a-0000-0000-0000-000000000009', 'X',
                                                  'f0000000-0000-0000-0000-000000000009') $$;

SELECT code, function, returns, description FROM statemachine.register_guard('min_reviewers', 'public.min_reviewers(uuid,jsonb)', 'Approval needs the policy''s number of reviewers');
SELECT code, returns FROM statemachine.register_guard('no_open_task', 'public.no_open_task(uuid,jsonb)', 'No unresolved task');
SELECT code FROM statemachine.register_guard('undecided', 'public.undecided(uuid,jsonb)', 'Returns NULL');
SELECT code FROM statemachine.register_guard('raises', 'public.raises(uuid,jsonb)', 'Raises');
SELECT code FROM statemachine.register_guard('writes_state', 'public.writes_state(uuid,jsonb)', 'Tries a direct write');
SELECT code FROM statemachine.register_guard('moves_case', 'public.moves_case(uuid,jsonb)', 'Tries the write path');
-- Registering again re-points the name; the same call is harmless.
SELECT code, returns FROM statemachine.register_guard('no_open_task', 'public.no_open_task(uuid,jsonb)', 'No unresolved task (seed 003 §17)');
SELECT count(*) FROM statemachine.guard_function;

-- Refused registrations.
CREATE FUNCTION public.volatile_guard(uuid, jsonb) RETURNS boolean LANGUAGE sql VOLATILE AS 'SELECT true';
SELECT statemachine.register_guard('volatile_guard', 'public.volatile_guard(uuid,jsonb)', 'x');
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION public.wrong_args(uuid) RETURNS boolean LANGUAGE sql STABLE SET search_path = public, pg_temp AS 'SELECT true';
SELECT statemachine.register_guard('wrong_args', 'public.wrong_args(uuid)', 'x');
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION public.wrong_result(uuid, jsonb) RETURNS integer LANGUAGE sql STABLE SET search_path = public, pg_temp AS 'SELECT 1';
SELECT statemachine.register_guard('wrong_result', 'public.wrong_result(uuid,jsonb)', 'x');
\echo :LAST_ERROR_SQLSTATE
CREATE ROLE sm_guard_author NOLOGIN;
CREATE FUNCTION public.foreign_guard(uuid, jsonb) RETURNS boolean LANGUAGE sql STABLE SET search_path = public, pg_temp AS 'SELECT true';
ALTER FUNCTION public.foreign_guard(uuid, jsonb) OWNER TO sm_guard_author;
SELECT statemachine.register_guard('foreign_guard', 'public.foreign_guard(uuid,jsonb)', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.register_guard('bad name', 'public.no_open_task(uuid,jsonb)', 'x');
\echo :LAST_ERROR_SQLSTATE
-- Direct writes to the registry are refused like every other table's.
DELETE FROM statemachine.guard_function;
\echo :LAST_ERROR_SQLSTATE

------------------------------------------------------------------------------------------
-- A machine using every guard kind.
------------------------------------------------------------------------------------------

-- A definition naming an unregistered guard is refused whole, with the path.
SELECT * FROM statemachine.validate_machine('{"machine": "g", "states": [{"code": "A", "initial": true}, {"code": "B", "terminal": true}],
  "transitions": [{"code": "GO", "from": "A", "to": "B", "guards": [{"guard": "sql", "name": "nobody_registered_me"}]}]}');

\set approval '{"machine": "approval", "states": [{"code": "OPEN", "initial": true}, {"code": "SUBMITTED"}, {"code": "APPROVED"}, {"code": "CLOSED", "terminal": true}, {"code": "REJECTED", "terminal": true}], "transitions": [{"code": "SUBMIT", "from": "OPEN", "to": "SUBMITTED"}, {"code": "APPROVE", "from": "SUBMITTED", "to": "APPROVED", "roles": ["REVIEWER"], "requires_evidence": ["REVIEW_REPORT"], "audit_guards": true, "guards": [{"guard": "distinct_actor", "transition": "SUBMIT"}, {"guard": "requires_assignment", "role": "REVIEWER"}, {"guard": "sql", "name": "min_reviewers", "params": {"case_type": "A"}}]}, {"code": "REJECT", "from": "SUBMITTED", "to": "REJECTED", "requires_reason": true, "reasons": [{"code": "INSUFFICIENT", "label": "Insufficient evidence"}, {"code": "OUT_OF_SCOPE", "label": "Out of scope"}]}, {"code": "ESCALATE", "from": "SUBMITTED", "to": "SUBMITTED", "guards": [{"guard": "min_time_in_state", "interval": "1 second"}]}, {"code": "TRY_NULL", "from": "SUBMITTED", "to": "SUBMITTED", "guards": [{"guard": "sql", "name": "undecided"}]}, {"code": "TRY_RAISE", "from": "SUBMITTED", "to": "SUBMITTED", "guards": [{"guard": "sql", "name": "raises", "params": {"case_type": "C"}}]}, {"code": "TRY_WRITE", "from": "SUBMITTED", "to": "SUBMITTED", "guards": [{"guard": "sql", "name": "writes_state"}]}, {"code": "TRY_REENTER", "from": "SUBMITTED", "to": "SUBMITTED", "guards": [{"guard": "sql", "name": "moves_case"}]}, {"code": "CLOSE", "from": "APPROVED", "to": "CLOSED", "guards": [{"guard": "sql", "code": "tasks_done", "name": "no_open_task"}]}]}'
SELECT statemachine.define_machine(:'approval');
SELECT transition_code, position, guard_code, guard_kind, min_time_in_state, other_transition, assignment_role, guard_name, params
  FROM statemachine.transition_guard ORDER BY transition_code, position;
SELECT transition_code, reason_code, label FROM statemachine.transition_reason ORDER BY sort_order;
SELECT transition_code, requires_evidence, evidence_types, audit_guards FROM statemachine.transition_rule WHERE transition_code = 'APPROVE';
SELECT statemachine.machine_definition('approval')->'transitions'->1;

-- Actors: a submits, b and c review.
SELECT id, current_state FROM statemachine.create_case('approval', 'AP-1', '0000000a-0000-0000-0000-00000000000a', 'CLERK',
       'f0000000-0000-0000-0000-000000000001', case_id => 'ca5e0000-0000-0000-0000-000000000001');
SELECT to_state, state_version FROM statemachine.transition_case('ca5e0000-0000-0000-0000-000000000001', 'SUBMIT',
       '0000000a-0000-0000-0000-00000000000a', 'CLERK', 'f0000000-0000-0000-0000-000000000002');
SELECT statemachine.add_evidence('ca5e0000-0000-0000-0000-000000000001', 'PHOTO', 's3://e/photo', 'sha256:p', '0000000a-0000-0000-0000-00000000000b') AS photo \gset
SELECT statemachine.add_evidence('ca5e0000-0000-0000-0000-000000000001', 'REVIEW_REPORT', 's3://e/report', 'sha256:r', '0000000a-0000-0000-0000-00000000000b') AS report \gset

-- Typed evidence: a PHOTO is not a REVIEW_REPORT.
SELECT statemachine.transition_case('ca5e0000-0000-0000-0000-000000000001', 'APPROVE', '0000000a-0000-0000-0000-00000000000b', 'REVIEWER',
       'f0000000-0000-0000-0000-000000000003', evidence_ids => ARRAY[:'photo']::uuid[]);
\echo :LAST_ERROR_SQLSTATE

-- Four-eyes (distinct_actor): the submitter may not approve.
SELECT statemachine.transition_case('ca5e0000-0000-0000-0000-000000000001', 'APPROVE', '0000000a-0000-0000-0000-00000000000a', 'REVIEWER',
       'f0000000-0000-0000-0000-000000000003', evidence_ids => ARRAY[:'report']::uuid[]);
\echo :LAST_ERROR_SQLSTATE

-- requires_assignment: b is not assigned yet.
SELECT statemachine.transition_case('ca5e0000-0000-0000-0000-000000000001', 'APPROVE', '0000000a-0000-0000-0000-00000000000b', 'REVIEWER',
       'f0000000-0000-0000-0000-000000000003', evidence_ids => ARRAY[:'report']::uuid[]);
\echo :LAST_ERROR_SQLSTATE

-- Assignments: append-only, idempotent on command_id, the assignment in force answers a repeat.
SELECT assignee_id, role_code, assigned_by FROM statemachine.assign_case('ca5e0000-0000-0000-0000-000000000001',
       '0000000a-0000-0000-0000-00000000000b', 'REVIEWER', '0000000a-0000-0000-0000-00000000000a', 'f1000000-0000-0000-0000-000000000001');
SELECT command_id FROM statemachine.assign_case('ca5e0000-0000-0000-0000-000000000001',
       '0000000a-0000-0000-0000-00000000000b', 'REVIEWER', '0000000a-0000-0000-0000-00000000000a', 'f1000000-0000-0000-0000-000000000001');
SELECT command_id FROM statemachine.assign_case('ca5e0000-0000-0000-0000-000000000001',
       '0000000a-0000-0000-0000-00000000000b', 'REVIEWER', '0000000a-0000-0000-0000-00000000000a', 'f1000000-0000-0000-0000-000000000002');
SELECT statemachine.assign_case('ca5e0000-0000-0000-0000-000000000001',
       '0000000a-0000-0000-0000-00000000000c', 'REVIEWER', '0000000a-0000-0000-0000-00000000000a', 'f1000000-0000-0000-0000-000000000001');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM statemachine.case_assignment;

-- The policy guard (sql, verdict form): case type A needs two reviewers.
SELECT statemachine.transition_case('ca5e0000-0000-0000-0000-000000000001', 'APPROVE', '0000000a-0000-0000-0000-00000000000b', 'REVIEWER',
       'f0000000-0000-0000-0000-000000000003', evidence_ids => ARRAY[:'report']::uuid[]);
\echo :LAST_ERROR_SQLSTATE

-- The dry run shows every check, and available_transitions agrees with it.
SELECT * FROM statemachine.check_transition('ca5e0000-0000-0000-0000-000000000001', 'APPROVE', '0000000a-0000-0000-0000-00000000000a',
       'CLERK', evidence_ids => ARRAY[:'photo']::uuid[]);
SELECT * FROM statemachine.check_transition('ca5e0000-0000-0000-0000-000000000001', 'CLOSE', '0000000a-0000-0000-0000-00000000000b', 'REVIEWER');
SELECT * FROM statemachine.check_transition('ca5e0000-0000-0000-0000-000000000001', 'FLY', '0000000a-0000-0000-0000-00000000000b', 'REVIEWER');
SELECT transition_code, allowed, blocked_by FROM statemachine.available_transitions('ca5e0000-0000-0000-0000-000000000001', 'REVIEWER',
       '0000000a-0000-0000-0000-00000000000b') WHERE transition_code IN ('APPROVE', 'REJECT');

SELECT role_code FROM statemachine.assign_case('ca5e0000-0000-0000-0000-000000000001',
       '0000000a-0000-0000-0000-00000000000c', 'REVIEWER', '0000000a-0000-0000-0000-00000000000a', 'f1000000-0000-0000-0000-000000000003');
SELECT transition_code, allowed, blocked_by FROM statemachine.available_transitions('ca5e0000-0000-0000-0000-000000000001', 'REVIEWER',
       '0000000a-0000-0000-0000-00000000000b') WHERE transition_code = 'APPROVE';
SELECT check_name, passed FROM statemachine.check_transition('ca5e0000-0000-0000-0000-000000000001', 'APPROVE', '0000000a-0000-0000-0000-00000000000b',
       'REVIEWER', evidence_ids => ARRAY[:'report', :'photo']::uuid[]);
-- A dry run wrote nothing.
SELECT count(*) FROM statemachine.case_state_transition;

-- Approved: every guard passed, and the audit says what each saw.
SELECT from_state, to_state, state_version FROM statemachine.transition_case('ca5e0000-0000-0000-0000-000000000001', 'APPROVE',
       '0000000a-0000-0000-0000-00000000000b', 'REVIEWER', 'f0000000-0000-0000-0000-000000000003',
       evidence_ids => ARRAY[:'report', :'photo']::uuid[]);
-- "At the time of approval, what did the system believe, and which checks passed?"
SELECT g.guard_code, g.passed, g.evaluated_at = t.occurred_at AS at_approval,
       g.evidence - 'prior_transition_id' - 'assignment_id' - 'assigned_at' AS evidence
  FROM statemachine.case_state_transition t
  JOIN statemachine.case_transition_guard_result g ON g.transition_id = t.id
 WHERE t.case_id = 'ca5e0000-0000-0000-0000-000000000001' AND t.transition_code = 'APPROVE'
 ORDER BY g.guard_code;
-- The evidence links record their purpose.
SELECT e.evidence_type, l.purpose FROM statemachine.case_transition_evidence l
  JOIN statemachine.case_evidence e ON e.id = l.evidence_id ORDER BY 1;

-- Aggregate guard (no_open_task, boolean form, named tasks_done in this definition).
INSERT INTO public.case_task VALUES ('ca5e0000-0000-0000-0000-000000000001', false);
SELECT statemachine.transition_case('ca5e0000-0000-0000-0000-000000000001', 'CLOSE', '0000000a-0000-0000-0000-00000000000b', 'SUPERVISOR',
       'f0000000-0000-0000-0000-000000000004');
\echo :LAST_ERROR_SQLSTATE
UPDATE public.case_task SET done = true;
SELECT to_state FROM statemachine.transition_case('ca5e0000-0000-0000-0000-000000000001', 'CLOSE', '0000000a-0000-0000-0000-00000000000b',
       'SUPERVISOR', 'f0000000-0000-0000-0000-000000000004');
-- Not audited: no guard rows for CLOSE.
SELECT count(*) FROM statemachine.case_transition_guard_result;

------------------------------------------------------------------------------------------
-- Misbehaving guards, on a second case.
------------------------------------------------------------------------------------------
SELECT id FROM statemachine.create_case('approval', 'AP-2', '0000000a-0000-0000-0000-00000000000a', 'CLERK',
       'f0000000-0000-0000-0000-000000000010', case_id => 'ca5e0000-0000-0000-0000-000000000002');
SELECT state_version FROM statemachine.transition_case('ca5e0000-0000-0000-0000-000000000002', 'SUBMIT',
       '0000000a-0000-0000-0000-00000000000a', 'CLERK', 'f0000000-0000-0000-0000-000000000011');

-- NULL is not a decision: it refuses.
SELECT statemachine.transition_case('ca5e0000-0000-0000-0000-000000000002', 'TRY_NULL', '0000000a-0000-0000-0000-00000000000a', 'CLERK',
       'f0000000-0000-0000-0000-000000000012');
\echo :LAST_ERROR_SQLSTATE
-- A guard that raises: its own error comes back unchanged, CONTEXT names the guard.
SELECT statemachine.transition_case('ca5e0000-0000-0000-0000-000000000002', 'TRY_RAISE', '0000000a-0000-0000-0000-00000000000a', 'CLERK',
       'f0000000-0000-0000-0000-000000000012');
\echo :LAST_ERROR_SQLSTATE
-- PL/pgSQL can catch it by its own SQLSTATE.
DO $$
BEGIN
    PERFORM statemachine.transition_case('ca5e0000-0000-0000-0000-000000000002', 'TRY_RAISE', '0000000a-0000-0000-0000-00000000000a',
                                         'CLERK', 'f0000000-0000-0000-0000-000000000012');
EXCEPTION WHEN SQLSTATE 'AB123' THEN
    RAISE NOTICE 'caught AB123: %', SQLERRM;
END $$;
-- A guard that writes (here case state, through a VOLATILE helper): guards run read-only, so the write fails (25006), and so does the transition.
SELECT statemachine.transition_case('ca5e0000-0000-0000-0000-000000000002', 'TRY_WRITE', '0000000a-0000-0000-0000-00000000000a', 'CLERK',
       'f0000000-0000-0000-0000-000000000012');
\echo :LAST_ERROR_SQLSTATE
-- A guard that calls the write path itself is refused too.
SELECT statemachine.transition_case('ca5e0000-0000-0000-0000-000000000002', 'TRY_REENTER', '0000000a-0000-0000-0000-00000000000a', 'CLERK',
       'f0000000-0000-0000-0000-000000000012');
\echo :LAST_ERROR_SQLSTATE
-- Backends cache registered guards: a guard re-pointed by hand under break_glass is what
-- the very next transition calls (the guard trigger invalidates the cache), and after the
-- rollback the registration as it was.
BEGIN;
SELECT statemachine.break_glass('regress: re-point a guard by hand') IS NOT NULL AS broken;
UPDATE statemachine.guard_function SET function = 'public.undecided(uuid,jsonb)' WHERE code = 'raises';
\set VERBOSITY terse
SELECT statemachine.transition_case('ca5e0000-0000-0000-0000-000000000002', 'TRY_RAISE', '0000000a-0000-0000-0000-00000000000a', 'CLERK',
       'f0000000-0000-0000-0000-000000000012');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT statemachine.transition_case('ca5e0000-0000-0000-0000-000000000002', 'TRY_RAISE', '0000000a-0000-0000-0000-00000000000a', 'CLERK',
       'f0000000-0000-0000-0000-000000000012');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
-- In a dry run a raising guard is a failed check, not an error.
SELECT check_name, passed, detail FROM statemachine.check_transition('ca5e0000-0000-0000-0000-000000000002', 'TRY_RAISE',
       '0000000a-0000-0000-0000-00000000000a', 'CLERK') WHERE check_name = 'raises';
-- Nothing moved.
SELECT current_state, state_version FROM statemachine.case_file WHERE id = 'ca5e0000-0000-0000-0000-000000000002';

-- min_time_in_state through the guard list: refused at once, allowed a second later.
-- (The DETAIL names the moment it would pass, so it is matched, not printed.)
\set VERBOSITY terse
SELECT statemachine.transition_case('ca5e0000-0000-0000-0000-000000000002', 'ESCALATE', '0000000a-0000-0000-0000-00000000000a', 'CLERK',
       'f0000000-0000-0000-0000-000000000013');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT check_name, passed, detail ~ '^ESCALATE requires at least 1 second in state SUBMITTED; 00:00:0\d left \(until ' AS says_until_when
  FROM statemachine.check_transition('ca5e0000-0000-0000-0000-000000000002', 'ESCALATE', '0000000a-0000-0000-0000-00000000000a', 'CLERK')
 WHERE check_name = 'min_time_in_state';
SELECT pg_sleep(1.1);
SELECT to_state, state_version FROM statemachine.transition_case('ca5e0000-0000-0000-0000-000000000002', 'ESCALATE',
       '0000000a-0000-0000-0000-00000000000a', 'CLERK', 'f0000000-0000-0000-0000-000000000013');

------------------------------------------------------------------------------------------
-- Structured reasons (seed 003 §25).
------------------------------------------------------------------------------------------
SELECT statemachine.transition_case('ca5e0000-0000-0000-0000-000000000002', 'REJECT', '0000000a-0000-0000-0000-00000000000b', 'REVIEWER',
       'f0000000-0000-0000-0000-000000000014', reason_code => 'BORED');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.transition_case('ca5e0000-0000-0000-0000-000000000002', 'REJECT', '0000000a-0000-0000-0000-00000000000b', 'REVIEWER',
       'f0000000-0000-0000-0000-000000000014', reason_text => 'it is incomplete');
\echo :LAST_ERROR_SQLSTATE
SELECT to_state, reason_code, reason_text FROM statemachine.transition_case('ca5e0000-0000-0000-0000-000000000002', 'REJECT',
       '0000000a-0000-0000-0000-00000000000b', 'REVIEWER', 'f0000000-0000-0000-0000-000000000014',
       reason_code => 'INSUFFICIENT', reason_text => 'pages 3-5 missing');
SELECT machine, version, transition_code, reason_code, label, uses FROM statemachine.v_reason_usage ORDER BY reason_code;

------------------------------------------------------------------------------------------
-- Evidence deactivation is an appended event.
------------------------------------------------------------------------------------------
SELECT reason FROM statemachine.deactivate_evidence(:'photo', '0000000a-0000-0000-0000-00000000000b', 'blurred');
-- Again: the first deactivation stands.
SELECT reason FROM statemachine.deactivate_evidence(:'photo', '0000000a-0000-0000-0000-00000000000b', 'changed my mind');
SELECT evidence_type, is_active FROM statemachine.case_evidence ORDER BY evidence_type;
SELECT count(*) FROM statemachine.case_evidence_deactivation;
SELECT * FROM statemachine.reconcile_evidence();
UPDATE statemachine.case_evidence SET is_active = true;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM statemachine.case_evidence_deactivation;
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.deactivate_evidence('00000000-0000-0000-0000-000000000000', '0000000a-0000-0000-0000-00000000000b', 'x');
\echo :LAST_ERROR_SQLSTATE

------------------------------------------------------------------------------------------
-- Releasing assignments.
------------------------------------------------------------------------------------------
SELECT released_by FROM statemachine.release_assignment('ca5e0000-0000-0000-0000-000000000001', '0000000a-0000-0000-0000-00000000000c',
       'REVIEWER', '0000000a-0000-0000-0000-00000000000a', 'f2000000-0000-0000-0000-000000000001');
-- Replayed: the same release.
SELECT released_by FROM statemachine.release_assignment('ca5e0000-0000-0000-0000-000000000001', '0000000a-0000-0000-0000-00000000000c',
       'REVIEWER', '0000000a-0000-0000-0000-00000000000a', 'f2000000-0000-0000-0000-000000000001');
-- A new command: there is nothing left to release.
SELECT statemachine.release_assignment('ca5e0000-0000-0000-0000-000000000001', '0000000a-0000-0000-0000-00000000000c',
       'REVIEWER', '0000000a-0000-0000-0000-00000000000a', 'f2000000-0000-0000-0000-000000000002');
\echo :LAST_ERROR_SQLSTATE
SELECT assignee_id, role_code FROM statemachine.v_case_assignment_current ORDER BY 1;
SELECT count(*) AS assignments, (SELECT count(*) FROM statemachine.case_assignment_release) AS releases FROM statemachine.case_assignment;
UPDATE statemachine.case_assignment SET role_code = 'X';
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM statemachine.reconcile();

-- Clean up the cluster-wide role this file created.
DROP FUNCTION public.foreign_guard(uuid, jsonb);
DROP ROLE sm_guard_author;
