//! Returning sets: every set-returning function of the extension fills a tuplestore
//! (materialize mode) from rows built in Rust or from the rows of an SPI statement.

use crate::fmgr::{text_datum, uuid_datum, Args};
use crate::spi::Rows;
use pgrx::pg_sys;

/// One output column value.
pub enum Cell {
    Text(Option<String>),
    Bool(bool),
    Uuid([u8; 16]),
    Int8(i64),
    Null,
}

/// Returns `rows` as the function's result set (materialize mode).
///
/// # Safety
/// The call's SQL declaration must return a set of rows whose columns have the types of
/// the cells, in order (text, boolean, uuid, bigint).
pub unsafe fn return_rows(args: &Args, rows: &[Vec<Cell>]) {
    // SAFETY: the caller's contract is Materialized::init's.
    let out = unsafe { Materialized::init(args) };
    for row in rows {
        out.put(row);
    }
}

/// A result set filled row by row (a long call puts each chunk's rows as it goes; the
/// tuplestore copies them, so the chunk's memory can be freed).
pub struct Materialized {
    rsinfo: *mut pg_sys::ReturnSetInfo,
}

impl Materialized {
    /// # Safety
    /// As [`return_rows`]: every row put must have the declared columns' types.
    pub unsafe fn init(args: &Args) -> Materialized {
        let fcinfo = args.fcinfo();
        // SAFETY: init_materialized_srf checks that the caller accepts a materialized set
        // and sets up rsinfo's tuplestore and descriptor.
        unsafe {
            crate::compat::init_materialized_srf(fcinfo);
            Materialized { rsinfo: (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo }
        }
    }

    pub fn put(&self, row: &[Cell]) {
        let mut values: Vec<pg_sys::Datum> = Vec::with_capacity(row.len());
        let mut nulls: Vec<bool> = Vec::with_capacity(row.len());
        for cell in row {
            let (v, n) = match cell {
                Cell::Text(Some(s)) => (text_datum(s), false),
                Cell::Text(None) => (pg_sys::Datum::from(0usize), true),
                Cell::Bool(b) => (pg_sys::Datum::from(*b), false),
                Cell::Uuid(u) => (uuid_datum(u), false),
                Cell::Int8(i) => (pg_sys::Datum::from(*i), false),
                Cell::Null => (pg_sys::Datum::from(0usize), true),
            };
            values.push(v);
            nulls.push(n);
        }
        // SAFETY: init set up the tuplestore and descriptor; init's contract makes the
        // row's datums match that descriptor; tuplestore_putvalues copies them.
        unsafe {
            pg_sys::tuplestore_putvalues((*self.rsinfo).setResult, (*self.rsinfo).setDesc, values.as_mut_ptr(), nulls.as_mut_ptr());
        }
    }
}

/// Returns the rows of an SPI result as the function's result set.
///
/// # Safety
/// The statement's columns must be those of the call's declared row type (e.g.
/// `RETURNING t.*` of the table the function returns `SETOF`).
pub unsafe fn return_tuples(args: &Args, rows: &Rows<'_>) {
    // SAFETY: the caller's contract.
    unsafe {
        crate::compat::init_materialized_srf(args.fcinfo());
        put_tuples(args, rows);
    }
}

/// Adds `rows` to a result begun with [`return_tuples`] (or `init_materialized_srf`).
///
/// # Safety
/// As [`return_tuples`], and the result is initialised.
pub unsafe fn put_tuples(args: &Args, rows: &Rows<'_>) {
    let fcinfo = args.fcinfo();
    // SAFETY: as return_rows; tuplestore_puttuple copies each tuple, which is valid while
    // `rows` borrows its open connection.
    unsafe {
        let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
        for i in 0..rows.count {
            if let Some(tuple) = rows.tuple(i) {
                pg_sys::tuplestore_puttuple((*rsinfo).setResult, tuple);
            }
        }
    }
}

/// Text-only rows.
///
/// # Safety
/// As [`return_rows`]: the declared columns are all text.
pub unsafe fn return_text_rows<const N: usize>(args: &Args, rows: &[[Option<String>; N]]) {
    let rows: Vec<Vec<Cell>> = rows.iter().map(|r| r.iter().cloned().map(Cell::Text).collect()).collect();
    // SAFETY: the caller's contract.
    unsafe { return_rows(args, &rows) }
}
