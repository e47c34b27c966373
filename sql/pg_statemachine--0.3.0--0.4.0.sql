-- pg_statemachine 0.3.0 -> 0.4.0: adopt what users already have (issue 13) — their
-- state names, their records, their code that used to SET status = X.
--
-- This file is both the upgrade script (ALTER EXTENSION pg_statemachine UPDATE) and,
-- after sql/schema.sql and the earlier upgrade scripts, part of every fresh install.

------------------------------------------------------------------------------------------
-- Codes as users write them: state and transition codes are any text of 1-63 bytes
-- without control characters or leading/trailing spaces ('in stock'); the rules live in
-- the definition validator (core), the tables never constrained them further.
------------------------------------------------------------------------------------------

------------------------------------------------------------------------------------------
-- Imported history: rows written by import_cases are of kind 'import'.
------------------------------------------------------------------------------------------

ALTER TABLE statemachine.case_state_transition DROP CONSTRAINT case_transition_kind_chk;
ALTER TABLE statemachine.case_state_transition ADD CONSTRAINT case_transition_kind_chk
    CHECK (transition_kind IN ('create', 'normal', 'reopen', 'reversal', 'correction', 'admin', 'migration', 'import'));
COMMENT ON COLUMN statemachine.case_state_transition.transition_kind IS 'Kind of the rule applied (create for the first row): normal, reopen, reversal, correction or admin; correction for correct_transition rows, migration for migrate_cases rows, import for import_cases rows (a past the extension did not see; metadata {"illegal_step": true} on a step no rule allowed, recorded with on_illegal => ''record'').';

------------------------------------------------------------------------------------------
-- transition_to: for code that used to SET status = X.
------------------------------------------------------------------------------------------

CREATE FUNCTION statemachine.transition_to(
    case_id uuid, to_state text, actor_id uuid, actor_role text, command_id uuid,
    reason_code text DEFAULT NULL, reason_text text DEFAULT NULL, expected_version bigint DEFAULT NULL,
    evidence_ids uuid[] DEFAULT NULL, correlation_id uuid DEFAULT NULL, causation_id uuid DEFAULT NULL,
    metadata jsonb DEFAULT '{}')
    RETURNS statemachine.case_state_transition
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_transition_to';
COMMENT ON FUNCTION statemachine.transition_to(uuid, text, uuid, text, uuid, text, text, bigint, uuid[], uuid, uuid, jsonb) IS 'transition_case by target state: performs the one rule leading from the case''s current state to to_state that actor_role may use, with every check of transition_case. None leads there: SM001 (HINT: the reachable states); several the role may use: SM001 (HINT: their codes); one it may not use: SM006. Idempotent on command_id.';
REVOKE ALL ON FUNCTION statemachine.transition_to(uuid, text, uuid, text, uuid, text, text, bigint, uuid[], uuid, uuid, jsonb) FROM PUBLIC;

------------------------------------------------------------------------------------------
-- import_cases: records at their current state with their dated past, set-based.
------------------------------------------------------------------------------------------

CREATE FUNCTION statemachine.import_cases(
    machine text, cases jsonb, actor_id uuid, actor_role text, command_id uuid, on_illegal text DEFAULT 'refuse')
    RETURNS TABLE (case_id uuid, case_number text, current_state text, state_version bigint)
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_import_cases';
COMMENT ON FUNCTION statemachine.import_cases(text, jsonb, uuid, text, uuid, text) IS 'Brings existing records under the machine''s latest active version at their current state, their dated steps as history (kind import, state_version 0..n-1, state_entered_at from the steps), so time guards and timers count from the real dates. A step no rule allows refuses the whole call (SM001) or, with on_illegal => ''record'', is recorded marked {"illegal_step": true}. Idempotent on command_id; a case number the machine has refuses the call (23505). Not granted to PUBLIC: it writes history with past dates.';
REVOKE ALL ON FUNCTION statemachine.import_cases(text, jsonb, uuid, text, uuid, text) FROM PUBLIC;

------------------------------------------------------------------------------------------
-- Governed tables: a user's own table whose status column mirrors its rows' cases.
------------------------------------------------------------------------------------------

CREATE TABLE statemachine.governed_table (
    table_name   regclass PRIMARY KEY,
    key_column   name NOT NULL,
    state_column name NOT NULL,
    machine      text NOT NULL CONSTRAINT governed_table_machine_uk UNIQUE REFERENCES statemachine.machine (code),
    state_values jsonb CONSTRAINT governed_table_state_values_chk CHECK (state_values IS NULL OR pg_catalog.jsonb_typeof(state_values) = 'object'),
    governed_at  timestamptz NOT NULL,
    governed_by  text NOT NULL DEFAULT SESSION_USER
);
COMMENT ON TABLE statemachine.governed_table IS 'User tables put under a machine by govern_table(): each row is the case whose case_number is its key, its state column a mirror only the write path changes.';
COMMENT ON COLUMN statemachine.governed_table.table_name IS 'The governed table.';
COMMENT ON COLUMN statemachine.governed_table.key_column IS 'Its key: the case number of each row''s case (as text).';
COMMENT ON COLUMN statemachine.governed_table.state_column IS 'Its status column: the mirror of the case''s state.';
COMMENT ON COLUMN statemachine.governed_table.machine IS 'The machine whose cases the rows are.';
COMMENT ON COLUMN statemachine.governed_table.state_values IS 'Column value (as text) -> state code, one value per state (e.g. a foreign key into the user''s own vocabulary table); NULL: the column holds state codes.';
COMMENT ON COLUMN statemachine.governed_table.governed_at IS 'When govern_table() ran.';
COMMENT ON COLUMN statemachine.governed_table.governed_by IS 'Session user that ran it.';
CREATE TRIGGER zz_guard_direct_write BEFORE INSERT OR UPDATE OR DELETE ON statemachine.governed_table
    FOR EACH ROW EXECUTE FUNCTION statemachine.guard_direct_write();
CREATE TRIGGER zz_guard_direct_truncate BEFORE TRUNCATE ON statemachine.governed_table
    FOR EACH STATEMENT EXECUTE FUNCTION statemachine.guard_direct_write();
ALTER TABLE statemachine.governed_table ENABLE ALWAYS TRIGGER zz_guard_direct_write;
ALTER TABLE statemachine.governed_table ENABLE ALWAYS TRIGGER zz_guard_direct_truncate;
SELECT pg_catalog.pg_extension_config_dump('statemachine.governed_table', '');
REVOKE ALL ON statemachine.governed_table FROM PUBLIC;

CREATE FUNCTION statemachine.guard_governed_row() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'sm_guard_governed_row';
COMMENT ON FUNCTION statemachine.guard_governed_row() IS 'Triggers on a governed table (ENABLE ALWAYS): BEFORE each row, refuses (SM007) a direct change of the state column or the key and a DELETE of a row whose case is not terminal, and creates the case of an INSERTed row (in the initial state, or with the column NULL) in the same statement; BEFORE TRUNCATE, refuses it; AFTER each inserted or updated row, checks the row as stored (whatever triggers ran after the guard).';

CREATE FUNCTION statemachine.govern_table(
    table_name regclass, key_column name, state_column name, machine text,
    state_values jsonb DEFAULT NULL, actor_id uuid DEFAULT NULL, actor_role text DEFAULT 'ADOPT', command_id uuid DEFAULT NULL)
    RETURNS statemachine.governed_table
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_govern_table';
COMMENT ON FUNCTION statemachine.govern_table(regclass, name, name, text, jsonb, uuid, text, uuid) IS 'Puts an existing table (owned by the session user) under the machine: every row is a case (case_number = key as text; rows without one are adopted at their current value, kind import, metadata {"adopted": true}); the state column becomes a mirror only the write path changes (state_values maps column values to states, e.g. a foreign key into the user''s vocabulary table). Every row must agree with its case, or nothing is governed.';
REVOKE ALL ON FUNCTION statemachine.govern_table(regclass, name, name, text, jsonb, uuid, text, uuid) FROM PUBLIC;

-- guard_weaknesses() also covers governed tables: the checks of the extension's own
-- tables stay as they were (guard_weaknesses_of_members), the governed ones are added.
ALTER FUNCTION statemachine.guard_weaknesses() RENAME TO guard_weaknesses_of_members;
COMMENT ON FUNCTION statemachine.guard_weaknesses_of_members() IS 'Internal: the part of guard_weaknesses() about the extension''s own tables and event triggers.';
REVOKE ALL ON FUNCTION statemachine.guard_weaknesses_of_members() FROM PUBLIC;
CREATE FUNCTION statemachine.guard_weaknesses()
    RETURNS TABLE (table_name text, problem text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT w.table_name, w.problem FROM statemachine.guard_weaknesses_of_members() w
    UNION ALL
    -- Every governed table keeps its three governed-row triggers, ENABLE ALWAYS, on the
    -- guard function, for their events ...
    SELECT g.table_name::text, pg_catalog.format('governed-row trigger %s is %s', x.tgname,
               CASE WHEN tr.oid IS NULL THEN 'missing'
                    WHEN tr.tgenabled = 'D' THEN 'disabled'
                    WHEN tr.tgenabled <> 'A' THEN 'not ENABLE ALWAYS (' || tr.tgenabled::text || ')'
                    WHEN tr.tgfoid <> 'statemachine.guard_governed_row()'::regprocedure THEN 'pointing at ' || tr.tgfoid::regprocedure::text
                    ELSE pg_catalog.format('for the wrong events (tgtype %s, not %s)', tr.tgtype, x.tgtype) END)
      FROM statemachine.governed_table g
     CROSS JOIN (VALUES ('zz_statemachine_governed', 31), ('zz_statemachine_governed_truncate', 34), ('zz_statemachine_governed_check', 21)) x(tgname, tgtype)
      LEFT JOIN pg_trigger tr ON tr.tgrelid = g.table_name AND tr.tgname = x.tgname
     WHERE tr.oid IS NULL OR tr.tgenabled <> 'A' OR tr.tgfoid <> 'statemachine.guard_governed_row()'::regprocedure
        OR tr.tgtype <> x.tgtype
    UNION ALL
    -- ... which the catalog must not switch off wholesale,
    SELECT g.table_name::text, 'relhastriggers is false: no trigger of the table fires'
      FROM statemachine.governed_table g JOIN pg_class c ON c.oid = g.table_name WHERE NOT c.relhastriggers
    UNION ALL
    -- ... with the columns it was governed by,
    SELECT g.table_name::text, pg_catalog.format('governed column %s is gone', x.col)
      FROM statemachine.governed_table g CROSS JOIN LATERAL (VALUES (g.key_column), (g.state_column)) x(col)
     WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = g.table_name AND a.attname = x.col AND NOT a.attisdropped)
    UNION ALL
    -- ... and no table carries the governed-row guard without being governed.
    SELECT tr.tgrelid::regclass::text, pg_catalog.format('trigger %s runs the governed-row guard but the table is not governed', tr.tgname)
      FROM pg_trigger tr
     WHERE tr.tgfoid = 'statemachine.guard_governed_row()'::regprocedure
       AND NOT EXISTS (SELECT 1 FROM statemachine.governed_table g WHERE g.table_name = tr.tgrelid)
    ORDER BY 1, 2
$$;
COMMENT ON FUNCTION statemachine.guard_weaknesses() IS 'Every way the guards are currently weakened — of the extension''s tables (guard_weaknesses_of_members: guard triggers missing, disabled, not ENABLE ALWAYS, pointing elsewhere or for other events; relhastriggers off; extra triggers, rules, policies, row-level security, child tables; foreign functions in defaults, checks or indexes; ownership; members moved; the DDL event triggers) and of governed tables (their governed-row triggers, relhastriggers, governed columns). Zero rows is the healthy answer.';
REVOKE ALL ON FUNCTION statemachine.guard_weaknesses() FROM PUBLIC;

-- reconcile() also reports every governed row whose state column disagrees with its
-- case, and every governed row without a case.
CREATE OR REPLACE FUNCTION statemachine.reconcile()
    RETURNS TABLE (case_id uuid, current_state text, derived_state text, state_version bigint, derived_version bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g record;
BEGIN
    -- One pass over the history: the latest row per case, and how many rows it has.
    -- derived_version is rows - 1: what a gapless history supports.
    RETURN QUERY
    WITH h AS (
        SELECT DISTINCT ON (t.case_id)
               t.case_id, t.to_state, t.state_version,
               count(*) OVER (PARTITION BY t.case_id) - 1 AS derived_version
          FROM statemachine.case_state_transition t
         ORDER BY t.case_id, t.state_version DESC
    )
    SELECT c.id, c.current_state, h.to_state, c.state_version, h.derived_version
      FROM statemachine.case_file c
      LEFT JOIN h ON h.case_id = c.id
     WHERE h.case_id IS NULL
        OR h.to_state <> c.current_state
        OR h.derived_version <> c.state_version
        OR h.state_version <> c.state_version
     ORDER BY c.id;
    -- Governed rows: derived_state says what the row shows ("<table> row <key>: <state>"),
    -- or that a case's row is missing ("<table> has no row <key>"). Values are read through
    -- their types' output functions (format's %s), never cast: a cast from a user's type
    -- would run its owner's code with this function's rights.
    FOR g IN SELECT gt.key_column, gt.state_column, gt.machine, gt.state_values,
                    pg_catalog.format('%I.%I', n.nspname, r.relname) AS qname
               FROM statemachine.governed_table gt
               JOIN pg_class r ON r.oid = gt.table_name JOIN pg_namespace n ON n.oid = r.relnamespace
              ORDER BY 5
    LOOP
        RETURN QUERY EXECUTE pg_catalog.format(
            'WITH t AS (SELECT pg_catalog.format(''%%s'', x.%I) AS k,
                               CASE WHEN x.%I IS NOT NULL THEN pg_catalog.format(''%%s'', x.%I) END AS v FROM ONLY %s x)
             SELECT c.id, c.current_state, %L || '' row '' || t.k || '': '' || COALESCE(m.state, COALESCE(''value '' || t.v, ''NULL'') || '' (no state)''),
                    c.state_version, NULL::bigint
               FROM t
               CROSS JOIN LATERAL (SELECT CASE WHEN $1 IS NULL THEN t.v ELSE $1 OPERATOR(pg_catalog.->>) t.v END AS state) m
               LEFT JOIN ONLY statemachine.case_file c ON c.machine OPERATOR(pg_catalog.=) $2 AND c.case_number OPERATOR(pg_catalog.=) t.k AND c.root_case_id IS NULL
              WHERE c.id IS NULL OR m.state IS DISTINCT FROM c.current_state
             UNION ALL
             SELECT c.id, c.current_state, %L || '' has no row '' || c.case_number, c.state_version, NULL::bigint
               FROM ONLY statemachine.case_file c
               JOIN ONLY statemachine.state s ON s.machine_version_id OPERATOR(pg_catalog.=) c.machine_version_id AND s.code OPERATOR(pg_catalog.=) c.current_state
              WHERE c.machine OPERATOR(pg_catalog.=) $2 AND c.root_case_id IS NULL AND NOT s.is_terminal
                AND NOT EXISTS (SELECT 1 FROM t WHERE t.k OPERATOR(pg_catalog.=) c.case_number)
              ORDER BY 3', g.key_column, g.state_column, g.state_column, g.qname, g.qname, g.qname)
        USING g.state_values, g.machine;
    END LOOP;
END
$$;
COMMENT ON FUNCTION statemachine.reconcile() IS 'Every case whose stored state or version disagrees with its history (missing or gapped history included); every row of a governed table whose state column disagrees with its case or that has no case (derived_state: "<table> row <key>: <what the row shows>"), and every non-terminal case of a governed machine without a row ("<table> has no row <key>"); zero rows is the healthy answer.';
REVOKE ALL ON FUNCTION statemachine.guard_governed_row() FROM PUBLIC;
