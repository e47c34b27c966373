-- pg_statemachine 0.2.0 -> 0.3.0: the trust boundary (issue 12, first part).
--
-- This file is both the upgrade script (ALTER EXTENSION pg_statemachine UPDATE) and,
-- after sql/schema.sql and the 0.1.0 -> 0.2.0 script, part of every fresh install.

------------------------------------------------------------------------------------------
-- The DDL guard decides by the objects a command touches (src/ddl_guard.rs), in C: it
-- reads only pg_catalog and runs as whoever issued the DDL, so DDL that touches nothing
-- of the extension is never refused, and it no longer looks for a break_glass_event row
-- (the exception is a fact of the backend's memory).
------------------------------------------------------------------------------------------

DROP EVENT TRIGGER statemachine_guard_ddl;
DROP FUNCTION statemachine.guard_ddl();
CREATE FUNCTION statemachine.guard_ddl() RETURNS event_trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'sm_guard_ddl';
COMMENT ON FUNCTION statemachine.guard_ddl() IS 'Event trigger (ddl_command_end and sql_drop): refuses (SM007), for every role, DDL that alters, replaces or drops an object of the extension, puts a rule, trigger, policy, index or child table on one of its tables, or adds objects to or drops them from the extension — except inside the extension''s own scripts and the (sub)transaction that called break_glass().';
REVOKE ALL ON FUNCTION statemachine.guard_ddl() FROM PUBLIC;

CREATE EVENT TRIGGER statemachine_guard_ddl ON ddl_command_end
    EXECUTE FUNCTION statemachine.guard_ddl();
CREATE EVENT TRIGGER statemachine_guard_drop ON sql_drop
    EXECUTE FUNCTION statemachine.guard_ddl();
-- Also under session_replication_role = replica.
ALTER EVENT TRIGGER statemachine_guard_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER statemachine_guard_drop ENABLE ALWAYS;
COMMENT ON EVENT TRIGGER statemachine_guard_ddl IS 'Refuses DDL on the extension''s objects and their tables (statemachine.guard_ddl()).';
COMMENT ON EVENT TRIGGER statemachine_guard_drop IS 'Refuses dropping anything on or in the extension''s schema but the extension itself (statemachine.guard_ddl()).';

-- The record of the exception stays append-only under it: its guard triggers say so by
-- their argument (which a rename of the table does not change), and the DDL guard refuses
-- touching the table even under break_glass.
DROP TRIGGER zz_guard_direct_write ON statemachine.break_glass_event;
DROP TRIGGER zz_guard_direct_truncate ON statemachine.break_glass_event;
CREATE TRIGGER zz_guard_direct_write BEFORE INSERT OR UPDATE OR DELETE ON statemachine.break_glass_event
    FOR EACH ROW EXECUTE FUNCTION statemachine.guard_direct_write('append-only');
CREATE TRIGGER zz_guard_direct_truncate BEFORE TRUNCATE ON statemachine.break_glass_event
    FOR EACH STATEMENT EXECUTE FUNCTION statemachine.guard_direct_write('append-only');
ALTER TABLE statemachine.break_glass_event ENABLE ALWAYS TRIGGER zz_guard_direct_write;
ALTER TABLE statemachine.break_glass_event ENABLE ALWAYS TRIGGER zz_guard_direct_truncate;

------------------------------------------------------------------------------------------
-- What no extension can stop, made visible: every way the guards are weakened.
------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION statemachine.guard_weaknesses()
    RETURNS TABLE (table_name text, problem text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH ext AS (SELECT x.oid, x.extowner FROM pg_extension x WHERE x.extname = 'pg_statemachine'),
    members AS (
        SELECT d.classid, d.objid FROM pg_depend d, ext
         WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'),
    tables AS (
        SELECT c.oid, c.relname, c.relnamespace, c.relowner, c.relhastriggers, c.relrowsecurity
          FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
         WHERE c.relkind = 'r'),
    -- Functions a table's defaults, checks and index expressions call that are neither
    -- PostgreSQL's own nor the extension's.
    foreign_code AS (
        SELECT t.relname, pg_catalog.format('%s calls %s, which is not the extension''s', w.what, d.refobjid::regprocedure) AS problem
          FROM tables t
          JOIN LATERAL (
                SELECT 'pg_attrdef'::regclass AS classid, a.oid AS objid,
                       pg_catalog.format('the default of column %s', att.attname) AS what
                  FROM pg_attrdef a JOIN pg_attribute att ON att.attrelid = a.adrelid AND att.attnum = a.adnum
                 WHERE a.adrelid = t.oid
                UNION ALL
                SELECT 'pg_constraint'::regclass, k.oid, pg_catalog.format('constraint %s', k.conname)
                  FROM pg_constraint k WHERE k.conrelid = t.oid
                UNION ALL
                SELECT 'pg_class'::regclass, i.indexrelid, pg_catalog.format('index %s', i.indexrelid::regclass)
                  FROM pg_index i WHERE i.indrelid = t.oid
                UNION ALL
                SELECT 'pg_class'::regclass, t.oid, 'a generated column') w ON true
          JOIN pg_depend d ON d.classid = w.classid AND d.objid = w.objid AND d.refclassid = 'pg_proc'::regclass
          JOIN pg_proc p ON p.oid = d.refobjid
         WHERE p.pronamespace <> 'pg_catalog'::regnamespace
           AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_proc'::regclass AND m.objid = p.oid))
    -- Every table keeps both guard triggers, ENABLE ALWAYS, on the guard function, for
    -- the events they were made for ...
    SELECT t.relname::text, pg_catalog.format('guard trigger %s is %s', g.tgname,
               CASE WHEN tr.oid IS NULL THEN 'missing'
                    WHEN tr.tgenabled = 'D' THEN 'disabled'
                    WHEN tr.tgenabled <> 'A' THEN 'not ENABLE ALWAYS (' || tr.tgenabled::text || ')'
                    WHEN tr.tgfoid <> 'statemachine.guard_direct_write()'::regprocedure THEN 'pointing at ' || tr.tgfoid::regprocedure::text
                    ELSE pg_catalog.format('for the wrong events (tgtype %s, not %s)', tr.tgtype, g.tgtype) END)
      FROM tables t
     CROSS JOIN (VALUES ('zz_guard_direct_write', 31), ('zz_guard_direct_truncate', 34)) g(tgname, tgtype)
      LEFT JOIN pg_trigger tr ON tr.tgrelid = t.oid AND tr.tgname = g.tgname
     WHERE tr.oid IS NULL OR tr.tgenabled <> 'A' OR tr.tgfoid <> 'statemachine.guard_direct_write()'::regprocedure
        OR tr.tgtype <> g.tgtype
    UNION ALL
    -- ... the record of the exception keeping its append-only guard triggers,
    SELECT t.relname::text, pg_catalog.format('guard trigger %s lost its append-only argument', tr.tgname)
      FROM tables t JOIN pg_trigger tr ON tr.tgrelid = t.oid
     WHERE t.relname = 'break_glass_event' AND tr.tgname IN ('zz_guard_direct_write', 'zz_guard_direct_truncate')
       AND tr.tgnargs = 0
    UNION ALL
    -- ... which the catalog must not switch off wholesale,
    SELECT t.relname::text, 'relhastriggers is false: no trigger of the table fires'
      FROM tables t WHERE NOT t.relhastriggers
    UNION ALL
    -- ... and no other trigger, rule or policy: they would run inside the write path.
    SELECT t.relname::text, pg_catalog.format('extra trigger %s', tr.tgname)
      FROM pg_trigger tr JOIN tables t ON t.oid = tr.tgrelid
     WHERE NOT tr.tgisinternal AND tr.tgname NOT IN ('zz_guard_direct_write', 'zz_guard_direct_truncate')
    UNION ALL
    SELECT t.relname::text, pg_catalog.format('rule %s', r.rulename)
      FROM pg_rewrite r JOIN tables t ON t.oid = r.ev_class
    UNION ALL
    SELECT t.relname::text, 'row level security is enabled'
      FROM tables t WHERE t.relrowsecurity
    UNION ALL
    SELECT t.relname::text, pg_catalog.format('policy %s', p.polname)
      FROM pg_policy p JOIN tables t ON t.oid = p.polrelid
    UNION ALL
    -- Tables that inherit from (or are partitions of) a protected table.
    SELECT t.relname::text, pg_catalog.format('child table %s', h.inhrelid::regclass)
      FROM pg_inherits h JOIN tables t ON t.oid = h.inhparent
    UNION ALL
    SELECT f.relname::text, f.problem FROM foreign_code f
    UNION ALL
    -- Ownership stays with the extension's owner.
    SELECT t.relname::text, pg_catalog.format('owned by %s, not by the extension''s owner', t.relowner::regrole)
      FROM tables t, ext WHERE t.relowner <> ext.extowner
    UNION ALL
    -- Member objects stay in the extension's schema.
    SELECT c.relname::text, pg_catalog.format('moved to schema %s', c.relnamespace::regnamespace)
      FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
     WHERE c.relnamespace <> 'statemachine'::regnamespace
    UNION ALL
    SELECT p.proname::text, pg_catalog.format('function moved to schema %s', p.pronamespace::regnamespace)
      FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
     WHERE p.pronamespace <> 'statemachine'::regnamespace
    UNION ALL
    -- The guard trigger lets direct updates of case_file through when they change only
    -- column 11; that must be metadata.
    SELECT 'case_file', pg_catalog.format('column 11 is %s, not metadata', a.attname)
      FROM pg_attribute a
     WHERE a.attrelid = 'statemachine.case_file'::regclass AND a.attnum = 11 AND a.attname <> 'metadata'
    UNION ALL
    -- The DDL guard, which PostgreSQL lets a superuser switch off.
    SELECT '(event trigger)', pg_catalog.format('event trigger %s is %s', g.evtname,
               CASE WHEN e.oid IS NULL THEN 'missing' WHEN e.evtenabled = 'D' THEN 'disabled'
                    WHEN e.evtenabled <> 'A' THEN 'not ENABLE ALWAYS (' || e.evtenabled::text || ')'
                    ELSE 'pointing at ' || e.evtfoid::regprocedure::text END)
      FROM (VALUES ('statemachine_guard_ddl'), ('statemachine_guard_drop')) g(evtname)
      LEFT JOIN pg_event_trigger e ON e.evtname = g.evtname
     WHERE e.oid IS NULL OR e.evtenabled <> 'A' OR e.evtfoid <> 'statemachine.guard_ddl()'::regprocedure
    ORDER BY 1, 2
$$;
COMMENT ON FUNCTION statemachine.guard_weaknesses() IS 'Every way the guards of the extension''s tables are currently weakened — guard triggers missing, disabled, not ENABLE ALWAYS, pointing elsewhere or for other events; relhastriggers switched off; extra triggers, rules, policies, row-level security, child tables; defaults, checks or indexes calling functions that are not the extension''s; tables not owned by the extension''s owner; members moved out of the schema; the DDL event triggers missing or disabled. Zero rows is the healthy answer.';

------------------------------------------------------------------------------------------
-- SQL guards run as the session user, in a restricted security context, read-only
-- (src/facts.rs): the wrapper that calls them is therefore executed as that user.
-- It runs only what its caller may run anyway, with the caller's rights.
------------------------------------------------------------------------------------------

GRANT EXECUTE ON FUNCTION statemachine.evaluate_sql_guard(regprocedure, text, uuid, jsonb) TO PUBLIC;
COMMENT ON FUNCTION statemachine.evaluate_sql_guard(regprocedure, text, uuid, jsonb) IS 'Internal: calls one sql guard function, catching its error so the write path can re-raise it with the guard named in CONTEXT. The write path calls it as the session user, in a restricted security context, with the transaction read-only; granted to PUBLIC because it only runs a function with its caller''s own rights.';

------------------------------------------------------------------------------------------
-- Derived ids no caller can compute (a timer's or a bulk's command id, spent in advance,
-- made it fail SM008 forever): keyed with a random secret of this installation.
------------------------------------------------------------------------------------------

CREATE TABLE statemachine.installation_secret (
    id     boolean PRIMARY KEY DEFAULT true CONSTRAINT installation_secret_one_row_chk CHECK (id),
    secret bytea NOT NULL CONSTRAINT installation_secret_length_chk CHECK (pg_catalog.octet_length(secret) = 32)
);
COMMENT ON TABLE statemachine.installation_secret IS 'The key of derived command ids (timers, bulks): 32 random bytes drawn at install, readable by the extension''s owner only; a restore brings it along, so re-runs stay idempotent.';
COMMENT ON COLUMN statemachine.installation_secret.id IS 'Always true: one row.';
COMMENT ON COLUMN statemachine.installation_secret.secret IS 'The key.';
INSERT INTO statemachine.installation_secret (secret)
SELECT pg_catalog.decode(pg_catalog.replace(pg_catalog.gen_random_uuid()::text || pg_catalog.gen_random_uuid()::text, '-', ''), 'hex');

CREATE FUNCTION statemachine.derived_id(kind text, VARIADIC parts text[]) RETURNS uuid
    LANGUAGE sql STABLE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    -- Each part length-prefixed, so no two lists of parts make the same text.
    SELECT pg_catalog.encode(pg_catalog.substr(pg_catalog.sha256(s.secret || pg_catalog.convert_to(
               kind || (SELECT pg_catalog.string_agg(pg_catalog.length(p)::text || ':' || p, '|' ORDER BY n)
                          FROM pg_catalog.unnest(parts) WITH ORDINALITY AS u(p, n)), 'UTF8')), 1, 16), 'hex')::uuid
      FROM statemachine.installation_secret s
$$;
COMMENT ON FUNCTION statemachine.derived_id(text, text[]) IS 'Internal: the command id of a timer or bulk step, keyed with installation_secret so that no caller can compute (and spend) it in advance.';
REVOKE ALL ON FUNCTION statemachine.derived_id(text, text[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION statemachine.bulk_transition_one(
    case_id uuid, transition_code text, actor_id uuid, actor_role text, reason_code text, reason_text text,
    correlation_id uuid)
    RETURNS statemachine.case_state_transition
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT statemachine.transition_case($1, $2, $3, $4,
               statemachine.derived_id('bulk', $7::text, $1::text, $2),
               reason_code => $5, reason_text => $6, correlation_id => $7)
$$;

------------------------------------------------------------------------------------------
-- Timers: due on UTC's calendar, never blocked by a case that is refused (it backs off),
-- never stopped by one definition's interval.
------------------------------------------------------------------------------------------

CREATE TABLE statemachine.timer_backoff (
    case_id         uuid NOT NULL REFERENCES statemachine.case_file (id) DEFERRABLE,
    state_version   bigint NOT NULL,
    transition_code text NOT NULL,
    attempts        integer NOT NULL,
    retry_at        timestamptz NOT NULL,
    last_sqlstate   text,
    last_message    text,
    PRIMARY KEY (case_id, state_version, transition_code)
);
COMMENT ON TABLE statemachine.timer_backoff IS 'Timed transitions that were refused (a guard, a role): when run_due_transitions tries each again, doubling the wait from a minute up to a day, so a refused case never blocks the cases due after it.';
COMMENT ON COLUMN statemachine.timer_backoff.case_id IS 'The case.';
COMMENT ON COLUMN statemachine.timer_backoff.state_version IS 'The case''s state_version when it was refused (a later version is a new timer).';
COMMENT ON COLUMN statemachine.timer_backoff.transition_code IS 'The timed transition.';
COMMENT ON COLUMN statemachine.timer_backoff.attempts IS 'How many times it was refused.';
COMMENT ON COLUMN statemachine.timer_backoff.retry_at IS 'Not tried again before this.';
COMMENT ON COLUMN statemachine.timer_backoff.last_sqlstate IS 'The last refusal''s SQLSTATE.';
COMMENT ON COLUMN statemachine.timer_backoff.last_message IS 'The last refusal''s message.';

CREATE FUNCTION statemachine.defer_timer(case_id uuid, state_version bigint, transition_code text, error_sqlstate text, error_message text)
    RETURNS statemachine.timer_backoff
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_defer_timer';
COMMENT ON FUNCTION statemachine.defer_timer(uuid, bigint, text, text, text) IS 'Internal: records that run_due_transitions was refused a timed transition and when to try it again.';
REVOKE ALL ON FUNCTION statemachine.defer_timer(uuid, bigint, text, text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION statemachine.run_due_transitions(batch integer)
    RETURNS TABLE (case_id uuid, transition_code text, ok boolean, to_state text, error_sqlstate text, error_message text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    due record;
    t statemachine.case_state_transition;
    done uuid[] := '{}';
BEGIN
    IF batch IS NULL OR batch < 1 THEN
        RAISE EXCEPTION 'batch must be a positive integer' USING ERRCODE = '22023';
    END IF;
    -- Due cases (on UTC's calendar, as transition_case counts), never refused ones first,
    -- then oldest first; refused ones wait out their backoff. SKIP LOCKED lets several
    -- sessions work through the backlog at once without firing a case twice. An interval
    -- beyond what a timestamp can hold (a definition from before 0.3.0) is never due.
    FOR due IN
        SELECT c.id, c.state_version, r.transition_code
          FROM statemachine.transition_rule r
          JOIN statemachine.case_file c
            ON c.machine_version_id = r.machine_version_id AND c.current_state = r.from_state
          LEFT JOIN statemachine.timer_backoff b
            ON b.case_id = c.id AND b.state_version = c.state_version AND b.transition_code = r.transition_code
         WHERE r.fire_after IS NOT NULL
           AND CASE WHEN r.fire_after <= interval '1000 years'
                    THEN pg_catalog.timezone('UTC', c.state_entered_at) + r.fire_after <= pg_catalog.timezone('UTC', now()) END
           AND (b.retry_at IS NULL OR b.retry_at <= now())
         ORDER BY COALESCE(b.attempts, 0), c.state_entered_at, c.id, r.fire_after, r.transition_code
         LIMIT batch
           FOR UPDATE OF c SKIP LOCKED
    LOOP
        -- Two timed rules due from one state: the first fires, the other is moot.
        CONTINUE WHEN due.id = ANY (done);
        done := done || due.id;
        case_id := due.id;
        transition_code := due.transition_code;
        BEGIN
            -- The command id is derived from the case's version (keyed: no caller can
            -- spend it first): a re-run never fires twice.
            t := statemachine.transition_case(due.id, due.transition_code, '00000000-0000-0000-0000-000000000000', 'SYSTEM',
                     statemachine.derived_id('timer', due.id::text, due.transition_code, due.state_version::text),
                     reason_code => 'TIMER');
            ok := true; to_state := t.to_state; error_sqlstate := NULL; error_message := NULL;
        EXCEPTION WHEN OTHERS THEN
            ok := false; to_state := NULL;
            GET STACKED DIAGNOSTICS error_sqlstate = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT;
            PERFORM statemachine.defer_timer(due.id, due.state_version, due.transition_code, error_sqlstate, error_message);
        END;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION statemachine.run_due_transitions(integer) IS 'Performs up to batch due timed transitions ("after", counted on UTC''s calendar), as actor 00000000-0000-0000-0000-000000000000 in role SYSTEM with reason TIMER; a refused one (e.g. by a guard) is reported and backs off (timer_backoff) so it never blocks the others. Safe to run from several sessions at once; schedule it with pg_cron.';

COMMENT ON FUNCTION statemachine.attach_dimension(uuid, text, uuid, text, uuid) IS 'Gives a case another independent dimension (seed 003 §11, §21): a linked case row running machine, in its initial state, with its own history (find it with SELECT id FROM statemachine.case_file WHERE root_case_id = case_id AND machine = ...). The machines of one case must not share transition codes. Idempotent on command_id.';

------------------------------------------------------------------------------------------
-- The new tables are guarded, dumped and private like every other.
------------------------------------------------------------------------------------------

DO $guard$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['installation_secret', 'timer_backoff'] LOOP
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER zz_guard_direct_write BEFORE INSERT OR UPDATE OR DELETE ON statemachine.%I
                 FOR EACH ROW EXECUTE FUNCTION statemachine.guard_direct_write()', t);
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER zz_guard_direct_truncate BEFORE TRUNCATE ON statemachine.%I
                 FOR EACH STATEMENT EXECUTE FUNCTION statemachine.guard_direct_write()', t);
        EXECUTE pg_catalog.format('ALTER TABLE statemachine.%I ENABLE ALWAYS TRIGGER zz_guard_direct_write', t);
        EXECUTE pg_catalog.format('ALTER TABLE statemachine.%I ENABLE ALWAYS TRIGGER zz_guard_direct_truncate', t);
        PERFORM pg_catalog.pg_extension_config_dump(pg_catalog.format('statemachine.%I', t)::regclass, '');
        EXECUTE pg_catalog.format('REVOKE ALL ON statemachine.%I FROM PUBLIC', t);
    END LOOP;
END
$guard$;

------------------------------------------------------------------------------------------
-- Who may assign: a machine may name the roles (assign_roles); assign_case and
-- release_assignment take the caller's actor_role (under role_source database, a database
-- role of the session user). Re-grant EXECUTE on the two functions after upgrading: their
-- signatures changed.
------------------------------------------------------------------------------------------

ALTER TABLE statemachine.machine_version ADD COLUMN assign_roles text[] NOT NULL DEFAULT '{}';
COMMENT ON COLUMN statemachine.machine_version.assign_roles IS 'The roles that may call assign_case and release_assignment on this version''s cases (the definition''s "assign_roles"; empty: any caller).';

DROP FUNCTION statemachine.assign_case(uuid, uuid, text, uuid, uuid);
CREATE FUNCTION statemachine.assign_case(case_id uuid, assignee_id uuid, role_code text, actor_id uuid, command_id uuid,
    actor_role text DEFAULT NULL)
    RETURNS statemachine.case_assignment
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_assign_case';
COMMENT ON FUNCTION statemachine.assign_case(uuid, uuid, text, uuid, uuid, text) IS 'Assigns assignee_id to the case in role_code (what requires_assignment guards check); returns the active assignment, idempotent on command_id. When the machine names assign_roles, actor_role must be one of them (SM006); under role_source database it must be a database role of the session user.';

DROP FUNCTION statemachine.release_assignment(uuid, uuid, text, uuid, uuid);
CREATE FUNCTION statemachine.release_assignment(case_id uuid, assignee_id uuid, role_code text, actor_id uuid, command_id uuid,
    actor_role text DEFAULT NULL)
    RETURNS statemachine.case_assignment_release
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_release_assignment';
COMMENT ON FUNCTION statemachine.release_assignment(uuid, uuid, text, uuid, uuid, text) IS 'Ends the active assignment of assignee_id in role_code on the case (SM009 when there is none); idempotent on command_id. The same actor_role rule as assign_case.';
REVOKE ALL ON FUNCTION statemachine.assign_case(uuid, uuid, text, uuid, uuid, text),
    statemachine.release_assignment(uuid, uuid, text, uuid, uuid, text) FROM PUBLIC;

------------------------------------------------------------------------------------------
-- Tamper evidence for what no extension can stop (a superuser editing catalogs or data):
-- every history row is sealed with a hash chained per case (src/seal.rs, core/src/seal.rs),
-- and a digest of all history can be kept outside the database and verified later.
------------------------------------------------------------------------------------------

ALTER TABLE statemachine.case_state_transition ADD COLUMN row_hash bytea
    CONSTRAINT case_transition_row_hash_chk CHECK (pg_catalog.octet_length(row_hash) = 32);
ALTER TABLE statemachine.case_file ADD COLUMN history_head bytea
    CONSTRAINT case_file_history_head_chk CHECK (pg_catalog.octet_length(history_head) = 32);
COMMENT ON COLUMN statemachine.case_file.history_head IS 'The seal (row_hash) of the case''s latest history row: what the next row chains to, read under the case''s row lock.';
COMMENT ON COLUMN statemachine.case_state_transition.row_hash IS 'SHA-256 seal of the row: every column, its evidence links, guard results and correction, chained to the case''s previous row (verify_history checks it).';

CREATE FUNCTION statemachine.history_digest() RETURNS text
    LANGUAGE c STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_history_digest';
COMMENT ON FUNCTION statemachine.history_digest() IS 'A compact digest (smd1:as_of:rows:root:events:root) of every history row and break_glass event that occurred up to a moment when all of them were committed, computed from their content. Keep it outside the database; verify_history(digest) later reports any change to what it covered.';

CREATE FUNCTION statemachine.verify_history(digest text DEFAULT NULL)
    RETURNS TABLE (case_id uuid, state_version bigint, problem text)
    LANGUAGE c STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_verify_history';
COMMENT ON FUNCTION statemachine.verify_history(text) IS 'Tamper evidence; zero rows is the healthy answer. Reports every history row whose content no longer matches its seal or chain, missing or inserted rows, steps no rule of the case''s pinned version allows (imports, corrections, migrations and admin kinds excepted), occurred_at going backwards or into the future, and — given a digest taken earlier — any change to the rows and break_glass events that digest covered, even one whose seals were recomputed.';

CREATE FUNCTION statemachine.seal_history() RETURNS bigint
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_seal_history';
COMMENT ON FUNCTION statemachine.seal_history() IS 'Internal: seals history rows that have no seal yet (those written before 0.3.0, at ALTER EXTENSION … UPDATE); returns how many.';

REVOKE ALL ON FUNCTION statemachine.history_digest(), statemachine.verify_history(text), statemachine.seal_history() FROM PUBLIC;

SELECT statemachine.seal_history();

------------------------------------------------------------------------------------------
-- role_source database: the actor is the session user. Its actor_id is derived from the
-- role name with the installation's secret; a caller may act only as itself.
------------------------------------------------------------------------------------------

CREATE FUNCTION statemachine.database_actor_id(role name DEFAULT SESSION_USER) RETURNS uuid
    LANGUAGE sql STABLE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT statemachine.derived_id('actor', role::text)
$$;
COMMENT ON FUNCTION statemachine.database_actor_id(name) IS 'The actor_id that stands for a database role (by default the session user): under role_source database, every call''s actor_id must be the session user''s (SM006 otherwise), so four-eyes, assignments and the history''s actor_id are database identities. Stable for the installation (keyed with installation_secret, which a restore brings along).';
REVOKE ALL ON FUNCTION statemachine.database_actor_id(name) FROM PUBLIC;
