//! Verification of a catalog artifact against a pinned Ed25519 public key.
//!
//! Order matters: the signature is checked on the raw bytes first, then the content hash, then
//! the version against the one in use (no rollback), and only then is the payload
//! deserialised. A tampered, truncated, unsigned or wrongly signed artifact never reaches the
//! JSON parser.

use ring::signature::{ED25519, UnparsedPublicKey};

use crate::artifact::{self, FormatError, PayloadError};
use crate::catalog::Catalog;

/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;

/// Which kind of signed artifact a [`VerifyError`] is about, so that every message names it:
/// the vendor catalog or the organisation overlay (issue 17), which share the layout, the
/// rules and this verifier but not their keys, files or settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Artifact {
    /// The vendor catalog (`catalog_key`).
    Catalog,
    /// The organisation overlay a collector signs (`overlay_key`).
    Overlay,
}

impl std::fmt::Display for Artifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Artifact::Catalog => "catalog",
            Artifact::Overlay => "organisation overlay",
        })
    }
}

/// Why an artifact was refused; every message names the [`Artifact`] it is about.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not a well-formed artifact (truncated, wrong magic, trailing bytes).
    #[error("{artifact} refused: {reason}")]
    Format {
        /// What was being verified.
        artifact: Artifact,
        /// What is wrong with its layout.
        reason: FormatError,
    },
    /// The artifact carries no signature.
    #[error("{0} artifact is not signed")]
    Unsigned(Artifact),
    /// The signature does not verify under the pinned key.
    #[error("{0} signature does not verify against the pinned public key")]
    BadSignature(Artifact),
    /// The payload does not match the content hash in the header.
    #[error("{0} content hash does not match its payload")]
    HashMismatch(Artifact),
    /// The artifact is older than the one in use.
    #[error(
        "{artifact} version {offered} is older than version {current} in use (rollback refused)"
    )]
    Rollback {
        /// What was being verified.
        artifact: Artifact,
        /// The artifact's version.
        offered: u64,
        /// The version in use.
        current: u64,
    },
    /// The signed payload could not be read.
    #[error("{artifact} {reason}")]
    Payload {
        /// What was being verified.
        artifact: Artifact,
        /// What is wrong with its payload.
        reason: PayloadError,
    },
}

impl VerifyError {
    /// The kind of artifact refused.
    pub fn artifact(&self) -> Artifact {
        match self {
            VerifyError::Format { artifact, .. }
            | VerifyError::Rollback { artifact, .. }
            | VerifyError::Payload { artifact, .. } => *artifact,
            VerifyError::Unsigned(a)
            | VerifyError::BadSignature(a)
            | VerifyError::HashMismatch(a) => *a,
        }
    }
}

/// Why a public key could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("public key must be {PUBLIC_KEY_LEN} bytes written as {} hex digits", PUBLIC_KEY_LEN * 2)]
pub struct KeyError;

/// A verifier pinned to one public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    public_key: [u8; PUBLIC_KEY_LEN],
}

impl Verifier {
    /// Pins a raw 32-byte Ed25519 public key.
    pub fn new(public_key: [u8; PUBLIC_KEY_LEN]) -> Self {
        Self { public_key }
    }

    /// Pins a public key written as hex (the `.pub` file `aiscout-catalog keygen` writes).
    ///
    /// # Errors
    /// Anything but 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let bytes = crate::hex::decode(text).ok_or(KeyError)?;
        let key: [u8; PUBLIC_KEY_LEN] = bytes.try_into().map_err(|_| KeyError)?;
        Ok(Self::new(key))
    }

    /// The pinned key.
    pub fn public_key(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.public_key
    }

    /// Verifies an artifact and returns its catalog. With `current` set, an artifact older
    /// than that version is refused; the same version is accepted (a re-download).
    ///
    /// # Errors
    /// See [`VerifyError`].
    pub fn verify(&self, bytes: &[u8], current: Option<u64>) -> Result<Catalog, VerifyError> {
        let what = Artifact::Catalog;
        let split = artifact::split(bytes)
            .map_err(|reason| VerifyError::Format { artifact: what, reason })?;
        let parts = self.checked(what, split, current)?;
        artifact::decode_payload(parts.header.version, parts.payload)
            .map_err(|reason| VerifyError::Payload { artifact: what, reason })
    }

    /// Verifies an organisation overlay ([`crate::overlay`]) under the same rules as
    /// [`Verifier::verify`]: signature on the raw bytes, then the content hash, then no
    /// rollback below `current`, and only then the payload is read.
    ///
    /// # Errors
    /// See [`VerifyError`]; a catalog artifact is refused here by its magic bytes.
    pub fn verify_overlay(
        &self,
        bytes: &[u8],
        current: Option<u64>,
    ) -> Result<crate::overlay::Overlay, VerifyError> {
        let what = Artifact::Overlay;
        let split = artifact::split_with(bytes, &crate::overlay::MAGIC)
            .map_err(|reason| VerifyError::Format { artifact: what, reason })?;
        let parts = self.checked(what, split, current)?;
        crate::overlay::decode_payload(parts.header.version, parts.payload)
            .map_err(|reason| VerifyError::Payload { artifact: what, reason })
    }

    /// Signature, content hash and version checks, in that order, on split bytes.
    fn checked<'a>(
        &self,
        what: Artifact,
        parts: artifact::Parts<'a>,
        current: Option<u64>,
    ) -> Result<artifact::Parts<'a>, VerifyError> {
        let signature = parts.signature.ok_or(VerifyError::Unsigned(what))?;
        UnparsedPublicKey::new(&ED25519, &self.public_key)
            .verify(parts.signed, signature)
            .map_err(|_| VerifyError::BadSignature(what))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, parts.payload);
        if digest.as_ref() != parts.header.content_hash {
            return Err(VerifyError::HashMismatch(what));
        }
        if let Some(current) = current
            && parts.header.version < current
        {
            return Err(VerifyError::Rollback {
                artifact: what,
                offered: parts.header.version,
                current,
            });
        }
        Ok(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    fn key(seed: u8) -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).expect("seed")
    }

    fn signed(version: u64, kp: &Ed25519KeyPair) -> Vec<u8> {
        let c = Catalog::builtin().expect("builtin");
        let mut bytes = artifact::encode_unsigned(&Catalog::new(version, c.products().to_vec()));
        let sig = kp.sign(&bytes);
        bytes.extend_from_slice(&artifact::SIGNATURE_TAG);
        bytes.extend_from_slice(sig.as_ref());
        bytes
    }

    fn verifier(kp: &Ed25519KeyPair) -> Verifier {
        Verifier::new(kp.public_key().as_ref().try_into().expect("32 bytes"))
    }

    #[test]
    fn good_artifact_verifies() {
        let kp = key(1);
        let c = verifier(&kp).verify(&signed(5, &kp), Some(5)).expect("verifies");
        assert_eq!(c.version(), 5);
        assert!(c.product("openai.chatgpt").is_some());
    }

    #[test]
    fn refusals() {
        let kp = key(1);
        let v = verifier(&kp);
        let good = signed(5, &kp);
        assert_eq!(
            v.verify(&signed(5, &key(2)), None),
            Err(VerifyError::BadSignature(Artifact::Catalog))
        );
        assert_eq!(
            v.verify(&good, Some(6)),
            Err(VerifyError::Rollback { artifact: Artifact::Catalog, offered: 5, current: 6 })
        );
        let unsigned = &good[..good.len() - artifact::SIGNATURE_BLOCK_LEN];
        assert_eq!(v.verify(unsigned, None), Err(VerifyError::Unsigned(Artifact::Catalog)));
        assert!(matches!(v.verify(&good[..good.len() - 1], None), Err(VerifyError::Format { .. })));
        assert!(matches!(v.verify(&good[..100], None), Err(VerifyError::Format { .. })));
        let mut tampered = good.clone();
        tampered[60] ^= 1;
        assert_eq!(v.verify(&tampered, None), Err(VerifyError::BadSignature(Artifact::Catalog)));
        let mut version_bumped = good;
        version_bumped[15] = 9;
        assert_eq!(
            v.verify(&version_bumped, None),
            Err(VerifyError::BadSignature(Artifact::Catalog))
        );
    }

    #[test]
    fn hash_mismatch_is_caught_even_when_signed() {
        // A signer that signs a header whose hash is wrong: verification still refuses it.
        let kp = key(3);
        let c = Catalog::builtin().expect("builtin");
        let mut bytes = artifact::encode_unsigned(&c);
        bytes[20] ^= 0xff;
        let sig = kp.sign(&bytes);
        bytes.extend_from_slice(&artifact::SIGNATURE_TAG);
        bytes.extend_from_slice(sig.as_ref());
        assert_eq!(
            verifier(&kp).verify(&bytes, None),
            Err(VerifyError::HashMismatch(Artifact::Catalog))
        );
    }

    #[test]
    fn public_key_hex() {
        assert!(Verifier::from_hex(&"ab".repeat(32)).is_ok());
        assert_eq!(Verifier::from_hex("abcd"), Err(KeyError));
        assert_eq!(Verifier::from_hex(&"zz".repeat(32)), Err(KeyError));
    }
}
