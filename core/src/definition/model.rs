//! The definition model: the typed form of a published machine (states, transitions,
//! guards, reasons, invariants), the validation findings (`Severity`, `Problem`) and the
//! limits and reserved codes the parser enforces.

use crate::interval::Interval;
use serde_json::{Map, Value};
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
pub const RESERVED_CHECK_NAMES: [&str; 5] = ["rule", "role", "reason", "evidence", "after"];

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
    /// The roles that may call assign_case/release_assignment on the machine's cases
    /// (empty: any caller with EXECUTE, as before 0.3.0).
    pub assign_roles: Vec<String>,
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
}
