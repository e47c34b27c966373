//! The few places where PostgreSQL majors differ under us (13 to 18); everything else
//! pgrx's bindings cover. `scripts/check-majors` type-checks these against each major.

use pgrx::pg_sys;
use pgrx::prelude::*;

/// `TupleDescAttr(desc, i)`: attribute `i` (0-based). PostgreSQL 18 put the full
/// attributes after an array of compact ones.
///
/// # Safety
/// `desc` must be a valid tuple descriptor and `i < natts`.
pub unsafe fn tuple_desc_attr(desc: pg_sys::TupleDesc, i: usize) -> *const pg_sys::FormData_pg_attribute {
    #[cfg(not(feature = "pg18"))]
    // SAFETY: the caller's contract: `i < natts` indexes the attribute array.
    unsafe {
        (*desc).attrs.as_ptr().add(i)
    }
    #[cfg(feature = "pg18")]
    // SAFETY: the caller's contract: `i < natts`; on 18 the full attributes follow the
    // `natts` compact ones (TupleDescAttr in tupdesc.h).
    unsafe {
        (*desc).compact_attrs.as_ptr().add((*desc).natts as usize).cast::<pg_sys::FormData_pg_attribute>().add(i)
    }
}

/// Sets up a set-returning call to return its rows in materialize mode: what
/// `InitMaterializedSRF(fcinfo, 0)` does on PostgreSQL 15 and later, written out because
/// 13 and 14 do not have it.
///
/// # Safety
/// `fcinfo` must be the call's own.
pub unsafe fn init_materialized_srf(fcinfo: pg_sys::FunctionCallInfo) {
    // SAFETY: fcinfo is the call's own (the caller's contract); rsinfo is checked for
    // NULL and its node tag before use, as InitMaterializedSRF does.
    unsafe {
        let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
        if rsinfo.is_null()
            || (*rsinfo).type_ != pg_sys::NodeTag::T_ReturnSetInfo
            || ((*rsinfo).allowedModes & pg_sys::SetFunctionReturnMode::SFRM_Materialize as i32) == 0
        {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                "set-valued function called in context that cannot accept a set"
            );
        }
        let old = pg_sys::MemoryContextSwitchTo((*(*rsinfo).econtext).ecxt_per_query_memory);
        let mut desc: pg_sys::TupleDesc = std::ptr::null_mut();
        if pg_sys::get_call_result_type(fcinfo, std::ptr::null_mut(), &mut desc) != pg_sys::TypeFuncClass::TYPEFUNC_COMPOSITE {
            ereport!(ERROR, PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH, "return type must be a row type");
        }
        let random_access = ((*rsinfo).allowedModes & pg_sys::SetFunctionReturnMode::SFRM_Materialize_Random as i32) != 0;
        (*rsinfo).returnMode = pg_sys::SetFunctionReturnMode::SFRM_Materialize;
        (*rsinfo).setResult = pg_sys::tuplestore_begin_heap(random_access, false, pg_sys::work_mem);
        (*rsinfo).setDesc = desc;
        pg_sys::MemoryContextSwitchTo(old);
    }
}
