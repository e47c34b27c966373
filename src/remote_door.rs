//! The remote door (distributed installations, statemachine.distribute()): the write
//! path's door carried to the other nodes of a Citus cluster.
//!
//! On one node the door is this backend's memory (door.rs). On Citus the rows a write
//! path writes may live on other nodes, written by Citus's connections in backends of
//! their own. While a door is open there, the write path sets `statemachine.remote_door`
//! to a token signed with the installation secret and bound to the distributed
//! transaction (core's door_token); Citus propagates the `SET LOCAL` to every
//! connection of the transaction, open or opened later. The guard trigger on the node
//! that holds a row (a shard or a reference-table placement) admits the write when the
//! token verifies, names this distributed transaction, grants the table and operation,
//! and has not been replaced since (a replaced token is burnt for the transaction, so
//! setting it again opens nothing). When the write path's door closes the setting is
//! cleared the same way; an error rolls it back with the (sub)transaction.
//!
//! Nothing here runs on an installation that is not distributed.

use crate::door::{Grant, Op};
use crate::spi::{Spi, Stmt, TEXT};
use crate::fmgr::text_datum;
use pgrx::pg_sys;
use statemachine_core::door_token::{nonce_of, Token};
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::ffi::{c_char, CStr};

/// The setting's storage (PostgreSQL's GUC machinery owns the string).
static mut REMOTE_DOOR: *mut c_char = std::ptr::null_mut();

thread_local! {
    /// Whether this installation is distributed, per transaction (None: not looked yet),
    /// and whether its command ids are unique per case only.
    static DISTRIBUTED: Cell<Option<bool>> = const { Cell::new(None) };
    /// Once seen distributed, an installation stays so (there is no way back, and the
    /// command scope is chosen once), so a backend looks only until it has seen it.
    static SEEN_DISTRIBUTED: Cell<bool> = const { Cell::new(false) };
    static CASE_SCOPE: Cell<bool> = const { Cell::new(false) };
    /// The installation secret (one row, never changes once written).
    static SECRET: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    /// The setting's value as last assigned, and the nonces of replaced tokens.
    static ASSIGNED: RefCell<String> = const { RefCell::new(String::new()) };
    /// Keyed by the local transaction they belong to: a burn the GUC machinery makes
    /// while a transaction ends (restoring the setting) must not outlive it.
    static BURNT: RefCell<(u32, HashSet<String>)> = RefCell::new((0, HashSet::new()));
    /// The last token text that verified in this transaction, and what it grants.
    static VERIFIED: RefCell<Option<(String, Token)>> = const { RefCell::new(None) };
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn assign_remote_door(newval: *const c_char, _extra: *mut std::ffi::c_void) {
    // An assign hook must not fail: no allocation that can raise, no SQL.
    let new = if newval.is_null() {
        String::new()
    } else {
        // SAFETY: the GUC machinery passes a NUL-terminated string.
        unsafe { CStr::from_ptr(newval) }.to_string_lossy().into_owned()
    };
    ASSIGNED.with(|a| {
        let mut a = a.borrow_mut();
        if *a != new {
            if let Some(nonce) = nonce_of(&a) {
                let lxid = local_transaction();
                BURNT.with(|b| {
                    let mut b = b.borrow_mut();
                    if b.0 != lxid {
                        *b = (lxid, HashSet::new());
                    }
                    b.1.insert(nonce.to_string());
                });
            }
            *a = new;
        }
    });
}

/// This backend's local transaction id (0 outside a transaction).
fn local_transaction() -> u32 {
    // SAFETY: MyProc is this backend's PGPROC, valid for the backend's life once set; its
    // lxid is a plain field.
    unsafe {
        let proc_ = pg_sys::MyProc;
        if proc_.is_null() { 0 } else { (*proc_).lxid }
    }
}

/// Defines `statemachine.remote_door` (from _PG_init).
pub fn define_setting() {
    // SAFETY: called once from _PG_init; the names and descriptions are static strings,
    // REMOTE_DOOR is the static the GUC machinery keeps the value in.
    unsafe {
        pg_sys::DefineCustomStringVariable(
            c"statemachine.remote_door".as_ptr(),
            c"Internal: the write path's door on the other nodes of a distributed installation.".as_ptr(),
            c"Set by the extension only; any other value opens nothing.".as_ptr(),
            &raw mut REMOTE_DOOR,
            c"".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            (pg_sys::GUC_NO_SHOW_ALL | pg_sys::GUC_NOT_IN_SAMPLE) as i32,
            None,
            Some(assign_remote_door),
            None,
        );
    }
}

/// The installation is distributed (citus is installed and case_file is one of its
/// tables); looked up once per transaction.
pub fn distributed() -> bool {
    if SEEN_DISTRIBUTED.with(Cell::get) {
        return true;
    }
    if let Some(d) = DISTRIBUTED.with(Cell::get) {
        return d;
    }
    // SAFETY: a catalog lookup by name; missing_ok returns InvalidOid.
    let citus = unsafe { pg_sys::get_extension_oid(c"citus".as_ptr(), true) } != pg_sys::InvalidOid;
    let (d, case_scope) = if citus {
        let spi = Spi::connect();
        let d = spi.run(&IS_DISTRIBUTED, &[], 1).bool(0, 1).unwrap_or(false);
        // (installation_setting exists from 0.6.0, which any distributed installation runs.)
        (d, d && spi.run(&CASE_SCOPE_SET, &[], 1).bool(0, 1).unwrap_or(false))
    } else {
        (false, false)
    };
    DISTRIBUTED.with(|c| c.set(Some(d)));
    CASE_SCOPE.with(|c| c.set(case_scope));
    // Kept past this transaction once it has committed (at_transaction_end).
    d
}

/// A distributed installation whose command ids are unique per case only
/// (`distribute(command_scope => 'case')`): no look across the shards (commands.rs).
pub fn commands_per_case() -> bool {
    distributed() && CASE_SCOPE.with(Cell::get)
}

static IS_DISTRIBUTED: Stmt = Stmt {
    sql: "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p \
                          WHERE p.logicalrelid OPERATOR(pg_catalog.=) 'statemachine.case_file'::pg_catalog.regclass)",
    args: &[],
};
static CASE_SCOPE_SET: Stmt = Stmt {
    sql: "SELECT EXISTS (SELECT 1 FROM ONLY statemachine.installation_setting s \
                          WHERE s.name OPERATOR(pg_catalog.=) 'command_scope' AND s.value OPERATOR(pg_catalog.=) 'case')",
    args: &[],
};

/// The installation secret, read as the table's owner (the write path and the guard run
/// as their caller, who may not read it).
fn secret() -> Vec<u8> {
    if let Some(s) = SECRET.with(|s| s.borrow().clone()) {
        return s;
    }
    // SAFETY: the standard temporary user switch (as RI triggers do), restored below;
    // an error in between aborts the transaction, which restores it too.
    let s = unsafe {
        let mut saved_user = pg_sys::InvalidOid;
        let mut saved_context = 0;
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        let owner = table_owner();
        pg_sys::SetUserIdAndSecContext(owner, saved_context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
        let secret = crate::bulk::installation_secret(&Spi::connect());
        pg_sys::SetUserIdAndSecContext(saved_user, saved_context);
        secret
    };
    if !s.is_empty() {
        SECRET.with(|c| *c.borrow_mut() = Some(s.clone()));
    }
    s
}

/// The current user is the extension's owner or a superuser.
fn trusted_user() -> bool {
    // SAFETY: reads the current user id and looks up catalog rows by oid.
    unsafe {
        let user = pg_sys::GetUserId();
        pg_sys::superuser_arg(user) || user == table_owner()
    }
}

/// The owner of statemachine.installation_secret (the extension's owner).
///
/// # Safety
/// Inside a transaction.
unsafe fn table_owner() -> pg_sys::Oid {
    // SAFETY: catalog lookups by name; a missing relation yields InvalidOid, for which
    // the bootstrap superuser stands in (the read then finds what it finds).
    unsafe {
        let ns = pg_sys::get_namespace_oid(c"statemachine".as_ptr(), true);
        let rel = pg_sys::get_relname_relid(c"installation_secret".as_ptr(), ns);
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::RELOID as i32, pg_sys::Datum::from(rel));
        if tuple.is_null() {
            return pg_sys::BOOTSTRAP_SUPERUSERID.into();
        }
        let form = pgrx::pg_sys::GETSTRUCT(tuple) as *mut pg_sys::FormData_pg_class;
        let owner = (*form).relowner;
        pg_sys::ReleaseSysCache(tuple);
        owner
    }
}

/// Citus's distributed transaction id as this node sees it: (initiator, number, stamp µs).
static TRANSACTION: Stmt = Stmt {
    sql: "SELECT t.initiator_node_identifier, t.transaction_number::pg_catalog.int8, \
                 COALESCE((pg_catalog.extract('epoch', t.transaction_stamp) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8, 0) \
            FROM pg_catalog.get_current_transaction_id() t",
    args: &[],
};

fn current_transaction(spi: &Spi) -> (i32, u64, i64) {
    let rows = spi.run(&TRANSACTION, &[], 1);
    (rows.i32(0, 1).unwrap_or(0), rows.i64(0, 2).unwrap_or(0) as u64, rows.i64(0, 3).unwrap_or(0))
}

/// Makes Citus give this transaction its distributed id now (as it does before its first
/// remote command), so the token names the id the other nodes will see.
pub(crate) fn use_coordinated_transaction() {
    // SAFETY: looks the symbol up in citus's library (loaded: citus is preloaded on every
    // node of a cluster); UseCoordinatedTransaction takes and returns nothing, and is what
    // Citus itself calls before its first remote command of a transaction.
    unsafe {
        let f = pg_sys::load_external_function(c"citus".as_ptr(), c"UseCoordinatedTransaction".as_ptr(), true, std::ptr::null_mut());
        if !f.is_null() {
            let f: unsafe extern "C" fn() = std::mem::transmute(f);
            f();
        }
    }
}

/// Sets the remote door to `value` through Citus's SET LOCAL propagation.
static SET_DOOR: Stmt = Stmt { sql: "SELECT statemachine.remote_door_set($1)", args: &[TEXT] };

fn op_char(op: Op) -> char {
    match op {
        Op::Insert => 'I',
        Op::Update => 'U',
        Op::Delete => 'D',
    }
}

/// Publishes a token granting `grants` (None: everything, for distribute()) for the rest
/// of this transaction or until [`close`].
pub fn publish(grants: Option<&[&'static [Grant]]>) {
    let spi = Spi::connect();
    use_coordinated_transaction();
    let (initiator, transaction, stamp) = current_transaction(&spi);
    let mut grants: Vec<(String, char)> = match grants {
        None => vec![("*".to_string(), '*')],
        Some(stacks) => stacks.iter().flat_map(|g| g.iter()).map(|(t, op)| (t.to_string(), op_char(*op))).collect(),
    };
    // The break-glass exception of this (sub)transaction goes along.
    if crate::door::glass_broken() {
        grants.push(("*".to_string(), 'G'));
    }
    let nonce = statemachine_core::ids::uuid_text(&crate::history::row_id(crate::history::now()));
    let token = Token { initiator, transaction, stamp, nonce, grants }.sign(&secret());
    spi.run(&SET_DOOR, &[Some(text_datum(&token))], 0);
}

/// Clears the remote door (not while an error unwinds: the rollback does it then).
pub fn close() {
    if std::thread::panicking() {
        return;
    }
    if crate::door::glass_broken() {
        // What stays open: the exception, until its (sub)transaction ends.
        publish(Some(&[]));
        return;
    }
    Spi::connect().run(&SET_DOOR, &[Some(text_datum(""))], 0);
}

/// The token the setting carries now, verified for this node's transaction; None when
/// there is none, it does not verify, names another transaction, or was burnt.
fn current_token() -> Option<Token> {
    // The write path's statements reach a worker as the functions' owner (they are
    // SECURITY DEFINER), break_glass's as a superuser. Any other role's session carries no
    // door, whatever it sets: a token it read (citus.log_remote_commands shows them) and a
    // distributed transaction id it took on (assign_distributed_transaction_id is PUBLIC)
    // open nothing for it.
    if !trusted_user() {
        return None;
    }
    // SAFETY: the GUC machinery keeps REMOTE_DOOR a valid string or null.
    let text = unsafe {
        let p = REMOTE_DOOR;
        if p.is_null() {
            return None;
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    };
    if text.is_empty() {
        return None;
    }
    let lxid = local_transaction();
    if BURNT.with(|b| {
        let b = b.borrow();
        b.0 == lxid && nonce_of(&text).is_some_and(|n| b.1.contains(n))
    }) {
        return None;
    }
    if let Some(t) = VERIFIED.with(|v| v.borrow().as_ref().filter(|(s, _)| *s == text).map(|(_, t)| t.clone())) {
        return Some(t);
    }
    let token = Token::verify(&text, &secret())?;
    let spi = Spi::connect();
    let (initiator, transaction, stamp) = current_transaction(&spi);
    drop(spi);
    if transaction == 0 || (token.initiator, token.transaction, token.stamp) != (initiator, transaction, stamp) {
        return None;
    }
    VERIFIED.with(|v| *v.borrow_mut() = Some((text, token.clone())));
    Some(token)
}

/// The verified token of this node's transaction, on a node with Citus (None elsewhere).
fn token_here() -> Option<Token> {
    // SAFETY: a catalog lookup by name; missing_ok returns InvalidOid.
    if unsafe { pg_sys::get_extension_oid(c"citus".as_ptr(), true) } == pg_sys::InvalidOid {
        return None;
    }
    current_token()
}

/// Does a remote door admit `op` on `statemachine.<table>` here?
pub fn admits(table: &str, op: Op) -> bool {
    token_here().is_some_and(|t| t.admits(table, op_char(op)))
}

/// Does a remote door carry the break-glass exception of the transaction here?
pub fn glass() -> bool {
    token_here().is_some_and(|t| t.admits_glass())
}

/// Does a remote door admit the DDL of making shards here (statemachine.distribute())?
pub fn admits_ddl() -> bool {
    token_here().is_some_and(|t| t.admits_ddl())
}

/// Transaction end: forget what was verified, burnt and looked up.
pub fn at_transaction_end(committed: bool) {
    // A distributed installation seen by a committed transaction stays distributed.
    if committed && DISTRIBUTED.with(Cell::get) == Some(true) {
        SEEN_DISTRIBUTED.with(|c| c.set(true));
    }
    DISTRIBUTED.with(|c| c.set(None));
    VERIFIED.with(|v| *v.borrow_mut() = None);
    BURNT.with(|b| *b.borrow_mut() = (0, HashSet::new()));
}

/// Subtransaction rollback: a token verified inside it may have been rolled back.
pub fn at_subtransaction_abort() {
    VERIFIED.with(|v| *v.borrow_mut() = None);
}

/// A Citus shard or placement of an extension table is named `<table>_<shard id>`; the
/// guards treat it as the table it is a copy of (the DDL guard refuses any such table
/// that Citus did not make for statemachine.distribute()).
pub fn base_table(name: &str) -> &str {
    match name.rsplit_once('_') {
        Some((base, digits)) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && !base.is_empty() => base,
        _ => name,
    }
}

/// statemachine.distribute() changed the answer of [`distributed`] for this transaction.
pub fn forget_distributed() {
    DISTRIBUTED.with(|c| c.set(None));
}

/// On a distributed installation, makes the rest of the transaction reach each node over
/// one connection: a write to a reference table (a definition) may not follow a read that
/// used several connections to a node (Citus refuses it), as retire_version's count of a
/// version's cases and migrate_cases' reads of its cases would.
pub fn one_connection_per_node() {
    if distributed() {
        Spi::connect().run(&SEQUENTIAL, &[], 1);
    }
}

static SEQUENTIAL: Stmt = Stmt {
    sql: "SELECT pg_catalog.set_config('citus.multi_shard_modify_mode', 'sequential', true)",
    args: &[],
};
