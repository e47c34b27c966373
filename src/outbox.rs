//! The outbox consumer side: claim_outbox and ack_outbox (seed 003 §16). Events are
//! written by transition_case; these functions only move their delivery columns.

use crate::fmgr::{text_datum, Args, SmResult};
use crate::spi::{Spi, Stmt, INT4, INTERVAL, TEXT, UUID_ARRAY};
use crate::{door, sql_function};
use pgrx::pg_sys;
use statemachine_core::{CaseFacts, Refusal};

/// Pending events in creation order, skipping those another consumer holds (SKIP
/// LOCKED) and those whose case has an earlier unacknowledged event (per-case order).
/// An expired lease makes an event pending again.
static CLAIM: Stmt = Stmt {
    sql: "WITH candidate AS ( \
              SELECT o.id FROM statemachine.outbox_event o \
              WHERE o.acked_at IS NULL \
                AND (o.lease_until IS NULL OR o.lease_until OPERATOR(pg_catalog.<) pg_catalog.clock_timestamp()) \
                AND NOT EXISTS (SELECT 1 FROM statemachine.outbox_event e \
                                WHERE e.aggregate_id OPERATOR(pg_catalog.=) o.aggregate_id \
                                  AND e.aggregate_seq OPERATOR(pg_catalog.<) o.aggregate_seq AND e.acked_at IS NULL) \
              ORDER BY o.created_at, o.id \
              LIMIT $2 \
              FOR UPDATE SKIP LOCKED) \
          UPDATE statemachine.outbox_event o \
             SET claimed_by = $1, claimed_at = pg_catalog.clock_timestamp(), \
                 lease_until = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) $3, \
                 attempts = o.attempts OPERATOR(pg_catalog.+) 1 \
            FROM candidate c WHERE o.id OPERATOR(pg_catalog.=) c.id \
          RETURNING o.*",
    args: &[TEXT, INT4, INTERVAL],
};
static ACK: Stmt = Stmt {
    sql: "UPDATE statemachine.outbox_event o SET acked_at = pg_catalog.clock_timestamp() \
          WHERE o.id OPERATOR(pg_catalog.=) ANY ($1) AND o.acked_at IS NULL",
    args: &[UUID_ARRAY],
};

unsafe fn claim_outbox(fcinfo: pg_sys::FunctionCallInfo) -> SmResult<pg_sys::Datum> {
    let a = Args(fcinfo);
    let consumer = a.text(0, "consumer")?;
    let batch = a.opt_i32(1).ok_or_else(|| Refusal::NullArgument { name: "batch".into() }.report(&CaseFacts::default()))?;
    let lease = a.required(2, "lease")?;
    if batch < 1 {
        return Err(Refusal::InvalidArgument { name: "batch".into(), problem: format!("{batch} is not a positive number of events") }
            .report(&CaseFacts::default()));
    }
    let spi = Spi::connect();
    let _door = door::open();
    let claimed = spi.run(&CLAIM, &[Some(text_datum(&consumer)), Some(pg_sys::Datum::from(batch)), Some(lease)], 0);
    unsafe { crate::available::return_tuples(fcinfo, &claimed) };
    Ok(pg_sys::Datum::from(0usize))
}

unsafe fn ack_outbox(fcinfo: pg_sys::FunctionCallInfo) -> SmResult<pg_sys::Datum> {
    let a = Args(fcinfo);
    let ids = a.required(0, "ids")?;
    let spi = Spi::connect();
    let _door = door::open();
    let acked = spi.run(&ACK, &[Some(ids)], 0);
    Ok(pg_sys::Datum::from(acked.count as i32))
}

sql_function!(sm_claim_outbox, pg_finfo_sm_claim_outbox, claim_outbox);
sql_function!(sm_ack_outbox, pg_finfo_sm_ack_outbox, ack_outbox);
