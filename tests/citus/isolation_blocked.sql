-- isolationtester decides that a step waits by asking pg_isolation_test_session_is_blocked
-- about the coordinator backend; on Citus the wait may be on a worker (a row lock of a
-- shard). As Citus's own isolation tests do, this test database asks Citus's distributed
-- lock graph too.
ALTER FUNCTION pg_catalog.pg_isolation_test_session_is_blocked(integer, integer[]) RENAME TO old_pg_isolation_test_session_is_blocked;
CREATE FUNCTION pg_catalog.pg_isolation_test_session_is_blocked(pid integer, interesting integer[]) RETURNS boolean
    LANGUAGE plpgsql AS $$
BEGIN
    IF pg_catalog.old_pg_isolation_test_session_is_blocked(pid, interesting) THEN
        RETURN true;
    END IF;
    RETURN EXISTS (SELECT 1 FROM citus_internal.global_blocked_processes() b
                     JOIN pg_catalog.get_all_active_transactions() t ON t.global_pid = b.waiting_global_pid
                    WHERE t.process_id = pid AND pg_catalog.citus_pid_for_gpid(b.blocking_global_pid) = ANY (interesting));
END $$;
