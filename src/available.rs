//! The read side of the decision: available_transitions and check_transition, both
//! through statemachine_core::checks::evaluate, the evaluation transition_case uses.
//! Both are VOLATILE in SQL (a `sql` guard they evaluate runs in a subtransaction), so
//! each statement sees a fresh snapshot, as in the write path; they write nothing.

use crate::facts::DbFacts;
use crate::fmgr::{uuid_string, Args, SmResult};
use crate::spi::Spi;
use crate::srf::{return_rows, Cell};
use crate::{case_file, evidence, history, machines, sql_function};
use pgrx::pg_sys;
use statemachine_core::checks::{DRY_RUN, WRITE};
use statemachine_core::{evaluate, CaseFacts, Refusal, Request, Supplied};

fn available_transitions(a: &Args) -> SmResult<pg_sys::Datum> {
    if crate::delegation::read(a, true)? {
        return Ok(pg_sys::Datum::from(0usize));
    }
    let rows = available_rows(a)?.unwrap_or_default();
    // SAFETY: declared RETURNS TABLE(transition_code text, to_state text, requires_reason
    // boolean, requires_evidence boolean, allowed boolean, blocked_by text).
    unsafe { return_rows(a, &rows) };
    Ok(pg_sys::Datum::from(0usize))
}

/// available_transitions' rows, here (also delegated: delegation.rs; None: sent back, a
/// `sql` guard would run).
pub(crate) fn available_rows(a: &Args) -> SmResult<Option<Vec<Vec<Cell>>>> {
    let case_d = a.required(0, "case_id")?;
    let case_id = a.uuid(0, "case_id")?;
    let role = a.opt_text(1);
    let actor_id = a.opt_uuid(2);
    let rows: Vec<Vec<Cell>> = {
        let spi = Spi::connect();
        let (current, entered_at, version_id) = case_file::read(&spi, case_d, &case_id)?;
        let machine = machines::get(&spi, &version_id);
        if crate::delegation::here() && machine.legal_rules(&current).any(|r| r.runs_sql()) {
            return Ok(None);
        }
        let now = history::now();
        let mut db = DbFacts { spi: &spi, case_d, entered_at, now };
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
    Ok(Some(rows))
}

fn check_transition(a: &Args) -> SmResult<pg_sys::Datum> {
    if crate::delegation::read(a, false)? {
        return Ok(pg_sys::Datum::from(0usize));
    }
    let rows = check_rows(a)?.unwrap_or_default();
    // SAFETY: declared RETURNS TABLE(check_name text, passed boolean, detail text).
    unsafe { return_rows(a, &rows) };
    Ok(pg_sys::Datum::from(0usize))
}

/// check_transition's rows, here (also delegated: delegation.rs; None: sent back, a `sql`
/// guard would run).
pub(crate) fn check_rows(a: &Args) -> SmResult<Option<Vec<Vec<Cell>>>> {
    let case_d = a.required(0, "case_id")?;
    let case_id = a.uuid(0, "case_id")?;
    let code = a.text(1, "transition_code")?;
    let actor_id = a.opt_uuid(2);
    let role = a.opt_text(3);
    let (reason_code, reason_text) = (a.opt_text(4), a.opt_text(5));
    let rows: Vec<Vec<Cell>> = {
        let spi = Spi::connect();
        let (current, entered_at, version_id) = case_file::read(&spi, case_d, &case_id)?;
        let machine = machines::get(&spi, &version_id);
        let evidence = evidence::facts(&spi, a.datum(6), case_d);
        let now = history::now();
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
            Ok(rule) if crate::delegation::here() && rule.runs_sql() => return Ok(None),
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
    Ok(Some(rows))
}

sql_function!(sm_available_transitions, pg_finfo_sm_available_transitions, available_transitions);
sql_function!(sm_check_transition, pg_finfo_sm_check_transition, check_transition);
