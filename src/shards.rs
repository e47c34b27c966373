//! Case ids grouped by the shard that holds them (distributed installations).
//!
//! Citus locks rows (`FOR UPDATE`, `SKIP LOCKED`) only in a statement that reaches one
//! shard, so the set-based paths (bulk_transition, run_due_transitions, claim_outbox)
//! lock a chunk's cases one shard at a time: shard by shard, and by id within each — the
//! same order for every caller, so they cannot deadlock each other.

use crate::spi::{Spi, Stmt, UUID_ARRAY};
use pgrx::IntoDatum;

static BY_SHARD: Stmt = Stmt {
    sql: "SELECT u.id FROM pg_catalog.unnest($1::pg_catalog.uuid[]) AS u(id) \
          ORDER BY pg_catalog.get_shard_id_for_distribution_column('statemachine.case_file', u.id), u.id",
    args: &[UUID_ARRAY],
};
static SHARD_OF: Stmt = Stmt {
    sql: "SELECT pg_catalog.get_shard_id_for_distribution_column('statemachine.case_file', u.id) \
          FROM pg_catalog.unnest($1::pg_catalog.uuid[]) WITH ORDINALITY AS u(id, n) ORDER BY u.n",
    args: &[UUID_ARRAY],
};

/// The shard id of each case id, in the order given.
pub fn shard_ids(spi: &Spi, ids: &[[u8; 16]]) -> Vec<i64> {
    let arg: Vec<pgrx::Uuid> = ids.iter().map(|id| pgrx::Uuid::from_bytes(*id)).collect();
    let rows = spi.run(&SHARD_OF, &[arg.into_datum()], 0);
    (0..rows.count).map(|r| rows.i64(r, 1).unwrap_or(0)).collect()
}

/// `ids` in (shard, id) order, cut where the shard changes and every `chunk` ids.
pub fn chunks(spi: &Spi, ids: &[[u8; 16]], chunk: usize) -> Vec<Vec<[u8; 16]>> {
    let arg: Vec<pgrx::Uuid> = ids.iter().map(|id| pgrx::Uuid::from_bytes(*id)).collect();
    let sorted: Vec<[u8; 16]> = {
        let rows = spi.run(&BY_SHARD, &[arg.into_datum()], 0);
        (0..rows.count).filter_map(|r| rows.uuid(r, 1)).collect()
    };
    let shards = shard_ids(spi, &sorted);
    let mut out: Vec<Vec<[u8; 16]>> = Vec::new();
    let mut last: Option<i64> = None;
    for (id, shard) in sorted.into_iter().zip(shards) {
        match out.last_mut() {
            Some(current) if last == Some(shard) && current.len() < chunk => current.push(id),
            _ => out.push(vec![id]),
        }
        last = Some(shard);
    }
    out
}
