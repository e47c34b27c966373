-- pg_statemachine 0.5.0 -> 0.6.0: distributable (issue 15) — every case-keyed table
-- carries its case, and statemachine.distribute() turns an installation on a Citus
-- coordinator into a distributed one (docs/scaling.md).
--
-- This file is both the upgrade script (ALTER EXTENSION pg_statemachine UPDATE) and,
-- after sql/schema.sql and the earlier upgrade scripts, part of every fresh install.

------------------------------------------------------------------------------------------
-- The three tables that reached their case only through another row now carry it, as a
-- table distributed by case must (and foreign keys between distributed tables go through
-- it). Existing rows are filled from the rows they hang off.
------------------------------------------------------------------------------------------

ALTER TABLE statemachine.case_transition_evidence ADD COLUMN case_id uuid;
ALTER TABLE statemachine.case_transition_guard_result ADD COLUMN case_id uuid;
ALTER TABLE statemachine.case_assignment_release ADD COLUMN case_id uuid;

ALTER TABLE statemachine.case_transition_evidence DISABLE TRIGGER zz_guard_direct_write;
ALTER TABLE statemachine.case_transition_guard_result DISABLE TRIGGER zz_guard_direct_write;
ALTER TABLE statemachine.case_assignment_release DISABLE TRIGGER zz_guard_direct_write;
UPDATE statemachine.case_transition_evidence e SET case_id = t.case_id
  FROM statemachine.case_state_transition t WHERE t.id OPERATOR(pg_catalog.=) e.transition_id;
UPDATE statemachine.case_transition_guard_result g SET case_id = t.case_id
  FROM statemachine.case_state_transition t WHERE t.id OPERATOR(pg_catalog.=) g.transition_id;
UPDATE statemachine.case_assignment_release r SET case_id = a.case_id
  FROM statemachine.case_assignment a WHERE a.id OPERATOR(pg_catalog.=) r.assignment_id;
ALTER TABLE statemachine.case_transition_evidence ENABLE ALWAYS TRIGGER zz_guard_direct_write;
ALTER TABLE statemachine.case_transition_guard_result ENABLE ALWAYS TRIGGER zz_guard_direct_write;
ALTER TABLE statemachine.case_assignment_release ENABLE ALWAYS TRIGGER zz_guard_direct_write;

ALTER TABLE statemachine.case_transition_evidence ALTER COLUMN case_id SET NOT NULL,
    ADD CONSTRAINT case_transition_evidence_case_id_fkey FOREIGN KEY (case_id) REFERENCES statemachine.case_file (id) DEFERRABLE;
ALTER TABLE statemachine.case_transition_guard_result ALTER COLUMN case_id SET NOT NULL,
    ADD CONSTRAINT case_transition_guard_result_case_id_fkey FOREIGN KEY (case_id) REFERENCES statemachine.case_file (id) DEFERRABLE;
ALTER TABLE statemachine.case_assignment_release ALTER COLUMN case_id SET NOT NULL,
    ADD CONSTRAINT case_assignment_release_case_id_fkey FOREIGN KEY (case_id) REFERENCES statemachine.case_file (id) DEFERRABLE;
COMMENT ON COLUMN statemachine.case_transition_evidence.case_id IS 'The case of the transition (and of the evidence): the key a distributed installation shards by.';
COMMENT ON COLUMN statemachine.case_transition_guard_result.case_id IS 'The case of the transition: the key a distributed installation shards by.';
COMMENT ON COLUMN statemachine.case_assignment_release.case_id IS 'The case of the released assignment: the key a distributed installation shards by.';

------------------------------------------------------------------------------------------
-- The remote door (src/remote_door.rs): on a distributed installation the write path
-- carries its door to the nodes that hold the rows it writes, as a signed token in
-- statemachine.remote_door, which Citus propagates as a SET LOCAL to every connection of
-- the transaction. Citus propagates a SET LOCAL only from a function or a transaction
-- block, so the write path sets it through this function. No SET clause: a function with
-- one would undo the SET LOCAL on return. Setting the value opens nothing by itself: the
-- guards on the other nodes verify it.
------------------------------------------------------------------------------------------

CREATE FUNCTION statemachine.remote_door_set(token text) RETURNS void
    LANGUAGE plpgsql VOLATILE
    AS $fn$
DECLARE
    propagate text := pg_catalog.current_setting('citus.propagate_set_commands', true);
BEGIN
    PERFORM pg_catalog.set_config('citus.propagate_set_commands', 'local', true);
    EXECUTE pg_catalog.format('SET LOCAL statemachine.remote_door = %L', token);
    PERFORM pg_catalog.set_config('citus.propagate_set_commands', COALESCE(propagate, 'none'), true);
END
$fn$;
REVOKE ALL ON FUNCTION statemachine.remote_door_set(text) FROM PUBLIC;
COMMENT ON FUNCTION statemachine.remote_door_set(text) IS 'Internal (distributed installations): sets statemachine.remote_door for this transaction on this node and, through Citus''s SET LOCAL propagation, on every node the transaction reaches. The write path calls it; a value it did not sign opens nothing.';

------------------------------------------------------------------------------------------
-- statemachine.distribute() (src/distribute.rs), and the one choice it records.
------------------------------------------------------------------------------------------

CREATE TABLE statemachine.installation_setting (
    name  text PRIMARY KEY CONSTRAINT installation_setting_name_chk CHECK (name IN ('command_scope')),
    value text NOT NULL,
    CONSTRAINT installation_setting_command_scope_chk CHECK (name <> 'command_scope' OR value IN ('installation', 'case'))
);
COMMENT ON TABLE statemachine.installation_setting IS 'Choices made for the whole installation, by statemachine.distribute(): command_scope (installation: a command id names one command across all cases, as on one node; case: within its case only).';
COMMENT ON COLUMN statemachine.installation_setting.name IS 'The setting: command_scope.';
COMMENT ON COLUMN statemachine.installation_setting.value IS 'Its value: installation or case.';
CREATE TRIGGER zz_guard_direct_write BEFORE INSERT OR UPDATE OR DELETE ON statemachine.installation_setting
    FOR EACH ROW EXECUTE FUNCTION statemachine.guard_direct_write();
CREATE TRIGGER zz_guard_direct_truncate BEFORE TRUNCATE ON statemachine.installation_setting
    FOR EACH STATEMENT EXECUTE FUNCTION statemachine.guard_direct_write();
ALTER TABLE statemachine.installation_setting ENABLE ALWAYS TRIGGER zz_guard_direct_write;
ALTER TABLE statemachine.installation_setting ENABLE ALWAYS TRIGGER zz_guard_direct_truncate;
SELECT pg_catalog.pg_extension_config_dump('statemachine.installation_setting', '');
REVOKE ALL ON statemachine.installation_setting FROM PUBLIC;

CREATE FUNCTION statemachine.distribute(shard_count integer DEFAULT NULL, command_scope text DEFAULT 'installation') RETURNS void
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'sm_distribute';
COMMENT ON FUNCTION statemachine.distribute(integer, text) IS 'On a Citus coordinator whose workers are added and run this version of the extension: makes the installation distributed — definitions as reference tables, every case-keyed table distributed by its case and co-located with case_file (shard_count shards; NULL: citus.shard_count), keys rewritten to contain the case, the workers given the installation secret. Existing rows move into the shards. command_scope installation: a command id names one command across all cases (SM008 as on one node; each call looks across the shards); case: within its case (no look across the shards). Run once, as a superuser (docs/scaling.md).';
REVOKE ALL ON FUNCTION statemachine.distribute(integer, text) FROM PUBLIC;

------------------------------------------------------------------------------------------
-- Queries across cases that a distributed installation can run: rows recorded with a
-- history row, an evidence row or an assignment are joined to it through its case too
-- (each join then stays on the shard of its case), and the analytics functions that took
-- a parameter are PL/pgSQL (Citus plans no parameterised SQL-language function body
-- over its tables). Same results on one node.
------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION statemachine.reconcile_outbox()
    RETURNS TABLE (transition_id uuid, case_id uuid, transition_code text, event_type text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.id, t.case_id, t.transition_code, r.emit_event
      FROM statemachine.case_state_transition t
      JOIN statemachine.machine_version v ON v.machine = t.machine AND v.version = t.policy_version
      JOIN statemachine.transition_rule r
        ON r.machine_version_id = v.id AND r.from_state = t.from_state AND r.transition_code = t.transition_code
     WHERE r.emit_event IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM statemachine.outbox_event o WHERE o.aggregate_id = t.case_id AND o.transition_id = t.id)
     ORDER BY t.case_id, t.state_version
$$;

CREATE OR REPLACE FUNCTION statemachine.reconcile_evidence()
    RETURNS TABLE (evidence_id uuid, case_id uuid, is_active boolean, deactivated_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.id, e.case_id, e.is_active, d.deactivated_at
      FROM statemachine.case_evidence e
      LEFT JOIN statemachine.case_evidence_deactivation d ON d.case_id = e.case_id AND d.evidence_id = e.id
     WHERE e.is_active = (d.evidence_id IS NOT NULL)
     ORDER BY e.id
$$;

CREATE OR REPLACE VIEW statemachine.v_case_assignment_current AS
SELECT a.case_id, a.assignee_id, a.role_code, a.id AS assignment_id, a.assigned_by, a.assigned_at
  FROM statemachine.case_assignment a
 WHERE NOT EXISTS (SELECT 1 FROM statemachine.case_assignment_release r WHERE r.case_id = a.case_id AND r.assignment_id = a.id);

CREATE OR REPLACE FUNCTION statemachine.transition_throughput(since timestamptz)
    RETURNS TABLE (machine text, transition_code text, day date, transitions bigint, cases bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT t.machine, t.transition_code, t.occurred_at::date, count(*), count(DISTINCT t.case_id)
      FROM statemachine.case_state_transition t
     WHERE t.occurred_at >= since
     GROUP BY 1, 2, 3
     ORDER BY 3, 1, 2;
END
$$;

CREATE OR REPLACE FUNCTION statemachine.time_in_state(since timestamptz)
    RETURNS TABLE (machine text, state text, stays bigint, p50 interval, p90 interval, p99 interval, longest interval)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    -- A stay ends with a history row that changes the state (l) and began with the
    -- latest earlier row that changed it (e) — found by the (case_id, state_version) key.
    RETURN QUERY
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
     WHERE l.occurred_at >= since AND l.from_state IS DISTINCT FROM l.to_state AND l.from_state IS NOT NULL
     GROUP BY 1, 2
     ORDER BY 1, 2;
END
$$;

-- stuck_cases() names a parameter and a result column alike (machine), which PL/pgSQL
-- does not allow: it stays SQL and calls this PL/pgSQL body.
CREATE FUNCTION statemachine.stuck_cases_query(older_than interval, machine_code text)
    RETURNS TABLE (case_id uuid, machine text, case_number text, state text, state_entered_at timestamptz, time_in_state interval)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    -- One index range scan per (machine, non-terminal state): no scan of the whole table.
    RETURN QUERY
    SELECT c.id, c.machine, c.case_number, c.current_state, c.state_entered_at, now() - c.state_entered_at
      FROM (SELECT DISTINCT v.machine, s.code
              FROM statemachine.state s
              JOIN statemachine.machine_version v ON v.id = s.machine_version_id
             WHERE NOT s.is_terminal AND (machine_code IS NULL OR v.machine = machine_code)) q
     CROSS JOIN LATERAL (
            SELECT c.* FROM statemachine.case_file c
             WHERE c.machine = q.machine AND c.current_state = q.code
               AND c.state_entered_at < now() - older_than) c
      JOIN statemachine.state s ON s.machine_version_id = c.machine_version_id AND s.code = c.current_state
     WHERE NOT s.is_terminal
     ORDER BY c.state_entered_at, c.id;
END
$$;
COMMENT ON FUNCTION statemachine.stuck_cases_query(interval, text) IS 'Internal: the body of stuck_cases().';
REVOKE ALL ON FUNCTION statemachine.stuck_cases_query(interval, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION statemachine.stuck_cases(older_than interval, machine text DEFAULT NULL)
    RETURNS TABLE (case_id uuid, machine text, case_number text, state text, state_entered_at timestamptz, time_in_state interval)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM statemachine.stuck_cases_query($1, $2)
$$;

CREATE OR REPLACE FUNCTION statemachine.state_durations(case_id uuid)
    RETURNS TABLE (state text, entered integer, total interval)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    -- Each history row starts a stay in its to_state that lasts until the next row (or now).
    RETURN QUERY
    SELECT d.to_state, count(*) FILTER (WHERE d.from_state IS DISTINCT FROM d.to_state)::integer, sum(d.stay)
      FROM (SELECT t.to_state, t.from_state,
                   COALESCE(lead(t.occurred_at) OVER (ORDER BY t.state_version), now()) - t.occurred_at AS stay
              FROM statemachine.case_state_transition t WHERE t.case_id = state_durations.case_id) d
     GROUP BY d.to_state
     ORDER BY d.to_state;
END
$$;

CREATE OR REPLACE FUNCTION statemachine.actor_activity(since timestamptz)
    RETURNS TABLE (actor_id uuid, actor_role text, machine text, transition_code text, transitions bigint, cases bigint,
                   first_at timestamptz, last_at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT t.actor_id, t.actor_role, t.machine, t.transition_code, count(*), count(DISTINCT t.case_id),
           min(t.occurred_at), max(t.occurred_at)
      FROM statemachine.case_state_transition t
     WHERE t.occurred_at >= since
     GROUP BY 1, 2, 3, 4
     ORDER BY 5 DESC, 1, 2, 3, 4;
END
$$;

-- The cases first, then the bulk: as one SQL statement a distributed installation would
-- push the bulk itself down to every shard of the subquery.
CREATE OR REPLACE FUNCTION statemachine.bulk_transition_by_state(
    machine text, in_state text, older_than interval, transition_code text, actor_id uuid, actor_role text,
    reason_code text, reason_text text, correlation_id uuid, on_error text DEFAULT 'abort', max_cases integer DEFAULT NULL)
    RETURNS TABLE (case_id uuid, ok boolean, to_state text, state_version bigint, error_sqlstate text, error_message text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    ids uuid[];
BEGIN
    ids := ARRAY(SELECT c.id FROM statemachine.case_file c
                  WHERE c.machine = bulk_transition_by_state.machine AND c.current_state = in_state
                    AND c.state_entered_at <= now() - older_than
                  ORDER BY c.state_entered_at, c.id LIMIT max_cases);
    RETURN QUERY SELECT b.* FROM statemachine.bulk_transition(ids, bulk_transition_by_state.transition_code,
        bulk_transition_by_state.actor_id, bulk_transition_by_state.actor_role, bulk_transition_by_state.reason_code,
        bulk_transition_by_state.reason_text, bulk_transition_by_state.correlation_id, on_error) b;
END
$$;

-- Reason usage counted once per (machine, version, transition, reason) over the history,
-- then joined to the reasons: no subquery per reason over every case's history (which a
-- distributed installation cannot correlate across shards).
CREATE OR REPLACE VIEW statemachine.v_reason_usage AS
SELECT r.machine, r.version, r.transition_code, r.reason_code, r.label, COALESCE(u.uses, 0) AS uses, u.last_used_at
  FROM (SELECT DISTINCT v.machine, v.version, tr.transition_code, tr.reason_code, tr.label
          FROM statemachine.transition_reason tr
          JOIN statemachine.machine_version v ON v.id = tr.machine_version_id) r
  LEFT JOIN (SELECT t.machine, t.policy_version, t.transition_code, t.reason_code, count(*) AS uses, max(t.occurred_at) AS last_used_at
               FROM statemachine.case_state_transition t
              WHERE t.reason_code IS NOT NULL
              GROUP BY 1, 2, 3, 4) u
    ON u.machine = r.machine AND u.policy_version = r.version AND u.transition_code = r.transition_code
   AND u.reason_code = r.reason_code;
