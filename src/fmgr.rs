//! The boundary between PostgreSQL's fmgr and our Rust code.
//!
//! Entry points are plain `extern "C-unwind"` V1 functions declared by hand in
//! `sql/`; [`sql_function!`] gives each one the same shape: run the body under pgrx's
//! guard (Rust panics and Postgres errors raised inside become Postgres errors), and if
//! the body refused, raise that refusal with its SM SQLSTATE at the outermost point,
//! once every Rust value of the call is gone. Bodies are safe functions of [`Args`].
//!
//! Datum conversions go through pgrx's `FromDatum`/`IntoDatum` (uuid, interval, text
//! out), except reading text in, which keeps what a non-UTF-8 database can give instead
//! of panicking as pgrx's `String` conversion does.

use pgrx::{pg_sys, IntoDatum};
use statemachine_core::{CaseFacts, Refusal, Report};

pub type SmResult<T> = Result<T, Report>;

/// Declares a V1 SQL-callable function `$sym` whose body is `$imp(&Args) -> SmResult<Datum>`.
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
            // SAFETY: fmgr calls this V1 function with its own, valid fcinfo, and the
            // function's SQL declaration (sql/) gives the argument types the body reads.
            let datum = unsafe { $crate::fmgr::run_guarded(fcinfo, &mut refusal, $imp) };
            if let Some(report) = refusal {
                // SAFETY: nothing of the call that needs dropping is alive any more:
                // run_guarded returned and `report` is moved into raise.
                unsafe { $crate::ereport::raise(report) }
            }
            datum
        }
    };
}

/// Runs `body` under pgrx's guard; a refusal is handed out through `refusal`.
///
/// # Safety
/// `fcinfo` must be the call's own, and the call's SQL declaration must match what
/// `body` reads from it.
pub unsafe fn run_guarded(
    fcinfo: pg_sys::FunctionCallInfo,
    refusal: &mut Option<Report>,
    body: fn(&Args) -> SmResult<pg_sys::Datum>,
) -> pg_sys::Datum {
    let args = Args(fcinfo);
    // SAFETY: pgrx_extern_c_guard turns a Rust panic into a Postgres ERROR and lets a
    // Postgres ERROR raised below unwind through Rust frames, dropping them.
    unsafe {
        pg_sys::panic::pgrx_extern_c_guard(|| match body(&args) {
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

/// The arguments of one call. Only [`run_guarded`] makes one, from the call's own
/// fcinfo, so every method may read it. What type each argument has is fixed by the
/// function's declaration in `sql/`; the readers that follow a pointer (text, uuid,
/// jsonb) also check the argument's type where the call carries its expression, so a
/// declaration that disagreed with the body would be an internal error, not a misread.
pub struct Args(pg_sys::FunctionCallInfo);

impl Args {
    /// The call's fcinfo, for what needs it whole (returning a set).
    pub fn fcinfo(&self) -> pg_sys::FunctionCallInfo {
        self.0
    }

    /// An argument the call does not have (an older SQL declaration with fewer
    /// parameters, during an upgrade) reads as NULL instead of past the end.
    pub fn is_null(&self, i: usize) -> bool {
        // SAFETY: the fcinfo is the call's own (see the type's invariant); `i` is checked
        // against nargs before the null flag is read.
        unsafe {
            let nargs = (*self.0).nargs;
            i >= usize::try_from(nargs).unwrap_or(0) || pgrx::fcinfo::pg_arg_is_null(self.0, i)
        }
    }

    pub fn datum(&self, i: usize) -> Option<pg_sys::Datum> {
        if self.is_null(i) {
            None
        } else {
            // SAFETY: `i < nargs` and the argument is not NULL (is_null above).
            Some(unsafe { pgrx::fcinfo::pg_getarg_datum_raw(self.0, i) })
        }
    }

    pub fn required(&self, i: usize, name: &str) -> SmResult<pg_sys::Datum> {
        self.datum(i).ok_or_else(|| refuse(Refusal::NullArgument { name: name.into() }))
    }

    /// Argument `i`, checked to be of type `expected` (or a domain over it) when the call
    /// says what it passed; a call without expression information (none of ours from SQL)
    /// is taken at its declaration's word.
    fn typed(&self, i: usize, expected: pg_sys::Oid) -> Option<pg_sys::Datum> {
        let d = self.datum(i)?;
        // SAFETY: flinfo is the call's own; get_fn_expr_argtype returns InvalidOid when the
        // call has no expression, and getBaseType is a catalog lookup for a valid type oid.
        let ok = unsafe {
            let t = pg_sys::get_fn_expr_argtype((*self.0).flinfo, i as i32);
            t == expected || t == pg_sys::InvalidOid || pg_sys::getBaseType(t) == expected
        };
        assert!(ok, "argument {i} is not of type {}", expected.to_u32());
        Some(d)
    }

    /// A text argument that must be present and not blank.
    pub fn text(&self, i: usize, name: &str) -> SmResult<String> {
        let d = self.required(i, name)?;
        // SAFETY: a non-NULL argument checked to be text.
        let s = unsafe { text_from_datum(self.typed(i, pg_sys::TEXTOID).unwrap_or(d)) };
        if s.trim().is_empty() {
            return Err(refuse(Refusal::EmptyArgument { name: name.into() }));
        }
        Ok(s)
    }

    pub fn opt_text(&self, i: usize) -> Option<String> {
        // SAFETY: a non-NULL argument checked to be text.
        self.typed(i, pg_sys::TEXTOID).map(|d| unsafe { text_from_datum(d) })
    }

    /// A uuid argument that must be present.
    pub fn uuid(&self, i: usize, name: &str) -> SmResult<[u8; 16]> {
        let d = self.required(i, name)?;
        // SAFETY: a non-NULL argument checked to be uuid.
        Ok(unsafe { uuid_from_datum(self.typed(i, pg_sys::UUIDOID).unwrap_or(d)) })
    }

    pub fn opt_uuid(&self, i: usize) -> Option<[u8; 16]> {
        // SAFETY: a non-NULL argument checked to be uuid.
        self.typed(i, pg_sys::UUIDOID).map(|d| unsafe { uuid_from_datum(d) })
    }

    pub fn opt_bool(&self, i: usize) -> Option<bool> {
        self.datum(i).map(|d| d.value() != 0)
    }

    pub fn opt_i32(&self, i: usize) -> Option<i32> {
        self.datum(i).map(|d| d.value() as i32)
    }

    pub fn opt_i64(&self, i: usize) -> Option<i64> {
        self.datum(i).map(|d| d.value() as i64)
    }
}

/// Copies a text datum (possibly toasted) into a Rust String; bytes that are not UTF-8
/// (a database in another encoding) end the string instead of panicking.
///
/// # Safety
/// `d` must be a non-null text datum.
pub unsafe fn text_from_datum(d: pg_sys::Datum) -> String {
    // SAFETY: `d` is a text datum (the caller's contract); detoasting gives a valid
    // varlena in the current memory context.
    unsafe {
        let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
        pgrx::varlena::text_to_rust_str(v).map(str::to_owned).unwrap_or_else(|e| {
            String::from_utf8_lossy(&pgrx::varlena::varlena_to_byte_slice(v)[..e.valid_up_to()]).into_owned()
        })
    }
}

/// A text datum in the current memory context.
pub fn text_datum(s: &str) -> pg_sys::Datum {
    s.into_datum().unwrap_or(pg_sys::Datum::from(0usize))
}

/// # Safety
/// `d` must be a non-null uuid datum.
pub unsafe fn uuid_from_datum(d: pg_sys::Datum) -> [u8; 16] {
    // SAFETY: the caller's contract: a non-null uuid datum points at 16 bytes.
    let u = unsafe { <pgrx::Uuid as pgrx::FromDatum>::from_datum(d, false) };
    u.map(|u| *u).unwrap_or_default()
}

/// A uuid datum in the current memory context.
pub fn uuid_datum(bytes: &[u8; 16]) -> pg_sys::Datum {
    pgrx::Uuid::from_bytes(*bytes).into_datum().unwrap_or(pg_sys::Datum::from(0usize))
}

pub fn uuid_string(bytes: &[u8; 16]) -> String {
    statemachine_core::ids::uuid_text(bytes)
}

/// An interval datum in the current memory context.
pub fn interval_datum(iv: &statemachine_core::Interval) -> pg_sys::Datum {
    // pgrx refuses only mixed signs, which the core's interval parser never produces
    // (it refuses negative amounts); a row edited by hand to hold one is an internal error.
    pgrx::datum::Interval::new(iv.months, iv.days, iv.micros)
        .ok()
        .and_then(IntoDatum::into_datum)
        .expect("intervals of published definitions are never negative")
}

/// A jsonb datum from JSON text, through jsonb's input function.
pub fn jsonb_datum(json: &str) -> pg_sys::Datum {
    let c = std::ffi::CString::new(json.replace('\0', "\\u0000")).unwrap_or_default();
    // SAFETY: jsonb's input function takes a NUL-terminated string, which `c` is and
    // which outlives the call; invalid JSON raises a Postgres error, not UB.
    unsafe {
        let mut input_fn = pg_sys::InvalidOid;
        let mut ioparam = pg_sys::InvalidOid;
        pg_sys::getTypeInputInfo(pg_sys::JSONBOID, &mut input_fn, &mut ioparam);
        pg_sys::OidInputFunctionCall(input_fn, c.as_ptr().cast_mut(), ioparam, -1)
    }
}

/// Text form of a datum through its type's output function (for messages).
///
/// # Safety
/// `d` must be a non-null datum of type `typid`.
pub unsafe fn datum_text(d: pg_sys::Datum, typid: pg_sys::Oid) -> String {
    // SAFETY: the caller's contract; the output function returns a palloc'd C string,
    // copied and freed here.
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

/// jsonb's text of a jsonb datum, through its output function looked up once per backend
/// (the write path seals each row's metadata: no catalog lookups per call).
///
/// # Safety
/// `d` must be a non-null jsonb datum.
pub unsafe fn jsonb_out(d: pg_sys::Datum) -> String {
    thread_local! {
        static JSONB_OUT: std::cell::Cell<Option<*mut pg_sys::FmgrInfo>> = const { std::cell::Cell::new(None) };
    }
    let flinfo = JSONB_OUT.with(|f| {
        f.get().unwrap_or_else(|| {
            // SAFETY: jsonb's output function, looked up in the catalog; the FmgrInfo lives
            // in TopMemoryContext for the backend's life.
            let info = unsafe {
                let mut out_fn = pg_sys::InvalidOid;
                let mut varlena = false;
                pg_sys::getTypeOutputInfo(pg_sys::JSONBOID, &mut out_fn, &mut varlena);
                let info = pg_sys::MemoryContextAllocZero(pg_sys::TopMemoryContext, std::mem::size_of::<pg_sys::FmgrInfo>())
                    .cast::<pg_sys::FmgrInfo>();
                pg_sys::fmgr_info_cxt(out_fn, info, pg_sys::TopMemoryContext);
                info
            };
            f.set(Some(info));
            info
        })
    });
    // SAFETY: the caller's contract; the output function returns a palloc'd C string,
    // copied and freed here.
    unsafe {
        let c = pg_sys::OutputFunctionCall(flinfo, d);
        let s = std::ffi::CStr::from_ptr(c).to_string_lossy().into_owned();
        pg_sys::pfree(c.cast());
        s
    }
}

/// A jsonb argument as JSON text.
pub fn jsonb_text(args: &Args, i: usize, name: &str) -> SmResult<String> {
    let d = args.required(i, name)?;
    // SAFETY: a non-NULL argument checked to be jsonb.
    Ok(unsafe { datum_text(args.typed(i, pg_sys::JSONBOID).unwrap_or(d), pg_sys::JSONBOID) })
}
