//! Per-backend cache of compiled machine versions.
//!
//! Published versions are immutable, so an entry never goes stale. It is keyed by the
//! version's `id`, a random uuid drawn when the version is published: a definition
//! whose transaction rolled back, or one from a dropped and re-created extension, has
//! an id no live case can ever carry, so it can never be served for one.

use crate::spi::{Spi, Stmt, TEXT, UUID};
use statemachine_core::rules::{Rule, StateRow};
use statemachine_core::{CompiledMachine, EvidenceRequirement, GuardDef, GuardSpec, Invariant, Kind, ReasonDef, RoleSource};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

thread_local! {
    static CACHE: RefCell<HashMap<[u8; 16], Rc<CompiledMachine>>> = RefCell::new(HashMap::new());
}

static VERSION_ROW: Stmt = Stmt {
    sql: "SELECT v.machine, v.version, v.role_source, pg_catalog.to_json(v.assign_roles)::pg_catalog.text \
          FROM ONLY statemachine.machine_version v WHERE v.id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};
static STATE_ROWS: Stmt = Stmt {
    sql: "SELECT s.code, s.is_initial, s.is_terminal, s.sort_order FROM ONLY statemachine.state s \
          WHERE s.machine_version_id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};
static RULE_ROWS: Stmt = Stmt {
    sql: "SELECT r.transition_code, r.from_state, r.to_state, r.requires_reason, r.requires_evidence, \
                 pg_catalog.to_json(r.evidence_types)::pg_catalog.text, r.audit_guards, r.kind, r.emit_event, r.fire_after \
          FROM ONLY statemachine.transition_rule r WHERE r.machine_version_id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};
static REASON_ROWS: Stmt = Stmt {
    sql: "SELECT r.from_state, r.transition_code, r.reason_code, r.label FROM ONLY statemachine.transition_reason r \
          WHERE r.machine_version_id OPERATOR(pg_catalog.=) $1 ORDER BY r.sort_order",
    args: &[UUID],
};
static INVARIANT_ROWS: Stmt = Stmt {
    sql: "SELECT i.when_state, i.dimension, pg_catalog.to_json(i.allowed_states)::pg_catalog.text \
          FROM ONLY statemachine.state_invariant i WHERE i.machine_version_id OPERATOR(pg_catalog.=) $1 ORDER BY i.position",
    args: &[UUID],
};
static GUARD_ROWS: Stmt = Stmt {
    sql: "SELECT g.from_state, g.transition_code, g.guard_code, g.guard_kind, g.min_time_in_state, g.other_transition, \
                 g.assignment_role, g.guard_name, g.params::pg_catalog.text \
          FROM ONLY statemachine.transition_guard g WHERE g.machine_version_id OPERATOR(pg_catalog.=) $1 ORDER BY g.position",
    args: &[UUID],
};
static ROLE_ROWS: Stmt = Stmt {
    sql: "SELECT rr.from_state, rr.transition_code, rr.role_code FROM ONLY statemachine.transition_rule_role rr \
          WHERE rr.machine_version_id OPERATOR(pg_catalog.=) $1 ORDER BY rr.role_code",
    args: &[UUID],
};
/// Latest active version of a machine, with the id that keys the cache.
pub static LATEST_VERSION: Stmt = Stmt {
    sql: "SELECT v.id, v.version FROM ONLY statemachine.machine_version v \
          WHERE v.machine OPERATOR(pg_catalog.=) $1 AND v.status OPERATOR(pg_catalog.=) 'active' \
          ORDER BY v.version DESC LIMIT 1",
    args: &[TEXT],
};

/// The compiled machine for version `id`, loaded from the definition tables on first use.
pub fn get(spi: &Spi, id: &[u8; 16]) -> Rc<CompiledMachine> {
    if let Some(m) = CACHE.with(|c| c.borrow().get(id).cloned()) {
        return m;
    }
    let m = Rc::new(load(spi, id));
    CACHE.with(|c| c.borrow_mut().insert(*id, Rc::clone(&m)));
    m
}

fn load(spi: &Spi, id: &[u8; 16]) -> CompiledMachine {
    let idd = Some(crate::fmgr::uuid_datum(id));
    let v = spi.run(&VERSION_ROW, &[idd], 1);
    // A case's version id is a foreign key: a missing row is corruption, not user error.
    let (machine, version) = match (v.text(0, 1), v.i32(0, 2)) {
        (Some(m), Some(n)) => (m, n),
        _ => panic!("machine version {} not found", crate::fmgr::uuid_string(id)),
    };
    let role_source = v.text(0, 3).and_then(|s| RoleSource::parse(&s)).unwrap_or_default();
    let assign_roles: Vec<String> = v.text(0, 4).and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default();
    let s = spi.run(&STATE_ROWS, &[idd], 0);
    let states: Vec<StateRow> = (0..s.count)
        .map(|i| StateRow {
            code: s.text(i, 1).unwrap_or_default(),
            initial: s.bool(i, 2).unwrap_or(false),
            terminal: s.bool(i, 3).unwrap_or(false),
            sort_order: s.i32(i, 4).unwrap_or(0),
        })
        .collect();
    let r = spi.run(&RULE_ROWS, &[idd], 0);
    let mut rules: Vec<Rule> = (0..r.count)
        .map(|i| Rule {
            code: r.text(i, 1).unwrap_or_default(),
            from: r.text(i, 2).unwrap_or_default(),
            to: r.text(i, 3).unwrap_or_default(),
            roles: Vec::new(),
            requires_reason: r.bool(i, 4).unwrap_or(false),
            evidence: match (r.bool(i, 5).unwrap_or(false), r.text(i, 6)) {
                (false, _) => EvidenceRequirement::None,
                (true, None) => EvidenceRequirement::Any,
                (true, Some(json)) => EvidenceRequirement::Types(serde_json::from_str(&json).unwrap_or_default()),
            },
            reasons: Vec::new(),
            guards: Vec::new(),
            audit_guards: r.bool(i, 7).unwrap_or(false),
            kind: r.text(i, 8).and_then(|k| Kind::parse(&k)).unwrap_or(Kind::Normal),
            emit: r.text(i, 9),
            after: r.interval(i, 10),
        })
        .collect();
    let roles = spi.run(&ROLE_ROWS, &[idd], 0);
    let mut by_rule: HashMap<(String, String), Vec<String>> = HashMap::new();
    for i in 0..roles.count {
        if let (Some(f), Some(c), Some(role)) = (roles.text(i, 1), roles.text(i, 2), roles.text(i, 3)) {
            by_rule.entry((f, c)).or_default().push(role);
        }
    }
    let reasons = spi.run(&REASON_ROWS, &[idd], 0);
    let mut reasons_by_rule: HashMap<(String, String), Vec<ReasonDef>> = HashMap::new();
    for i in 0..reasons.count {
        if let (Some(f), Some(c), Some(code), Some(label)) = (reasons.text(i, 1), reasons.text(i, 2), reasons.text(i, 3), reasons.text(i, 4)) {
            reasons_by_rule.entry((f, c)).or_default().push(ReasonDef { code, label });
        }
    }
    let g = spi.run(&GUARD_ROWS, &[idd], 0);
    let mut guards_by_rule: HashMap<(String, String), Vec<GuardDef>> = HashMap::new();
    for i in 0..g.count {
        let (Some(f), Some(c), Some(code), Some(kind)) = (g.text(i, 1), g.text(i, 2), g.text(i, 3), g.text(i, 4)) else { continue };
        // The table's CHECK guarantees each kind's argument column is set.
        let spec = match kind.as_str() {
            "min_time_in_state" => g.interval(i, 5).map(GuardSpec::MinTimeInState),
            "distinct_actor" => g.text(i, 6).map(|transition| GuardSpec::DistinctActor { transition }),
            "requires_assignment" => g.text(i, 7).map(|role| GuardSpec::RequiresAssignment { role }),
            "sql" => g.text(i, 8).map(|name| GuardSpec::Sql {
                name,
                params: g.text(i, 9).and_then(|p| serde_json::from_str(&p).ok()).unwrap_or_default(),
            }),
            _ => None,
        };
        let spec = spec.unwrap_or_else(|| panic!("guard {code} of {c} has no argument for kind {kind}"));
        guards_by_rule.entry((f, c)).or_default().push(GuardDef { code, spec });
    }
    for rule in &mut rules {
        let key = (rule.from.clone(), rule.code.clone());
        if let Some(rs) = by_rule.remove(&key) {
            rule.roles = rs;
        }
        if let Some(rs) = reasons_by_rule.remove(&key) {
            rule.reasons = rs;
        }
        if let Some(gs) = guards_by_rule.remove(&key) {
            rule.guards = gs;
        }
    }
    let inv = spi.run(&INVARIANT_ROWS, &[idd], 0);
    let invariants: Vec<Invariant> = (0..inv.count)
        .filter_map(|i| {
            Some(Invariant {
                when: inv.text(i, 1)?,
                dimension: inv.text(i, 2)?,
                allowed: serde_json::from_str(&inv.text(i, 3)?).ok()?,
            })
        })
        .collect();
    let mut compiled = CompiledMachine::from_rows(machine, version, role_source, states, rules)
        .unwrap_or_else(|e| panic!("published machine version is inconsistent: {e}"));
    compiled.invariants = invariants;
    compiled.assign_roles = assign_roles;
    compiled
}

