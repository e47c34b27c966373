// In-database tests (`cargo pgrx test`): the investigation machine's happy path, every
// SM SQLSTATE provoked, idempotent replay, reopen after close. `#[pg_test(error = ..)]`
// compares messages only; SQLSTATEs are asserted through a real client in
// tests/regress (psql's LAST_ERROR_SQLSTATE) and tests/driver.

use pgrx::prelude::*;

const INVESTIGATION: &str = include_str!("../examples/investigation.json");
const PRODUCT: &str = include_str!("../examples/product_status.json");
const CASE: &str = "11111111-1111-1111-1111-111111111111";
const ACTOR: &str = "00000000-0000-0000-0000-0000000000a1";

fn define(json: &str) -> i32 {
    Spi::get_one_with_args::<i32>("SELECT statemachine.define_machine($1::jsonb)", &[json.into()])
        .unwrap()
        .unwrap()
}

fn new_case() {
    define(INVESTIGATION);
    Spi::run(&format!(
        "SELECT statemachine.create_case('investigation', 'INV-1', '{ACTOR}', 'CASE_OWNER', gen_random_uuid(), '{CASE}')"
    ))
    .unwrap();
}

fn step(code: &str, role: &str, extra: &str) -> String {
    Spi::get_one::<String>(&format!(
        "SELECT (statemachine.transition_case('{CASE}', '{code}', '{ACTOR}', '{role}', gen_random_uuid(){extra})).to_state"
    ))
    .unwrap()
    .unwrap()
}

fn current() -> (String, i64) {
    let s = Spi::get_one::<String>(&format!("SELECT current_state FROM statemachine.case_file WHERE id = '{CASE}'")).unwrap().unwrap();
    let v = Spi::get_one::<i64>(&format!("SELECT state_version FROM statemachine.case_file WHERE id = '{CASE}'")).unwrap().unwrap();
    (s, v)
}

fn reconcile_rows() -> i64 {
    Spi::get_one::<i64>("SELECT count(*) FROM statemachine.reconcile()").unwrap().unwrap()
}

fn add_evidence() -> String {
    Spi::get_one::<pgrx::Uuid>(&format!(
        "SELECT statemachine.add_evidence('{CASE}', 'REVIEW_REPORT', 's3://bucket/r.pdf', 'sha256:abc', '{ACTOR}')"
    ))
    .unwrap()
    .unwrap()
    .to_string()
}

#[pg_test]
fn happy_path_then_reopen_after_close() {
    new_case();
    assert_eq!(step("SUBMIT_CASE", "CASE_OWNER", ""), "SUBMITTED");
    assert_eq!(step("ASSIGN_REVIEW", "SUPERVISOR", ""), "UNDER_REVIEW");
    let ev = add_evidence();
    assert_eq!(step("APPROVE_CASE", "REVIEWER", &format!(", reason_text => 'complete', evidence_ids => ARRAY['{ev}']::uuid[]")), "APPROVED");
    assert_eq!(step("CLOSE_CASE", "SUPERVISOR", ""), "CLOSED");
    assert_eq!(step("REOPEN_CASE", "SUPERVISOR", ", reason_code => 'NEW_FACTS'"), "UNDER_REVIEW");
    assert_eq!(current(), ("UNDER_REVIEW".to_string(), 5));
    let linked = Spi::get_one::<i64>("SELECT count(*) FROM statemachine.case_transition_evidence WHERE purpose = 'APPROVE_CASE'").unwrap();
    assert_eq!(linked, Some(1));
    let kinds = Spi::get_one::<String>(&format!(
        "SELECT string_agg(transition_kind, ',' ORDER BY state_version) FROM statemachine.case_history('{CASE}')"
    ))
    .unwrap();
    assert_eq!(kinds.as_deref(), Some("create,normal,normal,normal,normal,reopen"));
    assert_eq!(reconcile_rows(), 0);
    let derived = Spi::get_one::<String>(&format!("SELECT current_state FROM statemachine.v_case_current_state WHERE case_id = '{CASE}'")).unwrap();
    assert_eq!(derived.as_deref(), Some("UNDER_REVIEW"));
}

#[pg_test]
fn replay_returns_the_original_row_and_writes_nothing() {
    new_case();
    let cmd = "22222222-2222-2222-2222-222222222222";
    let call = format!("SELECT (statemachine.transition_case('{CASE}', 'SUBMIT_CASE', '{ACTOR}', 'CASE_OWNER', '{cmd}')).id");
    let first = Spi::get_one::<pgrx::Uuid>(&call).unwrap().unwrap();
    step("ASSIGN_REVIEW", "SUPERVISOR", "");
    // The case has moved on; the replay still answers with the first row.
    let again = Spi::get_one::<pgrx::Uuid>(&call).unwrap().unwrap();
    assert_eq!(first, again);
    assert_eq!(current(), ("UNDER_REVIEW".to_string(), 2));
    let rows = Spi::get_one::<i64>(&format!("SELECT count(*) FROM statemachine.case_state_transition WHERE case_id = '{CASE}'")).unwrap();
    assert_eq!(rows, Some(3));
}

#[pg_test]
fn define_is_idempotent_and_versions_changes() {
    assert_eq!(define(INVESTIGATION), 1);
    assert_eq!(define(INVESTIGATION), 1);
    let changed = INVESTIGATION.replace("Investigation case lifecycle", "Investigation, v2");
    assert_eq!(define(&changed), 2);
    let rules = Spi::get_one::<i64>("SELECT count(*) FROM statemachine.transition_rule r JOIN statemachine.machine_version v ON v.id = r.machine_version_id WHERE v.version = 2").unwrap();
    assert_eq!(rules, Some(7));
}

#[pg_test]
fn cases_stay_pinned_to_their_version() {
    new_case();
    // v2 drops SUBMIT_CASE's role restriction; the v1 case still enforces it.
    define(&INVESTIGATION.replace(r#", "roles": ["CASE_OWNER"]},"#, "},"));
    let v = Spi::get_one::<i32>(&format!("SELECT machine_version FROM statemachine.case_file WHERE id = '{CASE}'")).unwrap();
    assert_eq!(v, Some(1));
    let allowed = Spi::get_one::<bool>(&format!(
        "SELECT allowed FROM statemachine.available_transitions('{CASE}', 'ANYONE') WHERE transition_code = 'SUBMIT_CASE'"
    ))
    .unwrap();
    assert_eq!(allowed, Some(false), "the v1 case keeps v1's role rule");
    // A case created now is pinned to v2, where anyone may submit.
    let other = "44444444-4444-4444-4444-444444444444";
    Spi::run(&format!("SELECT statemachine.create_case('investigation', 'INV-2', '{ACTOR}', 'X', gen_random_uuid(), '{other}')")).unwrap();
    let to = Spi::get_one::<String>(&format!(
        "SELECT (statemachine.transition_case('{other}', 'SUBMIT_CASE', '{ACTOR}', 'ANYONE', gen_random_uuid())).to_state"
    ))
    .unwrap();
    assert_eq!(to.as_deref(), Some("SUBMITTED"));
}

#[pg_test(error = "illegal transition APPROVE_CASE from state DRAFT")]
fn sm001_illegal_transition() {
    new_case();
    step("APPROVE_CASE", "REVIEWER", "");
}

#[pg_test(error = "illegal transition APPROVE_CASE from terminal state WITHDRAWN")]
fn sm001_terminal_state_is_closed() {
    new_case();
    step("SUBMIT_CASE", "CASE_OWNER", "");
    step("WITHDRAW_CASE", "CASE_OWNER", ", reason_text => 'changed my mind'");
    step("APPROVE_CASE", "REVIEWER", "");
}

#[pg_test(error = "guard min_time_in_state refused DELETE_PRODUCT")]
fn sm002_min_time_in_state() {
    define(PRODUCT);
    Spi::run(&format!("SELECT statemachine.create_case('product_status', 'SKU-1', '{ACTOR}', 'ADMIN', gen_random_uuid(), '{CASE}')")).unwrap();
    step("DISCONTINUE", "ADMIN", ", reason_code => 'EOL'");
    step("DELETE_PRODUCT", "ADMIN", "");
}

#[pg_test(error = "stale version for case 11111111-1111-1111-1111-111111111111")]
fn sm003_stale_version() {
    new_case();
    step("SUBMIT_CASE", "CASE_OWNER", ", expected_version => 0");
    step("ASSIGN_REVIEW", "SUPERVISOR", ", expected_version => 0");
}

#[pg_test(error = "transition REJECT_CASE requires a reason")]
fn sm004_reason_required() {
    new_case();
    step("SUBMIT_CASE", "CASE_OWNER", "");
    step("ASSIGN_REVIEW", "SUPERVISOR", "");
    step("REJECT_CASE", "REVIEWER", ", reason_text => '   '");
}

#[pg_test(error = "transition APPROVE_CASE requires evidence")]
fn sm005_evidence_required() {
    new_case();
    step("SUBMIT_CASE", "CASE_OWNER", "");
    step("ASSIGN_REVIEW", "SUPERVISOR", "");
    step("APPROVE_CASE", "REVIEWER", ", reason_text => 'ok'");
}

#[pg_test(error = "evidence for APPROVE_CASE is not usable")]
fn sm005_inactive_evidence() {
    new_case();
    step("SUBMIT_CASE", "CASE_OWNER", "");
    step("ASSIGN_REVIEW", "SUPERVISOR", "");
    let ev = add_evidence();
    Spi::run(&format!("SELECT statemachine.deactivate_evidence('{ev}', '{ACTOR}', 'wrong file')")).unwrap();
    step("APPROVE_CASE", "REVIEWER", &format!(", reason_text => 'ok', evidence_ids => ARRAY['{ev}']::uuid[]"));
}

#[pg_test(error = "role CASE_OWNER may not perform ASSIGN_REVIEW")]
fn sm006_role_not_permitted() {
    new_case();
    step("SUBMIT_CASE", "CASE_OWNER", "");
    step("ASSIGN_REVIEW", "CASE_OWNER", "");
}

#[pg_test(error = "direct UPDATE on statemachine.case_file refused")]
fn sm007_direct_update() {
    new_case();
    Spi::run("UPDATE statemachine.case_file SET current_state = 'APPROVED'").unwrap();
}

#[pg_test(error = "direct INSERT on statemachine.case_state_transition refused")]
fn sm007_insert_into_history_under_replica_role() {
    new_case();
    Spi::run("SET session_replication_role = replica").unwrap();
    Spi::run(&format!(
        "INSERT INTO statemachine.case_state_transition (id, case_id, machine, from_state, to_state, transition_code, transition_kind, state_version, actor_id, actor_role, policy_version, occurred_at, command_id)
         VALUES (gen_random_uuid(), '{CASE}', 'investigation', 'DRAFT', 'APPROVED', 'X', 'normal', 1, '{ACTOR}', 'R', 1, now(), gen_random_uuid())"
    ))
    .unwrap();
}

#[pg_test(error = "command_id 33333333-3333-3333-3333-333333333333 was already used for a different command")]
fn sm008_command_conflict() {
    new_case();
    let cmd = "33333333-3333-3333-3333-333333333333";
    Spi::run(&format!("SELECT statemachine.transition_case('{CASE}', 'SUBMIT_CASE', '{ACTOR}', 'CASE_OWNER', '{cmd}')")).unwrap();
    Spi::run(&format!("SELECT statemachine.transition_case('{CASE}', 'ASSIGN_REVIEW', '{ACTOR}', 'SUPERVISOR', '{cmd}')")).unwrap();
}

#[pg_test(error = "case 99999999-9999-9999-9999-999999999999 not found")]
fn sm009_unknown_case() {
    define(INVESTIGATION);
    Spi::run(&format!("SELECT statemachine.transition_case('99999999-9999-9999-9999-999999999999', 'SUBMIT_CASE', '{ACTOR}', 'CASE_OWNER', gen_random_uuid())")).unwrap();
}

#[pg_test(error = "unknown transition code FLY for machine investigation v1")]
fn sm009_unknown_transition_code() {
    new_case();
    step("FLY", "CASE_OWNER", "");
}

#[pg_test(error = "invalid machine definition: 1 problem")]
fn sm010_invalid_definition() {
    define(&INVESTIGATION.replace(r#""to": "REJECTED""#, r#""to": "NOWHERE""#));
}
