//! Time-ordered ids (UUID version 7, RFC 9562) for history rows.
//!
//! History grows forever; random v4 keys scatter primary-key inserts over the whole
//! index, v7 keys append near its right edge. Uniqueness comes from the 74 random bits
//! per millisecond; the ids are identifiers, not secrets.

/// SplitMix64: tiny, fast, good enough to fill the random bits of an id.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A v7 UUID from a Unix time in milliseconds and two random words.
pub fn uuid_v7(unix_ms: u64, rand_a: u64, rand_b: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..8]);
    b[6..8].copy_from_slice(&rand_a.to_be_bytes()[..2]);
    b[8..16].copy_from_slice(&rand_b.to_be_bytes());
    b[6] = (b[6] & 0x0F) | 0x70; // version 7
    b[8] = (b[8] & 0x3F) | 0x80; // RFC 9562 variant
    b
}

/// Lower-case hyphenated text form.
pub fn uuid_text(b: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_layout_and_order() {
        let mut rng = SplitMix64::new(42);
        let a = uuid_v7(1_700_000_000_000, rng.next_u64(), rng.next_u64());
        let b = uuid_v7(1_700_000_000_001, rng.next_u64(), rng.next_u64());
        assert_eq!(a[6] >> 4, 7);
        assert_eq!(a[8] >> 6, 0b10);
        assert!(a < b, "later millisecond sorts later");
        assert_eq!(uuid_text(&a).len(), 36);
        assert_eq!(&uuid_text(&a)[14..15], "7");
    }

    #[test]
    fn random_bits_differ_within_one_millisecond() {
        let mut rng = SplitMix64::new(7);
        let ids: std::collections::HashSet<[u8; 16]> =
            (0..10_000).map(|_| uuid_v7(1, rng.next_u64(), rng.next_u64())).collect();
        assert_eq!(ids.len(), 10_000);
    }
}
