//! available_transitions, and the materialized-SRF plumbing shared with validate_machine.

use crate::fmgr::{text_datum, uuid_from_datum, uuid_string, Args, SmResult};
use crate::spi::{Spi, Stmt, UUID};
use crate::{machines, sql_function};
use pgrx::pg_sys;
use statemachine_core::{CaseFacts, Refusal, Request};

static READ_CASE: Stmt = Stmt {
    sql: "SELECT c.current_state, c.state_entered_at, c.machine_version_id \
          FROM statemachine.case_file c WHERE c.id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};

/// One output column value.
pub enum Cell {
    Text(Option<String>),
    Bool(bool),
}

/// Returns `rows` as the function's result set (materialize mode).
///
/// # Safety
/// `fcinfo` must belong to a set-returning function whose result columns match `rows`.
pub unsafe fn return_rows(fcinfo: pg_sys::FunctionCallInfo, rows: &[Vec<Cell>]) {
    unsafe {
        pg_sys::InitMaterializedSRF(fcinfo, 0);
        let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
        for row in rows {
            let mut values: Vec<pg_sys::Datum> = Vec::with_capacity(row.len());
            let mut nulls: Vec<bool> = Vec::with_capacity(row.len());
            for cell in row {
                let (v, n) = match cell {
                    Cell::Text(Some(s)) => (text_datum(s), false),
                    Cell::Text(None) => (pg_sys::Datum::from(0usize), true),
                    Cell::Bool(b) => (pg_sys::Datum::from(*b), false),
                };
                values.push(v);
                nulls.push(n);
            }
            pg_sys::tuplestore_putvalues((*rsinfo).setResult, (*rsinfo).setDesc, values.as_mut_ptr(), nulls.as_mut_ptr());
        }
    }
}

/// Text-only rows.
///
/// # Safety
/// As [`return_rows`].
pub unsafe fn return_text_rows<const N: usize>(fcinfo: pg_sys::FunctionCallInfo, rows: &[[Option<String>; N]]) {
    let rows: Vec<Vec<Cell>> = rows.iter().map(|r| r.iter().cloned().map(Cell::Text).collect()).collect();
    unsafe { return_rows(fcinfo, &rows) }
}

unsafe fn available_transitions(fcinfo: pg_sys::FunctionCallInfo) -> SmResult<pg_sys::Datum> {
    let a = Args(fcinfo);
    let case_d = a.required(0, "case_id")?;
    let role = a.opt_text(1);
    let rows: Vec<Vec<Cell>> = {
        let spi = Spi::connect();
        let c = spi.run(&READ_CASE, &[Some(case_d)], 1);
        let (Some(current), Some(entered_at), Some(version_id)) = (c.text(0, 1), c.i64(0, 2), c.uuid(0, 3)) else {
            let case_id = uuid_string(&unsafe { uuid_from_datum(case_d) });
            return Err(Refusal::UnknownCase { case_id }.report(&CaseFacts::default()));
        };
        let machine = machines::get(&spi, &version_id);
        let now = unsafe { pg_sys::GetCurrentTimestamp() };
        machine
            .legal_rules(&current)
            .map(|rule| {
                // Reason and evidence are what the caller will supply, not blockers.
                let req = Request { code: &rule.code, actor_role: role.as_deref(), has_reason: true, evidence_count: 1 };
                let verdict = machine.check_rule(rule, &req, |min| crate::cases::time_left(&spi, entered_at, min, now));
                vec![
                    Cell::Text(Some(rule.code.clone())),
                    Cell::Text(Some(rule.to.clone())),
                    Cell::Bool(rule.requires_reason),
                    Cell::Bool(rule.requires_evidence),
                    Cell::Bool(verdict.is_ok()),
                    Cell::Text(verdict.err().map(|r| r.blocked_by())),
                ]
            })
            .collect()
    };
    unsafe { return_rows(fcinfo, &rows) };
    Ok(pg_sys::Datum::from(0usize))
}

sql_function!(sm_available_transitions, pg_finfo_sm_available_transitions, available_transitions);
