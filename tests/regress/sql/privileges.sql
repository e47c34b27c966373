-- The privilege model: an application role granted USAGE on the schema and EXECUTE on
-- the application API, and nothing else, can do everything through the functions and
-- nothing directly. Also role_source database.
\set VERBOSITY default
\set SHOW_CONTEXT never
\ir fresh_install.psql
\set investigation `cat ../../examples/investigation.json`

-- PUBLIC holds nothing in the schema: no table or view privilege, no function.
SELECT c.relname, a.privilege_type
  FROM pg_class c, aclexplode(COALESCE(c.relacl, acldefault('r', c.relowner))) a
 WHERE c.relnamespace = 'statemachine'::regnamespace AND a.grantee = 0;
SELECT p.proname
  FROM pg_proc p, aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner))) a
 WHERE p.pronamespace = 'statemachine'::regnamespace AND a.grantee = 0;
SELECT n.nspname, a.privilege_type
  FROM pg_namespace n, aclexplode(COALESCE(n.nspacl, acldefault('n', n.nspowner))) a
 WHERE n.nspname = 'statemachine' AND a.grantee = 0;
-- Every API function runs as its definer with a pinned search_path (internal helpers run inside them;
-- run_timers commits between chunks, which a procedure with SECURITY DEFINER or SET may not: it calls run_due_transitions;
-- remote_door_set's SET LOCAL must outlive it, which a SET clause would undo; distribute runs as the superuser calling it).
SELECT p.proname, p.prosecdef, p.proconfig
  FROM pg_proc p WHERE p.pronamespace = 'statemachine'::regnamespace
   AND p.proname NOT IN ('guard_direct_write', 'guard_governed_row', 'guard_ddl', 'run_timers', 'remote_door_set', 'distribute')
   AND NOT (p.prosecdef AND p.proconfig = '{"search_path=pg_catalog, pg_temp"}');

-- The administrator publishes the machine.
SELECT statemachine.define_machine(:'investigation');
SELECT statemachine.define_machine('{"machine": "db_roles", "role_source": "database",
  "states": [{"code": "OPEN", "initial": true}, {"code": "DONE", "terminal": true}],
  "transitions": [{"code": "FINISH", "from": "OPEN", "to": "DONE", "roles": ["sm_reviewer", "sm_outsider", "ghost_role"]}]}');

-- The application role: USAGE + EXECUTE on the application API (README, "Privileges").
CREATE ROLE sm_app LOGIN;
CREATE ROLE sm_reviewer NOLOGIN;
CREATE ROLE sm_outsider NOLOGIN;
GRANT sm_reviewer TO sm_app;
GRANT USAGE ON SCHEMA statemachine TO sm_app;
GRANT EXECUTE ON FUNCTION
    statemachine.create_case(text, text, uuid, text, uuid, uuid, jsonb),
    statemachine.transition_case(uuid, text, uuid, text, uuid, text, text, bigint, uuid[], uuid, uuid, jsonb, text),
    statemachine.attach_dimension(uuid, text, uuid, text, uuid),
    statemachine.check_transition(uuid, text, uuid, text, text, text, uuid[]),
    statemachine.available_transitions(uuid, text, uuid),
    statemachine.add_evidence(uuid, text, text, text, uuid),
    statemachine.deactivate_evidence(uuid, uuid, text),
    statemachine.assign_case(uuid, uuid, text, uuid, uuid, text),
    statemachine.database_actor_id(name),
    statemachine.release_assignment(uuid, uuid, text, uuid, uuid, text),
    statemachine.case_history(uuid),
    statemachine.state_at(uuid, timestamptz),
    statemachine.machine_definition(text, integer),
    statemachine.validate_machine(jsonb)
  TO sm_app;
-- A role with no grants at all.
CREATE ROLE sm_nobody LOGIN;

SET SESSION AUTHORIZATION sm_app;
SELECT session_user, current_user;
-- Everything through the functions.
SELECT current_state FROM statemachine.create_case('investigation', 'PRIV-1', 'a0000000-0000-0000-0000-000000000001', 'CASE_OWNER',
       'c0000000-0000-0000-0000-000000000001', case_id => 'bb000000-0000-0000-0000-000000000001');
SELECT to_state, recorded_by FROM statemachine.transition_case('bb000000-0000-0000-0000-000000000001', 'SUBMIT_CASE',
       'a0000000-0000-0000-0000-000000000001', 'CASE_OWNER', 'c0000000-0000-0000-0000-000000000002');
SELECT to_state FROM statemachine.transition_case('bb000000-0000-0000-0000-000000000001', 'ASSIGN_REVIEW',
       'a0000000-0000-0000-0000-000000000002', 'SUPERVISOR', 'c0000000-0000-0000-0000-000000000003');
SELECT statemachine.add_evidence('bb000000-0000-0000-0000-000000000001', 'REVIEW_REPORT', 's3://r', 'sha256:1',
       'a0000000-0000-0000-0000-000000000003') AS ev \gset
SELECT role_code FROM statemachine.assign_case('bb000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000003',
       'REVIEWER', 'a0000000-0000-0000-0000-000000000002', 'c0000000-0000-0000-0000-000000000004');
SELECT check_name, passed FROM statemachine.check_transition('bb000000-0000-0000-0000-000000000001', 'APPROVE_CASE',
       'a0000000-0000-0000-0000-000000000003', 'REVIEWER', reason_text => 'fine', evidence_ids => ARRAY[:'ev']::uuid[]);
SELECT transition_code, allowed FROM statemachine.available_transitions('bb000000-0000-0000-0000-000000000001', 'REVIEWER');
SELECT to_state FROM statemachine.transition_case('bb000000-0000-0000-0000-000000000001', 'APPROVE_CASE',
       'a0000000-0000-0000-0000-000000000003', 'REVIEWER', 'c0000000-0000-0000-0000-000000000005',
       reason_text => 'fine', evidence_ids => ARRAY[:'ev']::uuid[]);
SELECT released_by FROM statemachine.release_assignment('bb000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000003',
       'REVIEWER', 'a0000000-0000-0000-0000-000000000002', 'c0000000-0000-0000-0000-000000000006');
SELECT reason FROM statemachine.deactivate_evidence(:'ev', 'a0000000-0000-0000-0000-000000000003', 'superseded');
SELECT state_version, transition_code, recorded_by FROM statemachine.case_history('bb000000-0000-0000-0000-000000000001');
SELECT statemachine.state_at('bb000000-0000-0000-0000-000000000001', clock_timestamp());
SELECT statemachine.machine_definition('investigation')->>'machine';

-- A temporary table first on the search_path does not capture the write path.
CREATE TEMP TABLE case_state_transition (id uuid);
SET search_path = pg_temp, public;
SELECT to_state FROM statemachine.transition_case('bb000000-0000-0000-0000-000000000001', 'CLOSE_CASE',
       'a0000000-0000-0000-0000-000000000002', 'SUPERVISOR', 'c0000000-0000-0000-0000-000000000007');
SELECT count(*) AS captured FROM pg_temp.case_state_transition;
RESET search_path;

-- Shadowing through search_path: a schema ahead of pg_catalog with an "=" for uuid that
-- always answers true, and its own now(). Every API function pins its search_path, so
-- none of them picks these up: case_history still returns one case's rows only.
RESET SESSION AUTHORIZATION;
CREATE SCHEMA evil AUTHORIZATION sm_app;
SET SESSION AUTHORIZATION sm_app;
CREATE FUNCTION evil.always_equal(uuid, uuid) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE OPERATOR evil.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = evil.always_equal);
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '2000-01-01'::timestamptz $$;
SET search_path = evil, pg_catalog;
SELECT 'a0000000-0000-0000-0000-000000000001'::uuid = 'b0000000-0000-0000-0000-000000000002'::uuid AS shadowed_here;
SELECT current_state FROM statemachine.create_case('investigation', 'PRIV-2', 'a0000000-0000-0000-0000-000000000001', 'CASE_OWNER',
       'c0000000-0000-0000-0000-000000000030', case_id => 'bb000000-0000-0000-0000-000000000003');
SELECT count(*) AS rows_of_one_case FROM statemachine.case_history('bb000000-0000-0000-0000-000000000003');
SELECT to_state, occurred_at > '2001-01-01' AS real_clock FROM statemachine.transition_case('bb000000-0000-0000-0000-000000000003',
       'SUBMIT_CASE', 'a0000000-0000-0000-0000-000000000001', 'CASE_OWNER', 'c0000000-0000-0000-0000-000000000031');
SELECT statemachine.state_at('bb000000-0000-0000-0000-000000000003', '2000-06-01') AS before_it_existed;
RESET search_path;

-- Nothing directly: reads and writes of the tables are not even permitted.
SELECT count(*) FROM statemachine.case_file;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM statemachine.v_case_current_state;
\echo :LAST_ERROR_SQLSTATE
UPDATE statemachine.case_file SET current_state = 'OPEN';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO statemachine.case_state_transition (id) VALUES (gen_random_uuid());
\echo :LAST_ERROR_SQLSTATE
DELETE FROM statemachine.case_assignment;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE statemachine.case_evidence_deactivation;
\echo :LAST_ERROR_SQLSTATE
-- Nor the administration functions.
SELECT statemachine.define_machine(:'investigation');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.register_guard('g', 'pg_catalog.now()', 'x');
\echo :LAST_ERROR_SQLSTATE

-- role_source database: actor_role must be a PostgreSQL role the session user is in, and
-- the actor is the session user itself (statemachine.database_actor_id()).
SELECT current_state FROM statemachine.create_case('db_roles', 'DB-1', statemachine.database_actor_id(), 'sm_outsider',
       'c0000000-0000-0000-0000-000000000010', case_id => 'bb000000-0000-0000-0000-000000000002');
\echo :LAST_ERROR_SQLSTATE
SELECT current_state FROM statemachine.create_case('db_roles', 'DB-1', statemachine.database_actor_id(), 'sm_reviewer',
       'c0000000-0000-0000-0000-000000000010', case_id => 'bb000000-0000-0000-0000-000000000002');
SELECT statemachine.transition_case('bb000000-0000-0000-0000-000000000002', 'FINISH', statemachine.database_actor_id(),
       'sm_outsider', 'c0000000-0000-0000-0000-000000000011');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.transition_case('bb000000-0000-0000-0000-000000000002', 'FINISH', statemachine.database_actor_id(),
       'ghost_role', 'c0000000-0000-0000-0000-000000000011');
\echo :LAST_ERROR_SQLSTATE
SELECT transition_code, allowed, blocked_by FROM statemachine.available_transitions('bb000000-0000-0000-0000-000000000002', 'sm_outsider');
SELECT to_state, actor_role FROM statemachine.transition_case('bb000000-0000-0000-0000-000000000002', 'FINISH',
       statemachine.database_actor_id(), 'sm_reviewer', 'c0000000-0000-0000-0000-000000000011');
-- Another actor_id than the session user's own: SM006, even in a role the user is in.
\set VERBOSITY terse
SELECT statemachine.create_case('db_roles', 'DB-2', 'a0000000-0000-0000-0000-000000000001', 'sm_reviewer', gen_random_uuid());
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
RESET SESSION AUTHORIZATION;

-- A role without grants cannot even reach the schema.
SET SESSION AUTHORIZATION sm_nobody;
SELECT statemachine.transition_case('bb000000-0000-0000-0000-000000000001', 'REOPEN_CASE', 'a0000000-0000-0000-0000-000000000001',
       'SUPERVISOR', 'c0000000-0000-0000-0000-000000000020', reason_text => 'x');
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;

-- A bulk checks identities as transition_case does: under role_source database an app
-- role can neither act for another actor id nor in a role it is not a member of (SM006,
-- per case); as itself, in its own role, it moves the case.
GRANT EXECUTE ON FUNCTION statemachine.bulk_transition(uuid[], text, uuid, text, text, text, uuid, text) TO sm_app;
SET SESSION AUTHORIZATION sm_app;
SELECT current_state FROM statemachine.create_case('db_roles', 'DB-3', statemachine.database_actor_id(), 'sm_reviewer',
       'cf000000-0000-0000-0000-000000000003', case_id => 'bb000000-0000-0000-0000-000000000033');
SELECT ok, error_sqlstate FROM statemachine.bulk_transition(ARRAY['bb000000-0000-0000-0000-000000000033']::uuid[], 'FINISH',
       'a0000000-0000-0000-0000-000000000001', 'sm_reviewer', NULL, NULL, 'cf000000-0000-0000-0000-000000000004', 'skip');
SELECT ok, error_sqlstate FROM statemachine.bulk_transition(ARRAY['bb000000-0000-0000-0000-000000000033']::uuid[], 'FINISH',
       statemachine.database_actor_id(), 'sm_outsider', NULL, NULL, 'cf000000-0000-0000-0000-000000000005', 'skip');
SELECT ok, to_state FROM statemachine.bulk_transition(ARRAY['bb000000-0000-0000-0000-000000000033']::uuid[], 'FINISH',
       statemachine.database_actor_id(), 'sm_reviewer', NULL, NULL, 'cf000000-0000-0000-0000-000000000006', 'skip');
RESET SESSION AUTHORIZATION;

-- A sql guard runs as the session user, who must be allowed to EXECUTE it: a guard the
-- user may not call refuses with the 42501 calling it would raise, the guard named.
CREATE FUNCTION public.sm_private_guard(case_id uuid, context jsonb) RETURNS boolean
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT true $$;
REVOKE EXECUTE ON FUNCTION public.sm_private_guard(uuid, jsonb) FROM PUBLIC;
SELECT code FROM statemachine.register_guard('private_guard', 'public.sm_private_guard(uuid,jsonb)', 'x');
SELECT statemachine.define_machine('{"machine": "priv_guard", "states": [{"code": "OPEN", "initial": true}, {"code": "DONE", "terminal": true}],
  "transitions": [{"code": "FINISH", "from": "OPEN", "to": "DONE", "guards": [{"guard": "sql", "name": "private_guard"}]}]}');
SET SESSION AUTHORIZATION sm_app;
SELECT current_state FROM statemachine.create_case('priv_guard', 'PG-1', 'a0000000-0000-0000-0000-000000000001', 'X',
       'cf000000-0000-0000-0000-000000000001', case_id => 'bb000000-0000-0000-0000-000000000030');
SELECT statemachine.transition_case('bb000000-0000-0000-0000-000000000030', 'FINISH', 'a0000000-0000-0000-0000-000000000001', 'X',
       'cf000000-0000-0000-0000-000000000002');
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;
GRANT EXECUTE ON FUNCTION public.sm_private_guard(uuid, jsonb) TO sm_app;
SET SESSION AUTHORIZATION sm_app;
SELECT to_state FROM statemachine.transition_case('bb000000-0000-0000-0000-000000000030', 'FINISH', 'a0000000-0000-0000-0000-000000000001', 'X',
       'cf000000-0000-0000-0000-000000000002');
RESET SESSION AUTHORIZATION;

SELECT count(*) AS disagreements FROM statemachine.reconcile();

-- Roles are cluster-wide: leave none behind.
DROP SCHEMA evil CASCADE;
DROP OWNED BY sm_app, sm_nobody;
DROP ROLE sm_app, sm_nobody, sm_reviewer, sm_outsider;
