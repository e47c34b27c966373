//! A thin SPI layer: statements prepared once per backend and kept (`SPI_keepplan`),
//! executed with datums straight from the caller's arguments.
//!
//! Statement texts schema-qualify their tables, functions and operators, and every
//! entry point runs with `search_path = pg_catalog, pg_temp` (SECURITY DEFINER ...
//! SET search_path), so neither the caller's `search_path` nor a re-plan can bind a
//! statement to anything outside `statemachine` and `pg_catalog`. (The catalog queries
//! of register_guard lean on the pinned path for names such as `pg_proc` and `unnest`.)
//!
//! Rules enforced by the types and checks here rather than by review:
//! - [`Rows`] borrows the [`Spi`] connection it came from, so a result set cannot be read
//!   after `SPI_finish` (the connection's drop) — that is a compile error. (A by-reference
//!   datum taken out of it is still SPI memory: `keep` it to return it.)
//! - the typed readers check the column's type before converting (a mismatch is an
//!   internal error, never a misread);
//! - a connection opened with [`Spi::read_only`] runs its statements read-only, as a
//!   STABLE function's must be (PostgreSQL refuses a data-modifying statement there).

use pgrx::{pg_sys, FromDatum};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
use std::marker::PhantomData;

/// A statement and its parameter types; lives in a `static` so its address keys the plan cache.
pub struct Stmt {
    pub sql: &'static str,
    pub args: &'static [pg_sys::Oid],
}

thread_local! {
    static PLANS: RefCell<HashMap<usize, pg_sys::SPIPlanPtr>> = RefCell::new(HashMap::new());
}

/// Prepares `sql` and keeps the plan for the life of the backend.
fn prepare_kept(sql: &str, args: &[pg_sys::Oid]) -> pg_sys::SPIPlanPtr {
    // Statement texts are literals of this crate or built from catalog names and quoted
    // identifiers: a NUL in one is a bug, not user input.
    let c_sql = CString::new(sql).expect("statement text has no NUL");
    // SAFETY: called with an SPI connection open (only Spi's methods call this); the text
    // and the argument type array outlive the call, and SPI_prepare copies what it keeps.
    unsafe {
        let plan = pg_sys::SPI_prepare(c_sql.as_ptr(), args.len() as i32, args.as_ptr().cast_mut());
        if plan.is_null() {
            let rc = pg_sys::SPI_result;
            panic!("SPI_prepare failed ({rc}) for: {sql}");
        }
        pg_sys::SPI_keepplan(plan);
        plan
    }
}

fn plan_for(stmt: &'static Stmt) -> pg_sys::SPIPlanPtr {
    let key = stmt as *const Stmt as usize;
    if let Some(p) = PLANS.with(|p| p.borrow().get(&key).copied()) {
        return p;
    }
    let plan = prepare_kept(stmt.sql, stmt.args);
    PLANS.with(|p| p.borrow_mut().insert(key, plan));
    plan
}

thread_local! {
    static DYNAMIC_PLANS: RefCell<HashMap<String, pg_sys::SPIPlanPtr>> = RefCell::new(HashMap::new());
}

/// A statement whose text is built at run time (it names a user's table) and that runs
/// again and again (a governed table's mirror write): prepared once per backend and
/// text, like a [`Stmt`]'s.
pub struct DynStmt {
    pub sql: String,
    pub args: Vec<pg_sys::Oid>,
}

fn dynamic_plan(stmt: &DynStmt) -> pg_sys::SPIPlanPtr {
    if let Some(p) = DYNAMIC_PLANS.with(|p| p.borrow().get(&stmt.sql).copied()) {
        return p;
    }
    let plan = prepare_kept(&stmt.sql, &stmt.args);
    DYNAMIC_PLANS.with(|p| p.borrow_mut().insert(stmt.sql.clone(), plan));
    plan
}

/// An open SPI connection; finished when dropped (unless an error is unwinding, in
/// which case transaction abort cleans SPI up).
pub struct Spi {
    read_only: bool,
}

impl Spi {
    /// A connection for a VOLATILE function: statements may write.
    pub fn connect() -> Spi {
        // SAFETY: every entry point runs inside a transaction, where SPI_connect is valid;
        // the matching SPI_finish is in Drop.
        unsafe {
            pg_sys::SPI_connect();
        }
        Spi { read_only: false }
    }

    /// A connection for a STABLE function: every statement runs read-only.
    pub fn read_only() -> Spi {
        let mut spi = Spi::connect();
        spi.read_only = true;
        spi
    }

    /// Executes `stmt` with `args` (`None` = SQL NULL); at most `limit` rows (0 = all).
    pub fn run(&self, stmt: &'static Stmt, args: &[Option<pg_sys::Datum>], limit: i64) -> Rows<'_> {
        // One value per declared parameter, or SPI would read past `values`.
        assert_eq!(args.len(), stmt.args.len(), "{}", stmt.sql);
        self.execute(plan_for(stmt), args, limit, stmt.sql)
    }

    /// Executes a [`DynStmt`] (see [`Spi::run`]).
    pub fn run_dyn(&self, stmt: &DynStmt, args: &[Option<pg_sys::Datum>], limit: i64) -> Rows<'_> {
        assert_eq!(args.len(), stmt.args.len(), "{}", stmt.sql);
        self.execute(dynamic_plan(stmt), args, limit, &stmt.sql)
    }

    /// Runs a statement built at run time once, without keeping a plan (govern_table's
    /// lock, read and DDL on the user's table).
    pub fn run_once(&self, sql: &str) -> Rows<'_> {
        let c_sql = CString::new(sql).expect("statement text has no NUL");
        // SAFETY: SPI is connected while `self` lives; SPI_tuptable/SPI_processed describe
        // the statement just run.
        unsafe {
            let rc = pg_sys::SPI_execute(c_sql.as_ptr(), self.read_only, 0);
            if rc < 0 {
                panic!("SPI_execute failed ({rc}) for: {sql}");
            }
            Rows { table: pg_sys::SPI_tuptable, count: pg_sys::SPI_processed as usize, _connection: PhantomData }
        }
    }

    /// Runs a kept plan prepared for exactly `args.len()` parameters (checked by callers).
    fn execute(&self, plan: pg_sys::SPIPlanPtr, args: &[Option<pg_sys::Datum>], limit: i64, sql: &str) -> Rows<'_> {
        let mut values: Vec<pg_sys::Datum> = args.iter().map(|a| a.unwrap_or(pg_sys::Datum::from(0usize))).collect();
        let nulls: Vec<std::ffi::c_char> = args.iter().map(|a| if a.is_some() { b' ' } else { b'n' } as std::ffi::c_char).collect();
        // SAFETY: the plan was prepared for exactly these parameters (one value and one
        // null flag each, checked by the callers); SPI is connected while `self` lives.
        // SPI_tuptable/SPI_processed describe the statement just run.
        unsafe {
            let rc = pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), self.read_only, limit);
            if rc < 0 {
                panic!("SPI_execute_plan failed ({rc}) for: {sql}");
            }
            Rows { table: pg_sys::SPI_tuptable, count: pg_sys::SPI_processed as usize, _connection: PhantomData }
        }
    }

    /// Opens a cursor on `stmt` (for scans too large to hold at once).
    pub fn cursor(&self, stmt: &'static Stmt, args: &[Option<pg_sys::Datum>]) -> Cursor<'_> {
        assert_eq!(args.len(), stmt.args.len(), "{}", stmt.sql);
        let plan = plan_for(stmt);
        let mut values: Vec<pg_sys::Datum> = args.iter().map(|a| a.unwrap_or(pg_sys::Datum::from(0usize))).collect();
        let nulls: Vec<std::ffi::c_char> = args.iter().map(|a| if a.is_some() { b' ' } else { b'n' } as std::ffi::c_char).collect();
        // SAFETY: as in `run`: one value and null flag per parameter of the plan; SPI is
        // connected while `self` lives, and the portal is closed before (Cursor borrows it).
        let portal = unsafe { pg_sys::SPI_cursor_open(std::ptr::null(), plan, values.as_mut_ptr(), nulls.as_ptr(), self.read_only) };
        assert!(!portal.is_null(), "SPI_cursor_open failed for: {}", stmt.sql);
        Cursor { portal, _connection: PhantomData }
    }

    /// Copies a by-reference datum out of SPI memory into the caller's context, so it
    /// can be returned after the connection is finished.
    pub fn keep(&self, d: pg_sys::Datum) -> pg_sys::Datum {
        // SAFETY: `d` came from a row of this connection (a varlena or composite datum,
        // the only kinds returned through here); SPI is connected.
        unsafe { pg_sys::SPI_datumTransfer(d, false, -1) }
    }
}

impl Drop for Spi {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            // SAFETY: pairs with the SPI_connect of this value.
            unsafe {
                pg_sys::SPI_finish();
            }
        }
    }
}

/// An open cursor; closed when dropped.
pub struct Cursor<'spi> {
    portal: pg_sys::Portal,
    _connection: PhantomData<&'spi Spi>,
}

impl Cursor<'_> {
    /// The next (at most) `n` rows; empty at the end. Each batch is freed when dropped, so
    /// a scan holds one batch at a time.
    pub fn fetch(&mut self, n: i64) -> Batch<'_> {
        // SAFETY: the portal is open (closed only in Drop); SPI_cursor_fetch sets
        // SPI_tuptable/SPI_processed to this batch.
        unsafe {
            pg_sys::SPI_cursor_fetch(self.portal, true, n);
            Batch(Rows { table: pg_sys::SPI_tuptable, count: pg_sys::SPI_processed as usize, _connection: PhantomData })
        }
    }
}

impl Drop for Cursor<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            // SAFETY: the portal this value opened, closed once.
            unsafe { pg_sys::SPI_cursor_close(self.portal) }
        }
    }
}

/// One batch of a cursor; its tuple table is freed when dropped.
pub struct Batch<'c>(pub Rows<'c>);

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if !self.0.table.is_null() && !std::thread::panicking() {
            // SAFETY: this batch's own tuple table, freed once; no Rows of it outlive `self`.
            unsafe { pg_sys::SPI_freetuptable(self.0.table) }
        }
    }
}

/// Rows returned by a statement, valid while the connection that ran it is open.
pub struct Rows<'spi> {
    table: *mut pg_sys::SPITupleTable,
    pub count: usize,
    _connection: PhantomData<&'spi Spi>,
}

impl Rows<'_> {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Column `col` (1-based) of row `row`.
    pub fn get(&self, row: usize, col: i32) -> Option<pg_sys::Datum> {
        let tuple = self.tuple(row)?;
        let mut isnull = false;
        // SAFETY: `tuple` belongs to this table, whose descriptor describes it; for a `col`
        // outside the descriptor SPI_getbinval returns NULL (and sets SPI_result).
        let d = unsafe { pg_sys::SPI_getbinval(tuple, (*self.table).tupdesc, col, &mut isnull) };
        (!isnull).then_some(d)
    }

    /// Row `row` as a heap tuple (valid while the connection is open).
    pub fn tuple(&self, row: usize) -> Option<pg_sys::HeapTuple> {
        if row >= self.count || self.table.is_null() {
            return None;
        }
        // SAFETY: the table holds `count` tuples and `row < count`; the table lives until
        // SPI_finish, which cannot happen while `self` borrows the connection.
        Some(unsafe { *(*self.table).vals.add(row) })
    }

    /// The type of column `col` (1-based); InvalidOid outside the descriptor.
    fn column_type(&self, col: i32) -> pg_sys::Oid {
        if self.table.is_null() {
            return pg_sys::InvalidOid;
        }
        // SAFETY: the table and its descriptor live while `self` borrows the connection;
        // SPI_gettypeid checks `col` against the descriptor.
        unsafe { pg_sys::SPI_gettypeid((*self.table).tupdesc, col) }
    }

    /// Column `col` of row `row`, after checking that the column is of one of `types`.
    fn typed(&self, row: usize, col: i32, types: &[pg_sys::Oid]) -> Option<pg_sys::Datum> {
        let d = self.get(row, col)?;
        let t = self.column_type(col);
        assert!(types.contains(&t), "column {col} is of type {}, read as {types:?}", t.to_u32());
        Some(d)
    }

    /// Column `col` of row `row` through pgrx's conversion for `T`, whose SQL types are `types`.
    fn value<T: FromDatum>(&self, row: usize, col: i32, types: &[pg_sys::Oid]) -> Option<T> {
        // SAFETY: a non-null datum of a column checked to be of one of T's types.
        self.typed(row, col, types).and_then(|d| unsafe { T::from_datum(d, false) })
    }

    /// Any column as text through its type's output function (never a cast: a cast from
    /// a user's type runs the user's code).
    pub fn output_text(&self, row: usize, col: i32) -> Option<String> {
        let d = self.get(row, col)?;
        // SAFETY: a non-null datum of the column's own type.
        Some(unsafe { crate::fmgr::datum_text(d, self.column_type(col)) })
    }

    pub fn text(&self, row: usize, col: i32) -> Option<String> {
        // SAFETY: a non-null datum of a column checked to be text or varchar.
        self.typed(row, col, &[TEXT, pg_sys::VARCHAROID]).map(|d| unsafe { crate::fmgr::text_from_datum(d) })
    }
    pub fn bool(&self, row: usize, col: i32) -> Option<bool> {
        self.value(row, col, &[BOOL])
    }
    pub fn i32(&self, row: usize, col: i32) -> Option<i32> {
        self.value(row, col, &[INT4])
    }
    /// A bigint column, or a timestamptz one as PostgreSQL's microseconds since 2000.
    pub fn i64(&self, row: usize, col: i32) -> Option<i64> {
        self.value(row, col, &[INT8, TIMESTAMPTZ])
    }
    pub fn uuid(&self, row: usize, col: i32) -> Option<[u8; 16]> {
        self.value::<pgrx::Uuid>(row, col, &[UUID]).map(|u| *u)
    }
    pub fn bytes(&self, row: usize, col: i32) -> Option<Vec<u8>> {
        self.value(row, col, &[pg_sys::BYTEAOID])
    }
    pub fn interval(&self, row: usize, col: i32) -> Option<statemachine_core::Interval> {
        self.value::<pgrx::datum::Interval>(row, col, &[INTERVAL])
            .map(|iv| statemachine_core::Interval { months: iv.months(), days: iv.days(), micros: iv.micros() })
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
pub const BYTEA: pg_sys::Oid = pg_sys::BYTEAOID;
pub const BYTEA_ARRAY: pg_sys::Oid = pg_sys::BYTEAARRAYOID;
pub const INT8_ARRAY: pg_sys::Oid = pg_sys::INT8ARRAYOID;
pub const TIMESTAMPTZ_ARRAY: pg_sys::Oid = pg_sys::TIMESTAMPTZARRAYOID;
pub const BOOL_ARRAY: pg_sys::Oid = pg_sys::BOOLARRAYOID;
pub const INT4_ARRAY: pg_sys::Oid = pg_sys::INT4ARRAYOID;
