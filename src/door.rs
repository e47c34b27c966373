//! The write door: a backend-local counter that only this crate's Rust code can change.
//!
//! The guard triggers let a write through only while the door is open, and only the
//! write path opens it, around its own statements. No GUC, function or session variable
//! touches it. It is closed again by the RAII guard, also when a Postgres error unwinds
//! through the write path, and, belt and braces, by a transaction-abort callback.
//!
//! The one audited exception is break_glass(): it records itself append-only and then
//! admits direct writes for the rest of its own transaction (keyed by the top-level
//! transaction id, cleared when any transaction ends) — for restores and repairs.

use pgrx::pg_sys;
use std::sync::atomic::{AtomicU32, Ordering};

static OPEN: AtomicU32 = AtomicU32::new(0);
/// The transaction (top-level xid) that called break_glass(): the one audited exception.
/// 0: none. Cleared when any transaction ends.
static GLASS_XID: AtomicU32 = AtomicU32::new(0);

/// How many SQL guard functions are running (nested evaluations count).
static IN_GUARD: AtomicU32 = AtomicU32::new(0);

pub fn is_open() -> bool {
    OPEN.load(Ordering::Relaxed) > 0
}

/// Holds the door open until dropped.
#[must_use]
pub struct Open(());

pub fn open() -> Open {
    OPEN.fetch_add(1, Ordering::Relaxed);
    Open(())
}

impl Drop for Open {
    fn drop(&mut self) {
        // Saturating: a (sub)transaction abort may already have closed the door.
        let _ = OPEN.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

/// Records that the current transaction broke the glass (see guard::break_glass).
pub fn break_glass() {
    // SAFETY: called from an entry point, inside a transaction.
    let xid = unsafe { pg_sys::GetTopTransactionId() };
    GLASS_XID.store(xid.into_inner(), Ordering::Relaxed);
}

/// True inside the transaction that called break_glass().
pub fn glass_broken() -> bool {
    let broken = GLASS_XID.load(Ordering::Relaxed);
    // SAFETY: reads the current transaction's xid (or InvalidTransactionId); no preconditions.
    broken != 0 && unsafe { pg_sys::GetTopTransactionIdIfAny() }.into_inner() == broken
}

/// True while a SQL guard function runs: the write path's functions then refuse (a
/// guard decides; it does not write).
pub fn inside_guard() -> bool {
    IN_GUARD.load(Ordering::Relaxed) > 0
}

/// Marks a SQL guard evaluation until dropped.
#[must_use]
pub struct EvaluatingGuard(());

pub fn evaluating_guard() -> EvaluatingGuard {
    IN_GUARD.fetch_add(1, Ordering::Relaxed);
    EvaluatingGuard(())
}

impl Drop for EvaluatingGuard {
    fn drop(&mut self) {
        // Saturating: a transaction abort may already have reset the count.
        let _ = IN_GUARD.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    if event == pg_sys::XactEvent::XACT_EVENT_ABORT || event == pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT {
        OPEN.store(0, Ordering::Relaxed);
        IN_GUARD.store(0, Ordering::Relaxed);
    }
    if matches!(
        event,
        pg_sys::XactEvent::XACT_EVENT_COMMIT
            | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT
            | pg_sys::XactEvent::XACT_EVENT_PREPARE
            | pg_sys::XactEvent::XACT_EVENT_ABORT
            | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT
    ) {
        GLASS_XID.store(0, Ordering::Relaxed);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    _mysubid: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        OPEN.store(0, Ordering::Relaxed);
    }
}

pub fn register_callbacks() {
    // SAFETY: called once from _PG_init; the callbacks are 'static functions with no argument.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}

/// Write-path functions refuse to run inside a SQL guard (SM007): a guard decides
/// whether a transition may happen; it must not change cases while doing so.
pub fn refuse_inside_guard(function: &str) -> Result<(), statemachine_core::Report> {
    if inside_guard() {
        let refusal = statemachine_core::Refusal::GuardReentry { function: function.into() };
        return Err(refusal.report(&statemachine_core::CaseFacts::default()));
    }
    Ok(())
}
