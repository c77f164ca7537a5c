//! Pseudonymous mode and erasure that holds (issue 21).
//!
//! With `privacy = "pseudonymous"` the collector stores device owners, OS users, payer emails
//! and names, gateway users and the people directory's emails and names only as keyed
//! pseudonyms: `person-` and 16 hex digits of HMAC-SHA256 over the identity, trimmed and
//! lowercased (the way the people join compares emails), so the same identity always gives the
//! same pseudonym and the joins still match. The identity itself is kept sealed
//! (AES-256-GCM, key derived from the same collector key) beside its pseudonym, so an admin
//! can reveal one person for one product; the database never holds the plain value nor the
//! key. With `privacy = "plain"` (the behaviour before issue 21, and what a config without
//! the key gets) identities are stored as given.
//!
//! In both modes an erased email or name is remembered as a keyed hash
//! ([`Identities::erased_hash`]) with its tombstone, so a later import or upload naming it is
//! stored under the tombstone.
//!
//! The key is 32 random bytes in a file of the data folder (`identity.key`, 0600, created on
//! first start) or the file `privacy_key_file` names.

use std::path::Path;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom as _, SystemRandom};

/// How identities are stored (`privacy` in the collector's config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PrivacyMode {
    /// As given (a config without `privacy`).
    #[default]
    Plain,
    /// As keyed pseudonyms, the identity sealed.
    Pseudonymous,
}

impl PrivacyMode {
    /// The config value: `plain` or `pseudonymous`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Pseudonymous => "pseudonymous",
        }
    }

    /// Parses the config value.
    ///
    /// # Errors
    /// A sentence naming the accepted values.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "plain" => Ok(Self::Plain),
            "pseudonymous" => Ok(Self::Pseudonymous),
            other => {
                Err(format!("{other:?} is not a privacy mode: use \"pseudonymous\" or \"plain\""))
            }
        }
    }
}

/// The file name of the key in the data folder.
pub const KEY_FILE: &str = "identity.key";
/// What every pseudonym starts with.
pub const PREFIX: &str = "person-";
/// Hex digits after [`PREFIX`].
const HEX_DIGITS: usize = 16;
/// What a text sealed by [`Identities::seal_text`] starts with (a SCIM resource document in
/// pseudonymous mode); hex of the sealed bytes follows.
pub const SEALED_TEXT_PREFIX: &str = "sealed:";

/// The collector's identity key and the mode it is used in.
pub struct Identities {
    mode: PrivacyMode,
    mac: hmac::Key,
    seal: LessSafeKey,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities").field("mode", &self.mode).finish_non_exhaustive()
    }
}

/// Trims and lowercases an identity, as the people join compares emails.
pub fn normalise(identity: &str) -> String {
    identity.trim().to_lowercase()
}

/// Whether `text` is a pseudonym this module makes (or could have made).
pub fn is_pseudonym(text: &str) -> bool {
    text.strip_prefix(PREFIX)
        .is_some_and(|hex| hex.len() == HEX_DIGITS && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `text` is written by an erasure (a tombstone email, name, host or user).
pub fn is_tombstone(text: &str) -> bool {
    text.starts_with("erased-") || text.starts_with("Erased person ")
}

/// Why the identity key could not be loaded or created. The cause is in the message, not in
/// `source()` (issue 18).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityKeyError {
    /// The key file is neither 32 bytes nor 64 hex digits.
    #[error("{}: the identity key must be 32 bytes or 64 hex digits, found {len} bytes", .path.display())]
    Malformed {
        /// The key file.
        path: std::path::PathBuf,
        /// Its length in bytes.
        len: usize,
    },
    /// The system gave no randomness for a new key.
    #[error("{}: no randomness for a new identity key", .path.display())]
    NoRandomness {
        /// The key file.
        path: std::path::PathBuf,
    },
    /// The key file could not be read, created or written.
    #[error("{}: {step} the identity key: {error}", .path.display())]
    Io {
        /// The key file.
        path: std::path::PathBuf,
        /// What was being done: `reading`, `creating` or `writing`.
        step: &'static str,
        /// Why.
        error: std::io::Error,
    },
}

/// A key file's key: 32 bytes, or 64 hex digits (a secret a deployment tool wrote, such as
/// the Helm chart's), a final line break allowed; `None` otherwise.
fn key_bytes(bytes: &[u8]) -> Option<[u8; 32]> {
    if let Ok(key) = <[u8; 32]>::try_from(bytes) {
        return Some(key);
    }
    let text = std::str::from_utf8(bytes).map(str::trim).unwrap_or_default();
    let mut key = [0u8; 32];
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        for (i, k) in key.iter_mut().enumerate() {
            *k = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        return Some(key);
    }
    None
}

impl Identities {
    /// Uses `key` (32 bytes) in `mode`.
    pub fn new(key: &[u8; 32], mode: PrivacyMode) -> Self {
        let mac = hmac::Key::new(hmac::HMAC_SHA256, key);
        // The sealing key is derived from the collector key, never the key itself.
        let derived = hmac::sign(&mac, b"aiscout identity sealing key v1");
        let unbound = UnboundKey::new(&AES_256_GCM, derived.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC-SHA256 output is an AES-256 key"));
        Self { mode, mac, seal: LessSafeKey::new(unbound) }
    }

    /// Reads the key from `path`, creating it (32 random bytes, 0600) when missing.
    ///
    /// # Errors
    /// The file's path and what is wrong with it.
    #[allow(clippy::disallowed_methods)] // A 32-byte key file: no cap needed beyond its check.
    pub fn load_or_create(path: &Path, mode: PrivacyMode) -> Result<Self, IdentityKeyError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let io = |step, error| IdentityKeyError::Io { path: path.to_path_buf(), step, error };
        match std::fs::read(path) {
            Ok(bytes) => match key_bytes(&bytes) {
                Some(key) => Ok(Self::new(&key, mode)),
                None => {
                    Err(IdentityKeyError::Malformed { path: path.to_path_buf(), len: bytes.len() })
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut key)
                    .map_err(|_| IdentityKeyError::NoRandomness { path: path.to_path_buf() })?;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| io("creating", e))?;
                file.write_all(&key)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| io("writing", e))?;
                Ok(Self::new(&key, mode))
            }
            Err(e) => Err(io("reading", e)),
        }
    }

    /// The mode in force.
    pub fn mode(&self) -> PrivacyMode {
        self.mode
    }

    /// Whether identities are stored as pseudonyms.
    pub fn pseudonymous(&self) -> bool {
        self.mode == PrivacyMode::Pseudonymous
    }

    fn mac(&self, purpose: &[u8], identity: &str) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.mac);
        ctx.update(purpose);
        ctx.update(&[0]);
        ctx.update(normalise(identity).as_bytes());
        ctx.sign()
    }

    /// The pseudonym of `identity` (normalised first): `person-` and 16 hex digits.
    pub fn pseudonym(&self, identity: &str) -> String {
        let tag = self.mac(b"pseudonym", identity);
        let hex = aiscout_signatures::hex::encode(tag.as_ref());
        format!("{PREFIX}{}", hex.get(..HEX_DIGITS).unwrap_or(&hex))
    }

    /// The keyed hash an erasure remembers `identity` (normalised first) by.
    pub fn erased_hash(&self, identity: &str) -> String {
        aiscout_signatures::hex::encode(self.mac(b"erased", identity).as_ref())
    }

    /// `identity` as written, sealed: a random nonce and the AES-256-GCM ciphertext with tag.
    pub fn seal(&self, identity: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        if SystemRandom::new().fill(&mut nonce).is_err() {
            // A nonce from the identity's own keyed hash: unique per identity, which is what
            // GCM needs for the one message each identity is sealed in.
            let tag = self.mac(b"nonce", identity);
            nonce.copy_from_slice(tag.as_ref().get(..NONCE_LEN).unwrap_or(&[0; NONCE_LEN]));
        }
        let mut out = identity.trim().as_bytes().to_vec();
        let tagged = self.seal.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(b"aiscout identity"),
            &mut out,
        );
        if tagged.is_err() {
            return Vec::new();
        }
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&out);
        sealed
    }

    /// A whole text (a SCIM resource document) sealed as [`Identities::seal`] seals an
    /// identity, as text: [`SEALED_TEXT_PREFIX`] and hex.
    pub fn seal_text(&self, text: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        if SystemRandom::new().fill(&mut nonce).is_err() {
            return String::new();
        }
        let mut out = text.as_bytes().to_vec();
        if self
            .seal
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(b"aiscout sealed text"),
                &mut out,
            )
            .is_err()
        {
            return String::new();
        }
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&out);
        format!("{SEALED_TEXT_PREFIX}{}", aiscout_signatures::hex::encode(&sealed))
    }

    /// The text [`Identities::seal_text`] sealed; `None` when `stored` is not such a text or
    /// was sealed with another key.
    pub fn open_text(&self, stored: &str) -> Option<String> {
        let sealed = aiscout_signatures::hex::decode(stored.strip_prefix(SEALED_TEXT_PREFIX)?)?;
        let (nonce, body) = sealed.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain =
            self.seal.open_in_place(nonce, Aad::from(b"aiscout sealed text"), &mut body).ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }

    /// A SCIM resource's unique name as stored: its pseudonym in pseudonymous mode (so the
    /// `userName eq` filter still finds it), else as given.
    pub fn scim_name(&self, name: &str) -> String {
        if self.pseudonymous() { self.pseudonym(name) } else { name.to_owned() }
    }

    /// The identity `sealed` holds; `None` when it was not sealed with this key.
    pub fn open(&self, sealed: &[u8]) -> Option<String> {
        let (nonce, body) = sealed.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain =
            self.seal.open_in_place(nonce, Aad::from(b"aiscout identity"), &mut body).ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}

/// What a write does to the identities it carries, before the store writes them: erased ones
/// become their tombstone, and in pseudonymous mode the rest become pseudonyms whose sealed
/// identity is collected in [`Protect::sealed`] for the store to keep.
#[derive(Debug)]
pub struct Protect<'a> {
    ids: &'a Identities,
    erased: std::collections::HashMap<String, String>,
    /// The stored owner of the device a batch comes from (see [`Protect::batch`]).
    owner: Option<String>,
    /// Pseudonyms made, with their sealed identity.
    pub sealed: Vec<(String, Vec<u8>)>,
}

/// What an erased OS user name is remembered by: the user on the devices of one erased
/// person (their tombstone email), so a shared account name such as `admin` on other people's
/// devices is not renamed (the erasure renames OS users on the person's devices only).
pub fn os_user_key(owner_tombstone: &str, user: &str) -> String {
    format!("os-user\0{}\0{}", normalise(owner_tombstone), normalise(user))
}

impl<'a> Protect<'a> {
    /// Starts with the erased identities' hashes and tombstones.
    pub fn new(ids: &'a Identities, erased: std::collections::HashMap<String, String>) -> Self {
        Self { ids, erased, owner: None, sealed: Vec::new() }
    }

    /// Sets the stored owner of the device the next [`Protect::batch`] comes from.
    pub fn owner(&mut self, owner: Option<String>) {
        self.owner = owner;
    }

    /// Rewrites one identity in place (empty ones, pseudonyms and tombstones stay).
    pub fn identity(&mut self, value: &mut String) {
        if value.trim().is_empty() || is_pseudonym(value) || is_tombstone(value) {
            return;
        }
        if let Some(tombstone) = self.erased.get(&self.ids.erased_hash(value)) {
            value.clone_from(tombstone);
            return;
        }
        if self.ids.pseudonymous() {
            let pseudonym = self.ids.pseudonym(value);
            if !self.sealed.iter().any(|(p, _)| *p == pseudonym) {
                self.sealed.push((pseudonym.clone(), self.ids.seal(value)));
            }
            *value = pseudonym;
        }
    }

    /// [`Protect::identity`] of an optional one.
    pub fn optional(&mut self, value: &mut Option<String>) {
        if let Some(v) = value.as_mut() {
            self.identity(v);
        }
    }

    /// The device's owner.
    pub fn device(&mut self, device: &mut crate::model::Device) {
        self.optional(&mut device.owner_email);
    }

    /// The OS users of a batch's sightings and installs. On a device whose owner was erased
    /// (its owner is a tombstone) an OS user name the erasure renamed becomes that name again.
    pub fn batch(&mut self, batch: &mut crate::model::Batch) {
        for s in &mut batch.sightings {
            self.os_user(&mut s.user);
        }
        for i in &mut batch.installs {
            self.os_user(&mut i.user);
        }
    }

    fn os_user(&mut self, user: &mut String) {
        if let Some(owner) = self.owner.as_deref().filter(|o| is_tombstone(o))
            && !user.trim().is_empty()
        {
            let hash = self.ids.erased_hash(&os_user_key(owner, user));
            if let Some(tombstone) = self.erased.get(&hash) {
                user.clone_from(tombstone);
                return;
            }
        }
        self.identity(user);
    }

    /// Payers of expense lines.
    pub fn expenses(&mut self, lines: &mut [crate::model::ExpenseLine]) {
        for l in lines {
            self.identity(&mut l.payer_email);
            self.identity(&mut l.payer_name);
        }
    }

    /// End users of gateway rows.
    pub fn gateway(&mut self, rows: &mut [crate::model::GatewaySpend]) {
        for r in rows {
            self.identity(&mut r.user);
        }
    }

    /// Directory entries: email, name and manager (the department stays).
    pub fn people(&mut self, people: &mut [crate::model::Person]) {
        for p in people {
            self.identity(&mut p.email);
            self.identity(&mut p.name);
            self.optional(&mut p.manager);
        }
    }

    /// A SCIM write's person; in pseudonymous mode also the resource document, which is
    /// sealed ([`Identities::seal_text`]), and its unique name, which becomes its pseudonym
    /// ([`Identities::scim_name`]), so the `userName eq` filter still finds it.
    pub fn scim(&mut self, write: &mut crate::model::ScimWrite) {
        if let Some(p) = write.person.as_mut() {
            self.people(std::slice::from_mut(&mut p.person));
            self.optional(&mut p.previous_email);
        }
        if self.ids.pseudonymous() {
            write.name = self.ids.scim_name(&write.name);
            write.resource.resource = self.ids.seal_text(&write.resource.resource);
        }
    }
}

/// Why a reveal did not happen.
#[derive(Debug)]
pub enum RevealError {
    /// The request cannot be answered; the sentence says why (nothing was revealed or
    /// audited).
    Refused(String),
    /// A store read or write failed.
    Store(crate::store::StoreError),
}

impl From<crate::store::StoreError> for RevealError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Store(e)
    }
}

/// Reveals the identity behind `pseudonym` for `product` (a catalog id the caller checked):
/// only in pseudonymous mode, only a pseudonym that owns or used a device that saw the
/// product, paid an expense line of it or is a gateway end user of it
/// ([`crate::store::Store::product_people`]), and only with a reason. The audit entry (`person.reveal`, the actor, the
/// pseudonym as subject, the product and reason) is written in the transaction that reads the
/// sealed identity; it never holds the identity.
///
/// # Errors
/// [`RevealError::Refused`] with the reason; [`RevealError::Store`].
pub async fn reveal<S: crate::store::Store>(
    store: &S,
    product: &str,
    pseudonym: &str,
    actor: &str,
    reason: &str,
    now: i64,
) -> Result<String, RevealError> {
    let ids = store.identities().filter(|ids| ids.pseudonymous()).ok_or_else(|| {
        RevealError::Refused(
            "the collector is not in pseudonymous mode: identities are shown as stored".into(),
        )
    })?;
    let reason = crate::person::checked_reason(reason).map_err(RevealError::Refused)?;
    let pseudonym = pseudonym.trim();
    if !is_pseudonym(pseudonym) {
        return Err(RevealError::Refused(format!(
            "{pseudonym:?} is not a pseudonym ({PREFIX} and {HEX_DIGITS} hex digits)"
        )));
    }
    let seen = store.product_devices(product.to_owned()).await?.iter().any(|d| {
        d.owner_email.as_deref() == Some(pseudonym) || d.users.iter().any(|u| u == pseudonym)
    }) || store.product_people(product.to_owned()).await?.iter().any(|p| p == pseudonym);
    if !seen {
        return Err(RevealError::Refused(format!(
            "{pseudonym} owns or used no device that saw {product}, paid no expense line \
             of it and is no gateway user of it"
        )));
    }
    let audit = crate::model::AuditRecord {
        at: aiscout_wire::UnixSecs(now),
        actor: actor.to_owned(),
        action: "person.reveal".into(),
        subject: pseudonym.to_owned(),
        before: None,
        after: Some(serde_json::json!({"product": product, "reason": reason}).to_string()),
    };
    let sealed = store.reveal_sealed(pseudonym.to_owned(), audit).await?.ok_or_else(|| {
        RevealError::Refused(format!("{pseudonym} has no sealed identity (erased?)"))
    })?;
    ids.open(&sealed).ok_or_else(|| {
        RevealError::Refused(format!("{pseudonym} was sealed with another identity key"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_keyed_stable_normalised_and_sealed_identities_open_only_with_the_key() {
        let a = Identities::new(&[7; 32], PrivacyMode::Pseudonymous);
        let b = Identities::new(&[8; 32], PrivacyMode::Pseudonymous);
        let p = a.pseudonym("Ann@Example.com ");
        assert_eq!(p, a.pseudonym("ann@example.com"));
        assert!(is_pseudonym(&p), "{p}");
        assert_ne!(p, b.pseudonym("ann@example.com"));
        assert_ne!(p, a.pseudonym("bob@example.com"));
        let sealed = a.seal("Ann@Example.com");
        assert!(!String::from_utf8_lossy(&sealed).contains("Ann"));
        assert_eq!(a.open(&sealed).as_deref(), Some("Ann@Example.com"));
        assert_eq!(b.open(&sealed), None);
        assert_eq!(a.open(&sealed[..5]), None);
    }

    #[test]
    fn protect_uses_tombstones_of_erased_identities_and_leaves_plain_mode_alone() {
        let ids = Identities::new(&[7; 32], PrivacyMode::Plain);
        let erased = [(ids.erased_hash("gone@example.com"), "erased-1@erased.invalid".to_owned())];
        let mut p = Protect::new(&ids, erased.into_iter().collect());
        let (mut gone, mut kept) = ("Gone@Example.com".to_owned(), "kept@example.com".to_owned());
        p.identity(&mut gone);
        p.identity(&mut kept);
        assert_eq!((gone.as_str(), kept.as_str()), ("erased-1@erased.invalid", "kept@example.com"));
        assert!(p.sealed.is_empty());
    }

    #[test]
    fn the_key_file_is_created_0600_and_read_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let first = Identities::load_or_create(&path, PrivacyMode::Pseudonymous).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = Identities::load_or_create(&path, PrivacyMode::Pseudonymous).unwrap();
        assert_eq!(first.pseudonym("a@b.c"), again.pseudonym("a@b.c"));
        std::fs::write(&path, b"short").unwrap();
        let err = Identities::load_or_create(&path, PrivacyMode::Plain).unwrap_err();
        assert!(matches!(err, IdentityKeyError::Malformed { len: 5, .. }), "{err}");
        assert!(err.to_string().contains("32 bytes"), "{err}");
        std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
        let hex = Identities::load_or_create(&path, PrivacyMode::Plain).unwrap();
        assert_eq!(
            hex.pseudonym("a@b.c"),
            Identities::new(&[0xab; 32], PrivacyMode::Plain).pseudonym("a@b.c")
        );
    }
}
