//! The outbox (seed 003 §16): the event an emitting transition writes in its own
//! transaction ([`emit`]), and the consumer side, claim_outbox and ack_outbox, which
//! only move the delivery columns.

use crate::fmgr::{text_datum, uuid_datum, Args, SmResult};
use crate::spi::{Spi, Stmt, INT4, INTERVAL, TEXT, TEXT_ARRAY, TIMESTAMPTZ, UUID, UUID_ARRAY};
use crate::door::{self, refuse_inside_guard, Grant, Op};
use crate::{history, sql_function};
use pgrx::{pg_sys, IntoDatum};
use statemachine_core::{CaseFacts, Refusal};

/// An outbox event built from its history row `t` in the same transaction (`$id`, `$type`:
/// the event's id and type), inserted from `$from` (which names `t`).
macro_rules! insert_events {
    ($id:literal, $type:literal, $from:literal, $returning:expr) => {
        concat!("INSERT INTO statemachine.outbox_event AS o (id, aggregate_id, aggregate_seq, event_type, transition_id, payload, \
              correlation_id, causation_id, created_at) \
          SELECT ", $id, ", t.case_id, t.state_version, ", $type, ", t.id, \
                 pg_catalog.jsonb_build_object('transition', pg_catalog.jsonb_build_object( \
                     'id', t.id, 'case_id', t.case_id, 'machine', t.machine, 'policy_version', t.policy_version, \
                     'from_state', t.from_state, 'to_state', t.to_state, 'transition_code', t.transition_code, \
                     'state_version', t.state_version, 'actor_id', t.actor_id, 'actor_role', t.actor_role, \
                     'reason_code', t.reason_code, 'reason_text', t.reason_text, 'occurred_at', t.occurred_at, \
                     'command_id', t.command_id), \
                   'correlation_id', t.correlation_id, 'causation_id', t.causation_id), \
                 t.correlation_id, t.causation_id, t.occurred_at \
          FROM ", $from, " ", $returning)
    };
}
/// The events of transitions ($1: event ids, $2: event types, $3: history row ids).
macro_rules! events_of_transitions {
    ($returning:expr) => {
        insert_events!("u.id", "u.event_type",
            "ROWS FROM (pg_catalog.unnest($1::pg_catalog.uuid[]), pg_catalog.unnest($2::pg_catalog.text[]), \
                        pg_catalog.unnest($3::pg_catalog.uuid[])) WITH ORDINALITY AS u(id, event_type, transition_id, n) \
             JOIN ONLY statemachine.case_state_transition t ON t.id OPERATOR(pg_catalog.=) u.transition_id \
             ORDER BY u.n",
            $returning)
    };
}
/// A NOTIFY's payload on channel statemachine_outbox: "<event type> <case id>" of the
/// inserted event `o`.
macro_rules! notify_payload {
    () => {
        "o.event_type OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) o.aggregate_id::pg_catalog.text"
    };
}
/// Each NOTIFY is delivered when the transaction commits. One statement for one transition
/// or a bulk's thousands.
static INSERT_EVENTS: Stmt = Stmt {
    sql: events_of_transitions!(concat!("RETURNING pg_catalog.pg_notify('statemachine_outbox', ", notify_payload!(), ")")),
    args: &[UUID_ARRAY, TEXT_ARRAY, UUID_ARRAY],
};
/// On a distributed installation the rows are written on the workers, where a NOTIFY
/// would wake no listener of the coordinator (and a transaction over several nodes may
/// not notify at all): the payloads come back and are sent here, by [`NOTIFY_PAYLOADS`].
static INSERT_EVENTS_DISTRIBUTED: Stmt = Stmt {
    sql: events_of_transitions!(concat!("RETURNING ", notify_payload!())),
    args: &[UUID_ARRAY, TEXT_ARRAY, UUID_ARRAY],
};
/// One event of one case ($4), read from its history row ($3) on the case's shard only: an
/// INSERT … SELECT between co-located tables that Citus runs on that shard.
static INSERT_EVENT_OF_CASE: Stmt = Stmt {
    sql: insert_events!("$1", "$2",
        "ONLY statemachine.case_state_transition t \
         WHERE t.case_id OPERATOR(pg_catalog.=) $4 AND t.id OPERATOR(pg_catalog.=) $3",
        concat!("RETURNING ", notify_payload!())),
    args: &[UUID, TEXT, UUID, UUID],
};
static NOTIFY_PAYLOADS: Stmt = Stmt {
    sql: "SELECT pg_catalog.pg_notify('statemachine_outbox', p) FROM pg_catalog.unnest($1::pg_catalog.text[]) p",
    args: &[TEXT_ARRAY],
};

/// Writes the events (event type, history row id) of transitions written at `now` or
/// later; the door must be open. `case`: all of them are that case's.
pub fn emit(spi: &Spi, events: &[(String, [u8; 16])], now: pg_sys::TimestampTz, case: Option<pg_sys::Datum>) {
    if events.is_empty() {
        return;
    }
    let ids: Vec<pgrx::Uuid> = events.iter().map(|_| pgrx::Uuid::from_bytes(history::row_id(now))).collect();
    let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    let transitions: Vec<pgrx::Uuid> = events.iter().map(|(_, id)| pgrx::Uuid::from_bytes(*id)).collect();
    if !crate::remote_door::distributed() {
        spi.run(&INSERT_EVENTS, &[ids.into_datum(), types.into_datum(), transitions.into_datum()], 0);
        return;
    }
    let mut payloads: Vec<String> = Vec::with_capacity(events.len());
    let mut note = |written: &crate::spi::Rows<'_>| payloads.extend((0..written.count).filter_map(|r| written.text(r, 1)));
    match case {
        Some(case) => {
            for (id, (event_type, transition)) in ids.iter().zip(events) {
                note(&spi.run(
                    &INSERT_EVENT_OF_CASE,
                    &[Some(uuid_datum(id.as_bytes())), Some(text_datum(event_type)), Some(uuid_datum(transition)), Some(case)],
                    0,
                ));
            }
        }
        None => note(&spi.run(&INSERT_EVENTS_DISTRIBUTED, &[ids.into_datum(), types.into_datum(), transitions.into_datum()], 0)),
    }
    // A call delegated to this node hands them back to the node it came through.
    if crate::delegation::here() {
        crate::delegation::keep_notifications(payloads);
    } else {
        spi.run(&NOTIFY_PAYLOADS, &[payloads.into_datum()], 0);
    }
}

/// Sends NOTIFY payloads (a text[] datum; also those a delegated call handed back).
pub fn notify_payloads(spi: &Spi, payloads: pg_sys::Datum) {
    spi.run(&NOTIFY_PAYLOADS, &[Some(payloads)], 0);
}

/// Pending events (`$now`: the clock a lease is compared with) in creation order, those
/// whose case has an earlier unacknowledged event left out (per-case order). An expired
/// lease makes an event pending again.
macro_rules! pending_events {
    ($now:literal, $limit:literal) => {
        concat!("SELECT o.id, o.aggregate_id FROM ONLY statemachine.outbox_event o \
                 WHERE o.acked_at IS NULL \
                   AND (o.lease_until IS NULL OR o.lease_until OPERATOR(pg_catalog.<) ", $now, ") \
                   AND NOT EXISTS (SELECT 1 FROM ONLY statemachine.outbox_event e \
                                   WHERE e.aggregate_id OPERATOR(pg_catalog.=) o.aggregate_id \
                                     AND e.aggregate_seq OPERATOR(pg_catalog.<) o.aggregate_seq AND e.acked_at IS NULL) \
                 ORDER BY o.created_at, o.id \
                 LIMIT ", $limit)
    };
}
/// The pending events, skipping those another consumer holds (SKIP LOCKED), claimed.
static CLAIM: Stmt = Stmt {
    sql: concat!("WITH candidate AS (", pending_events!("pg_catalog.clock_timestamp()", "$2"), " FOR UPDATE SKIP LOCKED) \
          UPDATE ONLY statemachine.outbox_event o \
             SET claimed_by = $1, claimed_at = pg_catalog.clock_timestamp(), \
                 lease_until = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) $3, \
                 attempts = o.attempts OPERATOR(pg_catalog.+) 1 \
            FROM candidate c WHERE o.id OPERATOR(pg_catalog.=) c.id \
          RETURNING o.*"),
    args: &[TEXT, INT4, INTERVAL],
};
/// On a distributed installation: the pending events (as CLAIM picks them), not locked
/// yet — Citus locks rows only within one shard; [`CLAIM_SHARD`] claims each shard's share.
static CLAIM_CANDIDATES: Stmt = Stmt { sql: pending_events!("$2", "$1"), args: &[INT4, TIMESTAMPTZ] };
/// One shard's candidates ($4: their cases, all on that shard), claimed unless another
/// consumer holds them or claimed them meanwhile. The clock is the call's ($2).
static CLAIM_SHARD: Stmt = Stmt {
    sql: "WITH candidate AS ( \
              SELECT o.id, o.aggregate_id FROM ONLY statemachine.outbox_event o \
              WHERE o.aggregate_id OPERATOR(pg_catalog.=) ANY ($4) AND o.id OPERATOR(pg_catalog.=) ANY ($5) \
                AND o.acked_at IS NULL \
                AND (o.lease_until IS NULL OR o.lease_until OPERATOR(pg_catalog.<) $2) \
              ORDER BY o.created_at, o.id \
              FOR UPDATE SKIP LOCKED) \
          UPDATE ONLY statemachine.outbox_event o \
             SET claimed_by = $1, claimed_at = $2, lease_until = $2 OPERATOR(pg_catalog.+) $3, \
                 attempts = o.attempts OPERATOR(pg_catalog.+) 1 \
            FROM candidate c \
           WHERE o.aggregate_id OPERATOR(pg_catalog.=) ANY ($4) AND o.aggregate_id OPERATOR(pg_catalog.=) c.aggregate_id \
             AND o.id OPERATOR(pg_catalog.=) c.id \
          RETURNING o.*",
    args: &[TEXT, TIMESTAMPTZ, INTERVAL, UUID_ARRAY, UUID_ARRAY],
};
/// The clock is the call's ($2): one time for every event it acknowledges (and a
/// distributed installation's UPDATE may call no volatile function).
static ACK: Stmt = Stmt {
    sql: "UPDATE ONLY statemachine.outbox_event o SET acked_at = $2 \
          WHERE o.id OPERATOR(pg_catalog.=) ANY ($1) AND o.acked_at IS NULL",
    args: &[UUID_ARRAY, TIMESTAMPTZ],
};

fn claim_outbox(a: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("claim_outbox")?;
    let consumer = a.text(0, "consumer")?;
    let batch = a.opt_i32(1).ok_or_else(|| Refusal::NullArgument { name: "batch".into() }.report(&CaseFacts::default()))?;
    let lease = a.required(2, "lease")?;
    if batch < 1 {
        return Err(Refusal::InvalidArgument { name: "batch".into(), problem: format!("{batch} is not a positive number of events") }
            .report(&CaseFacts::default()));
    }
    let spi = Spi::connect();
    const WRITES: &[Grant] = &[("outbox_event", Op::Update)];
    let _door = door::open(WRITES);
    if crate::remote_door::distributed() {
        return claim_by_shard(a, &spi, &consumer, batch, lease);
    }
    let claimed = spi.run(&CLAIM, &[Some(text_datum(&consumer)), Some(pg_sys::Datum::from(batch)), Some(lease)], 0);
    // SAFETY: claim_outbox is declared RETURNS SETOF statemachine.outbox_event and CLAIM
    // returns `o.*` of that table.
    unsafe { crate::srf::return_tuples(a, &claimed) };
    Ok(pg_sys::Datum::from(0usize))
}

/// claim_outbox on a distributed installation: the candidates first, then each shard's
/// share claimed with one statement (the door is open).
fn claim_by_shard(a: &Args, spi: &Spi, consumer: &str, batch: i32, lease: pg_sys::Datum) -> SmResult<pg_sys::Datum> {
    let now = crate::history::now();
    let candidates = spi.run(&CLAIM_CANDIDATES, &[Some(pg_sys::Datum::from(batch)), Some(pg_sys::Datum::from(now))], 0);
    let pairs: Vec<([u8; 16], [u8; 16])> =
        (0..candidates.count).filter_map(|r| Some((candidates.uuid(r, 1)?, candidates.uuid(r, 2)?))).collect();
    let groups = crate::shards::by_shard(spi, pairs, |(_, case)| *case);
    // SAFETY: claim_outbox is declared RETURNS SETOF statemachine.outbox_event and
    // CLAIM_SHARD returns `o.*` of that table.
    unsafe { crate::compat::init_materialized_srf(a.fcinfo()) };
    for group in groups {
        let cases: Vec<pgrx::Uuid> = group.iter().map(|(_, case)| pgrx::Uuid::from_bytes(*case)).collect();
        let events: Vec<pgrx::Uuid> = group.iter().map(|(event, _)| pgrx::Uuid::from_bytes(*event)).collect();
        let claimed = spi.run(
            &CLAIM_SHARD,
            &[Some(text_datum(consumer)), Some(pg_sys::Datum::from(now)), Some(lease), cases.into_datum(), events.into_datum()],
            0,
        );
        // SAFETY: as above; the result was initialised.
        unsafe { crate::srf::put_tuples(a, &claimed) };
    }
    Ok(pg_sys::Datum::from(0usize))
}

fn ack_outbox(a: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("ack_outbox")?;
    let ids = a.required(0, "ids")?;
    let spi = Spi::connect();
    const WRITES: &[Grant] = &[("outbox_event", Op::Update)];
    let _door = door::open(WRITES);
    let acked = spi.run(&ACK, &[Some(ids), Some(pg_sys::Datum::from(crate::history::now()))], 0);
    Ok(pg_sys::Datum::from(acked.count as i32))
}

sql_function!(sm_claim_outbox, pg_finfo_sm_claim_outbox, claim_outbox);
sql_function!(sm_ack_outbox, pg_finfo_sm_ack_outbox, ack_outbox);
