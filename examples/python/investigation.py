"""pg_statemachine from Python (psycopg 3): the seed investigation case, start to review.

Connects with the standard libpq variables (PGHOST, PGPORT, PGUSER, PGDATABASE).
Usage: python3 investigation.py CASE_NUMBER
"""
import pathlib
import sys
import uuid

import psycopg

OWNER = uuid.UUID("a0000000-0000-0000-0000-000000000001")
SUPERVISOR = uuid.UUID("a0000000-0000-0000-0000-000000000002")
MACHINE = pathlib.Path(__file__).resolve().parent.parent / "investigation.json"


def transition(conn, case_id, code, actor, role, command_id, expected_version=None):
    """transition_case, retried on SM003 with the *same* command_id: if the first attempt
    did commit after all, the retry returns its row instead of moving the case twice."""
    for _ in range(3):
        try:
            return conn.execute(
                "SELECT from_state, to_state, state_version, id FROM statemachine.transition_case("
                "%s, %s, %s, %s, %s, expected_version => %s)",
                (case_id, code, actor, role, command_id, expected_version),
            ).fetchone()
        except psycopg.Error as e:
            if e.sqlstate != "SM003":
                raise
            print("SM003: the case moved since we read it; re-reading and retrying with the same command_id")
            expected_version = conn.execute(
                "SELECT state_version FROM statemachine.case_file WHERE id = %s", (case_id,)
            ).fetchone()[0]
    raise RuntimeError("case keeps moving; giving up")


def show_available(conn, case_id, role):
    rows = conn.execute(
        "SELECT transition_code, to_state, requires_reason, requires_evidence, allowed, blocked_by "
        "FROM statemachine.available_transitions(%s, %s) ORDER BY transition_code",
        (case_id, role),
    ).fetchall()
    for code, to_state, reason, evidence, allowed, blocked_by in rows:
        needs = [n for n, on in (("reason", reason), ("evidence", evidence)) if on]
        print(f"available to {role}: {code} -> {to_state}"
              + (f" (needs {', '.join(needs)})" if needs else "")
              + ("" if allowed else f" blocked: {blocked_by}"))


def main(case_number):
    # autocommit: each call is its own transaction, as an application's requests are.
    with psycopg.connect("", autocommit=True) as conn:
        conn.execute("SELECT statemachine.define_machine(%s::jsonb)", (MACHINE.read_text(),))
        case = conn.execute(
            "SELECT id, current_state FROM statemachine.create_case('investigation', %s, %s, 'CASE_OWNER', %s)",
            (case_number, OWNER, uuid.uuid4()),
        ).fetchone()
        case_id = case[0]
        print(f"created case {case_number} in {case[1]}")
        show_available(conn, case_id, "CASE_OWNER")

        # The supervisor's screen was loaded at version 0; then the owner submitted.
        seen = conn.execute("SELECT state_version FROM statemachine.case_file WHERE id = %s", (case_id,)).fetchone()[0]
        print(f"the supervisor's screen shows version {seen}")
        row = transition(conn, case_id, "SUBMIT_CASE", OWNER, "CASE_OWNER", uuid.uuid4())
        print(f"the owner submits: {row[0]} -> {row[1]} (version {row[2]})")

        command = uuid.uuid4()
        row = transition(conn, case_id, "ASSIGN_REVIEW", SUPERVISOR, "SUPERVISOR", command, expected_version=seen)
        print(f"ASSIGN_REVIEW: {row[0]} -> {row[1]} (version {row[2]})")
        again = transition(conn, case_id, "ASSIGN_REVIEW", SUPERVISOR, "SUPERVISOR", command)
        print("replayed the same command_id: " + ("same history row" if again[3] == row[3] else "A NEW ROW?!"))

        try:
            transition(conn, case_id, "CLOSE_CASE", SUPERVISOR, "SUPERVISOR", uuid.uuid4())
        except psycopg.Error as e:
            # SM001's HINT lists what is legal from here: worth showing to a person.
            print(f"{e.sqlstate}: {e.diag.message_primary}")
            print(f"hint for the user: {e.diag.message_hint}")
        show_available(conn, case_id, "REVIEWER")


if __name__ == "__main__":
    main(sys.argv[1])
