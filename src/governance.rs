//! Governed tables: a user's own table whose status column becomes a mirror of its rows'
//! cases (govern_table). Its trigger (`guard_governed_row`, ENABLE ALWAYS) refuses a
//! direct change of the state column or the key (SM007), creates the case of an INSERTed
//! row in the same statement, refuses DELETE of a row whose case is not terminal; the
//! write path writes the column, through the door's mirror (`door::open_mirror`), which
//! admits exactly the (table, key, value) it is writing, whenever a governed case moves.
//!
//! The configuration is cached per backend and dropped by any relcache invalidation
//! (govern_table sends one for statemachine.governed_table; DDL on a governed table sends
//! its own). Un-governing is the audited exception: under break_glass, drop the table or
//! its triggers and delete its statemachine.governed_table row.

use crate::door;
use crate::facts::AsUser;
use crate::fmgr::{datum_text, text_datum, uuid_datum, Args, SmResult};
use crate::spi::{DynStmt, Spi, Stmt, TEXT, UUID};
use crate::{creation, history, machines, sql_function};
use pgrx::pg_sys;
use statemachine_core::{CaseFacts, Refusal};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// One governed table, as the write path and the trigger need it.
pub struct Governed {
    pub relid: pg_sys::Oid,
    /// The table's name as regclass prints it (quoted and qualified as needed).
    pub table: String,
    pub key_column: String,
    pub state_column: String,
    key_attnum: i32,
    state_attnum: i32,
    state_type: pg_sys::Oid,
    /// The table's owner: the mirror write runs with its rights, never the extension's.
    owner: pg_sys::Oid,
    pub machine: String,
    /// Column value (text form) → state; empty: the value is the state code.
    to_state: HashMap<String, String>,
    /// State → column value (text form).
    to_value: HashMap<String, String>,
    /// UPDATE of the mirror: $1 the value (text), $2 the key (text).
    mirror: DynStmt,
}

impl Governed {
    pub fn state_of(&self, value: &str) -> Option<String> {
        if self.to_state.is_empty() {
            Some(value.to_owned())
        } else {
            self.to_state.get(value).cloned()
        }
    }

    pub fn value_of(&self, state: &str) -> String {
        self.to_value.get(state).cloned().unwrap_or_else(|| state.to_owned())
    }
}

static CONFIG: Stmt = Stmt {
    sql: "SELECT g.table_name::pg_catalog.oid::pg_catalog.int8, pg_catalog.format('%I.%I', n.nspname, r.relname), g.key_column::pg_catalog.text, \
                 g.state_column::pg_catalog.text, g.machine, g.state_values::pg_catalog.text, \
                 k.attnum::pg_catalog.int4, s.attnum::pg_catalog.int4, s.atttypid::pg_catalog.int8, \
                 pg_catalog.format('%I.%I', kn.nspname, kt.typname), pg_catalog.format('%I.%I', sn.nspname, st.typname), \
                 r.relowner::pg_catalog.int8 \
          FROM ONLY statemachine.governed_table g \
          JOIN pg_catalog.pg_class r ON r.oid OPERATOR(pg_catalog.=) g.table_name \
          JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) r.relnamespace \
          JOIN pg_catalog.pg_attribute k ON k.attrelid OPERATOR(pg_catalog.=) g.table_name AND k.attname OPERATOR(pg_catalog.=) g.key_column AND NOT k.attisdropped \
          JOIN pg_catalog.pg_attribute s ON s.attrelid OPERATOR(pg_catalog.=) g.table_name AND s.attname OPERATOR(pg_catalog.=) g.state_column AND NOT s.attisdropped \
          JOIN pg_catalog.pg_type kt ON kt.oid OPERATOR(pg_catalog.=) k.atttypid JOIN pg_catalog.pg_namespace kn ON kn.oid OPERATOR(pg_catalog.=) kt.typnamespace \
          JOIN pg_catalog.pg_type st ON st.oid OPERATOR(pg_catalog.=) s.atttypid JOIN pg_catalog.pg_namespace sn ON sn.oid OPERATOR(pg_catalog.=) st.typnamespace",
    args: &[],
};
static CASE_OF_KEY: Stmt = Stmt {
    sql: "SELECT c.id, c.current_state, s.is_terminal FROM ONLY statemachine.case_file c \
          JOIN ONLY statemachine.state s ON s.machine_version_id OPERATOR(pg_catalog.=) c.machine_version_id AND s.code OPERATOR(pg_catalog.=) c.current_state \
          WHERE c.machine OPERATOR(pg_catalog.=) $1 AND c.case_number OPERATOR(pg_catalog.=) $2 AND c.root_case_id IS NULL",
    args: &[TEXT, TEXT],
};
static CASE_NUMBER: Stmt = Stmt {
    sql: "SELECT c.case_number FROM ONLY statemachine.case_file c WHERE c.id OPERATOR(pg_catalog.=) $1 AND c.root_case_id IS NULL",
    args: &[UUID],
};
static OWNER: Stmt = Stmt {
    sql: "SELECT c.relowner::pg_catalog.int8 FROM pg_catalog.pg_class c \
          JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
          WHERE n.nspname OPERATOR(pg_catalog.=) 'statemachine' AND c.relname OPERATOR(pg_catalog.=) 'case_file'",
    args: &[],
};

/// What the cache holds: the governed tables, and the owner of the extension's tables
/// (whom the governed-row trigger reads and creates cases as).
pub struct Config {
    pub tables: Vec<Rc<Governed>>,
    extension_owner: pg_sys::Oid,
}

thread_local! {
    static CACHE: RefCell<Option<Rc<Config>>> = const { RefCell::new(None) };
}

/// Every governed table (loaded once per backend, until a relcache invalidation), read
/// as the extension's owner: the trigger loads it for whoever writes the user's table.
pub fn config(spi: &Spi) -> Rc<Config> {
    if let Some(c) = CACHE.with(|c| c.borrow().clone()) {
        return c;
    }
    // By name through the catalog (no regclass): the caller may lack USAGE on the schema.
    let extension_owner = pg_sys::Oid::from(spi.run(&OWNER, &[], 1).i64(0, 1).unwrap_or(0) as u32);
    let r = {
        let _as = AsUser::enter(extension_owner, 0, false);
        spi.run(&CONFIG, &[], 0)
    };
    let mut list = Vec::with_capacity(r.count);
    for i in 0..r.count {
        let (Some(relid), Some(table), Some(key_column), Some(state_column), Some(machine)) =
            (r.i64(i, 1), r.text(i, 2), r.text(i, 3), r.text(i, 4), r.text(i, 5))
        else {
            continue;
        };
        let to_state: HashMap<String, String> = r
            .text(i, 6)
            .and_then(|t| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&t).ok())
            .map(|m| m.into_iter().filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned()))).collect())
            .unwrap_or_default();
        let to_value = to_state.iter().map(|(v, s)| (s.clone(), v.clone())).collect();
        let (key_type, state_type_name) = (r.text(i, 10).unwrap_or_default(), r.text(i, 11).unwrap_or_default());
        let mirror = DynStmt {
            sql: format!(
                "UPDATE ONLY {table} SET {state} = $1::{state_type_name} WHERE {key} OPERATOR(pg_catalog.=) $2::{key_type}",
                state = quote_ident(&state_column),
                key = quote_ident(&key_column),
            ),
            args: vec![TEXT, TEXT],
        };
        list.push(Rc::new(Governed {
            relid: pg_sys::Oid::from(relid as u32),
            table,
            key_column,
            state_column,
            key_attnum: r.i32(i, 7).unwrap_or(0),
            state_attnum: r.i32(i, 8).unwrap_or(0),
            state_type: pg_sys::Oid::from(r.i64(i, 9).unwrap_or(0) as u32),
            owner: pg_sys::Oid::from(r.i64(i, 12).unwrap_or(0) as u32),
            machine,
            to_state,
            to_value,
            mirror,
        }));
    }
    let config = Rc::new(Config { tables: list, extension_owner });
    CACHE.with(|c| *c.borrow_mut() = Some(config.clone()));
    config
}

fn for_machine(spi: &Spi, machine: &str) -> Option<Rc<Governed>> {
    config(spi).tables.iter().find(|g| g.machine == machine).cloned()
}

/// PostgreSQL's quote_ident.
pub fn quote_ident(name: &str) -> String {
    let c = std::ffi::CString::new(name).unwrap_or_default();
    // SAFETY: quote_identifier reads a NUL-terminated string and returns it or a palloc'd copy.
    unsafe { std::ffi::CStr::from_ptr(pg_sys::quote_identifier(c.as_ptr())).to_string_lossy().into_owned() }
}

/// Any relcache invalidation drops the cache: one of governed_table (govern_table), of a
/// governed table (DDL on it, its DROP under break_glass), or a reset. Reloading is one
/// query, and relcache invalidations are rare next to transitions.
unsafe extern "C-unwind" fn on_relcache(_arg: pg_sys::Datum, _relid: pg_sys::Oid) {
    CACHE.with(|c| c.borrow_mut().take());
}

pub fn register_callbacks() {
    // SAFETY: called once from _PG_init; the callback is a 'static function.
    unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache), pg_sys::Datum::from(0usize)) };
}

/// statemachine.governed_table's oid (looked up now: the extension may have been
/// dropped and created again since).
fn config_relid() -> pg_sys::Oid {
    // SAFETY: catalog lookups by name inside a transaction.
    unsafe { pg_sys::get_relname_relid(c"governed_table".as_ptr(), pg_sys::get_namespace_oid(c"statemachine".as_ptr(), true)) }
}

/// Tells every backend (and this one) that the governed tables changed.
pub fn invalidate() {
    let relid = config_relid();
    if relid != pg_sys::InvalidOid {
        // SAFETY: queues a relcache invalidation of an existing relation, sent at commit
        // (and applied in this backend at the next command).
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    }
    CACHE.with(|c| c.borrow_mut().take());
}

/// After a governed case moved to `to_state`: its row's column follows, in the same
/// transaction. No-op for a machine that governs no table.
pub fn mirror(spi: &Spi, machine: &str, case_d: pg_sys::Datum, to_state: pg_sys::Datum) {
    let Some(g) = for_machine(spi, machine) else { return };
    // SAFETY: the history row's to_state, a text datum.
    let to_state = unsafe { crate::fmgr::text_from_datum(to_state) };
    let to_state = to_state.as_str();
    let Some(number) = spi.run(&CASE_NUMBER, &[Some(case_d)], 1).text(0, 1) else { return };
    let value = g.value_of(to_state);
    let _door = door::open_mirror(g.relid, number.clone(), value.clone());
    // As the table's owner, security-restricted: whatever fires on the owner's table (its
    // triggers, rules, checks, defaults) runs with the owner's rights, not the write path's.
    let _as = AsUser::enter(g.owner, pg_sys::SECURITY_RESTRICTED_OPERATION, false);
    spi.run_dyn(&g.mirror, &[Some(text_datum(&value)), Some(text_datum(&number))], 0);
}

fn refuse_write(g: &Governed, operation: &str, detail: String) -> statemachine_core::Report {
    let hint = format!(
        "Change a row's state with statemachine.transition_to(case_id, to_state, ...) on its case (SELECT id FROM statemachine.case_file WHERE machine = '{}' AND case_number = <the key as text>).",
        g.machine.replace('\'', "''")
    );
    Refusal::GovernedWrite { table: g.table.clone(), operation: operation.into(), detail, hint }.report(&CaseFacts::default())
}

/// The triggers on a governed table, all ENABLE ALWAYS: BEFORE INSERT OR UPDATE OR DELETE
/// FOR EACH ROW (creates an INSERTed row's case, refuses the rest early), BEFORE TRUNCATE
/// FOR EACH STATEMENT, and AFTER INSERT OR UPDATE FOR EACH ROW (checks the row as stored,
/// whatever BEFORE triggers ran after ours).
fn guard_governed_row(a: &Args) -> SmResult<pg_sys::Datum> {
    let fcinfo = a.fcinfo();
    // SAFETY: fcinfo is the call's own; its context is checked to be TriggerData before
    // it is read as one; the trigger manager keeps relation and tuples valid for the call.
    unsafe {
        let td = crate::guard::trigger_data(fcinfo)?;
        let event = (*td).tg_event;
        let op = event & pg_sys::TRIGGER_EVENT_OPMASK;
        let row_level = event & pg_sys::TRIGGER_EVENT_ROW != 0;
        let rel = (*td).tg_relation;
        let relid = (*rel).rd_id;
        let (old, new) = ((*td).tg_trigtuple, (*td).tg_newtuple);
        let pass = match op {
            _ if !row_level => pg_sys::Datum::from(0usize),
            pg_sys::TRIGGER_EVENT_UPDATE => pg_sys::Datum::from(new),
            _ => pg_sys::Datum::from(old),
        };
        if door::glass_broken() {
            return Ok(pass);
        }
        let spi = Spi::connect();
        let config = config(&spi);
        let Some(g) = config.tables.iter().find(|g| g.relid == relid).cloned() else {
            let name = std::ffi::CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr()).to_string_lossy().into_owned();
            return Err(Refusal::DirectWrite {
                table: name,
                operation: "write".into(),
                what: "The table carries the governed-row guard but statemachine.governed_table has no entry for it.".into(),
            }
            .report(&CaseFacts::default()));
        };
        if !row_level {
            return Err(refuse_write(&g, "TRUNCATE", format!("The rows of {} are cases of machine {}; a case is never deleted.", g.table, g.machine)));
        }
        let desc = (*rel).rd_att;
        let column = |tuple: pg_sys::HeapTuple, attnum: i32| -> Option<String> {
            let mut isnull = false;
            let d = pg_sys::heap_getattr(tuple, attnum, desc, &mut isnull);
            let att = crate::compat::tuple_desc_attr(desc, (attnum - 1) as usize);
            (!isnull).then(|| datum_text(d, (*att).atttypid))
        };
        // The AFTER trigger sees each row as every BEFORE trigger left it (the owner's own,
        // firing after ours by name, included): it checks the row that is stored.
        let after = event & pg_sys::TRIGGER_EVENT_BEFORE == 0;
        if after && op == pg_sys::TRIGGER_EVENT_INSERT {
            let (key, value) = (column(old, g.key_attnum).unwrap_or_default(), column(old, g.state_attnum));
            let current = {
                let _as = AsUser::enter(config.extension_owner, 0, false);
                spi.run(&CASE_OF_KEY, &[Some(text_datum(&g.machine)), Some(text_datum(&key))], 1).text(0, 2)
            };
            return match (current, value) {
                (Some(current), Some(value)) if g.state_of(&value).as_deref() == Some(current.as_str()) => Ok(pass),
                (current, value) => Err(refuse_write(
                    &g,
                    "INSERT",
                    format!(
                        "The row as stored (key {key}, {} {}) does not show its case's state ({}): a trigger changed it after the guard.",
                        g.state_column,
                        value.as_deref().unwrap_or("NULL"),
                        current.as_deref().unwrap_or("no case")
                    ),
                )),
            };
        }
        match op {
            pg_sys::TRIGGER_EVENT_UPDATE => {
                let changed = |attnum: i32| {
                    let att = crate::compat::tuple_desc_attr(desc, (attnum - 1) as usize);
                    let (mut on, mut nn) = (false, false);
                    let o = pg_sys::heap_getattr(old, attnum, desc, &mut on);
                    let n = pg_sys::heap_getattr(new, attnum, desc, &mut nn);
                    on != nn || (!on && !crate::guard::same_binary_value(o, n, (*att).attbyval, (*att).attlen))
                };
                if changed(g.key_attnum) {
                    return Err(refuse_write(&g, "UPDATE", format!("{} is the key of the rows' cases (their case_number); it never changes.", g.key_column)));
                }
                if !changed(g.state_attnum) {
                    return Ok(pass);
                }
                let key = column(new, g.key_attnum).unwrap_or_default();
                let value = column(new, g.state_attnum).unwrap_or_default();
                if door::mirror_admits(relid, &key, &value) {
                    return Ok(pass);
                }
                let state = g.state_of(&value).unwrap_or(value);
                Err(refuse_write(
                    &g,
                    "UPDATE",
                    format!("{} of row {key} mirrors the state of its case (machine {}); only the write path changes it, here to {state} only by a transition.", g.state_column, g.machine),
                ))
            }
            pg_sys::TRIGGER_EVENT_DELETE => {
                let key = column(old, g.key_attnum).unwrap_or_default();
                let case = {
                    let _as = AsUser::enter(config.extension_owner, 0, false);
                    let r = spi.run(&CASE_OF_KEY, &[Some(text_datum(&g.machine)), Some(text_datum(&key))], 1);
                    r.text(0, 2).map(|s| (s, r.bool(0, 3) == Some(true)))
                };
                match case {
                    Some((state, false)) => Err(refuse_write(
                        &g,
                        "DELETE",
                        format!("The case of key {key} is in state {state}, which is not terminal; move it to a terminal state first (statemachine.transition_to)."),
                    )),
                    _ => Ok(pass),
                }
            }
            _ => insert(&spi, &g, config.extension_owner, td, column(old, g.key_attnum), column(old, g.state_attnum)),
        }
    }
}

/// INSERT of a row: its case is created in the initial state (the column may be NULL
/// and is filled in), or an existing case of that key is linked if the value is its state.
///
/// # Safety
/// `td` must be the TriggerData of a row-level INSERT trigger call on `g`'s table.
unsafe fn insert(
    spi: &Spi,
    g: &Governed,
    extension_owner: pg_sys::Oid,
    td: *mut pg_sys::TriggerData,
    key: Option<String>,
    value: Option<String>,
) -> SmResult<pg_sys::Datum> {
    // SAFETY: the caller's contract: td is this INSERT trigger call's TriggerData.
    let tuple = unsafe { (*td).tg_trigtuple };
    let Some(key) = key else {
        return Err(refuse_write(g, "INSERT", format!("{} (the case number) is NULL.", g.key_column)));
    };
    let result = {
        let _as = AsUser::enter(extension_owner, 0, false);
        let existing = spi.run(&CASE_OF_KEY, &[Some(text_datum(&g.machine)), Some(text_datum(&key))], 1).text(0, 2);
        let latest = spi.run(&machines::LATEST_VERSION, &[Some(text_datum(&g.machine))], 1);
        let Some(version_id) = latest.uuid(0, 1) else {
            return Err(Refusal::UnknownMachine { machine: g.machine.clone(), version: None }.report(&CaseFacts::default()));
        };
        let machine = machines::get(spi, &version_id);
        let state = value.as_deref().map(|v| g.state_of(v));
        match (existing, state) {
            (Some(current), None) => Ok(Some(g.value_of(&current))),
            (Some(current), Some(Some(s))) if s == current => Ok(None),
            (Some(current), _) => Err(refuse_write(g, "INSERT", format!("The case of key {key} exists in state {current}; the row must say so."))),
            (None, Some(Some(s))) if s != machine.initial => Err(refuse_write(
                g,
                "INSERT",
                format!("A new row's case starts in the initial state {}, not {s}; insert it there (or with {} NULL) and move it with statemachine.transition_to.", machine.initial, g.state_column),
            )),
            (None, Some(None)) => Err(refuse_write(g, "INSERT", format!("{} of the new row maps to no state of machine {}.", value.unwrap_or_default(), g.machine))),
            (None, s) => {
                let now = history::now();
                let actor = crate::facts::database_actor_id(spi).unwrap_or([0; 16]);
                let new_case = creation::NewCase {
                    case_id: history::row_id(now),
                    machine: &machine,
                    version_id,
                    case_number: &key,
                    metadata: None,
                    root: None,
                };
                let command = history::row_id(now);
                let requested = format!("CREATE of case number {key} (INSERT into {})", g.table);
                creation::insert_case(spi, &new_case, uuid_datum(&actor), "TABLE_INSERT", uuid_datum(&command), now, &requested)?;
                Ok(s.is_none().then(|| g.value_of(&machine.initial)))
            }
        }
    }?;
    let Some(fill) = result else { return Ok(pg_sys::Datum::from(tuple)) };
    // The column was NULL: the row gets its case's state.
    // SAFETY: the relation's descriptor and the trigger tuple are valid for the call; the
    // value is converted by the column type's input function.
    unsafe {
        let rel = (*td).tg_relation;
        let desc = (*rel).rd_att;
        let (mut input, mut ioparam) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
        pg_sys::getTypeInputInfo(g.state_type, &mut input, &mut ioparam);
        let att = crate::compat::tuple_desc_attr(desc, (g.state_attnum - 1) as usize);
        let c = std::ffi::CString::new(fill).unwrap_or_default();
        let d = pg_sys::OidInputFunctionCall(input, c.as_ptr().cast_mut(), ioparam, (*att).atttypmod);
        let mut cols = [g.state_attnum];
        let mut values = [d];
        let mut nulls = [false];
        let modified = pg_sys::heap_modify_tuple_by_cols(tuple, desc, 1, cols.as_mut_ptr(), values.as_mut_ptr(), nulls.as_mut_ptr());
        Ok(pg_sys::Datum::from(modified))
    }
}

sql_function!(sm_guard_governed_row, pg_finfo_sm_guard_governed_row, guard_governed_row);
