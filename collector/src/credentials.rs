//! Node keys and API tokens: generation from the system CSPRNG and SHA-256 hashing.
//!
//! Only hashes are stored. A presented credential is hashed and looked up by its hash, so
//! the comparison that matters happens on a SHA-256 digest the caller cannot steer byte by
//! byte; no secret is ever compared with `==` on its plain text.

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

use crate::store::CredentialHash;

/// Prefix of node keys, so a leaked one is recognisable in a secret scanner.
pub const NODE_KEY_PREFIX: &str = aiscout_wire::NODE_KEY_PREFIX;
/// Prefix of API tokens.
pub const API_TOKEN_PREFIX: &str = "aistk_";

/// The system random generator failed.
#[derive(Debug, thiserror::Error)]
#[error("the system random generator failed")]
pub struct RandomError;

/// A fresh credential: the prefix plus 32 random bytes in hex.
///
/// # Errors
/// The system CSPRNG failed.
pub fn generate(prefix: &str) -> Result<String, RandomError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).map_err(|_| RandomError)?;
    Ok(format!("{prefix}{}", aiscout_signatures::hex::encode(&bytes)))
}

/// The SHA-256 of a credential, as stored.
pub fn hash(credential: &str) -> CredentialHash {
    let d = digest::digest(&digest::SHA256, credential.as_bytes());
    // SHA-256 digests are 32 bytes, so the conversion cannot fail.
    d.as_ref().try_into().unwrap_or([0u8; 32])
}

/// Compares two secrets in constant time (for the enroll secret, which is configured, not
/// stored).
pub fn secrets_equal(a: &str, b: &str) -> bool {
    // Comparing the digests keeps the time independent of where the inputs first differ and
    // of their lengths.
    let (ha, hb) = (hash(a), hash(b));
    ha.iter().zip(hb.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_credentials_are_distinct_and_prefixed() {
        let a = super::generate(super::API_TOKEN_PREFIX).unwrap();
        let b = super::generate(super::API_TOKEN_PREFIX).unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("aistk_"));
        assert_eq!(a.len(), 6 + 64);
    }

    #[test]
    fn secrets_equal_only_for_equal_strings() {
        assert!(super::secrets_equal("abc", "abc"));
        assert!(!super::secrets_equal("abc", "abd"));
        assert!(!super::secrets_equal("abc", "abcd"));
    }
}
