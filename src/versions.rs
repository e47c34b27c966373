//! Versions over time (seed 003 §19-20): migrate_cases moves cases between published
//! versions of a machine by an explicit state map; retire_version stops a version from
//! taking new cases. Both are part of the write path: the only state changes they can
//! make are the ones a published map between two published versions describes.

use crate::door::{self, refuse_inside_guard, Grant, Op};
use crate::fmgr::{jsonb_text, text_datum, uuid_datum, uuid_string, Args, SmResult};
use crate::history::{self, CaseMove, Entry};
use crate::spi::{Spi, Stmt, INT4, TEXT, UUID, UUID_ARRAY};
use crate::srf::{return_rows, Cell};
use crate::facts::database_identity_refusal;
use crate::sql_function;
use pgrx::{pg_sys, IntoDatum};
use statemachine_core::seal::GENESIS;
use statemachine_core::migration::{parse_state_map, Outcome, MIGRATE_CODE};
use statemachine_core::{CaseFacts, Refusal};

static VERSION_BY_NUMBER: Stmt = Stmt {
    sql: "SELECT v.id, v.status FROM ONLY statemachine.machine_version v \
          WHERE v.machine OPERATOR(pg_catalog.=) $1 AND v.version OPERATOR(pg_catalog.=) $2",
    args: &[TEXT, INT4],
};
static STATE_CODES: Stmt = Stmt {
    sql: "SELECT s.code FROM ONLY statemachine.state s WHERE s.machine_version_id OPERATOR(pg_catalog.=) $1 ORDER BY s.sort_order",
    args: &[UUID],
};
static CASES_OF_VERSION: Stmt = Stmt {
    sql: "SELECT c.id, c.case_number, c.current_state, c.state_version, c.state_entered_at, c.updated_at, \
                 c.history_head \
          FROM ONLY statemachine.case_file c WHERE c.machine_version_id OPERATOR(pg_catalog.=) $1 ORDER BY c.id",
    args: &[UUID],
};
/// The same, locked: a real migration holds its cases until it commits.
static LOCK_CASES_OF_VERSION: Stmt = Stmt {
    sql: "SELECT c.id, c.case_number, c.current_state, c.state_version, c.state_entered_at, c.updated_at, \
                 c.history_head \
          FROM ONLY statemachine.case_file c WHERE c.machine_version_id OPERATOR(pg_catalog.=) $1 ORDER BY c.id FOR UPDATE",
    args: &[UUID],
};
/// The same for the given cases of one shard (distributed installations).
static LOCK_CASES_BY_ID: Stmt = Stmt {
    sql: "SELECT c.id, c.case_number, c.current_state, c.state_version, c.state_entered_at, c.updated_at, \
                 c.history_head \
          FROM ONLY statemachine.case_file c WHERE c.id OPERATOR(pg_catalog.=) ANY ($2) \
           AND c.machine_version_id OPERATOR(pg_catalog.=) $1 ORDER BY c.id FOR UPDATE",
    args: &[UUID, UUID_ARRAY],
};
/// One command id per case of a migration, derived from the migration's and keyed with
/// the installation's secret (statemachine.derived_id): a re-run cannot double up, and no
/// caller can spend the id first.
static DERIVED_ID: Stmt = Stmt {
    sql: "SELECT statemachine.derived_id('migrate', $1, $2)",
    args: &[TEXT, TEXT],
};
static CASE_COUNT: Stmt = Stmt {
    sql: "SELECT count(*) FROM ONLY statemachine.case_file c WHERE c.machine_version_id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};
static RETIRE: Stmt = Stmt {
    sql: "UPDATE ONLY statemachine.machine_version v SET status = 'retired' WHERE v.id OPERATOR(pg_catalog.=) $1 RETURNING v",
    args: &[UUID],
};
static VERSION_ROW: Stmt = Stmt {
    sql: "SELECT v FROM ONLY statemachine.machine_version v WHERE v.id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};
/// A case of the version being migrated: id, number, state, version, entered, updated, last hash.
type CaseToMigrate = ([u8; 16], String, String, i64, i64, i64, [u8; 32]);

fn refuse(r: Refusal) -> statemachine_core::Report {
    r.report(&CaseFacts::default())
}

/// A published version's id and status; SM009 if there is none.
pub(crate) fn version(spi: &Spi, machine: &str, number: i32) -> SmResult<([u8; 16], String)> {
    let v = spi.run(&VERSION_BY_NUMBER, &[Some(text_datum(machine)), Some(pg_sys::Datum::from(number))], 1);
    match (v.uuid(0, 1), v.text(0, 2)) {
        (Some(id), Some(status)) => Ok((id, status)),
        _ => Err(refuse(Refusal::UnknownMachine { machine: machine.into(), version: Some(number) })),
    }
}

fn states(spi: &Spi, version_id: &[u8; 16]) -> Vec<String> {
    let r = spi.run(&STATE_CODES, &[Some(uuid_datum(version_id))], 0);
    (0..r.count).filter_map(|i| r.text(i, 1)).collect()
}

fn migrate_cases(a: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("migrate_cases")?;
    crate::remote_door::one_connection_per_node();
    let machine = a.text(0, "machine")?;
    let from = a.opt_i32(1).ok_or_else(|| refuse(Refusal::NullArgument { name: "from_version".into() }))?;
    let to = a.opt_i32(2).ok_or_else(|| refuse(Refusal::NullArgument { name: "to_version".into() }))?;
    let map_text = jsonb_text(a, 3, "state_map")?;
    let actor_d = a.required(4, "actor_id")?;
    let role = a.text(5, "actor_role")?;
    let command_id = a.uuid(6, "command_id")?;
    let dry_run = a.opt_bool(7).unwrap_or(true);
    if from == to {
        return Err(refuse(Refusal::InvalidArgument { name: "to_version".into(), problem: format!("it is from_version ({from})") }));
    }
    let map_json: serde_json::Value = serde_json::from_str(&map_text).unwrap_or(serde_json::Value::Null);

    let rows: Vec<Vec<Cell>> = {
        let spi = Spi::connect();
        spi.run(&crate::definitions::LOCK_MACHINE, &[Some(text_datum(&machine))], 1);
        let (from_id, _) = version(&spi, &machine, from)?;
        let (to_id, to_status) = version(&spi, &machine, to)?;
        if to_status != "active" {
            return Err(refuse(Refusal::VersionRetired { machine, version: to }));
        }
        // Under role_source database the migrating role is a database role of the session user.
        let actor = a.uuid(4, "actor_id")?;
        if let Some(refusal) = database_identity_refusal(&spi, &crate::machines::get(&spi, &to_id), Some(&role), &actor, MIGRATE_CODE) {
            return Err(refuse(refusal));
        }
        let map = parse_state_map(&map_json, &states(&spi, &from_id), &states(&spi, &to_id))
            .map_err(|problems| refuse(Refusal::InvalidStateMap { problems }))?;
        // Copied out: the writes below run further statements.
        let copy = |cases: &crate::spi::Rows<'_>| -> Vec<CaseToMigrate> {
            (0..cases.count)
                .filter_map(|i| {
                    let prev = cases.bytes(i, 7).and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok()).unwrap_or(GENESIS);
                    Some((cases.uuid(i, 1)?, cases.text(i, 2)?, cases.text(i, 3)?, cases.i64(i, 4)?, cases.i64(i, 5)?, cases.i64(i, 6)?, prev))
                })
                .collect()
        };
        let cases: Vec<CaseToMigrate> = if dry_run {
            copy(&spi.run(&CASES_OF_VERSION, &[Some(uuid_datum(&from_id))], 0))
        } else if crate::remote_door::distributed() {
            // Citus locks rows one shard at a time (shards.rs): the cases are found, then
            // each shard's share is locked and read again.
            let found = spi.run(&CASES_OF_VERSION, &[Some(uuid_datum(&from_id))], 0);
            let ids: Vec<[u8; 16]> = (0..found.count).filter_map(|i| found.uuid(i, 1)).collect();
            let mut locked = Vec::with_capacity(ids.len());
            for group in crate::shards::by_shard(&spi, ids, |id| *id) {
                let group: Vec<pgrx::Uuid> = group.into_iter().map(pgrx::Uuid::from_bytes).collect();
                locked.extend(copy(&spi.run(&LOCK_CASES_BY_ID, &[Some(uuid_datum(&from_id)), group.into_datum()], 0)));
            }
            locked.sort_by_key(|c| c.0);
            locked
        } else {
            copy(&spi.run(&LOCK_CASES_OF_VERSION, &[Some(uuid_datum(&from_id))], 0))
        };
        let mut rows = Vec::with_capacity(cases.len());
        for (case_id, number, state, version, entered_at, updated_at, prev_hash) in cases {
            let outcome = map.outcome(&state);
            let detail = match &outcome {
                Outcome::Migrate { reason, .. } => reason.map(str::to_owned),
                Outcome::ManualReview { reason } => {
                    Some(reason.map_or("flagged for manual review".to_owned(), |r| format!("flagged for manual review: {r}")))
                }
                Outcome::Unmapped => Some(format!("state_map has no mapping for {state}")),
            };
            let to_state = match &outcome {
                Outcome::Migrate { to, .. } => Some(to.to_string()),
                _ => None,
            };
            if let (Outcome::Migrate { to: target, reason }, false) = (&outcome, dry_run) {
                let now = history::case_clock(updated_at, &case_id)?;
                let metadata = serde_json::json!({"migration": {
                    "from_version": from, "to_version": to, "from_state": state, "to_state": target,
                    "reason": reason, "migration_command_id": uuid_string(&command_id),
                }});
                // One command id per case, derived from the migration's: a re-run cannot double up.
                let case_command = spi
                    .run(&DERIVED_ID, &[Some(text_datum(&uuid_string(&command_id))), Some(text_datum(&uuid_string(&case_id)))], 1)
                    .uuid(0, 1)
                    .unwrap_or_else(|| history::row_id(now));
                let entry = Entry {
                    id: history::row_id(now),
                    case: uuid_datum(&case_id),
                    machine: &machine,
                    from_state: Some(text_datum(&state)),
                    to_state: text_datum(target),
                    code: text_datum(MIGRATE_CODE),
                    kind: "migration",
                    state_version: version + 1,
                    actor: actor_d,
                    role: text_datum(&role),
                    reason_code: None,
                    reason_text: reason.map(text_datum),
                    policy_version: to,
                    occurred_at: now,
                    command: uuid_datum(&case_command),
                    correlation: None,
                    causation: None,
                    metadata: Some(crate::fmgr::jsonb_datum(&metadata.to_string())),
                    prev_hash,
                    links: Vec::new(),
                    guards: Vec::new(),
                    correction: None,
                };
                let entered_at = if *target != state { now } else { entered_at };
                let _door = door::open(&history::APPEND_WRITES);
                if history::append(&spi, &entry, CaseMove::To { entered_at, version_id: Some(to_id) }).is_none() {
                    return Err(refuse(Refusal::CommandInFlight));
                }
            }
            rows.push(vec![
                Cell::Uuid(case_id),
                Cell::Text(Some(number)),
                Cell::Text(Some(state)),
                Cell::Text(to_state),
                Cell::Text(Some(outcome.label(dry_run).to_owned())),
                Cell::Text(detail),
            ]);
        }
        rows
    };
    // SAFETY: migrate_cases is declared RETURNS TABLE(case_id uuid, case_number text,
    // from_state text, to_state text, outcome text, detail text), the cells' types in order.
    unsafe { return_rows(a, &rows) };
    Ok(pg_sys::Datum::from(0usize))
}

fn retire_version(a: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("retire_version")?;
    crate::remote_door::one_connection_per_node();
    let machine = a.text(0, "machine")?;
    let number = a.opt_i32(1).ok_or_else(|| refuse(Refusal::NullArgument { name: "version".into() }))?;
    let spi = Spi::connect();
    spi.run(&crate::definitions::LOCK_MACHINE, &[Some(text_datum(&machine))], 1);
    let (id, status) = version(&spi, &machine, number)?;
    let idd = Some(uuid_datum(&id));
    if status == "retired" {
        let row = spi.run(&VERSION_ROW, &[idd], 1).get(0, 1);
        return row.map(|d| spi.keep(d)).ok_or_else(|| refuse(Refusal::UnknownMachine { machine, version: Some(number) }));
    }
    let pinned = spi.run(&CASE_COUNT, &[idd], 1).i64(0, 1).unwrap_or(0);
    if pinned > 0 {
        return Err(refuse(Refusal::VersionInUse {
            machine,
            version: number,
            why: format!("still has {pinned} case{} pinned to it", if pinned == 1 { "" } else { "s" }),
        }));
    }
    const WRITES: &[Grant] = &[("machine_version", Op::Update)];
    let _door = door::open(WRITES);
    let row = spi.run(&RETIRE, &[idd], 1).get(0, 1);
    row.map(|d| spi.keep(d)).ok_or_else(|| refuse(Refusal::UnknownMachine { machine, version: Some(number) }))
}

sql_function!(sm_migrate_cases, pg_finfo_sm_migrate_cases, migrate_cases);
sql_function!(sm_retire_version, pg_finfo_sm_retire_version, retire_version);
