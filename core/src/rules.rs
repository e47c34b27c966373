//! The runtime form of one published machine version, and the transition decision.
//!
//! The extension loads a version's rows once per backend into a [`CompiledMachine`]
//! (published versions never change), so the hot path decides with hash lookups and
//! no SQL, no JSON.

use crate::definition::{EvidenceRequirement, GuardDef, Invariant, Kind, MachineDef, ReasonDef, RoleSource};
use crate::interval::Interval;
use crate::refusal::Refusal;
use std::collections::HashMap;

/// One row of the state table.
#[derive(Clone, Debug, PartialEq)]
pub struct StateRow {
    pub code: String,
    pub initial: bool,
    pub terminal: bool,
    pub sort_order: i32,
}

/// One row of the transition rule table (one per from-state), with its roles, reasons
/// and guards.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub code: String,
    pub from: String,
    pub to: String,
    pub roles: Vec<String>,
    pub requires_reason: bool,
    pub evidence: EvidenceRequirement,
    /// Allowed reason codes; empty: any reason.
    pub reasons: Vec<ReasonDef>,
    /// Guards in evaluation order (a `min_time_in_state` key is the first).
    pub guards: Vec<GuardDef>,
    pub audit_guards: bool,
    /// Outbox event type, if the transition emits one.
    pub emit: Option<String>,
    /// A timed transition: due once the case has been in `from` this long.
    pub after: Option<Interval>,
    pub kind: Kind,
}

impl Rule {
    pub fn role_permitted(&self, role: &str) -> bool {
        self.roles.is_empty() || self.roles.iter().any(|r| r == role)
    }
    pub fn requires_evidence(&self) -> bool {
        self.evidence.is_required()
    }
    /// Does judging this rule call a `sql` guard (user SQL, which may read anything)?
    pub fn runs_sql(&self) -> bool {
        self.guards.iter().any(|g| matches!(g.spec, crate::definition::GuardSpec::Sql { .. }))
    }
}

#[derive(Debug)]
struct StateEntry {
    terminal: bool,
    /// Rules leaving this state, ordered by code (the order hints list them in).
    rules: Vec<Rule>,
}

#[derive(Debug)]
pub struct CompiledMachine {
    pub machine: String,
    pub version: i32,
    pub role_source: RoleSource,
    /// Who may assign and release (machine key `assign_roles`; empty: anyone).
    pub assign_roles: Vec<String>,
    /// Cross-dimension invariants (empty for most machines).
    pub invariants: Vec<Invariant>,
    pub initial: String,
    /// The states in display order (sort_order, then code): diagrams list them so.
    state_rows: Vec<StateRow>,
    states: HashMap<String, StateEntry>,
    /// Every transition code of the version: tells "unknown code" (SM009) from
    /// "not legal from here" (SM001).
    codes: HashMap<String, Vec<String>>,
}

impl CompiledMachine {
    pub fn from_rows(
        machine: String,
        version: i32,
        role_source: RoleSource,
        mut states: Vec<StateRow>,
        mut rules: Vec<Rule>,
    ) -> Result<Self, String> {
        states.sort_by(|a, b| (a.sort_order, &a.code).cmp(&(b.sort_order, &b.code)));
        let initial = states
            .iter()
            .find(|s| s.initial)
            .map(|s| s.code.clone())
            .ok_or_else(|| format!("machine {machine} v{version} has no initial state"))?;
        let mut map: HashMap<String, StateEntry> =
            states.iter().map(|s| (s.code.clone(), StateEntry { terminal: s.terminal, rules: Vec::new() })).collect();
        let mut codes: HashMap<String, Vec<String>> = HashMap::new();
        rules.sort_by(|a, b| (&a.from, &a.code).cmp(&(&b.from, &b.code)));
        for r in rules {
            if !map.contains_key(&r.to) {
                return Err(format!("rule {} leads to unknown state {}", r.code, r.to));
            }
            codes.entry(r.code.clone()).or_default().push(r.from.clone());
            map.get_mut(&r.from)
                .ok_or_else(|| format!("rule {} leaves unknown state {}", r.code, r.from))?
                .rules
                .push(r);
        }
        Ok(CompiledMachine {
            machine,
            version,
            role_source,
            assign_roles: Vec::new(),
            invariants: Vec::new(),
            initial,
            state_rows: states,
            states: map,
            codes,
        })
    }

    pub fn from_definition(def: &MachineDef, version: i32) -> Self {
        let states = def
            .states
            .iter()
            .enumerate()
            .map(|(i, s)| StateRow {
                code: s.code.clone(),
                initial: s.initial,
                terminal: s.terminal,
                sort_order: def.effective_sort_order(i),
            })
            .collect();
        let rules = def
            .transitions
            .iter()
            .flat_map(|t| {
                t.from.iter().map(move |f| Rule {
                    code: t.code.clone(),
                    from: f.clone(),
                    to: t.to.clone(),
                    roles: t.roles.clone(),
                    requires_reason: t.requires_reason,
                    evidence: t.evidence.clone(),
                    reasons: t.reasons.clone(),
                    guards: t.all_guards(),
                    audit_guards: t.audit_guards,
                    emit: t.emit.clone(),
                    after: t.after,
                    kind: t.kind,
                })
            })
            .collect();
        // A validated definition always compiles.
        let mut m = CompiledMachine::from_rows(def.machine.clone(), version, def.role_source, states, rules)
            .unwrap_or_else(|e| unreachable!("validated definition failed to compile: {e}"));
        m.invariants = def.invariants.clone();
        m.assign_roles = def.assign_roles.clone();
        m
    }

    /// Whether this version defines transition `code` (from any state).
    /// Every rule, in (from, code) order, roles sorted: what two compilations of one
    /// version must agree on.
    fn rules_normalized(&self) -> Vec<Rule> {
        let mut rules: Vec<Rule> = self
            .states
            .values()
            .flat_map(|s| s.rules.iter().cloned())
            .map(|mut r| {
                r.roles.sort();
                r
            })
            .collect();
        rules.sort_by(|a, b| (&a.from, &a.code).cmp(&(&b.from, &b.code)));
        rules
    }

    /// Where the rules of `self` (say, loaded from the rule tables) differ from `other`'s
    /// (say, compiled from the published definition): the first difference, described.
    pub fn rules_differ(&self, other: &CompiledMachine) -> Option<String> {
        let (mine, theirs) = (self.rules_normalized(), other.rules_normalized());
        let describe = |r: &Rule| format!("{} from {} to {}", r.code, r.from, r.to);
        for r in &mine {
            match theirs.iter().find(|t| t.from == r.from && t.code == r.code) {
                None => return Some(format!("rule {} is not in the published definition", describe(r))),
                Some(t) if t != r => return Some(format!("rule {} differs from the published definition", describe(r))),
                Some(_) => {}
            }
        }
        theirs
            .iter()
            .find(|t| !mine.iter().any(|r| r.from == t.from && r.code == t.code))
            .map(|t| format!("rule {} of the published definition is missing", describe(t)))
    }

    pub fn has_code(&self, code: &str) -> bool {
        self.codes.contains_key(code)
    }

    /// Every transition code of this version.
    pub fn codes(&self) -> impl Iterator<Item = &str> {
        self.codes.keys().map(String::as_str)
    }

    pub fn is_terminal(&self, state: &str) -> bool {
        self.states.get(state).is_some_and(|s| s.terminal)
    }

    pub fn has_state(&self, state: &str) -> bool {
        self.states.contains_key(state)
    }

    /// Every state, in display order.
    pub fn states(&self) -> &[StateRow] {
        &self.state_rows
    }

    /// Every rule, grouped by from-state in display order, then by code.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.state_rows.iter().flat_map(|s| self.rules_from(&s.code))
    }

    /// Rules leaving `state`, ordered by transition code.
    pub fn rules_from(&self, state: &str) -> &[Rule] {
        self.states.get(state).map_or(&[], |s| s.rules.as_slice())
    }

    pub fn rule(&self, state: &str, code: &str) -> Option<&Rule> {
        self.rules_from(state).iter().find(|r| r.code == code)
    }

    /// Rules that may actually fire from `state`, by code. Validation already forbids
    /// normal/reversal exits from terminal states; filtering here keeps the runtime
    /// honest even if rows were ever hand-crafted.
    pub fn legal_rules<'m>(&'m self, state: &str) -> impl Iterator<Item = &'m Rule> + 'm {
        let terminal = self.is_terminal(state);
        self.rules_from(state).iter().filter(move |r| !terminal || r.kind.may_leave_terminal())
    }

    /// Rule lookup alone: SM009 for a code the version does not know, SM001 when the
    /// code exists but not from `current_state` (terminal states included).
    pub fn find_rule<'m>(&'m self, current_state: &str, code: &str) -> Result<&'m Rule, Refusal> {
        if let Some(rule) = self.legal_rules(current_state).find(|r| r.code == code) {
            return Ok(rule);
        }
        let legal = self.legal_from(current_state);
        match self.codes.get(code) {
            None => Err(Refusal::UnknownTransition {
                machine: self.machine.clone(),
                version: self.version,
                code: code.to_owned(),
                current_state: current_state.to_owned(),
                legal,
            }),
            Some(froms) => Err(Refusal::IllegalTransition {
                machine: self.machine.clone(),
                version: self.version,
                code: code.to_owned(),
                current_state: current_state.to_owned(),
                terminal: self.is_terminal(current_state),
                defined_from: froms.clone(),
                legal,
            }),
        }
    }

    /// transition_to: the rule that leads from `current_state` to `to_state` for `role`.
    /// One rule leads there: it (its role is checked with the others, SM006). Several:
    /// the one `role` may use; none of them, SM006 naming them all; more than one, SM001
    /// listing their codes. None leads there: SM001 with the states reachable.
    pub fn rule_to<'m>(&'m self, current_state: &str, to_state: &str, role: &str) -> Result<&'m Rule, Refusal> {
        let leading: Vec<&Rule> = self.legal_rules(current_state).filter(|r| r.to == to_state).collect();
        let usable: Vec<&Rule> = leading.iter().copied().filter(|r| r.role_permitted(role)).collect();
        match (leading.as_slice(), usable.as_slice()) {
            ([], _) => Err(Refusal::NoRuleToState {
                machine: self.machine.clone(),
                version: self.version,
                to_state: to_state.to_owned(),
                legal: self.legal_from(current_state),
            }),
            ([one], _) | (_, [one]) => Ok(one),
            (several, []) => {
                let mut allowed: Vec<String> = several.iter().flat_map(|r| r.roles.iter().cloned()).collect();
                allowed.sort();
                allowed.dedup();
                Err(Refusal::RoleNotPermitted {
                    code: several.iter().map(|r| r.code.as_str()).collect::<Vec<_>>().join(" / "),
                    from: current_state.to_owned(),
                    actor_role: role.to_owned(),
                    allowed,
                })
            }
            (_, several) => Err(Refusal::SeveralRulesToState {
                to_state: to_state.to_owned(),
                codes: several.iter().map(|r| r.code.clone()).collect(),
            }),
        }
    }

    /// `(code, to, kind)` of every transition legal from `state`, by code.
    pub fn legal_from(&self, state: &str) -> Vec<(String, String, Kind)> {
        self.legal_rules(state).map(|r| (r.code.clone(), r.to.clone(), r.kind)).collect()
    }
}

/// One other dimension of a case: its machine and current state.
#[derive(Clone, Copy, Debug)]
pub struct Sibling<'a> {
    pub machine: &'a CompiledMachine,
    pub state: &'a str,
}

/// Whether `machine` moving to `to` keeps every cross-dimension invariant of the case
/// (seed 003 §21), in both directions: this machine's own invariants for `to`, and the
/// other dimensions' invariants about this machine. `Err` says which one breaks.
pub fn check_invariants(machine: &CompiledMachine, to: &str, siblings: &[Sibling<'_>]) -> Result<(), String> {
    for inv in machine.invariants.iter().filter(|i| i.when == to) {
        match siblings.iter().find(|s| s.machine.machine == inv.dimension) {
            None => {
                return Err(format!(
                    "{} may be {} only while dimension {} is in {}, and the case has no {} dimension",
                    machine.machine,
                    to,
                    inv.dimension,
                    inv.allowed.join(", "),
                    inv.dimension
                ))
            }
            Some(s) if !inv.allowed.iter().any(|a| a == s.state) => {
                return Err(format!(
                    "{} may be {} only while {} is in {}; {} is {}",
                    machine.machine,
                    to,
                    inv.dimension,
                    inv.allowed.join(", "),
                    inv.dimension,
                    s.state
                ))
            }
            Some(_) => {}
        }
    }
    for s in siblings {
        for inv in s.machine.invariants.iter().filter(|i| i.dimension == machine.machine && i.when == s.state) {
            if !inv.allowed.iter().any(|a| a == to) {
                return Err(format!(
                    "{} is {}, which it may be only while {} is in {}; {} would move to {}",
                    s.machine.machine,
                    s.state,
                    machine.machine,
                    inv.allowed.join(", "),
                    machine.machine,
                    to
                ));
            }
        }
    }
    Ok(())
}
