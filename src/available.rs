//! The read side of the decision: available_transitions and check_transition, both
//! through statemachine_core::checks::evaluate, the evaluation transition_case uses.
//! Also the materialized-SRF plumbing shared with validate_machine.

use crate::cases::evidence_facts;
use crate::facts::DbFacts;
use crate::fmgr::{text_datum, uuid_from_datum, uuid_string, Args, SmResult};
use crate::spi::{Spi, Stmt, UUID};
use crate::{machines, sql_function};
use pgrx::pg_sys;
use statemachine_core::checks::{DRY_RUN, WRITE};
use statemachine_core::{evaluate, CaseFacts, Refusal, Report, Request, Supplied};

static READ_CASE: Stmt = Stmt {
    sql: "SELECT c.current_state, c.state_entered_at, c.machine_version_id \
          FROM statemachine.case_file c WHERE c.id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};

/// One output column value.
pub enum Cell {
    Text(Option<String>),
    Bool(bool),
    Uuid([u8; 16]),
}

/// Returns `rows` as the function's result set (materialize mode).
///
/// # Safety
/// `fcinfo` must belong to a set-returning function whose result columns match `rows`.
pub unsafe fn return_rows(fcinfo: pg_sys::FunctionCallInfo, rows: &[Vec<Cell>]) {
    unsafe {
        crate::compat::init_materialized_srf(fcinfo);
        let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
        for row in rows {
            let mut values: Vec<pg_sys::Datum> = Vec::with_capacity(row.len());
            let mut nulls: Vec<bool> = Vec::with_capacity(row.len());
            for cell in row {
                let (v, n) = match cell {
                    Cell::Text(Some(s)) => (text_datum(s), false),
                    Cell::Text(None) => (pg_sys::Datum::from(0usize), true),
                    Cell::Bool(b) => (pg_sys::Datum::from(*b), false),
                    Cell::Uuid(u) => (crate::fmgr::uuid_datum(u), false),
                };
                values.push(v);
                nulls.push(n);
            }
            pg_sys::tuplestore_putvalues((*rsinfo).setResult, (*rsinfo).setDesc, values.as_mut_ptr(), nulls.as_mut_ptr());
        }
    }
}

/// Returns the rows of an SPI result as the function's result set; the statement's
/// columns must be those of the declared result type (e.g. `RETURNING t.*`).
///
/// # Safety
/// `fcinfo` must belong to a set-returning function whose row type matches `rows`.
pub unsafe fn return_tuples(fcinfo: pg_sys::FunctionCallInfo, rows: &crate::spi::Rows) {
    unsafe {
        crate::compat::init_materialized_srf(fcinfo);
        let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
        for i in 0..rows.count {
            if let Some(tuple) = rows.tuple(i) {
                pg_sys::tuplestore_puttuple((*rsinfo).setResult, tuple);
            }
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

/// The case's state, when it entered it, and its machine version; SM009 if unknown.
fn read_case(spi: &Spi, case_d: pg_sys::Datum) -> Result<(String, i64, [u8; 16]), Report> {
    let c = spi.run(&READ_CASE, &[Some(case_d)], 1);
    match (c.text(0, 1), c.i64(0, 2), c.uuid(0, 3)) {
        (Some(state), Some(entered_at), Some(version_id)) => Ok((state, entered_at, version_id)),
        _ => {
            let case_id = uuid_string(&unsafe { uuid_from_datum(case_d) });
            Err(Refusal::UnknownCase { case_id }.report(&CaseFacts::default()))
        }
    }
}

unsafe fn available_transitions(fcinfo: pg_sys::FunctionCallInfo) -> SmResult<pg_sys::Datum> {
    let a = Args(fcinfo);
    let case_d = a.required(0, "case_id")?;
    let role = a.opt_text(1);
    let actor_id = a.datum(2).map(|d| unsafe { uuid_from_datum(d) });
    let rows: Vec<Vec<Cell>> = {
        let spi = Spi::connect();
        let (current, entered_at, version_id) = read_case(&spi, case_d)?;
        let machine = machines::get(&spi, &version_id);
        let now = unsafe { pg_sys::GetCurrentTimestamp() };
        let mut db = DbFacts { spi: &spi, case_d, entered_at, now };
        let case_id = unsafe { uuid_from_datum(case_d) };
        machine
            .legal_rules(&current)
            .map(|rule| {
                // Reason and evidence are what the caller will supply, not blockers.
                let req = Request {
                    case_id,
                    current_state: &current,
                    code: &rule.code,
                    actor_id,
                    actor_role: role.as_deref(),
                    supplied: Supplied::Assumed,
                    dry_run: true,
                };
                let verdict = evaluate(&machine, rule, &req, &mut db, WRITE);
                let blocked_by = verdict.refusal().map(Refusal::blocked_by);
                vec![
                    Cell::Text(Some(rule.code.clone())),
                    Cell::Text(Some(rule.to.clone())),
                    Cell::Bool(rule.requires_reason),
                    Cell::Bool(rule.requires_evidence()),
                    Cell::Bool(blocked_by.is_none()),
                    Cell::Text(blocked_by),
                ]
            })
            .collect()
    };
    unsafe { return_rows(fcinfo, &rows) };
    Ok(pg_sys::Datum::from(0usize))
}

unsafe fn check_transition(fcinfo: pg_sys::FunctionCallInfo) -> SmResult<pg_sys::Datum> {
    let a = Args(fcinfo);
    let case_d = a.required(0, "case_id")?;
    let code = a.text(1, "transition_code")?;
    let actor_id = a.datum(2).map(|d| unsafe { uuid_from_datum(d) });
    let role = a.opt_text(3);
    let (reason_code, reason_text) = (a.opt_text(4), a.opt_text(5));
    let rows: Vec<Vec<Cell>> = {
        let spi = Spi::connect();
        let (current, entered_at, version_id) = read_case(&spi, case_d)?;
        let machine = machines::get(&spi, &version_id);
        let evidence = evidence_facts(&spi, a.datum(6));
        let now = unsafe { pg_sys::GetCurrentTimestamp() };
        let case_id = unsafe { uuid_from_datum(case_d) };
        let row = |name: &str, passed: bool, detail: String| vec![Cell::Text(Some(name.into())), Cell::Bool(passed), Cell::Text(Some(detail))];
        match machine.find_rule(&current, &code) {
            Err(refusal) => {
                let facts = CaseFacts { case_id: uuid_string(&case_id), current_state: current.clone() };
                let r = refusal.report(&facts);
                let detail = match r.hint {
                    Some(h) => format!("{}. {h}", r.message),
                    None => r.message,
                };
                vec![row("rule", false, detail)]
            }
            Ok(rule) => {
                let req = Request {
                    case_id,
                    current_state: &current,
                    code: &code,
                    actor_id,
                    actor_role: role.as_deref(),
                    supplied: Supplied::Given { reason_code: reason_code.as_deref(), reason_text: reason_text.as_deref(), evidence: &evidence },
                    dry_run: true,
                };
                let mut db = DbFacts { spi: &spi, case_d, entered_at, now };
                let evaluation = evaluate(&machine, rule, &req, &mut db, DRY_RUN);
                let mut rows = vec![row("rule", true, format!("{} leads from {} to {} (machine {} v{})", rule.code, rule.from, rule.to, machine.machine, machine.version))];
                rows.extend(evaluation.checks.into_iter().map(|c| row(&c.name, c.passed, c.detail)));
                rows
            }
        }
    };
    unsafe { return_rows(fcinfo, &rows) };
    Ok(pg_sys::Datum::from(0usize))
}

sql_function!(sm_available_transitions, pg_finfo_sm_available_transitions, available_transitions);
sql_function!(sm_check_transition, pg_finfo_sm_check_transition, check_transition);
