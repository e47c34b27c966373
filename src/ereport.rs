//! Raising errors with our own SQLSTATEs (class SM).
//!
//! pgrx's `ErrorReport` only knows PostgreSQL's standard codes and reports any other as
//! XX000, so refusals are raised here with Postgres' own `errstart`/`errfinish`. This
//! longjmps, so it is only ever called at the outermost point of an entry function,
//! after every Rust value of the call has been dropped (see `fmgr::sql_function!`).

use pgrx::pg_sys;
use statemachine_core::Report;
use std::ffi::{c_char, c_int, CString};

unsafe extern "C-unwind" {
    fn errstart(elevel: c_int, domain: *const c_char) -> bool;
    fn errcode(sqlerrcode: c_int) -> c_int;
    fn errmsg(fmt: *const c_char, ...) -> c_int;
    fn errdetail(fmt: *const c_char, ...) -> c_int;
    fn errhint(fmt: *const c_char, ...) -> c_int;
    fn errcontext_msg(fmt: *const c_char, ...) -> c_int;
    fn errfinish(filename: *const c_char, lineno: c_int, funcname: *const c_char);
}

/// PostgreSQL's MAKE_SQLSTATE: five characters packed six bits each.
pub fn pack_sqlstate(code: &str) -> c_int {
    code.bytes()
        .take(5)
        .enumerate()
        .fold(0, |acc, (i, ch)| acc | ((c_int::from(ch.wrapping_sub(b'0')) & 0x3F) << (6 * i)))
}

/// PostgreSQL's unpack_sql_state: five characters from six bits each.
pub fn unpack_sqlstate(code: c_int) -> String {
    (0..5).map(|i| char::from((((code >> (6 * i)) & 0x3F) as u8) + b'0')).collect()
}

fn c_text(s: &str) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

/// Raises `report` at ERROR level. Never returns.
///
/// # Safety
/// Must be called with no live Rust values above it on the stack that need dropping
/// (the longjmp skips their destructors); the entry macro guarantees this.
pub unsafe fn raise(report: Report) -> ! {
    let code = pack_sqlstate(&report.sqlstate);
    let message = c_text(&report.message);
    let detail = report.detail.as_deref().map(c_text);
    let hint = report.hint.as_deref().map(c_text);
    let context = report.context.as_deref().map(c_text);
    drop(report);
    // SAFETY: errstart/errfinish bracket the err* calls as elog.h's ereport does; each
    // format is "%s" with a NUL-terminated argument alive until errfinish copies it.
    unsafe {
        if errstart(pg_sys::PGERROR as c_int, std::ptr::null()) {
            errcode(code);
            // errmsg & co. copy their text into the error context: the CStrings can go.
            errmsg(c"%s".as_ptr(), message.as_ptr());
            if let Some(d) = &detail {
                errdetail(c"%s".as_ptr(), d.as_ptr());
            }
            if let Some(h) = &hint {
                errhint(c"%s".as_ptr(), h.as_ptr());
            }
            if let Some(c) = &context {
                errcontext_msg(c"%s".as_ptr(), c.as_ptr());
            }
        }
        drop(message);
        drop(detail);
        drop(hint);
        drop(context);
        errfinish(c"pg_statemachine".as_ptr(), 0, c"pg_statemachine".as_ptr());
    }
    unreachable!("errfinish returned at ERROR level")
}

#[cfg(test)]
mod tests {
    #[test]
    fn sqlstates_unpack_as_packed() {
        for code in ["P0001", "SM002", "22023", "57014", "XX000"] {
            assert_eq!(super::unpack_sqlstate(super::pack_sqlstate(code)), code);
        }
    }
}
