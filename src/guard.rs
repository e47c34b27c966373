//! The guard trigger on every extension table, and break_glass, the audited exception.
//!
//! Fast path (the write path's own statements): the door is open for this table and
//! this operation, return the row. Otherwise the write is refused with SM007 — except a
//! direct UPDATE of case_file that changes nothing but `metadata` (compared by attribute
//! number and binary value, so neither renamed columns nor a session's DateStyle or
//! TimeZone can make a change look like none), and writes inside the (sub)transaction
//! that called break_glass() (never to break_glass_event itself, which stays append-only).

use crate::door::{self, refuse_inside_guard, Grant, Op};
use crate::fmgr::{text_datum, uuid_datum, Args, SmResult};
use crate::spi::{Spi, Stmt, TEXT, TIMESTAMPTZ, UUID};
use crate::{history, sql_function};
use pgrx::pg_sys;
use statemachine_core::{CaseFacts, Refusal};
use std::ffi::CStr;

/// Whether the firing guard trigger was created with the argument 'append-only'.
///
/// # Safety
/// `td` must be the call's TriggerData.
unsafe fn append_only(td: *mut pg_sys::TriggerData) -> bool {
    // SAFETY: the trigger manager's Trigger of this call; tgargs holds tgnargs C strings.
    unsafe {
        let trigger = (*td).tg_trigger;
        !trigger.is_null()
            && (*trigger).tgnargs > 0
            && !(*trigger).tgargs.is_null()
            && CStr::from_ptr(*(*trigger).tgargs).to_bytes() == APPEND_ONLY.as_bytes()
    }
}

/// The guard trigger argument of tables that stay append-only under break_glass.
pub const APPEND_ONLY: &str = "append-only";

/// The attribute number of case_file.metadata, the one column a direct UPDATE may change
/// (guard_weaknesses() reports a catalog where that number names another column).
pub const CASE_FILE_METADATA_ATTNUM: usize = 11;

/// The call's TriggerData; 39P01 when the function was not called as a trigger.
///
/// # Safety
/// `fcinfo` must be the call's own.
pub(crate) unsafe fn trigger_data(fcinfo: pg_sys::FunctionCallInfo) -> SmResult<*mut pg_sys::TriggerData> {
    // SAFETY: the caller's contract; the context node is read as TriggerData only after
    // its tag says it is one.
    unsafe {
        let ctx = (*fcinfo).context;
        if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_TriggerData {
            return Err(Refusal::NotATrigger.report(&CaseFacts::default()));
        }
        Ok(ctx as *mut pg_sys::TriggerData)
    }
}

/// The audit log of the exception itself: nothing but break_glass() writes it.
const BREAK_GLASS_TABLE: &str = "break_glass_event";

fn guard_direct_write(a: &Args) -> SmResult<pg_sys::Datum> {
    let fcinfo = a.fcinfo();
    // SAFETY: fcinfo is the call's own; its context is checked to be TriggerData before
    // it is read as one, and the trigger manager keeps that data (relation, tuples)
    // valid for the call.
    unsafe {
        let td = trigger_data(fcinfo)?;
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
        let rel = (*td).tg_relation;
        let relname = CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr()).to_string_lossy();
        // A Citus shard or placement (`<table>_<shard id>`) is guarded as its table.
        let table = crate::remote_door::base_table(&relname);
        let schema_ptr = pg_sys::get_namespace_name((*(*rel).rd_rel).relnamespace);
        let schema = if schema_ptr.is_null() { String::new() } else { CStr::from_ptr(schema_ptr).to_string_lossy().into_owned() };
        let in_schema = schema == "statemachine";
        let door_op = match op {
            pg_sys::TRIGGER_EVENT_INSERT => Some(Op::Insert),
            pg_sys::TRIGGER_EVENT_UPDATE => Some(Op::Update),
            pg_sys::TRIGGER_EVENT_DELETE => Some(Op::Delete),
            _ => None,
        };
        // statemachine.distribute(): Citus copies the rows into shards and placements.
        if in_schema && door::is_distributing() {
            return Ok(row);
        }
        if let Some(door_op) = door_op.filter(|_| row_level && in_schema) {
            if door::admits(table, door_op) || crate::remote_door::admits(table, door_op) {
                return Ok(row);
            }
        }
        // The audited exception (restore, emergency repair): the (sub)transaction that
        // called break_glass(), and only it. A table whose guard trigger says
        // 'append-only' (break_glass_event, the record of the exception itself) takes
        // rows under it (a restore) but never loses or changes one — told by the trigger's
        // argument, which a rename of the table does not change.
        if (door::glass_broken() || crate::remote_door::glass()) && (!append_only(td) || op == pg_sys::TRIGGER_EVENT_INSERT) {
            if in_schema && table == "guard_function" {
                // Backends cache registered guards (sql_guard.rs).
                crate::sql_guard::invalidate((*rel).rd_id);
            }
            return Ok(row);
        }
        if row_level && op == pg_sys::TRIGGER_EVENT_UPDATE && in_schema && table == "case_file" && only_metadata_changed(td) {
            return Ok(row);
        }
        let (operation, what) = match op {
            pg_sys::TRIGGER_EVENT_INSERT => ("INSERT", "Rows are added only by the extension's functions."),
            pg_sys::TRIGGER_EVENT_DELETE => ("DELETE", "Cases, history, evidence and published definitions are never deleted."),
            pg_sys::TRIGGER_EVENT_UPDATE if table == "case_file" => {
                ("UPDATE", "The update changes a case's state, version, clock or identity; only metadata may be updated directly.")
            }
            pg_sys::TRIGGER_EVENT_UPDATE => ("UPDATE", "These rows are immutable once written."),
            _ => ("TRUNCATE", "Cases, history, evidence and published definitions are never deleted."),
        };
        Err(Refusal::DirectWrite { table: format!("{schema}.{table}"), operation: operation.into(), what: what.into() }
            .report(&CaseFacts::default()))
    }
}

/// True when OLD and NEW are binary-equal in every column but metadata.
///
/// # Safety
/// `td` must be the TriggerData of a row-level UPDATE trigger call.
unsafe fn only_metadata_changed(td: *mut pg_sys::TriggerData) -> bool {
    // SAFETY: the caller's contract: old and new tuples and the relation's descriptor are
    // valid for the call, and `i < natts` indexes the descriptor.
    unsafe {
        let desc = (*(*td).tg_relation).rd_att;
        let (old, new) = ((*td).tg_trigtuple, (*td).tg_newtuple);
        for i in 0..(*desc).natts as usize {
            let attnum = i + 1;
            if attnum == CASE_FILE_METADATA_ATTNUM {
                continue;
            }
            let att = crate::compat::tuple_desc_attr(desc, i);
            let mut old_null = false;
            let mut new_null = false;
            let o = pg_sys::heap_getattr(old, attnum as i32, desc, &mut old_null);
            let n = pg_sys::heap_getattr(new, attnum as i32, desc, &mut new_null);
            if old_null != new_null || (!old_null && !same_binary_value(o, n, (*att).attbyval, (*att).attlen)) {
                return false;
            }
        }
        true
    }
}

/// datumIsEqual (utils/adt/datum.c) for one column, comparing a varlena's content bytes
/// whatever its header or toasting: the same bytes are the same value; anything else is
/// a change.
///
/// # Safety
/// `a` and `b` must be non-null datums of a column with that `byval` and `len`.
pub(crate) unsafe fn same_binary_value(a: pg_sys::Datum, b: pg_sys::Datum, byval: bool, len: i16) -> bool {
    if byval {
        return a == b;
    }
    // SAFETY: the caller's contract: by-reference datums of the column's length kind;
    // detoasted copies are palloc'd in the trigger's context.
    unsafe {
        match len {
            -1 => {
                let va = pg_sys::pg_detoast_datum_packed(a.cast_mut_ptr());
                let vb = pg_sys::pg_detoast_datum_packed(b.cast_mut_ptr());
                pgrx::varlena::varlena_to_byte_slice(va) == pgrx::varlena::varlena_to_byte_slice(vb)
            }
            -2 => CStr::from_ptr(a.cast_mut_ptr()) == CStr::from_ptr(b.cast_mut_ptr()),
            n => {
                let n = usize::try_from(n).unwrap_or(0);
                std::slice::from_raw_parts(a.cast_mut_ptr::<u8>(), n) == std::slice::from_raw_parts(b.cast_mut_ptr::<u8>(), n)
            }
        }
    }
}

/// The record of the audited exception (its transaction id is for the record only: the
/// exception itself is a fact of the backend's memory, see door::break_glass).
pub(crate) static INSERT_BREAK_GLASS: Stmt = Stmt {
    sql: "INSERT INTO statemachine.break_glass_event AS e (id, reason, transaction_id, occurred_at) \
          VALUES ($1, $2, pg_catalog.txid_current(), $3) RETURNING ROW(e.*)::statemachine.break_glass_event",
    args: &[UUID, TEXT, TIMESTAMPTZ],
};

fn break_glass(a: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("break_glass")?;
    let reason = a.text(0, "reason")?;
    let spi = Spi::connect();
    let now = history::now();
    const WRITES: &[Grant] = &[(BREAK_GLASS_TABLE, Op::Insert)];
    let _door = door::open(WRITES);
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
