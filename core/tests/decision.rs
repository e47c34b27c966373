//! The transition decision and the refusal reports, on the seed's investigation machine.

use statemachine_core::{validate_text, CaseFacts, CompiledMachine, Interval, Refusal, Request};

fn machine() -> CompiledMachine {
    let def = validate_text(include_str!("../../examples/investigation.json")).definition.unwrap();
    CompiledMachine::from_definition(&def, 1)
}

fn req<'a>(code: &'a str, role: &'a str) -> Request<'a> {
    Request { code, actor_role: Some(role), has_reason: false, evidence_count: 0 }
}

fn never_blocks(_: &Interval) -> Option<String> {
    None
}

fn facts(state: &str) -> CaseFacts {
    CaseFacts { case_id: "c1".into(), current_state: state.into() }
}

#[test]
fn happy_path_of_the_investigation_machine() {
    let m = machine();
    assert_eq!(m.initial, "DRAFT");
    let steps = [
        ("DRAFT", "SUBMIT_CASE", "CASE_OWNER", "SUBMITTED"),
        ("SUBMITTED", "ASSIGN_REVIEW", "SUPERVISOR", "UNDER_REVIEW"),
        ("APPROVED", "CLOSE_CASE", "SUPERVISOR", "CLOSED"),
    ];
    for (from, code, role, to) in steps {
        assert_eq!(m.decide(from, &req(code, role), never_blocks).unwrap().to, to);
    }
    let approve = Request { code: "APPROVE_CASE", actor_role: Some("REVIEWER"), has_reason: true, evidence_count: 1 };
    assert_eq!(m.decide("UNDER_REVIEW", &approve, never_blocks).unwrap().to, "APPROVED");
}

#[test]
fn illegal_transition_lists_legal_ones() {
    let m = machine();
    let err = m.decide("DRAFT", &req("APPROVE_CASE", "REVIEWER"), never_blocks).unwrap_err();
    let r = err.report(&facts("DRAFT"));
    assert_eq!(r.sqlstate, "SM001");
    assert_eq!(r.message, "illegal transition APPROVE_CASE from state DRAFT");
    assert_eq!(r.detail.unwrap(), "Case c1 (machine investigation v1) is in state DRAFT; APPROVE_CASE is defined only from UNDER_REVIEW.");
    assert_eq!(r.hint.unwrap(), "Legal from DRAFT: SUBMIT_CASE (-> SUBMITTED).");
}

#[test]
fn terminal_states_are_closed_except_reopen() {
    let m = machine();
    let err = m.decide("REJECTED", &req("APPROVE_CASE", "REVIEWER"), never_blocks).unwrap_err();
    let r = err.report(&facts("REJECTED"));
    assert_eq!(r.message, "illegal transition APPROVE_CASE from terminal state REJECTED");
    assert_eq!(r.hint.unwrap(), "No transition leaves REJECTED.");
    let err = m.decide("CLOSED", &req("CLOSE_CASE", "SUPERVISOR"), never_blocks).unwrap_err();
    assert_eq!(err.report(&facts("CLOSED")).hint.unwrap(), "Legal from CLOSED: REOPEN_CASE (-> UNDER_REVIEW, reopen).");
    let reopen = Request { code: "REOPEN_CASE", actor_role: Some("SUPERVISOR"), has_reason: true, evidence_count: 0 };
    assert_eq!(m.decide("CLOSED", &reopen, never_blocks).unwrap().to, "UNDER_REVIEW");
}

#[test]
fn unknown_code_is_not_found() {
    let m = machine();
    let err = m.decide("DRAFT", &req("FLY_AWAY", "X"), never_blocks).unwrap_err();
    assert!(matches!(err, Refusal::UnknownTransition { .. }));
    let r = err.report(&facts("DRAFT"));
    assert_eq!(r.sqlstate, "SM009");
    assert_eq!(r.message, "unknown transition code FLY_AWAY for machine investigation v1");
}

#[test]
fn checks_in_order_role_reason_evidence() {
    let m = machine();
    let r = m.decide("UNDER_REVIEW", &req("APPROVE_CASE", "CASE_OWNER"), never_blocks).unwrap_err().report(&facts("UNDER_REVIEW"));
    assert_eq!(r.sqlstate, "SM006");
    assert_eq!(r.message, "role CASE_OWNER may not perform APPROVE_CASE");
    assert_eq!(r.hint.unwrap(), "Act in one of the permitted roles: REVIEWER.");

    let r = m.decide("UNDER_REVIEW", &req("APPROVE_CASE", "REVIEWER"), never_blocks).unwrap_err().report(&facts("UNDER_REVIEW"));
    assert_eq!(r.sqlstate, "SM004");

    let with_reason = Request { code: "APPROVE_CASE", actor_role: Some("REVIEWER"), has_reason: true, evidence_count: 0 };
    let r = m.decide("UNDER_REVIEW", &with_reason, never_blocks).unwrap_err().report(&facts("UNDER_REVIEW"));
    assert_eq!(r.sqlstate, "SM005");
    assert_eq!(r.message, "transition APPROVE_CASE requires evidence");
}

#[test]
fn role_check_can_be_skipped_and_empty_roles_allow_anyone() {
    let m = machine();
    let any = Request { code: "SUBMIT_CASE", actor_role: None, has_reason: false, evidence_count: 0 };
    assert!(m.decide("DRAFT", &any, never_blocks).is_ok());
    let def = validate_text(include_str!("../../examples/product_status.json")).definition.unwrap();
    let p = CompiledMachine::from_definition(&def, 3);
    assert!(p.decide("IN_STOCK", &req("SELL_OUT", "ANYONE_AT_ALL"), never_blocks).is_ok());
}

#[test]
fn min_time_in_state_guard_says_what_is_left() {
    let def = validate_text(include_str!("../../examples/product_status.json")).definition.unwrap();
    let p = CompiledMachine::from_definition(&def, 1);
    let mut asked = None;
    let err = p
        .decide("UNAVAILABLE", &req("DELETE_PRODUCT", "ADMIN"), |iv| {
            asked = Some(*iv);
            Some("4 years 11 mons left".into())
        })
        .unwrap_err();
    assert_eq!(asked, Some(Interval { months: 60, days: 0, micros: 0 }));
    let r = err.report(&facts("UNAVAILABLE"));
    assert_eq!(r.sqlstate, "SM002");
    assert_eq!(r.message, "guard min_time_in_state refused DELETE_PRODUCT");
    assert_eq!(r.detail.unwrap(), "Case c1: guard min_time_in_state: DELETE_PRODUCT requires at least 5 years in state UNAVAILABLE; 4 years 11 mons left.");
    assert!(p.decide("UNAVAILABLE", &req("DELETE_PRODUCT", "ADMIN"), never_blocks).is_ok());
}

#[test]
fn multi_from_rules_expand_per_state() {
    let def = validate_text(include_str!("../../examples/product_status.json")).definition.unwrap();
    let p = CompiledMachine::from_definition(&def, 1);
    assert_eq!(p.rule("ON_ORDER", "RESTOCK").unwrap().to, "IN_STOCK");
    assert_eq!(p.rule("UNAVAILABLE", "RESTOCK").unwrap().to, "IN_STOCK");
    assert!(p.rule("IN_STOCK", "RESTOCK").is_none());
    let legal: Vec<String> = p.legal_from("IN_STOCK").into_iter().map(|(c, _, _)| c).collect();
    assert_eq!(legal, vec!["DISCONTINUE", "SELL_OUT"]);
}

#[test]
fn every_sqlstate_has_a_report() {
    use statemachine_core::definition::{Problem, Severity};
    let samples = vec![
        Refusal::UnknownCase { case_id: "x".into() },
        Refusal::UnknownMachine { machine: "m".into(), version: Some(2) },
        Refusal::StaleVersion { expected: 1, actual: 2 },
        Refusal::CommandConflict { command_id: "k".into(), existing: "A".into(), requested: "B".into() },
        Refusal::DirectWrite { table: "statemachine.case_file".into(), operation: "UPDATE".into(), what: "x.".into() },
        Refusal::EvidenceInvalid { code: "A".into(), problems: vec![("e1".into(), "is not active".into())] },
        Refusal::InvalidDefinition {
            problems: vec![
                Problem { severity: Severity::Error, path: "$.a".into(), problem: "bad".into() },
                Problem { severity: Severity::Warning, path: "$.b".into(), problem: "meh".into() },
            ],
        },
    ];
    let codes: Vec<&str> = samples.iter().map(|s| s.report(&facts("S")).sqlstate).collect();
    assert_eq!(codes, vec!["SM009", "SM009", "SM003", "SM008", "SM007", "SM005", "SM010"]);
    let inv = samples.last().unwrap().report(&facts("S"));
    assert_eq!(inv.message, "invalid machine definition: 1 problem");
    assert_eq!(inv.detail.unwrap(), "$.a: bad");
}
