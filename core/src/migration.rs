//! Migrating cases between versions of a machine (seed 003 §20): the state map, parsed
//! and checked against both versions' states, and what it says for each old state.
//! Ambiguity is never guessed: a state without a mapping, or one flagged
//! `requires_manual_review`, is reported and left alone.

use crate::definition::{Problem, Severity};
use serde_json::Value;
use std::collections::BTreeMap;

/// Transition code of the history row migrate_cases writes; no rule may use it.
pub const MIGRATE_CODE: &str = "MIGRATE";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mapping {
    To { state: String, reason: Option<String> },
    ManualReview { reason: Option<String> },
}

/// What migrate_cases does with a case in some old state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<'m> {
    Migrate { to: &'m str, reason: Option<&'m str> },
    ManualReview { reason: Option<&'m str> },
    Unmapped,
}

impl Outcome<'_> {
    /// The `outcome` column of migrate_cases; `dry_run` words a migration as a plan.
    pub fn label(&self, dry_run: bool) -> &'static str {
        match self {
            Outcome::Migrate { .. } if dry_run => "would_migrate",
            Outcome::Migrate { .. } => "migrated",
            Outcome::ManualReview { .. } => "requires_manual_review",
            Outcome::Unmapped => "unmapped",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateMap(BTreeMap<String, Mapping>);

impl StateMap {
    pub fn outcome(&self, old_state: &str) -> Outcome<'_> {
        match self.0.get(old_state) {
            Some(Mapping::To { state, reason }) => Outcome::Migrate { to: state, reason: reason.as_deref() },
            Some(Mapping::ManualReview { reason }) => Outcome::ManualReview { reason: reason.as_deref() },
            None => Outcome::Unmapped,
        }
    }
}

fn error(problems: &mut Vec<Problem>, path: String, problem: String) {
    problems.push(Problem { severity: Severity::Error, path, problem });
}

/// The JSON path of key `key` under `parent`: `$.OLD` for identifier-like keys,
/// `$["in stock"]` (the key as a JSON string) for any other text a state code may be.
fn key_path(parent: &str, key: &str) -> String {
    let mut chars = key.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!("{parent}.{key}")
    } else {
        format!("{parent}[{}]", Value::String(key.to_owned()))
    }
}

/// Parses `state_map`: `{"OLD": "NEW"}`, `{"OLD": {"to": "NEW", "reason": "..."}}` or
/// `{"OLD": {"requires_manual_review": true, "reason": "..."}}`. Every old state must be
/// a state of the source version and every target one of the target version; every
/// problem is reported with its JSON path.
pub fn parse_state_map(v: &Value, from_states: &[String], to_states: &[String]) -> Result<StateMap, Vec<Problem>> {
    let mut problems = Vec::new();
    let Some(obj) = v.as_object() else {
        error(&mut problems, "$".into(), "state_map must be a JSON object from old state to new state".into());
        return Err(problems);
    };
    let mut map = BTreeMap::new();
    for (old, entry) in obj {
        let path = key_path("$", old);
        if !from_states.iter().any(|s| s == old) {
            error(&mut problems, path.clone(), format!("{old} is not a state of the source version"));
        }
        let mapping = match entry {
            Value::String(new) => Some(Mapping::To { state: new.clone(), reason: None }),
            Value::Object(o) => {
                for key in o.keys().filter(|k| !["to", "reason", "requires_manual_review"].contains(&k.as_str())) {
                    error(&mut problems, key_path(&path, key), format!("unknown key {key:?} (allowed: to, reason, requires_manual_review)"));
                }
                let reason = match o.get("reason") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(r)) => Some(r.clone()),
                    Some(_) => {
                        error(&mut problems, format!("{path}.reason"), "reason must be a string".into());
                        None
                    }
                };
                match (o.get("requires_manual_review"), o.get("to")) {
                    (Some(Value::Bool(true)), None) => Some(Mapping::ManualReview { reason }),
                    (Some(Value::Bool(true)), Some(_)) => {
                        error(&mut problems, path.clone(), "give either to or requires_manual_review, not both".into());
                        None
                    }
                    (Some(Value::Bool(false)) | None, Some(Value::String(new))) => Some(Mapping::To { state: new.clone(), reason }),
                    (Some(Value::Bool(false)) | None, Some(_)) => {
                        error(&mut problems, format!("{path}.to"), "to must be a state code".into());
                        None
                    }
                    (Some(Value::Bool(false)) | None, None) => {
                        error(&mut problems, path.clone(), "a mapping needs to (the new state) or requires_manual_review: true".into());
                        None
                    }
                    (Some(_), _) => {
                        error(&mut problems, format!("{path}.requires_manual_review"), "requires_manual_review must be true or false".into());
                        None
                    }
                }
            }
            _ => {
                error(&mut problems, path.clone(), "a mapping is a state code or an object".into());
                None
            }
        };
        if let Some(Mapping::To { state, .. }) = &mapping {
            if !to_states.iter().any(|s| s == state) {
                error(&mut problems, path.clone(), format!("{state} is not a state of the target version"));
            }
        }
        if let Some(m) = mapping {
            map.insert(old.clone(), m);
        }
    }
    if problems.is_empty() {
        Ok(StateMap(map))
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn states(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn mappings_manual_review_and_unmapped() {
        let from = states(&["DRAFT", "REVIEW", "DONE", "LEGACY"]);
        let to = states(&["DRAFT", "TECHNICAL_REVIEW", "LEGAL_REVIEW", "DONE"]);
        let m = parse_state_map(
            &json!({"DRAFT": "DRAFT", "DONE": {"to": "DONE", "reason": "same"},
                    "REVIEW": {"requires_manual_review": true, "reason": "depends on the open task"}}),
            &from,
            &to,
        )
        .unwrap();
        assert_eq!(m.outcome("DRAFT"), Outcome::Migrate { to: "DRAFT", reason: None });
        assert_eq!(m.outcome("DONE"), Outcome::Migrate { to: "DONE", reason: Some("same") });
        assert_eq!(m.outcome("REVIEW"), Outcome::ManualReview { reason: Some("depends on the open task") });
        assert_eq!(m.outcome("LEGACY"), Outcome::Unmapped);
        assert_eq!(m.outcome("LEGACY").label(true), "unmapped");
        assert_eq!(m.outcome("DRAFT").label(true), "would_migrate");
        assert_eq!(m.outcome("DRAFT").label(false), "migrated");
    }

    #[test]
    fn every_problem_with_its_path_in_the_map_s_order() {
        let from = states(&["A", "B"]);
        let to = states(&["X"]);
        let err = parse_state_map(
            &json!({"A": "NOPE", "Q": "X", "B": {"to": "X", "requires_manual_review": true, "colour": 1}}),
            &from,
            &to,
        )
        .unwrap_err();
        let lines: Vec<String> = err.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            lines,
            vec![
                "$.A: NOPE is not a state of the target version",
                "$.Q: Q is not a state of the source version",
                "$.B.colour: unknown key \"colour\" (allowed: to, reason, requires_manual_review)",
                "$.B: give either to or requires_manual_review, not both",
            ]
        );
        assert!(parse_state_map(&json!(["A"]), &from, &to).is_err());
    }

    #[test]
    fn codes_as_users_write_them() {
        let from = states(&["in stock", "it's \"new\"", "a.b"]);
        let to = states(&["geprüft", "état"]);
        let m = parse_state_map(&json!({"in stock": "geprüft", "it's \"new\"": {"to": "état"}}), &from, &to).unwrap();
        assert_eq!(m.outcome("in stock"), Outcome::Migrate { to: "geprüft", reason: None });
        assert_eq!(m.outcome("it's \"new\""), Outcome::Migrate { to: "état", reason: None });
        let err = parse_state_map(&json!({"a.b": "a -> b; c", "it's \"new\"": {"to": "état", "x y": 1}}), &from, &to).unwrap_err();
        let lines: Vec<String> = err.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            lines,
            vec![
                "$[\"a.b\"]: a -> b; c is not a state of the target version",
                "$[\"it's \\\"new\\\"\"][\"x y\"]: unknown key \"x y\" (allowed: to, reason, requires_manual_review)",
            ]
        );
    }
}
