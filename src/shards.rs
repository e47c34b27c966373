//! Case ids grouped by the shard that holds them (distributed installations).
//!
//! Citus locks rows (`FOR UPDATE`, `SKIP LOCKED`) only in a statement that reaches one
//! shard, so the set-based paths (bulk_transition, run_due_transitions, claim_outbox,
//! migrate_cases) lock their cases one shard at a time: shard by shard, and by id within
//! each — the same order for every caller, so they cannot deadlock each other.

use crate::spi::{Spi, Stmt, UUID_ARRAY};
use pgrx::IntoDatum;
use std::collections::BTreeMap;

static SHARD_OF: Stmt = Stmt {
    sql: "SELECT pg_catalog.get_shard_id_for_distribution_column('statemachine.case_file', u.id) \
          FROM pg_catalog.unnest($1::pg_catalog.uuid[]) WITH ORDINALITY AS u(id, n) ORDER BY u.n",
    args: &[UUID_ARRAY],
};

/// `items` grouped by the shard that holds each one's case (`case_of`): shards in shard
/// id order, a shard's items in the order given.
pub fn by_shard<T>(spi: &Spi, items: Vec<T>, case_of: impl Fn(&T) -> [u8; 16]) -> Vec<Vec<T>> {
    let cases: Vec<pgrx::Uuid> = items.iter().map(|item| pgrx::Uuid::from_bytes(case_of(item))).collect();
    let rows = spi.run(&SHARD_OF, &[cases.into_datum()], 0);
    let mut groups: BTreeMap<i64, Vec<T>> = BTreeMap::new();
    for (r, item) in items.into_iter().enumerate() {
        groups.entry(rows.i64(r, 1).unwrap_or(0)).or_default().push(item);
    }
    groups.into_values().collect()
}

/// `ids` (in id order) grouped by shard, each shard's cut every `chunk` ids.
pub fn chunks(spi: &Spi, ids: &[[u8; 16]], chunk: usize) -> Vec<Vec<[u8; 16]>> {
    by_shard(spi, ids.to_vec(), |id| *id).into_iter().flat_map(|group| group.chunks(chunk).map(<[[u8; 16]]>::to_vec).collect::<Vec<_>>()).collect()
}
