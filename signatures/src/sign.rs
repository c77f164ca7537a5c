//! Key generation and signing (feature `signing`): the `aiscout-catalog` tool signs the vendor
//! catalog, the collector signs the organisation overlay with its own key.
//!
//! Keys are Ed25519 (`ring`). The private key is kept as its PKCS#8 v2 document written in hex
//! in a file only its owner can read; the public key, which agents pin, is 64 hex digits.

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};

use crate::artifact::{self, FormatError};

/// Why signing failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The private key is not a hex PKCS#8 Ed25519 key.
    #[error("private key is not a hex-encoded PKCS#8 Ed25519 key")]
    BadKey,
    /// The system random source failed.
    #[error("the system random number generator failed")]
    Random,
    /// The input is not an artifact.
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// A new key pair: (private key document as hex, public key as hex).
///
/// # Errors
/// [`SignError::Random`] when the system random source fails.
pub fn generate() -> Result<(String, String), SignError> {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| SignError::Random)?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| SignError::BadKey)?;
    Ok((crate::hex::encode(pkcs8.as_ref()), crate::hex::encode(pair.public_key().as_ref())))
}

/// The public key (hex) of a private key (hex PKCS#8).
///
/// # Errors
/// [`SignError::BadKey`].
pub fn public_key(private_hex: &str) -> Result<String, SignError> {
    Ok(crate::hex::encode(load(private_hex)?.public_key().as_ref()))
}

fn load(private_hex: &str) -> Result<Ed25519KeyPair, SignError> {
    let der = crate::hex::decode(private_hex).ok_or(SignError::BadKey)?;
    Ed25519KeyPair::from_pkcs8(&der).map_err(|_| SignError::BadKey)
}

/// Signs an artifact: any existing signature is replaced.
///
/// # Errors
/// A bad key or bytes that are not an artifact.
pub fn sign(artifact_bytes: &[u8], private_hex: &str) -> Result<Vec<u8>, SignError> {
    let pair = load(private_hex)?;
    let parts = artifact::split(artifact_bytes)?;
    let signature = pair.sign(parts.signed);
    let mut out = parts.signed.to_vec();
    out.extend_from_slice(&artifact::SIGNATURE_TAG);
    out.extend_from_slice(signature.as_ref());
    Ok(out)
}

/// Signs an organisation overlay: its unsigned artifact plus the signature block.
///
/// # Errors
/// [`SignError::BadKey`].
pub fn sign_overlay(
    overlay: &crate::overlay::Overlay,
    private_hex: &str,
) -> Result<Vec<u8>, SignError> {
    let pair = load(private_hex)?;
    let mut out = overlay.encode_unsigned();
    let signature = pair.sign(&out);
    out.extend_from_slice(&artifact::SIGNATURE_TAG);
    out.extend_from_slice(signature.as_ref());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Catalog, Verifier, VerifyError};

    #[test]
    fn keygen_sign_verify() {
        let (private, public) = generate().expect("keygen");
        assert_eq!(public_key(&private).expect("pub"), public);
        let unsigned = artifact::encode_unsigned(&Catalog::builtin().expect("builtin"));
        let signed = sign(&unsigned, &private).expect("sign");
        let v = Verifier::from_hex(&public).expect("key");
        assert!(v.verify(&signed, None).is_ok());
        let resigned = sign(&signed, &private).expect("re-sign");
        assert_eq!(resigned, signed, "Ed25519 signatures are deterministic");
        let (_, other) = generate().expect("keygen");
        let v2 = Verifier::from_hex(&other).expect("key");
        assert_eq!(
            v2.verify(&signed, None),
            Err(VerifyError::BadSignature(crate::Artifact::Catalog))
        );
        assert_eq!(sign(&unsigned, "00"), Err(SignError::BadKey));
    }
}
