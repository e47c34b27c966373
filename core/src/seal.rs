//! Tamper evidence: every history row is sealed with a SHA-256 hash chained per case,
//! and a digest of all rows can be kept outside the database.
//!
//! A row's hash covers every column of the row and everything recorded with it (its
//! evidence links, its guard results, the correction it makes), and the previous row's
//! hash: `hash(n) = sha256("pg_statemachine/row/1" ‖ hash(n-1) ‖ fields)`, the first
//! row chaining to 32 zero bytes. Fields are encoded unambiguously (a tag, then a
//! length-prefixed value), so no two different rows encode alike.
//!
//! A digest names a moment T and commits to every row that occurred at or before it (and
//! every break_glass event): their count and a hash over their hashes, in (case, version)
//! order. Whoever keeps the digest can later ask `verify_history(digest)` whether any of
//! those rows changed — even if the attacker recomputed every stored hash, the hashes the
//! verifier recomputes from the rows' content no longer give the digest's root.

use sha2::{Digest, Sha256};
use std::fmt::Write;

/// The hash a case's first row chains to.
pub const GENESIS: [u8; 32] = [0; 32];

/// One history row and what was recorded with it, as stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SealedRow {
    pub id: [u8; 16],
    pub case_id: [u8; 16],
    pub machine: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub transition_code: String,
    pub transition_kind: String,
    pub state_version: i64,
    pub actor_id: [u8; 16],
    pub actor_role: String,
    pub reason_code: Option<String>,
    pub reason_text: Option<String>,
    pub policy_version: i32,
    /// PostgreSQL microseconds since 2000-01-01 UTC.
    pub occurred_at: i64,
    pub command_id: [u8; 16],
    pub correlation_id: Option<[u8; 16]>,
    pub causation_id: Option<[u8; 16]>,
    /// jsonb's own text form (what `metadata::text` returns).
    pub metadata: String,
    pub recorded_by: String,
    /// (evidence id, purpose), any order (sorted when hashed).
    pub evidence: Vec<([u8; 16], String)>,
    /// (guard code, passed, evaluated at, evidence as jsonb text), any order.
    pub guards: Vec<(String, bool, i64, String)>,
    /// The correction this row makes: (wrong transition, corrected by, at, reason).
    pub correction: Option<([u8; 16], [u8; 16], i64, String)>,
}

struct Encoder(Sha256);

impl Encoder {
    fn bytes(&mut self, tag: u8, value: &[u8]) {
        self.0.update([tag]);
        self.0.update((value.len() as u64).to_be_bytes());
        self.0.update(value);
    }
    fn text(&mut self, tag: u8, value: &str) {
        self.bytes(tag, value.as_bytes());
    }
    fn opt_text(&mut self, tag: u8, value: Option<&str>) {
        match value {
            Some(v) => self.text(tag, v),
            None => self.0.update([tag | 0x80]),
        }
    }
    fn opt_uuid(&mut self, tag: u8, value: Option<&[u8; 16]>) {
        match value {
            Some(v) => self.bytes(tag, v),
            None => self.0.update([tag | 0x80]),
        }
    }
    fn int(&mut self, tag: u8, value: i64) {
        self.bytes(tag, &value.to_be_bytes());
    }
}

/// The hash of `row` chained to `prev`.
pub fn row_hash(prev: &[u8; 32], row: &SealedRow) -> [u8; 32] {
    let mut e = Encoder(Sha256::new());
    e.0.update(b"pg_statemachine/row/1");
    e.0.update(prev);
    e.bytes(1, &row.id);
    e.bytes(2, &row.case_id);
    e.text(3, &row.machine);
    e.opt_text(4, row.from_state.as_deref());
    e.text(5, &row.to_state);
    e.text(6, &row.transition_code);
    e.text(7, &row.transition_kind);
    e.int(8, row.state_version);
    e.bytes(9, &row.actor_id);
    e.text(10, &row.actor_role);
    e.opt_text(11, row.reason_code.as_deref());
    e.opt_text(12, row.reason_text.as_deref());
    e.int(13, i64::from(row.policy_version));
    e.int(14, row.occurred_at);
    e.bytes(15, &row.command_id);
    e.opt_uuid(16, row.correlation_id.as_ref());
    e.opt_uuid(17, row.causation_id.as_ref());
    e.text(18, &row.metadata);
    e.text(19, &row.recorded_by);
    let mut evidence: Vec<&([u8; 16], String)> = row.evidence.iter().collect();
    evidence.sort();
    e.int(20, evidence.len() as i64);
    for (id, purpose) in evidence {
        e.bytes(21, id);
        e.text(22, purpose);
    }
    let mut guards: Vec<&(String, bool, i64, String)> = row.guards.iter().collect();
    guards.sort_by(|a, b| a.0.cmp(&b.0));
    e.int(23, guards.len() as i64);
    for (code, passed, at, evidence) in guards {
        e.text(24, code);
        e.int(25, i64::from(*passed));
        e.int(26, *at);
        e.text(27, evidence);
    }
    match &row.correction {
        Some((wrong, by, at, reason)) => {
            e.bytes(28, wrong);
            e.bytes(29, by);
            e.int(30, *at);
            e.text(31, reason);
        }
        None => e.0.update([28 | 0x80]),
    }
    e.0.finalize().into()
}

/// One break_glass_event row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GlassEvent {
    pub id: [u8; 16],
    pub reason: String,
    pub session_user_name: String,
    pub backend_pid: i32,
    pub transaction_id: i64,
    pub occurred_at: i64,
}

/// The hash of a break_glass event (events are not chained: the digest orders them).
pub fn glass_hash(ev: &GlassEvent) -> [u8; 32] {
    let mut e = Encoder(Sha256::new());
    e.0.update(b"pg_statemachine/glass/1");
    e.bytes(1, &ev.id);
    e.text(2, &ev.reason);
    e.text(3, &ev.session_user_name);
    e.int(4, i64::from(ev.backend_pid));
    e.int(5, ev.transaction_id);
    e.int(6, ev.occurred_at);
    e.0.finalize().into()
}

/// A running hash over a sequence of hashes (the digest's roots).
#[derive(Clone)]
pub struct Root {
    hasher: Sha256,
    pub count: i64,
}

impl Default for Root {
    fn default() -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"pg_statemachine/root/1");
        Root { hasher, count: 0 }
    }
}

impl Root {
    pub fn add(&mut self, hash: &[u8; 32]) {
        self.hasher.update(hash);
        self.count += 1;
    }
    pub fn finish(self) -> [u8; 32] {
        self.hasher.finalize().into()
    }
}

/// A digest: the moment it covers up to, and (count, root) of the history rows, of the
/// break_glass events and of the published machine versions (their definitions: the
/// rules history is checked against) at or before it.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryDigest {
    pub as_of: i64,
    pub rows: i64,
    pub rows_root: [u8; 32],
    pub events: i64,
    pub events_root: [u8; 32],
    pub versions: i64,
    pub versions_root: [u8; 32],
}

/// The hash of a published machine version: name, number and canonical definition text.
pub fn version_hash(machine: &str, version: i32, definition: &str, published_at: i64) -> [u8; 32] {
    let mut e = Encoder(Sha256::new());
    e.0.update(b"pg_statemachine/version/1");
    e.text(1, machine);
    e.int(2, i64::from(version));
    e.text(3, definition);
    e.int(4, published_at);
    e.0.finalize().into()
}

const DIGEST_PREFIX: &str = "smd1";

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::with_capacity(b.len() * 2), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl HistoryDigest {
    /// `smd1:<as_of>:<rows>:<root>:<events>:<root>:<versions>:<root>`.
    pub fn to_text(&self) -> String {
        format!(
            "{DIGEST_PREFIX}:{}:{}:{}:{}:{}:{}:{}",
            self.as_of,
            self.rows,
            hex(&self.rows_root),
            self.events,
            hex(&self.events_root),
            self.versions,
            hex(&self.versions_root)
        )
    }

    pub fn parse(text: &str) -> Result<HistoryDigest, String> {
        let parts: Vec<&str> = text.trim().split(':').collect();
        let bad = || format!("{text:?} is not a digest of statemachine.history_digest() ({DIGEST_PREFIX}:as_of:rows:root:events:root:versions:root)");
        if parts.len() != 8 || parts[0] != DIGEST_PREFIX {
            return Err(bad());
        }
        Ok(HistoryDigest {
            as_of: parts[1].parse().map_err(|_| bad())?,
            rows: parts[2].parse().map_err(|_| bad())?,
            rows_root: unhex(parts[3]).ok_or_else(bad)?,
            events: parts[4].parse().map_err(|_| bad())?,
            events_root: unhex(parts[5]).ok_or_else(bad)?,
            versions: parts[6].parse().map_err(|_| bad())?,
            versions_root: unhex(parts[7]).ok_or_else(bad)?,
        })
    }
}

/// Lower-case hex of a hash (for messages).
pub fn hash_text(h: &[u8; 32]) -> String {
    hex(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> SealedRow {
        SealedRow {
            id: [1; 16],
            case_id: [2; 16],
            machine: "m".into(),
            from_state: Some("A".into()),
            to_state: "B".into(),
            transition_code: "GO".into(),
            transition_kind: "normal".into(),
            state_version: 1,
            actor_id: [3; 16],
            actor_role: "R".into(),
            policy_version: 1,
            occurred_at: 1_000,
            command_id: [4; 16],
            metadata: "{}".into(),
            recorded_by: "app".into(),
            ..SealedRow::default()
        }
    }

    #[test]
    fn every_field_and_the_chain_change_the_hash() {
        let base = row_hash(&GENESIS, &row());
        assert_eq!(base, row_hash(&GENESIS, &row()), "deterministic");
        assert_ne!(base, row_hash(&[1; 32], &row()), "chained to the previous hash");
        type Change = Box<dyn Fn(&mut SealedRow)>;
        let variants: Vec<Change> = vec![
            Box::new(|r| r.to_state = "C".into()),
            Box::new(|r| r.from_state = None),
            Box::new(|r| r.reason_code = Some(String::new())),
            Box::new(|r| r.occurred_at += 1),
            Box::new(|r| r.metadata = "{\"a\": 1}".into()),
            Box::new(|r| r.recorded_by = "other".into()),
            Box::new(|r| r.correlation_id = Some([0; 16])),
            Box::new(|r| r.evidence.push(([9; 16], "required".into()))),
            Box::new(|r| r.guards.push(("g".into(), true, 1_000, "{}".into()))),
            Box::new(|r| r.correction = Some(([5; 16], [3; 16], 1_000, "typo".into()))),
        ];
        for (i, change) in variants.iter().enumerate() {
            let mut r = row();
            change(&mut r);
            assert_ne!(base, row_hash(&GENESIS, &r), "variant {i} must change the hash");
        }
    }

    #[test]
    fn field_boundaries_are_unambiguous_and_link_order_does_not_matter() {
        let mut a = row();
        a.machine = "ab".into();
        a.to_state = "c".into();
        let mut b = row();
        b.machine = "a".into();
        b.to_state = "bc".into();
        assert_ne!(row_hash(&GENESIS, &a), row_hash(&GENESIS, &b));
        let mut x = row();
        x.evidence = vec![([1; 16], "required".into()), ([2; 16], "supporting".into())];
        let mut y = x.clone();
        y.evidence.reverse();
        assert_eq!(row_hash(&GENESIS, &x), row_hash(&GENESIS, &y));
    }

    #[test]
    fn digest_text_round_trips_and_rejects_garbage() {
        let mut root = Root::default();
        root.add(&row_hash(&GENESIS, &row()));
        let d = HistoryDigest {
            as_of: 42,
            rows: root.count,
            rows_root: root.finish(),
            events: 0,
            events_root: Root::default().finish(),
            versions: 1,
            versions_root: version_hash("m", 1, "{}", 0),
        };
        assert_eq!(HistoryDigest::parse(&d.to_text()), Ok(d.clone()));
        assert!(HistoryDigest::parse("smd1:1:2:zz:0:00").is_err());
        assert_ne!(version_hash("m", 1, "{}", 0), version_hash("m", 2, "{}", 0));
        assert!(HistoryDigest::parse("hello").is_err());
        assert!(d.to_text().starts_with("smd1:42:1:"));
    }
}
