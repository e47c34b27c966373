-- pg_statemachine 0.4.0 -> 0.5.0: fast at volume (issue 14) — set-based bulk and timer
-- paths, four-eyes guards that are one index lookup.
--
-- This file is both the upgrade script (ALTER EXTENSION pg_statemachine UPDATE) and,
-- after sql/schema.sql and the earlier upgrade scripts, part of every fresh install.

------------------------------------------------------------------------------------------
-- bulk_transition and run_due_transitions: set-based, in the library (src/bulk.rs). Per
-- chunk of cases one statement locks them, one finds replays, and the accepted
-- transitions are written with a fixed number of statements, each judged with the same
-- checks as transition_case. Command ids are derived as before (derived_id), so a bulk
-- or timer run started on 0.4.0 replays on 0.5.0.
------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION statemachine.bulk_transition(
    case_ids uuid[], transition_code text, actor_id uuid, actor_role text, reason_code text, reason_text text,
    correlation_id uuid, on_error text DEFAULT 'abort')
    RETURNS TABLE (case_id uuid, ok boolean, to_state text, state_version bigint, error_sqlstate text, error_message text)
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_bulk_transition';
COMMENT ON FUNCTION statemachine.bulk_transition(uuid[], text, uuid, text, text, text, uuid, text) IS 'Maintenance through the front door (seed 003 §28): the transition for each case (NULLs and duplicates ignored, in id order), each with its own history row sharing correlation_id and the checks of transition_case; set-based (a chunk of 5000 cases is locked, judged and written with a fixed number of statements). on_error abort: the first refusal aborts all; skip: the result says per case what happened (SQLSTATE and message). Re-running with the same correlation_id is idempotent.';

DROP FUNCTION statemachine.bulk_transition_one(uuid, text, uuid, text, text, text, uuid);

CREATE OR REPLACE FUNCTION statemachine.run_due_transitions(batch integer)
    RETURNS TABLE (case_id uuid, transition_code text, ok boolean, to_state text, error_sqlstate text, error_message text)
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_run_due_transitions';
COMMENT ON FUNCTION statemachine.run_due_transitions(integer) IS 'Performs up to batch due timed transitions ("after", counted on UTC''s calendar), as actor 00000000-0000-0000-0000-000000000000 in role SYSTEM with reason TIMER, set-based, a chunk of 5000 at a time; a refused one (e.g. by a guard) is reported and backs off (timer_backoff) so it never blocks the others. Safe to run from several sessions at once (SKIP LOCKED); schedule it with pg_cron, or CALL run_timers to commit chunk by chunk.';

-- No SET clause (a procedure with one may not COMMIT), so every name in it is qualified;
-- it runs with its caller's rights, so a caller's search_path can only fool the caller.
CREATE PROCEDURE statemachine.run_timers(batch integer DEFAULT 100000, chunk integer DEFAULT 1000)
    LANGUAGE plpgsql
AS $$
DECLARE
    done integer := 0;
    want integer;
    n integer;
BEGIN
    IF batch IS NULL OR batch OPERATOR(pg_catalog.<) 1 OR chunk IS NULL OR chunk OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'batch and chunk must be positive integers' USING ERRCODE = '22023';
    END IF;
    LOOP
        want := LEAST(chunk, batch OPERATOR(pg_catalog.-) done);
        SELECT pg_catalog.count(*) INTO n FROM statemachine.run_due_transitions(want);
        -- Each chunk's case locks end here: an interactive transition waits for one chunk
        -- at most, never for the whole backlog.
        COMMIT;
        done := done OPERATOR(pg_catalog.+) n;
        EXIT WHEN n OPERATOR(pg_catalog.<) want OR done OPERATOR(pg_catalog.>=) batch;
    END LOOP;
END
$$;
COMMENT ON PROCEDURE statemachine.run_timers(integer, integer) IS 'Works through up to batch due timers with run_due_transitions, committing after every chunk (so each case lock is held for its own chunk only). CALL it outside a transaction block (pg_cron does).';
REVOKE ALL ON PROCEDURE statemachine.run_timers(integer, integer) FROM PUBLIC;

------------------------------------------------------------------------------------------
-- distinct_actor (four eyes) asks for the latest transition of a case with a given code:
-- one index lookup, however long the case's history.
------------------------------------------------------------------------------------------

CREATE INDEX case_transition_code_idx ON statemachine.case_state_transition (case_id, transition_code, state_version);
COMMENT ON INDEX statemachine.case_transition_code_idx IS 'The latest transition of a case with a given code (the distinct_actor guard): one descent, flat in the length of the case''s history.';

------------------------------------------------------------------------------------------
-- sql guards are called by the library directly (src/sql_guard.rs: by OID through fmgr,
-- in a subtransaction, with a snapshot taken after the case lock) instead of through a
-- PL/pgSQL helper that parsed and planned an EXECUTE per call.
------------------------------------------------------------------------------------------

DROP FUNCTION statemachine.evaluate_sql_guard(regprocedure, text, uuid, jsonb);
