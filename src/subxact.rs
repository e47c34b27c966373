//! Internal subtransactions around work that may fail: a `sql` guard's call
//! (sql_guard.rs) and, under `on_error => 'skip'`, a chunk of a bulk or a timer run
//! (bulk.rs). PL/pgSQL's exception blocks do the same: begin, keep the caller's memory
//! context, and on any error roll the subtransaction back and restore the caller's
//! memory context and resource owner, so the transaction goes on as if the work had not
//! been tried.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::{CaughtError, ErrorReportWithLevel};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

/// An open internal subtransaction: released by [`SubXact::commit`], rolled back when
/// dropped otherwise — also when an error unwinds through its owner.
pub(crate) struct SubXact {
    caller_cxt: pg_sys::MemoryContext,
    caller_owner: pg_sys::ResourceOwner,
    open: bool,
}

impl SubXact {
    pub(crate) fn begin() -> SubXact {
        // SAFETY: inside a transaction (every caller is an SQL function); the memory
        // context is switched back to the caller's, as PL/pgSQL's exec_stmt_block does.
        unsafe {
            let caller_cxt = pg_sys::CurrentMemoryContext;
            let caller_owner = pg_sys::CurrentResourceOwner;
            pg_sys::BeginInternalSubTransaction(std::ptr::null());
            pg_sys::MemoryContextSwitchTo(caller_cxt);
            SubXact { caller_cxt, caller_owner, open: true }
        }
    }

    pub(crate) fn commit(mut self) {
        self.open = false;
        // SAFETY: releases the subtransaction begun in begin() (the innermost one: callers
        // nest them strictly) and restores what begin() saved.
        unsafe {
            pg_sys::ReleaseCurrentSubTransaction();
            pg_sys::MemoryContextSwitchTo(self.caller_cxt);
            pg_sys::CurrentResourceOwner = self.caller_owner;
        }
    }

    /// The caller's memory context (to copy error data into before rolling back).
    pub(crate) fn caller_cxt(&self) -> pg_sys::MemoryContext {
        self.caller_cxt
    }
}

impl Drop for SubXact {
    fn drop(&mut self) {
        if self.open {
            // SAFETY: rolls back the subtransaction begun in begin() (any error state has
            // been flushed by whoever caught it) and restores what begin() saved.
            unsafe {
                pg_sys::MemoryContextSwitchTo(self.caller_cxt);
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
                pg_sys::MemoryContextSwitchTo(self.caller_cxt);
                pg_sys::CurrentResourceOwner = self.caller_owner;
            }
        }
    }
}

/// An error caught by [`attempt`]: its SQLSTATE and message.
pub(crate) struct Caught {
    pub sqlstate: String,
    pub message: String,
}

fn report_of(payload: &(dyn std::any::Any + Send)) -> Option<&ErrorReportWithLevel> {
    match payload.downcast_ref::<CaughtError>() {
        Some(CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) | CaughtError::RustPanic { ereport: r, .. }) => Some(r),
        None => payload.downcast_ref::<ErrorReportWithLevel>(),
    }
}

/// Runs `f` in a subtransaction: its result, or — rolled back — the error it raised. A
/// query cancel (statement_timeout, pg_cancel_backend) is not caught: it ends the call.
/// (The SQLSTATE comes through pgrx, which knows PostgreSQL's own codes; an error with
/// any other code reads as XX000, its message intact.)
pub(crate) fn attempt<R>(f: impl FnOnce() -> R) -> Result<R, Caught> {
    let sub = SubXact::begin();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => {
            sub.commit();
            Ok(r)
        }
        Err(payload) => {
            drop(sub);
            let (code, message) = match report_of(payload.as_ref()) {
                Some(r) => (r.sql_error_code() as isize as i32, r.message().to_owned()),
                None => (crate::ereport::pack_sqlstate("XX000"), "internal error".to_owned()),
            };
            if code == crate::ereport::pack_sqlstate("57014") {
                resume_unwind(payload);
            }
            Err(Caught { sqlstate: crate::ereport::unpack_sqlstate(code), message })
        }
    }
}
