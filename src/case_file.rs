//! The case row: the statements that lock, read and touch `case_file` for more than one
//! module, and require_case(). The row lock is what serializes everything that happens
//! to one case (seed 003 §7.1): transitions, assignment changes, dimension changes.

use crate::fmgr::{uuid_string, Args, SmResult};
use crate::spi::{Spi, Stmt, TIMESTAMPTZ, UUID};
use crate::sql_function;
use pgrx::pg_sys;
use statemachine_core::{CaseFacts, Refusal, Report};

/// The transition's view of its case, locked, with the hash of its latest history row —
/// kept on the case row itself, so that a transition that waited for the lock reads the
/// head its predecessor wrote (a subquery would see the snapshot from before the wait).
pub static LOCK_FOR_TRANSITION: Stmt = Stmt {
    sql: "SELECT c.current_state, c.state_version, c.state_entered_at, c.updated_at, c.machine_version_id, \
                 c.root_case_id, pg_catalog.cardinality(c.dimensions) OPERATOR(pg_catalog.>) 0, \
                 c.history_head \
          FROM ONLY statemachine.case_file c WHERE c.id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
    args: &[UUID],
};
static LOCK: Stmt = Stmt {
    sql: "SELECT 1 FROM ONLY statemachine.case_file c WHERE c.id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
    args: &[UUID],
};
static READ: Stmt = Stmt {
    sql: "SELECT c.current_state, c.state_entered_at, c.machine_version_id \
          FROM ONLY statemachine.case_file c WHERE c.id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};
/// A change of the case that is not a transition (an assignment): it updates the row,
/// not just locks it, so a REPEATABLE READ transition that waited for it fails with
/// 40001 instead of deciding on a snapshot that misses it.
static TOUCH: Stmt = Stmt {
    sql: "UPDATE ONLY statemachine.case_file SET updated_at = GREATEST(updated_at, $2) WHERE id OPERATOR(pg_catalog.=) $1",
    args: &[UUID, TIMESTAMPTZ],
};

/// SM009.
pub fn unknown(case_id: &[u8; 16]) -> Report {
    Refusal::UnknownCase { case_id: uuid_string(case_id) }.report(&CaseFacts::default())
}

/// Locks the case row; false if there is none.
pub fn lock(spi: &Spi, case_d: pg_sys::Datum) -> bool {
    !spi.run(&LOCK, &[Some(case_d)], 1).is_empty()
}

/// The previous row's hash from column `col` of row `row` of locked-case rows (GENESIS if unsealed).
pub fn prev_hash(rows: &crate::spi::Rows<'_>, row: usize, col: i32) -> [u8; 32] {
    rows.bytes(row, col).and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok()).unwrap_or(statemachine_core::seal::GENESIS)
}

/// Marks the case changed (see TOUCH); the door must be open.
pub fn touch(spi: &Spi, case_d: pg_sys::Datum, now: pg_sys::TimestampTz) {
    spi.run(&TOUCH, &[Some(case_d), Some(pg_sys::Datum::from(now))], 0);
}

/// The case's state, when it entered it, and its machine version; SM009 if unknown.
pub fn read(spi: &Spi, case_d: pg_sys::Datum, case_id: &[u8; 16]) -> SmResult<(String, pg_sys::TimestampTz, [u8; 16])> {
    let c = spi.run(&READ, &[Some(case_d)], 1);
    match (c.text(0, 1), c.i64(0, 2), c.uuid(0, 3)) {
        (Some(state), Some(entered_at), Some(version_id)) => Ok((state, entered_at, version_id)),
        _ => Err(unknown(case_id)),
    }
}

fn require_case(a: &Args) -> SmResult<pg_sys::Datum> {
    let case_d = a.required(0, "case_id")?;
    let case_id = a.uuid(0, "case_id")?;
    let spi = Spi::read_only();
    read(&spi, case_d, &case_id)?;
    Ok(pg_sys::Datum::from(0usize))
}

sql_function!(sm_require_case, pg_finfo_sm_require_case, require_case);
