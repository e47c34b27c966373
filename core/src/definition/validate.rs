//! Validation entry points (`validate`, `validate_text`) and their result: the
//! `Collector` of problems, the shared value helpers, and the top-level, state and
//! invariant parsers. Transitions are parsed in `transition`, the graph checked in `graph`.

use super::graph::{check_graph, check_guard_references};
use super::model::{
    Invariant, MachineDef, Problem, RoleSource, Severity, StateDef, TransitionDef, MAX_CODE_LEN, MAX_STATES,
    MAX_TRANSITIONS,
};
use super::transition::parse_transition;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Result of validating a definition: the model when it has no errors, and every problem.
#[derive(Debug)]
pub struct Validation {
    pub definition: Option<MachineDef>,
    pub problems: Vec<Problem>,
}

impl Validation {
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.severity == Severity::Error)
    }
    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }
}

/// Parses and validates definition text (the `jsonb` as text).
pub fn validate_text(text: &str) -> Validation {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => validate(&v),
        Err(e) => Validation {
            definition: None,
            problems: vec![Problem { severity: Severity::Error, path: "$".into(), problem: format!("not valid JSON: {e}") }],
        },
    }
}

pub(super) struct Collector {
    pub(super) problems: Vec<Problem>,
}

impl Collector {
    pub(super) fn error(&mut self, path: impl Into<String>, problem: impl Into<String>) {
        self.problems.push(Problem { severity: Severity::Error, path: path.into(), problem: problem.into() });
    }
    pub(super) fn warning(&mut self, path: impl Into<String>, problem: impl Into<String>) {
        self.problems.push(Problem { severity: Severity::Warning, path: path.into(), problem: problem.into() });
    }

    pub(super) fn unknown_keys(&mut self, path: &str, obj: &Map<String, Value>, allowed: &[&str]) {
        for key in obj.keys() {
            if !allowed.contains(&key.as_str()) {
                self.error(
                    format!("{path}.{key}"),
                    format!("unknown key {key:?} (allowed: {})", allowed.join(", ")),
                );
            }
        }
    }

    /// A list of role names (`roles`, `assign_roles`): strings, not empty, at most 63
    /// bytes, none twice.
    pub(super) fn roles(&mut self, path: &str, v: Option<&Value>) -> Vec<String> {
        match v {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let mut out: Vec<String> = Vec::new();
                for (j, v) in items.iter().enumerate() {
                    let p = format!("{path}[{j}]");
                    match v {
                        Value::String(s) if s.trim().is_empty() => self.error(p, "role must not be empty"),
                        Value::String(s) if s.len() > MAX_CODE_LEN => self.error(p, "role is longer than 63 bytes"),
                        Value::String(s) if out.contains(s) => self.error(p, format!("role {s:?} listed twice")),
                        Value::String(s) => out.push(s.clone()),
                        other => self.error(p, format!("role must be a string, not {}", type_name(other))),
                    }
                }
                out
            }
            Some(other) => {
                let name = path.rsplit('.').next().unwrap_or(path).to_owned();
                self.error(path, format!("{name} must be an array of strings, not {}", type_name(other)));
                Vec::new()
            }
        }
    }

    /// A name on the identifier rule ([`code_problem`]): machine, reason, guard and event codes.
    pub(super) fn code(&mut self, path: &str, v: Option<&Value>, what: &str) -> Option<String> {
        self.checked_code(path, v, what, code_problem)
    }

    /// A state or transition code, on the user rule ([`user_code_problem`]).
    pub(super) fn user_code(&mut self, path: &str, v: Option<&Value>, what: &str) -> Option<String> {
        self.checked_code(path, v, what, user_code_problem)
    }

    fn checked_code(
        &mut self,
        path: &str,
        v: Option<&Value>,
        what: &str,
        rule: fn(&str) -> Option<&'static str>,
    ) -> Option<String> {
        match v {
            None => {
                self.error(path, format!("{what} is required"));
                None
            }
            Some(Value::String(s)) => match rule(s) {
                Some(p) => {
                    self.error(path, format!("{what} {s:?} {p}"));
                    None
                }
                None => Some(s.clone()),
            },
            Some(other) => {
                self.error(path, format!("{what} must be a string, not {}", type_name(other)));
                None
            }
        }
    }

    fn opt_string(&mut self, path: &str, v: Option<&Value>) -> Option<String> {
        match v {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.error(path, format!("must be a string, not {}", type_name(other)));
                None
            }
        }
    }

    pub(super) fn opt_bool(&mut self, path: &str, v: Option<&Value>) -> bool {
        match v {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.error(path, format!("must be true or false, not {}", type_name(other)));
                false
            }
        }
    }
}

/// Every code: 1 to 63 bytes (PostgreSQL's identifier length).
fn length_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        Some("is empty")
    } else if s.len() > MAX_CODE_LEN {
        Some("is longer than 63 bytes")
    } else {
        None
    }
}

/// Why a string is not a usable identifier-like code, if it is not: machine names,
/// reason, guard and event codes, registered guard names (`^[A-Za-z][A-Za-z0-9_.-]{0,62}$`).
pub fn code_problem(s: &str) -> Option<&'static str> {
    if let Some(problem) = length_problem(s) {
        return Some(problem);
    }
    let mut chars = s.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_ok || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') {
        return Some("must start with a letter and contain only letters, digits, '_', '-' or '.'");
    }
    None
}

/// Why a string is not a usable state or transition code, if it is not. Such codes are
/// text as users write them (`in stock`, `it's "new"`, `geprüft`): 1 to 63 bytes, no
/// control characters, no leading or trailing whitespace. Everything else is allowed
/// and used verbatim; whoever renders a code into a syntax (diagrams, SQL) quotes it.
pub fn user_code_problem(s: &str) -> Option<&'static str> {
    if let Some(problem) = length_problem(s) {
        return Some(problem);
    }
    if s.chars().any(char::is_control) {
        return Some("contains a control character");
    }
    if s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
        return Some("must not start or end with a space");
    }
    None
}

pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

const TOP_KEYS: &[&str] = &["machine", "description", "role_source", "corrections", "assign_roles", "invariants", "states", "transitions"];
const STATE_KEYS: &[&str] = &["code", "label", "phase", "initial", "terminal", "sort_order", "attributes"];

/// Validates a parsed definition: structure and types, references, then the graph.
pub fn validate(root: &Value) -> Validation {
    let mut c = Collector { problems: Vec::new() };
    let Some(top) = root.as_object() else {
        c.error("$", format!("a machine definition must be a JSON object, not {}", type_name(root)));
        return Validation { definition: None, problems: c.problems };
    };
    c.unknown_keys("$", top, TOP_KEYS);
    let machine = c.code("$.machine", top.get("machine"), "machine name");
    let description = c.opt_string("$.description", top.get("description"));
    let correct_any = match top.get("corrections") {
        None => false,
        Some(Value::String(s)) if s == "latest" => false,
        Some(Value::String(s)) if s == "any" => true,
        Some(other) => {
            c.error("$.corrections", format!("corrections must be \"latest\" (the default) or \"any\", not {other}"));
            false
        }
    };
    let assign_roles = c.roles("$.assign_roles", top.get("assign_roles"));
    let role_source = match top.get("role_source") {
        None => RoleSource::Asserted,
        Some(Value::String(s)) => RoleSource::parse(s).unwrap_or_else(|| {
            c.error("$.role_source", format!("unknown role_source {s:?} (one of asserted, database)"));
            RoleSource::Asserted
        }),
        Some(other) => {
            c.error("$.role_source", format!("role_source must be a string, not {}", type_name(other)));
            RoleSource::Asserted
        }
    };

    // States.
    let mut states: Vec<Option<StateDef>> = Vec::new();
    // Codes are kept even for states with other problems, so that one bad key on a
    // state does not turn every reference to it into a second, misleading error.
    let mut state_codes: Vec<Option<String>> = Vec::new();
    match top.get("states") {
        None => c.error("$.states", "states is required: a non-empty array of state objects"),
        Some(Value::Array(items)) if items.is_empty() => c.error("$.states", "states must not be empty"),
        Some(Value::Array(items)) if items.len() > MAX_STATES => {
            c.error("$.states", format!("more than {MAX_STATES} states"))
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let (code, state) = parse_state(&mut c, &format!("$.states[{i}]"), item);
                state_codes.push(code);
                states.push(state);
            }
        }
        Some(other) => c.error("$.states", format!("states must be an array, not {}", type_name(other))),
    }

    // State index, duplicates, the initial state.
    let mut state_index: HashMap<String, usize> = HashMap::new();
    for (i, code) in state_codes.iter().enumerate() {
        if let Some(code) = code {
            if let Some(first) = state_index.get(code) {
                c.error(
                    format!("$.states[{i}].code"),
                    format!("duplicate state code {code:?} (first defined at $.states[{first}])"),
                );
            } else {
                state_index.insert(code.clone(), i);
            }
        }
    }
    // References are only checked against a usable state list.
    let references = (!state_codes.is_empty()).then_some(&state_index);
    let initials: Vec<usize> = states
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.as_ref().filter(|s| s.initial).map(|_| i))
        .collect();
    if !states.is_empty() && initials.is_empty() && states.iter().all(Option::is_some) {
        c.error("$.states", "no initial state: mark exactly one state with \"initial\": true");
    }
    for &i in initials.iter().skip(1) {
        c.error(
            format!("$.states[{i}].initial"),
            format!("a second initial state (the first is at $.states[{}]); exactly one is allowed", initials[0]),
        );
    }

    // Transitions.
    let mut transitions: Vec<Option<TransitionDef>> = Vec::new();
    match top.get("transitions") {
        None => c.error("$.transitions", "transitions is required: an array of transition objects"),
        Some(Value::Array(items)) if items.len() > MAX_TRANSITIONS => {
            c.error("$.transitions", format!("more than {MAX_TRANSITIONS} transitions"))
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                transitions.push(parse_transition(&mut c, &format!("$.transitions[{i}]"), item, references));
            }
        }
        Some(other) => {
            c.error("$.transitions", format!("transitions must be an array, not {}", type_name(other)))
        }
    }

    let all_parsed = states.iter().all(Option::is_some) && transitions.iter().all(Option::is_some);
    let states: Vec<StateDef> = states.into_iter().flatten().collect();
    let transitions: Vec<TransitionDef> = transitions.into_iter().flatten().collect();

    // Graph checks run on what parsed cleanly; they need a consistent state set.
    if all_parsed && !states.is_empty() && initials.len() == 1 && state_index.len() == states.len() {
        check_graph(&mut c, &states, &transitions);
    }
    if all_parsed {
        check_guard_references(&mut c, &transitions);
    }
    let invariants = parse_invariants(&mut c, top.get("invariants"), &state_index, machine.as_deref());

    let definition = match machine {
        Some(machine) if !c.problems.iter().any(|p| p.severity == Severity::Error) => {
            Some(MachineDef { machine, description, role_source, correct_any, assign_roles, invariants, states, transitions })
        }
        _ => None,
    };
    Validation { definition, problems: c.problems }
}

fn parse_state(c: &mut Collector, path: &str, item: &Value) -> (Option<String>, Option<StateDef>) {
    let Some(obj) = item.as_object() else {
        c.error(path, format!("a state must be an object, not {}", type_name(item)));
        return (None, None);
    };
    let before = c.problems.len();
    c.unknown_keys(path, obj, STATE_KEYS);
    let code = c.user_code(&format!("{path}.code"), obj.get("code"), "state code");
    let label = c.opt_string(&format!("{path}.label"), obj.get("label"));
    let phase = c.opt_string(&format!("{path}.phase"), obj.get("phase"));
    let initial = c.opt_bool(&format!("{path}.initial"), obj.get("initial"));
    let terminal = c.opt_bool(&format!("{path}.terminal"), obj.get("terminal"));
    let sort_order = match obj.get("sort_order") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_i64().and_then(|v| i32::try_from(v).ok()) {
            Some(v) => Some(v),
            None => {
                c.error(format!("{path}.sort_order"), format!("sort_order must be a whole number in integer range, not {n}"));
                None
            }
        },
        Some(other) => {
            c.error(format!("{path}.sort_order"), format!("sort_order must be a number, not {}", type_name(other)));
            None
        }
    };
    let attributes = match obj.get("attributes") {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            c.error(format!("{path}.attributes"), format!("attributes must be an object, not {}", type_name(other)));
            Map::new()
        }
    };
    if c.problems[before..].iter().any(|p| p.severity == Severity::Error) {
        // Even a malformed code string names the state for reference checks.
        let raw = obj.get("code").and_then(Value::as_str).map(str::to_owned);
        return (code.or(raw), None);
    }
    let state = code.clone().map(|code| StateDef { code, label, phase, initial, terminal, sort_order, attributes });
    (code, state)
}

fn parse_invariants(
    c: &mut Collector,
    v: Option<&Value>,
    states: &HashMap<String, usize>,
    machine: Option<&str>,
) -> Vec<Invariant> {
    let items = match v {
        None => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            c.error("$.invariants", format!("invariants must be an array, not {}", type_name(other)));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("$.invariants[{i}]");
        let Some(obj) = item.as_object() else {
            c.error(p, format!("an invariant must be an object, not {}", type_name(item)));
            continue;
        };
        c.unknown_keys(&p, obj, &["when", "dimension", "in"]);
        let when = c.user_code(&format!("{p}.when"), obj.get("when"), "state code");
        if let Some(w) = &when {
            if !states.contains_key(w) {
                c.error(format!("{p}.when"), format!("unknown state {w:?}"));
            }
        }
        let dimension = c.code(&format!("{p}.dimension"), obj.get("dimension"), "dimension (machine name)");
        if dimension.is_some() && dimension.as_deref() == machine {
            c.error(format!("{p}.dimension"), "an invariant relates this machine to another dimension of the case, not to itself");
        }
        let allowed: Vec<String> = match obj.get("in") {
            Some(Value::Array(xs)) if !xs.is_empty() => xs
                .iter()
                .enumerate()
                .filter_map(|(j, x)| c.user_code(&format!("{p}.in[{j}]"), Some(x), "state code"))
                .collect(),
            Some(Value::Array(_)) => {
                c.error(format!("{p}.in"), "in must not be empty");
                Vec::new()
            }
            None => {
                c.error(format!("{p}.in"), "in is required: the states the other dimension must be in");
                Vec::new()
            }
            Some(other) => {
                c.error(format!("{p}.in"), format!("in must be an array of state codes, not {}", type_name(other)));
                Vec::new()
            }
        };
        if let (Some(when), Some(dimension)) = (when, dimension) {
            if !allowed.is_empty() {
                out.push(Invariant { when, dimension, allowed });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn user_codes_are_text_as_users_write_it() {
        let max = "x".repeat(63);
        for ok in ["in stock", "it's \"new\"", "a -> b; c", "geprüft", "état", "[*]", "a,b:c", max.as_str()] {
            assert_eq!(user_code_problem(ok), None, "{ok:?}");
        }
        // 62 ASCII bytes and a 2-byte 'ü': 64 bytes in 63 characters.
        let wide = format!("{}ü", "x".repeat(62));
        assert_eq!(wide.chars().count(), 63);
        let too_long = "x".repeat(64);
        for (bad, why) in [
            ("", "is empty"),
            (" x", "must not start or end with a space"),
            ("x ", "must not start or end with a space"),
            ("\u{a0}x", "must not start or end with a space"),
            ("a\tb", "contains a control character"),
            ("a\nb", "contains a control character"),
            ("\tx", "contains a control character"),
            ("a\u{7f}b", "contains a control character"),
            (too_long.as_str(), "is longer than 63 bytes"),
            (wide.as_str(), "is longer than 63 bytes"),
        ] {
            assert_eq!(user_code_problem(bad), Some(why), "{bad:?}");
        }
    }

    #[test]
    fn the_identifier_rule_is_unchanged() {
        assert_eq!(code_problem("IN-REVIEW.x_1"), None);
        for bad in ["in stock", "1x", "geprüft", "a;b"] {
            assert!(code_problem(bad).is_some_and(|p| p.starts_with("must start with a letter")), "{bad:?}");
        }
        assert_eq!(code_problem(""), Some("is empty"));
        assert_eq!(code_problem(&"x".repeat(64)), Some("is longer than 63 bytes"));
    }

    /// States, transitions, from/to, invariants and distinct_actor references take user
    /// codes; the machine, reasons, guards and events keep the identifier rule.
    #[test]
    fn definitions_take_user_codes_for_states_and_transitions() {
        let def = json!({
            "machine": "product_status",
            "invariants": [{"when": "deleted", "dimension": "billing", "in": ["paid in full", "état"]}],
            "states": [
                {"code": "in stock", "initial": true},
                {"code": "it's \"new\""},
                {"code": "a -> b; c"},
                {"code": "geprüft"},
                {"code": "deleted", "terminal": true}
            ],
            "transitions": [
                {"code": "sell out", "from": "in stock", "to": "it's \"new\""},
                {"code": "prüfen", "from": ["it's \"new\"", "in stock"], "to": "a -> b; c"},
                {"code": "ok; done", "from": "a -> b; c", "to": "geprüft", "requires_reason": true,
                 "reasons": [{"code": "CHECKED", "label": "checked by hand"}],
                 "guards": [{"guard": "distinct_actor", "transition": "prüfen"}]},
                {"code": "delete", "from": "geprüft", "to": "deleted", "emit": "ProductDeleted"}
            ]
        });
        let v = validate(&def);
        assert!(v.problems.is_empty(), "{:#?}", v.problems);
        let d = v.definition.expect("definition");
        assert_eq!(d.states[1].code, "it's \"new\"");
        assert_eq!(d.transitions[1].from, vec!["it's \"new\"", "in stock"]);
        assert_eq!(d.invariants[0].allowed, vec!["paid in full", "état"]);
        // The canonical form round-trips the codes verbatim.
        let again = validate(&d.to_canonical_json());
        assert_eq!(again.definition.as_ref(), Some(&d));

        let errors = |def: &Value| -> Vec<String> { validate(def).errors().map(ToString::to_string).collect() };
        let mut bad = def.clone();
        bad["states"][1]["code"] = json!(" new");
        bad["transitions"][0]["code"] = json!("sell\tout");
        bad["invariants"][0]["in"][0] = json!("paid ");
        bad["transitions"][2]["guards"][0]["transition"] = json!("");
        let errs = errors(&bad);
        for expected in [
            "$.states[1].code: state code \" new\" must not start or end with a space",
            "$.transitions[0].code: transition code \"sell\\tout\" contains a control character",
            "$.invariants[0].in[0]: state code \"paid \" must not start or end with a space",
            "$.transitions[2].guards[0].transition: transition code \"\" is empty",
        ] {
            assert!(errs.iter().any(|e| e == expected), "missing {expected:?} in {errs:#?}");
        }

        // The other names keep the identifier rule.
        for (path, value, at) in [
            ("machine", json!("product status"), "$.machine"),
            ("reason", json!("by hand"), "$.transitions[2].reasons[0].code"),
            ("emit", json!("Product deleted"), "$.transitions[3].emit"),
            ("dimension", json!("bill ing"), "$.invariants[0].dimension"),
        ] {
            let mut bad = def.clone();
            match path {
                "machine" => bad["machine"] = value,
                "reason" => bad["transitions"][2]["reasons"][0]["code"] = value,
                "emit" => bad["transitions"][3]["emit"] = value,
                _ => bad["invariants"][0]["dimension"] = value,
            }
            let errs = errors(&bad);
            assert!(
                errs.iter().any(|e| e.starts_with(&format!("{at}: ")) && e.contains("must start with a letter")),
                "{path}: {errs:#?}"
            );
        }

        // Reserved transition codes stay reserved.
        for reserved in ["CREATE", "CORRECT", "MIGRATE"] {
            let mut bad = def.clone();
            bad["transitions"][0]["code"] = json!(reserved);
            assert!(errors(&bad).iter().any(|e| e.starts_with("$.transitions[0].code: ") && e.contains("reserved")), "{reserved}");
        }
    }
}
