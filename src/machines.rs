//! Per-backend cache of compiled machine versions.
//!
//! Published versions are immutable, so an entry never goes stale. It is keyed by the
//! version's `id`, a random uuid drawn when the version is published: a definition
//! whose transaction rolled back, or one from a dropped and re-created extension, has
//! an id no live case can ever carry, so it can never be served for one.

use crate::spi::{Spi, Stmt, TEXT, UUID};
use statemachine_core::rules::{Rule, StateRow};
use statemachine_core::{CompiledMachine, Kind};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

thread_local! {
    static CACHE: RefCell<HashMap<[u8; 16], Rc<CompiledMachine>>> = RefCell::new(HashMap::new());
}

static VERSION_ROW: Stmt = Stmt {
    sql: "SELECT v.machine, v.version FROM statemachine.machine_version v WHERE v.id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};
static STATE_ROWS: Stmt = Stmt {
    sql: "SELECT s.code, s.is_initial, s.is_terminal, s.sort_order FROM statemachine.state s \
          WHERE s.machine_version_id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};
static RULE_ROWS: Stmt = Stmt {
    sql: "SELECT r.transition_code, r.from_state, r.to_state, r.requires_reason, r.requires_evidence, \
                 r.min_time_in_state, r.kind \
          FROM statemachine.transition_rule r WHERE r.machine_version_id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};
static ROLE_ROWS: Stmt = Stmt {
    sql: "SELECT rr.from_state, rr.transition_code, rr.role_code FROM statemachine.transition_rule_role rr \
          WHERE rr.machine_version_id OPERATOR(pg_catalog.=) $1 ORDER BY rr.role_code",
    args: &[UUID],
};
/// Latest active version of a machine, with the id that keys the cache.
pub static LATEST_VERSION: Stmt = Stmt {
    sql: "SELECT v.id, v.version FROM statemachine.machine_version v \
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
            requires_evidence: r.bool(i, 5).unwrap_or(false),
            min_time_in_state: r.interval(i, 6),
            kind: r.text(i, 7).and_then(|k| Kind::parse(&k)).unwrap_or(Kind::Normal),
        })
        .collect();
    let roles = spi.run(&ROLE_ROWS, &[idd], 0);
    let mut by_rule: HashMap<(String, String), Vec<String>> = HashMap::new();
    for i in 0..roles.count {
        if let (Some(f), Some(c), Some(role)) = (roles.text(i, 1), roles.text(i, 2), roles.text(i, 3)) {
            by_rule.entry((f, c)).or_default().push(role);
        }
    }
    for rule in &mut rules {
        if let Some(rs) = by_rule.remove(&(rule.from.clone(), rule.code.clone())) {
            rule.roles = rs;
        }
    }
    CompiledMachine::from_rows(machine, version, states, rules)
        .unwrap_or_else(|e| panic!("published machine version is inconsistent: {e}"))
}

