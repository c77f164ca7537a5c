//! SCIM 2.0 provisioning (RFC 7643 resources, RFC 7644 protocol), issue 16: Okta and Entra ID
//! push the directory to `/scim/v2` instead of a people CSV.
//!
//! This module is the protocol without HTTP: the discovery documents (`ServiceProviderConfig`,
//! `Schemas`, `ResourceTypes`), checking a written resource, the `PATCH` operations as Entra ID
//! and Okta send them, the `eq` filter, and the directory entry ([`Person`]) a user makes.
//! `api::scim` serves it; the store keeps each resource as written (without `id` and `meta`)
//! and the person in `people`, with `active` false once deprovisioned.

use std::fmt;

use serde_json::{Map, Value, json};

use crate::model::Person;

/// The path prefix every SCIM endpoint is under.
pub const PREFIX: &str = "/scim/v2";
/// The media type of SCIM requests and responses (RFC 7644 section 3.1).
pub const MEDIA_TYPE: &str = "application/scim+json";
/// The core User schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The enterprise User extension (department, manager).
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The list response message.
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// The error message.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// The PATCH request message.
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Most resources one list response holds (`count` above it is lowered to it).
pub const MAX_PAGE: i64 = 1_000;
/// Resources a list response holds when `count` is not given.
pub const DEFAULT_PAGE: i64 = 100;
/// Most operations one PATCH request may carry.
pub const MAX_OPERATIONS: usize = 1_000;

/// The two resource types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `/Groups`.
    Group,
    /// `/Users`.
    User,
}

impl Kind {
    /// The resource type name (`User`, `Group`), also the store's kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Group => "Group",
            Kind::User => "User",
        }
    }

    /// The endpoint below [`PREFIX`] (`/Users`, `/Groups`).
    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::Group => "/Groups",
            Kind::User => "/Users",
        }
    }

    /// The core schema.
    pub fn schema(self) -> &'static str {
        match self {
            Kind::Group => GROUP_SCHEMA,
            Kind::User => USER_SCHEMA,
        }
    }

    /// The attribute that names a resource uniquely (`userName`, `displayName`).
    pub fn name_attribute(self) -> &'static str {
        match self {
            Kind::Group => "displayName",
            Kind::User => "userName",
        }
    }
}

/// A SCIM error (RFC 7644 section 3.12): an HTTP status, a `scimType` where the RFC has one,
/// and a sentence naming the attribute or operation at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimError {
    /// The HTTP status.
    pub status: u16,
    /// `invalidFilter`, `invalidPath`, `invalidSyntax`, `invalidValue`, `mutability`,
    /// `noTarget`, `uniqueness`, `tooMany`.
    pub scim_type: Option<&'static str>,
    /// What is wrong, and where.
    pub detail: String,
}

impl ScimError {
    /// A 400 with this `scimType`.
    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        ScimError { status: 400, scim_type: Some(scim_type), detail: detail.into() }
    }

    /// A status without a `scimType` (401, 403, 404, 412, 415, 500).
    pub fn status(status: u16, detail: impl Into<String>) -> Self {
        ScimError { status, scim_type: None, detail: detail.into() }
    }

    /// The error body.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let (Some(t), Some(o)) = (self.scim_type, body.as_object_mut()) {
            o.insert("scimType".into(), Value::from(t));
        }
        body
    }
}

impl fmt::Display for ScimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.scim_type.unwrap_or("-"), self.detail)
    }
}

/// `GET /ServiceProviderConfig`.
pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/aiscout/aiscout#scim-provisioning",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_PAGE},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "An aiscout API token with the scim role (token create --role scim)",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    })
}

fn attribute(name: &str, kind: &str, multi: bool, required: bool, unique: bool) -> Value {
    json!({
        "name": name,
        "type": kind,
        "multiValued": multi,
        "required": required,
        "caseExact": false,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": if unique { "server" } else { "none" },
    })
}

fn complex(name: &str, multi: bool, sub: Vec<Value>) -> Value {
    let mut a = attribute(name, "complex", multi, false, false);
    if let Some(o) = a.as_object_mut() {
        o.insert("subAttributes".into(), Value::Array(sub));
    }
    a
}

fn reference(name: &str, types: &[&str]) -> Value {
    let mut a = attribute(name, "reference", false, false, false);
    if let Some(o) = a.as_object_mut() {
        o.insert("referenceTypes".into(), json!(types));
    }
    a
}

/// The schemas served (`GET /Schemas`): the attributes this server keeps and returns.
pub fn schemas(base: &str) -> Vec<Value> {
    let s = |n: &str| attribute(n, "string", false, false, false);
    let user = vec![
        attribute("userName", "string", false, true, true),
        complex(
            "name",
            false,
            vec![s("formatted"), s("familyName"), s("givenName"), s("middleName")],
        ),
        s("displayName"),
        s("nickName"),
        s("title"),
        s("preferredLanguage"),
        s("locale"),
        s("timezone"),
        attribute("active", "boolean", false, false, false),
        complex(
            "emails",
            true,
            vec![s("value"), s("type"), attribute("primary", "boolean", false, false, false)],
        ),
    ];
    let group = vec![
        attribute("displayName", "string", false, true, true),
        complex(
            "members",
            true,
            vec![s("value"), reference("$ref", &["User", "Group"]), s("display"), s("type")],
        ),
    ];
    let enterprise = vec![
        s("employeeNumber"),
        s("costCenter"),
        s("organization"),
        s("division"),
        s("department"),
        complex("manager", false, vec![s("value"), reference("$ref", &["User"]), s("displayName")]),
    ];
    [
        (USER_SCHEMA, "User", "User Account", user),
        (GROUP_SCHEMA, "Group", "Group", group),
        (ENTERPRISE_SCHEMA, "EnterpriseUser", "Enterprise User", enterprise),
    ]
    .into_iter()
    .map(|(id, name, description, attributes)| {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": id,
            "name": name,
            "description": description,
            "attributes": attributes,
            "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")},
        })
    })
    .collect()
}

/// The resource types served (`GET /ResourceTypes`).
pub fn resource_types(base: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "User Account",
            "schema": USER_SCHEMA,
            "schemaExtensions": [{"schema": ENTERPRISE_SCHEMA, "required": false}],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")},
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "Group",
            "schema": GROUP_SCHEMA,
            "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group")},
        }),
    ]
}

/// A list response (RFC 7644 section 3.4.2).
pub fn list(total: i64, start_index: i64, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

/// The key of `object` equal to `name` ignoring ASCII case (SCIM attribute names are
/// case-insensitive), or `name` itself when there is none.
fn key_of(object: &Map<String, Value>, name: &str) -> String {
    object.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned().unwrap_or_else(|| name.into())
}

fn get_ci<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

/// Checks a written resource (POST, PUT, or the result of a PATCH) and returns it as stored:
/// without `id`, `meta` (the server's) and `password`, with `schemas` set, `active` a boolean, and its
/// unique name (lowercased).
///
/// # Errors
/// The attribute at fault, as a SCIM 400.
pub fn normalise(kind: Kind, resource: Value) -> Result<(Map<String, Value>, String), ScimError> {
    let Value::Object(mut r) = resource else {
        return Err(ScimError::bad("invalidSyntax", "the body must be a JSON object"));
    };
    // `id` and `meta` are the server's; `password` (Okta sends one when password sync is on) is
    // write-only in RFC 7643 and aiscout has no use for it, so it is never stored.
    for readonly in ["id", "meta", "password"] {
        let key = key_of(&r, readonly);
        r.remove(&key);
    }
    let name_key = key_of(&r, kind.name_attribute());
    let name = match r.get(&name_key) {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(ScimError::bad(
                "invalidValue",
                format!("{} is required and must not be empty", kind.name_attribute()),
            ));
        }
        Some(_) => {
            return Err(ScimError::bad(
                "invalidValue",
                format!("{} must be a string", kind.name_attribute()),
            ));
        }
    };
    if name.chars().count() > 512 || name.chars().any(char::is_control) {
        return Err(ScimError::bad(
            "invalidValue",
            format!("{} must be at most 512 printable characters", kind.name_attribute()),
        ));
    }
    if name_key != kind.name_attribute()
        && let Some(v) = r.remove(&name_key)
    {
        r.insert(kind.name_attribute().into(), v);
    }
    // Entra ID has sent booleans as the strings "True" and "False".
    let active_key = key_of(&r, "active");
    match r.get(&active_key) {
        None | Some(Value::Bool(_)) => {}
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => {
            r.insert(active_key, Value::Bool(true));
        }
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => {
            r.insert(active_key, Value::Bool(false));
        }
        Some(Value::Null) => {
            r.remove(&active_key);
        }
        Some(other) => {
            return Err(ScimError::bad(
                "invalidValue",
                format!("active must be a boolean, not {other}"),
            ));
        }
    }
    if let Some(v) = get_ci(&r, "emails") {
        let ok = matches!(v, Value::Array(items) if items.iter().all(Value::is_object));
        if !ok {
            return Err(ScimError::bad("invalidValue", "emails must be an array of objects"));
        }
    }
    if let Some(v) = get_ci(&r, "members") {
        let ok = matches!(v, Value::Array(items) if items.iter().all(|m| {
            m.as_object().and_then(|o| get_ci(o, "value")).is_some_and(Value::is_string)
        }));
        if !ok {
            return Err(ScimError::bad(
                "invalidValue",
                "members must be an array of objects with a string value",
            ));
        }
    }
    if get_ci(&r, ENTERPRISE_SCHEMA).is_some_and(|v| !v.is_object()) {
        return Err(ScimError::bad(
            "invalidValue",
            format!("{ENTERPRISE_SCHEMA} must be an object"),
        ));
    }
    let mut schemas = vec![Value::from(kind.schema())];
    if kind == Kind::User && get_ci(&r, ENTERPRISE_SCHEMA).is_some() {
        schemas.push(Value::from(ENTERPRISE_SCHEMA));
    }
    let key = key_of(&r, "schemas");
    r.remove(&key);
    r.insert("schemas".into(), Value::Array(schemas));
    Ok((r, name.to_lowercase()))
}

/// Whether a stored user is active (absent means active, RFC 7643 leaves it to the provider).
pub fn is_active(resource: &Map<String, Value>) -> bool {
    get_ci(resource, "active").and_then(Value::as_bool).unwrap_or(true)
}

fn looks_like_email(s: &str) -> Option<String> {
    crate::person::email(s).ok()
}

/// The directory entry a stored user makes: the email is `userName` when it is an address
/// (Entra's UPN, Okta's login), else the primary (or first) of `emails`; none when neither is.
/// `manager` is the manager's email when `manager_email` finds the referenced user, else the
/// manager's display name or id as sent.
pub fn person(
    resource: &Map<String, Value>,
    manager_email: impl FnOnce(&str) -> Option<String>,
) -> Option<(Person, bool)> {
    let user_name = get_ci(resource, "userName").and_then(Value::as_str).unwrap_or_default();
    let emails: Vec<&Map<String, Value>> = get_ci(resource, "emails")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default();
    let primary = emails
        .iter()
        .find(|e| get_ci(e, "primary").and_then(Value::as_bool) == Some(true))
        .or(emails.first())
        .and_then(|e| get_ci(e, "value"))
        .and_then(Value::as_str);
    let email = looks_like_email(user_name).or_else(|| primary.and_then(looks_like_email))?;
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
    };
    let name_obj = get_ci(resource, "name").and_then(Value::as_object);
    let name = text(get_ci(resource, "displayName"))
        .or_else(|| name_obj.and_then(|n| text(get_ci(n, "formatted"))))
        .or_else(|| {
            let n = name_obj?;
            let parts: Vec<String> =
                ["givenName", "familyName"].iter().filter_map(|k| text(get_ci(n, k))).collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        })
        .unwrap_or_else(|| user_name.to_owned());
    let enterprise = get_ci(resource, ENTERPRISE_SCHEMA).and_then(Value::as_object);
    let department = enterprise.and_then(|e| text(get_ci(e, "department"))).unwrap_or_default();
    let manager = enterprise.and_then(|e| get_ci(e, "manager")).and_then(|m| match m {
        // Entra ID has sent the manager as the bare id.
        Value::String(id) => manager_email(id).or_else(|| Some(id.clone())),
        Value::Object(m) => {
            let id = text(get_ci(m, "value"));
            id.as_deref().and_then(manager_email).or_else(|| text(get_ci(m, "displayName"))).or(id)
        }
        _ => None,
    });
    Some((Person { email, name, department, manager }, is_active(resource)))
}

/// The manager id a stored user refers to, if any.
pub fn manager_id(resource: &Map<String, Value>) -> Option<String> {
    let m = get_ci(resource, ENTERPRISE_SCHEMA)?.as_object().and_then(|e| get_ci(e, "manager"))?;
    match m {
        Value::String(id) => Some(id.clone()),
        Value::Object(m) => get_ci(m, "value").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// Applies the `attributes` and `excludedAttributes` parameters (RFC 7644 section 3.9,
/// comma-separated, each `attr`, `attr.sub` or `urn:...:attr`) to a served resource. `id` and
/// `schemas` are always returned.
pub fn project(
    resource: &mut Map<String, Value>,
    attributes: Option<&str>,
    excluded: Option<&str>,
) {
    let names = |list: &str| -> Vec<(Option<String>, String, Option<String>)> {
        list.split(',')
            .filter_map(|a| parse_path(a.trim()).ok())
            .map(|p| (p.extension, p.attr, p.sub))
            .collect()
    };
    const ALWAYS: [&str; 2] = ["id", "schemas"];
    if let Some(list) = attributes.filter(|a| !a.trim().is_empty()) {
        let wanted = names(list);
        let keys: Vec<String> = resource.keys().cloned().collect();
        for key in keys {
            if ALWAYS.iter().any(|a| key.eq_ignore_ascii_case(a)) {
                continue;
            }
            let is_ext = key.eq_ignore_ascii_case(ENTERPRISE_SCHEMA);
            let hits: Vec<&(Option<String>, String, Option<String>)> = wanted
                .iter()
                .filter(|(ext, attr, _)| {
                    if is_ext {
                        ext.is_some() || attr.eq_ignore_ascii_case(&key)
                    } else {
                        ext.is_none() && attr.eq_ignore_ascii_case(&key)
                    }
                })
                .collect();
            if hits.is_empty() {
                resource.remove(&key);
                continue;
            }
            // Keep only the named sub-attributes when every hit names one.
            let subs: Option<Vec<&str>> = hits
                .iter()
                .map(
                    |(ext, attr, sub)| {
                        if is_ext && ext.is_some() { Some(attr.as_str()) } else { sub.as_deref() }
                    },
                )
                .collect();
            if let (Some(subs), Some(Value::Object(o))) = (subs, resource.get_mut(&key)) {
                o.retain(|k, _| subs.iter().any(|s| s.eq_ignore_ascii_case(k)));
            }
        }
    }
    if let Some(list) = excluded {
        for (ext, attr, sub) in names(list) {
            if ALWAYS.iter().any(|a| attr.eq_ignore_ascii_case(a)) && ext.is_none() {
                continue;
            }
            let (holder, name) = match (&ext, sub) {
                (Some(urn), _) => (Some(key_of(resource, urn)), attr),
                (None, Some(sub)) => (Some(key_of(resource, &attr)), sub),
                (None, None) => (None, attr),
            };
            match holder {
                Some(h) => {
                    if let Some(Value::Object(o)) = resource.get_mut(&h) {
                        let k = key_of(o, &name);
                        o.remove(&k);
                    }
                }
                None => {
                    let k = key_of(resource, &name);
                    resource.remove(&k);
                }
            }
        }
    }
}

/// A list filter this server answers: `<name attribute> eq "value"`, as Okta and Entra ID
/// send (`userName eq "a@example.com"`, `displayName eq "Sales"`). Returns the lowercased
/// value (names are unique ignoring case).
///
/// # Errors
/// Any other filter, as `invalidFilter` naming what is supported.
pub fn filter(kind: Kind, text: &str) -> Result<String, ScimError> {
    let unsupported = || {
        ScimError::bad(
            "invalidFilter",
            format!("filter {text:?} is not supported; use {} eq \"value\"", kind.name_attribute()),
        )
    };
    let text = text.trim();
    let (attr, rest) = text.split_once(char::is_whitespace).ok_or_else(unsupported)?;
    let attr = attr.rsplit_once(':').map_or(attr, |(_, a)| a);
    let (op, value) = rest.trim_start().split_once(char::is_whitespace).ok_or_else(unsupported)?;
    if !attr.eq_ignore_ascii_case(kind.name_attribute()) || !op.eq_ignore_ascii_case("eq") {
        return Err(unsupported());
    }
    match serde_json::from_str::<Value>(value.trim()) {
        Ok(Value::String(s)) => Ok(s.trim().to_lowercase()),
        _ => Err(unsupported()),
    }
}

/// A PATCH path: `attr`, `attr.sub`, `attr[sub eq "v"]`, `attr[sub eq "v"].sub`, each
/// optionally behind a schema URN (`urn:...:enterprise:2.0:User:department`).
#[derive(Debug, PartialEq)]
struct Path {
    /// The extension object the attribute is in, if any.
    extension: Option<String>,
    attr: String,
    filter: Option<(String, Value)>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Result<Path, ScimError> {
    let invalid = || ScimError::bad("invalidPath", format!("path {path:?} is not supported"));
    let mut rest = path.trim();
    if rest.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) {
        return Ok(Path {
            extension: None,
            attr: ENTERPRISE_SCHEMA.into(),
            filter: None,
            sub: None,
        });
    }
    let mut extension = None;
    for urn in [ENTERPRISE_SCHEMA, USER_SCHEMA, GROUP_SCHEMA] {
        if rest.len() > urn.len()
            && rest.get(..urn.len()).is_some_and(|p| p.eq_ignore_ascii_case(urn))
        {
            let after = rest.get(urn.len()..).unwrap_or_default();
            rest = after.strip_prefix(':').ok_or_else(invalid)?;
            if urn == ENTERPRISE_SCHEMA {
                extension = Some(ENTERPRISE_SCHEMA.to_owned());
            }
            break;
        }
    }
    let (head, filter, tail) = match rest.split_once('[') {
        Some((head, after)) => {
            let (inside, tail) = after.split_once(']').ok_or_else(invalid)?;
            let mut words = inside.trim().splitn(3, char::is_whitespace);
            let (Some(sub), Some(op), Some(value)) = (words.next(), words.next(), words.next())
            else {
                return Err(invalid());
            };
            if !op.eq_ignore_ascii_case("eq") {
                return Err(ScimError::bad(
                    "invalidFilter",
                    format!("path {path:?}: only eq filters are supported"),
                ));
            }
            let value: Value = serde_json::from_str(value.trim()).map_err(|_| invalid())?;
            let tail = match tail {
                "" => None,
                t => Some(t.strip_prefix('.').ok_or_else(invalid)?.to_owned()),
            };
            (head, Some((sub.to_owned(), value)), tail)
        }
        None => match rest.split_once('.') {
            Some((head, sub)) => (head, None, Some(sub.to_owned())),
            None => (rest, None, None),
        },
    };
    let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '$');
    if !ok(head) || tail.as_deref().is_some_and(|t| !ok(t)) {
        return Err(invalid());
    }
    Ok(Path { extension, attr: head.to_owned(), filter, sub: tail })
}

fn matches_filter(item: &Value, filter: &(String, Value)) -> bool {
    let Some(v) = item.as_object().and_then(|o| get_ci(o, &filter.0)) else {
        return false;
    };
    match (v, &filter.1) {
        (Value::String(a), Value::String(b)) => a.eq_ignore_ascii_case(b),
        (a, b) => a == b,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Remove,
    Replace,
}

/// Applies the operations of a PATCH body (RFC 7644 section 3.5.2) to a stored resource, as
/// Okta and Entra ID send them: op names in any case, a path or an object value without one
/// (whose keys may themselves be paths, as Entra sends `name.givenName`), value filters on
/// multi-valued attributes, and `remove` of members by value list.
///
/// # Errors
/// The operation (by index) and what is wrong with it.
pub fn patch(resource: &mut Map<String, Value>, body: &Value) -> Result<(), ScimError> {
    let Some(body) = body.as_object() else {
        return Err(ScimError::bad("invalidSyntax", "the PATCH body must be a JSON object"));
    };
    let has_schema = get_ci(body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|v| v.as_str() == Some(PATCH_SCHEMA)));
    if !has_schema {
        return Err(ScimError::bad(
            "invalidSyntax",
            format!("schemas must contain {PATCH_SCHEMA}"),
        ));
    }
    let Some(ops) = get_ci(body, "Operations").and_then(Value::as_array) else {
        return Err(ScimError::bad("invalidSyntax", "Operations must be an array"));
    };
    if ops.len() > MAX_OPERATIONS {
        return Err(ScimError::bad(
            "tooMany",
            format!("at most {MAX_OPERATIONS} operations per request"),
        ));
    }
    for (i, op) in ops.iter().enumerate() {
        let at = |e: ScimError| ScimError { detail: format!("Operations[{i}]: {}", e.detail), ..e };
        let Some(op) = op.as_object() else {
            return Err(at(ScimError::bad("invalidSyntax", "an operation must be an object")));
        };
        let kind = match get_ci(op, "op").and_then(Value::as_str).map(str::to_ascii_lowercase) {
            Some(o) if o == "add" => Op::Add,
            Some(o) if o == "remove" => Op::Remove,
            Some(o) if o == "replace" => Op::Replace,
            other => {
                return Err(at(ScimError::bad(
                    "invalidSyntax",
                    format!("op must be add, remove or replace, not {other:?}"),
                )));
            }
        };
        let value = get_ci(op, "value");
        match get_ci(op, "path").and_then(Value::as_str) {
            Some(path) => {
                apply(resource, kind, &parse_path(path).map_err(at)?, value).map_err(at)?
            }
            None => {
                if kind == Op::Remove {
                    return Err(at(ScimError::bad("noTarget", "remove needs a path")));
                }
                let Some(Value::Object(values)) = value else {
                    return Err(at(ScimError::bad(
                        "invalidValue",
                        "an operation without a path needs an object value",
                    )));
                };
                for (key, v) in values {
                    let path = if key.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) {
                        // The whole extension object: merge its attributes.
                        let Value::Object(ext) = v else {
                            return Err(at(ScimError::bad(
                                "invalidValue",
                                format!("{ENTERPRISE_SCHEMA} must be an object"),
                            )));
                        };
                        for (k, v) in ext {
                            let p = parse_path(&format!("{ENTERPRISE_SCHEMA}:{k}")).map_err(at)?;
                            apply(resource, kind, &p, Some(v)).map_err(at)?;
                        }
                        continue;
                    } else {
                        parse_path(key).map_err(at)?
                    };
                    apply(resource, kind, &path, Some(v)).map_err(at)?;
                }
            }
        }
    }
    Ok(())
}

fn apply(
    resource: &mut Map<String, Value>,
    op: Op,
    path: &Path,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    if path.extension.is_none()
        && ["id", "meta", "schemas"].iter().any(|r| path.attr.eq_ignore_ascii_case(r))
    {
        return Err(ScimError::bad("mutability", format!("{} is read-only", path.attr)));
    }
    let target: &mut Map<String, Value> = match &path.extension {
        Some(urn) => {
            let key = key_of(resource, urn);
            let entry = resource.entry(key).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            match entry.as_object_mut() {
                Some(o) => o,
                None => return Err(ScimError::status(500, "extension is not an object")),
            }
        }
        None => resource,
    };
    let key = key_of(target, &path.attr);
    let need_value = || {
        value.cloned().ok_or_else(|| {
            ScimError::bad(
                "invalidValue",
                format!(
                    "{op_name} needs a value",
                    op_name = if op == Op::Add { "add" } else { "replace" }
                ),
            )
        })
    };
    match (&path.filter, &path.sub) {
        (None, None) => match op {
            Op::Remove => match value {
                // Entra ID removes group members by listing them as the value.
                Some(Value::Array(gone)) => {
                    if let Some(Value::Array(items)) = target.get_mut(&key) {
                        items.retain(|item| {
                            !gone.iter().any(|g| {
                                let v = |x: &Value| {
                                    x.as_object().and_then(|o| get_ci(o, "value")).cloned()
                                };
                                v(g).is_some() && v(g) == v(item)
                            })
                        });
                    }
                }
                _ => {
                    target.remove(&key);
                }
            },
            Op::Add => {
                let v = need_value()?;
                match (target.get_mut(&key), v) {
                    (Some(Value::Array(items)), Value::Array(new)) => {
                        for n in new {
                            if !items.contains(&n) {
                                items.push(n);
                            }
                        }
                    }
                    (Some(Value::Object(old)), Value::Object(new)) => {
                        for (k, v) in new {
                            let k2 = key_of(old, &k);
                            old.insert(k2, v);
                        }
                    }
                    (_, v) => {
                        target.insert(key, v);
                    }
                }
            }
            Op::Replace => {
                let v = need_value()?;
                match (target.get_mut(&key), v) {
                    (Some(Value::Object(old)), Value::Object(new)) => {
                        for (k, v) in new {
                            let k2 = key_of(old, &k);
                            old.insert(k2, v);
                        }
                    }
                    (_, v) => {
                        target.insert(key, v);
                    }
                }
            }
        },
        (None, Some(sub)) => {
            let entry = target.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
            let Some(obj) = entry.as_object_mut() else {
                return Err(ScimError::bad(
                    "invalidPath",
                    format!("{key} is not a complex attribute"),
                ));
            };
            let k = key_of(obj, sub);
            if op == Op::Remove {
                obj.remove(&k);
            } else {
                obj.insert(k, need_value()?);
            }
        }
        (Some(filter), sub) => {
            let entry = target.entry(key.clone()).or_insert_with(|| Value::Array(Vec::new()));
            let Some(items) = entry.as_array_mut() else {
                return Err(ScimError::bad(
                    "invalidPath",
                    format!("{key} is not a multi-valued attribute"),
                ));
            };
            let matched = items.iter().any(|i| matches_filter(i, filter));
            match (op, sub) {
                (Op::Remove, None) => items.retain(|i| !matches_filter(i, filter)),
                (Op::Remove, Some(sub)) => {
                    for item in items.iter_mut().filter(|i| matches_filter(i, filter)) {
                        if let Some(o) = item.as_object_mut() {
                            let k = key_of(o, sub);
                            o.remove(&k);
                        }
                    }
                }
                (_, Some(sub)) if !matched => {
                    // Entra ID replaces emails[type eq "work"].value on a user without one.
                    let mut item = Map::new();
                    if let Value::String(_) | Value::Bool(_) = filter.1 {
                        item.insert(filter.0.clone(), filter.1.clone());
                    }
                    item.insert(sub.clone(), need_value()?);
                    items.push(Value::Object(item));
                }
                (_, Some(sub)) => {
                    let v = need_value()?;
                    for item in items.iter_mut().filter(|i| matches_filter(i, filter)) {
                        if let Some(o) = item.as_object_mut() {
                            let k = key_of(o, sub);
                            o.insert(k, v.clone());
                        }
                    }
                }
                (_, None) => {
                    let Value::Object(new) = need_value()? else {
                        return Err(ScimError::bad(
                            "invalidValue",
                            format!("{key}[...] needs an object value"),
                        ));
                    };
                    if !matched {
                        return Err(ScimError::bad(
                            "noTarget",
                            format!("no {key} matches the filter"),
                        ));
                    }
                    for item in items.iter_mut().filter(|i| matches_filter(i, filter)) {
                        if let Some(o) = item.as_object_mut() {
                            for (k, v) in &new {
                                let k2 = key_of(o, k);
                                o.insert(k2, v.clone());
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> Map<String, Value> {
        let (r, _) = normalise(
            Kind::User,
            json!({"userName": "Ada@Example.com", "active": true,
                   "emails": [{"type": "work", "value": "ada@example.com", "primary": true}]}),
        )
        .unwrap();
        r
    }

    #[test]
    fn entra_patch_shapes_apply() {
        let mut r = user();
        patch(&mut r, &json!({"schemas": [PATCH_SCHEMA], "Operations": [
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "R&D"},
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "ada@new.example.com"},
            {"op": "Add", "value": {"name.givenName": "Ada", "displayName": "Ada L"}},
        ]}))
        .unwrap();
        let (r, _) = normalise(Kind::User, Value::Object(r)).unwrap();
        assert!(!is_active(&r));
        let (p, active) = person(&r, |_| None).unwrap();
        assert!(!active);
        assert_eq!(p.department, "R&D");
        assert_eq!(p.name, "Ada L");
        assert_eq!(r["emails"][0]["value"], "ada@new.example.com");
        assert_eq!(r["name"]["givenName"], "Ada");
    }

    #[test]
    fn bad_paths_and_filters_name_the_problem() {
        let mut r = user();
        let e = patch(
            &mut r,
            &json!({"schemas": [PATCH_SCHEMA], "Operations": [
            {"op": "replace", "path": "emails[type gt \"w\"].value", "value": "x"}]}),
        )
        .unwrap_err();
        assert_eq!(e.scim_type, Some("invalidFilter"));
        assert!(e.detail.starts_with("Operations[0]"), "{e}");
        let e = filter(Kind::User, "title sw \"x\"").unwrap_err();
        assert_eq!(e.scim_type, Some("invalidFilter"));
        assert_eq!(filter(Kind::User, "userName eq \"A@B.c\"").unwrap(), "a@b.c");
        let e = patch(
            &mut r,
            &json!({"schemas": [PATCH_SCHEMA], "Operations": [
            {"op": "move", "path": "active"}]}),
        )
        .unwrap_err();
        assert_eq!(e.scim_type, Some("invalidSyntax"));
    }
}
