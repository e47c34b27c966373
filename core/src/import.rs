//! import_cases: existing records brought in at their current state, with their dated
//! past as history. Pure: the JSON is read and every step judged here; the extension
//! converts the times (PostgreSQL's own timestamptz parser) and writes the rows.
//!
//! A step is judged against the machine's rules: the first must be the initial state,
//! each later one must be reachable from the previous by one rule (the step's named
//! `transition`, or the one rule between the two states). A step no rule allows is
//! *illegal*: the call refuses it whole, or (`on_illegal => 'record'`) records it, marked.

use crate::definition::Problem;
use crate::definition::Severity;
use crate::ids;
use crate::rules::CompiledMachine;
use serde_json::{Map, Value};

/// The transition code of a step recorded although no rule allowed it and the caller
/// named none.
pub const IMPORT_CODE: &str = "IMPORT";
/// The code of every case's first history row (the table requires it at version 0).
pub use crate::definition::CREATE_CODE;

/// What to do with a step no rule allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnIllegal {
    Refuse,
    Record,
}

impl OnIllegal {
    pub fn parse(s: &str) -> Option<OnIllegal> {
        match s {
            "refuse" => Some(OnIllegal::Refuse),
            "record" => Some(OnIllegal::Record),
            _ => None,
        }
    }
}

/// One dated step of a record, as given (the time still text).
#[derive(Clone, Debug, PartialEq)]
pub struct StepIn {
    pub state: String,
    pub at: String,
    pub transition: Option<String>,
    pub actor_id: Option<[u8; 16]>,
    pub actor_role: Option<String>,
    pub reason_code: Option<String>,
    pub reason_text: Option<String>,
}

/// One record to import, as given.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseIn {
    pub case_number: String,
    pub case_id: Option<[u8; 16]>,
    /// The metadata object as JSON text.
    pub metadata: Option<String>,
    pub steps: Vec<StepIn>,
}

const CASE_KEYS: &[&str] = &["case_number", "case_id", "metadata", "steps"];
const STEP_KEYS: &[&str] = &["state", "at", "transition", "actor_id", "actor_role", "reason_code", "reason_text"];
/// case_file.case_number's limit.
const MAX_CASE_NUMBER_CHARS: usize = 200;

fn problem(path: String, problem: impl Into<String>) -> Problem {
    Problem { severity: Severity::Error, path, problem: problem.into() }
}

/// Reads the `cases` argument: an array of records, each with its steps oldest first.
/// Every shape problem is listed with its JSON path (`$[3].steps[1].at`); unknown keys
/// and wrong JSON types are problems, as in definitions.
pub fn parse_cases(v: &Value) -> Result<Vec<CaseIn>, Vec<Problem>> {
    let Value::Array(items) = v else {
        return Err(vec![problem("$".into(), "must be a JSON array of records")]);
    };
    let mut problems = Vec::new();
    let mut cases = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("$[{i}]");
        let Value::Object(obj) = item else {
            problems.push(problem(path, "must be an object"));
            continue;
        };
        unknown_keys(obj, CASE_KEYS, &path, &mut problems);
        let case_number = match obj.get("case_number") {
            Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= MAX_CASE_NUMBER_CHARS => s.clone(),
            Some(Value::String(_)) => {
                problems.push(problem(format!("{path}.case_number"), "must be 1 to 200 characters, not blank"));
                String::new()
            }
            Some(_) => {
                problems.push(problem(format!("{path}.case_number"), "must be a string"));
                String::new()
            }
            None => {
                problems.push(problem(format!("{path}.case_number"), "is required"));
                String::new()
            }
        };
        let case_id = opt_uuid(obj, "case_id", &path, &mut problems);
        let metadata = match obj.get("metadata") {
            None | Some(Value::Null) => None,
            Some(m @ Value::Object(_)) => Some(m.to_string()),
            Some(_) => {
                problems.push(problem(format!("{path}.metadata"), "must be an object"));
                None
            }
        };
        let steps = match obj.get("steps") {
            Some(Value::Array(steps)) if !steps.is_empty() => {
                steps.iter().enumerate().filter_map(|(j, s)| parse_step(s, &format!("{path}.steps[{j}]"), &mut problems)).collect()
            }
            Some(Value::Array(_)) => {
                problems.push(problem(format!("{path}.steps"), "must have at least one step (the current state)"));
                Vec::new()
            }
            Some(_) => {
                problems.push(problem(format!("{path}.steps"), "must be an array"));
                Vec::new()
            }
            None => {
                problems.push(problem(format!("{path}.steps"), "is required"));
                Vec::new()
            }
        };
        cases.push(CaseIn { case_number, case_id, metadata, steps });
    }
    // One case number once per call (the machine's numbers are checked by the caller).
    let mut seen = std::collections::HashMap::with_capacity(cases.len());
    for (i, c) in cases.iter().enumerate() {
        if let Some(first) = seen.insert(c.case_number.as_str(), i) {
            if !c.case_number.is_empty() {
                problems.push(problem(format!("$[{i}].case_number"), format!("{:?} is also the number of $[{first}]", c.case_number)));
            }
        }
    }
    if problems.is_empty() {
        Ok(cases)
    } else {
        Err(problems)
    }
}

fn parse_step(v: &Value, path: &str, problems: &mut Vec<Problem>) -> Option<StepIn> {
    let Value::Object(obj) = v else {
        problems.push(problem(path.into(), "must be an object"));
        return None;
    };
    unknown_keys(obj, STEP_KEYS, path, problems);
    let state = required_string(obj, "state", path, problems);
    let at = required_string(obj, "at", path, problems);
    let step = StepIn {
        state: state.unwrap_or_default(),
        at: at.unwrap_or_default(),
        transition: opt_string(obj, "transition", path, problems),
        actor_id: opt_uuid(obj, "actor_id", path, problems),
        actor_role: opt_string(obj, "actor_role", path, problems),
        reason_code: opt_string(obj, "reason_code", path, problems),
        reason_text: opt_string(obj, "reason_text", path, problems),
    };
    Some(step)
}

fn unknown_keys(obj: &Map<String, Value>, known: &[&str], path: &str, problems: &mut Vec<Problem>) {
    for k in obj.keys() {
        if !known.contains(&k.as_str()) {
            problems.push(problem(format!("{path}.{k}"), format!("unknown key (known: {})", known.join(", "))));
        }
    }
}

fn required_string(obj: &Map<String, Value>, key: &str, path: &str, problems: &mut Vec<Problem>) -> Option<String> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::String(_)) => {
            problems.push(problem(format!("{path}.{key}"), "must not be empty"));
            None
        }
        Some(_) => {
            problems.push(problem(format!("{path}.{key}"), "must be a string"));
            None
        }
        None => {
            problems.push(problem(format!("{path}.{key}"), "is required"));
            None
        }
    }
}

fn opt_string(obj: &Map<String, Value>, key: &str, path: &str, problems: &mut Vec<Problem>) -> Option<String> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            problems.push(problem(format!("{path}.{key}"), "must be a string"));
            None
        }
    }
}

fn opt_uuid(obj: &Map<String, Value>, key: &str, path: &str, problems: &mut Vec<Problem>) -> Option<[u8; 16]> {
    let text = opt_string(obj, key, path, problems)?;
    let id = ids::parse(&text);
    if id.is_none() {
        problems.push(problem(format!("{path}.{key}"), format!("{text:?} is not a uuid")));
    }
    id
}

/// How one step goes into history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedStep {
    /// transition_code of its history row.
    pub code: String,
    /// Whether a rule allowed it (false: recorded under `on_illegal => 'record'`).
    pub legal: bool,
}

/// Why a record cannot be imported as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepProblem {
    /// A state the machine version does not have (SM009, whatever on_illegal says).
    UnknownState { step: usize, state: String },
    /// A step no rule allows (SM001 under on_illegal => 'refuse').
    Illegal { step: usize, from: Option<String>, to: String, why: String, legal_targets: Vec<String> },
    /// Several rules lead from the previous state to this one and the step names none (SM001).
    Ambiguous { step: usize, from: String, to: String, codes: Vec<String> },
    /// A step dated before the one before it, or in the future (22023).
    OutOfOrder { step: usize, why: String },
}

/// Judges a record's steps against `machine`. `at`: each step's time (PostgreSQL
/// microseconds), `now`: the current time. The first problem found is returned; with
/// `OnIllegal::Record` an illegal step is not a problem but a step marked illegal.
pub fn plan_case(machine: &CompiledMachine, case: &CaseIn, at: &[i64], now: i64, on_illegal: OnIllegal) -> Result<Vec<PlannedStep>, StepProblem> {
    let mut plan = Vec::with_capacity(case.steps.len());
    for (i, step) in case.steps.iter().enumerate() {
        if !machine.has_state(&step.state) {
            return Err(StepProblem::UnknownState { step: i, state: step.state.clone() });
        }
        if at[i] > now {
            return Err(StepProblem::OutOfOrder { step: i, why: "is in the future".into() });
        }
        if i > 0 && at[i] < at[i - 1] {
            return Err(StepProblem::OutOfOrder { step: i, why: format!("is earlier than step {}", i - 1) });
        }
        let judged = if i == 0 {
            if step.state == machine.initial {
                Ok(CREATE_CODE.to_owned())
            } else {
                Err(format!("a record must start in the initial state {}", machine.initial))
            }
        } else {
            let from = &case.steps[i - 1].state;
            let leading: Vec<&str> = machine.legal_rules(from).filter(|r| r.to == step.state).map(|r| r.code.as_str()).collect();
            match (&step.transition, leading.as_slice()) {
                (Some(code), _) if leading.contains(&code.as_str()) => Ok(code.clone()),
                (Some(code), []) => Err(format!("no rule leads from {from} to {} ({code} included)", step.state)),
                (Some(code), _) => Err(format!("{code} does not lead from {from} to {}; {} does", step.state, leading.join(", "))),
                (None, [one]) => Ok((*one).to_owned()),
                (None, []) => Err(format!("no rule leads from {from} to {}", step.state)),
                (None, several) => {
                    return Err(StepProblem::Ambiguous {
                        step: i,
                        from: from.clone(),
                        to: step.state.clone(),
                        codes: several.iter().map(|s| (*s).to_owned()).collect(),
                    })
                }
            }
        };
        match judged {
            Ok(code) => plan.push(PlannedStep { code, legal: true }),
            Err(_) if on_illegal == OnIllegal::Record => {
                let code = if i == 0 { CREATE_CODE.to_owned() } else { step.transition.clone().unwrap_or_else(|| IMPORT_CODE.to_owned()) };
                plan.push(PlannedStep { code, legal: false });
            }
            Err(why) => {
                let from = (i > 0).then(|| case.steps[i - 1].state.clone());
                let legal_targets = match &from {
                    Some(f) => machine.legal_rules(f).map(|r| format!("{} ({})", r.to, r.code)).collect(),
                    None => vec![machine.initial.clone()],
                };
                return Err(StepProblem::Illegal { step: i, from, to: step.state.clone(), why, legal_targets });
            }
        }
    }
    Ok(plan)
}

/// When the record entered its current state: the time of the first step of the final
/// run of that state (a step to the same state does not reset it, as for transitions).
pub fn entered_at(case: &CaseIn, at: &[i64]) -> i64 {
    let last = case.steps.len() - 1;
    let mut i = last;
    while i > 0 && case.steps[i - 1].state == case.steps[last].state {
        i -= 1;
    }
    at[i]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::validate;
    use serde_json::json;

    fn shop() -> CompiledMachine {
        let def = json!({
            "machine": "shop",
            "states": [
                {"code": "in stock", "initial": true},
                {"code": "on order"},
                {"code": "unavailable"},
                {"code": "deleted", "terminal": true}
            ],
            "transitions": [
                {"code": "order", "from": "in stock", "to": "on order"},
                {"code": "restock", "from": ["on order", "unavailable"], "to": "in stock"},
                {"code": "sell out", "from": ["in stock", "on order"], "to": "unavailable"},
                {"code": "discontinue", "from": "unavailable", "to": "deleted"},
                {"code": "purge", "from": "unavailable", "to": "deleted"}
            ]
        });
        let v = validate(&def);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        CompiledMachine::from_definition(v.definition.as_ref().unwrap(), 1)
    }

    fn record(steps: &[(&str, Option<&str>)]) -> CaseIn {
        CaseIn {
            case_number: "P-1".into(),
            case_id: None,
            metadata: None,
            steps: steps
                .iter()
                .map(|(s, t)| StepIn {
                    state: (*s).into(),
                    at: String::new(),
                    transition: t.map(Into::into),
                    actor_id: None,
                    actor_role: None,
                    reason_code: None,
                    reason_text: None,
                })
                .collect(),
        }
    }

    #[test]
    fn parses_records_and_lists_every_shape_problem() {
        let ok = json!([{"case_number": "P-1", "metadata": {"sku": 1},
                         "steps": [{"state": "in stock", "at": "2020-01-01"}, {"state": "on order", "at": "2021-01-01", "actor_id": "00000000-0000-0000-0000-000000000001"}]}]);
        let cases = parse_cases(&ok).unwrap();
        assert_eq!(cases[0].steps.len(), 2);
        assert_eq!(cases[0].metadata.as_deref(), Some(r#"{"sku":1}"#));
        assert_eq!(cases[0].steps[1].actor_id, Some([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]));

        let bad = json!([{"case_number": "P-1", "steps": []},
                         {"case_number": 7, "steps": [{"state": "x", "at": 3, "colour": "red"}], "extra": true},
                         {"case_number": "P-1", "case_id": "nope", "steps": [{"at": "2020-01-01"}]}]);
        let problems: Vec<String> = parse_cases(&bad).unwrap_err().iter().map(ToString::to_string).collect();
        for expected in [
            "$[0].steps: must have at least one step",
            "$[1].extra: unknown key",
            "$[1].case_number: must be a string",
            "$[1].steps[0].colour: unknown key",
            "$[1].steps[0].at: must be a string",
            "$[2].case_id: \"nope\" is not a uuid",
            "$[2].steps[0].state: is required",
            "$[2].case_number: \"P-1\" is also the number of $[0]",
        ] {
            assert!(problems.iter().any(|p| p.starts_with(expected)), "{expected} not in {problems:#?}");
        }
        assert!(parse_cases(&json!({"case_number": "x"})).is_err());
    }

    #[test]
    fn judges_steps_by_the_rules() {
        let m = shop();
        let at = [1, 2, 3, 4];
        let plan = plan_case(&m, &record(&[("in stock", None), ("on order", None), ("in stock", None)]), &at, 10, OnIllegal::Refuse).unwrap();
        let codes: Vec<&str> = plan.iter().map(|p| p.code.as_str()).collect();
        assert_eq!(codes, ["CREATE", "order", "restock"]);

        // in stock -> deleted: no rule; refused, or recorded marked illegal.
        let illegal = record(&[("in stock", None), ("deleted", None)]);
        match plan_case(&m, &illegal, &at, 10, OnIllegal::Refuse) {
            Err(StepProblem::Illegal { step: 1, from: Some(f), to, .. }) => assert_eq!((f.as_str(), to.as_str()), ("in stock", "deleted")),
            other => panic!("{other:?}"),
        }
        let recorded = plan_case(&m, &illegal, &at, 10, OnIllegal::Record).unwrap();
        assert_eq!(recorded[1], PlannedStep { code: IMPORT_CODE.into(), legal: false });

        // Two rules lead unavailable -> deleted: the step must name one.
        let two = record(&[("in stock", None), ("unavailable", None), ("deleted", None)]);
        assert!(matches!(plan_case(&m, &two, &at, 10, OnIllegal::Record), Err(StepProblem::Ambiguous { step: 2, .. })));
        let named = record(&[("in stock", None), ("unavailable", None), ("deleted", Some("purge"))]);
        assert_eq!(plan_case(&m, &named, &at, 10, OnIllegal::Refuse).unwrap()[2].code, "purge");
        // A named transition that does not lead there is illegal.
        let wrong = record(&[("in stock", None), ("on order", Some("sell out"))]);
        assert!(matches!(plan_case(&m, &wrong, &at, 10, OnIllegal::Refuse), Err(StepProblem::Illegal { step: 1, .. })));

        // The first step is the initial state; states must exist; times ascend and are past.
        assert!(matches!(plan_case(&m, &record(&[("on order", None)]), &at, 10, OnIllegal::Refuse), Err(StepProblem::Illegal { step: 0, .. })));
        assert!(matches!(plan_case(&m, &record(&[("gone", None)]), &at, 10, OnIllegal::Record), Err(StepProblem::UnknownState { step: 0, .. })));
        let two_steps = record(&[("in stock", None), ("on order", None)]);
        assert!(matches!(plan_case(&m, &two_steps, &[5, 4], 10, OnIllegal::Refuse), Err(StepProblem::OutOfOrder { step: 1, .. })));
        assert!(matches!(plan_case(&m, &two_steps, &[5, 11], 10, OnIllegal::Refuse), Err(StepProblem::OutOfOrder { step: 1, .. })));
    }

    #[test]
    fn entered_at_is_the_start_of_the_final_run() {
        let c = record(&[("in stock", None), ("on order", None), ("on order", None)]);
        assert_eq!(entered_at(&c, &[1, 2, 3]), 2);
        let c = record(&[("in stock", None)]);
        assert_eq!(entered_at(&c, &[7]), 7);
    }
}
