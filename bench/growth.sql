-- Growth benchmark helpers (bench/growth). Needs bench/schema.sql first.
\set ON_ERROR_STOP 1

-- Fill: cases with 10 history rows each (CREATE + 9 PING), consistent with each other
-- (reconcile() is empty), loaded in one break-glass transaction: the write path would
-- take hours for 10^7 rows, and this is a fixture, not a transition.
CREATE FUNCTION bench.fill(cases integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE v record;
BEGIN
    PERFORM statemachine.break_glass(format('benchmark fixture: %s cases x 10 history rows', cases));
    SELECT id, version INTO v FROM statemachine.machine_version WHERE machine = 'bench';
    INSERT INTO statemachine.case_file (id, machine, machine_version, machine_version_id, case_number, current_state,
                                        state_version, state_entered_at, created_at, updated_at)
    SELECT bench.case_uuid(i), 'bench', v.version, v.id, 'G-' || i, 'A', 9,
           now() - interval '10 days', now() - interval '10 days', now() - (i % 5000) * interval '1 minute'
      FROM generate_series(1, cases) i;
    INSERT INTO statemachine.case_state_transition (id, case_id, machine, from_state, to_state, transition_code,
                                                    transition_kind, state_version, actor_id, actor_role, policy_version,
                                                    occurred_at, command_id)
    SELECT gen_random_uuid(), bench.case_uuid(i), 'bench', CASE WHEN s = 0 THEN NULL ELSE 'A' END, 'A',
           CASE WHEN s = 0 THEN 'CREATE' ELSE 'PING' END, CASE WHEN s = 0 THEN 'create' ELSE 'normal' END, s,
           '00000000-0000-0000-0000-0000000000aa', 'AGENT', 1, now() - interval '10 days' + s * interval '1 hour', gen_random_uuid()
      FROM generate_series(1, cases) i, generate_series(0, 9) s;
END $$;

-- Mean latency in microseconds of `query` ($1 = a random case id), over n runs.
CREATE FUNCTION bench.latency(query text, n integer, cases integer) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    total interval := '0';
    c uuid;
BEGIN
    FOR i IN 1..n LOOP
        c := bench.case_uuid(1 + floor(random() * cases)::integer);
        t0 := clock_timestamp();
        EXECUTE query USING c;
        total := total + (clock_timestamp() - t0);
    END LOOP;
    RETURN round(extract(epoch FROM total) * 1e6 / n, 1);
END $$;

-- A time-ordered (version 7) uuid, as clients should use for command ids: consecutive
-- ones sort together, so the command_id index takes them at its right edge.
CREATE FUNCTION bench.uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
$$;
