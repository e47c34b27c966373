-- pg_statemachine 0.1.0 -> 0.2.0: machine diagrams and process analytics (seed 003 §22).
--
-- This file is both the upgrade script (ALTER EXTENSION pg_statemachine UPDATE) and,
-- after sql/schema.sql, part of every fresh install: each object is written once.
-- tests/upgrade/run proves that an upgraded 0.1.0 and a fresh 0.2.0 have the same catalog.

------------------------------------------------------------------------------------------
-- Pictures
------------------------------------------------------------------------------------------

CREATE FUNCTION statemachine.machine_diagram(machine text, version integer DEFAULT NULL, format text DEFAULT 'mermaid')
    RETURNS text
    LANGUAGE c STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_machine_diagram';
COMMENT ON FUNCTION statemachine.machine_diagram(text, integer, text) IS 'A published machine version (default: the latest active one) drawn from its rules as Mermaid stateDiagram-v2 (format ''mermaid'') or Graphviz DOT (''dot''): initial and terminal states marked, each edge labelled with its code, roles and what it requires (reason, evidence, guards, after, emits); reopen/reversal/correction/admin edges styled apart.';

------------------------------------------------------------------------------------------
-- Process analytics (seed 003 §22). Windowed questions are functions with a `since`
-- argument; the views ask them for the last 30 days. Days are in the session's TimeZone.
------------------------------------------------------------------------------------------

-- The history is append-only and written in time order, so a BRIN index on occurred_at
-- finds any time window for a few pages of index and nearly no cost per insert.
CREATE INDEX case_transition_occurred_brin_idx ON statemachine.case_state_transition USING brin (occurred_at);

CREATE VIEW statemachine.v_state_queue AS
SELECT c.machine,
       c.current_state AS state,
       pg_catalog.count(*) AS cases,
       pg_catalog.min(c.state_entered_at) AS oldest_entered_at,
       pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.min(c.state_entered_at) AS max_age,
       pg_catalog.avg(pg_catalog.now() OPERATOR(pg_catalog.-) c.state_entered_at) AS avg_age
  FROM statemachine.case_file c
  JOIN statemachine.state s ON s.machine_version_id OPERATOR(pg_catalog.=) c.machine_version_id
                           AND s.code OPERATOR(pg_catalog.=) c.current_state
 WHERE NOT s.is_terminal
 GROUP BY c.machine, c.current_state;
COMMENT ON VIEW statemachine.v_state_queue IS 'The work queue: per machine and non-terminal state, how many cases wait there and for how long (seed 003 §22 queue query).';
COMMENT ON COLUMN statemachine.v_state_queue.machine IS 'Machine.';
COMMENT ON COLUMN statemachine.v_state_queue.state IS 'A non-terminal state (of the case''s own version).';
COMMENT ON COLUMN statemachine.v_state_queue.cases IS 'Cases (and dimensions) currently in it.';
COMMENT ON COLUMN statemachine.v_state_queue.oldest_entered_at IS 'When the longest-waiting of them entered the state.';
COMMENT ON COLUMN statemachine.v_state_queue.max_age IS 'How long the longest-waiting one has been there.';
COMMENT ON COLUMN statemachine.v_state_queue.avg_age IS 'Average time in the state so far.';

CREATE VIEW statemachine.v_case_age AS
SELECT c.id AS case_id,
       c.machine,
       c.case_number,
       c.current_state AS state,
       c.state_entered_at,
       pg_catalog.now() OPERATOR(pg_catalog.-) c.state_entered_at AS time_in_state,
       c.state_version,
       c.root_case_id
  FROM statemachine.case_file c
  JOIN statemachine.state s ON s.machine_version_id OPERATOR(pg_catalog.=) c.machine_version_id
                           AND s.code OPERATOR(pg_catalog.=) c.current_state
 WHERE NOT s.is_terminal;
COMMENT ON VIEW statemachine.v_case_age IS 'Every case in a non-terminal state with its time in that state. Filter on state_entered_at (not time_in_state) so that the index on (machine, current_state, state_entered_at) is used; stuck_cases() does.';
COMMENT ON COLUMN statemachine.v_case_age.case_id IS 'The case (or dimension).';
COMMENT ON COLUMN statemachine.v_case_age.machine IS 'Its machine.';
COMMENT ON COLUMN statemachine.v_case_age.case_number IS 'Its business number.';
COMMENT ON COLUMN statemachine.v_case_age.state IS 'Its current, non-terminal state.';
COMMENT ON COLUMN statemachine.v_case_age.state_entered_at IS 'When it entered that state.';
COMMENT ON COLUMN statemachine.v_case_age.time_in_state IS 'now() - state_entered_at.';
COMMENT ON COLUMN statemachine.v_case_age.state_version IS 'Its state_version (for expected_version).';
COMMENT ON COLUMN statemachine.v_case_age.root_case_id IS 'For a dimension, the case it belongs to; NULL for a case.';

CREATE FUNCTION statemachine.stuck_cases(older_than interval, machine text DEFAULT NULL)
    RETURNS TABLE (case_id uuid, machine text, case_number text, state text, state_entered_at timestamptz, time_in_state interval)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    -- One index range scan per (machine, non-terminal state): no scan of the whole table.
    SELECT c.id, c.machine, c.case_number, c.current_state, c.state_entered_at, now() - c.state_entered_at
      FROM (SELECT DISTINCT v.machine, s.code
              FROM statemachine.state s
              JOIN statemachine.machine_version v ON v.id = s.machine_version_id
             WHERE NOT s.is_terminal AND ($2 IS NULL OR v.machine = $2)) q
     CROSS JOIN LATERAL (
            SELECT c.* FROM statemachine.case_file c
             WHERE c.machine = q.machine AND c.current_state = q.code
               AND c.state_entered_at < now() - $1) c
      JOIN statemachine.state s ON s.machine_version_id = c.machine_version_id AND s.code = c.current_state
     WHERE NOT s.is_terminal
     ORDER BY c.state_entered_at, c.id
$$;
COMMENT ON FUNCTION statemachine.stuck_cases(interval, text) IS 'Cases (of one machine, or all) that have been in a non-terminal state longer than older_than, longest first (seed 003 §22: "cases stuck in SUBMITTED for more than 2 days").';

CREATE FUNCTION statemachine.transition_throughput(since timestamptz)
    RETURNS TABLE (machine text, transition_code text, day date, transitions bigint, cases bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.machine, t.transition_code, t.occurred_at::date, count(*), count(DISTINCT t.case_id)
      FROM statemachine.case_state_transition t
     WHERE t.occurred_at >= $1
     GROUP BY 1, 2, 3
     ORDER BY 3, 1, 2
$$;
COMMENT ON FUNCTION statemachine.transition_throughput(timestamptz) IS 'Transitions per machine, transition code (CREATE included) and day since a moment: process throughput (seed 003 §22).';

CREATE VIEW statemachine.v_transition_throughput AS
SELECT * FROM statemachine.transition_throughput(pg_catalog.now() OPERATOR(pg_catalog.-) interval '30 days');
COMMENT ON VIEW statemachine.v_transition_throughput IS 'transition_throughput() over the last 30 days.';
COMMENT ON COLUMN statemachine.v_transition_throughput.machine IS 'Machine.';
COMMENT ON COLUMN statemachine.v_transition_throughput.transition_code IS 'Transition code (CREATE for new cases).';
COMMENT ON COLUMN statemachine.v_transition_throughput.day IS 'Day, in the session''s TimeZone.';
COMMENT ON COLUMN statemachine.v_transition_throughput.transitions IS 'Transitions with that code that day.';
COMMENT ON COLUMN statemachine.v_transition_throughput.cases IS 'Distinct cases they moved.';

CREATE FUNCTION statemachine.time_in_state(since timestamptz)
    RETURNS TABLE (machine text, state text, stays bigint, p50 interval, p90 interval, p99 interval, longest interval)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    -- A stay ends with a history row that changes the state (l) and began with the
    -- latest earlier row that changed it (e) — found by the (case_id, state_version) key.
    SELECT l.machine, l.from_state, count(*),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY l.occurred_at - e.occurred_at),
           percentile_cont(0.9) WITHIN GROUP (ORDER BY l.occurred_at - e.occurred_at),
           percentile_cont(0.99) WITHIN GROUP (ORDER BY l.occurred_at - e.occurred_at),
           max(l.occurred_at - e.occurred_at)
      FROM statemachine.case_state_transition l
     CROSS JOIN LATERAL (
            SELECT p.occurred_at FROM statemachine.case_state_transition p
             WHERE p.case_id = l.case_id AND p.state_version < l.state_version
               AND p.from_state IS DISTINCT FROM p.to_state
             ORDER BY p.state_version DESC LIMIT 1) e
     WHERE l.occurred_at >= $1 AND l.from_state IS DISTINCT FROM l.to_state AND l.from_state IS NOT NULL
     GROUP BY 1, 2
     ORDER BY 1, 2
$$;
COMMENT ON FUNCTION statemachine.time_in_state(timestamptz) IS 'Time-in-state percentiles per machine and state, over the stays that ended since a moment (stays still open are in v_case_age).';

CREATE VIEW statemachine.v_time_in_state AS
SELECT * FROM statemachine.time_in_state(pg_catalog.now() OPERATOR(pg_catalog.-) interval '30 days');
COMMENT ON VIEW statemachine.v_time_in_state IS 'time_in_state() over the stays that ended in the last 30 days.';
COMMENT ON COLUMN statemachine.v_time_in_state.machine IS 'Machine.';
COMMENT ON COLUMN statemachine.v_time_in_state.state IS 'The state stayed in.';
COMMENT ON COLUMN statemachine.v_time_in_state.stays IS 'Stays in it that ended in the window.';
COMMENT ON COLUMN statemachine.v_time_in_state.p50 IS 'Median stay.';
COMMENT ON COLUMN statemachine.v_time_in_state.p90 IS '90th percentile stay.';
COMMENT ON COLUMN statemachine.v_time_in_state.p99 IS '99th percentile stay.';
COMMENT ON COLUMN statemachine.v_time_in_state.longest IS 'Longest stay.';

CREATE FUNCTION statemachine.actor_activity(since timestamptz)
    RETURNS TABLE (actor_id uuid, actor_role text, machine text, transition_code text, transitions bigint, cases bigint,
                   first_at timestamptz, last_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.actor_id, t.actor_role, t.machine, t.transition_code, count(*), count(DISTINCT t.case_id),
           min(t.occurred_at), max(t.occurred_at)
      FROM statemachine.case_state_transition t
     WHERE t.occurred_at >= $1
     GROUP BY 1, 2, 3, 4
     ORDER BY 5 DESC, 1, 2, 3, 4
$$;
COMMENT ON FUNCTION statemachine.actor_activity(timestamptz) IS 'Who did what since a moment: transitions per actor, role, machine and transition code (seed 003 §14, §24).';

CREATE VIEW statemachine.v_actor_activity AS
SELECT * FROM statemachine.actor_activity(pg_catalog.now() OPERATOR(pg_catalog.-) interval '30 days');
COMMENT ON VIEW statemachine.v_actor_activity IS 'actor_activity() over the last 30 days.';
COMMENT ON COLUMN statemachine.v_actor_activity.actor_id IS 'Who.';
COMMENT ON COLUMN statemachine.v_actor_activity.actor_role IS 'In which role.';
COMMENT ON COLUMN statemachine.v_actor_activity.machine IS 'Machine.';
COMMENT ON COLUMN statemachine.v_actor_activity.transition_code IS 'What they did.';
COMMENT ON COLUMN statemachine.v_actor_activity.transitions IS 'How often.';
COMMENT ON COLUMN statemachine.v_actor_activity.cases IS 'On how many distinct cases.';
COMMENT ON COLUMN statemachine.v_actor_activity.first_at IS 'First time in the window.';
COMMENT ON COLUMN statemachine.v_actor_activity.last_at IS 'Latest time.';

-- Like everything in the schema: nothing for PUBLIC.
REVOKE ALL ON FUNCTION statemachine.machine_diagram(text, integer, text), statemachine.stuck_cases(interval, text),
    statemachine.transition_throughput(timestamptz), statemachine.time_in_state(timestamptz),
    statemachine.actor_activity(timestamptz) FROM PUBLIC;
REVOKE ALL ON statemachine.v_state_queue, statemachine.v_case_age, statemachine.v_transition_throughput,
    statemachine.v_time_in_state, statemachine.v_actor_activity FROM PUBLIC;
