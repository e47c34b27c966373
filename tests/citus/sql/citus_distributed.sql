-- A distributed installation (statemachine.distribute()) on a coordinator and two
-- workers, through the coordinator: an installation with cases, history, evidence,
-- assignments and events is distributed in place; every function keeps its answers and
-- SQLSTATEs; direct writes are SM007 on the coordinator and on the workers' shards; the
-- remote door admits only the write path's own transaction; break_glass stays audited.
\set VERBOSITY terse
CREATE EXTENSION pg_statemachine;
\set investigation `cat ../../examples/investigation.json`
SELECT statemachine.define_machine(:'investigation') IS NOT NULL AS defined;
SELECT statemachine.define_machine('{"machine": "offer",
  "states": [{"code": "OPEN", "initial": true}, {"code": "ACCEPTED", "terminal": true}, {"code": "WITHDRAWN", "terminal": true}],
  "transitions": [{"code": "ACCEPT", "from": "OPEN", "to": "ACCEPTED", "roles": ["CLIENT"], "emit": "OfferAccepted"},
                  {"code": "WITHDRAW", "from": "OPEN", "to": "WITHDRAWN", "roles": ["SALES"], "requires_reason": true,
                   "reasons": [{"code": "PRICE", "label": "Price"}, {"code": "OTHER", "label": "Other"}]}]}') IS NOT NULL AS defined;

-- Before: a case at every stage of its life, on one node.
SELECT id, current_state FROM statemachine.create_case('investigation', 'INV-1', 'a0000000-0000-0000-0000-000000000001', 'CASE_OWNER',
       'c0000000-0000-0000-0000-000000000001', case_id => '10000000-0000-0000-0000-000000000001');
SELECT to_state FROM statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'SUBMIT_CASE',
       'a0000000-0000-0000-0000-000000000001', 'CASE_OWNER', 'c0000000-0000-0000-0000-000000000002');
SELECT statemachine.add_evidence('10000000-0000-0000-0000-000000000001', 'REVIEW_REPORT', 's3://e/r1.pdf', 'sha256:1',
       'a0000000-0000-0000-0000-000000000002') AS ev1 \gset
SELECT assignee_id FROM statemachine.assign_case('10000000-0000-0000-0000-000000000001', 'a0000000-0000-0000-0000-000000000002',
       'REVIEWER', 'a0000000-0000-0000-0000-000000000003', 'c0000000-0000-0000-0000-000000000003');
SELECT count(*) AS offers FROM (SELECT statemachine.create_case('offer', 'OF-' || i, 'a0000000-0000-0000-0000-000000000001', 'SALES',
       ('c1000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid, case_id => ('0f000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid)
       FROM generate_series(1, 20) i) c;
SELECT to_state FROM statemachine.transition_case('0f000000-0000-0000-0000-000000000001', 'ACCEPT',
       'a0000000-0000-0000-0000-000000000004', 'CLIENT', 'c0000000-0000-0000-0000-000000000004');
CREATE TEMP TABLE before AS
SELECT (SELECT count(*) FROM statemachine.case_file) AS cases, (SELECT count(*) FROM statemachine.case_state_transition) AS history,
       (SELECT count(*) FROM statemachine.case_evidence) AS evidence, (SELECT count(*) FROM statemachine.case_assignment) AS assignments,
       (SELECT count(*) FROM statemachine.outbox_event) AS events, statemachine.history_digest() AS digest;

-- Only a superuser distributes (the function is granted to nobody).
CREATE ROLE sm_citus_app LOGIN;
GRANT USAGE ON SCHEMA statemachine TO sm_citus_app;
SET ROLE sm_citus_app;
SELECT statemachine.distribute();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT statemachine.distribute(shard_count => 0);
\echo :LAST_ERROR_SQLSTATE

SELECT statemachine.distribute(shard_count => 8);
SELECT statemachine.distribute();
\echo :LAST_ERROR_SQLSTATE
-- Definitions on every node, case data by case, all co-located with case_file.
SELECT p.logicalrelid::text AS citus_table, CASE p.partmethod WHEN 'n' THEN 'reference' ELSE 'by ' || a.attname END AS kind,
       p.colocationid = (SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = 'statemachine.case_file'::regclass) AS with_case_file
  FROM pg_dist_partition p LEFT JOIN pg_attribute a ON a.attrelid = p.logicalrelid AND a.attname = column_to_column_name(p.logicalrelid, p.partkey)
 WHERE p.logicalrelid::text LIKE 'statemachine.%' ORDER BY 2 DESC, 1;
SELECT count(*) AS shards, count(DISTINCT p.groupid) AS nodes FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)
 WHERE s.logicalrelid = 'statemachine.case_file'::regclass;
-- Nothing lost, nothing changed: the rows moved into the shards, the digest taken
-- before still verifies (the new digest also covers the break-glass record of distribute()).
SELECT b.cases = (SELECT count(*) FROM statemachine.case_file) AS cases, b.history = (SELECT count(*) FROM statemachine.case_state_transition) AS history,
       b.evidence = (SELECT count(*) FROM statemachine.case_evidence) AS evidence, b.assignments = (SELECT count(*) FROM statemachine.case_assignment) AS assignments,
       b.events = (SELECT count(*) FROM statemachine.outbox_event) AS events,
       (SELECT count(*) FROM statemachine.verify_history(b.digest)) AS digest_problems
  FROM before b;
SELECT count(*) AS history_problems FROM statemachine.verify_history();
SELECT count(*) AS reconcile_rows FROM statemachine.reconcile();
SELECT count(*) AS weaknesses FROM statemachine.guard_weaknesses();
SELECT reason FROM statemachine.break_glass_event ORDER BY occurred_at DESC LIMIT 1;

-- The write path through the coordinator: answers and SQLSTATEs as on one node.
SELECT * FROM statemachine.available_transitions('10000000-0000-0000-0000-000000000001', 'SUPERVISOR');
SELECT check_name, passed FROM statemachine.check_transition('10000000-0000-0000-0000-000000000001', 'ASSIGN_REVIEW',
       'a0000000-0000-0000-0000-000000000003', 'SUPERVISOR') ORDER BY 1;
SELECT statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'APPROVE_CASE', 'a0000000-0000-0000-0000-000000000002', 'REVIEWER', 'c0000000-0000-0000-0000-000000000005');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'FLY', 'a0000000-0000-0000-0000-000000000002', 'REVIEWER', 'c0000000-0000-0000-0000-000000000005');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'ASSIGN_REVIEW', 'a0000000-0000-0000-0000-000000000001', 'CASE_OWNER', 'c0000000-0000-0000-0000-000000000005');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'ASSIGN_REVIEW', 'a0000000-0000-0000-0000-000000000003', 'SUPERVISOR', 'c0000000-0000-0000-0000-000000000005', expected_version => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT to_state, state_version FROM statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'ASSIGN_REVIEW',
       'a0000000-0000-0000-0000-000000000003', 'SUPERVISOR', 'c0000000-0000-0000-0000-000000000005', expected_version => 1);
SELECT statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'APPROVE_CASE', 'a0000000-0000-0000-0000-000000000002', 'REVIEWER', 'c0000000-0000-0000-0000-000000000006');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'APPROVE_CASE', 'a0000000-0000-0000-0000-000000000002', 'REVIEWER', 'c0000000-0000-0000-0000-000000000006', reason_code => 'COMPLETE');
\echo :LAST_ERROR_SQLSTATE
SELECT to_state, reason_code FROM statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'APPROVE_CASE',
       'a0000000-0000-0000-0000-000000000002', 'REVIEWER', 'c0000000-0000-0000-0000-000000000006', reason_code => 'COMPLETE',
       evidence_ids => ARRAY[:'ev1']::uuid[]);
-- A guard refuses (SM002); a definition published now is checked as before (SM010).
SELECT statemachine.define_machine('{"machine": "gated", "states": [{"code": "WAIT", "initial": true}, {"code": "DONE", "terminal": true}],
  "transitions": [{"code": "FINISH", "from": "WAIT", "to": "DONE", "guards": [{"guard": "min_time_in_state", "interval": "1 day"}]}]}') IS NOT NULL AS defined;
SELECT id IS NOT NULL AS created FROM statemachine.create_case('gated', 'G-1', 'a0000000-0000-0000-0000-000000000001', 'OPS',
       'c0000000-0000-0000-0000-000000000020', case_id => '6a000000-0000-0000-0000-000000000001');
SELECT statemachine.transition_case('6a000000-0000-0000-0000-000000000001', 'FINISH', 'a0000000-0000-0000-0000-000000000001', 'OPS', 'c0000000-0000-0000-0000-000000000021');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.define_machine('{"machine": "broken", "states": [{"code": "A", "initial": true}], "transitions": [{"code": "GO", "from": "A", "to": "Z"}]}');
\echo :LAST_ERROR_SQLSTATE
-- Replay: the same answer, nothing new; the command for another case: SM008.
SELECT to_state, state_version FROM statemachine.transition_case('10000000-0000-0000-0000-000000000001', 'APPROVE_CASE',
       'a0000000-0000-0000-0000-000000000002', 'REVIEWER', 'c0000000-0000-0000-0000-000000000006', reason_code => 'COMPLETE',
       evidence_ids => ARRAY[:'ev1']::uuid[]);
SELECT statemachine.transition_case('0f000000-0000-0000-0000-000000000002', 'ACCEPT', 'a0000000-0000-0000-0000-000000000004', 'CLIENT', 'c0000000-0000-0000-0000-000000000006');
\echo :LAST_ERROR_SQLSTATE
SELECT purpose FROM statemachine.case_transition_evidence WHERE case_id = '10000000-0000-0000-0000-000000000001';
SELECT from_state, to_state, transition_code FROM statemachine.transition_to('0f000000-0000-0000-0000-000000000003', 'WITHDRAWN',
       'a0000000-0000-0000-0000-000000000001', 'SALES', 'c0000000-0000-0000-0000-000000000007', reason_code => 'PRICE');
-- Case numbers stay unique per machine (a lock on the number, a look across the shards).
SELECT statemachine.create_case('offer', 'OF-1', 'a0000000-0000-0000-0000-000000000001', 'SALES', 'c0000000-0000-0000-0000-000000000008');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.create_case('nope', 'X-1', 'a0000000-0000-0000-0000-000000000001', 'SALES', 'c0000000-0000-0000-0000-000000000009');
\echo :LAST_ERROR_SQLSTATE
SELECT reason FROM statemachine.deactivate_evidence(:'ev1', 'a0000000-0000-0000-0000-000000000002', 'superseded');
SELECT count(*) AS assignments_in_force FROM statemachine.v_case_assignment_current;
SELECT released_by IS NOT NULL AS released FROM statemachine.release_assignment('10000000-0000-0000-0000-000000000001',
       'a0000000-0000-0000-0000-000000000002', 'REVIEWER', 'a0000000-0000-0000-0000-000000000003', 'c0000000-0000-0000-0000-000000000010');
SELECT count(*) AS assignments_in_force FROM statemachine.v_case_assignment_current;
SELECT state, entered FROM statemachine.state_durations('10000000-0000-0000-0000-000000000001') ORDER BY 1;
SELECT statemachine.state_at('10000000-0000-0000-0000-000000000001', now());

-- Across shards: bulk (abort, skip, replay), timers, the outbox, reports.
SELECT array_agg(id ORDER BY id)::text AS open_offers FROM statemachine.case_file WHERE machine = 'offer' AND current_state = 'OPEN' \gset
SELECT ok, count(*) FROM statemachine.bulk_transition(:'open_offers'::uuid[], 'WITHDRAW', 'a0000000-0000-0000-0000-000000000001', 'SALES',
       'OTHER', NULL, 'b0000000-0000-0000-0000-000000000001') GROUP BY 1;
SELECT ok, count(*) FROM statemachine.bulk_transition(:'open_offers'::uuid[], 'WITHDRAW', 'a0000000-0000-0000-0000-000000000001', 'SALES',
       'OTHER', NULL, 'b0000000-0000-0000-0000-000000000001') GROUP BY 1;
SELECT ok, error_sqlstate, count(*) FROM statemachine.bulk_transition(:'open_offers'::uuid[], 'ACCEPT', 'a0000000-0000-0000-0000-000000000004', 'CLIENT',
       NULL, NULL, 'b0000000-0000-0000-0000-000000000002', 'skip') GROUP BY 1, 2;
SELECT statemachine.bulk_transition(ARRAY['0f000000-0000-0000-0000-000000000001']::uuid[], 'WITHDRAW', 'a0000000-0000-0000-0000-000000000001', 'SALES',
       'OTHER', NULL, 'b0000000-0000-0000-0000-000000000003');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.define_machine('{"machine": "job", "states": [{"code": "QUEUED", "initial": true}, {"code": "EXPIRED", "terminal": true}],
  "transitions": [{"code": "EXPIRE", "from": "QUEUED", "to": "EXPIRED", "after": "1 second", "emit": "JobExpired"}]}') IS NOT NULL AS defined;
SELECT count(*) AS jobs FROM (SELECT statemachine.create_case('job', 'J-' || i, 'a0000000-0000-0000-0000-000000000001', 'OPS',
       ('c2000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid) FROM generate_series(1, 30) i) c;
SELECT pg_sleep(1.2);
SELECT ok, to_state, count(*) FROM statemachine.run_due_transitions(1000) GROUP BY 1, 2;
SELECT count(*) AS due_left FROM statemachine.run_due_transitions(1000);
SELECT event_type, count(*) FROM statemachine.claim_outbox('consumer-a', 100, '5 minutes') GROUP BY 1 ORDER BY 1;
SELECT count(*) AS claimed_twice FROM statemachine.claim_outbox('consumer-b', 100, '5 minutes');
SELECT statemachine.ack_outbox(ARRAY(SELECT id FROM statemachine.outbox_event WHERE claimed_by = 'consumer-a')) AS acked;
SELECT count(*) AS unacked FROM statemachine.outbox_event WHERE acked_at IS NULL;
SELECT machine, state, cases FROM statemachine.v_state_queue ORDER BY 1, 2;
SELECT machine, transition_code, sum(transitions) AS transitions FROM statemachine.v_transition_throughput GROUP BY 1, 2 ORDER BY 1, 2;
SELECT machine, state, stays FROM statemachine.v_time_in_state ORDER BY 1, 2;
SELECT count(*) > 0 AS actors FROM statemachine.v_actor_activity;
SELECT machine, reason_code, uses FROM statemachine.v_reason_usage ORDER BY 1, 2;
SELECT count(*) AS stuck FROM statemachine.stuck_cases('0 seconds', 'investigation');
SELECT count(*) FROM statemachine.reconcile_outbox();
SELECT count(*) FROM statemachine.reconcile_evidence();

-- Versions and imports across shards.
SELECT statemachine.define_machine(jsonb_set(:'investigation'::jsonb, '{states,0,label}', '"Draft (v2)"')) IS NOT NULL AS defined;
SELECT case_number, from_state, to_state, outcome FROM statemachine.migrate_cases('investigation', 1, 2, '{}',
       'a0000000-0000-0000-0000-000000000009', 'ADMIN', 'c0000000-0000-0000-0000-000000000011', dry_run => false);
SELECT case_number, current_state, state_version FROM statemachine.import_cases('offer', $$[
  {"case_number": "OF-OLD", "case_id": "0f000000-0000-0000-0000-0000000000aa",
   "steps": [{"state": "OPEN", "at": "2019-01-01 00:00:00+00"}, {"state": "ACCEPTED", "at": "2019-02-01 00:00:00+00"}]}]$$,
   'a0000000-0000-0000-0000-000000000001', 'IMPORTER', 'c0000000-0000-0000-0000-000000000012');
SELECT state_entered_at FROM statemachine.case_file WHERE id = '0f000000-0000-0000-0000-0000000000aa';
SELECT count(*) AS history_problems FROM statemachine.verify_history();
SELECT count(*) AS reconcile_rows FROM statemachine.reconcile();

-- Direct writes through the coordinator: SM007, for superuser, app role, replica mode.
UPDATE statemachine.case_file SET current_state = 'APPROVED' WHERE id = '0f000000-0000-0000-0000-000000000004';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO statemachine.case_state_transition SELECT * FROM statemachine.case_state_transition WHERE case_id = '0f000000-0000-0000-0000-000000000004';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM statemachine.outbox_event;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO statemachine.transition_rule SELECT * FROM statemachine.transition_rule LIMIT 1;
\echo :LAST_ERROR_SQLSTATE
SET session_replication_role = replica;
UPDATE statemachine.case_file SET state_version = 99;
\echo :LAST_ERROR_SQLSTATE
RESET session_replication_role;
GRANT ALL ON ALL TABLES IN SCHEMA statemachine TO sm_citus_app;
SET ROLE sm_citus_app;
UPDATE statemachine.case_file SET current_state = 'APPROVED';
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- Metadata stays the one column a direct UPDATE may change (on its shard too).
UPDATE statemachine.case_file SET metadata = '{"note": "direct"}' WHERE id = '0f000000-0000-0000-0000-000000000004';
-- On the workers' shards and placements, directly.
SELECT DISTINCT success, result FROM run_command_on_shards('statemachine.case_file', $$UPDATE %s SET current_state = 'X'$$) WHERE result <> 'UPDATE 0';
SELECT DISTINCT success, result FROM run_command_on_shards('statemachine.case_state_transition', $$DELETE FROM %s$$) WHERE result <> 'DELETE 0';
SELECT DISTINCT success, result FROM run_command_on_placements('statemachine.transition_rule', $$UPDATE %s SET to_state = from_state$$);
SELECT DISTINCT success, regexp_replace(result, '_[0-9]+', '_<shard>', 'g') AS result FROM run_command_on_shards('statemachine.case_file', $$DROP TABLE %s$$);
SELECT DISTINCT success, regexp_replace(result, '_[0-9]+', '_<shard>', 'g') AS result FROM run_command_on_shards('statemachine.case_file', $$ALTER TABLE %s DISABLE TRIGGER ALL$$);
SELECT DISTINCT success, regexp_replace(result, '_[0-9]+', '_<shard>', 'g') AS result FROM run_command_on_workers($$DROP TRIGGER zz_guard_direct_write ON statemachine.case_file$$);

-- The remote door: a value the write path did not sign opens nothing; one it signed for
-- another transaction neither; once replaced it is burnt.
SELECT statemachine.remote_door_set('v1|0|1|0|n|*.*|' || repeat('0', 64));
UPDATE statemachine.case_file SET current_state = 'X';
\echo :LAST_ERROR_SQLSTATE
CREATE EXTENSION pgcrypto;
SET citus.enable_ddl_propagation = off;
CREATE FUNCTION pg_temp.token(grants text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE t record; payload text;
BEGIN
    PERFORM statemachine.available_transitions('0f000000-0000-0000-0000-000000000004', 'SALES');  -- a coordinated transaction
    SELECT initiator_node_identifier, transaction_number, (extract('epoch' FROM transaction_stamp) * 1000000)::int8 AS stamp INTO t
      FROM get_current_transaction_id();
    payload := format('v1|%s|%s|%s|test-nonce|%s', t.initiator_node_identifier, t.transaction_number, t.stamp, grants);
    RETURN payload || '|' || encode(hmac(convert_to(payload, 'UTF8'), (SELECT secret FROM statemachine.installation_secret), 'sha256'), 'hex');
END $$;
CREATE FUNCTION pg_temp.token_for(txn bigint, grants text) RETURNS text LANGUAGE sql AS $$
    SELECT p || '|' || encode(hmac(convert_to(p, 'UTF8'), (SELECT secret FROM statemachine.installation_secret), 'sha256'), 'hex')
      FROM (SELECT format('v1|0|%s|946684800000000|replayed|%s', txn, grants) AS p) x $$;
RESET citus.enable_ddl_propagation;
BEGIN;
SELECT count(*) FROM statemachine.case_file;
SELECT pg_temp.token('case_file.U') AS token \gset
SELECT statemachine.remote_door_set(:'token');
-- A superuser who reads the installation secret can sign: the secret is the boundary
-- (docs/security.md). The token grants its table and operation only.
UPDATE statemachine.case_file SET current_state = 'X' WHERE id = '0f000000-0000-0000-0000-000000000004';
SELECT current_state FROM statemachine.case_file WHERE id = '0f000000-0000-0000-0000-000000000004';
DELETE FROM statemachine.case_file WHERE id = '0f000000-0000-0000-0000-000000000004';
ROLLBACK;
BEGIN;
SELECT count(*) FROM statemachine.case_file;
SELECT pg_temp.token('case_file.U') AS token \gset
-- (The burn is the worker's memory of the values it saw: the extension's library must be
-- loaded in that backend before the token arrives — it is in every backend that has
-- written through the guards, and in every one with session_preload_libraries.)
SAVEPOINT load_the_library;
UPDATE statemachine.case_file SET current_state = 'X' WHERE id = '0f000000-0000-0000-0000-000000000004';
ROLLBACK TO load_the_library;
SELECT statemachine.remote_door_set(:'token');
SELECT statemachine.remote_door_set('');
SELECT statemachine.remote_door_set(:'token');
UPDATE statemachine.case_file SET current_state = 'X' WHERE id = '0f000000-0000-0000-0000-000000000004';
ROLLBACK;
BEGIN;
SELECT statemachine.remote_door_set(:'token');
UPDATE statemachine.case_file SET current_state = 'X' WHERE id = '0f000000-0000-0000-0000-000000000004';
ROLLBACK;
-- A token read off a client's NOTICEs (citus.log_remote_commands shows every remote
-- command) and replayed straight on the workers, its distributed transaction taken on with
-- Citus's assign_distributed_transaction_id (executable by anyone): as an application role,
-- refused on every shard — the write path's statements reach the workers as the functions'
-- owner, and only the owner's or a superuser's session carries a door there.
SELECT pg_temp.token_for(424242, 'case_file.U') AS replayed \gset
SELECT format($f$BEGIN; SELECT assign_distributed_transaction_id(0, 424242, '2000-01-01 00:00:00+00');
                 SET LOCAL statemachine.remote_door = %L; UPDATE %%s SET current_state = 'X'; COMMIT;$f$, :'replayed') AS replay \gset
SET ROLE sm_citus_app;
SELECT count(*) AS shards_tried FROM run_command_on_shards('statemachine.case_file', :'replay');
RESET ROLE;
SELECT count(*) AS cases_changed FROM statemachine.case_file WHERE current_state = 'X';
DROP EXTENSION pgcrypto;

-- break_glass reaches the workers, audited, and break_glass_event stays append-only there.
BEGIN;
SELECT reason FROM statemachine.break_glass('repair a case on a worker');
UPDATE statemachine.case_file SET current_state = 'ACCEPTED' WHERE id = '0f000000-0000-0000-0000-000000000004';
SELECT count(*) AS reconcile_rows FROM statemachine.reconcile();
DELETE FROM statemachine.break_glass_event;
ROLLBACK;
SELECT count(*) AS glass_records FROM statemachine.break_glass_event;

-- Citus's tools on the distributed tables: shards are made only by distribute().
SELECT undistribute_table('statemachine.timer_backoff');
\echo :LAST_ERROR_SQLSTATE
SELECT alter_distributed_table('statemachine.case_file', shard_count => 4);
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE public.offer_row (id int PRIMARY KEY, status text);
SELECT statemachine.govern_table('public.offer_row', 'id', 'status', 'offer');
\echo :LAST_ERROR_SQLSTATE

-- command_scope 'installation' does not delegate calls to the case's node (a command id
-- is looked for across the shards, under the coordinator's lock): no statement to the
-- worker's entry, and the entry itself refuses.
SELECT current_state FROM statemachine.create_case('offer', 'OF-90', 'a0000000-0000-0000-0000-000000000001', 'SALES',
       'c0000000-0000-0000-0000-000000000089', case_id => '0f000000-0000-0000-0000-000000000090');
SET citus.log_remote_commands = on;
SET citus.grep_remote_commands = '%transition_on_shard%';
SELECT to_state FROM statemachine.transition_case('0f000000-0000-0000-0000-000000000090', 'ACCEPT',
       'a0000000-0000-0000-0000-000000000004', 'CLIENT', 'c0000000-0000-0000-0000-000000000090');
RESET citus.grep_remote_commands;
RESET citus.log_remote_commands;
SELECT statemachine.transition_on_shard('0f000000-0000-0000-0000-000000000090', 'ACCEPT', 'a0000000-0000-0000-0000-000000000004', 'CLIENT',
       'c0000000-0000-0000-0000-000000000091', NULL, NULL, NULL, NULL, NULL, NULL, '{}', false, 'postgres');
\echo :LAST_ERROR_SQLSTATE

SELECT count(*) AS history_problems FROM statemachine.verify_history();
SELECT count(*) AS reconcile_rows FROM statemachine.reconcile();
SELECT count(*) AS weaknesses FROM statemachine.guard_weaknesses();
DROP TABLE public.offer_row;
DROP OWNED BY sm_citus_app;
DROP ROLE sm_citus_app;
