-- Every way we know to change a state without the write path: each refused (SM007).
\set VERBOSITY terse
\set SHOW_CONTEXT never
-- TRUNCATE ... CASCADE lists every dependent table in NOTICEs; only the errors matter here.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_statemachine;
\set investigation `cat ../../examples/investigation.json`
SELECT statemachine.define_machine(:'investigation') > 0 AS defined;
SELECT current_state FROM statemachine.create_case('investigation', 'ATTACK-1', 'a0000000-0000-0000-0000-0000000000a1',
       'CASE_OWNER', 'ca000000-0000-0000-0000-000000000001', case_id => 'aa000000-0000-0000-0000-000000000001');

-- Plain DML as superuser.
UPDATE statemachine.case_file SET current_state = 'APPROVED' WHERE id = 'aa000000-0000-0000-0000-000000000001';
\echo :LAST_ERROR_SQLSTATE
UPDATE statemachine.case_file SET state_version = 42;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM statemachine.case_file;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE statemachine.case_file CASCADE;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO statemachine.case_file (id, machine, machine_version, machine_version_id, case_number, current_state, state_version, state_entered_at, created_at, updated_at)
SELECT gen_random_uuid(), machine, machine_version, machine_version_id, 'FORGED', 'APPROVED', 0, now(), now(), now() FROM statemachine.case_file LIMIT 1;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO statemachine.case_state_transition (id, case_id, machine, from_state, to_state, transition_code, transition_kind, state_version, actor_id, actor_role, policy_version, occurred_at, command_id)
VALUES (gen_random_uuid(), 'aa000000-0000-0000-0000-000000000001', 'investigation', 'DRAFT', 'APPROVED', 'FORGE', 'normal', 1, gen_random_uuid(), 'X', 1, now(), gen_random_uuid());
\echo :LAST_ERROR_SQLSTATE
UPDATE statemachine.case_state_transition SET to_state = 'APPROVED';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM statemachine.case_state_transition;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE statemachine.case_state_transition CASCADE;
\echo :LAST_ERROR_SQLSTATE
COPY statemachine.case_state_transition (id, case_id, machine, from_state, to_state, transition_code, transition_kind, state_version, actor_id, actor_role, policy_version, occurred_at, command_id) FROM stdin;
00000000-0000-0000-0000-0000000000ff	aa000000-0000-0000-0000-000000000001	investigation	DRAFT	APPROVED	FORGE	normal	1	00000000-0000-0000-0000-0000000000ff	X	1	2026-01-01	00000000-0000-0000-0000-0000000000fe
\.
\echo :LAST_ERROR_SQLSTATE
UPDATE statemachine.case_evidence SET is_active = true;
\echo :LAST_ERROR_SQLSTATE

-- Published definitions are immutable.
UPDATE statemachine.transition_rule SET to_state = 'APPROVED' WHERE transition_code = 'SUBMIT_CASE';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM statemachine.transition_rule_role;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO statemachine.transition_rule_role SELECT machine_version_id, from_state, transition_code, 'ANYONE' FROM statemachine.transition_rule LIMIT 1;
\echo :LAST_ERROR_SQLSTATE
UPDATE statemachine.machine_version SET status = 'retired';
\echo :LAST_ERROR_SQLSTATE

-- Replication role: ENABLE ALWAYS triggers still fire.
SET session_replication_role = replica;
UPDATE statemachine.case_file SET current_state = 'APPROVED';
\echo :LAST_ERROR_SQLSTATE
RESET session_replication_role;

-- No setting opens the door.
SET statemachine.bypass = on;
SET statemachine.write_path = 'on';
SET statemachine.door = 1;
UPDATE statemachine.case_file SET current_state = 'APPROVED';
\echo :LAST_ERROR_SQLSTATE
RESET ALL;

-- The trigger function cannot be called directly.
SELECT statemachine.guard_direct_write();
\echo :LAST_ERROR_SQLSTATE

-- A direct write inside a transaction that also used the write path is still refused.
BEGIN;
SELECT to_state FROM statemachine.transition_case('aa000000-0000-0000-0000-000000000001', 'SUBMIT_CASE',
       'a0000000-0000-0000-0000-0000000000a1', 'CASE_OWNER', 'ca000000-0000-0000-0000-000000000002');
UPDATE statemachine.case_file SET current_state = 'APPROVED';
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- A failed write path call leaves the door shut behind it.
SELECT statemachine.transition_case('aa000000-0000-0000-0000-000000000001', 'APPROVE_CASE',
       'a0000000-0000-0000-0000-0000000000a1', 'REVIEWER', 'ca000000-0000-0000-0000-000000000003');
UPDATE statemachine.case_file SET current_state = 'APPROVED';
\echo :LAST_ERROR_SQLSTATE

-- A role that owns the tables.
CREATE ROLE sm_table_owner;
GRANT USAGE ON SCHEMA statemachine TO sm_table_owner;
-- Handing the tables to another owner is itself refused (the DDL guard) ...
ALTER TABLE statemachine.case_file OWNER TO sm_table_owner;
\echo :LAST_ERROR_SQLSTATE
-- ... and done under the audited exception, the owner still cannot write around the path.
BEGIN;
SELECT count(*) FROM statemachine.break_glass('ownership drill');
ALTER TABLE statemachine.case_file OWNER TO sm_table_owner;
ALTER TABLE statemachine.case_state_transition OWNER TO sm_table_owner;
COMMIT;
SET ROLE sm_table_owner;
UPDATE statemachine.case_file SET current_state = 'APPROVED';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM statemachine.case_state_transition;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE statemachine.case_state_transition CASCADE;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
BEGIN;
SELECT count(*) FROM statemachine.break_glass('ownership drill undone');
ALTER TABLE statemachine.case_file OWNER TO CURRENT_USER;
ALTER TABLE statemachine.case_state_transition OWNER TO CURRENT_USER;
COMMIT;
REVOKE USAGE ON SCHEMA statemachine FROM sm_table_owner;
DROP ROLE sm_table_owner;

-- Allowed: a direct update that touches only metadata.
UPDATE statemachine.case_file SET metadata = '{"priority": "high"}' WHERE id = 'aa000000-0000-0000-0000-000000000001';
SELECT current_state, state_version, metadata FROM statemachine.case_file WHERE id = 'aa000000-0000-0000-0000-000000000001';

-- After all of that, state and history still agree.
SELECT count(*) AS disagreements FROM statemachine.reconcile();
