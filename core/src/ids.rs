//! Ids, from the `uuid` crate.
//!
//! - Rows get UUID version 7 (RFC 9562): history grows forever, and v7 keys append near
//!   the right edge of the primary-key index where random v4 keys would scatter. The
//!   74 bits below the millisecond come from the operating system's random source
//!   (`getrandom`), so one id a client sees says nothing about the next one.
//! - Ids derived from other ids (a timer's, a bulk step's, a migration step's command id)
//!   are keyed with the installation's secret, so that no caller can compute one and
//!   spend it first: [`derived`] here, `statemachine.derived_id` in SQL, the same bytes.

use sha2::{Digest, Sha256};
use uuid::{NoContext, Timestamp, Uuid};

/// The id `statemachine.derived_id(kind, VARIADIC parts)` gives with installation secret
/// `secret`: the first 16 bytes of sha256(secret ‖ kind ‖ "len:part|len:part…"), len
/// counted in characters as SQL's length() does.
pub fn derived(secret: &[u8], kind: &str, parts: &[&str]) -> [u8; 16] {
    let joined: Vec<String> = parts.iter().map(|p| format!("{}:{p}", p.chars().count())).collect();
    let mut h = Sha256::new();
    h.update(secret);
    h.update(kind.as_bytes());
    h.update(joined.join("|").as_bytes());
    let digest = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

/// PostgreSQL timestamps count microseconds from 2000-01-01; Unix time from 1970.
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// A v7 id for a row written at `pg_micros` (PostgreSQL's timestamptz representation:
/// microseconds since 2000-01-01 UTC). Times before 1970 clamp to the Unix epoch.
pub fn v7_at(pg_micros: i64) -> [u8; 16] {
    let unix_micros = pg_micros.saturating_add(PG_EPOCH_UNIX_MICROS).max(0) as u64;
    let ts = Timestamp::from_unix(NoContext, unix_micros / 1_000_000, (unix_micros % 1_000_000) as u32 * 1_000);
    Uuid::new_v7(ts).into_bytes()
}

/// A uuid's bytes from its text form (any form the `uuid` crate reads).
pub fn parse(text: &str) -> Option<[u8; 16]> {
    Uuid::parse_str(text).ok().map(Uuid::into_bytes)
}

/// Lower-case hyphenated text form.
pub fn uuid_text(b: &[u8; 16]) -> String {
    Uuid::from_bytes(*b).hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_what_sql_derives() {
        // SELECT statemachine.derived_id(...) with secret 'key', computed by PostgreSQL 15:
        // encode(substr(sha256('key' || convert_to('bulk' || '36:0190…|8:in stock|1:ü', 'UTF8')), 1, 16), 'hex')
        let id = derived(b"key", "bulk", &["0190a3c8-0000-7000-8000-000000000001", "in stock", "\u{fc}"]);
        assert_eq!(Uuid::from_bytes(id).to_string(), "c110020c-d591-b6ec-e17a-c5b3eabb84ab");
        assert_ne!(derived(b"key", "bulk", &["a|1:b"]), derived(b"key", "bulk", &["a", "b"]));
    }

    #[test]
    fn v7_layout_time_and_order() {
        // 2023-11-14 22:13:20 UTC as PostgreSQL micros.
        let pg = 1_700_000_000_000_000 - PG_EPOCH_UNIX_MICROS;
        let a = v7_at(pg);
        let b = v7_at(pg + 1_000);
        assert_eq!(a[6] >> 4, 7, "version 7");
        assert_eq!(a[8] >> 6, 0b10, "RFC 9562 variant");
        let ms = u64::from_be_bytes([0, 0, a[0], a[1], a[2], a[3], a[4], a[5]]);
        assert_eq!(ms, 1_700_000_000_000, "the timestamp is the row's time");
        assert!(a < b, "a later millisecond sorts later");
        assert_eq!(&uuid_text(&a)[14..15], "7");
        assert_eq!(v7_at(i64::MIN)[..6], [0; 6], "before 1970 clamps to the epoch");
    }

    #[test]
    fn v7_random_bits_are_unpredictable_within_one_millisecond() {
        let ids: std::collections::HashSet<[u8; 16]> = (0..10_000).map(|_| v7_at(0)).collect();
        assert_eq!(ids.len(), 10_000);
        // Consecutive ids share no structure an observer could extrapolate: the random
        // tails of two neighbours differ in about half their 62 bits.
        let tail = |b: &[u8; 16]| u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]) & (u64::MAX >> 2);
        let mut ids: Vec<[u8; 16]> = (0..1_000).map(|_| v7_at(0)).collect();
        ids.sort();
        let mean_distance: f64 =
            ids.windows(2).map(|w| (tail(&w[0]) ^ tail(&w[1])).count_ones() as f64).sum::<f64>() / (ids.len() - 1) as f64;
        assert!((25.0..37.0).contains(&mean_distance), "mean Hamming distance {mean_distance}");
    }

    #[test]
    fn text_form() {
        let b = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
        assert_eq!(uuid_text(&b), "01234567-89ab-cdef-0123-456789abcdef");
    }
}
