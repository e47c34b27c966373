//! The remote door's token: how the write path on one node of a distributed (Citus)
//! installation admits its own writes on the nodes that hold the rows.
//!
//! The write path runs where it is called (the coordinator, or the worker a call was
//! delegated to); the rows it writes may live on other nodes, written there by Citus's
//! connections, in backends the write path's memory cannot reach. So while its door is
//! open, the write path sets `statemachine.remote_door` to a token that Citus carries to
//! every connection of the transaction; the guard on the node holding the rows admits a
//! write when the token
//! - is signed (HMAC-SHA256) with the installation secret, which every node shares and
//!   only the extension's owner reads,
//! - names the distributed transaction the writing backend is part of (a token seen
//!   elsewhere opens nothing in another transaction),
//! - grants that table and operation,
//! - and has not been replaced since (a token set again after the write path closed its
//!   door is burnt: the guard's node remembers the nonce for the transaction).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// What a token grants on one table: `I`nsert, `U`pdate, `D`elete, or `*` (every
/// operation and the DDL of making shards: statemachine.distribute()); `("*", 'G')` is
/// the break-glass exception of the transaction that called break_glass(), carried to the
/// other nodes with its limits (append-only tables stay so).
pub type Grant = (String, char);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Citus's distributed transaction id: initiator node, transaction number, stamp (µs).
    pub initiator: i32,
    pub transaction: u64,
    pub stamp: i64,
    /// Unique per token, so a replaced token can be told from the one replacing it.
    pub nonce: String,
    pub grants: Vec<Grant>,
}

const VERSION: &str = "v1";

impl Token {
    fn payload(&self) -> String {
        let grants: Vec<String> = self.grants.iter().map(|(t, op)| format!("{t}.{op}")).collect();
        format!("{VERSION}|{}|{}|{}|{}|{}", self.initiator, self.transaction, self.stamp, self.nonce, grants.join("+"))
    }

    /// The token's text: payload and signature.
    pub fn sign(&self, secret: &[u8]) -> String {
        let payload = self.payload();
        format!("{payload}|{}", hex(&mac(secret, &payload)))
    }

    /// The token a text carries, if it is well-formed and signed with `secret`.
    pub fn verify(text: &str, secret: &[u8]) -> Option<Token> {
        let (payload, signature) = text.rsplit_once('|')?;
        let expected = hex(&mac(secret, payload));
        // Constant time is not needed against a remote guesser here (a wrong token is
        // refused and costs a transaction), but costs nothing.
        if expected.len() != signature.len() || expected.bytes().zip(signature.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
            return None;
        }
        let mut parts = payload.split('|');
        if parts.next()? != VERSION {
            return None;
        }
        let initiator = parts.next()?.parse().ok()?;
        let transaction = parts.next()?.parse().ok()?;
        let stamp = parts.next()?.parse().ok()?;
        let nonce = parts.next()?.to_string();
        let grants = parts
            .next()?
            .split('+')
            .filter(|g| !g.is_empty())
            .map(|g| {
                let (table, op) = g.rsplit_once('.')?;
                let op = op.chars().next().filter(|c| matches!(c, 'I' | 'U' | 'D' | '*' | 'G'))?;
                Some((table.to_string(), op))
            })
            .collect::<Option<Vec<_>>>()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Token { initiator, transaction, stamp, nonce, grants })
    }

    /// Does the token grant `op` on `table`?
    pub fn admits(&self, table: &str, op: char) -> bool {
        self.grants.iter().any(|(t, g)| (t == table || t == "*") && (*g == op || *g == '*'))
    }

    /// Does the token carry the break-glass exception?
    pub fn admits_glass(&self) -> bool {
        self.grants.iter().any(|(t, g)| t == "*" && *g == 'G')
    }

    /// Does the token grant making shards (statemachine.distribute())?
    pub fn admits_ddl(&self) -> bool {
        self.grants.iter().any(|(t, g)| t == "*" && *g == '*')
    }
}

/// The nonce of a token's text without verifying it (to burn a replaced token).
pub fn nonce_of(text: &str) -> Option<&str> {
    text.split('|').nth(4)
}

fn mac(secret: &[u8], payload: &str) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    m.update(payload.as_bytes());
    m.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Token {
        Token {
            initiator: 1,
            transaction: 42,
            stamp: 123_456,
            nonce: "n1".into(),
            grants: vec![("case_file".into(), 'U'), ("case_state_transition".into(), 'I')],
        }
    }

    #[test]
    fn signed_token_verifies_and_grants_what_it_names() {
        let text = token().sign(b"secret");
        let t = Token::verify(&text, b"secret").expect("verifies");
        assert_eq!(t, token());
        assert!(t.admits("case_file", 'U'));
        assert!(t.admits("case_state_transition", 'I'));
        assert!(!t.admits("case_file", 'D'));
        assert!(!t.admits("case_file", 'I'));
        assert!(!t.admits("machine", 'I'));
        assert!(!t.admits_ddl());
        assert_eq!(nonce_of(&text), Some("n1"));
    }

    #[test]
    fn another_secret_or_any_change_is_refused() {
        let text = token().sign(b"secret");
        assert!(Token::verify(&text, b"other").is_none());
        // Widen the grants, change the transaction, drop the signature.
        let widened = text.replace("case_file.U", "case_file.*");
        assert!(Token::verify(&widened, b"secret").is_none());
        let moved = text.replace("|42|", "|43|");
        assert!(Token::verify(&moved, b"secret").is_none());
        let (payload, _) = text.rsplit_once('|').unwrap();
        assert!(Token::verify(payload, b"secret").is_none());
        assert!(Token::verify("", b"secret").is_none());
        assert!(Token::verify("v1|x|y|z|n||00", b"secret").is_none());
    }

    #[test]
    fn glass_grant_is_not_every_operation() {
        let t = Token { grants: vec![("*".into(), 'G')], ..token() };
        let t = Token::verify(&t.sign(b"s"), b"s").unwrap();
        assert!(t.admits_glass());
        assert!(!t.admits("machine", 'I') && !t.admits("break_glass_event", 'D') && !t.admits_ddl());
    }

    #[test]
    fn everything_grant() {
        let t = Token { grants: vec![("*".into(), '*')], ..token() };
        let t = Token::verify(&t.sign(b"s"), b"s").unwrap();
        assert!(t.admits("machine", 'I') && t.admits("case_file", 'D') && t.admits_ddl());
    }
}
