//! Calling a registered `sql` guard function: by OID through fmgr, inside an internal
//! subtransaction, with a snapshot taken after the case was locked, and its error — if
//! it raises one — caught whole (SQLSTATE, message, DETAIL, HINT, its own CONTEXT lines)
//! so the write path can refuse with it (re-raised unchanged, the guard named).
//!
//! This replaces a PL/pgSQL helper that ran `EXECUTE format('SELECT %s($1, $2)', fn)`:
//! a parse and plan per call. Here the call is fmgr's own (PL/pgSQL keeps the guard's
//! compiled body and its plans per backend), the error is caught the way PL/pgSQL's
//! EXCEPTION block catches it (sigsetjmp on PG_exception_stack, CopyErrorData,
//! rollback of the subtransaction), and nothing is parsed.
//!
//! The caller decides who the function runs as (facts::AsUser, the session user,
//! restricted and read-only) and checks that the session user may EXECUTE it.

use cee_scape::{call_with_sigsetjmp, SigJmpBufFields};
use pgrx::pg_sys;
use std::ffi::CStr;

/// What the guard function did.
pub(crate) enum Called {
    /// It returned: passed (NULL: no verdict), and evidence as jsonb text (verdict
    /// functions only).
    Returned { passed: Option<bool>, evidence: Option<String> },
    /// It raised an error (any but a query cancel, which is re-raised as PL/pgSQL's
    /// `WHEN OTHERS` would not catch it either).
    Raised { sqlstate: String, message: String, detail: Option<String>, hint: Option<String>, context: Option<String> },
}

/// PostgreSQL's unpack_sql_state: five characters from six bits each.
fn unpack_sqlstate(code: i32) -> String {
    (0..5).map(|i| char::from((((code >> (6 * i)) & 0x3F) as u8) + b'0')).collect()
}

/// # Safety
/// `p` is NULL or a NUL-terminated C string.
unsafe fn opt_text(p: *const std::ffi::c_char) -> Option<String> {
    // SAFETY: the caller's contract.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// Calls guard function `function` (case_id uuid, context jsonb) with `case_d` and
/// `context` (a jsonb datum). `verdict`: it returns (passed boolean, evidence jsonb)
/// rather than boolean.
pub(crate) fn call(function: pg_sys::Oid, verdict: bool, case_d: pg_sys::Datum, context: pg_sys::Datum) -> Called {
    // SAFETY: the subtransaction dance of PL/pgSQL's exec_stmt_block and PL/Python's
    // PLy_spi_subtransaction_*: begin an internal subtransaction, restore the caller's
    // memory context; on success pop our snapshot and release it, on error copy the
    // error data out of ErrorContext, flush it and roll the subtransaction back; either
    // way restore the caller's memory context and resource owner. Between sigsetjmp and
    // a longjmp into it only the guard function runs (called through its raw fmgr
    // pointer, not a pgrx wrapper), and the closure holds no value with a destructor.
    unsafe {
        let caller_cxt = pg_sys::CurrentMemoryContext;
        let caller_owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(caller_cxt);
        // What the write path wrote so far, and every transaction committed while it
        // waited for the case's lock, is visible to the guard (not the caller's
        // statement snapshot, taken before that wait).
        pg_sys::CommandCounterIncrement();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());

        let mut flinfo: pg_sys::FmgrInfo = std::mem::zeroed();
        pg_sys::fmgr_info(function, &mut flinfo);
        let size = std::mem::size_of::<pg_sys::FunctionCallInfoBaseData>() + 2 * std::mem::size_of::<pg_sys::NullableDatum>();
        let fcinfo = pg_sys::palloc0(size) as pg_sys::FunctionCallInfo;
        (*fcinfo).flinfo = &mut flinfo;
        (*fcinfo).nargs = 2;
        (*fcinfo).fncollation = pg_sys::InvalidOid;
        let args = (*fcinfo).args.as_mut_slice(2);
        args[0] = pg_sys::NullableDatum { value: case_d, isnull: false };
        args[1] = pg_sys::NullableDatum { value: context, isnull: false };
        let invoke = flinfo.fn_addr.expect("fmgr_info sets fn_addr");

        let saved_exception_stack = pg_sys::PG_exception_stack;
        let saved_context_stack = pg_sys::error_context_stack;
        let mut result = pg_sys::Datum::from(0usize);
        let jumped = call_with_sigsetjmp(false, |env| {
            pg_sys::PG_exception_stack = std::mem::transmute::<*const SigJmpBufFields, *mut pg_sys::sigjmp_buf>(env);
            // The error's CONTEXT then has the guard's own frames only, not ours.
            pg_sys::error_context_stack = std::ptr::null_mut();
            result = invoke(fcinfo);
            0
        });
        pg_sys::PG_exception_stack = saved_exception_stack;
        pg_sys::error_context_stack = saved_context_stack;

        if jumped == 0 {
            let called = if (*fcinfo).isnull {
                Called::Returned { passed: None, evidence: None }
            } else if verdict {
                let tuple = result.cast_mut_ptr::<pg_sys::HeapTupleHeaderData>();
                let mut isnull = false;
                let passed = pg_sys::GetAttributeByName(tuple, c"passed".as_ptr(), &mut isnull);
                let passed = (!isnull).then(|| passed.value() != 0);
                let evidence = pg_sys::GetAttributeByName(tuple, c"evidence".as_ptr(), &mut isnull);
                let evidence = (!isnull).then(|| crate::fmgr::jsonb_out(evidence));
                Called::Returned { passed, evidence }
            } else {
                Called::Returned { passed: Some(result.value() != 0), evidence: None }
            };
            pg_sys::PopActiveSnapshot();
            pg_sys::ReleaseCurrentSubTransaction();
            pg_sys::MemoryContextSwitchTo(caller_cxt);
            pg_sys::CurrentResourceOwner = caller_owner;
            called
        } else {
            pg_sys::MemoryContextSwitchTo(caller_cxt);
            let edata = pg_sys::CopyErrorData();
            pg_sys::FlushErrorState();
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
            pg_sys::MemoryContextSwitchTo(caller_cxt);
            pg_sys::CurrentResourceOwner = caller_owner;
            if (*edata).sqlerrcode == crate::ereport::pack_sqlstate("57014") {
                pg_sys::ReThrowError(edata);
            }
            let called = Called::Raised {
                sqlstate: unpack_sqlstate((*edata).sqlerrcode),
                message: opt_text((*edata).message).unwrap_or_default(),
                detail: opt_text((*edata).detail),
                hint: opt_text((*edata).hint),
                context: opt_text((*edata).context),
            };
            pg_sys::FreeErrorData(edata);
            called
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sqlstates_unpack_as_packed() {
        for code in ["P0001", "SM002", "22023", "57014", "XX000"] {
            assert_eq!(super::unpack_sqlstate(crate::ereport::pack_sqlstate(code)), code);
        }
    }
}
