-- Pictures and process analytics (seed 003 §22): machine_diagram, the queue and age
-- views, stuck_cases, throughput, time-in-state percentiles, actor activity.
\set VERBOSITY default
\set SHOW_CONTEXT never
\ir fresh_install.psql
\set investigation `cat ../../examples/investigation.json`
SELECT statemachine.define_machine(:'investigation');

-- Diagrams come from the published rules: both formats, every marker.
SELECT statemachine.machine_diagram('investigation');
SELECT statemachine.machine_diagram('investigation', 1, 'dot');
SELECT statemachine.define_machine('{"machine": "investigation", "states": [{"code": "DRAFT", "initial": true},
  {"code": "SUBMITTED"}, {"code": "DONE", "terminal": true}],
  "transitions": [{"code": "SUBMIT_CASE", "from": "DRAFT", "to": "SUBMITTED", "requires_evidence": ["FORM"],
                   "reasons": [{"code": "ON_TIME", "label": "On time"}], "emit": "Submitted"},
                  {"code": "DECIDE", "from": "SUBMITTED", "to": "DONE", "guards": [{"guard": "distinct_actor", "transition": "SUBMIT_CASE", "code": "four_eyes"}]},
                  {"code": "EXPIRE", "from": "DRAFT", "to": "DONE", "after": "30 days"},
                  {"code": "UNDO", "from": "DONE", "to": "SUBMITTED", "kind": "admin"}]}');
-- No version: the latest active one.
SELECT statemachine.machine_diagram('investigation', format => 'mermaid');
SELECT statemachine.machine_diagram('investigation', 2, 'graphviz');
-- Refusals: unknown machine or version (SM009), unknown format (22023), NULLs (22004).
SELECT statemachine.machine_diagram('nope');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.machine_diagram('investigation', 7);
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.machine_diagram('investigation', 1, 'svg');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.machine_diagram('investigation', 1, NULL);
\echo :LAST_ERROR_SQLSTATE

-- Twelve cases of version 1 (pinned) moving along; all by known actors.
SELECT (statemachine.retire_version('investigation', 2)).status;
SELECT count(*) FROM (SELECT statemachine.create_case('investigation', 'A-' || n, 'a0000000-0000-0000-0000-000000000001', 'CASE_OWNER',
       gen_random_uuid(), ('b0000000-0000-0000-0000-0000000000' || lpad(n::text, 2, '0'))::uuid) FROM generate_series(1, 12) n) c;
SELECT count(*) FROM (SELECT statemachine.transition_case(('b0000000-0000-0000-0000-0000000000' || lpad(n::text, 2, '0'))::uuid,
       'SUBMIT_CASE', 'a0000000-0000-0000-0000-000000000001', 'CASE_OWNER', gen_random_uuid()) FROM generate_series(1, 8) n) t;
SELECT count(*) FROM (SELECT statemachine.transition_case(('b0000000-0000-0000-0000-0000000000' || lpad(n::text, 2, '0'))::uuid,
       'WITHDRAW_CASE', 'a0000000-0000-0000-0000-000000000001', 'CASE_OWNER', gen_random_uuid(), reason_text => 'changed my mind')
       FROM generate_series(1, 3) n) t;
SELECT count(*) FROM (SELECT statemachine.transition_case(('b0000000-0000-0000-0000-0000000000' || lpad(n::text, 2, '0'))::uuid,
       'ASSIGN_REVIEW', 'a0000000-0000-0000-0000-000000000002', 'SUPERVISOR', gen_random_uuid()) FROM generate_series(4, 6) n) t;

-- The queue: non-terminal states only (WITHDRAWN is terminal), ages are real intervals.
SELECT machine, state, cases, max_age >= avg_age AND avg_age >= interval '0' AS ages_ok FROM statemachine.v_state_queue ORDER BY 1, 2;
SELECT state, count(*) FROM statemachine.v_case_age GROUP BY state ORDER BY state;
-- Stuck: everything waiting is older than 0 seconds, nothing is older than a day.
SELECT state, count(*) FROM statemachine.stuck_cases('0 seconds') GROUP BY state ORDER BY state;
SELECT count(*) FROM statemachine.stuck_cases('1 day', 'investigation');
SELECT count(*) FROM statemachine.stuck_cases('0 seconds', 'no such machine');
-- Throughput counts every history row once; time in state covers every stay that ended.
SELECT transition_code, transitions, cases, day = current_date AS today FROM statemachine.v_transition_throughput ORDER BY 1;
SELECT state, stays, p50 <= p90 AND p90 <= p99 AND p99 <= longest AS ordered FROM statemachine.v_time_in_state ORDER BY state;
SELECT actor_role, transition_code, transitions, cases FROM statemachine.v_actor_activity ORDER BY 1, 2;
SELECT count(*) FROM statemachine.transition_throughput(now() + interval '1 minute');

-- The indexes the questions need (seq scans disabled to show each is usable at all; the
-- BRIN index on occurred_at only wins on a large history: docs/analytics.md shows that plan).
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT * FROM statemachine.case_file c
 WHERE c.machine = 'investigation' AND c.current_state = 'SUBMITTED' AND c.state_entered_at < now() - interval '2 days'
 ORDER BY c.state_entered_at;
EXPLAIN (COSTS OFF) SELECT p.occurred_at FROM statemachine.case_state_transition p
 WHERE p.case_id = 'b0000000-0000-0000-0000-000000000001' AND p.state_version < 3 ORDER BY p.state_version DESC LIMIT 1;
RESET enable_seqscan;
