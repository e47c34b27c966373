//! Delegation: on a distributed installation whose command ids are unique per case
//! (`distribute(command_scope => 'case')`), the calls on one case (transition_case,
//! transition_to, add_evidence, assign_case, release_assignment, check_transition,
//! available_transitions) run on the node that holds the case, sent there as one
//! statement (docs/scaling.md, "Delegated calls").
//!
//! The coordinator sends one statement that Citus routes to the case's shard, e.g.
//! `DELEGATE_TRANSITION`: the case's row joined with `statemachine.transition_on_shard`
//! (each call has its `<function>_on_shard`). Its writes join the caller's distributed
//! transaction, as a write Citus knows of (see `written!`).
//! On the worker the call runs the same write path in the same distributed transaction;
//! Citus executes its statements locally, on the case's shards, in that backend, so the
//! door is that backend's memory as on one node — no token travels. Inside a query on a
//! shard Citus refuses any distributed statement unless
//! `citus.allow_nested_distributed_execution` is on: the call turns it on for itself only
//! (a GUC nest level, as a function's SET clause does), and reads nothing beyond its case
//! and the definitions (placements on every node). What would read or write other cases is
//! sent back before anything is written (a case with dimensions, whose family may live on
//! other shards; a rule with a `sql` guard, whose SQL may read any case): the coordinator
//! then runs the call itself, through the remote door, as before.
//!
//! Citus's own delegation (create_distributed_function) was tried first: it delegates only
//! outside transaction blocks, its forced mode fails `SELECT … FROM transition_case(…)`
//! and every read of another case, and the outbox's NOTIFY would be sent on the worker.
//!
//! Citus reaches the worker as the functions' owner (they are SECURITY DEFINER), so the
//! caller's identity is an argument: the worker checks and records the coordinator's
//! session user. Outbox notifications are handed back and sent on the coordinator, where
//! the listeners are; a worker cannot send them (its transaction may be prepared, and
//! PREPARE refuses a transaction that notified).

use crate::fmgr::{Args, SmResult};
use crate::spi::{Rows, Spi, Stmt, BOOL, INT8, JSONB, TEXT, UUID, UUID_ARRAY};
use crate::srf::Cell as Out;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use statemachine_core::{CaseFacts, Refusal, Report};
use std::cell::{Cell, RefCell};
use std::ffi::CString;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

/// A delegated call running in this backend.
struct Delegated {
    caller: String,
    caller_oid: pg_sys::Oid,
    /// NOTIFY payloads of the outbox events written, for the coordinator to send.
    notifications: Vec<String>,
    /// The call needs other cases: nothing was written, the coordinator runs it.
    sent_back: bool,
}

/// `statemachine.delegate_calls` (default on): off sends every call through the coordinator
/// (the remote door), as before 0.7.0 — to compare, or to rule delegation out.
static mut DELEGATE_CALLS: bool = true;

/// Defines `statemachine.delegate_calls` (from _PG_init).
pub fn define_setting() {
    // SAFETY: called once from _PG_init; the names and descriptions are static strings,
    // DELEGATE_CALLS is the static the GUC machinery keeps the value in.
    unsafe {
        pg_sys::DefineCustomBoolVariable(
            c"statemachine.delegate_calls".as_ptr(),
            c"Run the calls on one case on the worker that holds it (distributed, command_scope case).".as_ptr(),
            c"Off: every call runs from the coordinator, writing through the remote door.".as_ptr(),
            &raw mut DELEGATE_CALLS,
            true,
            pg_sys::GucContext::PGC_USERSET,
            0,
            None,
            None,
            None,
        );
    }
}

thread_local! {
    static HERE: RefCell<Option<Delegated>> = const { RefCell::new(None) };
    /// The SQLSTATE of the latest error raised under [`keeping_sqlstate`].
    static LAST_SQLSTATE: Cell<i32> = const { Cell::new(0) };
}

/// A delegated call is running in this backend.
pub fn here() -> bool {
    HERE.with(|h| h.borrow().is_some())
}

/// This backend was opened by Citus for a session on another node (the executor's
/// connections, run_command_on_*, a query pushed down to the shards): the application_name
/// it started with says so — the setting's reset value, which a SET does not change.
pub fn relayed_by_citus() -> bool {
    // SAFETY: looks up a built-in setting by name; the result is the GUC machinery's own
    // NUL-terminated string (or NULL), read at once.
    let name = unsafe {
        let p = pg_sys::GetConfigOptionResetString(c"application_name".as_ptr());
        if p.is_null() {
            return false;
        }
        std::ffi::CStr::from_ptr(p).to_bytes()
    };
    [&b"citus_internal gpid="[..], b"citus_run_command gpid=", b"citus_rebalancer gpid="].iter().any(|p| name.starts_with(p))
}

/// Refuses (42501) to take a relayed backend's session user for the caller: Citus opens it
/// as whatever role the session on the other node had SET ROLE to, so a member of a LOGIN
/// role would act as that role here. Delegated calls carry their caller instead. A
/// parallel worker is refused too: it does not inherit its leader's startup
/// application_name, and no function that needs the caller is parallel safe.
pub fn refuse_relayed_identity() {
    // SAFETY: reads the backend's parallel-worker globals (set before any SQL runs in one).
    let parallel = unsafe { pg_sys::ParallelWorkerNumber >= 0 || pg_sys::InitializingParallelWorker };
    let (message, detail) = if parallel {
        (
            "a parallel worker has no caller of its own",
            "The extension's functions are not parallel safe; called from a parallel worker (through a function declared PARALLEL SAFE), the session is not the caller's.",
        )
    } else if relayed_by_citus() {
        (
            "a call relayed by Citus from another node has no caller of its own",
            "This session was opened by Citus for a session on another node (run_command_on_workers, a query pushed down to the shards) as the role that session had set; the extension does not take its user for the caller.",
        )
    } else {
        return;
    };
    pgrx::pg_sys::panic::ErrorReport::new(pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, message, "pg_statemachine")
        .set_detail(detail)
        .set_hint("Call the function on the coordinator, or on a node you connect to yourself, outside parallel query.")
        .report(pgrx::PgLogLevel::ERROR);
}

/// The session user the delegated call running here was made by (None: not delegated).
pub fn caller() -> Option<(pg_sys::Oid, String)> {
    HERE.with(|h| h.borrow().as_ref().map(|d| (d.caller_oid, d.caller.clone())))
}

/// The delegated call running here cannot be done on this node: it is sent back (the
/// caller returns at once, having written nothing).
pub fn send_back() -> pg_sys::Datum {
    HERE.with(|h| {
        if let Some(d) = h.borrow_mut().as_mut() {
            d.sent_back = true;
        }
    });
    pg_sys::Datum::from(0usize)
}

/// Keeps the NOTIFY payloads of the delegated call running here, for the node it came
/// through (outbox::emit asks only when [`here`]).
pub fn keep_notifications(payloads: Vec<String>) {
    HERE.with(|h| {
        if let Some(d) = h.borrow_mut().as_mut() {
            d.notifications.extend(payloads);
        }
    });
}

/// Does this call run on the case's node? (Not when it already runs there, and not a
/// write in a read-only transaction: Citus passes a transaction's read-only mode to the
/// workers only for `BEGIN READ ONLY`, so the coordinator runs it and refuses it, 25006.)
fn delegating(writes: bool) -> bool {
    // SAFETY: the GUC machinery's bool and the transaction's read-only flag, read in this
    // backend's only thread.
    let (delegate, read_only) = unsafe { (DELEGATE_CALLS, pg_sys::XactReadOnly) };
    delegate && !(writes && read_only) && !here() && crate::remote_door::commands_per_case()
}

/// Runs a statement routed to the case's node (`$1` the case): the call's first `n`
/// arguments, then `extra`, then the caller. SM SQLSTATEs raised there are kept. A call
/// that writes makes the worker's part of the caller's transaction first: Citus would
/// otherwise run a lone SELECT on the worker in a transaction of its own, committed
/// before the caller's (and a statement making two calls could half succeed).
fn route<'s>(spi: &'s Spi, stmt: &'static Stmt, a: &Args, n: usize, extra: &[Option<pg_sys::Datum>], writes: bool) -> SmResult<Rows<'s>> {
    if writes {
        crate::remote_door::use_coordinated_transaction();
    }
    let mut args: Vec<Option<pg_sys::Datum>> = (0..n).map(|i| a.datum(i)).collect();
    args.extend_from_slice(extra);
    args.push(Some(crate::fmgr::text_datum(&crate::facts::session_user())));
    keeping_sqlstate(|| spi.run(stmt, &args, 0))
}

/// A delegated write's statement opens with an UPDATE of no row (state_version is never
/// negative) on the case's shard: Citus counts a routed SELECT as a read, and a reader's
/// failed commit is only a warning while the caller's transaction commits. The UPDATE makes
/// the statement a write: the worker's commit failing fails the caller's, two workers
/// written commit with 2PC.
macro_rules! written {
    ($select:expr) => {
        concat!("WITH written AS (UPDATE ONLY statemachine.case_file w SET metadata = w.metadata \
                 WHERE w.id OPERATOR(pg_catalog.=) $1 AND w.state_version OPERATOR(pg_catalog.<) 0 RETURNING 1) ", $select)
    };
}

/// `SELECT $cols` of `statemachine.$call` joined to the case's row `$1`: Citus routes it to
/// the case's shard, and the function runs there only if the case does.
macro_rules! routed {
    ($cols:literal, $call:literal) => {
        concat!("SELECT ", $cols, " FROM ONLY statemachine.case_file c, LATERAL statemachine.", $call,
                " d WHERE c.id OPERATOR(pg_catalog.=) $1")
    };
}

/// The coordinator's side of transition_case / transition_to: their arguments 0-11, by
/// state, and the caller. No row: no such case there.
static DELEGATE_TRANSITION: Stmt = Stmt {
    sql: written!(routed!("d.transition, d.notifications",
        "transition_on_shard(c.id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)")),
    args: &[UUID, TEXT, UUID, TEXT, UUID, TEXT, TEXT, INT8, UUID_ARRAY, UUID, UUID, JSONB, BOOL, TEXT],
};
static DELEGATE_EVIDENCE: Stmt = Stmt {
    sql: written!(routed!("d", "add_evidence_on_shard(c.id, $2, $3, $4, $5, $6)")),
    args: &[UUID, TEXT, TEXT, TEXT, UUID, TEXT],
};
static DELEGATE_ASSIGN: Stmt = Stmt {
    sql: written!(routed!("ROW(d.*)::statemachine.case_assignment", "assign_case_on_shard(c.id, $2, $3, $4, $5, $6, $7)")),
    args: &[UUID, UUID, TEXT, UUID, UUID, TEXT, TEXT],
};
static DELEGATE_RELEASE: Stmt = Stmt {
    sql: written!(routed!("ROW(d.*)::statemachine.case_assignment_release", "release_assignment_on_shard(c.id, $2, $3, $4, $5, $6, $7)")),
    args: &[UUID, UUID, TEXT, UUID, UUID, TEXT, TEXT],
};
static DELEGATE_CHECK: Stmt = Stmt {
    sql: routed!("d.check_name, d.passed, d.detail", "check_transition_on_shard(c.id, $2, $3, $4, $5, $6, $7, $8)"),
    args: &[UUID, TEXT, UUID, TEXT, TEXT, TEXT, UUID_ARRAY, TEXT],
};
static DELEGATE_AVAILABLE: Stmt = Stmt {
    sql: routed!("d.transition_code, d.to_state, d.requires_reason, d.requires_evidence, d.allowed, d.blocked_by",
        "available_transitions_on_shard(c.id, $2, $3, $4)"),
    args: &[UUID, TEXT, UUID, TEXT],
};

/// Runs a transition on the case's node when this installation delegates: its history
/// row, or None when the coordinator must run it (not delegating, no such case, sent back).
pub fn transition(a: &Args, by_state: bool) -> SmResult<Option<pg_sys::Datum>> {
    if !delegating(true) {
        return Ok(None);
    }
    let spi = Spi::connect();
    let rows = route(&spi, &DELEGATE_TRANSITION, a, 12, &[Some(pg_sys::Datum::from(by_state))], true)?;
    let Some(row) = rows.get(0, 1) else { return Ok(None) };
    let row = spi.keep(row);
    if let Some(payloads) = rows.get(0, 2) {
        crate::outbox::notify_payloads(&spi, payloads);
    }
    Ok(Some(row))
}

/// add_evidence on the case's node: the evidence id, or None (not delegating, no such case).
pub fn add_evidence(a: &Args) -> SmResult<Option<[u8; 16]>> {
    if !delegating(true) {
        return Ok(None);
    }
    let spi = Spi::connect();
    Ok(route(&spi, &DELEGATE_EVIDENCE, a, 5, &[], true)?.uuid(0, 1))
}

/// assign_case / release_assignment on the case's node: the row, or None (not
/// delegating, no such case).
pub fn assignment(a: &Args, release: bool) -> SmResult<Option<pg_sys::Datum>> {
    if !delegating(true) {
        return Ok(None);
    }
    let spi = Spi::connect();
    let rows = route(&spi, if release { &DELEGATE_RELEASE } else { &DELEGATE_ASSIGN }, a, 6, &[], true)?;
    Ok(rows.get(0, 1).map(|row| spi.keep(row)))
}

/// check_transition / available_transitions on the case's node, its rows made this call's
/// result: true, or false when the coordinator must answer (not delegating, no such case,
/// sent back: a first row whose first column is NULL).
pub fn read(a: &Args, available: bool) -> SmResult<bool> {
    if !delegating(false) {
        return Ok(false);
    }
    let spi = Spi::connect();
    let rows = if available { route(&spi, &DELEGATE_AVAILABLE, a, 3, &[], false)? } else { route(&spi, &DELEGATE_CHECK, a, 7, &[], false)? };
    if rows.get(0, 1).is_none() {
        return Ok(false);
    }
    // SAFETY: both statements select exactly the columns of the function they answer for.
    unsafe { crate::srf::return_tuples(a, &rows) };
    Ok(true)
}

/// Runs `body` here as the delegated call of the caller named by argument `caller_arg`:
/// its result, whether it was sent back, and the NOTIFY payloads it kept.
fn as_delegated<R>(a: &Args, caller_arg: usize, body: impl FnOnce() -> SmResult<R>) -> SmResult<(R, bool, Vec<String>)> {
    // First: even reading the installation's settings is a distributed statement.
    let _nested = NestedExecution::allow();
    if !crate::remote_door::commands_per_case() {
        return Err(Refusal::NotDelegating.report(&CaseFacts::default()));
    }
    let caller = a.text(caller_arg, "caller")?;
    let caller_oid = role_oid(&caller)?;
    HERE.with(|h| *h.borrow_mut() = Some(Delegated { caller, caller_oid, notifications: Vec::new(), sent_back: false }));
    let _here = Leave;
    let result = body()?;
    let (sent_back, notifications) =
        HERE.with(|h| h.borrow_mut().as_mut().map(|d| (d.sent_back, std::mem::take(&mut d.notifications))).unwrap_or_default());
    Ok((result, sent_back, notifications))
}

/// The worker's side, statemachine.transition_on_shard: the arguments of transition_case
/// (0-11), 12: by state (transition_to), 13: the caller. Returns (history row,
/// notifications), both NULL when sent back.
fn transition_on_shard(a: &Args) -> SmResult<pg_sys::Datum> {
    let by_state = a.opt_bool(12) == Some(true);
    let (row, sent_back, notifications) = as_delegated(a, 13, || crate::transition::on_this_node(a, by_state))?;
    if sent_back {
        return Ok(record(a, None, None));
    }
    Ok(record(a, Some(row), pgrx::IntoDatum::into_datum(notifications)))
}

fn add_evidence_on_shard(a: &Args) -> SmResult<pg_sys::Datum> {
    Ok(as_delegated(a, 5, || crate::evidence::add_evidence_here(a))?.0)
}

fn assign_case_on_shard(a: &Args) -> SmResult<pg_sys::Datum> {
    Ok(as_delegated(a, 6, || crate::assignments::assign_case_here(a))?.0)
}

fn release_assignment_on_shard(a: &Args) -> SmResult<pg_sys::Datum> {
    Ok(as_delegated(a, 6, || crate::assignments::release_assignment_here(a))?.0)
}

/// The read side: a sent-back call answers one row of NULLs.
fn check_transition_on_shard(a: &Args) -> SmResult<pg_sys::Datum> {
    let (rows, ..) = as_delegated(a, 7, || crate::available::check_rows(a))?;
    // SAFETY: declared RETURNS TABLE(check_name text, passed boolean, detail text).
    unsafe { crate::srf::return_rows(a, &rows.unwrap_or_else(|| vec![vec![Out::Null, Out::Null, Out::Null]])) };
    Ok(pg_sys::Datum::from(0usize))
}

fn available_transitions_on_shard(a: &Args) -> SmResult<pg_sys::Datum> {
    let (rows, ..) = as_delegated(a, 3, || crate::available::available_rows(a))?;
    // SAFETY: declared RETURNS TABLE(transition_code text, to_state text, requires_reason
    // boolean, requires_evidence boolean, allowed boolean, blocked_by text).
    unsafe { crate::srf::return_rows(a, &rows.unwrap_or_else(|| vec![(0..6).map(|_| Out::Null).collect()])) };
    Ok(pg_sys::Datum::from(0usize))
}

crate::sql_function!(sm_add_evidence_on_shard, pg_finfo_sm_add_evidence_on_shard, add_evidence_on_shard);
crate::sql_function!(sm_assign_case_on_shard, pg_finfo_sm_assign_case_on_shard, assign_case_on_shard);
crate::sql_function!(sm_release_assignment_on_shard, pg_finfo_sm_release_assignment_on_shard, release_assignment_on_shard);
crate::sql_function!(sm_check_transition_on_shard, pg_finfo_sm_check_transition_on_shard, check_transition_on_shard);
crate::sql_function!(sm_available_transitions_on_shard, pg_finfo_sm_available_transitions_on_shard, available_transitions_on_shard);
crate::sql_function!(sm_transition_on_shard, pg_finfo_sm_transition_on_shard, transition_on_shard);

/// Ends the delegated call (also when an error unwinds through it).
struct Leave;
impl Drop for Leave {
    fn drop(&mut self) {
        HERE.with(|h| *h.borrow_mut() = None);
    }
}

/// The role called `name` on this node (Citus creates roles on every node).
fn role_oid(name: &str) -> SmResult<pg_sys::Oid> {
    let c_name = CString::new(name).map_err(|_| {
        Refusal::InvalidArgument { name: "caller".into(), problem: "contains a NUL byte".into() }.report(&CaseFacts::default())
    })?;
    // SAFETY: a catalog lookup by name inside a transaction; missing_ok = false raises
    // 42704 for a role this node does not have.
    Ok(unsafe { pg_sys::get_role_oid(c_name.as_ptr(), false) })
}

/// `citus.allow_nested_distributed_execution` on for the delegated call only, and local
/// execution on (a session that turned it off would send the call's own statements over
/// a connection, where its door is not): a GUC nest level, undone when dropped (an
/// error's rollback undoes it otherwise).
struct NestedExecution(i32);

impl NestedExecution {
    fn allow() -> NestedExecution {
        // SAFETY: what fmgr does for a function's SET clause: a new GUC nest level and a
        // SAVE-action setting, popped by AtEOXact_GUC in Drop; the strings are static.
        unsafe {
            let level = pg_sys::NewGUCNestLevel();
            for name in [c"citus.allow_nested_distributed_execution", c"citus.enable_local_execution"] {
                pg_sys::set_config_option(
                    name.as_ptr(),
                    c"on".as_ptr(),
                    pg_sys::GucContext::PGC_USERSET,
                    pg_sys::GucSource::PGC_S_SESSION,
                    pg_sys::GucAction::GUC_ACTION_SAVE,
                    true,
                    0,
                    false,
                );
            }
            NestedExecution(level)
        }
    }
}

impl Drop for NestedExecution {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            // SAFETY: pops exactly the nest level allow() pushed (an unwinding error leaves
            // it to the (sub)transaction's abort, which pops it).
            unsafe { pg_sys::AtEOXact_GUC(true, self.0) };
        }
    }
}

/// The function's result record (its OUT parameters) from `values` (None: NULL).
fn record(a: &Args, transition: Option<pg_sys::Datum>, notifications: Option<pg_sys::Datum>) -> pg_sys::Datum {
    // SAFETY: the function is declared with OUT parameters (a composite result), which
    // get_call_result_type describes; the tuple is formed in the call's memory context.
    unsafe {
        let mut desc: pg_sys::TupleDesc = std::ptr::null_mut();
        let kind = pg_sys::get_call_result_type(a.fcinfo(), std::ptr::null_mut(), &mut desc);
        assert!(kind == pg_sys::TypeFuncClass::TYPEFUNC_COMPOSITE && !desc.is_null(), "transition_on_shard returns a record");
        let desc = pg_sys::BlessTupleDesc(desc);
        let mut values = [transition.unwrap_or(pg_sys::Datum::from(0usize)), notifications.unwrap_or(pg_sys::Datum::from(0usize))];
        let mut nulls = [transition.is_none(), notifications.is_none()];
        let tuple = pg_sys::heap_form_tuple(desc, values.as_mut_ptr(), nulls.as_mut_ptr());
        pg_sys::HeapTupleHeaderGetDatum((*tuple).t_data)
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn note_sqlstate(_arg: *mut std::ffi::c_void) {
    // SAFETY: called by errfinish for the error being raised, where geterrcode is valid.
    LAST_SQLSTATE.with(|c| c.set(unsafe { pg_sys::geterrcode() }));
}

/// Runs `f`; an error it raises with an SM SQLSTATE (a refusal on the worker, re-raised
/// here by Citus) becomes that refusal again. pgrx knows only PostgreSQL's own codes and
/// would report it as XX000: the code is noted by an error context callback, which
/// errfinish calls before the error leaves. Any other error goes on unchanged.
fn keeping_sqlstate<R>(f: impl FnOnce() -> R) -> SmResult<R> {
    let mut callback = pg_sys::ErrorContextCallback {
        // SAFETY: reading the backend's error context stack.
        previous: unsafe { pg_sys::error_context_stack },
        callback: Some(note_sqlstate),
        arg: std::ptr::null_mut(),
    };
    LAST_SQLSTATE.with(|c| c.set(0));
    // SAFETY: the callback lives on this frame until it is popped below, on both paths
    // (pgrx restores the stack as it was at its FFI boundary, with the callback on top).
    unsafe { pg_sys::error_context_stack = &mut callback };
    let result = catch_unwind(AssertUnwindSafe(f));
    // SAFETY: pops the callback pushed above.
    unsafe { pg_sys::error_context_stack = callback.previous };
    match result {
        Ok(r) => Ok(r),
        Err(payload) => {
            let sqlstate = crate::ereport::unpack_sqlstate(LAST_SQLSTATE.with(Cell::get));
            if let (true, Some(CaughtError::PostgresError(e))) = (sqlstate.starts_with("SM"), payload.downcast_ref::<CaughtError>()) {
                return Err(Report {
                    sqlstate,
                    message: e.message().to_owned(),
                    detail: e.detail().map(str::to_owned),
                    hint: e.hint().map(str::to_owned),
                    context: None,
                });
            }
            resume_unwind(payload)
        }
    }
}
