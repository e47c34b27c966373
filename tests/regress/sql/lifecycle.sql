-- Lifecycle operations: the transactional outbox, bulk transitions through the front
-- door, timed transitions.
\set VERBOSITY default
\set SHOW_CONTEXT never
\ir fresh_install.psql

SELECT statemachine.define_machine('{"machine": "order",
  "states": [{"code": "PLACED", "initial": true}, {"code": "PAID"}, {"code": "SHIPPED"}, {"code": "CLOSED", "terminal": true},
             {"code": "EXPIRED", "terminal": true}],
  "transitions": [
    {"code": "PAY", "from": "PLACED", "to": "PAID", "emit": "OrderPaid"},
    {"code": "SHIP", "from": "PAID", "to": "SHIPPED", "emit": "OrderShipped"},
    {"code": "CLOSE", "from": ["PAID", "SHIPPED"], "to": "CLOSED", "requires_reason": true},
    {"code": "EXPIRE", "from": "PLACED", "to": "EXPIRED", "after": "2 seconds", "emit": "OrderExpired"}]}');
SELECT transition_code, emit_event, fire_after FROM statemachine.transition_rule WHERE emit_event IS NOT NULL OR fire_after IS NOT NULL ORDER BY 1;
SELECT statemachine.machine_definition('order')->'transitions'->3;

SELECT count(*) FROM (
  SELECT statemachine.create_case('order', 'O-' || n, 'a0000000-0000-0000-0000-000000000001', 'CLERK',
         ('c0000000-0000-0000-0000-00000000000' || n)::uuid, ('0d000000-0000-0000-0000-00000000000' || n)::uuid)
    FROM generate_series(1, 5) n) created;

------------------------------------------------------------------------------------------
-- Outbox: the event is written with the transition, in its transaction.
------------------------------------------------------------------------------------------
SELECT to_state FROM statemachine.transition_case('0d000000-0000-0000-0000-000000000001', 'PAY', 'a0000000-0000-0000-0000-000000000001',
       'CLERK', 'c1000000-0000-0000-0000-000000000001', correlation_id => 'cc000000-0000-0000-0000-000000000001');
SELECT to_state FROM statemachine.transition_case('0d000000-0000-0000-0000-000000000001', 'SHIP', 'a0000000-0000-0000-0000-000000000001',
       'CLERK', 'c1000000-0000-0000-0000-000000000002');
SELECT to_state FROM statemachine.transition_case('0d000000-0000-0000-0000-000000000002', 'PAY', 'a0000000-0000-0000-0000-000000000001',
       'CLERK', 'c1000000-0000-0000-0000-000000000003');
-- A refused or rolled-back transition leaves no event.
BEGIN;
SELECT to_state FROM statemachine.transition_case('0d000000-0000-0000-0000-000000000003', 'PAY', 'a0000000-0000-0000-0000-000000000001',
       'CLERK', 'c1000000-0000-0000-0000-000000000004');
ROLLBACK;
SELECT o.event_type, o.aggregate_seq, o.attempts, o.acked_at IS NULL AS pending,
       o.payload->'transition'->>'transition_code' AS code, o.payload->'transition'->>'to_state' AS to_state,
       o.payload->>'correlation_id' AS correlation_id, o.created_at = t.occurred_at AS same_time
  FROM statemachine.outbox_event o JOIN statemachine.case_state_transition t ON t.id = o.transition_id
 ORDER BY o.aggregate_id, o.aggregate_seq;
SELECT * FROM statemachine.reconcile_outbox();

-- Claim: per-case order holds OrderShipped back until OrderPaid of the same case is acknowledged.
SELECT event_type, aggregate_seq, claimed_by, attempts FROM statemachine.claim_outbox('worker-1', 10, '1 minute') ORDER BY aggregate_id, aggregate_seq;
-- Another consumer gets nothing: both heads are leased, the tail waits for its head.
SELECT count(*) FROM statemachine.claim_outbox('worker-2', 10, '1 minute');
SELECT statemachine.ack_outbox(ARRAY(SELECT id FROM statemachine.outbox_event WHERE event_type = 'OrderPaid'));
-- Acknowledging again changes nothing.
SELECT statemachine.ack_outbox(ARRAY(SELECT id FROM statemachine.outbox_event WHERE event_type = 'OrderPaid'));
-- The head is acknowledged: its case's next event comes, on a short lease.
SELECT event_type, claimed_by, attempts FROM statemachine.claim_outbox('worker-2', 10, '10 milliseconds');
-- A lease that runs out hands the event out again, counting the attempt.
SELECT pg_sleep(0.05);
SELECT event_type, claimed_by, attempts FROM statemachine.claim_outbox('worker-3', 10, '1 minute');
SELECT count(*) FROM statemachine.claim_outbox('worker-2', 10, '1 minute');
UPDATE statemachine.outbox_event SET lease_until = now();
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.ack_outbox(ARRAY(SELECT id FROM statemachine.outbox_event));
SELECT count(*) FROM statemachine.claim_outbox('worker-1', 10, '1 minute');
SELECT statemachine.claim_outbox('worker-1', 0, '1 minute');
\echo :LAST_ERROR_SQLSTATE
DELETE FROM statemachine.outbox_event;
\echo :LAST_ERROR_SQLSTATE

------------------------------------------------------------------------------------------
-- Bulk transitions through the front door (seed 003 §28).
------------------------------------------------------------------------------------------
-- abort: one bad case stops all, nothing is written.
SELECT * FROM statemachine.bulk_transition(ARRAY['0d000000-0000-0000-0000-000000000002', '0d000000-0000-0000-0000-000000000003']::uuid[],
       'CLOSE', 'a0000000-0000-0000-0000-000000000009', 'ADMIN', 'CLEANUP', 'year-end clean-up', 'cb000000-0000-0000-0000-000000000001');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM statemachine.case_state_transition WHERE transition_code = 'CLOSE';
-- skip: each case in its own subtransaction; the result says what happened to each.
SELECT * FROM statemachine.bulk_transition(ARRAY['0d000000-0000-0000-0000-000000000003', '0d000000-0000-0000-0000-000000000002',
       '0d000000-0000-0000-0000-000000000001', '99999999-0000-0000-0000-000000000000']::uuid[],
       'CLOSE', 'a0000000-0000-0000-0000-000000000009', 'ADMIN', 'CLEANUP', 'year-end clean-up', 'cb000000-0000-0000-0000-000000000001',
       on_error => 'skip');
-- Every history row of the bulk carries its correlation id.
SELECT case_id, transition_code, correlation_id FROM statemachine.case_state_transition
 WHERE correlation_id = 'cb000000-0000-0000-0000-000000000001' ORDER BY case_id;
-- Re-running the same bulk replays: no second row.
SELECT case_id, ok, state_version FROM statemachine.bulk_transition(ARRAY['0d000000-0000-0000-0000-000000000001']::uuid[],
       'CLOSE', 'a0000000-0000-0000-0000-000000000009', 'ADMIN', 'CLEANUP', 'year-end clean-up', 'cb000000-0000-0000-0000-000000000001');
SELECT statemachine.bulk_transition(ARRAY[]::uuid[], 'CLOSE', 'a0000000-0000-0000-0000-000000000009', 'ADMIN', NULL, NULL,
       'cb000000-0000-0000-0000-000000000002', on_error => 'ignore');
\echo :LAST_ERROR_SQLSTATE

------------------------------------------------------------------------------------------
-- Timed transitions (seed 004): EXPIRE fires by itself two seconds after PLACED.
------------------------------------------------------------------------------------------
SELECT * FROM statemachine.run_due_transitions(10);
SELECT to_state FROM statemachine.transition_case('0d000000-0000-0000-0000-000000000005', 'PAY', 'a0000000-0000-0000-0000-000000000001',
       'CLERK', 'c1000000-0000-0000-0000-000000000005');
SELECT pg_sleep(2.1);
-- O-3 and O-4 are still PLACED: both expire, as SYSTEM with reason TIMER.
SELECT case_id, transition_code, ok, to_state FROM statemachine.run_due_transitions(10) ORDER BY case_id;
SELECT case_id, actor_id, actor_role, reason_code FROM statemachine.case_state_transition WHERE transition_code = 'EXPIRE' ORDER BY case_id;
SELECT count(*) FROM statemachine.run_due_transitions(10);
-- Bulk by state: close every order that has been PAID for at least a second (O-5).
SELECT case_id, ok, to_state FROM statemachine.bulk_transition_by_state('order', 'PAID', '1 second', 'CLOSE',
       'a0000000-0000-0000-0000-000000000009', 'ADMIN', NULL, 'stale', 'cb000000-0000-0000-0000-000000000003');
SELECT statemachine.run_due_transitions(0);
\echo :LAST_ERROR_SQLSTATE

------------------------------------------------------------------------------------------
-- Corrections (seed 003 §13.2): the wrong row stays, a corrective row and a link are added.
------------------------------------------------------------------------------------------
-- O-1 was closed by the bulk; that was wrong: it should still be SHIPPED.
SELECT id AS wrong_close FROM statemachine.case_state_transition
 WHERE case_id = '0d000000-0000-0000-0000-000000000001' AND transition_code = 'CLOSE' \gset
SELECT id AS pay FROM statemachine.case_state_transition
 WHERE case_id = '0d000000-0000-0000-0000-000000000001' AND transition_code = 'PAY' \gset
SELECT id AS created FROM statemachine.case_state_transition
 WHERE case_id = '0d000000-0000-0000-0000-000000000001' AND transition_code = 'CREATE' \gset
SELECT from_state, to_state, transition_code, transition_kind, state_version, reason_text, causation_id = :'wrong_close' AS caused_by_wrong
  FROM statemachine.correct_transition(:'wrong_close', 'SHIPPED', 'closed by the year-end bulk by mistake',
       'a0000000-0000-0000-0000-000000000009', 'ADMIN', 'c2000000-0000-0000-0000-000000000001');
-- Replayed: the same row.
SELECT state_version FROM statemachine.correct_transition(:'wrong_close', 'SHIPPED', 'closed by the year-end bulk by mistake',
       'a0000000-0000-0000-0000-000000000009', 'ADMIN', 'c2000000-0000-0000-0000-000000000001');
-- The history shows both, the wrong row untouched.
SELECT state_version, transition_code, transition_kind, from_state, to_state, metadata->>'corrects_code' AS corrects
  FROM statemachine.case_history('0d000000-0000-0000-0000-000000000001');
SELECT k.wrong_transition_id = :'wrong_close' AS links_wrong, t.transition_code AS correcting, k.reason_text
  FROM statemachine.case_state_correction k JOIN statemachine.case_state_transition t ON t.id = k.correcting_transition_id;
SELECT current_state, state_version FROM statemachine.case_file WHERE id = '0d000000-0000-0000-0000-000000000001';
-- Refused: a second correction of the same row, a transition that is not the latest,
-- the CREATE row, an unknown state, no reason, an unknown transition id.
SELECT statemachine.correct_transition(:'wrong_close', 'PAID', 'again', 'a0000000-0000-0000-0000-000000000009', 'ADMIN',
       'c2000000-0000-0000-0000-000000000002');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.correct_transition(:'pay', 'PLACED', 'never paid', 'a0000000-0000-0000-0000-000000000009', 'ADMIN',
       'c2000000-0000-0000-0000-000000000002');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.correct_transition(:'created', 'PAID', 'x', 'a0000000-0000-0000-0000-000000000009', 'ADMIN',
       'c2000000-0000-0000-0000-000000000002');
\echo :LAST_ERROR_SQLSTATE
SELECT id AS corrective FROM statemachine.case_state_transition WHERE transition_code = 'CORRECT' \gset
SELECT statemachine.correct_transition(:'corrective', 'LOST', 'x', 'a0000000-0000-0000-0000-000000000009', 'ADMIN',
       'c2000000-0000-0000-0000-000000000002');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.correct_transition(:'corrective', 'PAID', ' ', 'a0000000-0000-0000-0000-000000000009', 'ADMIN',
       'c2000000-0000-0000-0000-000000000002');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.correct_transition('00000000-0000-0000-0000-000000000000', 'PAID', 'x', 'a0000000-0000-0000-0000-000000000009',
       'ADMIN', 'c2000000-0000-0000-0000-000000000002');
\echo :LAST_ERROR_SQLSTATE
-- The command id of the correction cannot be reused for something else.
SELECT statemachine.transition_case('0d000000-0000-0000-0000-000000000001', 'CLOSE', 'a0000000-0000-0000-0000-000000000009', 'ADMIN',
       'c2000000-0000-0000-0000-000000000001', reason_text => 'x');
\echo :LAST_ERROR_SQLSTATE
-- "corrections": "any" lets an older transition be corrected.
SELECT statemachine.define_machine('{"machine": "ledger", "corrections": "any",
  "states": [{"code": "A", "initial": true}, {"code": "B"}, {"code": "C", "terminal": true}],
  "transitions": [{"code": "AB", "from": "A", "to": "B"}, {"code": "BC", "from": "B", "to": "C"}]}');
SELECT id FROM statemachine.create_case('ledger', 'L-1', 'a0000000-0000-0000-0000-000000000001', 'R',
       'c3000000-0000-0000-0000-000000000001', case_id => '1e000000-0000-0000-0000-000000000001');
SELECT (statemachine.transition_case('1e000000-0000-0000-0000-000000000001', 'AB', 'a0000000-0000-0000-0000-000000000001', 'R',
        'c3000000-0000-0000-0000-000000000002')).id AS ab \gset
SELECT to_state FROM statemachine.transition_case('1e000000-0000-0000-0000-000000000001', 'BC', 'a0000000-0000-0000-0000-000000000001', 'R',
       'c3000000-0000-0000-0000-000000000003');
SELECT from_state, to_state, state_version FROM statemachine.correct_transition(:'ab', 'A', 'AB was booked on the wrong case',
       'a0000000-0000-0000-0000-000000000009', 'ADMIN', 'c3000000-0000-0000-0000-000000000004');

SELECT count(*) AS disagreements FROM statemachine.reconcile();
SELECT count(*) AS missing_events FROM statemachine.reconcile_outbox();

------------------------------------------------------------------------------------------
-- Versions and migration (seed 003 §19-20).
------------------------------------------------------------------------------------------
-- v1 of "review": three cases in flight, one in each state.
SELECT statemachine.define_machine('{"machine": "review",
  "states": [{"code": "DRAFT", "initial": true}, {"code": "REVIEW"}, {"code": "HOLD"}, {"code": "DONE", "terminal": true}],
  "transitions": [{"code": "SUBMIT", "from": "DRAFT", "to": "REVIEW"}, {"code": "PARK", "from": "REVIEW", "to": "HOLD"},
                  {"code": "RESUME", "from": "HOLD", "to": "REVIEW"}, {"code": "FINISH", "from": "REVIEW", "to": "DONE"}]}');
SELECT count(*) FROM (SELECT statemachine.create_case('review', 'R-' || n, 'a0000000-0000-0000-0000-000000000001', 'R',
       ('c4000000-0000-0000-0000-00000000000' || n)::uuid, ('2e000000-0000-0000-0000-00000000000' || n)::uuid)
  FROM generate_series(1, 3) n) c;
SELECT to_state FROM statemachine.transition_case('2e000000-0000-0000-0000-000000000002', 'SUBMIT', 'a0000000-0000-0000-0000-000000000001', 'R',
       'c4000000-0000-0000-0000-000000000012');
SELECT to_state FROM statemachine.transition_case('2e000000-0000-0000-0000-000000000003', 'SUBMIT', 'a0000000-0000-0000-0000-000000000001', 'R',
       'c4000000-0000-0000-0000-000000000013');
SELECT to_state FROM statemachine.transition_case('2e000000-0000-0000-0000-000000000003', 'PARK', 'a0000000-0000-0000-0000-000000000001', 'R',
       'c4000000-0000-0000-0000-000000000014');
-- v2 splits REVIEW into TECHNICAL_REVIEW and LEGAL_REVIEW and drops HOLD.
SELECT statemachine.define_machine('{"machine": "review",
  "states": [{"code": "DRAFT", "initial": true}, {"code": "TECHNICAL_REVIEW"}, {"code": "LEGAL_REVIEW"}, {"code": "DONE", "terminal": true}],
  "transitions": [{"code": "SUBMIT", "from": "DRAFT", "to": "TECHNICAL_REVIEW"}, {"code": "TO_LEGAL", "from": "TECHNICAL_REVIEW", "to": "LEGAL_REVIEW"},
                  {"code": "FINISH", "from": "LEGAL_REVIEW", "to": "DONE"}]}');
-- v1 cases keep v1 rules: PARK exists only in v1.
SELECT (statemachine.create_case('review', 'R-4', 'a0000000-0000-0000-0000-000000000001', 'R', 'c4000000-0000-0000-0000-000000000004',
       case_id => '2e000000-0000-0000-0000-000000000004')).machine_version AS created_under;
SELECT id, machine_version, current_state FROM statemachine.case_file WHERE machine = 'review' ORDER BY id;
-- A bad map is refused whole, every problem with its path.
SELECT * FROM statemachine.migrate_cases('review', 1, 2, '{"DRAFT": "DRAFTED", "NOPE": "DONE", "REVIEW": {"to": "DONE", "requires_manual_review": true}}',
       'a0000000-0000-0000-0000-000000000009', 'ADMIN', 'c5000000-0000-0000-0000-000000000001');
\echo :LAST_ERROR_SQLSTATE
-- Dry run (the default): REVIEW is ambiguous (technical or legal?) and flagged; HOLD has
-- no mapping. Neither is guessed.
\set review_map '{"DRAFT": "DRAFT", "DONE": "DONE", "REVIEW": {"requires_manual_review": true, "reason": "technical or legal depends on the open task"}}'
SELECT * FROM statemachine.migrate_cases('review', 1, 2, :'review_map', 'a0000000-0000-0000-0000-000000000009', 'ADMIN',
       'c5000000-0000-0000-0000-000000000001');
SELECT count(*) AS written FROM statemachine.case_state_transition WHERE transition_code = 'MIGRATE';
-- For real.
SELECT case_number, from_state, to_state, outcome FROM statemachine.migrate_cases('review', 1, 2, :'review_map',
       'a0000000-0000-0000-0000-000000000009', 'ADMIN', 'c5000000-0000-0000-0000-000000000001', dry_run => false);
SELECT case_number, machine_version, current_state, state_version FROM statemachine.case_file WHERE machine = 'review' ORDER BY case_number;
SELECT transition_code, transition_kind, policy_version, metadata->'migration'->>'from_version' AS from_v,
       metadata->'migration'->>'to_version' AS to_v FROM statemachine.case_state_transition WHERE transition_code = 'MIGRATE';
-- The migrated case follows v2 rules now.
SELECT to_state FROM statemachine.transition_case('2e000000-0000-0000-0000-000000000001', 'SUBMIT', 'a0000000-0000-0000-0000-000000000001', 'R',
       'c4000000-0000-0000-0000-000000000021');
-- Running the same migration again finds only what it left behind.
SELECT case_number, outcome FROM statemachine.migrate_cases('review', 1, 2, :'review_map',
       'a0000000-0000-0000-0000-000000000009', 'ADMIN', 'c5000000-0000-0000-0000-000000000001', dry_run => false);
-- v1 still has cases: it cannot be retired. Resolve them by hand, then it can.
SELECT statemachine.retire_version('review', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT case_number, outcome FROM statemachine.migrate_cases('review', 1, 2,
       '{"REVIEW": {"to": "LEGAL_REVIEW", "reason": "reviewed by hand: legal"}, "HOLD": {"to": "TECHNICAL_REVIEW", "reason": "reviewed by hand"}}',
       'a0000000-0000-0000-0000-000000000009', 'ADMIN', 'c5000000-0000-0000-0000-000000000002', dry_run => false);
SELECT version, status FROM statemachine.retire_version('review', 1);
SELECT version, status FROM statemachine.retire_version('review', 1);
-- Nothing migrates into a retired version, and the other way round needs an active target.
SELECT * FROM statemachine.migrate_cases('review', 2, 1, '{}', 'a0000000-0000-0000-0000-000000000009', 'ADMIN',
       'c5000000-0000-0000-0000-000000000003');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM statemachine.migrate_cases('review', 1, 9, '{}', 'a0000000-0000-0000-0000-000000000009', 'ADMIN',
       'c5000000-0000-0000-0000-000000000003');
\echo :LAST_ERROR_SQLSTATE
UPDATE statemachine.machine_version SET status = 'active';
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS disagreements FROM statemachine.reconcile();
