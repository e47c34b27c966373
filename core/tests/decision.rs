//! The transition decision, every check and the refusal reports, on the seed's machines.

use statemachine_core::checks::{ActiveAssignment, Options, PriorActor, DRY_RUN, WRITE};
use statemachine_core::{
    validate_text, CaseFacts, CompiledMachine, EvidenceFact, Facts, Interval, Membership, Refusal, Request, SqlOutcome,
    Supplied,
};
use serde_json::{json, Value};

fn machine() -> CompiledMachine {
    let def = validate_text(include_str!("../../examples/investigation.json")).definition.unwrap();
    CompiledMachine::from_definition(&def, 1)
}

fn compile(def: Value) -> CompiledMachine {
    let v = statemachine_core::validate(&def);
    assert!(!v.has_errors(), "{:?}", v.problems);
    CompiledMachine::from_definition(&v.definition.unwrap(), 1)
}

const CASE: [u8; 16] = [1; 16];
const ALICE: [u8; 16] = [0xa; 16];
const BOB: [u8; 16] = [0xb; 16];

/// In-memory answers to the database-side questions; records what was asked.
#[derive(Default)]
struct World {
    time_left: Option<String>,
    asked_min: Option<Interval>,
    prior: Vec<(String, [u8; 16])>,
    /// Database users who recorded `prior` rows, by transition (role_source database).
    recorded_by: Vec<(String, String)>,
    session_user: String,
    /// The actor id of the session user (role_source database).
    database_actor: Option<[u8; 16]>,
    assignments: Vec<([u8; 16], String)>,
    members_of: Vec<String>,
    sql: Vec<(String, SqlOutcome)>,
    contexts: Vec<Value>,
}

impl Facts for World {
    fn membership(&mut self, role: &str) -> Membership {
        match role {
            r if self.members_of.iter().any(|m| m == r) => Membership::Member,
            "NO_SUCH_ROLE" => Membership::NoSuchRole { session_user: "app".into() },
            _ => Membership::NotMember { session_user: "app".into() },
        }
    }
    fn time_left(&mut self, min: &Interval) -> Option<String> {
        self.asked_min = Some(*min);
        self.time_left.clone()
    }
    fn prior_actor(&mut self, transition: &str) -> Option<PriorActor> {
        self.prior.iter().rev().find(|(t, _)| t == transition).map(|(_, a)| PriorActor {
            actor_id: *a,
            transition_id: [7; 16],
            occurred_at: "2026-01-01 10:00:00+00".into(),
            recorded_by: self.recorded_by.iter().rev().find(|(t, _)| t == transition).map(|(_, u)| u.clone()).unwrap_or_default(),
        })
    }
    fn session_user(&mut self) -> String {
        self.session_user.clone()
    }
    fn database_actor_id(&mut self) -> Option<[u8; 16]> {
        self.database_actor
    }
    fn active_assignment(&mut self, actor: &[u8; 16], role: &str) -> Option<ActiveAssignment> {
        self.assignments
            .iter()
            .any(|(a, r)| a == actor && r == role)
            .then(|| ActiveAssignment { id: [9; 16], assigned_at: "2026-01-02 09:00:00+00".into() })
    }
    fn sql_guard(&mut self, _code: &str, name: &str, context: &Value) -> SqlOutcome {
        self.contexts.push(context.clone());
        self.sql.iter().find(|(n, _)| n == name).map(|(_, o)| o.clone()).unwrap_or(SqlOutcome::Verdict { passed: Some(true), evidence: None })
    }
}

fn given<'a>(reason_code: Option<&'a str>, reason_text: Option<&'a str>, evidence: &'a [EvidenceFact]) -> Supplied<'a> {
    Supplied::Given { reason_code, reason_text, evidence }
}

fn req<'a>(state: &'a str, code: &'a str, role: &'a str) -> Request<'a> {
    Request {
        case_id: CASE,
        current_state: state,
        code,
        actor_id: Some(ALICE),
        actor_role: Some(role),
        supplied: given(None, None, &[]),
        dry_run: false,
    }
}

#[allow(clippy::result_large_err)] // test helper: the refusal is inspected right away
fn decide(m: &CompiledMachine, r: &Request<'_>, w: &mut World) -> Result<String, Refusal> {
    m.decide(r, w, WRITE).map(|(rule, _)| rule.to.clone())
}

fn facts(state: &str) -> CaseFacts {
    CaseFacts { case_id: "c1".into(), current_state: state.into() }
}

fn evidence(id: u8, case: [u8; 16], active: bool, ty: &str) -> EvidenceFact {
    EvidenceFact { id: Some([id; 16]), case_id: Some(case), active, evidence_type: Some(ty.into()) }
}

#[test]
fn happy_path_of_the_investigation_machine() {
    let m = machine();
    let mut w = World::default();
    assert_eq!(m.initial, "DRAFT");
    let steps = [
        ("DRAFT", "SUBMIT_CASE", "CASE_OWNER", "SUBMITTED"),
        ("SUBMITTED", "ASSIGN_REVIEW", "SUPERVISOR", "UNDER_REVIEW"),
        ("APPROVED", "CLOSE_CASE", "SUPERVISOR", "CLOSED"),
    ];
    for (from, code, role, to) in steps {
        assert_eq!(decide(&m, &req(from, code, role), &mut w).unwrap(), to);
    }
    let ev = [evidence(1, CASE, true, "REVIEW_REPORT")];
    let approve = Request { supplied: given(None, Some("ok"), &ev), ..req("UNDER_REVIEW", "APPROVE_CASE", "REVIEWER") };
    assert_eq!(decide(&m, &approve, &mut w).unwrap(), "APPROVED");
}

#[test]
fn illegal_transition_lists_legal_ones() {
    let m = machine();
    let err = decide(&m, &req("DRAFT", "APPROVE_CASE", "REVIEWER"), &mut World::default()).unwrap_err();
    let r = err.report(&facts("DRAFT"));
    assert_eq!(r.sqlstate, "SM001");
    assert_eq!(r.message, "illegal transition APPROVE_CASE from state DRAFT");
    assert_eq!(r.detail.unwrap(), "Case c1 (machine investigation v1) is in state DRAFT; APPROVE_CASE is defined only from UNDER_REVIEW.");
    assert_eq!(r.hint.unwrap(), "Legal from DRAFT: SUBMIT_CASE (-> SUBMITTED).");
}

#[test]
fn terminal_states_are_closed_except_reopen() {
    let m = machine();
    let mut w = World::default();
    let err = decide(&m, &req("REJECTED", "APPROVE_CASE", "REVIEWER"), &mut w).unwrap_err();
    let r = err.report(&facts("REJECTED"));
    assert_eq!(r.message, "illegal transition APPROVE_CASE from terminal state REJECTED");
    assert_eq!(r.hint.unwrap(), "No transition leaves REJECTED.");
    let err = decide(&m, &req("CLOSED", "CLOSE_CASE", "SUPERVISOR"), &mut w).unwrap_err();
    assert_eq!(err.report(&facts("CLOSED")).hint.unwrap(), "Legal from CLOSED: REOPEN_CASE (-> UNDER_REVIEW, reopen).");
    let reopen = Request { supplied: given(None, Some("new facts"), &[]), ..req("CLOSED", "REOPEN_CASE", "SUPERVISOR") };
    assert_eq!(decide(&m, &reopen, &mut w).unwrap(), "UNDER_REVIEW");
}

#[test]
fn unknown_code_is_not_found() {
    let m = machine();
    let err = decide(&m, &req("DRAFT", "FLY_AWAY", "X"), &mut World::default()).unwrap_err();
    assert!(matches!(err, Refusal::UnknownTransition { .. }));
    let r = err.report(&facts("DRAFT"));
    assert_eq!(r.sqlstate, "SM009");
    assert_eq!(r.message, "unknown transition code FLY_AWAY for machine investigation v1");
}

#[test]
fn checks_in_order_role_reason_evidence() {
    let m = machine();
    let mut w = World::default();
    let r = decide(&m, &req("UNDER_REVIEW", "APPROVE_CASE", "CASE_OWNER"), &mut w).unwrap_err().report(&facts("UNDER_REVIEW"));
    assert_eq!(r.sqlstate, "SM006");
    assert_eq!(r.message, "role CASE_OWNER may not perform APPROVE_CASE");
    assert_eq!(r.hint.unwrap(), "Act in one of the permitted roles: REVIEWER.");

    let r = decide(&m, &req("UNDER_REVIEW", "APPROVE_CASE", "REVIEWER"), &mut w).unwrap_err().report(&facts("UNDER_REVIEW"));
    assert_eq!(r.sqlstate, "SM004");

    let with_reason = Request { supplied: given(Some("OK"), None, &[]), ..req("UNDER_REVIEW", "APPROVE_CASE", "REVIEWER") };
    let r = decide(&m, &with_reason, &mut w).unwrap_err().report(&facts("UNDER_REVIEW"));
    assert_eq!(r.sqlstate, "SM005");
    assert_eq!(r.message, "transition APPROVE_CASE requires evidence");

    // Evidence of another case, inactive evidence and a NULL id are each named.
    let bad = [evidence(1, [2; 16], true, "X"), evidence(3, CASE, false, "X"), EvidenceFact { id: None, case_id: None, active: false, evidence_type: None }];
    let r = decide(&m, &Request { supplied: given(Some("OK"), None, &bad), ..with_reason }, &mut w).unwrap_err().report(&facts("UNDER_REVIEW"));
    assert_eq!(r.sqlstate, "SM005");
    assert_eq!(
        r.detail.unwrap(),
        "Case c1: evidence 01010101-0101-0101-0101-010101010101 belongs to case 02020202-0202-0202-0202-020202020202; \
         evidence 03030303-0303-0303-0303-030303030303 is not active; evidence NULL is not an evidence id."
    );
}

#[test]
fn role_check_can_be_skipped_and_empty_roles_allow_anyone() {
    let m = machine();
    let mut w = World::default();
    let any = Request { actor_role: None, ..req("DRAFT", "SUBMIT_CASE", "") };
    assert!(decide(&m, &any, &mut w).is_ok());
    let def = validate_text(include_str!("../../examples/product_status.json")).definition.unwrap();
    let p = CompiledMachine::from_definition(&def, 3);
    assert!(decide(&p, &req("IN_STOCK", "SELL_OUT", "ANYONE_AT_ALL"), &mut w).is_ok());
}

#[test]
fn min_time_in_state_guard_says_what_is_left() {
    let def = validate_text(include_str!("../../examples/product_status.json")).definition.unwrap();
    let p = CompiledMachine::from_definition(&def, 1);
    let mut w = World { time_left: Some("4 years 11 mons left".into()), ..World::default() };
    let err = decide(&p, &req("UNAVAILABLE", "DELETE_PRODUCT", "ADMIN"), &mut w).unwrap_err();
    assert_eq!(w.asked_min, Some(Interval { months: 60, days: 0, micros: 0 }));
    let r = err.report(&facts("UNAVAILABLE"));
    assert_eq!(r.sqlstate, "SM002");
    assert_eq!(r.message, "guard min_time_in_state refused DELETE_PRODUCT");
    assert_eq!(r.detail.unwrap(), "Case c1: guard min_time_in_state: DELETE_PRODUCT requires at least 5 years in state UNAVAILABLE; 4 years 11 mons left.");
    w.time_left = None;
    assert!(decide(&p, &req("UNAVAILABLE", "DELETE_PRODUCT", "ADMIN"), &mut w).is_ok());
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

/// A small approval machine using every guard kind.
fn guarded() -> CompiledMachine {
    compile(json!({
        "machine": "approval",
        "states": [
            {"code": "OPEN", "initial": true}, {"code": "SUBMITTED"}, {"code": "APPROVED", "terminal": true},
            {"code": "REJECTED", "terminal": true}
        ],
        "transitions": [
            {"code": "SUBMIT", "from": "OPEN", "to": "SUBMITTED"},
            {"code": "APPROVE", "from": "SUBMITTED", "to": "APPROVED", "audit_guards": true,
             "requires_evidence": ["REVIEW_REPORT"],
             "guards": [
                {"guard": "distinct_actor", "transition": "SUBMIT"},
                {"guard": "requires_assignment", "role": "REVIEWER"},
                {"guard": "sql", "name": "min_reviewers", "params": {"n": 2}}
             ]},
            {"code": "REJECT", "from": "SUBMITTED", "to": "REJECTED", "requires_reason": true,
             "reasons": [{"code": "INSUFFICIENT", "label": "Insufficient evidence"}, {"code": "OUT_OF_SCOPE", "label": "Out of scope"}]}
        ]
    }))
}

#[test]
fn four_eyes_assignment_and_sql_guards_in_order() {
    let m = guarded();
    let ev = [evidence(1, CASE, true, "REVIEW_REPORT")];
    let approve = Request { supplied: given(None, None, &ev), ..req("SUBMITTED", "APPROVE", "REVIEWER") };

    // Alice submitted: four-eyes refuses her approval first.
    let mut w = World { prior: vec![("SUBMIT".into(), ALICE)], ..World::default() };
    let r = decide(&m, &approve, &mut w).unwrap_err().report(&facts("SUBMITTED"));
    assert_eq!(r.sqlstate, "SM002");
    assert_eq!(r.message, "guard distinct_actor refused APPROVE");
    assert_eq!(
        r.detail.unwrap(),
        "Case c1: guard distinct_actor: actor 0a0a0a0a-0a0a-0a0a-0a0a-0a0a0a0a0a0a also performed SUBMIT; APPROVE needs a different actor."
    );

    // Bob submitted; Alice has no assignment yet.
    w.prior = vec![("SUBMIT".into(), BOB)];
    let r = decide(&m, &approve, &mut w).unwrap_err().report(&facts("SUBMITTED"));
    assert_eq!(r.message, "guard requires_assignment refused APPROVE");
    assert!(r.detail.unwrap().ends_with("holds no active REVIEWER assignment on this case."));

    // Assigned: the SQL guard decides, and sees the context it needs.
    w.assignments.push((ALICE, "REVIEWER".into()));
    w.sql.push(("min_reviewers".into(), SqlOutcome::Verdict { passed: Some(false), evidence: Some(json!({"reason": "1 of 2 reviewers recorded"})) }));
    let r = decide(&m, &approve, &mut w).unwrap_err().report(&facts("SUBMITTED"));
    assert_eq!(r.detail.unwrap(), "Case c1: guard min_reviewers: 1 of 2 reviewers recorded.");
    let ctx = w.contexts.last().unwrap();
    assert_eq!(ctx["params"], json!({"n": 2}));
    assert_eq!(ctx["transition"], "APPROVE");
    assert_eq!(ctx["actor_role"], "REVIEWER");
    assert_eq!(ctx["evidence_ids"][0], "01010101-0101-0101-0101-010101010101");

    // NULL is a refusal, not a pass.
    w.sql[0].1 = SqlOutcome::Verdict { passed: None, evidence: None };
    let r = decide(&m, &approve, &mut w).unwrap_err().report(&facts("SUBMITTED"));
    assert!(r.detail.unwrap().contains("returned NULL"), "NULL must refuse");

    w.sql[0].1 = SqlOutcome::Verdict { passed: Some(true), evidence: Some(json!({"reviewers": 2})) };
    let (rule, eval) = m.decide(&approve, &mut w, Options { stop_at_failure: true, describe: true }).unwrap();
    assert!(rule.audit_guards);
    let guards: Vec<(&str, bool)> = eval.guards().map(|c| (c.name.as_str(), c.passed)).collect();
    assert_eq!(guards, vec![("distinct_actor", true), ("requires_assignment", true), ("min_reviewers", true)]);
    assert_eq!(eval.guards().last().unwrap().evidence, json!({"reviewers": 2}));
}

#[test]
fn dry_run_reports_every_check_even_after_a_failure() {
    let m = guarded();
    let mut w = World { prior: vec![("SUBMIT".into(), ALICE)], ..World::default() };
    let r = Request { supplied: given(None, None, &[]), ..req("SUBMITTED", "APPROVE", "CLERK") };
    let rule = m.find_rule("SUBMITTED", "APPROVE").unwrap();
    let e = statemachine_core::evaluate(&m, rule, &r, &mut w, DRY_RUN);
    let rows: Vec<(&str, bool)> = e.checks.iter().map(|c| (c.name.as_str(), c.passed)).collect();
    assert_eq!(
        rows,
        vec![
            ("role", true),
            ("reason", true),
            ("evidence", false),
            ("distinct_actor", false),
            ("requires_assignment", false),
            ("min_reviewers", true)
        ]
    );
    assert_eq!(e.checks[2].detail, "evidence of type REVIEW_REPORT required");
    assert!(e.checks[5].detail.contains("returned true"));
}

#[test]
fn structured_reasons_are_enforced_with_the_list_in_the_hint() {
    let m = guarded();
    let mut w = World::default();
    let reject = |rc: Option<&'static str>, text: Option<&'static str>| Request {
        supplied: given(rc, text, &[]),
        ..req("SUBMITTED", "REJECT", "REVIEWER")
    };
    let r = decide(&m, &reject(Some("BORED"), None), &mut w).unwrap_err().report(&facts("SUBMITTED"));
    assert_eq!(r.sqlstate, "SM004");
    assert_eq!(r.message, "reason code BORED is not allowed for REJECT");
    assert_eq!(r.hint.unwrap(), "Allowed reason codes for REJECT: INSUFFICIENT (Insufficient evidence), OUT_OF_SCOPE (Out of scope).");
    // Free text alone is not enough where reasons are declared.
    let r = decide(&m, &reject(None, Some("because")), &mut w).unwrap_err().report(&facts("SUBMITTED"));
    assert_eq!(r.message, "transition REJECT requires a reason code");
    assert!(decide(&m, &reject(Some("INSUFFICIENT"), Some("two pages missing")), &mut w).is_ok());
}

#[test]
fn evidence_types_must_all_be_covered() {
    let m = guarded();
    let mut w = World { assignments: vec![(ALICE, "REVIEWER".into())], ..World::default() };
    let ev = [evidence(1, CASE, true, "PHOTO")];
    let r = decide(&m, &Request { supplied: given(None, None, &ev), ..req("SUBMITTED", "APPROVE", "REVIEWER") }, &mut w)
        .unwrap_err()
        .report(&facts("SUBMITTED"));
    assert_eq!(r.sqlstate, "SM005");
    assert_eq!(r.message, "transition APPROVE requires evidence of type REVIEW_REPORT");
    assert_eq!(r.detail.unwrap(), "Case c1 is in state SUBMITTED; the evidence given has type PHOTO.");
}

#[test]
fn database_role_source_needs_membership() {
    let mut def: Value = serde_json::from_str(include_str!("../../examples/investigation.json")).unwrap();
    def["role_source"] = json!("database");
    let m = compile(def);
    let mut w = World::default();
    let r = decide(&m, &req("DRAFT", "SUBMIT_CASE", "CASE_OWNER"), &mut w).unwrap_err().report(&facts("DRAFT"));
    assert_eq!(r.sqlstate, "SM006");
    assert_eq!(r.detail.unwrap(), "Case c1: this machine takes roles from the database (role_source database), and session user app is not a member of role CASE_OWNER.");
    w.members_of.push("CASE_OWNER".into());
    // A member, but asserting someone else's actor_id: the actor must be the session user.
    w.database_actor = Some(BOB);
    let r = decide(&m, &req("DRAFT", "SUBMIT_CASE", "CASE_OWNER"), &mut w).unwrap_err().report(&facts("DRAFT"));
    assert_eq!(r.sqlstate, "SM006");
    assert!(r.detail.unwrap().contains("is not the identity of session user"), "the actor is bound to the session user");
    w.database_actor = Some(ALICE);
    assert!(decide(&m, &req("DRAFT", "SUBMIT_CASE", "CASE_OWNER"), &mut w).is_ok());
}

#[test]
fn a_raised_guard_keeps_its_sqlstate_and_gains_a_context_line() {
    let m = guarded();
    let raised = Refusal::GuardRaised(Box::new(statemachine_core::refusal::RaisedByGuard {
        code: "APPROVE".into(),
        guard: "min_reviewers".into(),
        function: "public.min_reviewers(uuid,jsonb)".into(),
        sqlstate: "AB123".into(),
        message: "policy table missing".into(),
        detail: None,
        hint: None,
        context: Some("PL/pgSQL function public.min_reviewers(uuid,jsonb) line 3 at RAISE".into()),
    }));
    let mut w = World { prior: vec![("SUBMIT".into(), BOB)], assignments: vec![(ALICE, "REVIEWER".into())], ..World::default() };
    w.sql.push(("min_reviewers".into(), SqlOutcome::Failed(raised)));
    let ev = [evidence(1, CASE, true, "REVIEW_REPORT")];
    let r = decide(&m, &Request { supplied: given(None, None, &ev), ..req("SUBMITTED", "APPROVE", "REVIEWER") }, &mut w)
        .unwrap_err()
        .report(&facts("SUBMITTED"));
    assert_eq!(r.sqlstate, "AB123");
    assert_eq!(r.message, "policy table missing");
    assert_eq!(
        r.context.unwrap(),
        "PL/pgSQL function public.min_reviewers(uuid,jsonb) line 3 at RAISE\nstatemachine guard min_reviewers (public.min_reviewers(uuid,jsonb)) of transition APPROVE on case c1"
    );
}

#[test]
fn available_transitions_mode_assumes_reason_and_evidence() {
    let m = guarded();
    let mut w = World { prior: vec![("SUBMIT".into(), BOB)], ..World::default() };
    let r = Request { supplied: Supplied::Assumed, actor_id: None, ..req("SUBMITTED", "APPROVE", "REVIEWER") };
    // Without an actor the actor guards are not evaluated; the SQL guard still is.
    assert!(decide(&m, &r, &mut w).is_ok());
    assert_eq!(w.contexts.len(), 1);
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
        Refusal::GuardReentry { function: "transition_case".into() },
        Refusal::AssignmentNotFound { case_id: "c".into(), assignee: "a".into(), role: "R".into() },
        Refusal::GuardNotRegistered { name: "g".into(), problem: "is not registered".into() },
        Refusal::GuardFunctionInvalid { function: "f".into(), problem: "is VOLATILE".into() },
        Refusal::GuardFunctionOwner { function: "f".into(), owner: "bob".into() },
        Refusal::CorrectionNotAllowed { transition: "CLOSE (state_version 3)".into(), why: "x".into() },
        Refusal::UnknownTransitionRow { transition_id: "t".into() },
        Refusal::UnknownState { machine: "m".into(), version: 1, state: "S".into() },
        Refusal::InvalidStateMap { problems: vec![] },
        Refusal::VersionInUse { machine: "m".into(), version: 1, why: "x".into() },
        Refusal::VersionRetired { machine: "m".into(), version: 1 },
        Refusal::InvalidDefinition {
            problems: vec![
                Problem { severity: Severity::Error, path: "$.a".into(), problem: "bad".into() },
                Problem { severity: Severity::Warning, path: "$.b".into(), problem: "meh".into() },
            ],
        },
    ];
    let codes: Vec<String> = samples.iter().map(|s| s.report(&facts("S")).sqlstate).collect();
    assert_eq!(
        codes,
        vec![
            "SM009", "SM009", "SM003", "SM008", "SM007", "SM005", "SM007", "SM009", "42883", "42P13", "42501", "SM001", "SM009", "SM009",
            "22023", "55006", "55006", "SM010"
        ]
    );
    let inv = samples.last().unwrap().report(&facts("S"));
    assert_eq!(inv.message, "invalid machine definition: 1 problem");
    assert_eq!(inv.detail.unwrap(), "$.a: bad");
}

#[test]
fn cross_dimension_invariants_hold_both_ways() {
    use statemachine_core::{check_invariants, Sibling};
    let lifecycle = machine();
    let sla = CompiledMachine::from_definition(&validate_text(include_str!("../../examples/sla.json")).definition.unwrap(), 1);
    // SLA may pause while the investigation is under review ...
    assert!(check_invariants(&sla, "PAUSED", &[Sibling { machine: &lifecycle, state: "UNDER_REVIEW" }]).is_ok());
    // ... not while it is still a draft, nor without an investigation dimension at all.
    assert_eq!(
        check_invariants(&sla, "PAUSED", &[Sibling { machine: &lifecycle, state: "DRAFT" }]).unwrap_err(),
        "sla may be PAUSED only while investigation is in UNDER_REVIEW; investigation is DRAFT"
    );
    assert!(check_invariants(&sla, "PAUSED", &[]).unwrap_err().contains("the case has no investigation dimension"));
    // And the investigation may not leave UNDER_REVIEW while the SLA is paused.
    assert_eq!(
        check_invariants(&lifecycle, "APPROVED", &[Sibling { machine: &sla, state: "PAUSED" }]).unwrap_err(),
        "sla is PAUSED, which it may be only while investigation is in UNDER_REVIEW; investigation would move to APPROVED"
    );
    assert!(check_invariants(&lifecycle, "APPROVED", &[Sibling { machine: &sla, state: "ON_TRACK" }]).is_ok());
}

#[test]
fn a_timed_transition_is_refused_to_every_caller_before_it_is_due() {
    let m = compile(json!({
        "machine": "timed",
        "states": [{"code": "OPEN", "initial": true}, {"code": "EXPIRED", "terminal": true}],
        "transitions": [{"code": "EXPIRE", "from": "OPEN", "to": "EXPIRED", "after": "30 days",
                         "reasons": [{"code": "TIMER", "label": "Timer"}]}]
    }));
    let mut w = World { time_left: Some("29 days 23:59:59 left".into()), ..World::default() };
    let mut r = req("OPEN", "EXPIRE", "SYSTEM");
    r.supplied = given(Some("TIMER"), None, &[]);
    let err = decide(&m, &r, &mut w).unwrap_err();
    assert_eq!(w.asked_min, Some(Interval { months: 0, days: 30, micros: 0 }));
    let report = err.report(&facts("OPEN"));
    assert_eq!(report.sqlstate, "SM002");
    assert_eq!(report.message, "guard after refused EXPIRE");
    assert!(report.detail.unwrap().contains("EXPIRE is a timed transition, due 30 days after entering OPEN; 29 days 23:59:59 left"));
    w.time_left = None;
    assert_eq!(decide(&m, &r, &mut w).unwrap(), "EXPIRED");
}

#[test]
fn four_eyes_under_database_role_source_compares_database_users_not_asserted_ids() {
    let m = compile(json!({
        "machine": "dbfour", "role_source": "database",
        "states": [{"code": "OPEN", "initial": true}, {"code": "SUBMITTED"}, {"code": "APPROVED", "terminal": true}],
        "transitions": [{"code": "SUBMIT", "from": "OPEN", "to": "SUBMITTED"},
                        {"code": "APPROVE", "from": "SUBMITTED", "to": "APPROVED",
                         "guards": [{"guard": "distinct_actor", "transition": "SUBMIT"}]}]
    }));
    // One login submitted, and now approves (as its own actor id): refused.
    let mut w = World {
        members_of: vec!["CLERK".into()],
        prior: vec![("SUBMIT".into(), ALICE)],
        recorded_by: vec![("SUBMIT".into(), "app_login".into())],
        session_user: "app_login".into(),
        database_actor: Some(BOB),
        ..World::default()
    };
    let mut r = req("SUBMITTED", "APPROVE", "CLERK");
    r.actor_id = Some(BOB);
    let report = decide(&m, &r, &mut w).unwrap_err().report(&facts("SUBMITTED"));
    assert_eq!(report.sqlstate, "SM002");
    assert!(report.detail.unwrap().contains("database user app_login also performed SUBMIT"));
    // Another database user approves: allowed.
    w.session_user = "reviewer_login".into();
    w.database_actor = Some(ALICE);
    r.actor_id = Some(ALICE);
    assert_eq!(decide(&m, &r, &mut w).unwrap(), "APPROVED");
}

#[test]
fn rules_differ_names_a_rule_added_changed_or_missing() {
    let published = machine();
    assert_eq!(published.rules_differ(&machine()), None);
    let mut def = validate_text(include_str!("../../examples/investigation.json")).definition.unwrap();
    def.transitions[0].to = "WITHDRAWN".into();
    let changed = CompiledMachine::from_definition(&def, 1);
    assert_eq!(
        changed.rules_differ(&published).as_deref(),
        Some("rule SUBMIT_CASE from DRAFT to WITHDRAWN differs from the published definition")
    );
    def.transitions.remove(0);
    let fewer = CompiledMachine::from_definition(&def, 1);
    assert_eq!(fewer.rules_differ(&published).as_deref(), Some("rule SUBMIT_CASE from DRAFT to SUBMITTED of the published definition is missing"));
    assert_eq!(published.rules_differ(&fewer).as_deref(), Some("rule SUBMIT_CASE from DRAFT to SUBMITTED is not in the published definition"));
}

/// A delegated call is sent back from the worker exactly when judging its rule calls user
/// SQL (src/delegation.rs): only a rule with a `sql` guard says so.
#[test]
fn only_rules_with_sql_guards_run_sql() {
    let m = compile(json!({
        "machine": "delegable",
        "states": [{"code": "A", "initial": true}, {"code": "B", "terminal": true}, {"code": "C", "terminal": true}],
        "transitions": [
            {"code": "PLAIN", "from": "A", "to": "B", "roles": ["R"], "guards": [{"guard": "distinct_actor", "transition": "PLAIN"}]},
            {"code": "USER_SQL", "from": "A", "to": "C", "guards": [{"guard": "sql", "name": "min_reviewers", "params": {"n": 2}}]}
        ]
    }));
    assert!(!m.rule("A", "PLAIN").expect("PLAIN from A").runs_sql());
    assert!(m.rule("A", "USER_SQL").expect("USER_SQL from A").runs_sql());
    assert_eq!(m.legal_rules("A").filter(|r| r.runs_sql()).count(), 1);
    assert!(!machine().legal_rules("DRAFT").any(|r| r.runs_sql()));
}
