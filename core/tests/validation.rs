//! The validation rules of API.md one by one: good and bad definitions, the JSON path of
//! every problem, and the graph checks of seed 003 §29.1.

use serde_json::{json, Value};
use statemachine_core::{validate, validate_text, Kind, Severity};

const INVESTIGATION: &str = include_str!("../../examples/investigation.json");
const PRODUCT_STATUS: &str = include_str!("../../examples/product_status.json");

fn investigation() -> Value {
    serde_json::from_str(INVESTIGATION).unwrap()
}

/// Errors as "path: problem" lines, for exact assertions.
fn errors(def: &Value) -> Vec<String> {
    validate(def)
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| p.to_string())
        .collect()
}

fn assert_single_error(def: &Value, path: &str, contains: &str) {
    let errs = errors(def);
    assert_eq!(errs.len(), 1, "expected one error at {path}, got {errs:#?}");
    assert!(errs[0].starts_with(&format!("{path}: ")), "wrong path: {}", errs[0]);
    assert!(errs[0].contains(contains), "{:?} should mention {contains:?}", errs[0]);
}

#[test]
fn the_seed_machines_are_valid() {
    for text in [INVESTIGATION, PRODUCT_STATUS, include_str!("../../examples/sla.json")] {
        let v = validate_text(text);
        assert!(v.problems.is_empty(), "{:#?}", v.problems);
        assert!(v.definition.is_some());
    }
}

#[test]
fn investigation_model_is_parsed_faithfully() {
    let def = validate(&investigation()).definition.unwrap();
    assert_eq!(def.machine, "investigation");
    assert_eq!(def.states.len(), 7);
    assert_eq!(def.initial_state().unwrap().code, "DRAFT");
    let approve = def.transitions.iter().find(|t| t.code == "APPROVE_CASE").unwrap();
    assert!(approve.requires_reason && approve.evidence.is_required());
    assert_eq!(approve.roles, vec!["REVIEWER"]);
    let reopen = def.transitions.iter().find(|t| t.code == "REOPEN_CASE").unwrap();
    assert_eq!(reopen.kind, Kind::Reopen);
    assert_eq!(def.states[3].attributes.get("is_final_decision"), Some(&json!(true)));
}

#[test]
fn not_json_and_not_an_object() {
    let v = validate_text("{not json");
    assert_eq!(v.problems.len(), 1);
    assert_eq!(v.problems[0].path, "$");
    assert!(v.problems[0].problem.starts_with("not valid JSON"));
    assert_single_error(&json!([1, 2]), "$", "must be a JSON object, not an array");
}

#[test]
fn exactly_one_initial_state() {
    let mut d = investigation();
    d["states"][0].as_object_mut().unwrap().remove("initial");
    assert_single_error(&d, "$.states", "no initial state");

    let mut d = investigation();
    d["states"][2]["initial"] = json!(true);
    assert_single_error(&d, "$.states[2].initial", "a second initial state (the first is at $.states[0])");
}

#[test]
fn every_referenced_state_exists() {
    let mut d = investigation();
    d["transitions"][3]["to"] = json!("NOWHERE");
    assert_single_error(&d, "$.transitions[3].to", "unknown state \"NOWHERE\"");

    let mut d = investigation();
    d["transitions"][1]["from"] = json!(["SUBMITTED", "LIMBO"]);
    assert_single_error(&d, "$.transitions[1].from[1]", "unknown state \"LIMBO\"");
}

#[test]
fn unreachable_state() {
    let mut d = investigation();
    d["states"].as_array_mut().unwrap().push(json!({"code": "ORPHAN", "terminal": true}));
    assert_single_error(&d, "$.states[7]", "state ORPHAN is unreachable from the initial state DRAFT");
}

#[test]
fn dead_end_state() {
    let mut d = investigation();
    // APPROVED loses its only exit (CLOSE_CASE); CLOSED becomes unreachable too.
    d["transitions"].as_array_mut().unwrap().retain(|t| t["code"] != "CLOSE_CASE");
    let errs = errors(&d);
    assert!(errs.iter().any(|e| e.starts_with("$.states[3]: state APPROVED is a dead end")), "{errs:#?}");
    assert!(errs.iter().any(|e| e.starts_with("$.states[6]: state CLOSED is unreachable")), "{errs:#?}");
    assert_eq!(errs.len(), 2);
}

#[test]
fn terminal_with_outgoing_normal_transition() {
    let mut d = investigation();
    d["transitions"][6]["kind"] = json!("normal");
    assert_single_error(&d, "$.transitions[6].from", "state CLOSED is terminal: only reopen, correction or admin transitions may leave it (REOPEN_CASE is kind normal)");
    for ok in ["reopen", "correction", "admin"] {
        let mut d = investigation();
        d["transitions"][6]["kind"] = json!(ok);
        assert!(errors(&d).is_empty(), "kind {ok} may leave a terminal state");
    }
    let mut d = investigation();
    d["transitions"][6]["kind"] = json!("reversal");
    assert_single_error(&d, "$.transitions[6].from", "is kind reversal");
}

#[test]
fn ambiguous_from_code_pair() {
    let mut d = investigation();
    d["transitions"].as_array_mut().unwrap().push(json!(
        {"code": "SUBMIT_CASE", "from": "DRAFT", "to": "WITHDRAWN"}
    ));
    assert_single_error(&d, "$.transitions[7].from", "ambiguous: transition SUBMIT_CASE from DRAFT leads to WITHDRAWN here and to SUBMITTED at $.transitions[0]");

    let mut d = investigation();
    d["transitions"].as_array_mut().unwrap().push(json!(
        {"code": "SUBMIT_CASE", "from": "DRAFT", "to": "SUBMITTED"}
    ));
    assert_single_error(&d, "$.transitions[7].from", "defined twice");

    // Same code from different states to different targets is fine.
    let mut d = investigation();
    d["transitions"].as_array_mut().unwrap().push(json!(
        {"code": "WITHDRAW_CASE", "from": "DRAFT", "to": "WITHDRAWN", "requires_reason": true}
    ));
    assert!(errors(&d).is_empty());
}

#[test]
fn unknown_keys_are_errors() {
    let mut d = investigation();
    d["colour"] = json!("blue");
    assert_single_error(&d, "$.colour", "unknown key \"colour\"");
    let mut d = investigation();
    d["states"][1]["intial"] = json!(true);
    assert_single_error(&d, "$.states[1].intial", "unknown key \"intial\"");
    let mut d = investigation();
    d["transitions"][2]["requires_reasons"] = json!(true);
    assert_single_error(&d, "$.transitions[2].requires_reasons", "unknown key");
}

#[test]
fn wrong_json_types_are_errors() {
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Mutation, &str)> = vec![
        ("$.machine", Box::new(|d| d["machine"] = json!(42)), "must be a string, not a number"),
        ("$.description", Box::new(|d| d["description"] = json!(["x"])), "must be a string, not an array"),
        ("$.states", Box::new(|d| d["states"] = json!({})), "must be an array, not an object"),
        ("$.transitions", Box::new(|d| d["transitions"] = json!("x")), "must be an array, not a string"),
        ("$.states[1].terminal", Box::new(|d| d["states"][1]["terminal"] = json!("yes")), "must be true or false"),
        ("$.states[1].sort_order", Box::new(|d| d["states"][1]["sort_order"] = json!(1.5)), "whole number"),
        ("$.states[1].attributes", Box::new(|d| d["states"][1]["attributes"] = json!([1])), "must be an object"),
        ("$.transitions[0].roles", Box::new(|d| d["transitions"][0]["roles"] = json!("CASE_OWNER")), "array of strings"),
        ("$.transitions[0].roles[0]", Box::new(|d| d["transitions"][0]["roles"] = json!([7])), "must be a string"),
        ("$.transitions[0].requires_reason", Box::new(|d| d["transitions"][0]["requires_reason"] = json!(1)), "true or false"),
        ("$.transitions[0].kind", Box::new(|d| d["transitions"][0]["kind"] = json!("sideways")), "unknown kind \"sideways\""),
        ("$.transitions[0].from", Box::new(|d| d["transitions"][0]["from"] = json!(null)), "string or an array"),
        ("$.transitions[0].min_time_in_state", Box::new(|d| d["transitions"][0]["min_time_in_state"] = json!(5)), "interval string"),
    ];
    for (path, mutate, contains) in cases {
        let mut d = investigation();
        mutate(&mut d);
        let errs = errors(&d);
        assert!(
            errs.iter().any(|e| e.starts_with(&format!("{path}: ")) && e.contains(contains)),
            "expected {path} ~ {contains:?}, got {errs:#?}"
        );
    }
}

#[test]
fn required_keys_and_bad_codes() {
    let mut d = investigation();
    d.as_object_mut().unwrap().remove("machine");
    assert_single_error(&d, "$.machine", "machine name is required");
    let mut d = investigation();
    d["transitions"][0].as_object_mut().unwrap().remove("to");
    assert_single_error(&d, "$.transitions[0].to", "to is required");
    let mut d = investigation();
    d["states"][1]["code"] = json!("has space ");
    let errs = errors(&d);
    assert!(errs.iter().any(|e| e.starts_with("$.states[1].code: state code \"has space \" must not start or end with a space")), "{errs:#?}");
    let mut d = investigation();
    d["transitions"][0]["code"] = json!("CREATE");
    assert_single_error(&d, "$.transitions[0].code", "reserved");
    let mut d = investigation();
    d["states"][2]["code"] = json!("SUBMITTED");
    let errs = errors(&d);
    assert!(errs.iter().any(|e| e.starts_with("$.states[2].code: duplicate state code \"SUBMITTED\" (first defined at $.states[1])")), "{errs:#?}");
    let mut d = investigation();
    d["states"] = json!([]);
    assert_single_error(&d, "$.states", "must not be empty");
}

#[test]
fn min_time_in_state_is_validated() {
    let mut d = investigation();
    d["transitions"][1]["min_time_in_state"] = json!("2 fortnights");
    assert_single_error(&d, "$.transitions[1].min_time_in_state", "unknown unit \"fortnights\"");
    let mut d = investigation();
    d["transitions"][1]["min_time_in_state"] = json!("0 days");
    let v = validate(&d);
    assert!(!v.has_errors());
    assert_eq!(v.problems[0].severity, Severity::Warning);
    assert!(v.definition.unwrap().transitions[1].min_time_in_state.is_none());
}

#[test]
fn many_problems_are_all_reported() {
    let d = json!({
        "machine": "",
        "states": [{"code": "A", "initial": true}, {"code": "B"}, {"label": "no code"}],
        "transitions": [{"code": "GO", "from": "A", "to": "C", "colour": 1}]
    });
    let errs = errors(&d);
    let paths: Vec<&str> = errs.iter().map(|e| e.split(": ").next().unwrap()).collect();
    for p in ["$.machine", "$.states[2].code", "$.transitions[0].colour", "$.transitions[0].to"] {
        assert!(paths.contains(&p), "missing {p} in {errs:#?}");
    }
    assert!(validate(&d).definition.is_none());
}

#[test]
fn canonical_form_is_stable_and_revalidates() {
    let def = validate(&investigation()).definition.unwrap();
    let canon = def.to_canonical_json();
    let again = validate(&canon).definition.unwrap();
    assert_eq!(def, again);
    assert_eq!(again.to_canonical_json(), canon);
    // Spelling differences that mean the same thing give the same canonical form.
    let mut d = investigation();
    d["transitions"][0]["from"] = json!(["DRAFT"]);
    d["states"][1]["initial"] = json!(false);
    d["transitions"][0]["requires_reason"] = json!(false);
    d["transitions"][0]["kind"] = json!("normal");
    assert_eq!(validate(&d).definition.unwrap().to_canonical_json(), canon);
    let p: Value = serde_json::from_str(PRODUCT_STATUS).unwrap();
    let mut p2 = p.clone();
    p2["transitions"][3]["min_time_in_state"] = json!("60 months");
    assert_eq!(
        validate(&p).definition.unwrap().to_canonical_json(),
        validate(&p2).definition.unwrap().to_canonical_json()
    );
}

#[test]
fn guards_reasons_evidence_types_and_role_source_parse_and_round_trip() {
    let mut d = investigation();
    d["role_source"] = json!("database");
    d["transitions"][2]["requires_evidence"] = json!(["REVIEW_REPORT", "CHECKLIST"]);
    d["transitions"][2]["audit_guards"] = json!(true);
    d["transitions"][2]["guards"] = json!([
        {"guard": "distinct_actor", "transition": "SUBMIT_CASE"},
        {"guard": "distinct_actor", "code": "not_assigner", "transition": "ASSIGN_REVIEW"},
        {"guard": "requires_assignment", "role": "REVIEWER"},
        {"guard": "sql", "name": "min_reviewers", "params": {"n": 2}},
        {"guard": "min_time_in_state", "interval": "2 days"}
    ]);
    d["transitions"][3]["reasons"] = json!([{"code": "INSUFFICIENT", "label": "Insufficient evidence"}]);
    let v = validate(&d);
    assert!(v.problems.is_empty(), "{:#?}", v.problems);
    let def = v.definition.unwrap();
    let approve = &def.transitions[2];
    let codes: Vec<&str> = approve.guards.iter().map(|g| g.code.as_str()).collect();
    assert_eq!(codes, vec!["distinct_actor", "not_assigner", "requires_assignment", "min_reviewers", "min_time_in_state"]);
    assert_eq!(approve.evidence.types(), ["REVIEW_REPORT", "CHECKLIST"]);
    assert_eq!(def.sql_guard_names(), vec![("$.transitions[2].guards[3].name".to_string(), "min_reviewers".to_string())]);
    // Canonical form keeps every new key and validates to the same model.
    let canon = def.to_canonical_json();
    assert_eq!(canon["role_source"], "database");
    assert_eq!(canon["transitions"][2]["guards"][1]["code"], "not_assigner");
    assert!(canon["transitions"][2]["guards"][0].get("code").is_none());
    assert_eq!(validate(&canon).definition.unwrap(), def);
}

#[test]
fn bad_guards_are_reported_with_paths() {
    let with_guards = |g: Value| {
        let mut d = investigation();
        d["transitions"][2]["guards"] = g;
        d
    };
    assert_single_error(&with_guards(json!({})), "$.transitions[2].guards", "must be an array");
    assert_single_error(&with_guards(json!([{"guard": "telepathy"}])), "$.transitions[2].guards[0].guard", "unknown guard \"telepathy\"");
    assert_single_error(&with_guards(json!([{"transition": "X"}])), "$.transitions[2].guards[0].guard", "guard is required");
    assert_single_error(
        &with_guards(json!([{"guard": "distinct_actor", "transition": "NOPE"}])),
        "$.transitions[2].guards[0].transition",
        "unknown transition code \"NOPE\"",
    );
    assert!(errors(&with_guards(json!([{"guard": "distinct_actor", "transition": "CREATE"}]))).is_empty());
    assert_single_error(&with_guards(json!([{"guard": "requires_assignment"}])), "$.transitions[2].guards[0].role", "role is required");
    assert_single_error(
        &with_guards(json!([{"guard": "requires_assignment", "role": "R", "colour": 1}])),
        "$.transitions[2].guards[0].colour",
        "unknown key",
    );
    assert_single_error(&with_guards(json!([{"guard": "sql", "name": "g", "params": [1]}])), "$.transitions[2].guards[0].params", "must be an object");
    assert_single_error(&with_guards(json!([{"guard": "min_time_in_state", "interval": "soon"}])), "$.transitions[2].guards[0].interval", "");
    assert_single_error(
        &with_guards(json!([{"guard": "sql", "name": "g"}, {"guard": "sql", "name": "g"}])),
        "$.transitions[2].guards[1].code",
        "already used by $.transitions[2].guards[0]",
    );
    assert_single_error(&with_guards(json!([{"guard": "sql", "name": "role"}])), "$.transitions[2].guards[0].code", "reserved");
    // The min_time_in_state key is a guard with that code.
    let mut d = with_guards(json!([{"guard": "min_time_in_state", "interval": "1 day"}]));
    d["transitions"][2]["min_time_in_state"] = json!("2 days");
    assert_single_error(&d, "$.transitions[2].guards[0].code", "the transition's min_time_in_state key");
}

#[test]
fn bad_reasons_evidence_lists_and_role_sources() {
    let mut d = investigation();
    d["transitions"][3]["reasons"] = json!([]);
    assert_single_error(&d, "$.transitions[3].reasons", "must not be empty");
    d["transitions"][3]["reasons"] = json!([{"code": "A", "label": "a"}, {"code": "A", "label": "again"}]);
    assert_single_error(&d, "$.transitions[3].reasons[1].code", "listed twice");
    d["transitions"][3]["reasons"] = json!([{"code": "A"}]);
    assert_single_error(&d, "$.transitions[3].reasons[0].label", "label is required");
    let mut d = investigation();
    d["transitions"][2]["requires_evidence"] = json!([]);
    assert_single_error(&d, "$.transitions[2].requires_evidence", "must not be an empty array");
    d["transitions"][2]["requires_evidence"] = json!(["A", 3]);
    assert_single_error(&d, "$.transitions[2].requires_evidence[1]", "must be a string");
    d["transitions"][2]["requires_evidence"] = json!("yes");
    assert_single_error(&d, "$.transitions[2].requires_evidence", "true, false or an array");
    let mut d = investigation();
    d["role_source"] = json!("ldap");
    assert_single_error(&d, "$.role_source", "unknown role_source \"ldap\"");
}

#[test]
fn emit_and_after_parse_validate_and_round_trip() {
    let mut d = investigation();
    d["transitions"][2]["emit"] = json!("CaseApproved");
    d["transitions"][5]["after"] = json!("2 years");
    d["transitions"][5]["roles"] = json!(["SUPERVISOR", "SYSTEM"]);
    let v = validate(&d);
    assert!(v.problems.is_empty(), "{:#?}", v.problems);
    let def = v.definition.unwrap();
    assert_eq!(def.transitions[2].emit.as_deref(), Some("CaseApproved"));
    assert_eq!(def.transitions[5].after.unwrap().months, 24);
    let canon = def.to_canonical_json();
    assert_eq!(canon["transitions"][5]["after"], "2 years");
    assert_eq!(validate(&canon).definition.unwrap(), def);

    let mut d = investigation();
    d["transitions"][5]["after"] = json!("2 years");
    assert_single_error(&d, "$.transitions[5].roles", "performed as role SYSTEM");
    d["transitions"][5]["roles"] = json!([]);
    d["transitions"][5]["reasons"] = json!([{"code": "X", "label": "x"}]);
    assert_single_error(&d, "$.transitions[5].reasons", "reason code TIMER");
    let mut d = investigation();
    d["transitions"][5]["after"] = json!("0 days");
    assert_single_error(&d, "$.transitions[5].after", "positive interval");
    let mut d = investigation();
    d["transitions"][2]["emit"] = json!("Case Approved");
    assert_single_error(&d, "$.transitions[2].emit", "event type");
}

#[test]
fn invariants_parse_validate_and_round_trip() {
    let sla: Value = serde_json::from_str(include_str!("../../examples/sla.json")).unwrap();
    let v = validate(&sla);
    assert!(v.problems.is_empty(), "{:#?}", v.problems);
    let def = v.definition.unwrap();
    assert_eq!(def.invariants[0].allowed, vec!["UNDER_REVIEW"]);
    assert_eq!(validate(&def.to_canonical_json()).definition.unwrap(), def);
    let mut bad = sla.clone();
    bad["invariants"] = json!([{"when": "NAPPING", "dimension": "investigation", "in": ["X"]}]);
    assert_single_error(&bad, "$.invariants[0].when", "unknown state \"NAPPING\"");
    bad["invariants"] = json!([{"when": "PAUSED", "dimension": "sla", "in": ["X"]}]);
    assert_single_error(&bad, "$.invariants[0].dimension", "not to itself");
    bad["invariants"] = json!([{"when": "PAUSED", "dimension": "investigation", "in": []}]);
    assert_single_error(&bad, "$.invariants[0].in", "must not be empty");
}

#[test]
fn assign_roles_is_a_list_of_roles_kept_in_the_canonical_form() {
    let ok = statemachine_core::validate(&serde_json::json!({
        "machine": "m", "assign_roles": ["SUPERVISOR", "LEAD"],
        "states": [{"code": "A", "initial": true}, {"code": "B", "terminal": true}],
        "transitions": [{"code": "GO", "from": "A", "to": "B"}]}));
    let def = ok.definition.expect("valid");
    assert_eq!(def.assign_roles, vec!["SUPERVISOR".to_string(), "LEAD".to_string()]);
    assert_eq!(def.to_canonical_json()["assign_roles"], serde_json::json!(["SUPERVISOR", "LEAD"]));
    let bad = statemachine_core::validate(&serde_json::json!({
        "machine": "m", "assign_roles": ["SUPERVISOR", "SUPERVISOR", 3],
        "states": [{"code": "A", "initial": true}, {"code": "B", "terminal": true}],
        "transitions": [{"code": "GO", "from": "A", "to": "B"}]}));
    let paths: Vec<&str> = bad.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, vec!["$.assign_roles[1]", "$.assign_roles[2]"]);
    let wrong = statemachine_core::validate(&serde_json::json!({
        "machine": "m", "assign_roles": "SUPERVISOR",
        "states": [{"code": "A", "initial": true}, {"code": "B", "terminal": true}],
        "transitions": [{"code": "GO", "from": "A", "to": "B"}]}));
    assert_eq!(wrong.problems[0].problem, "assign_roles must be an array of strings, not a string");
}
