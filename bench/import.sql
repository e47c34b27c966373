-- import_cases at volume (bench/import): the machine, the payloads, and the single-call
-- baseline the set-based path is compared with.
SELECT statemachine.define_machine('{"machine": "bench_shop",
  "states": [{"code": "in stock", "initial": true}, {"code": "on order"}, {"code": "unavailable"}, {"code": "deleted", "terminal": true}],
  "transitions": [{"code": "order", "from": "in stock", "to": "on order"}, {"code": "restock", "from": ["on order", "unavailable"], "to": "in stock"},
                  {"code": "sell out", "from": ["in stock", "on order"], "to": "unavailable"}, {"code": "delete", "from": "unavailable", "to": "deleted"}]}');

CREATE SCHEMA bench_import;
-- n records of 3 dated steps each (in stock -> on order -> in stock), numbered prefix || i.
CREATE FUNCTION bench_import.payload(prefix text, n integer) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_agg(jsonb_build_object('case_number', prefix || g, 'steps', jsonb_build_array(
               jsonb_build_object('state', 'in stock', 'at', '2018-01-01'::timestamptz + g * interval '1 second'),
               jsonb_build_object('state', 'on order', 'at', '2019-01-01'::timestamptz + g * interval '1 second'),
               jsonb_build_object('state', 'in stock', 'at', '2020-01-01'::timestamptz + g * interval '1 second'))))
      FROM generate_series(1, n) g
$$;
-- Seconds one import_cases call of the given payload takes (the payload built before).
CREATE FUNCTION bench_import.timed(cases jsonb) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); imported bigint;
BEGIN
    SELECT count(*) INTO imported FROM statemachine.import_cases('bench_shop', cases, gen_random_uuid(), 'IMPORTER', gen_random_uuid());
    RETURN extract(epoch FROM clock_timestamp() - t0);
END $$;
-- The same records as single calls in one statement: create_case and two transition_case
-- per record (dated now: the single-call path cannot date the past).
CREATE FUNCTION bench_import.single_calls(prefix text, n integer) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); c uuid;
BEGIN
    FOR i IN 1..n LOOP
        SELECT id INTO c FROM statemachine.create_case('bench_shop', prefix || i, '00000000-0000-0000-0000-0000000000aa', 'IMPORTER', gen_random_uuid());
        PERFORM statemachine.transition_case(c, 'order', '00000000-0000-0000-0000-0000000000aa', 'IMPORTER', gen_random_uuid());
        PERFORM statemachine.transition_case(c, 'restock', '00000000-0000-0000-0000-0000000000aa', 'IMPORTER', gen_random_uuid());
    END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - t0);
END $$;
-- The floor: the rows an import wrote (cases numbered LIKE pattern, their history) into
-- copies of the two tables with their indexes but no triggers or foreign keys.
CREATE FUNCTION bench_import.floor(pattern text) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz;
BEGIN
    CREATE TABLE bench_import.cf (LIKE statemachine.case_file INCLUDING ALL);
    CREATE TABLE bench_import.h (LIKE statemachine.case_state_transition INCLUDING ALL);
    CREATE TEMP TABLE src_cf AS SELECT * FROM statemachine.case_file WHERE case_number LIKE pattern;
    CREATE TEMP TABLE src_h AS SELECT t.* FROM statemachine.case_state_transition t JOIN src_cf c ON c.id = t.case_id;
    t0 := clock_timestamp();
    INSERT INTO bench_import.cf SELECT * FROM src_cf;
    INSERT INTO bench_import.h SELECT * FROM src_h;
    RETURN extract(epoch FROM clock_timestamp() - t0);
END $$;
