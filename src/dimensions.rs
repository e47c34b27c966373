//! Dimensions (seed 003 §11, §21): a case's other independent state machines, each a
//! linked `case_file` row (root_case_id) with its own history. attach_dimension adds
//! one; transition_case finds one by code or by name; cross-dimension invariants are
//! checked under the root case's lock (root first is the rule for everything that reads
//! more than one member, so callers cannot deadlock each other).

use crate::commands;
use crate::creation::{insert_case, NewCase};
use crate::facts::database_identity_refusal;
use crate::door::{self, refuse_inside_guard, Grant, Op};
use crate::fmgr::{text_datum, uuid_datum, uuid_string, Args, SmResult};
use crate::spi::{Spi, Stmt, TEXT, TIMESTAMPTZ, UUID};
use crate::{case_file, history, machines, sql_function};
use pgrx::pg_sys;
use statemachine_core::{check_invariants, CaseFacts, CompiledMachine, Refusal, Sibling};
use std::rc::Rc;

/// A dimension of a case, by machine name (the case itself when it runs that machine).
static DIMENSION_BY_NAME: Stmt = Stmt {
    sql: "SELECT c.id FROM ONLY statemachine.case_file c \
          WHERE (c.id OPERATOR(pg_catalog.=) $1 OR c.root_case_id OPERATOR(pg_catalog.=) $1) AND c.machine OPERATOR(pg_catalog.=) $2",
    args: &[UUID, TEXT],
};
/// The other members of a case's family (the case and its dimensions), but one.
static FAMILY: Stmt = Stmt {
    sql: "SELECT c.id, c.machine_version_id, c.current_state FROM ONLY statemachine.case_file c \
          WHERE (c.id OPERATOR(pg_catalog.=) $1 OR c.root_case_id OPERATOR(pg_catalog.=) $1) AND c.id OPERATOR(pg_catalog.<>) $2",
    args: &[UUID, UUID],
};
static LOCK_FOR_ATTACH: Stmt = Stmt {
    sql: "SELECT c.root_case_id, c.case_number, c.machine FROM ONLY statemachine.case_file c \
          WHERE c.id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
    args: &[UUID],
};
static ADD_DIMENSION: Stmt = Stmt {
    sql: "UPDATE ONLY statemachine.case_file SET dimensions = pg_catalog.array_append(dimensions, $2), \
              updated_at = GREATEST(updated_at, $3) WHERE id OPERATOR(pg_catalog.=) $1",
    args: &[UUID, TEXT, TIMESTAMPTZ],
};

/// The id of case `case_d`'s dimension running `machine` (the case itself if it runs it).
pub fn by_name(spi: &Spi, case_d: pg_sys::Datum, machine: &str) -> Option<[u8; 16]> {
    spi.run(&DIMENSION_BY_NAME, &[Some(case_d), Some(text_datum(machine))], 1).uuid(0, 1)
}

/// The family of `root_d` (the case and its dimensions) but `except_d`: each member's id,
/// compiled machine and state.
pub fn family(spi: &Spi, root_d: pg_sys::Datum, except_d: pg_sys::Datum) -> Vec<([u8; 16], Rc<CompiledMachine>, String)> {
    let rows = spi.run(&FAMILY, &[Some(root_d), Some(except_d)], 0);
    // Copied out first: loading a machine into the cache runs statements of its own.
    let rows: Vec<([u8; 16], [u8; 16], String)> =
        (0..rows.count).filter_map(|i| Some((rows.uuid(i, 1)?, rows.uuid(i, 2)?, rows.text(i, 3)?))).collect();
    rows.into_iter().map(|(id, version, state)| (id, machines::get(spi, &version), state)).collect()
}

/// Cross-dimension invariants (seed 003 §21) for a member of a case family moving to
/// `to`: locks the family's root (a dimension's own lock is already held), then reads
/// the other members' states.
pub fn family_allows(
    spi: &Spi,
    case_d: pg_sys::Datum,
    root_id: Option<[u8; 16]>,
    machine: &CompiledMachine,
    to: &str,
) -> Result<(), String> {
    let root_d = match root_id {
        Some(root) => {
            let root_d = uuid_datum(&root);
            case_file::lock(spi, root_d);
            root_d
        }
        None => case_d,
    };
    let members = family(spi, root_d, case_d);
    let siblings: Vec<Sibling<'_>> = members.iter().map(|(_, m, state)| Sibling { machine: m, state }).collect();
    check_invariants(machine, to, &siblings)
}

fn attach_dimension(a: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("attach_dimension")?;
    let case_d = a.required(0, "case_id")?;
    let machine_name = a.text(1, "machine")?;
    let actor_d = a.required(2, "actor_id")?;
    let role = a.text(3, "actor_role")?;
    let command_d = a.required(4, "command_id")?;
    let root_text = uuid_string(&a.uuid(0, "case_id")?);
    let plain = |r: Refusal| r.report(&CaseFacts::default());

    let spi = Spi::connect();
    let root = spi.run(&LOCK_FOR_ATTACH, &[Some(case_d)], 1);
    let (Some(number), Some(root_machine)) = (root.text(0, 2), root.text(0, 3)) else {
        return Err(plain(Refusal::UnknownCase { case_id: root_text }));
    };
    if let Some(parent) = root.uuid(0, 1) {
        let problem = format!("{root_text} is itself a dimension of case {}; attach dimensions to that case", uuid_string(&parent));
        return Err(plain(Refusal::InvalidArgument { name: "case_id".into(), problem }));
    }
    let requested = format!("attach dimension {machine_name} to case {root_text}");
    let existing = by_name(&spi, case_d, &machine_name);
    if let Some(p) = commands::find(&spi, command_d) {
        return if p.code == "CREATE" && existing == Some(p.case_id) {
            Ok(spi.keep(p.case_row))
        } else {
            Err(commands::conflict(&p, requested))
        };
    }
    if existing.is_some() || machine_name == root_machine {
        return Err(plain(Refusal::CaseExists { detail: format!("Case {root_text} already has dimension {machine_name}.") }));
    }
    let latest = spi.run(&machines::LATEST_VERSION, &[Some(text_datum(&machine_name))], 1);
    let Some(version_id) = latest.uuid(0, 1) else {
        return Err(plain(Refusal::UnknownMachine { machine: machine_name, version: None }));
    };
    let machine = machines::get(&spi, &version_id);
    let actor = a.uuid(2, "actor_id")?;
    if let Some(refusal) = database_identity_refusal(&spi, &machine, Some(&role), &actor, "CREATE") {
        return Err(refusal.report(&CaseFacts { case_id: root_text, current_state: String::new() }));
    }
    // The family as it is: the case and its dimensions.
    let members = family(&spi, case_d, uuid_datum(&[0; 16]));
    // transition_case finds a dimension by code, so codes must not be shared.
    for (_, m, _) in &members {
        let mut shared: Vec<&str> = machine.codes().filter(|c| m.has_code(c)).collect();
        if !shared.is_empty() {
            shared.sort_unstable();
            let problem = format!(
                "{machine_name} shares transition code{} {} with dimension {}; transition_case could not tell them apart",
                if shared.len() == 1 { "" } else { "s" },
                shared.join(", "),
                m.machine
            );
            return Err(plain(Refusal::InvalidArgument { name: "machine".into(), problem }));
        }
    }
    let siblings: Vec<Sibling<'_>> = members.iter().map(|(_, m, state)| Sibling { machine: m, state }).collect();
    if let Err(reason) = check_invariants(&machine, &machine.initial, &siblings) {
        let facts = CaseFacts { case_id: root_text, current_state: String::new() };
        return Err(Refusal::GuardFailed { code: "CREATE".into(), guard: "dimension_invariant".into(), reason }.report(&facts));
    }

    let now = history::now();
    let case_number = format!("{number}/{machine_name}");
    // A fresh id, not one derived from the case and machine: a derived id could be taken
    // first by create_case(case_id => …) and make attach_dimension fail forever.
    let dimension_id = history::row_id(now);
    let new_case =
        NewCase { case_id: dimension_id, machine: &machine, version_id, case_number: &case_number, metadata: None, root: Some(case_d) };
    let Some(row) = insert_case(&spi, &new_case, actor_d, &role, command_d, now, &requested)? else {
        let detail = format!("Machine {machine_name} already has a case numbered {case_number}.");
        return Err(plain(Refusal::CaseExists { detail }));
    };
    const WRITES: &[Grant] = &[("case_file", Op::Update)];
    let _door = door::open(WRITES);
    spi.run(&ADD_DIMENSION, &[Some(case_d), Some(text_datum(&machine_name)), Some(pg_sys::Datum::from(now))], 0);
    Ok(row)
}

sql_function!(sm_attach_dimension, pg_finfo_sm_attach_dimension, attach_dimension);
