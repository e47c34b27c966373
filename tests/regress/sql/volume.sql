-- The set-based paths (issue 14): bulk_transition and run_due_transitions over more cases
-- than one chunk (5000) holds — refusals per case, abort across chunks, replay, a case
-- and its dimension in one call, guards and events, seals — and what a bulk leaves is
-- what single calls would have left (verify_history, reconcile, derived command ids).
\set VERBOSITY default
\set SHOW_CONTEXT never
\ir fresh_install.psql
SELECT statemachine.define_machine('{"machine": "vol", "states": [{"code": "A", "initial": true}, {"code": "B"}, {"code": "C", "terminal": true}],
  "transitions": [{"code": "GO", "from": "A", "to": "B", "roles": ["AGENT"], "emit": "went", "audit_guards": true,
                   "guards": [{"guard": "distinct_actor", "transition": "CREATE"}]},
                  {"code": "BACK", "from": "B", "to": "A", "roles": ["AGENT"]},
                  {"code": "TICK", "from": "A", "to": "C", "after": "1 day"}]}');
-- 12,000 cases (three chunks), imported in state A two days ago by actor ...a1.
CREATE TEMP TABLE ids AS
SELECT case_id AS id, case_number FROM statemachine.import_cases('vol',
  (SELECT jsonb_agg(jsonb_build_object('case_number', 'V-' || g, 'steps',
          jsonb_build_array(jsonb_build_object('state', 'A', 'at', now() - interval '2 days')))) FROM generate_series(1, 12000) g),
  '000000a1-0000-0000-0000-000000000000', 'AGENT', 'c1000000-0000-0000-0000-000000000001');
SELECT count(*) FROM ids;
-- Three cases are moved first, one by one: the bulk finds them in B.
SELECT count(*) FROM (SELECT statemachine.transition_case(id, 'GO', '000000a2-0000-0000-0000-000000000000', 'AGENT', gen_random_uuid())
                        FROM ids WHERE case_number IN ('V-3', 'V-6001', 'V-11999')) s;
-- on_error abort: one refusal (wherever it is, here in some chunk) refuses the whole call.
DO $$
BEGIN
    PERFORM statemachine.bulk_transition(ARRAY(SELECT id FROM ids), 'GO', '000000a2-0000-0000-0000-000000000000', 'AGENT',
                                         NULL, NULL, 'b0000000-0000-0000-0000-000000000001');
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'bulk refused: %', SQLSTATE;
END $$;
SELECT current_state, count(*) FROM statemachine.case_file WHERE machine = 'vol' GROUP BY 1 ORDER BY 1;
-- on_error skip, the importer itself: four eyes refuses every case it may try (SM002),
-- the three in B are illegal (SM001); nothing is written.
SELECT ok, error_sqlstate, count(*) FROM statemachine.bulk_transition(ARRAY(SELECT id FROM ids), 'GO',
       '000000a1-0000-0000-0000-000000000000', 'AGENT', NULL, NULL, 'b0000000-0000-0000-0000-000000000002', 'skip')
 GROUP BY 1, 2 ORDER BY 1, 2;
-- Another actor: every case in A moves, with its history row, event and guard audit row.
SELECT ok, to_state, state_version, error_sqlstate, count(*) FROM statemachine.bulk_transition(ARRAY(SELECT id FROM ids), 'GO',
       '000000a2-0000-0000-0000-000000000000', 'AGENT', 'YEAR_END', 'moved in bulk', 'b0000000-0000-0000-0000-000000000003', 'skip')
 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4;
SELECT count(*) AS rows, count(DISTINCT command_id) AS commands, min(reason_code), min(reason_text)
  FROM statemachine.case_state_transition WHERE correlation_id = 'b0000000-0000-0000-0000-000000000003';
SELECT count(*) AS events FROM statemachine.outbox_event o JOIN statemachine.case_state_transition t ON t.id = o.transition_id
 WHERE t.correlation_id = 'b0000000-0000-0000-0000-000000000003';
SELECT passed, count(*) AS audit_rows FROM statemachine.case_transition_guard_result g
  JOIN statemachine.case_state_transition t ON t.id = g.transition_id
 WHERE t.correlation_id = 'b0000000-0000-0000-0000-000000000003' GROUP BY 1;
-- The command ids are those derived_id gives (so a bulk begun before an upgrade replays after it).
SELECT count(*) AS derived FROM statemachine.case_state_transition t
 WHERE t.correlation_id = 'b0000000-0000-0000-0000-000000000003'
   AND t.command_id = statemachine.derived_id('bulk', 'b0000000-0000-0000-0000-000000000003', t.case_id::text, 'GO');
-- The same bulk again replays: the same answers, no new row.
SELECT ok, to_state, state_version, error_sqlstate, count(*) FROM statemachine.bulk_transition(ARRAY(SELECT id FROM ids), 'GO',
       '000000a2-0000-0000-0000-000000000000', 'AGENT', 'YEAR_END', 'moved in bulk', 'b0000000-0000-0000-0000-000000000003', 'skip')
 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4;
SELECT count(*) AS rows FROM statemachine.case_state_transition WHERE correlation_id = 'b0000000-0000-0000-0000-000000000003';
-- NULLs and duplicates in case_ids are ignored.
SELECT case_number, ok, to_state FROM statemachine.bulk_transition(
       ARRAY[(SELECT id FROM ids WHERE case_number = 'V-5'), NULL, (SELECT id FROM ids WHERE case_number = 'V-5')], 'BACK',
       '000000a2-0000-0000-0000-000000000000', 'AGENT', NULL, NULL, 'b0000000-0000-0000-0000-000000000004') b
  JOIN ids ON ids.id = b.case_id;

-- A case and its dimension in one bulk: the dimension's code moves the dimension, once;
-- the second request finds it moved (SM001), judged on what the first wrote.
SELECT statemachine.define_machine('{"machine": "vol_sla", "states": [{"code": "RUNNING", "initial": true}, {"code": "PAUSED"}],
  "transitions": [{"code": "PAUSE", "from": "RUNNING", "to": "PAUSED"}, {"code": "RESUME", "from": "PAUSED", "to": "RUNNING"}]}');
SELECT current_state FROM statemachine.attach_dimension((SELECT id FROM ids WHERE case_number = 'V-7'), 'vol_sla',
       '000000a2-0000-0000-0000-000000000000', 'AGENT', 'd1000000-0000-0000-0000-000000000001');
SELECT ok, to_state, error_sqlstate FROM statemachine.bulk_transition(
       ARRAY(SELECT c.id FROM statemachine.case_file c, ids WHERE ids.case_number = 'V-7' AND ids.id IN (c.id, c.root_case_id)), 'PAUSE',
       '000000a2-0000-0000-0000-000000000000', 'AGENT', NULL, NULL, 'b0000000-0000-0000-0000-000000000005', 'skip')
 ORDER BY ok DESC;
SELECT c.machine, c.current_state, c.state_version FROM statemachine.case_file c, ids
 WHERE ids.case_number = 'V-7' AND ids.id IN (c.id, c.root_case_id) ORDER BY 1;

-- Timers at volume: 6,000 due in one call (two chunks), each once.
SELECT count(*) FROM statemachine.import_cases('vol',
  (SELECT jsonb_agg(jsonb_build_object('case_number', 'T-' || g, 'steps',
          jsonb_build_array(jsonb_build_object('state', 'A', 'at', now() - interval '2 days')))) FROM generate_series(1, 6000) g),
  '000000a1-0000-0000-0000-000000000000', 'AGENT', 'c1000000-0000-0000-0000-000000000002');
SELECT transition_code, ok, to_state, count(*) FROM statemachine.run_due_transitions(10000) GROUP BY 1, 2, 3;
SELECT count(*) FROM statemachine.run_due_transitions(10000);
SELECT count(*) AS timer_rows FROM statemachine.case_state_transition WHERE transition_code = 'TICK' AND actor_role = 'SYSTEM' AND reason_code = 'TIMER';

-- run_timers: the same, committing every chunk (a procedure; outside a transaction block).
SELECT count(*) FROM statemachine.import_cases('vol',
  (SELECT jsonb_agg(jsonb_build_object('case_number', 'R-' || g, 'steps',
          jsonb_build_array(jsonb_build_object('state', 'A', 'at', now() - interval '2 days')))) FROM generate_series(1, 2500) g),
  '000000a1-0000-0000-0000-000000000000', 'AGENT', 'c1000000-0000-0000-0000-000000000003');
CALL statemachine.run_timers(2400, 1000);
SELECT current_state, count(*) FROM statemachine.case_file WHERE case_number LIKE 'R-%' GROUP BY 1 ORDER BY 1;
CALL statemachine.run_timers();
SELECT current_state, count(*) FROM statemachine.case_file WHERE case_number LIKE 'R-%' GROUP BY 1 ORDER BY 1;
\set VERBOSITY terse
CALL statemachine.run_timers(0);
BEGIN;
CALL statemachine.run_timers(10, 5);
ROLLBACK;
\set VERBOSITY default

-- Errors that are not refusals (here a governed table's own CHECK) are one case's, not
-- the call's, under on_error => 'skip': that case is reported with its SQLSTATE, the
-- others move (as transition_case per case would have it).
SELECT statemachine.define_machine('{"machine": "vol_gov", "states": [{"code": "A", "initial": true}, {"code": "B"}, {"code": "Z", "terminal": true}],
  "transitions": [{"code": "GO", "from": "A", "to": "B"}, {"code": "END", "from": "B", "to": "Z"},
                  {"code": "TICK", "from": "A", "to": "B", "after": "1 hour"}]}');
CREATE TABLE public.vol_prod (id int PRIMARY KEY, status text, CONSTRAINT vol_no_b_for_2 CHECK (id <> 2 OR status <> 'B'));
INSERT INTO public.vol_prod SELECT g, 'A' FROM generate_series(1, 6) g;
SELECT count(*) FROM statemachine.import_cases('vol_gov',
  (SELECT jsonb_agg(jsonb_build_object('case_number', g::text, 'steps',
          jsonb_build_array(jsonb_build_object('state', 'A', 'at', now() - interval '2 days')))) FROM generate_series(1, 6) g),
  '000000a1-0000-0000-0000-000000000000', 'AGENT', 'c1000000-0000-0000-0000-000000000004');
SELECT count(*) AS governed FROM (SELECT statemachine.govern_table('public.vol_prod', 'id', 'status', 'vol_gov')) g;
SELECT c.case_number, b.ok, b.to_state, b.error_sqlstate FROM statemachine.bulk_transition(
       ARRAY(SELECT id FROM statemachine.case_file WHERE machine = 'vol_gov' AND case_number IN ('1', '2', '3')), 'GO',
       '000000a2-0000-0000-0000-000000000000', 'AGENT', NULL, NULL, 'b0000000-0000-0000-0000-000000000006', 'skip') b
  JOIN statemachine.case_file c ON c.id = b.case_id ORDER BY 1;
-- Timers the same way: the failing one backs off instead of blocking every run.
SELECT c.case_number, r.ok, r.to_state, r.error_sqlstate FROM statemachine.run_due_transitions(100) r
  JOIN statemachine.case_file c ON c.id = r.case_id ORDER BY 1;
SELECT c.case_number, b.attempts, b.last_sqlstate FROM statemachine.timer_backoff b JOIN statemachine.case_file c ON c.id = b.case_id
 WHERE c.machine = 'vol_gov';
SELECT count(*) FROM statemachine.run_due_transitions(100);
SELECT id, status FROM public.vol_prod ORDER BY id;

-- A sql guard sees what the cases before it in the same bulk wrote: "at most two cases in B"
-- lets two of ten through, as ten single calls in a row would.
CREATE FUNCTION public.vol_cap(case_id uuid, context jsonb) RETURNS boolean LANGUAGE sql STABLE SET search_path = public, pg_temp
    AS $$ SELECT count(*) < 2 FROM statemachine.case_file WHERE machine = 'vol_cap' AND current_state = 'B' $$;
SELECT code FROM statemachine.register_guard('vol_cap', 'public.vol_cap(uuid,jsonb)', 'at most two in B');
SELECT statemachine.define_machine('{"machine": "vol_cap", "states": [{"code": "A", "initial": true}, {"code": "B", "terminal": true}],
  "transitions": [{"code": "GO", "from": "A", "to": "B", "guards": [{"guard": "sql", "name": "vol_cap"}]}]}');
SELECT count(*) FROM statemachine.import_cases('vol_cap',
  (SELECT jsonb_agg(jsonb_build_object('case_number', g::text, 'steps', jsonb_build_array(jsonb_build_object('state', 'A', 'at', now() - interval '1 day'))))
     FROM generate_series(1, 10) g),
  '000000a1-0000-0000-0000-000000000000', 'AGENT', 'c1000000-0000-0000-0000-000000000005');
SELECT ok, error_sqlstate, count(*) FROM statemachine.bulk_transition(ARRAY(SELECT id FROM statemachine.case_file WHERE machine = 'vol_cap'),
       'GO', '000000a2-0000-0000-0000-000000000000', 'AGENT', NULL, NULL, 'b0000000-0000-0000-0000-000000000007', 'skip')
 GROUP BY 1, 2 ORDER BY 1, 2;

-- A verdict guard's row type is checked at every call: whoever owns the composite type
-- may change its columns after register_guard looked. A "passed" column turned text is
-- refused (42804), never read as a boolean; a renamed column too — and a PL/pgSQL
-- caller that catches the refusal goes on in a healthy transaction.
CREATE ROLE sm_vol_type_owner NOLOGIN;
CREATE TYPE public.vol_verdict AS (passed boolean, evidence jsonb);
ALTER TYPE public.vol_verdict OWNER TO sm_vol_type_owner;
CREATE FUNCTION public.vol_says_no(case_id uuid, context jsonb) RETURNS public.vol_verdict LANGUAGE plpgsql STABLE
    SET search_path = public, pg_temp AS $$ BEGIN RETURN ROW(false, '{"why": "no"}'::jsonb)::public.vol_verdict; END $$;
SELECT code, returns FROM statemachine.register_guard('vol_says_no', 'public.vol_says_no(uuid,jsonb)', 'refuses');
SELECT statemachine.define_machine('{"machine": "vol_verdict", "states": [{"code": "A", "initial": true}, {"code": "B", "terminal": true}],
  "transitions": [{"code": "GO", "from": "A", "to": "B", "audit_guards": true, "guards": [{"guard": "sql", "name": "vol_says_no"}]}]}');
SELECT count(*) FROM statemachine.import_cases('vol_verdict',
  (SELECT jsonb_agg(jsonb_build_object('case_number', g::text, 'steps', jsonb_build_array(jsonb_build_object('state', 'A', 'at', now() - interval '1 day'))))
     FROM generate_series(1, 3) g),
  '000000a1-0000-0000-0000-000000000000', 'AGENT', 'c1000000-0000-0000-0000-000000000006');
SELECT ok, error_sqlstate FROM statemachine.bulk_transition(ARRAY(SELECT id FROM statemachine.case_file WHERE machine = 'vol_verdict' AND case_number = '1'),
       'GO', '000000a2-0000-0000-0000-000000000000', 'AGENT', NULL, NULL, 'b0000000-0000-0000-0000-000000000008', 'skip');
SET ROLE sm_vol_type_owner;
ALTER TYPE public.vol_verdict ALTER ATTRIBUTE passed TYPE text;
RESET ROLE;
SELECT ok, error_sqlstate, error_message FROM statemachine.bulk_transition(ARRAY(SELECT id FROM statemachine.case_file WHERE machine = 'vol_verdict' AND case_number = '2'),
       'GO', '000000a2-0000-0000-0000-000000000000', 'AGENT', NULL, NULL, 'b0000000-0000-0000-0000-000000000009', 'skip');
SET ROLE sm_vol_type_owner;
ALTER TYPE public.vol_verdict RENAME ATTRIBUTE evidence TO ev;
RESET ROLE;
CREATE TABLE public.vol_knob (k text);
DO $$
BEGIN
    INSERT INTO public.vol_knob VALUES ('before');
    BEGIN
        PERFORM statemachine.transition_case((SELECT id FROM statemachine.case_file WHERE machine = 'vol_verdict' AND case_number = '3'),
                                             'GO', '000000a2-0000-0000-0000-000000000000', 'AGENT', 'b0000000-0000-0000-0000-00000000000a');
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'refused: %', SQLSTATE;
    END;
END $$;
SELECT current_setting('transaction_read_only') AS read_only, current_setting('search_path') AS search_path,
       (SELECT count(*) FROM public.vol_knob) AS knob_rows;
SELECT current_state, count(*) FROM statemachine.case_file WHERE machine = 'vol_verdict' GROUP BY 1;

-- What the bulks wrote is sealed and chained like every row, and the cases agree with it.
SELECT count(*) AS tampered FROM statemachine.verify_history();
SELECT count(*) AS disagreements FROM statemachine.reconcile();

-- Roles are cluster-wide: leave none behind.
DROP TABLE public.vol_knob;
DROP FUNCTION public.vol_says_no(uuid, jsonb);
DROP TYPE public.vol_verdict;
DROP ROLE sm_vol_type_owner;
