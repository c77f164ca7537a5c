//! Caps on every field, and [`decode`]: JSON in, a validated value or the offending field out.
//!
//! Every string a client sends is length-capped and every list count-capped here, at the trust
//! boundary, so the collector's store never sees an unbounded value. Strings are stored as
//! given and never interpreted; the one character refused anywhere is NUL, which PostgreSQL's
//! `text` cannot hold.

use serde::de::DeserializeOwned;

use crate::agent::{DeviceIdentity, EnrollRequest, Heartbeat, Sighting, SightingBatch};
use crate::people::{InventoryQuery, ProductStatus, ReviewRequest};
use crate::time::UnixSecs;

/// Longest id: batch id, host id, product id.
pub const MAX_ID_LEN: usize = 128;
/// Longest short text: host name, OS, versions, email, user, process, interface name.
pub const MAX_NAME_LEN: usize = 256;
/// Longest matched value (a domain name is at most 253; extension and app ids are shorter).
pub const MAX_VALUE_LEN: usize = 1024;
/// Longest secret (enroll secret, node key, token).
pub const MAX_SECRET_LEN: usize = 256;
/// Longest review note.
pub const MAX_NOTE_LEN: usize = 4096;
/// Longest interface error text.
pub const MAX_ERROR_LEN: usize = 1024;
/// Most risk flags on one sighting.
pub const MAX_FLAGS: usize = 16;
/// Longest risk flag name.
pub const MAX_FLAG_LEN: usize = 64;
/// Most sightings in one batch.
pub const MAX_SIGHTINGS_PER_BATCH: usize = 5_000;
/// Most interfaces in one heartbeat.
pub const MAX_INTERFACES: usize = 64;
/// Largest request body the collector accepts, in bytes (a full batch of long values fits).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Latest accepted timestamp (9999-12-31T23:59:59Z).
pub const MAX_TIMESTAMP: i64 = 253_402_300_799;
/// Largest accepted counter: counters are stored as signed 64-bit integers.
pub const MAX_COUNTER: u64 = i64::MAX as u64;
/// Largest count of one sighting in one window (a trillion), so that sums cannot overflow.
pub const MAX_SIGHTING_COUNT: u64 = 1_000_000_000_000;

/// A field that breaks the contract, named by its JSON path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
#[non_exhaustive]
pub struct ValidationError {
    /// The JSON path of the field (`sightings[3].value`).
    pub field: String,
    /// What is wrong with it, in lowercase words.
    pub reason: String,
}

impl ValidationError {
    /// A problem with one field.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }
}

/// Why a request body was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("malformed json at {field}: {message}")]
    Malformed {
        /// The JSON path where parsing failed (`.` for the document itself).
        field: String,
        /// The parser's message.
        message: String,
    },
    /// Well-formed, but a value breaks a cap or a rule.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

impl DecodeError {
    /// The offending field's JSON path.
    pub fn field(&self) -> &str {
        match self {
            DecodeError::Malformed { field, .. } => field,
            DecodeError::Invalid(e) => &e.field,
        }
    }
}

/// Checks the caps and rules of a decoded value.
pub trait Validate {
    /// # Errors
    /// Returns the first field that breaks a cap or rule.
    fn validate(&self) -> Result<(), ValidationError>;
}

/// Parses `bytes` as JSON into `T` and validates it.
///
/// # Errors
/// [`DecodeError::Malformed`] with the JSON path where parsing failed, or
/// [`DecodeError::Invalid`] with the first field that breaks a cap or rule.
pub fn decode<T: DeserializeOwned + Validate>(bytes: &[u8]) -> Result<T, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        DecodeError::Malformed { field, message: e.into_inner().to_string() }
    })?;
    de.end().map_err(|e| DecodeError::Malformed { field: ".".into(), message: e.to_string() })?;
    value.validate()?;
    Ok(value)
}

fn text(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.len() > max {
        return Err(ValidationError::new(field, format!("longer than {max} bytes")));
    }
    if value.contains('\0') {
        return Err(ValidationError::new(field, "contains a NUL character"));
    }
    Ok(())
}

fn required(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    text(field, value, max)
}

fn optional(field: &str, value: Option<&str>, max: usize) -> Result<(), ValidationError> {
    value.map_or(Ok(()), |v| text(field, v, max))
}

fn timestamp(field: &str, value: UnixSecs) -> Result<(), ValidationError> {
    if !(0..=MAX_TIMESTAMP).contains(&value.get()) {
        return Err(ValidationError::new(field, "timestamp out of range"));
    }
    Ok(())
}

fn counter(field: &str, value: u64) -> Result<(), ValidationError> {
    if value > MAX_COUNTER {
        return Err(ValidationError::new(field, "counter out of range"));
    }
    Ok(())
}

impl Validate for DeviceIdentity {
    fn validate(&self) -> Result<(), ValidationError> {
        required("device.host_id", &self.host_id, MAX_ID_LEN)?;
        text("device.hostname", &self.hostname, MAX_NAME_LEN)?;
        text("device.os", &self.os, MAX_NAME_LEN)?;
        text("device.os_version", &self.os_version, MAX_NAME_LEN)?;
        text("device.agent_version", &self.agent_version, MAX_NAME_LEN)?;
        optional("device.owner_email", self.owner_email.as_deref(), MAX_NAME_LEN)
    }
}

impl Validate for EnrollRequest {
    fn validate(&self) -> Result<(), ValidationError> {
        required("enroll_secret", self.enroll_secret.expose(), MAX_SECRET_LEN)?;
        if let Some(key) = &self.previous_node_key {
            required("previous_node_key", key.expose(), MAX_SECRET_LEN)?;
        }
        if let Some(key) = &self.proposed_node_key
            && !crate::agent::is_node_key_shaped(key.expose())
        {
            return Err(ValidationError::new(
                "proposed_node_key",
                "must be aisnk_ followed by 64 lowercase hex digits",
            ));
        }
        self.device.validate()
    }
}

fn sighting(i: usize, s: &Sighting) -> Result<(), ValidationError> {
    let f = |name: &str| format!("sightings[{i}].{name}");
    required(&f("product"), &s.product, MAX_ID_LEN)?;
    required(&f("value"), &s.value, MAX_VALUE_LEN)?;
    optional(&f("user"), s.user.as_deref(), MAX_NAME_LEN)?;
    optional(&f("process"), s.process.as_deref(), MAX_NAME_LEN)?;
    timestamp(&f("first_seen"), s.first_seen)?;
    timestamp(&f("last_seen"), s.last_seen)?;
    timestamp(&f("window"), s.window)?;
    if s.last_seen < s.first_seen {
        return Err(ValidationError::new(f("last_seen"), "earlier than first_seen"));
    }
    if s.count == 0 {
        return Err(ValidationError::new(f("count"), "must be at least 1"));
    }
    if s.count > MAX_SIGHTING_COUNT {
        return Err(ValidationError::new(f("count"), "count out of range"));
    }
    if s.flags.len() > MAX_FLAGS {
        return Err(ValidationError::new(f("flags"), format!("more than {MAX_FLAGS} flags")));
    }
    for (j, flag) in s.flags.iter().enumerate() {
        required(&f(&format!("flags[{j}]")), flag, MAX_FLAG_LEN)?;
    }
    if !s.flags.is_empty() && s.kind != crate::agent::SightingKind::McpServer {
        return Err(ValidationError::new(
            f("flags"),
            format!("only mcp_server sightings carry flags, not kind {}", s.kind.as_str()),
        ));
    }
    if s.removed && !s.kind.is_installed() {
        return Err(ValidationError::new(
            f("removed"),
            format!("only installed items can be removed, not kind {}", s.kind.as_str()),
        ));
    }
    Ok(())
}

impl Validate for SightingBatch {
    fn validate(&self) -> Result<(), ValidationError> {
        required("batch_id", &self.batch_id, MAX_ID_LEN)?;
        text("agent.version", &self.agent.version, MAX_NAME_LEN)?;
        counter("agent.catalog_version", self.agent.catalog_version)?;
        counter("dropped", self.dropped)?;
        counter("evicted", self.evicted)?;
        if self.sightings.len() > MAX_SIGHTINGS_PER_BATCH {
            return Err(ValidationError::new(
                "sightings",
                format!("more than {MAX_SIGHTINGS_PER_BATCH} sightings"),
            ));
        }
        self.sightings.iter().enumerate().try_for_each(|(i, s)| sighting(i, s))
    }
}

impl Validate for Heartbeat {
    fn validate(&self) -> Result<(), ValidationError> {
        text("agent.version", &self.agent.version, MAX_NAME_LEN)?;
        counter("agent.catalog_version", self.agent.catalog_version)?;
        counter("packets", self.packets)?;
        counter("drops", self.drops)?;
        counter("spool_depth", self.spool_depth)?;
        counter("evictions", self.evictions)?;
        if let Some(t) = self.last_scan {
            timestamp("last_scan", t)?;
        }
        if self.interfaces.len() > MAX_INTERFACES {
            return Err(ValidationError::new(
                "interfaces",
                format!("more than {MAX_INTERFACES} interfaces"),
            ));
        }
        for (i, iface) in self.interfaces.iter().enumerate() {
            required(&format!("interfaces[{i}].name"), &iface.name, MAX_NAME_LEN)?;
            optional(&format!("interfaces[{i}].error"), iface.error.as_deref(), MAX_ERROR_LEN)?;
            counter(&format!("interfaces[{i}].packets"), iface.packets)?;
            counter(&format!("interfaces[{i}].drops"), iface.drops)?;
        }
        Ok(())
    }
}

impl Validate for ReviewRequest {
    fn validate(&self) -> Result<(), ValidationError> {
        text("note", &self.note, MAX_NOTE_LEN)?;
        text("business_owner", &self.business_owner, MAX_NAME_LEN)?;
        text("alternative", &self.alternative, MAX_NAME_LEN)?;
        if let Some(date) = &self.renewal {
            let b = date.as_bytes();
            let shape = b.len() == 10
                && b.iter()
                    .enumerate()
                    .all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() });
            if !shape {
                return Err(ValidationError::new("renewal", "not a date (YYYY-MM-DD)"));
            }
        }
        Ok(())
    }
}

impl Validate for crate::MappingRequest {
    fn validate(&self) -> Result<(), ValidationError> {
        required("descriptor", &self.descriptor, MAX_VALUE_LEN)?;
        required("product", &self.product, MAX_NAME_LEN)?;
        text("note", &self.note, MAX_NOTE_LEN)
    }
}

impl Validate for InventoryQuery {
    fn validate(&self) -> Result<(), ValidationError> {
        optional("product", self.product.as_deref(), MAX_ID_LEN)?;
        optional("category", self.category.as_deref(), MAX_NAME_LEN)?;
        optional("department", self.department.as_deref(), MAX_NAME_LEN)?;
        optional("source", self.source.as_deref(), MAX_NAME_LEN)?;
        if let Some(t) = self.since {
            timestamp("since", UnixSecs(t))?;
        }
        if let Some(t) = self.until {
            timestamp("until", UnixSecs(t))?;
        }
        Ok(())
    }
}

impl InventoryQuery {
    /// Builds the query from URL query pairs, naming the parameter that is unknown, repeated
    /// or malformed.
    ///
    /// # Errors
    /// The first offending parameter.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ValidationError> {
        let mut q = InventoryQuery::default();
        for (key, value) in pairs {
            let dup = || ValidationError::new(key, "given more than once");
            let time =
                || value.parse::<i64>().map_err(|_| ValidationError::new(key, "not unix seconds"));
            match key {
                "product" if q.product.is_none() => q.product = Some(value.to_owned()),
                "category" if q.category.is_none() => q.category = Some(value.to_owned()),
                "department" if q.department.is_none() => q.department = Some(value.to_owned()),
                "source" if q.source.is_none() => q.source = Some(value.to_owned()),
                "status" if q.status.is_none() => {
                    q.status = Some(
                        ProductStatus::parse(value)
                            .ok_or_else(|| ValidationError::new(key, "unknown status"))?,
                    );
                }
                "since" if q.since.is_none() => q.since = Some(time()?),
                "until" if q.until.is_none() => q.until = Some(time()?),
                "product" | "category" | "department" | "source" | "status" | "since" | "until" => {
                    return Err(dup());
                }
                _ => return Err(ValidationError::new(key, "unknown parameter")),
            }
        }
        q.validate()?;
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{AgentInfo, SightingKind};

    fn batch(n: usize) -> SightingBatch {
        let s = Sighting {
            product: "openai.chatgpt".into(),
            kind: SightingKind::Dns,
            value: "chatgpt.com".into(),
            user: None,
            process: None,
            first_seen: UnixSecs(10),
            last_seen: UnixSecs(20),
            count: 1,
            window: UnixSecs(0),
            removed: false,
            flags: Vec::new(),
        };
        SightingBatch {
            batch_id: "b1".into(),
            agent: AgentInfo { version: "0.1.0".into(), catalog_version: 1 },
            sightings: vec![s; n],
            dropped: 0,
            evicted: 0,
        }
    }

    #[test]
    fn too_many_sightings_names_the_list() {
        let e = batch(MAX_SIGHTINGS_PER_BATCH + 1).validate().unwrap_err();
        assert_eq!(e.field, "sightings");
    }

    #[test]
    fn long_value_names_its_index() {
        let mut b = batch(3);
        b.sightings[2].value = "a".repeat(MAX_VALUE_LEN + 1);
        assert_eq!(b.validate().unwrap_err().field, "sightings[2].value");
    }

    #[test]
    fn nul_in_user_is_refused() {
        let mut b = batch(1);
        b.sightings[0].user = Some("a\0b".into());
        assert_eq!(b.validate().unwrap_err().field, "sightings[0].user");
    }

    #[test]
    fn removal_is_refused_for_network_kinds_and_accepted_for_installed_ones() {
        let mut b = batch(1);
        b.sightings[0].removed = true;
        let e = b.validate().unwrap_err();
        assert_eq!(e.field, "sightings[0].removed");
        for kind in SightingKind::ALL {
            b.sightings[0].kind = kind;
            assert_eq!(b.validate().is_ok(), kind.is_installed(), "{kind:?}");
        }
    }

    #[test]
    fn last_seen_before_first_seen_is_refused() {
        let mut b = batch(1);
        b.sightings[0].last_seen = UnixSecs(5);
        assert_eq!(b.validate().unwrap_err().field, "sightings[0].last_seen");
    }

    #[test]
    fn malformed_json_names_the_path() {
        let e = decode::<SightingBatch>(
            br#"{"batch_id":"b","agent":{"version":"1","catalog_version":1},
                "sightings":[{"product":"p","kind":"carrier_pigeon"}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.field(), "sightings[0].kind");
    }

    #[test]
    fn trailing_garbage_is_malformed() {
        let e = decode::<ReviewRequest>(br#"{"status":"blocked"} x"#).unwrap_err();
        assert!(matches!(e, DecodeError::Malformed { .. }));
    }

    #[test]
    fn inventory_query_names_unknown_and_repeated_parameters() {
        let q = InventoryQuery::from_pairs([("status", "unreviewed"), ("since", "5")]).unwrap();
        assert_eq!(q.status, Some(ProductStatus::Unreviewed));
        assert_eq!(q.since, Some(5));
        let e = InventoryQuery::from_pairs([("colour", "red")]).unwrap_err();
        assert_eq!(e.field, "colour");
        let e = InventoryQuery::from_pairs([("since", "a"), ("since", "b")]).unwrap_err();
        assert_eq!(e.field, "since");
        let e = InventoryQuery::from_pairs([("status", "x")]).unwrap_err();
        assert_eq!(e.field, "status");
    }

    /// Issue 18 item 4: a kind this contract does not know refuses the whole batch, naming the
    /// field, as any value outside the contract does (the agent's spool never sends one).
    #[test]
    fn an_unknown_sighting_kind_is_refused_naming_its_field() {
        let mut json = serde_json::to_value(batch(2)).unwrap();
        json["sightings"][1]["kind"] = "warp_drive".into();
        let e = decode::<SightingBatch>(json.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.field(), "sightings[1].kind");
        assert!(e.to_string().contains("warp_drive"), "{e}");
    }
}
