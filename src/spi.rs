//! A thin SPI layer: statements prepared once per backend and kept (`SPI_keepplan`),
//! executed with datums straight from the caller's arguments.
//!
//! Statement texts schema-qualify their tables, functions and operators, and every
//! entry point runs with `search_path = pg_catalog, pg_temp` (SECURITY DEFINER ...
//! SET search_path), so neither the caller's `search_path` nor a re-plan can bind a
//! statement to anything outside `statemachine` and `pg_catalog`. (The catalog queries
//! of register_guard lean on the pinned path for names such as `pg_proc` and `unnest`.)

use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;

/// A statement and its parameter types; lives in a `static` so its address keys the plan cache.
pub struct Stmt {
    pub sql: &'static str,
    pub args: &'static [pg_sys::Oid],
}

thread_local! {
    static PLANS: RefCell<HashMap<usize, pg_sys::SPIPlanPtr>> = RefCell::new(HashMap::new());
}

fn plan_for(stmt: &'static Stmt) -> pg_sys::SPIPlanPtr {
    let key = stmt as *const Stmt as usize;
    if let Some(p) = PLANS.with(|p| p.borrow().get(&key).copied()) {
        return p;
    }
    let sql = CString::new(stmt.sql).expect("statement text has no NUL");
    let plan = unsafe {
        let plan = pg_sys::SPI_prepare(sql.as_ptr(), stmt.args.len() as i32, stmt.args.as_ptr().cast_mut());
        if plan.is_null() {
            let rc = pg_sys::SPI_result;
            panic!("SPI_prepare failed ({rc}) for: {}", stmt.sql);
        }
        pg_sys::SPI_keepplan(plan);
        plan
    };
    PLANS.with(|p| p.borrow_mut().insert(key, plan));
    plan
}

/// An open SPI connection; finished when dropped (unless an error is unwinding, in
/// which case transaction abort cleans SPI up).
pub struct Spi(());

impl Spi {
    pub fn connect() -> Spi {
        unsafe {
            pg_sys::SPI_connect();
        }
        Spi(())
    }

    /// Executes `stmt` with `args` (`None` = SQL NULL); at most `limit` rows (0 = all).
    pub fn run(&self, stmt: &'static Stmt, args: &[Option<pg_sys::Datum>], limit: i64) -> Rows {
        debug_assert_eq!(args.len(), stmt.args.len(), "{}", stmt.sql);
        let plan = plan_for(stmt);
        let mut values: Vec<pg_sys::Datum> = args.iter().map(|a| a.unwrap_or(pg_sys::Datum::from(0usize))).collect();
        let nulls: Vec<std::ffi::c_char> = args.iter().map(|a| if a.is_some() { b' ' } else { b'n' } as std::ffi::c_char).collect();
        unsafe {
            let rc = pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), false, limit);
            if rc < 0 {
                panic!("SPI_execute_plan failed ({rc}) for: {}", stmt.sql);
            }
            Rows { table: pg_sys::SPI_tuptable, count: pg_sys::SPI_processed as usize }
        }
    }

    /// Copies a by-reference datum out of SPI memory into the caller's context, so it
    /// can be returned after the connection is finished.
    pub fn keep(&self, d: pg_sys::Datum) -> pg_sys::Datum {
        unsafe { pg_sys::SPI_datumTransfer(d, false, -1) }
    }
}

impl Spi {
    /// A uuid datum allocated in the caller's context (fixed-length: not for `keep`).
    pub fn keep_uuid(&self, bytes: &[u8; 16]) -> pg_sys::Datum {
        unsafe {
            let p = pg_sys::SPI_palloc(16) as *mut u8;
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, 16);
            pg_sys::Datum::from(p)
        }
    }
}

impl Drop for Spi {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            unsafe {
                pg_sys::SPI_finish();
            }
        }
    }
}

/// Rows returned by the last statement; valid until the next one.
pub struct Rows {
    table: *mut pg_sys::SPITupleTable,
    pub count: usize,
}

impl Rows {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Column `col` (1-based) of row `row`.
    pub fn get(&self, row: usize, col: i32) -> Option<pg_sys::Datum> {
        if row >= self.count || self.table.is_null() {
            return None;
        }
        unsafe {
            let tuple = *(*self.table).vals.add(row);
            let mut isnull = false;
            let d = pg_sys::SPI_getbinval(tuple, (*self.table).tupdesc, col, &mut isnull);
            (!isnull).then_some(d)
        }
    }

    /// Row `row` as a heap tuple (valid until the next statement).
    pub fn tuple(&self, row: usize) -> Option<pg_sys::HeapTuple> {
        if row >= self.count || self.table.is_null() {
            return None;
        }
        Some(unsafe { *(*self.table).vals.add(row) })
    }

    pub fn text(&self, row: usize, col: i32) -> Option<String> {
        self.get(row, col).map(|d| unsafe { crate::fmgr::text_from_datum(d) })
    }
    pub fn bool(&self, row: usize, col: i32) -> Option<bool> {
        self.get(row, col).map(|d| d.value() != 0)
    }
    pub fn i32(&self, row: usize, col: i32) -> Option<i32> {
        self.get(row, col).map(|d| d.value() as i32)
    }
    pub fn i64(&self, row: usize, col: i32) -> Option<i64> {
        self.get(row, col).map(|d| d.value() as i64)
    }
    pub fn uuid(&self, row: usize, col: i32) -> Option<[u8; 16]> {
        self.get(row, col).map(|d| unsafe { crate::fmgr::uuid_from_datum(d) })
    }
    pub fn interval(&self, row: usize, col: i32) -> Option<statemachine_core::Interval> {
        self.get(row, col).map(|d| unsafe {
            let p = d.cast_mut_ptr::<pg_sys::Interval>();
            statemachine_core::Interval { months: (*p).month, days: (*p).day, micros: (*p).time }
        })
    }
}

pub const UUID: pg_sys::Oid = pg_sys::UUIDOID;
pub const TEXT: pg_sys::Oid = pg_sys::TEXTOID;
pub const INT4: pg_sys::Oid = pg_sys::INT4OID;
pub const INT8: pg_sys::Oid = pg_sys::INT8OID;
pub const BOOL: pg_sys::Oid = pg_sys::BOOLOID;
pub const JSONB: pg_sys::Oid = pg_sys::JSONBOID;
pub const TIMESTAMPTZ: pg_sys::Oid = pg_sys::TIMESTAMPTZOID;
pub const INTERVAL: pg_sys::Oid = pg_sys::INTERVALOID;
pub const UUID_ARRAY: pg_sys::Oid = pg_sys::UUIDARRAYOID;
pub const TEXT_ARRAY: pg_sys::Oid = pg_sys::TEXTARRAYOID;
pub const OID: pg_sys::Oid = pg_sys::OIDOID;
