//! Browser and IDE policies: Chrome/Edge managed policy JSON, Firefox `policies.json`, and
//! VS Code / Cursor `extensions.allowed`.
//!
//! Only documented policy names are written, with the types their documentation gives
//! (Chrome's policy list, Mozilla's policy-templates, VS Code's `AllowedExtensions`): a
//! browser shows an unknown name as an error on its policy page.

use serde_json::{Map, Value, json};

use super::Plan;

fn pretty(value: &Value) -> String {
    // Serialising a Value built here cannot fail (string keys only); `null` is the fallback.
    let mut s = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_owned());
    s.push('\n');
    s
}

/// The browser and IDE policies of a plan as JSON values, for the JSON exports and for the
/// MDM payloads (`mdm-package` converts them to property lists and registry values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrowserPolicies {
    /// Chrome and Edge: `{"ExtensionInstallBlocklist": [...], "URLAllowlist": [...],
    /// "URLBlocklist": [...]}`.
    pub chrome: Value,
    /// Firefox: the `policies` object (`ExtensionSettings`, `WebsiteFilter`).
    pub firefox: Value,
    /// VS Code and Cursor: the value of `extensions.allowed` (policy `AllowedExtensions`).
    pub vscode_allowed: Value,
}

/// Builds the three policies of a plan.
pub fn policies(plan: &Plan) -> BrowserPolicies {
    BrowserPolicies {
        chrome: chrome_value(plan),
        firefox: firefox_value(plan),
        vscode_allowed: vscode_value(plan),
    }
}

/// Chrome and Edge: `ExtensionInstallBlocklist` (extension ids), `URLBlocklist` (a host
/// blocks itself and every name below it) and `URLAllowlist` (an allowed product's host below
/// a blocked one; the more specific filter wins). The same JSON is the Linux policy file
/// (`/etc/opt/chrome/policies/managed/aiscout.json`, `/etc/chromium/policies/managed/`,
/// `/etc/opt/edge/policies/managed/`) and the values of the macOS profile and Intune.
fn chrome_value(plan: &Plan) -> Value {
    let mut extensions: Vec<&str> =
        plan.blocked.iter().flat_map(|b| b.chrome_extensions.iter().map(String::as_str)).collect();
    extensions.sort_unstable();
    extensions.dedup();
    let urls: Vec<&str> = plan.blocked_domains().into_iter().map(|(d, _)| d).collect();
    let allowed: Vec<&str> = plan.exceptions.iter().map(|e| e.domain.as_str()).collect();
    json!({
        "ExtensionInstallBlocklist": extensions,
        "URLAllowlist": allowed,
        "URLBlocklist": urls,
    })
}

pub(super) fn chrome(plan: &Plan) -> String {
    pretty(&chrome_value(plan))
}

/// Firefox `policies.json`: `ExtensionSettings` with `installation_mode: blocked` per add-on
/// (which also removes it where installed), and `WebsiteFilter` match patterns (`*.name`
/// matches the name and every name below it) with the allowed names as `Exceptions`.
fn firefox_value(plan: &Plan) -> Value {
    let mut settings = Map::new();
    for b in &plan.blocked {
        for id in &b.firefox_extensions {
            let mut entry = Map::new();
            entry.insert("installation_mode".into(), "blocked".into());
            let mut message = format!("{} is blocked by your organisation.", b.name);
            if let Some(alt) = &b.alternative {
                message.push_str(&format!(" Use {alt} instead."));
            }
            entry.insert("blocked_install_message".into(), message.into());
            settings.insert(id.clone(), Value::Object(entry));
        }
    }
    let block: Vec<String> =
        plan.blocked_domains().into_iter().map(|(d, _)| format!("*://*.{d}/*")).collect();
    let exceptions: Vec<String> =
        plan.exceptions.iter().map(|e| format!("*://*.{}/*", e.domain)).collect();
    let mut policies = Map::new();
    policies.insert("ExtensionSettings".into(), Value::Object(settings));
    policies.insert("WebsiteFilter".into(), json!({ "Block": block, "Exceptions": exceptions }));
    Value::Object(policies)
}

pub(super) fn firefox(plan: &Plan) -> (String, Vec<String>) {
    (pretty(&json!({ "policies": firefox_value(plan) })), Vec::new())
}

/// VS Code and Cursor: `extensions.allowed` (policy `AllowedExtensions`, VS Code 1.96+):
/// `"*": true` keeps every other extension allowed, sanctioned products' extensions are
/// listed `true`, blocked ones `false`. Remove `"*"` to allow only what is listed.
fn vscode_value(plan: &Plan) -> Value {
    let mut allowed = Map::new();
    allowed.insert("*".into(), Value::Bool(true));
    for (id, _) in &plan.sanctioned_vscode {
        allowed.insert(id.clone(), Value::Bool(true));
    }
    for b in &plan.blocked {
        for id in &b.vscode_extensions {
            allowed.insert(id.clone(), Value::Bool(false));
        }
    }
    Value::Object(allowed)
}

pub(super) fn vscode(plan: &Plan) -> String {
    pretty(&json!({ "extensions.allowed": vscode_value(plan) }))
}
