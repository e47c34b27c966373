-- Benchmark fixtures: the same one-state machine (PING: A -> A, role AGENT) three ways.
--   floor     the two writes a transition cannot avoid: UPDATE the case, INSERT history
--   plpgsql   what a team writes by hand (seed 003 §6): lock, rule lookup, role/reason
--             checks, idempotency on command_id, both writes, and a guard trigger
--   extension statemachine.transition_case
-- Floor and PL/pgSQL write to copies of the extension's tables (same columns, indexes,
-- constraints and foreign key), so all three pay for the same indexes.
\set ON_ERROR_STOP 1
CREATE EXTENSION IF NOT EXISTS pg_statemachine;
CREATE SCHEMA bench;

SELECT statemachine.define_machine('{"machine": "bench", "states": [{"code": "A", "initial": true}],
  "transitions": [{"code": "PING", "from": "A", "to": "A", "roles": ["AGENT"]}]}');

CREATE FUNCTION bench.case_uuid(n integer) RETURNS uuid LANGUAGE sql IMMUTABLE
AS $$ SELECT ('00000000-0000-0000-0000-' || lpad(n::text, 12, '0'))::uuid $$;

-- Copies of the tables, for the floor and for the hand-written baseline.
CREATE TABLE bench.floor_case (LIKE statemachine.case_file INCLUDING ALL);
CREATE TABLE bench.floor_history (LIKE statemachine.case_state_transition INCLUDING ALL);
ALTER TABLE bench.floor_history ADD FOREIGN KEY (case_id) REFERENCES bench.floor_case (id);
CREATE TABLE bench.plpgsql_case (LIKE statemachine.case_file INCLUDING ALL);
CREATE TABLE bench.plpgsql_history (LIKE statemachine.case_state_transition INCLUDING ALL);
ALTER TABLE bench.plpgsql_history ADD FOREIGN KEY (case_id) REFERENCES bench.plpgsql_case (id);
CREATE TABLE bench.plpgsql_rule (from_state text, transition_code text, to_state text, requires_reason boolean,
                                 PRIMARY KEY (from_state, transition_code));
CREATE TABLE bench.plpgsql_rule_role (from_state text, transition_code text, role_code text,
                                      PRIMARY KEY (from_state, transition_code, role_code));
INSERT INTO bench.plpgsql_rule VALUES ('A', 'PING', 'A', false);
INSERT INTO bench.plpgsql_rule_role VALUES ('A', 'PING', 'AGENT');

-- The hand-written guard trigger: writes only from inside the write path function.
CREATE FUNCTION bench.plpgsql_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('bench.in_write_path', true), '') <> 'on' THEN
        RAISE EXCEPTION 'direct write refused' USING ERRCODE = 'SM007';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER guard BEFORE INSERT OR UPDATE OR DELETE ON bench.plpgsql_case FOR EACH ROW EXECUTE FUNCTION bench.plpgsql_guard();
CREATE TRIGGER guard BEFORE INSERT OR UPDATE OR DELETE ON bench.plpgsql_history FOR EACH ROW EXECUTE FUNCTION bench.plpgsql_guard();

-- Seed 003 §6, by hand.
CREATE FUNCTION bench.transition_case_plpgsql(p_case uuid, p_code text, p_actor uuid, p_role text, p_command uuid,
                                              p_reason_code text DEFAULT NULL, p_reason_text text DEFAULT NULL)
    RETURNS bench.plpgsql_history LANGUAGE plpgsql AS $$
DECLARE
    c bench.plpgsql_case;
    r bench.plpgsql_rule;
    h bench.plpgsql_history;
BEGIN
    SELECT * INTO h FROM bench.plpgsql_history WHERE command_id = p_command;
    IF FOUND THEN RETURN h; END IF;
    SELECT * INTO c FROM bench.plpgsql_case WHERE id = p_case FOR UPDATE;
    IF NOT FOUND THEN RAISE EXCEPTION 'case % not found', p_case USING ERRCODE = 'SM009'; END IF;
    SELECT * INTO r FROM bench.plpgsql_rule WHERE from_state = c.current_state AND transition_code = p_code;
    IF NOT FOUND THEN RAISE EXCEPTION 'illegal transition' USING ERRCODE = 'SM001'; END IF;
    IF NOT EXISTS (SELECT 1 FROM bench.plpgsql_rule_role rr
                    WHERE rr.from_state = r.from_state AND rr.transition_code = r.transition_code AND rr.role_code = p_role) THEN
        RAISE EXCEPTION 'role not permitted' USING ERRCODE = 'SM006';
    END IF;
    IF r.requires_reason AND coalesce(p_reason_code, p_reason_text) IS NULL THEN
        RAISE EXCEPTION 'reason required' USING ERRCODE = 'SM004';
    END IF;
    PERFORM set_config('bench.in_write_path', 'on', true);
    UPDATE bench.plpgsql_case SET current_state = r.to_state, state_version = state_version + 1, updated_at = now()
     WHERE id = p_case;
    INSERT INTO bench.plpgsql_history (id, case_id, machine, from_state, to_state, transition_code, transition_kind, state_version,
                                       actor_id, actor_role, reason_code, reason_text, policy_version, occurred_at, command_id)
    VALUES (gen_random_uuid(), p_case, c.machine, c.current_state, r.to_state, p_code, 'normal', c.state_version + 1,
            p_actor, p_role, p_reason_code, p_reason_text, 1, now(), p_command)
    RETURNING * INTO h;
    PERFORM set_config('bench.in_write_path', 'off', true);
    RETURN h;
END $$;

-- Cases for all three.
CREATE FUNCTION bench.setup_cases(n integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE v record;
BEGIN
    SELECT id, version INTO v FROM statemachine.machine_version WHERE machine = 'bench';
    PERFORM statemachine.create_case('bench', 'B-' || i, gen_random_uuid(), 'AGENT', gen_random_uuid(), bench.case_uuid(i))
       FROM generate_series(1, n) i;
    INSERT INTO bench.floor_case (id, machine, machine_version, machine_version_id, case_number, current_state, state_version,
                                  state_entered_at, created_at, updated_at)
    SELECT bench.case_uuid(i), 'bench', v.version, v.id, 'B-' || i, 'A', 0, now(), now(), now() FROM generate_series(1, n) i;
    PERFORM set_config('bench.in_write_path', 'on', true);
    INSERT INTO bench.plpgsql_case SELECT * FROM bench.floor_case;
END $$;

-- Server-side cost: n transitions from one PL/pgSQL loop, no client in the loop.
-- Returns microseconds per transition.
CREATE FUNCTION bench.server_side(variant text, n integer, cases integer) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    c uuid;
    actor uuid := gen_random_uuid();
BEGIN
    FOR i IN 1..n LOOP
        c := bench.case_uuid(1 + i % cases);
        IF variant = 'floor' THEN
            WITH u AS (UPDATE bench.floor_case SET state_version = state_version + 1, updated_at = now()
                        WHERE id = c RETURNING id, machine, current_state, state_version)
            INSERT INTO bench.floor_history (id, case_id, machine, from_state, to_state, transition_code, transition_kind,
                                             state_version, actor_id, actor_role, policy_version, occurred_at, command_id)
            SELECT gen_random_uuid(), u.id, u.machine, u.current_state, u.current_state, 'PING', 'normal', u.state_version,
                   actor, 'AGENT', 1, now(), gen_random_uuid() FROM u;
        ELSIF variant = 'plpgsql' THEN
            PERFORM bench.transition_case_plpgsql(c, 'PING', actor, 'AGENT', gen_random_uuid());
        ELSE
            PERFORM statemachine.transition_case(c, 'PING', actor, 'AGENT', gen_random_uuid());
        END IF;
    END LOOP;
    RETURN round(extract(epoch FROM clock_timestamp() - t0) * 1e6 / n, 2);
END $$;
