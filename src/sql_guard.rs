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

use crate::fmgr::text_datum;
use crate::spi::{Spi, Stmt, OID, TEXT};
use crate::subxact::SubXact;
use cee_scape::{call_with_sigsetjmp, SigJmpBufFields};
use pgrx::pg_sys;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CStr;
use std::rc::Rc;

/// A registered guard, whether its function still exists and whether its owner may own it.
static REGISTERED: Stmt = Stmt {
    sql: "SELECT g.function::pg_catalog.oid, g.function::pg_catalog.text, g.returns, p.oid IS NOT NULL, \
                 COALESCE(o.rolsuper OR p.proowner OPERATOR(pg_catalog.=) x.extowner, false), o.rolname::pg_catalog.text \
          FROM ONLY statemachine.guard_function g \
          LEFT JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) g.function::pg_catalog.oid \
          LEFT JOIN pg_catalog.pg_roles o ON o.oid OPERATOR(pg_catalog.=) p.proowner \
          LEFT JOIN pg_catalog.pg_extension x ON x.extname OPERATOR(pg_catalog.=) 'pg_statemachine' \
          WHERE g.code OPERATOR(pg_catalog.=) $1",
    args: &[TEXT],
};
static MAY_EXECUTE: Stmt = Stmt {
    sql: "SELECT pg_catalog.has_function_privilege(pg_catalog.session_user(), $1, 'EXECUTE')",
    args: &[OID],
};

/// A registered guard as the write path needs it.
pub(crate) struct Registered {
    pub oid: pg_sys::Oid,
    /// regprocedure text of the function.
    pub function: String,
    /// Returns (passed, evidence) rather than boolean.
    pub verdict: bool,
    pub exists: bool,
    /// Owned by a superuser or the extension's owner.
    pub owner_may_own: bool,
    pub owner: String,
    /// Whether the session user (by oid) may EXECUTE it, once asked.
    may_execute: Cell<Option<(pg_sys::Oid, bool)>>,
}

thread_local! {
    static REGISTRY: RefCell<HashMap<String, Rc<Registered>>> = RefCell::new(HashMap::new());
}

/// Guard `name` as registered (cached per backend; see [`register_callbacks`] for what
/// drops the cache). None: not registered.
pub(crate) fn registered(spi: &Spi, name: &str) -> Option<Rc<Registered>> {
    if let Some(g) = REGISTRY.with(|r| r.borrow().get(name).cloned()) {
        return Some(g);
    }
    let r = spi.run(&REGISTERED, &[Some(text_datum(name))], 1);
    // Under REPEATABLE READ or SERIALIZABLE the read above saw the transaction's snapshot,
    // which may predate an invalidation this backend has already processed: such an
    // answer is used for this call but not kept.
    // SAFETY: reads the transaction's isolation level.
    let keep = unsafe { pg_sys::XactIsoLevel } < pg_sys::XACT_REPEATABLE_READ as i32;
    let g = Rc::new(Registered {
        oid: r.get(0, 1).map(|d| pg_sys::Oid::from(d.value() as u32))?,
        function: r.text(0, 2)?,
        verdict: r.text(0, 3)? == "verdict",
        exists: r.bool(0, 4) == Some(true),
        owner_may_own: r.bool(0, 5) == Some(true),
        owner: r.text(0, 6).unwrap_or_default(),
        may_execute: Cell::new(None),
    });
    if keep {
        REGISTRY.with(|reg| reg.borrow_mut().insert(name.to_owned(), g.clone()));
    }
    Some(g)
}

/// Whether the session user may EXECUTE the guard's function (it runs as that user).
pub(crate) fn session_user_may_execute(spi: &Spi, g: &Registered) -> bool {
    // SAFETY: the session user's id, set at connection start (or SET SESSION AUTHORIZATION).
    let user = unsafe { pg_sys::GetSessionUserId() };
    if let Some((asked_for, may)) = g.may_execute.get() {
        if asked_for == user {
            return may;
        }
    }
    let may = spi.run(&MAY_EXECUTE, &[Some(pg_sys::Datum::from(g.oid))], 1).bool(0, 1) == Some(true);
    g.may_execute.set(Some((user, may)));
    may
}

/// The cache is dropped by any relcache invalidation (register_guard sends one for
/// guard_function, as does a write to it under break_glass), any change of a function
/// (pg_proc: dropped, replaced, re-owned, GRANT/REVOKE), of a role (a superuser no longer
/// one) or of role membership (who may EXECUTE). All are rare next to transitions.
pub fn register_callbacks() {
    unsafe extern "C-unwind" fn on_relcache(_arg: pg_sys::Datum, _relid: pg_sys::Oid) {
        REGISTRY.with(|r| r.borrow_mut().clear());
    }
    unsafe extern "C-unwind" fn on_syscache(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
        REGISTRY.with(|r| r.borrow_mut().clear());
    }
    // SAFETY: called once from _PG_init; the callbacks are 'static functions.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache), pg_sys::Datum::from(0usize));
        for cache in [pg_sys::SysCacheIdentifier::PROCOID, pg_sys::SysCacheIdentifier::AUTHOID, pg_sys::SysCacheIdentifier::AUTHMEMROLEMEM] {
            pg_sys::CacheRegisterSyscacheCallback(cache as i32, Some(on_syscache), pg_sys::Datum::from(0usize));
        }
    }
}

/// Tells every backend (and this one) that the registered guards changed (register_guard).
pub fn guards_changed() {
    // SAFETY: catalog lookups by name inside a transaction.
    let relid = unsafe { pg_sys::get_relname_relid(c"guard_function".as_ptr(), pg_sys::get_namespace_oid(c"statemachine".as_ptr(), true)) };
    if relid != pg_sys::InvalidOid {
        invalidate(relid);
    }
}

/// As [`guards_changed`], with statemachine.guard_function's oid at hand.
pub fn invalidate(relid: pg_sys::Oid) {
    // SAFETY: queues a relcache invalidation of an existing relation, sent at commit
    // (and applied in this backend at the next command).
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    REGISTRY.with(|r| r.borrow_mut().clear());
}

/// What the guard function did.
pub(crate) enum Called {
    /// It returned: passed (NULL: no verdict), and evidence as jsonb text (verdict
    /// functions only).
    Returned { passed: Option<bool>, evidence: Option<String> },
    /// It raised an error (any but a query cancel, which is re-raised as PL/pgSQL's
    /// `WHEN OTHERS` would not catch it either).
    Raised { sqlstate: String, message: String, detail: Option<String>, hint: Option<String>, context: Option<String> },
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
    // Rolled back unless released below — also when anything between here and there
    // raises (fmgr_info, reading the result): the error then unwinds through it.
    let sub = SubXact::begin();
    // SAFETY: between sigsetjmp and a longjmp into it only the guard function runs
    // (called through its raw fmgr pointer, not a pgrx wrapper that would turn its error
    // into a Rust panic), and the closure holds no value with a destructor. The jump
    // branch does what PL/pgSQL's exception block does: copy the error data out of
    // ErrorContext into the caller's context, flush it, roll the subtransaction back.
    unsafe {
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
                read_verdict(result)
            } else {
                Called::Returned { passed: Some(result.value() != 0), evidence: None }
            };
            pg_sys::PopActiveSnapshot();
            sub.commit();
            called
        } else {
            pg_sys::MemoryContextSwitchTo(sub.caller_cxt());
            let edata = pg_sys::CopyErrorData();
            pg_sys::FlushErrorState();
            drop(sub);
            if (*edata).sqlerrcode == crate::ereport::pack_sqlstate("57014") {
                pg_sys::ReThrowError(edata);
            }
            let called = Called::Raised {
                sqlstate: crate::ereport::unpack_sqlstate((*edata).sqlerrcode),
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

/// A verdict function's row, its type checked now: whoever owns the composite type may
/// have changed its columns since register_guard looked (a `passed` of type text read
/// as a boolean would pass anything).
///
/// # Safety
/// `result` is the non-NULL composite datum a function returned.
unsafe fn read_verdict(result: pg_sys::Datum) -> Called {
    // SAFETY: the caller's contract; the row's own type id and typmod describe it, and
    // lookup_rowtype_tupdesc_copy returns a palloc'd descriptor with `natts` attributes.
    unsafe {
        let tuple = pg_sys::pg_detoast_datum(result.cast_mut_ptr()) as pg_sys::HeapTupleHeader;
        let typid = (*tuple).t_choice.t_datum.datum_typeid;
        let desc = pg_sys::lookup_rowtype_tupdesc_copy(typid, (*tuple).t_choice.t_datum.datum_typmod);
        let (mut passed_ok, mut evidence_ok) = (false, false);
        for i in 0..(*desc).natts as usize {
            let att = crate::compat::tuple_desc_attr(desc, i);
            if (*att).attisdropped {
                continue;
            }
            match CStr::from_ptr((*att).attname.data.as_ptr()).to_bytes() {
                b"passed" => passed_ok = (*att).atttypid == pg_sys::BOOLOID,
                b"evidence" => evidence_ok = (*att).atttypid == pg_sys::JSONBOID,
                _ => {}
            }
        }
        if !(passed_ok && evidence_ok) {
            let type_name = CStr::from_ptr(pg_sys::format_type_be(typid)).to_string_lossy().into_owned();
            return Called::Raised {
                sqlstate: "42804".into(),
                message: format!("guard function returned type {type_name}, which is not (passed boolean, evidence jsonb)"),
                detail: None,
                hint: Some("A verdict guard returns a row with columns passed boolean and evidence jsonb.".into()),
                context: None,
            };
        }
        let mut isnull = false;
        let passed = pg_sys::GetAttributeByName(tuple, c"passed".as_ptr(), &mut isnull);
        let passed = (!isnull).then(|| passed.value() != 0);
        let evidence = pg_sys::GetAttributeByName(tuple, c"evidence".as_ptr(), &mut isnull);
        let evidence = (!isnull).then(|| crate::fmgr::jsonb_out(evidence));
        Called::Returned { passed, evidence }
    }
}
