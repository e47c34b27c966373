-- Volume benchmark helpers (bench/run): the set-based paths against the same transitions
-- as single calls, the set-based floor, guards, timers. Needs bench/schema.sql first
-- (its floor tables). Every function returns seconds (or microseconds) it measured.
\set ON_ERROR_STOP 1
CREATE SCHEMA vol;

-- vol: GO A -> B and BACK B -> A (so a set of cases can be moved again and again);
-- TICK A -> B after 1 day (timers). eyes: four eyes after a long history. guarded: the
-- same one-state PING as bench, with a sql guard.
SELECT statemachine.define_machine('{"machine": "vol", "states": [{"code": "A", "initial": true}, {"code": "B"}],
  "transitions": [{"code": "GO", "from": "A", "to": "B", "roles": ["AGENT"]}, {"code": "BACK", "from": "B", "to": "A", "roles": ["AGENT"]},
                  {"code": "TICK", "from": "A", "to": "B", "after": "1 day"}]}');
SELECT statemachine.define_machine('{"machine": "eyes", "states": [{"code": "A", "initial": true}, {"code": "B"}],
  "transitions": [{"code": "SUBMIT", "from": "A", "to": "B"}, {"code": "NOTE", "from": "B", "to": "B"},
                  {"code": "APPROVE", "from": "B", "to": "B", "guards": [{"guard": "distinct_actor", "transition": "SUBMIT"}]}]}');
CREATE FUNCTION vol.always(case_id uuid, context jsonb) RETURNS boolean
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$ BEGIN RETURN true; END $$;
SELECT statemachine.register_guard('always', 'vol.always(uuid,jsonb)', 'benchmark: passes');
SELECT statemachine.define_machine('{"machine": "guarded", "states": [{"code": "A", "initial": true}],
  "transitions": [{"code": "PING", "from": "A", "to": "A", "roles": ["AGENT"], "guards": [{"guard": "sql", "name": "always"}]}]}');

-- n cases of a machine in state A (entered two days ago), made by import_cases in calls
-- of 100,000; their ids in table vol.<name>.
CREATE FUNCTION vol.make_cases(machine text, name text, n integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE done integer := 0; k integer;
BEGIN
    EXECUTE format('CREATE TABLE vol.%I (id uuid PRIMARY KEY)', name);
    WHILE done < n LOOP
        k := least(100000, n - done);
        EXECUTE format($q$INSERT INTO vol.%I SELECT case_id FROM statemachine.import_cases(%L,
            (SELECT jsonb_agg(jsonb_build_object('case_number', %L || g,
                     'steps', jsonb_build_array(jsonb_build_object('state', 'A', 'at', now() - interval '2 days'))))
               FROM generate_series($1, $2) g),
            '00000000-0000-0000-0000-0000000000aa', 'AGENT', gen_random_uuid())$q$, name, machine, name || '-')
        USING done + 1, done + k;
        done := done + k;
    END LOOP;
END $$;

-- bulk_transition of a set of cases; seconds.
CREATE FUNCTION vol.bulk(name text, code text) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; ids uuid[]; n bigint;
BEGIN
    EXECUTE format('SELECT array_agg(id) FROM vol.%I', name) INTO ids;
    t0 := clock_timestamp();
    SELECT count(*) INTO n FROM statemachine.bulk_transition(ids, code, '00000000-0000-0000-0000-0000000000bb', 'AGENT',
                                                              NULL, NULL, gen_random_uuid(), 'abort') b WHERE b.ok;
    IF n <> cardinality(ids) THEN RAISE EXCEPTION 'bulk moved % of % cases', n, cardinality(ids); END IF;
    RETURN extract(epoch FROM clock_timestamp() - t0);
END $$;

-- The same transitions as single transition_case calls, in one statement; seconds.
CREATE FUNCTION vol.singles(name text, code text) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); n bigint;
BEGIN
    EXECUTE format($q$SELECT count(*) FROM (SELECT statemachine.transition_case(v.id, %L, '00000000-0000-0000-0000-0000000000bb',
                       'AGENT', gen_random_uuid()) FROM vol.%I v) s$q$, code, name) INTO n;
    RETURN extract(epoch FROM clock_timestamp() - t0);
END $$;

-- The set-based floor: the same two writes as a bulk — the case rows moved, one history
-- row each — as one UPDATE and one INSERT ... SELECT on the floor copies of the tables
-- (same columns, CHECKs, indexes, foreign key; no trigger, no check). Seconds.
CREATE FUNCTION vol.floor_setup(n integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE v record;
BEGIN
    SELECT id, version INTO v FROM statemachine.machine_version WHERE machine = 'bench';
    INSERT INTO bench.floor_case (id, machine, machine_version, machine_version_id, case_number, current_state, state_version,
                                  state_entered_at, created_at, updated_at)
    SELECT gen_random_uuid(), 'bench', v.version, v.id, 'V' || n || '-' || i, 'A', 0, now(), now(), now() FROM generate_series(1, n) i;
END $$;
CREATE FUNCTION vol.floor(n integer) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; ids uuid[];
BEGIN
    SELECT array_agg(id) INTO ids FROM (SELECT id FROM bench.floor_case WHERE case_number LIKE 'V' || n || '-%') s;
    t0 := clock_timestamp();
    WITH u AS (UPDATE bench.floor_case c SET state_version = c.state_version + 1, updated_at = clock_timestamp()
                 FROM unnest(ids) AS x(id) WHERE c.id = x.id RETURNING c.id, c.machine, c.current_state, c.state_version)
    INSERT INTO bench.floor_history (id, case_id, machine, from_state, to_state, transition_code, transition_kind,
                                     state_version, actor_id, actor_role, policy_version, occurred_at, command_id)
    SELECT gen_random_uuid(), u.id, u.machine, u.current_state, u.current_state, 'PING', 'normal', u.state_version,
           '00000000-0000-0000-0000-0000000000aa', 'AGENT', 1, clock_timestamp(), gen_random_uuid() FROM u;
    RETURN extract(epoch FROM clock_timestamp() - t0);
END $$;
-- COPY of n history rows into the floor table: what the disk takes without a plan or a
-- case row to move. Seconds (the file is written first, not timed).
CREATE FUNCTION vol.copy(n integer) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; f text := '/tmp/pg_statemachine-bench-copy.csv';
BEGIN
    EXECUTE format($q$COPY (SELECT gen_random_uuid(), c.id, 'bench', 'A', 'A', 'PING', 'normal', 1000000 + g,
                              '00000000-0000-0000-0000-0000000000aa'::uuid, 'AGENT', NULL, NULL, 1, now(), gen_random_uuid()
                         FROM (SELECT id FROM bench.floor_case WHERE case_number = 'V%s-1') c, generate_series(1, %s) g)
                      TO %L$q$, n, n, f);
    t0 := clock_timestamp();
    EXECUTE format($q$COPY bench.floor_history (id, case_id, machine, from_state, to_state, transition_code, transition_kind,
                      state_version, actor_id, actor_role, reason_code, reason_text, policy_version, occurred_at, command_id)
                      FROM %L$q$, f);
    RETURN extract(epoch FROM clock_timestamp() - t0);
END $$;

-- run_due_transitions over a backlog of due timers (cases of vol in A for two days);
-- seconds.
CREATE FUNCTION vol.timers(n integer) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); moved bigint;
BEGIN
    SELECT count(*) INTO moved FROM statemachine.run_due_transitions(n) r WHERE r.ok;
    IF moved <> n THEN RAISE EXCEPTION 'timers moved % of %', moved, n; END IF;
    RETURN extract(epoch FROM clock_timestamp() - t0);
END $$;

-- Microseconds per transition of `code` on the cases of vol.<name>, round robin, n calls.
CREATE FUNCTION vol.per_call(machine_cases text, code text, n integer) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; ids uuid[]; actor uuid;
BEGIN
    EXECUTE format('SELECT array_agg(id) FROM vol.%I', machine_cases) INTO ids;
    t0 := clock_timestamp();
    FOR i IN 1..n LOOP
        actor := gen_random_uuid();   -- a new actor each time: distinct_actor passes
        PERFORM statemachine.transition_case(ids[1 + i % cardinality(ids)], code, actor, 'AGENT', gen_random_uuid());
    END LOOP;
    RETURN round(extract(epoch FROM clock_timestamp() - t0) * 1e6 / n, 2);
END $$;

-- eyes cases with a history of CREATE, SUBMIT and then k NOTE rows: distinct_actor on
-- APPROVE looks for SUBMIT behind k rows. Imported (the write path would take long).
CREATE FUNCTION vol.make_eyes(name text, cases integer, k integer) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE vol.%I (id uuid PRIMARY KEY)', name);
    EXECUTE format($q$INSERT INTO vol.%I SELECT case_id FROM statemachine.import_cases('eyes',
        (SELECT jsonb_agg(jsonb_build_object('case_number', %L || c, 'steps',
                 jsonb_build_array(jsonb_build_object('state', 'A', 'at', now() - interval '2 days'),
                                   jsonb_build_object('state', 'B', 'at', now() - interval '2 days', 'transition', 'SUBMIT'))
                 || (SELECT jsonb_agg(jsonb_build_object('state', 'B', 'transition', 'NOTE',
                                      'at', now() - interval '1 day' + s * interval '1 millisecond'))
                       FROM generate_series(1, $2) s)))
           FROM generate_series(1, $1) c),
        '00000000-0000-0000-0000-0000000000aa', 'AGENT', gen_random_uuid())$q$, name, name || '-')
    USING cases, k;
END $$;
