// In-database tests (`cargo pgrx test`): the investigation machine's happy path, every
// SM SQLSTATE provoked, idempotent replay, reopen after close, guards and their audit,
// the dry run agreeing with available_transitions. `#[pg_test(error = ..)]`
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
    let linked = Spi::get_one::<i64>("SELECT count(*) FROM statemachine.case_transition_evidence WHERE purpose = 'required'").unwrap();
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

// A machine with a four-eyes guard and an assignment guard, audited.
const GUARDED: &str = r#"{"machine": "guarded",
  "states": [{"code": "OPEN", "initial": true}, {"code": "SUBMITTED"}, {"code": "DONE", "terminal": true}, {"code": "DROPPED", "terminal": true}],
  "transitions": [
    {"code": "SUBMIT", "from": "OPEN", "to": "SUBMITTED"},
    {"code": "APPROVE", "from": "SUBMITTED", "to": "DONE", "audit_guards": true,
     "guards": [{"guard": "distinct_actor", "transition": "SUBMIT"}, {"guard": "requires_assignment", "role": "REVIEWER"}]},
    {"code": "DROP", "from": ["OPEN", "SUBMITTED"], "to": "DROPPED", "requires_reason": true,
     "reasons": [{"code": "DUPLICATE", "label": "Duplicate"}]}]}"#;
const OTHER: &str = "00000000-0000-0000-0000-0000000000b2";

fn new_guarded_case() {
    define(GUARDED);
    Spi::run(&format!("SELECT statemachine.create_case('guarded', 'G-1', '{ACTOR}', 'CLERK', gen_random_uuid(), '{CASE}')")).unwrap();
    step("SUBMIT", "CLERK", "");
}

fn transition_as(actor: &str, code: &str) -> String {
    Spi::get_one::<String>(&format!(
        "SELECT (statemachine.transition_case('{CASE}', '{code}', '{actor}', 'REVIEWER', gen_random_uuid())).to_state"
    ))
    .unwrap()
    .unwrap()
}

fn assign(actor: &str) {
    Spi::run(&format!("SELECT statemachine.assign_case('{CASE}', '{actor}', 'REVIEWER', '{ACTOR}', gen_random_uuid())")).unwrap();
}

#[pg_test]
fn audited_transition_stores_every_guard_it_passed() {
    new_guarded_case();
    assign(OTHER);
    assert_eq!(transition_as(OTHER, "APPROVE"), "DONE");
    let rows = Spi::get_one::<String>(
        "SELECT string_agg(g.guard_code || '=' || g.passed, ',' ORDER BY g.guard_code) \
         FROM statemachine.case_transition_guard_result g JOIN statemachine.case_state_transition t ON t.id = g.transition_id \
         WHERE t.transition_code = 'APPROVE' AND g.evaluated_at = t.occurred_at",
    )
    .unwrap()
    .unwrap();
    assert_eq!(rows, "distinct_actor=true,requires_assignment=true");
    let prior = Spi::get_one::<String>("SELECT evidence->>'prior_actor_id' FROM statemachine.case_transition_guard_result WHERE guard_code = 'distinct_actor'")
        .unwrap()
        .unwrap();
    assert_eq!(prior, ACTOR);
}

#[pg_test(error = "guard distinct_actor refused APPROVE")]
fn sm002_four_eyes() {
    new_guarded_case();
    assign(ACTOR);
    transition_as(ACTOR, "APPROVE");
}

#[pg_test(error = "guard requires_assignment refused APPROVE")]
fn sm002_released_assignment_no_longer_counts() {
    new_guarded_case();
    assign(OTHER);
    Spi::run(&format!("SELECT statemachine.release_assignment('{CASE}', '{OTHER}', 'REVIEWER', '{ACTOR}', gen_random_uuid())")).unwrap();
    transition_as(OTHER, "APPROVE");
}

#[pg_test(error = "reason code NOPE is not allowed for DROP")]
fn sm004_reason_code_outside_the_declared_list() {
    new_guarded_case();
    step("DROP", "CLERK", ", reason_code => 'NOPE'");
}

#[pg_test(error = "no active REVIEWER assignment of 00000000-0000-0000-0000-0000000000b2 on case 11111111-1111-1111-1111-111111111111")]
fn sm009_release_without_assignment() {
    new_guarded_case();
    Spi::run(&format!("SELECT statemachine.release_assignment('{CASE}', '{OTHER}', 'REVIEWER', '{ACTOR}', gen_random_uuid())")).unwrap();
}

/// The UI's list and the dry run come from one evaluation: for every legal transition,
/// `allowed` is exactly "every check of check_transition passed", for several actors.
#[pg_test]
fn available_transitions_agrees_with_check_transition() {
    new_guarded_case();
    for (actor, assigned) in [(ACTOR, false), (OTHER, false), (OTHER, true)] {
        if assigned {
            assign(actor);
        }
        let disagreements = Spi::get_one::<i64>(&format!(
            "SELECT count(*) FROM statemachine.available_transitions('{CASE}', 'REVIEWER', '{actor}') a \
             WHERE a.allowed IS DISTINCT FROM (SELECT bool_and(c.passed) FROM statemachine.check_transition('{CASE}', a.transition_code, \
                   '{actor}', 'REVIEWER', reason_code => 'DUPLICATE') c)"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(disagreements, 0, "actor {actor}, assigned {assigned}");
    }
    let allowed = Spi::get_one::<bool>(&format!(
        "SELECT allowed FROM statemachine.available_transitions('{CASE}', 'REVIEWER', '{OTHER}') WHERE transition_code = 'APPROVE'"
    ))
    .unwrap()
    .unwrap();
    assert!(allowed);
}

// Adopting existing data (0.4.0): codes as users write them, transition_to, import_cases,
// a governed table's mirror.
const SHOP: &str = r#"{"machine": "shop",
  "states": [{"code": "in stock", "initial": true}, {"code": "on order"}, {"code": "unavailable"}, {"code": "deleted", "terminal": true}],
  "transitions": [{"code": "order", "from": "in stock", "to": "on order"},
                  {"code": "restock", "from": ["on order", "unavailable"], "to": "in stock"},
                  {"code": "sell out", "from": ["in stock", "on order"], "to": "unavailable"},
                  {"code": "delete", "from": "unavailable", "to": "deleted", "min_time_in_state": "5 years"}]}"#;

fn shop_case(number: &str) -> pgrx::Uuid {
    Spi::get_one::<pgrx::Uuid>(&format!("SELECT id FROM statemachine.case_file WHERE machine = 'shop' AND case_number = '{number}'"))
        .unwrap()
        .unwrap()
}

fn to_state(case: pgrx::Uuid, state: &str) -> String {
    Spi::get_one::<String>(&format!(
        "SELECT transition_code FROM statemachine.transition_to('{case}', '{state}', '{ACTOR}', 'CLERK', gen_random_uuid())"
    ))
    .unwrap()
    .unwrap()
}

#[pg_test]
fn transition_to_performs_the_one_rule_to_a_state() {
    define(SHOP);
    Spi::run(&format!("SELECT statemachine.create_case('shop', 'P-1', '{ACTOR}', 'CLERK', gen_random_uuid())")).unwrap();
    let case = shop_case("P-1");
    assert_eq!(to_state(case, "on order"), "order");
    assert_eq!(to_state(case, "unavailable"), "sell out");
    assert_eq!(to_state(case, "in stock"), "restock");
    assert_eq!(reconcile_rows(), 0);
}

#[pg_test(error = "no transition leads from state in stock to deleted")]
fn transition_to_a_state_no_rule_reaches_is_refused() {
    define(SHOP);
    Spi::run(&format!("SELECT statemachine.create_case('shop', 'P-1', '{ACTOR}', 'CLERK', gen_random_uuid())")).unwrap();
    to_state(shop_case("P-1"), "deleted");
}

#[pg_test]
fn imported_dates_start_the_clock_of_time_guards() {
    define(SHOP);
    let imported = Spi::get_one::<i64>(&format!(
        r#"SELECT count(*) FROM statemachine.import_cases('shop', '[
             {{"case_number": "P-3", "steps": [{{"state": "in stock", "at": "2013-08-07 02:46:21+02"}}, {{"state": "unavailable", "at": "2019-01-27 02:00:31+02"}}]}}
           ]', '{ACTOR}', 'IMPORTER', gen_random_uuid())"#
    ))
    .unwrap();
    assert_eq!(imported, Some(1));
    let case = shop_case("P-3");
    let kinds = Spi::get_one::<String>(&format!(
        "SELECT string_agg(transition_kind || ':' || transition_code, ',' ORDER BY state_version) FROM statemachine.case_history('{case}')"
    ))
    .unwrap();
    assert_eq!(kinds.as_deref(), Some("import:CREATE,import:sell out"));
    // Unavailable since 2019: the 5 years have passed.
    assert_eq!(to_state(case, "deleted"), "delete");
    assert_eq!(reconcile_rows(), 0);
}

#[pg_test(error = "direct UPDATE on governed table public.item refused")]
fn a_governed_column_follows_the_case_and_refuses_direct_writes() {
    define(SHOP);
    Spi::run("CREATE TABLE public.item (sku text PRIMARY KEY, status text NOT NULL)").unwrap();
    Spi::run("INSERT INTO public.item VALUES ('P-1', 'in stock'), ('P-2', 'unavailable')").unwrap();
    Spi::run("SELECT statemachine.govern_table('public.item', 'sku', 'status', 'shop')").unwrap();
    to_state(shop_case("P-1"), "on order");
    let status = Spi::get_one::<String>("SELECT status FROM public.item WHERE sku = 'P-1'").unwrap();
    assert_eq!(status.as_deref(), Some("on order"));
    assert_eq!(reconcile_rows(), 0);
    Spi::run("UPDATE public.item SET status = 'in stock' WHERE sku = 'P-1'").unwrap();
}

/// One node delegates nothing: the calls run here, and the worker's entry of a delegated
/// call (src/delegation.rs) refuses, even for the owner.
#[pg_test(error = "this installation does not delegate calls to the node of a case")]
fn one_node_delegates_nothing() {
    new_case();
    assert_eq!(step("SUBMIT_CASE", "CASE_OWNER", ""), "SUBMITTED");
    Spi::run(&format!(
        "SELECT statemachine.transition_on_shard('{CASE}', 'ASSIGN_REVIEW', '{ACTOR}', 'SUPERVISOR', gen_random_uuid(), NULL, NULL, NULL, NULL, NULL, NULL, '{{}}', false, 'postgres')"
    ))
    .unwrap();
}

/// A parallel worker has no caller of its own (src/delegation.rs: it does not start as its
/// leader's session, and on Citus a relayed session's user may be any LOGIN role its leader
/// SET ROLE to): asking who calls there is refused, even through a PARALLEL SAFE wrapper of
/// a read. (Not in tests/regress: with Citus loaded the planner keeps this call out of a
/// parallel worker.)
#[pg_test(error = "a parallel worker has no caller of its own")]
fn a_parallel_worker_has_no_caller() {
    define(
        r#"{"machine": "db_roles", "role_source": "database",
            "states": [{"code": "OPEN", "initial": true}, {"code": "DONE", "terminal": true}],
            "transitions": [{"code": "FINISH", "from": "OPEN", "to": "DONE", "roles": ["pg_monitor"]}]}"#,
    );
    Spi::run(&format!(
        "SELECT statemachine.create_case('db_roles', 'DB-P', statemachine.database_actor_id(), 'pg_monitor', gen_random_uuid(), '{CASE}')"
    ))
    .unwrap();
    Spi::run(
        "CREATE FUNCTION public.checks_in_parallel(id uuid) RETURNS bigint LANGUAGE sql PARALLEL SAFE \
         AS $$ SELECT count(*) FROM statemachine.check_transition(id, 'FINISH', NULL, 'pg_monitor') $$",
    )
    .unwrap();
    let outside = Spi::get_one::<i64>(&format!("SELECT public.checks_in_parallel('{CASE}')")).unwrap();
    assert_eq!(outside, Some(4), "outside parallel query the checks are answered");
    Spi::run("SET LOCAL force_parallel_mode = on; SET LOCAL parallel_setup_cost = 0; SET LOCAL parallel_tuple_cost = 0").unwrap();
    Spi::run(&format!("SELECT public.checks_in_parallel('{CASE}')")).unwrap();
}
