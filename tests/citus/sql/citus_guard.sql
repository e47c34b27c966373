-- pg_statemachine on a Citus cluster (a coordinator and two workers) that has not been
-- distributed: the extension propagates to the workers, the write path works through the
-- coordinator, and Citus's own tools cannot move the extension's tables out from under
-- the guards — not as superuser (with citus.enable_unsafe_triggers, and in replica mode),
-- not as an application role, not on a worker.
\set VERBOSITY terse
CREATE EXTENSION pg_statemachine;
-- Every worker has it too, at the coordinator's version.
SELECT count(*) AS workers, bool_and(success AND result = (SELECT extversion FROM pg_extension WHERE extname = 'pg_statemachine')) AS same_version
  FROM run_command_on_workers($$SELECT extversion FROM pg_extension WHERE extname = 'pg_statemachine'$$);

SELECT statemachine.define_machine('{"machine": "offer",
  "states": [{"code": "OPEN", "initial": true}, {"code": "ACCEPTED", "terminal": true}, {"code": "WITHDRAWN", "terminal": true}],
  "transitions": [{"code": "ACCEPT", "from": "OPEN", "to": "ACCEPTED", "roles": ["CLIENT"]},
                  {"code": "WITHDRAW", "from": "OPEN", "to": "WITHDRAWN", "roles": ["SALES"]}]}') IS NOT NULL AS defined;
SELECT id, current_state, state_version FROM statemachine.create_case('offer', 'OF-1', 'a0000000-0000-0000-0000-000000000001', 'SALES',
       'c0000000-0000-0000-0000-000000000001', case_id => '0f000000-0000-0000-0000-000000000001');
SELECT id, current_state, state_version FROM statemachine.create_case('offer', 'OF-2', 'a0000000-0000-0000-0000-000000000001', 'SALES',
       'c0000000-0000-0000-0000-000000000002', case_id => '0f000000-0000-0000-0000-000000000002');
SELECT to_state, state_version FROM statemachine.transition_case('0f000000-0000-0000-0000-000000000001', 'ACCEPT',
       'a0000000-0000-0000-0000-000000000002', 'CLIENT', 'c0000000-0000-0000-0000-000000000003');
-- Replay: the same command, the same answer, nothing new.
SELECT to_state, state_version FROM statemachine.transition_case('0f000000-0000-0000-0000-000000000001', 'ACCEPT',
       'a0000000-0000-0000-0000-000000000002', 'CLIENT', 'c0000000-0000-0000-0000-000000000003');
-- The same command for another case: SM008; a role the rule does not name: SM006.
SELECT statemachine.transition_case('0f000000-0000-0000-0000-000000000002', 'ACCEPT',
       'a0000000-0000-0000-0000-000000000002', 'CLIENT', 'c0000000-0000-0000-0000-000000000003');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.transition_case('0f000000-0000-0000-0000-000000000002', 'ACCEPT',
       'a0000000-0000-0000-0000-000000000002', 'SALES', 'c0000000-0000-0000-0000-000000000004');
\echo :LAST_ERROR_SQLSTATE

-- Citus's tools pointed at the extension's tables, as superuser. A reference table or a
-- distributed table is a copy (shards, placements, named <table>_<shard id>) that Citus
-- moves the rows into: the DDL guard refuses creating one, on the coordinator and on
-- every worker.
SET citus.enable_unsafe_triggers = on;
SELECT create_reference_table('statemachine.guard_function');
\echo :LAST_ERROR_SQLSTATE
SELECT create_reference_table('statemachine.installation_secret');
\echo :LAST_ERROR_SQLSTATE
SELECT create_distributed_table('statemachine.break_glass_event', 'id');
\echo :LAST_ERROR_SQLSTATE
SELECT create_distributed_table('statemachine.timer_backoff', 'case_id');
\echo :LAST_ERROR_SQLSTATE
-- Tables in the foreign-key graph: Citus would convert the whole graph (renaming each
-- table into a shard of itself); refused before or by the guard.
SELECT create_reference_table('statemachine.machine');
\echo :LAST_ERROR_SQLSTATE
SELECT create_distributed_table('statemachine.case_file', 'id');
\echo :LAST_ERROR_SQLSTATE
SELECT citus_add_local_table_to_metadata('statemachine.case_file', cascade_via_foreign_keys => true);
\echo :LAST_ERROR_SQLSTATE
SELECT citus_add_local_table_to_metadata('statemachine.break_glass_event');
\echo :LAST_ERROR_SQLSTATE
-- In replica mode the same (the event trigger is ENABLE ALWAYS).
SET session_replication_role = replica;
SELECT create_reference_table('statemachine.guard_function');
\echo :LAST_ERROR_SQLSTATE
RESET session_replication_role;
-- Citus does it in a transaction of its own choosing, or inside ours: refused either way.
BEGIN;
SELECT create_reference_table('statemachine.installation_secret');
ROLLBACK;
RESET citus.enable_unsafe_triggers;

-- A shard-like name the guard does not cover is refused whoever creates it.
CREATE TABLE statemachine.case_file_4711 (LIKE statemachine.case_file);
\echo :LAST_ERROR_SQLSTATE

-- An application role with every table privilege: Citus needs ownership first.
CREATE ROLE sm_citus_app LOGIN;
GRANT USAGE ON SCHEMA statemachine TO sm_citus_app;
GRANT ALL ON ALL TABLES IN SCHEMA statemachine TO sm_citus_app;
SET ROLE sm_citus_app;
SELECT create_reference_table('statemachine.guard_function');
\echo :LAST_ERROR_SQLSTATE
SELECT create_distributed_table('statemachine.case_file', 'id');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO statemachine.case_file (id) VALUES ('0f000000-0000-0000-0000-000000000009');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- On the workers, directly (Citus's own connections, as superuser): their copies of the
-- extension's tables are guarded like the coordinator's.
SELECT success, result FROM run_command_on_workers($$INSERT INTO statemachine.machine (code) VALUES ('x')$$);
SELECT success, result FROM run_command_on_workers($$UPDATE statemachine.installation_secret SET id = id$$);
SELECT success, result FROM run_command_on_workers($$TRUNCATE statemachine.break_glass_event$$);
SELECT success, result FROM run_command_on_workers($$CREATE TABLE statemachine.machine_102999 (LIKE statemachine.machine)$$);
SELECT success, result FROM run_command_on_workers($$ALTER TABLE statemachine.case_file DISABLE TRIGGER ALL$$);

-- Nothing moved: no extension table is known to Citus, every case is where it was, the
-- history verifies, the guards are whole.
SELECT count(*) AS citus_tables FROM pg_dist_partition WHERE logicalrelid::regclass::text LIKE 'statemachine.%';
SELECT count(*) AS shard_like_tables FROM pg_class c WHERE c.relnamespace = 'statemachine'::regnamespace AND c.relname ~ '_[0-9]+$';
SELECT case_number, current_state, state_version FROM statemachine.case_file ORDER BY case_number;
SELECT count(*) AS history_problems FROM statemachine.verify_history();
SELECT count(*) AS reconcile_rows FROM statemachine.reconcile();
SELECT count(*) AS guard_weaknesses FROM statemachine.guard_weaknesses();
-- ... and the write path still works.
SELECT to_state, state_version FROM statemachine.transition_case('0f000000-0000-0000-0000-000000000002', 'WITHDRAW',
       'a0000000-0000-0000-0000-000000000001', 'SALES', 'c0000000-0000-0000-0000-000000000005');

DROP OWNED BY sm_citus_app;
DROP ROLE sm_citus_app;
