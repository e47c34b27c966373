//! The boundary between PostgreSQL's fmgr and our Rust code.
//!
//! Entry points are plain `extern "C-unwind"` V1 functions declared by hand in
//! `sql/`; [`sql_function!`] gives each one the same shape: run the body under pgrx's
//! guard (Rust panics and Postgres errors raised inside become Postgres errors), and if
//! the body refused, raise that refusal with its SM SQLSTATE at the outermost point,
//! once every Rust value of the call is gone.

use pgrx::pg_sys;
use statemachine_core::{CaseFacts, Refusal, Report};

pub type SmResult<T> = Result<T, Report>;

/// Declares a V1 SQL-callable function `$sym` whose body is `$imp(fcinfo) -> SmResult<Datum>`.
#[macro_export]
macro_rules! sql_function {
    ($sym:ident, $finfo:ident, $imp:path) => {
        #[no_mangle]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static ::pgrx::pg_sys::Pg_finfo_record {
            const V1: ::pgrx::pg_sys::Pg_finfo_record = ::pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }

        #[no_mangle]
        #[doc(hidden)]
        pub unsafe extern "C-unwind" fn $sym(fcinfo: ::pgrx::pg_sys::FunctionCallInfo) -> ::pgrx::pg_sys::Datum {
            let mut refusal: Option<::statemachine_core::Report> = None;
            let datum = unsafe { $crate::fmgr::run_guarded(fcinfo, &mut refusal, $imp) };
            if let Some(report) = refusal {
                unsafe { $crate::ereport::raise(report) }
            }
            datum
        }
    };
}

/// Runs `body` under pgrx's guard; a refusal is handed out through `refusal`.
///
/// # Safety
/// `fcinfo` must be the call's own.
pub unsafe fn run_guarded(
    fcinfo: pg_sys::FunctionCallInfo,
    refusal: &mut Option<Report>,
    body: unsafe fn(pg_sys::FunctionCallInfo) -> SmResult<pg_sys::Datum>,
) -> pg_sys::Datum {
    unsafe {
        pg_sys::panic::pgrx_extern_c_guard(|| match body(fcinfo) {
            Ok(d) => d,
            Err(r) => {
                *refusal = Some(r);
                pg_sys::Datum::from(0usize)
            }
        })
    }
}

fn refuse(r: Refusal) -> Report {
    r.report(&CaseFacts::default())
}

/// Typed access to a call's arguments.
pub struct Args(pub pg_sys::FunctionCallInfo);

impl Args {
    /// An argument the call does not have (an older SQL declaration with fewer
    /// parameters, during an upgrade) reads as NULL instead of past the end.
    pub fn is_null(&self, i: usize) -> bool {
        let nargs = unsafe { (*self.0).nargs };
        i >= usize::try_from(nargs).unwrap_or(0) || unsafe { pgrx::fcinfo::pg_arg_is_null(self.0, i) }
    }

    pub fn datum(&self, i: usize) -> Option<pg_sys::Datum> {
        if self.is_null(i) {
            None
        } else {
            Some(unsafe { pgrx::fcinfo::pg_getarg_datum_raw(self.0, i) })
        }
    }

    pub fn required(&self, i: usize, name: &str) -> SmResult<pg_sys::Datum> {
        self.datum(i).ok_or_else(|| refuse(Refusal::NullArgument { name: name.into() }))
    }

    pub fn text(&self, i: usize, name: &str) -> SmResult<String> {
        let s = unsafe { text_from_datum(self.required(i, name)?) };
        if s.trim().is_empty() {
            return Err(refuse(Refusal::EmptyArgument { name: name.into() }));
        }
        Ok(s)
    }

    pub fn opt_text(&self, i: usize) -> Option<String> {
        self.datum(i).map(|d| unsafe { text_from_datum(d) })
    }

    pub fn uuid(&self, i: usize, name: &str) -> SmResult<[u8; 16]> {
        Ok(unsafe { uuid_from_datum(self.required(i, name)?) })
    }

    pub fn opt_i32(&self, i: usize) -> Option<i32> {
        self.datum(i).map(|d| d.value() as i32)
    }

    pub fn opt_i64(&self, i: usize) -> Option<i64> {
        self.datum(i).map(|d| d.value() as i64)
    }
}

/// Copies a text datum (possibly toasted) into a Rust String.
///
/// # Safety
/// `d` must be a non-null text datum.
pub unsafe fn text_from_datum(d: pg_sys::Datum) -> String {
    unsafe {
        let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
        pgrx::varlena::text_to_rust_str(v).map(str::to_owned).unwrap_or_else(|e| {
            // The database encoding is not UTF-8: keep what can be kept.
            String::from_utf8_lossy(&pgrx::varlena::varlena_to_byte_slice(v)[..e.valid_up_to()]).into_owned()
        })
    }
}

/// A palloc'd text datum in the current memory context.
pub fn text_datum(s: &str) -> pg_sys::Datum {
    unsafe {
        let t = pg_sys::cstring_to_text_with_len(s.as_ptr().cast(), s.len() as i32);
        pg_sys::Datum::from(t)
    }
}

/// # Safety
/// `d` must be a non-null uuid datum.
pub unsafe fn uuid_from_datum(d: pg_sys::Datum) -> [u8; 16] {
    let mut out = [0u8; 16];
    unsafe { std::ptr::copy_nonoverlapping(d.cast_mut_ptr::<u8>(), out.as_mut_ptr(), 16) };
    out
}

/// A palloc'd uuid datum in the current memory context.
pub fn uuid_datum(bytes: &[u8; 16]) -> pg_sys::Datum {
    unsafe {
        let p = pg_sys::palloc(16) as *mut u8;
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, 16);
        pg_sys::Datum::from(p)
    }
}

pub fn uuid_string(bytes: &[u8; 16]) -> String {
    statemachine_core::ids::uuid_text(bytes)
}

/// A palloc'd interval datum.
pub fn interval_datum(iv: &statemachine_core::Interval) -> pg_sys::Datum {
    unsafe {
        let p = pg_sys::palloc(std::mem::size_of::<pg_sys::Interval>()) as *mut pg_sys::Interval;
        (*p).time = iv.micros;
        (*p).day = iv.days;
        (*p).month = iv.months;
        pg_sys::Datum::from(p)
    }
}

/// A jsonb datum from JSON text, through jsonb's input function.
pub fn jsonb_datum(json: &str) -> pg_sys::Datum {
    let c = std::ffi::CString::new(json.replace('\0', "\\u0000")).unwrap_or_default();
    unsafe {
        let mut input_fn = pg_sys::InvalidOid;
        let mut ioparam = pg_sys::InvalidOid;
        pg_sys::getTypeInputInfo(pg_sys::JSONBOID, &mut input_fn, &mut ioparam);
        pg_sys::OidInputFunctionCall(input_fn, c.as_ptr().cast_mut(), ioparam, -1)
    }
}

/// Text form of any datum through its type's output function (for messages).
pub fn datum_text(d: pg_sys::Datum, typid: pg_sys::Oid) -> String {
    unsafe {
        let mut out_fn = pg_sys::InvalidOid;
        let mut varlena = false;
        pg_sys::getTypeOutputInfo(typid, &mut out_fn, &mut varlena);
        let c = pg_sys::OidOutputFunctionCall(out_fn, d);
        let s = std::ffi::CStr::from_ptr(c).to_string_lossy().into_owned();
        pg_sys::pfree(c.cast());
        s
    }
}
