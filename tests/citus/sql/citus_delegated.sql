-- Delegated calls (distribute(command_scope => 'case')): transition_case and transition_to
-- run on the worker that holds the case, in one statement the coordinator sends there
-- (statemachine.transition_on_shard), with the same checks, history, idempotency and
-- SQLSTATEs; the caller's identity is the coordinator's session user; what needs other
-- cases (dimensions, a sql guard) is sent back and runs from the coordinator. Only that
-- statement is logged below (citus.grep_remote_commands): one per delegated call.
\set VERBOSITY terse
CREATE EXTENSION pg_statemachine;
\set investigation `cat ../../examples/investigation.json`
\set sla `cat ../../examples/sla.json`
SELECT statemachine.define_machine(:'investigation') IS NOT NULL AS defined, statemachine.define_machine(:'sla') IS NOT NULL AS defined;
SELECT statemachine.define_machine('{"machine": "offer",
  "states": [{"code": "OPEN", "initial": true}, {"code": "ACCEPTED", "terminal": true}, {"code": "WITHDRAWN", "terminal": true}],
  "transitions": [{"code": "ACCEPT", "from": "OPEN", "to": "ACCEPTED", "roles": ["CLIENT"], "emit": "OfferAccepted"},
                  {"code": "WITHDRAW", "from": "OPEN", "to": "WITHDRAWN", "roles": ["SALES"], "requires_reason": true,
                   "reasons": [{"code": "PRICE", "label": "Price"}, {"code": "OTHER", "label": "Other"}]}]}') IS NOT NULL AS defined;
CREATE ROLE sm_deleg_app LOGIN;
CREATE ROLE sm_deleg_reviewer NOLOGIN;
GRANT sm_deleg_reviewer TO sm_deleg_app;
GRANT USAGE ON SCHEMA statemachine TO sm_deleg_app;
GRANT EXECUTE ON FUNCTION statemachine.create_case(text, text, uuid, text, uuid, uuid, jsonb),
    statemachine.transition_case(uuid, text, uuid, text, uuid, text, text, bigint, uuid[], uuid, uuid, jsonb, text),
    statemachine.transition_to(uuid, text, uuid, text, uuid, text, text, bigint, uuid[], uuid, uuid, jsonb),
    statemachine.database_actor_id(name) TO sm_deleg_app;
SELECT statemachine.define_machine('{"machine": "db_roles", "role_source": "database",
  "states": [{"code": "OPEN", "initial": true}, {"code": "DONE", "terminal": true}],
  "transitions": [{"code": "FINISH", "from": "OPEN", "to": "DONE", "roles": ["sm_deleg_reviewer"]}]}') IS NOT NULL AS defined;
-- A sql guard: user SQL, which may read any case, so it runs on the coordinator (group
-- 0); this one passes only there.
CREATE FUNCTION public.always_ready(case_id uuid, context jsonb) RETURNS boolean
    LANGUAGE sql STABLE SET search_path = public, pg_temp
    AS $$ SELECT (context->'params'->>'ready')::boolean AND (SELECT groupid FROM pg_catalog.pg_dist_local_group) = 0 $$;
SELECT code FROM statemachine.register_guard('ready', 'public.always_ready(uuid,jsonb)', 'Ready when the params say so');
SELECT statemachine.define_machine('{"machine": "guarded",
  "states": [{"code": "NEW", "initial": true}, {"code": "DONE", "terminal": true}, {"code": "HELD", "terminal": true}],
  "transitions": [{"code": "FINISH", "from": "NEW", "to": "DONE", "guards": [{"guard": "sql", "name": "ready", "params": {"ready": true}}]},
                  {"code": "HOLD", "from": "NEW", "to": "HELD", "guards": [{"guard": "sql", "name": "ready", "params": {"ready": false}}]}]}') IS NOT NULL AS defined;

SELECT statemachine.distribute(shard_count => 4, command_scope => 'case');
SELECT id FROM statemachine.create_case('offer', 'OF-1', 'a0000000-0000-0000-0000-000000000001', 'SALES',
       'c0000000-0000-0000-0000-000000000001', case_id => 'de000000-0000-0000-0000-000000000001');
SELECT count(*) AS offers FROM (SELECT statemachine.create_case('offer', 'OF-' || i, 'a0000000-0000-0000-0000-000000000001', 'SALES',
       ('c1000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid, case_id => ('de000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid)
       FROM generate_series(2, 6) i) c;
SELECT id FROM statemachine.create_case('investigation', 'INV-1', 'a0000000-0000-0000-0000-000000000001', 'CASE_OWNER',
       'c0000000-0000-0000-0000-000000000002', case_id => 'de100000-0000-0000-0000-000000000001');
SELECT machine FROM statemachine.attach_dimension('de100000-0000-0000-0000-000000000001', 'sla', 'a0000000-0000-0000-0000-000000000001',
       'SUPERVISOR', 'c0000000-0000-0000-0000-000000000003');
SELECT id FROM statemachine.create_case('guarded', 'G-1', 'a0000000-0000-0000-0000-000000000001', 'ANY',
       'c0000000-0000-0000-0000-000000000004', case_id => 'de200000-0000-0000-0000-000000000001');
SELECT id FROM statemachine.create_case('guarded', 'G-2', 'a0000000-0000-0000-0000-000000000001', 'ANY',
       'c0000000-0000-0000-0000-000000000005', case_id => 'de200000-0000-0000-0000-000000000002');

SET citus.log_remote_commands = on;
SET citus.grep_remote_commands = '%_on_shard(%';
-- 1. Delegated: one statement to the case's node, in either form of the call.
SELECT to_state, state_version, recorded_by FROM statemachine.transition_case('de000000-0000-0000-0000-000000000001', 'ACCEPT',
       'a0000000-0000-0000-0000-000000000002', 'CLIENT', 'c0000000-0000-0000-0000-000000000010');
SELECT (statemachine.transition_case('de000000-0000-0000-0000-000000000002', 'WITHDRAW', 'a0000000-0000-0000-0000-000000000001',
       'SALES', 'c0000000-0000-0000-0000-000000000011', reason_code => 'PRICE')).to_state;
-- Replayed: the same row, nothing new.
SELECT to_state, state_version FROM statemachine.transition_case('de000000-0000-0000-0000-000000000001', 'ACCEPT',
       'a0000000-0000-0000-0000-000000000002', 'CLIENT', 'c0000000-0000-0000-0000-000000000010');
-- transition_to too.
SELECT transition_code, to_state FROM statemachine.transition_to('de000000-0000-0000-0000-000000000003', 'ACCEPTED',
       'a0000000-0000-0000-0000-000000000002', 'CLIENT', 'c0000000-0000-0000-0000-000000000012');
-- The other calls on one case, the same way: evidence, assignments (replayed too), and
-- the read side.
SELECT statemachine.add_evidence('de000000-0000-0000-0000-000000000005', 'QUOTE', 's3://e/q5.pdf', 'sha256:5',
       'a0000000-0000-0000-0000-000000000001') IS NOT NULL AS evidence_added;
SELECT assignee_id, role_code FROM statemachine.assign_case('de000000-0000-0000-0000-000000000005', 'a0000000-0000-0000-0000-000000000007',
       'REVIEWER', 'a0000000-0000-0000-0000-000000000001', 'c0000000-0000-0000-0000-000000000030');
SELECT assignee_id, role_code FROM statemachine.assign_case('de000000-0000-0000-0000-000000000005', 'a0000000-0000-0000-0000-000000000007',
       'REVIEWER', 'a0000000-0000-0000-0000-000000000001', 'c0000000-0000-0000-0000-000000000030');
SELECT released_by FROM statemachine.release_assignment('de000000-0000-0000-0000-000000000005', 'a0000000-0000-0000-0000-000000000007',
       'REVIEWER', 'a0000000-0000-0000-0000-000000000001', 'c0000000-0000-0000-0000-000000000031');
SELECT statemachine.release_assignment('de000000-0000-0000-0000-000000000005', 'a0000000-0000-0000-0000-000000000007',
       'REVIEWER', 'a0000000-0000-0000-0000-000000000001', 'c0000000-0000-0000-0000-000000000032');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS evidence, (SELECT count(*) FROM statemachine.case_assignment WHERE case_id = 'de000000-0000-0000-0000-000000000005') AS assignments
  FROM statemachine.case_evidence WHERE case_id = 'de000000-0000-0000-0000-000000000005';
SELECT check_name, passed, detail FROM statemachine.check_transition('de000000-0000-0000-0000-000000000005', 'WITHDRAW',
       'a0000000-0000-0000-0000-000000000001', 'SALES');
SELECT transition_code, to_state, allowed, blocked_by FROM statemachine.available_transitions('de000000-0000-0000-0000-000000000005', 'CLIENT');
-- 2. Refusals raised on the worker keep their SQLSTATE through the coordinator.
SELECT statemachine.transition_case('de000000-0000-0000-0000-000000000001', 'WITHDRAW', 'a0000000-0000-0000-0000-000000000001', 'SALES',
       'c0000000-0000-0000-0000-000000000013', reason_code => 'PRICE');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.transition_case('de000000-0000-0000-0000-000000000004', 'NO_SUCH', 'a0000000-0000-0000-0000-000000000001', 'SALES',
       'c0000000-0000-0000-0000-000000000013');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.transition_case('de000000-0000-0000-0000-000000000004', 'ACCEPT', 'a0000000-0000-0000-0000-000000000001', 'SALES',
       'c0000000-0000-0000-0000-000000000013');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.transition_case('de000000-0000-0000-0000-000000000004', 'WITHDRAW', 'a0000000-0000-0000-0000-000000000001', 'SALES',
       'c0000000-0000-0000-0000-000000000013');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.transition_case('de000000-0000-0000-0000-000000000004', 'ACCEPT', 'a0000000-0000-0000-0000-000000000002', 'CLIENT',
       'c0000000-0000-0000-0000-000000000013', expected_version => 5);
\echo :LAST_ERROR_SQLSTATE
-- The command id of another transition of this case: SM008.
SELECT statemachine.transition_case('de000000-0000-0000-0000-000000000001', 'WITHDRAW', 'a0000000-0000-0000-0000-000000000001', 'SALES',
       'c0000000-0000-0000-0000-000000000010', reason_code => 'PRICE');
\echo :LAST_ERROR_SQLSTATE
-- An unknown case is answered by the coordinator (no row on any shard to route to).
SELECT statemachine.transition_case('de000000-0000-0000-0000-0000000000ff', 'ACCEPT', 'a0000000-0000-0000-0000-000000000002', 'CLIENT',
       'c0000000-0000-0000-0000-000000000014');
\echo :LAST_ERROR_SQLSTATE
-- 3. In a transaction block: delegated as well, part of the transaction.
BEGIN;
SELECT to_state FROM statemachine.transition_case('de000000-0000-0000-0000-000000000004', 'ACCEPT', 'a0000000-0000-0000-0000-000000000002',
       'CLIENT', 'c0000000-0000-0000-0000-000000000015');
SELECT to_state FROM statemachine.transition_case('de000000-0000-0000-0000-000000000005', 'ACCEPT', 'a0000000-0000-0000-0000-000000000002',
       'CLIENT', 'c0000000-0000-0000-0000-000000000016');
ROLLBACK;
SELECT id, current_state, state_version FROM statemachine.case_file WHERE id IN ('de000000-0000-0000-0000-000000000004', 'de000000-0000-0000-0000-000000000005') ORDER BY id;
BEGIN;
SELECT to_state FROM statemachine.transition_case('de000000-0000-0000-0000-000000000004', 'ACCEPT', 'a0000000-0000-0000-0000-000000000002',
       'CLIENT', 'c0000000-0000-0000-0000-000000000015');
SELECT current_state, state_version FROM statemachine.case_file WHERE id = 'de000000-0000-0000-0000-000000000004';
COMMIT;
-- One statement, two calls, the second refused: neither happens (Citus would run a lone
-- routed SELECT on the worker in a transaction of its own; the call joins it to the
-- caller's first).
SELECT statemachine.transition_case(v.id, 'ACCEPT', 'a0000000-0000-0000-0000-000000000002', 'CLIENT', v.command)
  FROM (VALUES ('de000000-0000-0000-0000-000000000005'::uuid, 'c0000000-0000-0000-0000-000000000040'::uuid),
               ('de000000-0000-0000-0000-000000000001'::uuid, 'c0000000-0000-0000-0000-000000000041'::uuid)) v(id, command);
\echo :LAST_ERROR_SQLSTATE
SELECT current_state, state_version FROM statemachine.case_file WHERE id = 'de000000-0000-0000-0000-000000000005';
-- A read-only transaction writes nothing, delegated or not (Citus passes the mode on to
-- the workers only for BEGIN READ ONLY): such writes run from the coordinator, refused.
BEGIN;
SET TRANSACTION READ ONLY;
SELECT statemachine.transition_case('de000000-0000-0000-0000-000000000005', 'ACCEPT', 'a0000000-0000-0000-0000-000000000002', 'CLIENT',
       'c0000000-0000-0000-0000-000000000042');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SET default_transaction_read_only = on;
SELECT statemachine.add_evidence('de000000-0000-0000-0000-000000000005', 'QUOTE', 's3://e/q6.pdf', 'sha256:6',
       'a0000000-0000-0000-0000-000000000001');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS checks FROM statemachine.check_transition('de000000-0000-0000-0000-000000000005', 'ACCEPT',
       'a0000000-0000-0000-0000-000000000002', 'CLIENT');
RESET default_transaction_read_only;
-- 4. Sent back, run from the coordinator: a case with dimensions (the code is the SLA's)...
SELECT machine, to_state FROM statemachine.transition_case('de100000-0000-0000-0000-000000000001', 'FLAG_AT_RISK',
       'a0000000-0000-0000-0000-000000000001', 'SUPERVISOR', 'c0000000-0000-0000-0000-000000000017');
SELECT machine, to_state FROM statemachine.transition_case('de100000-0000-0000-0000-000000000001', 'SUBMIT_CASE',
       'a0000000-0000-0000-0000-000000000001', 'CASE_OWNER', 'c0000000-0000-0000-0000-000000000018');
-- ... and a rule with a sql guard (its refusal too; FINISH passes on the coordinator only),
-- for the read side as well.
SELECT check_name, passed FROM statemachine.check_transition('de200000-0000-0000-0000-000000000002', 'FINISH',
       'a0000000-0000-0000-0000-000000000001', 'ANY');
SELECT transition_code, allowed, blocked_by FROM statemachine.available_transitions('de200000-0000-0000-0000-000000000002', 'ANY');
SELECT to_state FROM statemachine.transition_case('de200000-0000-0000-0000-000000000001', 'HOLD', 'a0000000-0000-0000-0000-000000000001', 'ANY',
       'c0000000-0000-0000-0000-000000000019');
\echo :LAST_ERROR_SQLSTATE
SELECT to_state FROM statemachine.transition_case('de200000-0000-0000-0000-000000000001', 'FINISH', 'a0000000-0000-0000-0000-000000000001', 'ANY',
       'c0000000-0000-0000-0000-000000000020');
-- 5. The caller is the coordinator's session user: checked (role_source database) and
-- recorded on the worker as such, not as the owner Citus connects as.
-- (Not logged from here on: the statement shows the actor id, keyed with this
-- installation's random secret.)
SET citus.log_remote_commands = off;
SET SESSION AUTHORIZATION sm_deleg_app;
SELECT statemachine.database_actor_id() AS app_actor \gset
SELECT current_state FROM statemachine.create_case('db_roles', 'DB-1', :'app_actor', 'sm_deleg_reviewer',
       'c0000000-0000-0000-0000-000000000021', case_id => 'de300000-0000-0000-0000-000000000001');
SELECT statemachine.transition_case('de300000-0000-0000-0000-000000000001', 'FINISH', 'a0000000-0000-0000-0000-000000000001',
       'sm_deleg_reviewer', 'c0000000-0000-0000-0000-000000000022');
\echo :LAST_ERROR_SQLSTATE
SELECT to_state, recorded_by, actor_id = :'app_actor' AS own_actor FROM statemachine.transition_case('de300000-0000-0000-0000-000000000001',
       'FINISH', :'app_actor', 'sm_deleg_reviewer', 'c0000000-0000-0000-0000-000000000022');
-- The worker's entry is not the application's.
SELECT statemachine.transition_on_shard('de000000-0000-0000-0000-000000000006', 'ACCEPT', 'a0000000-0000-0000-0000-000000000002', 'CLIENT',
       'c0000000-0000-0000-0000-000000000023', NULL, NULL, NULL, NULL, NULL, NULL, '{}', false, 'postgres');
\echo :LAST_ERROR_SQLSTATE
-- Not the worker's entry either (run_command_on_workers connects as the session's user).
RESET citus.grep_remote_commands;
RESET citus.log_remote_commands;
SELECT DISTINCT success, result FROM run_command_on_workers($$
    SELECT statemachine.transition_on_shard('de000000-0000-0000-0000-000000000006', 'ACCEPT', 'a0000000-0000-0000-0000-000000000002', 'CLIENT',
       'c0000000-0000-0000-0000-000000000023', NULL, NULL, NULL, NULL, NULL, NULL, '{}', false, 'postgres')$$);
RESET SESSION AUTHORIZATION;
-- A call relayed by Citus from another node has no caller of its own (Citus opens that
-- session as whatever role the session here had SET ROLE to): refused, 42501, for
-- a superuser too.
SELECT DISTINCT success, result FROM run_command_on_workers($$
    SELECT statemachine.transition_case('de000000-0000-0000-0000-000000000006', 'ACCEPT', 'a0000000-0000-0000-0000-000000000002',
           'CLIENT', 'c0000000-0000-0000-0000-000000000024')$$);
-- Writes around the write path are still SM007, through the coordinator and on the
-- workers' shards, as superuser.
UPDATE statemachine.case_file SET current_state = 'ACCEPTED' WHERE id = 'de000000-0000-0000-0000-000000000006';
\echo :LAST_ERROR_SQLSTATE
SELECT DISTINCT success, regexp_replace(result, '_[0-9]+', '_<shard>', 'g') AS result FROM run_command_on_workers($$
    UPDATE statemachine.case_file SET current_state = 'ACCEPTED'$$);
-- A superuser may call the worker's entry (as any superuser may do anything); on an
-- installation that does not delegate it refuses (see citus_distributed).

-- 6. Everything adds up: history gapless per case, derived state matches, seals verify.
SELECT count(*) AS gaps FROM (SELECT case_id, state_version, lag(state_version) OVER (PARTITION BY case_id ORDER BY state_version) AS prev
                                FROM statemachine.case_state_transition) v WHERE prev IS NOT NULL AND state_version <> prev + 1;
SELECT count(*) AS unreconciled FROM statemachine.reconcile();
SELECT count(*) AS history_problems FROM statemachine.verify_history();
SELECT count(*) AS outbox_problems FROM statemachine.reconcile_outbox();
SELECT event_type, aggregate_id FROM statemachine.outbox_event ORDER BY created_at;
SELECT recorded_by, count(*) FROM statemachine.case_state_transition GROUP BY 1 ORDER BY 1;
DROP OWNED BY sm_deleg_app;
DROP ROLE sm_deleg_app;
DROP ROLE sm_deleg_reviewer;
