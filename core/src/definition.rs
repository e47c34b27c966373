//! Machine definitions: the JSON users publish, parsed into a typed model with every
//! problem collected (not just the first), each with the JSON path it comes from.
//!
//! Parsing walks a `serde_json::Value` by hand instead of deriving `Deserialize`: serde
//! stops at the first error, and a definition author wants the whole list at once.

use crate::interval::Interval;
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::fmt;

/// Transition code written by `create_case` into the first history row; no rule may use it.
pub const CREATE_CODE: &str = "CREATE";
/// Transition code of the history row correct_transition writes; no rule may use it.
pub const CORRECT_CODE: &str = "CORRECT";
/// Longest code or name accepted (PostgreSQL's identifier length).
pub const MAX_CODE_LEN: usize = 63;
pub const MAX_STATES: usize = 1_000;
pub const MAX_TRANSITIONS: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One finding of validation: where (`$.transitions[3].to`) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub path: String,
    pub problem: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.problem)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Normal,
    Reopen,
    Reversal,
    Correction,
    Admin,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Normal, Kind::Reopen, Kind::Reversal, Kind::Correction, Kind::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Normal => "normal",
            Kind::Reopen => "reopen",
            Kind::Reversal => "reversal",
            Kind::Correction => "correction",
            Kind::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Kinds that may leave a terminal state (seed 003 §12).
    pub fn may_leave_terminal(self) -> bool {
        matches!(self, Kind::Reopen | Kind::Correction | Kind::Admin)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct StateDef {
    pub code: String,
    pub label: Option<String>,
    pub phase: Option<String>,
    pub initial: bool,
    pub terminal: bool,
    pub sort_order: Option<i32>,
    pub attributes: Map<String, Value>,
}

/// Where `actor_role` comes from (machine key `role_source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RoleSource {
    /// The caller names the role; the rule's `roles` decide (the default).
    #[default]
    Asserted,
    /// `actor_role` must also be a PostgreSQL role the session user is a member of.
    Database,
}

impl RoleSource {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleSource::Asserted => "asserted",
            RoleSource::Database => "database",
        }
    }
    pub fn parse(s: &str) -> Option<RoleSource> {
        [RoleSource::Asserted, RoleSource::Database].into_iter().find(|r| r.as_str() == s)
    }
}

/// What evidence a transition needs (`requires_evidence`: `true` or a list of types).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum EvidenceRequirement {
    #[default]
    None,
    /// At least one usable evidence item.
    Any,
    /// At least one usable item of each listed type.
    Types(Vec<String>),
}

impl EvidenceRequirement {
    pub fn is_required(&self) -> bool {
        !matches!(self, EvidenceRequirement::None)
    }
    pub fn types(&self) -> &[String] {
        match self {
            EvidenceRequirement::Types(t) => t,
            _ => &[],
        }
    }
}

/// One allowed structured reason of a transition (seed 003 §25).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReasonDef {
    pub code: String,
    pub label: String,
}

/// Guard kinds (seed 003 §8-9). `min_time_in_state` is also what the transition-level
/// key of that name compiles to.
#[derive(Clone, Debug, PartialEq)]
pub enum GuardSpec {
    MinTimeInState(Interval),
    /// The actor must differ from the actor of the latest transition with this code.
    DistinctActor { transition: String },
    /// The actor must hold an active assignment with this role on the case.
    RequiresAssignment { role: String },
    /// A function registered with `statemachine.register_guard(name, ...)`.
    Sql { name: String, params: Map<String, Value> },
}

impl GuardSpec {
    pub const KINDS: [&'static str; 4] = ["distinct_actor", "requires_assignment", "min_time_in_state", "sql"];

    pub fn kind(&self) -> &'static str {
        match self {
            GuardSpec::MinTimeInState(_) => "min_time_in_state",
            GuardSpec::DistinctActor { .. } => "distinct_actor",
            GuardSpec::RequiresAssignment { .. } => "requires_assignment",
            GuardSpec::Sql { .. } => "sql",
        }
    }

    /// The code a guard has unless its definition names one: its kind, or for `sql`
    /// guards the registered name.
    pub fn default_code(&self) -> &str {
        match self {
            GuardSpec::Sql { name, .. } => name,
            other => other.kind(),
        }
    }
}

/// A guard of a transition; `code` names it in SM002 DETAILs, in `check_transition`
/// and in `case_transition_guard_result`.
#[derive(Clone, Debug, PartialEq)]
pub struct GuardDef {
    pub code: String,
    pub spec: GuardSpec,
}

/// Check names `check_transition` uses for the rule's own checks; guard codes may not take them.
pub const RESERVED_CHECK_NAMES: [&str; 4] = ["rule", "role", "reason", "evidence"];

#[derive(Clone, Debug, PartialEq)]
pub struct TransitionDef {
    pub code: String,
    pub from: Vec<String>,
    pub to: String,
    pub roles: Vec<String>,
    pub requires_reason: bool,
    pub evidence: EvidenceRequirement,
    /// The transition-level `min_time_in_state` key (evaluated as the first guard).
    pub min_time_in_state: Option<Interval>,
    /// The `guards` array, in order.
    pub guards: Vec<GuardDef>,
    pub audit_guards: bool,
    pub reasons: Vec<ReasonDef>,
    /// Outbox event type written with every such transition (seed 003 §16).
    pub emit: Option<String>,
    /// A timed transition: fired by run_due_transitions once the case has been in
    /// `from` this long (seed 004).
    pub after: Option<Interval>,
    pub kind: Kind,
}

/// The actor role and reason code timed transitions are performed with.
pub const SYSTEM_ROLE: &str = "SYSTEM";
pub const TIMER_REASON: &str = "TIMER";

impl TransitionDef {
    /// Every guard in evaluation order: the `min_time_in_state` key first, then `guards`.
    pub fn all_guards(&self) -> Vec<GuardDef> {
        let mut out = Vec::with_capacity(self.guards.len() + 1);
        if let Some(min) = self.min_time_in_state {
            out.push(GuardDef { code: "min_time_in_state".into(), spec: GuardSpec::MinTimeInState(min) });
        }
        out.extend(self.guards.iter().cloned());
        out
    }
}

/// A cross-dimension invariant (seed 003 §21): this machine may be in state `when` only
/// while the case's `dimension` (another machine attached to the same case) is in one
/// of `allowed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invariant {
    pub when: String,
    pub dimension: String,
    pub allowed: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MachineDef {
    pub machine: String,
    pub description: Option<String>,
    pub role_source: RoleSource,
    /// correct_transition may correct any transition, not only the latest.
    pub correct_any: bool,
    pub invariants: Vec<Invariant>,
    pub states: Vec<StateDef>,
    pub transitions: Vec<TransitionDef>,
}

impl MachineDef {
    pub fn initial_state(&self) -> Option<&StateDef> {
        self.states.iter().find(|s| s.initial)
    }

    /// `(JSON path, registered name)` of every `sql` guard, for the extension to check
    /// against `statemachine.guard_function` (the pure core cannot see the catalog).
    pub fn sql_guard_names(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, t) in self.transitions.iter().enumerate() {
            for (j, g) in t.guards.iter().enumerate() {
                if let GuardSpec::Sql { name, .. } = &g.spec {
                    out.push((format!("$.transitions[{i}].guards[{j}].name"), name.clone()));
                }
            }
        }
        out
    }

    /// Sort order stored for state `index`: the given one, else its position (1-based, x10).
    pub fn effective_sort_order(&self, index: usize) -> i32 {
        self.states[index]
            .sort_order
            .unwrap_or_else(|| i32::try_from((index + 1) * 10).unwrap_or(i32::MAX))
    }

    /// The canonical JSON form: what is stored, what `machine_definition` returns and
    /// what idempotency compares. Keys at their default value are omitted, a single
    /// `from` is a string, intervals are spelled canonically.
    pub fn to_canonical_json(&self) -> Value {
        let mut top = Map::new();
        top.insert("machine".into(), Value::String(self.machine.clone()));
        if let Some(d) = &self.description {
            top.insert("description".into(), Value::String(d.clone()));
        }
        if self.role_source != RoleSource::Asserted {
            top.insert("role_source".into(), self.role_source.as_str().into());
        }
        if self.correct_any {
            top.insert("corrections".into(), "any".into());
        }
        if !self.invariants.is_empty() {
            let list = self
                .invariants
                .iter()
                .map(|i| {
                    let mut o = Map::new();
                    o.insert("when".into(), i.when.clone().into());
                    o.insert("dimension".into(), i.dimension.clone().into());
                    o.insert("in".into(), i.allowed.iter().cloned().map(Value::String).collect());
                    Value::Object(o)
                })
                .collect();
            top.insert("invariants".into(), Value::Array(list));
        }
        let states = self
            .states
            .iter()
            .map(|s| {
                let mut m = Map::new();
                m.insert("code".into(), s.code.clone().into());
                if let Some(l) = &s.label {
                    m.insert("label".into(), l.clone().into());
                }
                if let Some(p) = &s.phase {
                    m.insert("phase".into(), p.clone().into());
                }
                if s.initial {
                    m.insert("initial".into(), true.into());
                }
                if s.terminal {
                    m.insert("terminal".into(), true.into());
                }
                if let Some(o) = s.sort_order {
                    m.insert("sort_order".into(), o.into());
                }
                if !s.attributes.is_empty() {
                    m.insert("attributes".into(), Value::Object(s.attributes.clone()));
                }
                Value::Object(m)
            })
            .collect();
        top.insert("states".into(), Value::Array(states));
        let transitions = self
            .transitions
            .iter()
            .map(|t| {
                let mut m = Map::new();
                m.insert("code".into(), t.code.clone().into());
                if t.from.len() == 1 {
                    m.insert("from".into(), t.from[0].clone().into());
                } else {
                    m.insert("from".into(), t.from.iter().cloned().map(Value::String).collect());
                }
                m.insert("to".into(), t.to.clone().into());
                if !t.roles.is_empty() {
                    m.insert("roles".into(), t.roles.iter().cloned().map(Value::String).collect());
                }
                if t.requires_reason {
                    m.insert("requires_reason".into(), true.into());
                }
                match &t.evidence {
                    EvidenceRequirement::None => {}
                    EvidenceRequirement::Any => {
                        m.insert("requires_evidence".into(), true.into());
                    }
                    EvidenceRequirement::Types(types) => {
                        m.insert("requires_evidence".into(), types.iter().cloned().map(Value::String).collect());
                    }
                }
                if let Some(iv) = &t.min_time_in_state {
                    m.insert("min_time_in_state".into(), iv.canonical().into());
                }
                if !t.reasons.is_empty() {
                    let reasons = t
                        .reasons
                        .iter()
                        .map(|r| {
                            let mut o = Map::new();
                            o.insert("code".into(), r.code.clone().into());
                            o.insert("label".into(), r.label.clone().into());
                            Value::Object(o)
                        })
                        .collect();
                    m.insert("reasons".into(), Value::Array(reasons));
                }
                if !t.guards.is_empty() {
                    m.insert("guards".into(), t.guards.iter().map(guard_json).collect());
                }
                if t.audit_guards {
                    m.insert("audit_guards".into(), true.into());
                }
                if let Some(e) = &t.emit {
                    m.insert("emit".into(), e.clone().into());
                }
                if let Some(a) = &t.after {
                    m.insert("after".into(), a.canonical().into());
                }
                if t.kind != Kind::Normal {
                    m.insert("kind".into(), t.kind.as_str().into());
                }
                Value::Object(m)
            })
            .collect();
        top.insert("transitions".into(), Value::Array(transitions));
        Value::Object(top)
    }
}

/// Canonical JSON of one guard: `code` only when it differs from the default.
fn guard_json(g: &GuardDef) -> Value {
    let mut o = Map::new();
    o.insert("guard".into(), g.spec.kind().into());
    if g.code != g.spec.default_code() {
        o.insert("code".into(), g.code.clone().into());
    }
    match &g.spec {
        GuardSpec::MinTimeInState(iv) => {
            o.insert("interval".into(), iv.canonical().into());
        }
        GuardSpec::DistinctActor { transition } => {
            o.insert("transition".into(), transition.clone().into());
        }
        GuardSpec::RequiresAssignment { role } => {
            o.insert("role".into(), role.clone().into());
        }
        GuardSpec::Sql { name, params } => {
            o.insert("name".into(), name.clone().into());
            if !params.is_empty() {
                o.insert("params".into(), Value::Object(params.clone()));
            }
        }
    }
    Value::Object(o)
}

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

struct Collector {
    problems: Vec<Problem>,
}

impl Collector {
    fn error(&mut self, path: impl Into<String>, problem: impl Into<String>) {
        self.problems.push(Problem { severity: Severity::Error, path: path.into(), problem: problem.into() });
    }
    fn warning(&mut self, path: impl Into<String>, problem: impl Into<String>) {
        self.problems.push(Problem { severity: Severity::Warning, path: path.into(), problem: problem.into() });
    }

    fn unknown_keys(&mut self, path: &str, obj: &Map<String, Value>, allowed: &[&str]) {
        for key in obj.keys() {
            if !allowed.contains(&key.as_str()) {
                self.error(
                    format!("{path}.{key}"),
                    format!("unknown key {key:?} (allowed: {})", allowed.join(", ")),
                );
            }
        }
    }

    fn code(&mut self, path: &str, v: Option<&Value>, what: &str) -> Option<String> {
        match v {
            None => {
                self.error(path, format!("{what} is required"));
                None
            }
            Some(Value::String(s)) => match code_problem(s) {
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

    fn opt_bool(&mut self, path: &str, v: Option<&Value>) -> bool {
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

/// Why a string is not a usable code, if it is not.
pub fn code_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("is empty");
    }
    if s.len() > MAX_CODE_LEN {
        return Some("is longer than 63 bytes");
    }
    let mut chars = s.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_ok || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') {
        return Some("must start with a letter and contain only letters, digits, '_', '-' or '.'");
    }
    None
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

const TOP_KEYS: &[&str] = &["machine", "description", "role_source", "corrections", "invariants", "states", "transitions"];
const STATE_KEYS: &[&str] = &["code", "label", "phase", "initial", "terminal", "sort_order", "attributes"];
const TRANSITION_KEYS: &[&str] = &[
    "code",
    "from",
    "to",
    "roles",
    "requires_reason",
    "requires_evidence",
    "min_time_in_state",
    "reasons",
    "guards",
    "audit_guards",
    "emit",
    "after",
    "kind",
];

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
            Some(MachineDef { machine, description, role_source, correct_any, invariants, states, transitions })
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
    let code = c.code(&format!("{path}.code"), obj.get("code"), "state code");
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

fn parse_transition(
    c: &mut Collector,
    path: &str,
    item: &Value,
    states: Option<&HashMap<String, usize>>,
) -> Option<TransitionDef> {
    let Some(obj) = item.as_object() else {
        c.error(path, format!("a transition must be an object, not {}", type_name(item)));
        return None;
    };
    let before = c.problems.len();
    c.unknown_keys(path, obj, TRANSITION_KEYS);
    let code = c.code(&format!("{path}.code"), obj.get("code"), "transition code");
    if code.as_deref() == Some(CREATE_CODE) {
        c.error(format!("{path}.code"), "transition code \"CREATE\" is reserved for the first history row of every case");
    }
    if code.as_deref() == Some(CORRECT_CODE) {
        c.error(format!("{path}.code"), "transition code \"CORRECT\" is reserved for the history rows correct_transition writes");
    }
    if code.as_deref() == Some(crate::migration::MIGRATE_CODE) {
        c.error(format!("{path}.code"), "transition code \"MIGRATE\" is reserved for the history rows migrate_cases writes");
    }
    let known = |c: &mut Collector, p: String, s: &str| {
        if states.is_some_and(|st| !st.contains_key(s)) {
            c.error(p, format!("unknown state {s:?}"));
        }
    };
    let from = match obj.get("from") {
        None => {
            c.error(format!("{path}.from"), "from is required: a state code or an array of state codes");
            Vec::new()
        }
        Some(Value::String(s)) => {
            known(c, format!("{path}.from"), s);
            vec![s.clone()]
        }
        Some(Value::Array(items)) if items.is_empty() => {
            c.error(format!("{path}.from"), "from must not be an empty array");
            Vec::new()
        }
        Some(Value::Array(items)) => {
            let mut out: Vec<String> = Vec::new();
            for (j, v) in items.iter().enumerate() {
                let p = format!("{path}.from[{j}]");
                match v {
                    Value::String(s) if out.contains(s) => c.error(p, format!("state {s:?} listed twice")),
                    Value::String(s) => {
                        known(c, p, s);
                        out.push(s.clone());
                    }
                    other => c.error(p, format!("must be a state code string, not {}", type_name(other))),
                }
            }
            out
        }
        Some(other) => {
            c.error(format!("{path}.from"), format!("from must be a string or an array of strings, not {}", type_name(other)));
            Vec::new()
        }
    };
    let to = match obj.get("to") {
        None => {
            c.error(format!("{path}.to"), "to is required");
            None
        }
        Some(Value::String(s)) => {
            known(c, format!("{path}.to"), s);
            Some(s.clone())
        }
        Some(other) => {
            c.error(format!("{path}.to"), format!("to must be a state code string, not {}", type_name(other)));
            None
        }
    };
    let roles = match obj.get("roles") {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            let mut out: Vec<String> = Vec::new();
            for (j, v) in items.iter().enumerate() {
                let p = format!("{path}.roles[{j}]");
                match v {
                    Value::String(s) if s.trim().is_empty() => c.error(p, "role must not be empty"),
                    Value::String(s) if s.len() > MAX_CODE_LEN => c.error(p, "role is longer than 63 bytes"),
                    Value::String(s) if out.contains(s) => c.error(p, format!("role {s:?} listed twice")),
                    Value::String(s) => out.push(s.clone()),
                    other => c.error(p, format!("role must be a string, not {}", type_name(other))),
                }
            }
            out
        }
        Some(other) => {
            c.error(format!("{path}.roles"), format!("roles must be an array of strings, not {}", type_name(other)));
            Vec::new()
        }
    };
    let requires_reason = c.opt_bool(&format!("{path}.requires_reason"), obj.get("requires_reason"));
    let evidence = parse_evidence_requirement(c, &format!("{path}.requires_evidence"), obj.get("requires_evidence"));
    let reasons = parse_reasons(c, &format!("{path}.reasons"), obj.get("reasons"));
    let audit_guards = c.opt_bool(&format!("{path}.audit_guards"), obj.get("audit_guards"));
    let min_time_in_state = match obj.get("min_time_in_state") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match Interval::parse(s) {
            Ok(iv) if iv.is_zero() => {
                c.warning(format!("{path}.min_time_in_state"), "a zero interval never blocks; it is dropped");
                None
            }
            Ok(iv) => Some(iv),
            Err(e) => {
                c.error(format!("{path}.min_time_in_state"), e);
                None
            }
        },
        Some(other) => {
            c.error(
                format!("{path}.min_time_in_state"),
                format!("min_time_in_state must be an interval string such as \"5 years\", not {}", type_name(other)),
            );
            None
        }
    };
    let kind = match obj.get("kind") {
        None => Kind::Normal,
        Some(Value::String(s)) => Kind::parse(s).unwrap_or_else(|| {
            c.error(
                format!("{path}.kind"),
                format!("unknown kind {s:?} (one of normal, reopen, reversal, correction, admin)"),
            );
            Kind::Normal
        }),
        Some(other) => {
            c.error(format!("{path}.kind"), format!("kind must be a string, not {}", type_name(other)));
            Kind::Normal
        }
    };
    let guards = parse_guards(c, &format!("{path}.guards"), obj.get("guards"), min_time_in_state.is_some());
    let emit = match obj.get("emit") {
        None | Some(Value::Null) => None,
        v => c.code(&format!("{path}.emit"), v, "event type"),
    };
    let after = match obj.get("after") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match Interval::parse(s) {
            Ok(iv) if iv.is_zero() => {
                c.error(format!("{path}.after"), "a timed transition needs a positive interval");
                None
            }
            Ok(iv) => Some(iv),
            Err(e) => {
                c.error(format!("{path}.after"), e);
                None
            }
        },
        Some(other) => {
            c.error(format!("{path}.after"), format!("after must be an interval string such as \"5 years\", not {}", type_name(other)));
            None
        }
    };
    if after.is_some() {
        // run_due_transitions acts as role SYSTEM with reason code TIMER.
        if !roles.is_empty() && !roles.iter().any(|r| r == SYSTEM_ROLE) {
            c.error(format!("{path}.roles"), format!("a timed transition (\"after\") is performed as role {SYSTEM_ROLE}: list it in roles or leave roles empty"));
        }
        if !reasons.is_empty() && !reasons.iter().any(|r| r.code == TIMER_REASON) {
            c.error(format!("{path}.reasons"), format!("a timed transition (\"after\") gives reason code {TIMER_REASON}: declare it among the reasons"));
        }
    }
    if c.problems[before..].iter().any(|p| p.severity == Severity::Error) {
        return None;
    }
    Some(TransitionDef {
        code: code?,
        from,
        to: to?,
        roles,
        requires_reason,
        evidence,
        min_time_in_state,
        guards,
        audit_guards,
        reasons,
        emit,
        after,
        kind,
    })
}

fn parse_evidence_requirement(c: &mut Collector, path: &str, v: Option<&Value>) -> EvidenceRequirement {
    match v {
        None | Some(Value::Bool(false)) => EvidenceRequirement::None,
        Some(Value::Bool(true)) => EvidenceRequirement::Any,
        Some(Value::Array(items)) if items.is_empty() => {
            c.error(path, "requires_evidence must not be an empty array (use true, or list evidence types)");
            EvidenceRequirement::None
        }
        Some(Value::Array(items)) => {
            let mut types: Vec<String> = Vec::new();
            for (j, v) in items.iter().enumerate() {
                let p = format!("{path}[{j}]");
                match v {
                    Value::String(s) if s.trim().is_empty() => c.error(p, "evidence type must not be empty"),
                    Value::String(s) if types.contains(s) => c.error(p, format!("evidence type {s:?} listed twice")),
                    Value::String(s) => types.push(s.clone()),
                    other => c.error(p, format!("evidence type must be a string, not {}", type_name(other))),
                }
            }
            EvidenceRequirement::Types(types)
        }
        Some(other) => {
            c.error(path, format!("requires_evidence must be true, false or an array of evidence types, not {}", type_name(other)));
            EvidenceRequirement::None
        }
    }
}

fn parse_reasons(c: &mut Collector, path: &str, v: Option<&Value>) -> Vec<ReasonDef> {
    let items = match v {
        None => return Vec::new(),
        Some(Value::Array(items)) if items.is_empty() => {
            c.error(path, "reasons must not be empty (omit the key to allow any reason)");
            return Vec::new();
        }
        Some(Value::Array(items)) => items,
        Some(other) => {
            c.error(path, format!("reasons must be an array of {{\"code\", \"label\"}} objects, not {}", type_name(other)));
            return Vec::new();
        }
    };
    let mut out: Vec<ReasonDef> = Vec::new();
    for (j, item) in items.iter().enumerate() {
        let p = format!("{path}[{j}]");
        let Some(obj) = item.as_object() else {
            c.error(p, format!("a reason must be an object, not {}", type_name(item)));
            continue;
        };
        c.unknown_keys(&p, obj, &["code", "label"]);
        let code = c.code(&format!("{p}.code"), obj.get("code"), "reason code");
        let label = match obj.get("label") {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            Some(Value::String(_)) => {
                c.error(format!("{p}.label"), "label must not be empty");
                None
            }
            None => {
                c.error(format!("{p}.label"), "label is required");
                None
            }
            Some(other) => {
                c.error(format!("{p}.label"), format!("label must be a string, not {}", type_name(other)));
                None
            }
        };
        if let (Some(code), Some(label)) = (code, label) {
            if out.iter().any(|r| r.code == code) {
                c.error(format!("{p}.code"), format!("reason code {code:?} listed twice"));
            } else {
                out.push(ReasonDef { code, label });
            }
        }
    }
    out
}

fn parse_guards(c: &mut Collector, path: &str, v: Option<&Value>, has_min_time_key: bool) -> Vec<GuardDef> {
    let items = match v {
        None => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            c.error(path, format!("guards must be an array of guard objects, not {}", type_name(other)));
            return Vec::new();
        }
    };
    let mut out: Vec<GuardDef> = Vec::new();
    // The transition-level min_time_in_state key is a guard with that code.
    let mut codes: Vec<(String, String)> = Vec::new();
    if has_min_time_key {
        codes.push(("min_time_in_state".into(), "the transition's min_time_in_state key".into()));
    }
    for (j, item) in items.iter().enumerate() {
        let p = format!("{path}[{j}]");
        let Some(obj) = item.as_object() else {
            c.error(p, format!("a guard must be an object, not {}", type_name(item)));
            continue;
        };
        let before = c.problems.len();
        let spec = match obj.get("guard") {
            None => {
                c.error(format!("{p}.guard"), format!("guard is required (one of {})", GuardSpec::KINDS.join(", ")));
                None
            }
            Some(Value::String(kind)) => parse_guard_spec(c, &p, kind, obj),
            Some(other) => {
                c.error(format!("{p}.guard"), format!("guard must be a string, not {}", type_name(other)));
                None
            }
        };
        let code = match obj.get("code") {
            None => spec.as_ref().map(|s| s.default_code().to_owned()),
            v => c.code(&format!("{p}.code"), v, "guard code"),
        };
        if c.problems[before..].iter().any(|p| p.severity == Severity::Error) {
            continue;
        }
        let (Some(spec), Some(code)) = (spec, code) else { continue };
        if RESERVED_CHECK_NAMES.contains(&code.as_str()) {
            c.error(
                format!("{p}.code"),
                format!("guard code {code:?} is reserved for the rule's own checks ({}); name the guard with \"code\"", RESERVED_CHECK_NAMES.join(", ")),
            );
            continue;
        }
        if let Some((_, first)) = codes.iter().find(|(k, _)| *k == code) {
            c.error(
                format!("{p}.code"),
                format!("guard code {code:?} is already used by {first}; give one of them a distinct \"code\""),
            );
            continue;
        }
        codes.push((code.clone(), p.clone()));
        out.push(GuardDef { code, spec });
    }
    out
}

fn parse_guard_spec(c: &mut Collector, p: &str, kind: &str, obj: &Map<String, Value>) -> Option<GuardSpec> {
    match kind {
        "distinct_actor" => {
            c.unknown_keys(p, obj, &["guard", "code", "transition"]);
            let t = c.code(&format!("{p}.transition"), obj.get("transition"), "transition code");
            t.map(|transition| GuardSpec::DistinctActor { transition })
        }
        "requires_assignment" => {
            c.unknown_keys(p, obj, &["guard", "code", "role"]);
            match obj.get("role") {
                Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_CODE_LEN => {
                    Some(GuardSpec::RequiresAssignment { role: s.clone() })
                }
                Some(Value::String(_)) => {
                    c.error(format!("{p}.role"), "role must be a non-empty string of at most 63 bytes");
                    None
                }
                None => {
                    c.error(format!("{p}.role"), "role is required: the assignment role the actor must hold");
                    None
                }
                Some(other) => {
                    c.error(format!("{p}.role"), format!("role must be a string, not {}", type_name(other)));
                    None
                }
            }
        }
        "min_time_in_state" => {
            c.unknown_keys(p, obj, &["guard", "code", "interval"]);
            match obj.get("interval") {
                Some(Value::String(s)) => match Interval::parse(s) {
                    Ok(iv) if iv.is_zero() => {
                        c.error(format!("{p}.interval"), "a zero interval never blocks");
                        None
                    }
                    Ok(iv) => Some(GuardSpec::MinTimeInState(iv)),
                    Err(e) => {
                        c.error(format!("{p}.interval"), e);
                        None
                    }
                },
                None => {
                    c.error(format!("{p}.interval"), "interval is required, e.g. \"5 days\"");
                    None
                }
                Some(other) => {
                    c.error(format!("{p}.interval"), format!("interval must be a string such as \"5 days\", not {}", type_name(other)));
                    None
                }
            }
        }
        "sql" => {
            c.unknown_keys(p, obj, &["guard", "code", "name", "params"]);
            let name = c.code(&format!("{p}.name"), obj.get("name"), "guard name");
            let params = match obj.get("params") {
                None => Map::new(),
                Some(Value::Object(m)) => m.clone(),
                Some(other) => {
                    c.error(format!("{p}.params"), format!("params must be an object, not {}", type_name(other)));
                    Map::new()
                }
            };
            name.map(|name| GuardSpec::Sql { name, params })
        }
        other => {
            c.error(format!("{p}.guard"), format!("unknown guard {other:?} (one of {})", GuardSpec::KINDS.join(", ")));
            None
        }
    }
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
        let when = c.code(&format!("{p}.when"), obj.get("when"), "state code");
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
                .filter_map(|(j, x)| c.code(&format!("{p}.in[{j}]"), Some(x), "state code"))
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

/// A `distinct_actor` guard must name a transition of this machine (or CREATE).
fn check_guard_references(c: &mut Collector, transitions: &[TransitionDef]) {
    for (i, t) in transitions.iter().enumerate() {
        for (j, g) in t.guards.iter().enumerate() {
            if let GuardSpec::DistinctActor { transition } = &g.spec {
                if transition != CREATE_CODE && !transitions.iter().any(|o| &o.code == transition) {
                    c.error(
                        format!("$.transitions[{i}].guards[{j}].transition"),
                        format!("unknown transition code {transition:?} (distinct_actor compares with a transition of this machine, or CREATE)"),
                    );
                }
            }
        }
    }
}

/// Graph completeness (seed 003 §29.1): ambiguity, terminal exits, dead ends, reachability.
fn check_graph(c: &mut Collector, states: &[StateDef], transitions: &[TransitionDef]) {
    let index: HashMap<&str, usize> = states.iter().enumerate().map(|(i, s)| (s.code.as_str(), i)).collect();

    // One (from, code) pair leads to one target only.
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, t) in transitions.iter().enumerate() {
        for (j, from) in t.from.iter().enumerate() {
            let path = if t.from.len() == 1 { format!("$.transitions[{i}].from") } else { format!("$.transitions[{i}].from[{j}]") };
            if let Some(&first) = seen.get(&(from.as_str(), t.code.as_str())) {
                let other = &transitions[first];
                let what = if other.to == t.to {
                    format!("transition {} from {from} is defined twice (first at $.transitions[{first}])", t.code)
                } else {
                    format!(
                        "ambiguous: transition {} from {from} leads to {} here and to {} at $.transitions[{first}]; one (from, code) pair must lead to one target",
                        t.code, t.to, other.to
                    )
                };
                c.error(path.clone(), what);
            } else {
                seen.insert((from.as_str(), t.code.as_str()), i);
            }
            let from_state = &states[index[from.as_str()]];
            if from_state.terminal && !t.kind.may_leave_terminal() {
                c.error(
                    path,
                    format!(
                        "state {from} is terminal: only reopen, correction or admin transitions may leave it ({} is kind {})",
                        t.code,
                        t.kind.as_str()
                    ),
                );
            }
        }
        if t.kind == Kind::Reopen && t.from.iter().any(|f| !states[index[f.as_str()]].terminal) {
            c.warning(format!("$.transitions[{i}].kind"), "kind reopen usually leaves a terminal state; this one leaves a non-terminal one");
        }
    }

    // Every non-terminal state has an outgoing transition.
    let mut has_outgoing = vec![false; states.len()];
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); states.len()];
    for t in transitions {
        let to = index[t.to.as_str()];
        for from in &t.from {
            let f = index[from.as_str()];
            has_outgoing[f] = true;
            edges[f].push(to);
        }
    }
    for (i, s) in states.iter().enumerate() {
        if !s.terminal && !has_outgoing[i] {
            c.error(
                format!("$.states[{i}]"),
                format!("state {} is a dead end: it is not terminal and no transition leaves it (mark it \"terminal\": true or add a transition from it)", s.code),
            );
        }
    }

    // Every state is reachable from the initial one.
    let Some(start) = states.iter().position(|s| s.initial) else { return };
    let mut reached = vec![false; states.len()];
    let mut queue = VecDeque::from([start]);
    reached[start] = true;
    while let Some(n) = queue.pop_front() {
        for &m in &edges[n] {
            if !reached[m] {
                reached[m] = true;
                queue.push_back(m);
            }
        }
    }
    for (i, s) in states.iter().enumerate() {
        if !reached[i] {
            c.error(
                format!("$.states[{i}]"),
                format!("state {} is unreachable from the initial state {}", s.code, states[start].code),
            );
        }
    }
}
