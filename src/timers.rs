//! Timed transitions' bookkeeping. run_due_transitions (PL/pgSQL in `sql/`) performs due
//! timers through transition_case; when one is refused it calls defer_timer, which
//! records the refusal and when to try again (from a minute, doubling, up to a day), so a
//! refused case backs off instead of staying at the head of the queue.

use crate::door::{refuse_inside_guard, Grant, Op};
use crate::fmgr::{Args, SmResult};
use crate::spi::{Spi, Stmt, INT8, TEXT, UUID};
use crate::{door, sql_function};
use pgrx::pg_sys;

static DEFER: Stmt = Stmt {
    sql: "INSERT INTO statemachine.timer_backoff AS b (case_id, state_version, transition_code, attempts, retry_at, \
              last_sqlstate, last_message) \
          VALUES ($1, $2, $3, 1, pg_catalog.now() OPERATOR(pg_catalog.+) '1 minute'::pg_catalog.interval, $4, $5) \
          ON CONFLICT (case_id, state_version, transition_code) DO UPDATE \
          SET attempts = b.attempts OPERATOR(pg_catalog.+) 1, \
              retry_at = pg_catalog.now() OPERATOR(pg_catalog.+) LEAST( \
                  '1 minute'::pg_catalog.interval OPERATOR(pg_catalog.*) \
                      pg_catalog.power(2::pg_catalog.float8, LEAST(b.attempts, 11)::pg_catalog.float8), \
                  '1 day'::pg_catalog.interval), \
              last_sqlstate = excluded.last_sqlstate, last_message = excluded.last_message \
          RETURNING b",
    args: &[UUID, INT8, TEXT, TEXT, TEXT],
};

fn defer_timer(a: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("defer_timer")?;
    let args = [a.required(0, "case_id")?, a.required(1, "state_version")?, a.required(2, "transition_code")?];
    let spi = Spi::connect();
    const WRITES: &[Grant] = &[("timer_backoff", Op::Insert), ("timer_backoff", Op::Update)];
    let _door = door::open(WRITES);
    let row = spi.run(&DEFER, &[Some(args[0]), Some(args[1]), Some(args[2]), a.datum(3), a.datum(4)], 1).get(0, 1);
    Ok(spi.keep(row.expect("INSERT ... ON CONFLICT DO UPDATE ... RETURNING returns its row")))
}

sql_function!(sm_defer_timer, pg_finfo_sm_defer_timer, defer_timer);
