//! Timed transitions. run_due_transitions takes due timers a chunk at a time (SKIP
//! LOCKED: several sessions share a backlog without firing a case twice) and performs
//! them with the set-based engine (bulk.rs), as actor 00000000-… in role SYSTEM with
//! reason TIMER. A refused one is recorded with when to try it again (from a minute,
//! doubling, up to a day), so a refused case backs off instead of staying at the head of
//! the queue and never blocks the timers due after it.

use crate::bulk::{installation_secret, run_chunk, Common, Item, Outcome, CHUNK};
use crate::door::{refuse_inside_guard, Grant, Op};
use crate::fmgr::{text_datum, uuid_datum, uuid_string, Args, SmResult};
use crate::spi::{Spi, Stmt, INT8, TEXT, TIMESTAMPTZ, UUID, UUID_ARRAY};
use crate::srf::{Cell, Materialized};
use crate::{door, sql_function};
use pgrx::pg_sys;
use pgrx::IntoDatum;
use statemachine_core::{ids, CaseFacts, Refusal};
use std::collections::HashSet;

/// Due timers (on UTC's calendar, as transition_case counts time in state), never-refused
/// ones first, then oldest first; refused ones wait out their backoff. An interval beyond
/// what a timestamp can hold (a definition from before 0.3.0) is never due. The first
/// condition on state_entered_at is a bound an index range scan can serve
/// (case_file_version_state_age_idx), so each chunk reads the due cases, not every case
/// in a timed state: on UTC's calendar, days and times subtract exactly, and a month may
/// end up to 3 days short (Jan 31 + 1 month = Feb 28), hence 4 days of slack for
/// intervals with months; the exact test follows it.
macro_rules! due {
    ($lock:literal) => {
        concat!("SELECT c.id, c.state_version, r.transition_code \
          FROM ONLY statemachine.transition_rule r \
          JOIN ONLY statemachine.case_file c \
            ON c.machine_version_id OPERATOR(pg_catalog.=) r.machine_version_id AND c.current_state OPERATOR(pg_catalog.=) r.from_state \
          LEFT JOIN ONLY statemachine.timer_backoff b \
            ON b.case_id OPERATOR(pg_catalog.=) c.id AND b.state_version OPERATOR(pg_catalog.=) c.state_version \
           AND b.transition_code OPERATOR(pg_catalog.=) r.transition_code \
          WHERE r.fire_after IS NOT NULL \
            AND c.state_entered_at OPERATOR(pg_catalog.<=) pg_catalog.timezone('UTC', \
                (pg_catalog.timezone('UTC', pg_catalog.now()) OPERATOR(pg_catalog.-) LEAST(r.fire_after, '1000 years'::pg_catalog.interval)) \
                OPERATOR(pg_catalog.+) CASE WHEN pg_catalog.date_part('year', r.fire_after) OPERATOR(pg_catalog.=) 0 \
                                             AND pg_catalog.date_part('month', r.fire_after) OPERATOR(pg_catalog.=) 0 \
                                            THEN '0'::pg_catalog.interval ELSE '4 days'::pg_catalog.interval END) \
            AND CASE WHEN r.fire_after OPERATOR(pg_catalog.<=) '1000 years'::pg_catalog.interval \
                     THEN pg_catalog.timezone('UTC', c.state_entered_at) OPERATOR(pg_catalog.+) r.fire_after \
                          OPERATOR(pg_catalog.<=) pg_catalog.timezone('UTC', pg_catalog.now()) END \
            AND (b.retry_at IS NULL OR b.retry_at OPERATOR(pg_catalog.<=) pg_catalog.now()) \
          ORDER BY COALESCE(b.attempts, 0), c.state_entered_at, c.id, r.fire_after, r.transition_code \
          LIMIT $1 \
", $lock)
    };
}
static DUE: Stmt = Stmt { sql: due!("          FOR UPDATE OF c SKIP LOCKED"), args: &[INT8] };
/// On a distributed installation: the due timers without their locks (Citus locks rows
/// only within one shard); each shard's share is locked next, by [`LOCK_SHARD`].
static DUE_CANDIDATES: Stmt = Stmt { sql: due!(""), args: &[INT8] };
/// One shard's due cases, locked (skipping those another runner holds).
static LOCK_SHARD: Stmt = Stmt {
    sql: "SELECT c.id, c.state_version FROM ONLY statemachine.case_file c \
          WHERE c.id OPERATOR(pg_catalog.=) ANY ($1) ORDER BY c.id FOR UPDATE SKIP LOCKED",
    args: &[UUID_ARRAY],
};

static DEFER: Stmt = Stmt {
    sql: "INSERT INTO statemachine.timer_backoff AS b (case_id, state_version, transition_code, attempts, retry_at, \
              last_sqlstate, last_message) \
          VALUES ($1, $2, $3, 1, $6 OPERATOR(pg_catalog.+) '1 minute'::pg_catalog.interval, $4, $5) \
          ON CONFLICT (case_id, state_version, transition_code) DO UPDATE \
          SET attempts = b.attempts OPERATOR(pg_catalog.+) 1, \
              retry_at = pg_catalog.timezone('UTC', pg_catalog.timezone('UTC', $6) OPERATOR(pg_catalog.+) LEAST( \
                  '1 minute'::pg_catalog.interval OPERATOR(pg_catalog.*) \
                      pg_catalog.power(2::pg_catalog.float8, LEAST(b.attempts, 11)::pg_catalog.float8), \
                  '1 day'::pg_catalog.interval)), \
              last_sqlstate = excluded.last_sqlstate, last_message = excluded.last_message \
          RETURNING ROW(b.*)::statemachine.timer_backoff",
    args: &[UUID, INT8, TEXT, TEXT, TEXT, TIMESTAMPTZ],
};

/// The actor timers run as.
const TIMER_ACTOR: [u8; 16] = [0; 16];

fn run_due_transitions(a: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("run_due_transitions")?;
    let batch = a.opt_i32(0).filter(|b| *b >= 1).ok_or_else(|| {
        let problem = format!("is {}; it must be a positive integer", a.opt_i32(0).map_or("NULL".to_owned(), |b| b.to_string()));
        Refusal::InvalidArgument { name: "batch".into(), problem }.report(&CaseFacts::default())
    })?;
    // SAFETY: run_due_transitions is declared RETURNS TABLE (case_id uuid, transition_code
    // text, ok boolean, to_state text, error_sqlstate text, error_message text).
    let out = unsafe { Materialized::init(a) };
    let common = Common {
        actor: TIMER_ACTOR,
        role: "SYSTEM",
        reason_code: Some("TIMER"),
        reason_text: None,
        correlation: None,
        abort: false,
        recorded_by: crate::facts::session_user(),
    };
    let mut secret = None;
    let mut left = batch as usize;
    while left > 0 {
        // A chunk at a time: each chunk's memory is its own connection's.
        let spi = Spi::connect();
        let secret = secret.get_or_insert_with(|| installation_secret(&spi));
        let wanted = left.min(CHUNK);
        let distributed = crate::remote_door::distributed();
        let due = spi.run(if distributed { &DUE_CANDIDATES } else { &DUE }, &[Some(pg_sys::Datum::from(wanted as i64))], 0);
        let found = due.count;
        // Two timed rules due from one state: the first fires; the other is looked at
        // again in the next chunk (moot if the case moved, due if the first was refused).
        let mut seen = HashSet::new();
        let mut timers: Vec<(Item, i64)> = Vec::with_capacity(found);
        for r in 0..found {
            let (Some(case), Some(version), Some(code)) = (due.uuid(r, 1), due.i64(r, 2), due.text(r, 3)) else { continue };
            if seen.insert(case) {
                // Derived from the case's version (keyed: no caller can spend it first), so a
                // re-run never fires twice.
                let command = ids::derived(secret, "timer", &[&uuid_string(&case), &code, &version.to_string()]);
                timers.push((Item { case, code, command }, version));
            }
        }
        // The engine locks in id order; SKIP LOCKED above already holds every lock (one
        // shard at a time on a distributed installation).
        timers.sort_by_key(|(item, _)| item.case);
        let groups = if distributed { lock_by_shard(&spi, timers) } else { vec![timers] };
        let mut done = 0;
        for group in groups {
            let (items, versions): (Vec<Item>, Vec<i64>) = group.into_iter().unzip();
            done += items.len();
            let outcomes = run_chunk(&spi, &items, &common)?;
            report(&spi, &out, &items, &versions, outcomes);
        }
        // Timers another runner holds count as looked at: the next chunk moves on.
        left -= if distributed { found.max(done) } else { done };
        if found < wanted || (distributed && done == 0) {
            break;
        }
    }
    Ok(pg_sys::Datum::from(0usize))
}

/// The due timers (in id order) grouped by shard, each group locked; timers another
/// runner holds, or whose case moved since it was found, are left out.
fn lock_by_shard(spi: &Spi, timers: Vec<(Item, i64)>) -> Vec<Vec<(Item, i64)>> {
    crate::shards::by_shard(spi, timers, |(item, _)| item.case)
        .into_iter()
        .map(|group| {
            let ids: Vec<pgrx::Uuid> = group.iter().map(|(item, _)| pgrx::Uuid::from_bytes(item.case)).collect();
            let locked = spi.run(&LOCK_SHARD, &[ids.into_datum()], 0);
            let held: HashSet<([u8; 16], i64)> =
                (0..locked.count).filter_map(|r| Some((locked.uuid(r, 1)?, locked.i64(r, 2)?))).collect();
            group.into_iter().filter(|(item, version)| held.contains(&(item.case, *version))).collect()
        })
        .collect()
}

/// One row of run_due_transitions' result per timer; a refused one backs off.
fn report(spi: &Spi, out: &Materialized, items: &[Item], versions: &[i64], outcomes: Vec<Outcome>) {
    for ((item, version), outcome) in items.iter().zip(versions).zip(outcomes) {
        out.put(&match outcome {
            Outcome::Moved { to_state, .. } => {
                vec![Cell::Uuid(item.case), Cell::Text(Some(item.code.clone())), Cell::Bool(true), Cell::Text(Some(to_state)), Cell::Null, Cell::Null]
            }
            Outcome::Refused(r) => {
                defer(spi, &item.case, *version, &item.code, Some(&r.sqlstate), Some(&r.message));
                vec![
                    Cell::Uuid(item.case),
                    Cell::Text(Some(item.code.clone())),
                    Cell::Bool(false),
                    Cell::Null,
                    Cell::Text(Some(r.sqlstate)),
                    Cell::Text(Some(r.message)),
                ]
            }
        });
    }
}

/// Records a refused timer and when to try it again; its timer_backoff row.
fn defer(spi: &Spi, case: &[u8; 16], version: i64, code: &str, sqlstate: Option<&str>, message: Option<&str>) -> Option<pg_sys::Datum> {
    const WRITES: &[Grant] = &[("timer_backoff", Op::Insert), ("timer_backoff", Op::Update)];
    let _door = door::open(WRITES);
    // The transaction's clock (now()), passed in, and the backoff added on UTC's calendar:
    // a distributed installation's upsert may call no function that is not immutable.
    // SAFETY: reads the transaction start time of the current transaction.
    let now = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
    let args = [
        Some(uuid_datum(case)),
        Some(pg_sys::Datum::from(version)),
        Some(text_datum(code)),
        sqlstate.map(text_datum),
        message.map(text_datum),
        Some(pg_sys::Datum::from(now)),
    ];
    spi.run(&DEFER, &args, 1).get(0, 1)
}

/// defer_timer(case_id, state_version, transition_code, error_sqlstate, error_message):
/// what run_due_transitions records for a refused timer, for tools that run timers
/// their own way.
fn defer_timer(a: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("defer_timer")?;
    let case = a.uuid(0, "case_id")?;
    let version = a.opt_i64(1).ok_or_else(|| Refusal::NullArgument { name: "state_version".into() }.report(&CaseFacts::default()))?;
    let code = a.text(2, "transition_code")?;
    let spi = Spi::connect();
    let row = defer(&spi, &case, version, &code, a.opt_text(3).as_deref(), a.opt_text(4).as_deref());
    Ok(spi.keep(row.expect("INSERT ... ON CONFLICT DO UPDATE ... RETURNING returns its row")))
}

sql_function!(sm_run_due_transitions, pg_finfo_sm_run_due_transitions, run_due_transitions);
sql_function!(sm_defer_timer, pg_finfo_sm_defer_timer, defer_timer);
