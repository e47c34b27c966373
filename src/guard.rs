//! The guard trigger on every extension table, and break_glass, the audited exception
//! to the event trigger that keeps those guards in place.
//!
//! Fast path (the write path's own statements): the door is open, return the row. That
//! is one atomic load per row. Otherwise the write is refused with SM007 — except a
//! direct UPDATE of case_file that changes nothing but `metadata` (and `updated_at`),
//! which touches neither state, version nor history.

use crate::door::{self, refuse_inside_guard};
use crate::fmgr::{datum_text, text_datum, uuid_datum, Args, SmResult};
use crate::spi::{Spi, Stmt, TEXT, TIMESTAMPTZ, UUID};
use crate::{history, sql_function};
use pgrx::pg_sys;
use statemachine_core::{CaseFacts, Refusal};
use std::ffi::CStr;

/// Columns of case_file a direct UPDATE may change.
const CASE_FILE_FREE_COLUMNS: &[&str] = &["metadata", "updated_at"];

fn guard_direct_write(a: &Args) -> SmResult<pg_sys::Datum> {
    let fcinfo = a.fcinfo();
    // SAFETY: fcinfo is the call's own; its context is checked to be TriggerData before
    // it is read as one, and the trigger manager keeps that data (relation, tuples)
    // valid for the call.
    unsafe {
        let ctx = (*fcinfo).context;
        if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_TriggerData {
            return Err(Refusal::NotATrigger.report(&CaseFacts::default()));
        }
        let td = ctx as *mut pg_sys::TriggerData;
        let event = (*td).tg_event;
        let op = event & pg_sys::TRIGGER_EVENT_OPMASK;
        let row_level = event & pg_sys::TRIGGER_EVENT_ROW != 0;
        let row = if !row_level {
            pg_sys::Datum::from(0usize)
        } else if op == pg_sys::TRIGGER_EVENT_UPDATE {
            pg_sys::Datum::from((*td).tg_newtuple)
        } else {
            pg_sys::Datum::from((*td).tg_trigtuple)
        };
        if door::is_open() && op != pg_sys::TRIGGER_EVENT_TRUNCATE {
            return Ok(row);
        }
        // The audited exception (restore, emergency repair): the transaction that called
        // break_glass(), and only it.
        if door::glass_broken() {
            return Ok(row);
        }

        let rel = (*td).tg_relation;
        let table = CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr()).to_string_lossy().into_owned();
        if row_level && op == pg_sys::TRIGGER_EVENT_UPDATE && table == "case_file" && only_free_columns_changed(td) {
            return Ok(row);
        }
        let (operation, what) = match op {
            pg_sys::TRIGGER_EVENT_INSERT => ("INSERT", "Rows are added only by the extension's functions."),
            pg_sys::TRIGGER_EVENT_DELETE => ("DELETE", "Cases, history, evidence and published definitions are never deleted."),
            pg_sys::TRIGGER_EVENT_UPDATE if table == "case_file" => {
                ("UPDATE", "The update changes a case's state, version or identity; only metadata may be updated directly.")
            }
            pg_sys::TRIGGER_EVENT_UPDATE => ("UPDATE", "These rows are immutable once written."),
            _ => ("TRUNCATE", "Cases, history, evidence and published definitions are never deleted."),
        };
        Err(Refusal::DirectWrite { table: format!("statemachine.{table}"), operation: operation.into(), what: what.into() }
            .report(&CaseFacts::default()))
    }
}

/// True when OLD and NEW differ only in [`CASE_FILE_FREE_COLUMNS`].
///
/// # Safety
/// `td` must be the TriggerData of a row-level UPDATE trigger call.
unsafe fn only_free_columns_changed(td: *mut pg_sys::TriggerData) -> bool {
    // SAFETY: the caller's contract: old and new tuples and the relation's descriptor are
    // valid for the call, and `i < natts` indexes the descriptor.
    unsafe {
        let desc = (*(*td).tg_relation).rd_att;
        let (old, new) = ((*td).tg_trigtuple, (*td).tg_newtuple);
        for i in 0..(*desc).natts as usize {
            let att = crate::compat::tuple_desc_attr(desc, i);
            if (*att).attisdropped {
                continue;
            }
            let name = CStr::from_ptr((*att).attname.data.as_ptr()).to_string_lossy();
            if CASE_FILE_FREE_COLUMNS.contains(&name.as_ref()) {
                continue;
            }
            let attnum = (i + 1) as i32;
            let mut old_null = false;
            let mut new_null = false;
            let o = pg_sys::heap_getattr(old, attnum, desc, &mut old_null);
            let n = pg_sys::heap_getattr(new, attnum, desc, &mut new_null);
            if old_null != new_null {
                return false;
            }
            if !old_null && datum_text(o, (*att).atttypid) != datum_text(n, (*att).atttypid) {
                return false;
            }
        }
        true
    }
}

/// The audited exception to the event trigger statemachine_guard_ddl: valid for the
/// calling transaction only (the trigger looks for a row with its txid).
static INSERT_BREAK_GLASS: Stmt = Stmt {
    sql: "INSERT INTO statemachine.break_glass_event AS e (id, reason, transaction_id, occurred_at) \
          VALUES ($1, $2, pg_catalog.txid_current(), $3) RETURNING e",
    args: &[UUID, TEXT, TIMESTAMPTZ],
};

fn break_glass(a: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("break_glass")?;
    let reason = a.text(0, "reason")?;
    let spi = Spi::connect();
    let now = history::now();
    let _door = door::open();
    door::break_glass();
    let row = spi.run(
        &INSERT_BREAK_GLASS,
        &[Some(uuid_datum(&history::row_id(now))), Some(text_datum(&reason)), Some(pg_sys::Datum::from(now))],
        1,
    );
    match row.get(0, 1) {
        Some(d) => Ok(spi.keep(d)),
        None => unreachable!("INSERT ... RETURNING without ON CONFLICT returns its row"),
    }
}

sql_function!(sm_guard_direct_write, pg_finfo_sm_guard_direct_write, guard_direct_write);
sql_function!(sm_break_glass, pg_finfo_sm_break_glass, break_glass);
