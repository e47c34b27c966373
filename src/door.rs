//! The write door: backend-local state that only this crate's Rust code can change.
//!
//! The guard triggers let a write through only while the write path holds the door open
//! **for that table and that operation**: each write path opens it for exactly the
//! writes it is about to make ([`open`] with a list of [`Grant`]s), around its own
//! statements. So code that is not the write path's — a rule, a trigger, a default —
//! cannot use an open door to write anywhere else. No GUC, function or session variable
//! touches it. It closes when the RAII value drops, also when a Postgres error unwinds
//! through the write path, and, belt and braces, on (sub)transaction abort.
//!
//! A governed table (a user's) has a door of its own, [`open_mirror`]: it admits the write
//! path's write of one value into one row's state column, nothing else.
//!
//! The one audited exception is break_glass(): it records itself append-only and then
//! admits direct writes (and DDL on the extension's objects) for the rest of its
//! (sub)transaction — a fact of this backend's memory, dropped when the subtransaction
//! that broke the glass rolls back and when the transaction ends. No row can stand in
//! for it: a break_glass_event row copied in from elsewhere opens nothing.

use pgrx::pg_sys;
use std::cell::{Cell, RefCell};

/// A write the door admits: (table of schema statemachine, operation).
pub type Grant = (&'static str, Op);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    Insert,
    Update,
    Delete,
}

thread_local! {
    /// The grants of every open door (nested write paths stack).
    static OPEN: RefCell<Vec<&'static [Grant]>> = const { RefCell::new(Vec::new()) };
    /// The subtransaction that called break_glass() (or the one it was merged into).
    static GLASS: Cell<Option<pg_sys::SubTransactionId>> = const { Cell::new(None) };
    /// (governed table, key, value) the write path is writing into a governed table's
    /// state column right now (nested writes stack).
    static MIRROR: RefCell<Vec<(pg_sys::Oid, String, String)>> = const { RefCell::new(Vec::new()) };
    /// govern_table is putting its trigger on a table (the DDL guard lets that through).
    static GOVERNING: Cell<bool> = const { Cell::new(false) };
    /// statemachine.distribute() is making the installation distributed.
    static DISTRIBUTING: Cell<bool> = const { Cell::new(false) };
    /// How many SQL guard functions are running (nested evaluations count).
    static IN_GUARD: Cell<u32> = const { Cell::new(0) };
}

/// Is the door open for `op` on `statemachine.<table>`?
pub fn admits(table: &str, op: Op) -> bool {
    OPEN.with(|o| o.borrow().iter().any(|grants| grants.iter().any(|(t, g)| *g == op && *t == table)))
}

/// Holds the door open for its grants until dropped.
#[must_use]
pub struct Open {
    depth: usize,
    /// The door was carried to the other nodes (remote_door.rs).
    remote: bool,
}

pub fn open(grants: &'static [Grant]) -> Open {
    let depth = OPEN.with(|o| {
        let mut o = o.borrow_mut();
        o.push(grants);
        o.len() - 1
    });
    // On a distributed installation the rows may live on other nodes: carry the door
    // there (remote_door.rs).
    // (A call delegated to this node writes only here: delegation.rs.)
    let remote = crate::remote_door::distributed() && !crate::delegation::here();
    if remote {
        crate::remote_door::publish(Some(&open_grants()));
    }
    Open { depth, remote }
}

/// The grants of every open door (what a remote door carries).
fn open_grants() -> Vec<&'static [Grant]> {
    OPEN.with(|o| o.borrow().clone())
}

impl Drop for Open {
    fn drop(&mut self) {
        // Truncate, not pop: a (sub)transaction abort may already have closed the door.
        OPEN.with(|o| o.borrow_mut().truncate(self.depth));
        if self.remote {
            let stack = open_grants();
            if stack.is_empty() {
                crate::remote_door::close();
            } else if !std::thread::panicking() {
                crate::remote_door::publish(Some(&stack));
            }
        }
    }
}

/// Holds the door of a governed table open for exactly one row's state column and one
/// value, until dropped.
#[must_use]
pub struct MirrorOpen {
    depth: usize,
}

pub fn open_mirror(table: pg_sys::Oid, key: String, value: String) -> MirrorOpen {
    MIRROR.with(|m| {
        let mut m = m.borrow_mut();
        let depth = m.len();
        m.push((table, key, value));
        MirrorOpen { depth }
    })
}

impl Drop for MirrorOpen {
    fn drop(&mut self) {
        // Truncate, not pop: a (sub)transaction abort may already have closed it.
        MIRROR.with(|m| m.borrow_mut().truncate(self.depth));
    }
}

/// Is the door open for writing `value` into the state column of `table`'s row `key`?
pub fn mirror_admits(table: pg_sys::Oid, key: &str, value: &str) -> bool {
    MIRROR.with(|m| m.borrow().iter().any(|(t, k, v)| *t == table && k == key && v == value))
}

/// Held while govern_table creates and enables its trigger on a user's table.
#[must_use]
pub struct Governing(());

pub fn governing() -> Governing {
    GOVERNING.with(|g| g.set(true));
    Governing(())
}

impl Drop for Governing {
    fn drop(&mut self) {
        GOVERNING.with(|g| g.set(false));
    }
}

/// Is govern_table putting its trigger on a table right now?
pub fn is_governing() -> bool {
    GOVERNING.with(Cell::get)
}

/// Held while statemachine.distribute() changes the extension's tables into Citus tables.
#[must_use]
pub struct Distributing(());

pub fn distributing() -> Distributing {
    DISTRIBUTING.with(|d| d.set(true));
    Distributing(())
}

impl Drop for Distributing {
    fn drop(&mut self) {
        DISTRIBUTING.with(|d| d.set(false));
    }
}

/// Is statemachine.distribute() running in this backend?
pub fn is_distributing() -> bool {
    DISTRIBUTING.with(Cell::get)
}

/// Records that the current (sub)transaction broke the glass (see guard::break_glass).
pub fn break_glass() {
    // SAFETY: called from an entry point, inside a transaction.
    GLASS.with(|g| g.set(Some(unsafe { pg_sys::GetCurrentSubTransactionId() })));
}

/// True inside the (sub)transaction that called break_glass(), until it ends or rolls back.
pub fn glass_broken() -> bool {
    GLASS.with(|g| g.get().is_some())
}

/// True while a SQL guard function runs: the write path's functions then refuse (a
/// guard decides; it does not write).
pub fn inside_guard() -> bool {
    IN_GUARD.with(|n| n.get() > 0)
}

/// Marks a SQL guard evaluation until dropped.
#[must_use]
pub struct EvaluatingGuard(());

pub fn evaluating_guard() -> EvaluatingGuard {
    IN_GUARD.with(|n| n.set(n.get() + 1));
    EvaluatingGuard(())
}

impl Drop for EvaluatingGuard {
    fn drop(&mut self) {
        // Saturating: a transaction abort may already have reset the count.
        IN_GUARD.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// Write-path functions refuse to run inside a SQL guard (SM007): a guard decides
/// whether a transition may happen; it must not change anything while doing so.
pub fn refuse_inside_guard(function: &str) -> Result<(), statemachine_core::Report> {
    if inside_guard() {
        let refusal = statemachine_core::Refusal::GuardReentry { function: function.into() };
        return Err(refusal.report(&statemachine_core::CaseFacts::default()));
    }
    Ok(())
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    if matches!(
        event,
        pg_sys::XactEvent::XACT_EVENT_COMMIT
            | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT
            | pg_sys::XactEvent::XACT_EVENT_PREPARE
            | pg_sys::XactEvent::XACT_EVENT_ABORT
            | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT
    ) {
        OPEN.with(|o| o.borrow_mut().clear());
        MIRROR.with(|m| m.borrow_mut().clear());
        IN_GUARD.with(|n| n.set(0));
        GLASS.with(|g| g.set(None));
        DISTRIBUTING.with(|d| d.set(false));
        let committed = matches!(event, pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT);
        crate::remote_door::at_transaction_end(committed);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    mysubid: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    match event {
        pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => {
            OPEN.with(|o| o.borrow_mut().clear());
            crate::remote_door::at_subtransaction_abort();
            MIRROR.with(|m| m.borrow_mut().clear());
            // Subtransaction ids grow within a transaction: one at or above the aborted
            // one was broken inside it (or a child of it), and rolls back with it.
            GLASS.with(|g| {
                if g.get().is_some_and(|broken| broken >= mysubid) {
                    g.set(None);
                }
            });
        }
        // A committed subtransaction's glass now belongs to its parent, so the parent's
        // rollback takes it back too.
        pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => GLASS.with(|g| {
            if g.get() == Some(mysubid) {
                g.set(Some(parent));
            }
        }),
        _ => {}
    }
}

pub fn register_callbacks() {
    // SAFETY: called once from _PG_init; the callbacks are 'static functions with no argument.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}
