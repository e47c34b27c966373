//! Case creation: create_case, and the case row plus CREATE history row that every new
//! case and dimension starts with (state_version 0 in the machine's initial state).

use crate::commands::{self, PriorCommand};
use crate::door::{self, refuse_inside_guard, Grant, Op};
use crate::facts::database_identity_refusal;
use crate::fmgr::{text_datum, uuid_datum, uuid_string, Args, SmResult};
use crate::history::{self, CaseMove, Entry};
use crate::spi::{Spi, Stmt, BYTEA, INT4, JSONB, TEXT, TIMESTAMPTZ, UUID};
use crate::{machines, sql_function};
use pgrx::{pg_sys, IntoDatum};
use statemachine_core::definition::CREATE_CODE;
use statemachine_core::{CaseFacts, CompiledMachine, Refusal};

static INSERT_CASE: Stmt = Stmt {
    sql: "INSERT INTO statemachine.case_file AS c (id, machine, machine_version, machine_version_id, case_number, \
              current_state, state_version, state_entered_at, created_at, updated_at, metadata, root_case_id, history_head) \
          VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7, $7, COALESCE($8, '{}'::pg_catalog.jsonb), $9, $10) \
          ON CONFLICT DO NOTHING RETURNING ROW(c.*)::statemachine.case_file",
    args: &[UUID, TEXT, INT4, UUID, TEXT, TEXT, TIMESTAMPTZ, JSONB, UUID, BYTEA],
};
static EXISTING_CASE: Stmt = Stmt {
    sql: "SELECT c.id, c.machine, c.case_number FROM ONLY statemachine.case_file c \
          WHERE c.id OPERATOR(pg_catalog.=) $1 OR (c.machine OPERATOR(pg_catalog.=) $2 AND c.case_number OPERATOR(pg_catalog.=) $3) LIMIT 1",
    args: &[UUID, TEXT, TEXT],
};

/// A distributed installation has no unique key on (machine, case_number): it cannot
/// contain the case id its tables are sharded by. Creations of one number are serialized
/// on the node that runs them (the coordinator: a lock on the number's hash) and the number
/// is looked up across the shards under that lock; a creation writes one shard, which
/// commits before the lock is released, so the next one sees it.
fn number_taken(spi: &Spi, new: &NewCase<'_>) -> bool {
    let number = text_datum(new.case_number);
    let machine = text_datum(&new.machine.machine);
    spi.run(&LOCK_NUMBER, &[Some(machine), Some(number)], 1);
    !spi.run(&EXISTING_CASE, &[Some(uuid_datum(&new.case_id)), Some(machine), Some(number)], 1).is_empty()
}
static LOCK_NUMBER: Stmt = Stmt {
    sql: "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1 OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) $2, 5723))",
    args: &[TEXT, TEXT],
};

/// A case row to create: a case, or (with `root`) a dimension of one.
pub struct NewCase<'a> {
    pub case_id: [u8; 16],
    pub machine: &'a CompiledMachine,
    pub version_id: [u8; 16],
    pub case_number: &'a str,
    pub metadata: Option<pg_sys::Datum>,
    pub root: Option<pg_sys::Datum>,
}

/// Inserts the case row in its machine's initial state and its CREATE history row.
/// `Ok(None)`: the case id or number exists (the caller tells a replay from a clash).
pub fn insert_case(
    spi: &Spi,
    new: &NewCase<'_>,
    actor_d: pg_sys::Datum,
    role: &str,
    command_d: pg_sys::Datum,
    now: pg_sys::TimestampTz,
    requested: &str,
) -> SmResult<Option<pg_sys::Datum>> {
    let machine = new.machine;
    let case_d = uuid_datum(&new.case_id);
    // The caller tells a replay from a clash by the command id and the number.
    if crate::remote_door::distributed() && (number_taken(spi, new) || commands::claim(spi, command_d).is_some()) {
        return Ok(None);
    }
    // The CREATE row moves nothing (CaseMove::Stay): no UPDATE of case_file.
    const WRITES: &[Grant] = &[("case_file", Op::Insert), ("case_state_transition", Op::Insert)];
    let _door = door::open(WRITES);
    let entry = Entry {
        id: history::row_id(now),
        case: case_d,
        machine: &machine.machine,
        from_state: None,
        to_state: text_datum(&machine.initial),
        code: text_datum(CREATE_CODE),
        kind: "create",
        state_version: 0,
        actor: actor_d,
        role: text_datum(role),
        reason_code: None,
        reason_text: None,
        policy_version: machine.version,
        occurred_at: now,
        command: command_d,
        correlation: None,
        causation: None,
        metadata: None,
        prev_hash: statemachine_core::seal::GENESIS,
        links: Vec::new(),
        guards: Vec::new(),
        correction: None,
    };
    // Sealed first: the case row carries the CREATE row's hash as its history_head.
    let seal = history::seal(&entry);
    let inserted = spi.run(
        &INSERT_CASE,
        &[
            Some(case_d),
            Some(text_datum(&machine.machine)),
            Some(pg_sys::Datum::from(machine.version)),
            Some(uuid_datum(&new.version_id)),
            Some(text_datum(new.case_number)),
            Some(text_datum(&machine.initial)),
            Some(pg_sys::Datum::from(now)),
            new.metadata,
            new.root,
            seal.hash.to_vec().into_datum(),
        ],
        1,
    );
    let Some(case_row) = inserted.get(0, 1) else { return Ok(None) };
    let case_row = spi.keep(case_row);
    if history::append_sealed(spi, &entry, &seal, CaseMove::Stay).is_none() {
        return Err(match commands::find(spi, command_d) {
            Some(p) => commands::conflict(&p, requested.to_owned()),
            None => Refusal::CommandInFlight.report(&CaseFacts::default()),
        });
    }
    Ok(Some(case_row))
}

fn create_case(a: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("create_case")?;
    let machine_name = a.text(0, "machine")?;
    let case_number = a.text(1, "case_number")?;
    let actor_d = a.required(2, "actor_id")?;
    let role = a.text(3, "actor_role")?;
    let command_d = a.required(4, "command_id")?;
    let given_id = a.opt_uuid(5);

    let spi = Spi::connect();
    let latest = spi.run(&machines::LATEST_VERSION, &[Some(text_datum(&machine_name))], 1);
    let Some(version_id) = latest.uuid(0, 1) else {
        return Err(Refusal::UnknownMachine { machine: machine_name, version: None }.report(&CaseFacts::default()));
    };
    let machine = machines::get(&spi, &version_id);
    let now = history::now();
    let case_id = given_id.unwrap_or_else(|| history::row_id(now));
    let requested = format!("CREATE of case number {case_number} (machine {machine_name})");
    let same_create = |p: &PriorCommand| {
        p.code == CREATE_CODE && p.machine == machine_name && p.case_number == case_number && given_id.is_none_or(|id| id == p.case_id)
    };
    // SAFETY: actor_id is declared uuid and was required non-NULL above.
    let actor = unsafe { crate::fmgr::uuid_from_datum(actor_d) };
    if let Some(refusal) = database_identity_refusal(&spi, &machine, Some(&role), &actor, CREATE_CODE) {
        // A replay of a create that once succeeded still returns its case.
        if let Some(p) = commands::find(&spi, command_d).filter(|p| same_create(p)) {
            return Ok(spi.keep(p.case_row));
        }
        return Err(refusal.report(&CaseFacts { case_id: uuid_string(&case_id), current_state: String::new() }));
    }

    let new_case = NewCase { case_id, machine: &machine, version_id, case_number: &case_number, metadata: a.datum(6), root: None };
    if let Some(row) = insert_case(&spi, &new_case, actor_d, &role, command_d, now, &requested)? {
        return Ok(row);
    }
    // The case id or number exists: a replay of this very command, or a clash.
    if let Some(p) = commands::find(&spi, command_d) {
        return if same_create(&p) { Ok(spi.keep(p.case_row)) } else { Err(commands::conflict(&p, requested)) };
    }
    let e = spi.run(&EXISTING_CASE, &[Some(uuid_datum(&case_id)), Some(text_datum(&machine_name)), Some(text_datum(&case_number))], 1);
    let detail = match e.uuid(0, 1) {
        Some(id) if id == case_id => format!("A case with id {} already exists.", uuid_string(&id)),
        _ => format!("Machine {machine_name} already has a case numbered {case_number}."),
    };
    Err(Refusal::CaseExists { detail }.report(&CaseFacts::default()))
}

sql_function!(sm_create_case, pg_finfo_sm_create_case, create_case);
