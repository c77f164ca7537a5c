//! Entry points for the fuzz targets under `signatures/fuzz/`, one function per target, so the
//! targets stay one-liners and the regression replay test calls the same code on stable.

use std::sync::OnceLock;

use crate::{Catalog, Index, Verifier};

fn index() -> Option<&'static Index> {
    static INDEX: OnceLock<Option<Index>> = OnceLock::new();
    INDEX.get_or_init(|| Catalog::builtin().ok().map(Index::new)).as_ref()
}

/// Feeds arbitrary bytes to the artifact splitter and verifier: must never panic.
pub fn catalog_artifact(data: &[u8]) {
    let _split = crate::artifact::split(data);
    let verifier = Verifier::new([7; 32]);
    let _verified = verifier.verify(data, Some(1));
    // Also reach the payload decoder directly, as if a signature had verified.
    if let Ok(parts) = crate::artifact::split(data) {
        let _decoded = crate::artifact::decode_payload(parts.header.version, parts.payload);
    }
}

/// Feeds arbitrary bytes, as a name and as a descriptor, to every matcher: must never panic.
pub fn domain_match(data: &[u8]) {
    let Some(ix) = index() else { return };
    let text = String::from_utf8_lossy(data);
    let _d = ix.domain(&text);
    let _m = ix.merchant(&text);
    let _p = ix.process(&text);
    let _x = ix.model(&text);
    let _n = crate::domain::normalize(&text);
}
