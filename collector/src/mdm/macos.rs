//! The macOS package: a configuration profile (managed settings for the agent, browser DNS
//! policies), the launchd plist and the README.

#[allow(clippy::wildcard_imports)] // Reason: a part of the mdm module, sharing its helpers.
use super::*;

pub(super) fn uuid_v4(rng: &ring::rand::SystemRandom) -> Result<String, MdmError> {
    let mut b = [0u8; 16];
    rng.fill(&mut b).map_err(|_| MdmError::Random)?;
    // RFC 9562 section 5.4: version 4, variant 0b10.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{byte:02X}"));
    }
    Ok(s)
}

fn payload(
    rng: &ring::rand::SystemRandom,
    kind: &str,
    suffix: &str,
    name: &str,
) -> Result<Dictionary, MdmError> {
    let mut d = Dictionary::new();
    d.insert("PayloadType".into(), Value::String(kind.into()));
    d.insert("PayloadIdentifier".into(), Value::String(format!("{PROFILE_IDENTIFIER}.{suffix}")));
    d.insert("PayloadUUID".into(), Value::String(uuid_v4(rng)?));
    d.insert("PayloadVersion".into(), Value::Integer(1.into()));
    d.insert("PayloadDisplayName".into(), Value::String(name.into()));
    d.insert("PayloadEnabled".into(), Value::Boolean(true));
    Ok(d)
}

/// The configuration profile: the agent's managed settings (preference domain
/// [`MANAGED_DOMAIN`]) and the Chrome, Edge and Firefox policies that keep DNS visible.
///
/// # Errors
/// No randomness for the UUIDs.
pub fn mobileconfig(s: &Settings) -> Result<Value, MdmError> {
    let rng = ring::rand::SystemRandom::new();

    let mut agent = payload(&rng, MANAGED_DOMAIN, "agent", "aiscout agent settings")?;
    let str_value = |v: &str| Value::String(v.to_owned());
    agent.insert("collector_url".into(), str_value(&s.collector_url));
    agent.insert("enroll_secret".into(), str_value(s.enroll_secret.expose()));
    if let Some(pin) = &s.pin_sha256 {
        agent.insert("pin_sha256".into(), str_value(pin));
    }
    agent.insert("catalog_key".into(), str_value(&s.catalog_key));
    if let Some(key) = &s.overlay_key {
        agent.insert("overlay_key".into(), str_value(key));
    }
    if let Some(email) = &s.email_placeholder {
        agent.insert("owner_email".into(), str_value(email));
    }

    // Chrome and Edge: "off" sends no DNS over HTTPS (Chrome's DnsOverHttpsMode policy).
    let mut chrome =
        payload(&rng, "com.google.Chrome", "chrome", "Google Chrome: DNS over HTTPS off")?;
    chrome.insert("DnsOverHttpsMode".into(), str_value("off"));
    let mut edge =
        payload(&rng, "com.microsoft.Edge", "edge", "Microsoft Edge: DNS over HTTPS off")?;
    edge.insert("DnsOverHttpsMode".into(), str_value("off"));

    // Firefox reads policies from its domain only when EnterprisePoliciesEnabled is set.
    let mut firefox =
        payload(&rng, "org.mozilla.firefox", "firefox", "Firefox: DNS over HTTPS off")?;
    firefox.insert("EnterprisePoliciesEnabled".into(), Value::Boolean(true));
    let mut doh = Dictionary::new();
    doh.insert("Enabled".into(), Value::Boolean(false));
    doh.insert("Locked".into(), Value::Boolean(true));
    firefox.insert("DNSOverHTTPS".into(), Value::Dictionary(doh));

    let mut content = Vec::new();
    if let Some(p) = &s.policies {
        // The decisions' blocklists ride in the same browser payloads (one payload per
        // preference domain), and VS Code reads AllowedExtensions as a JSON string.
        for browser in [&mut chrome, &mut edge] {
            if let Some(map) = p.chrome.as_object() {
                for (k, v) in map {
                    browser.insert(k.clone(), plist_of(v));
                }
            }
        }
        if let Some(map) = p.firefox.as_object() {
            for (k, v) in map {
                firefox.insert(k.clone(), plist_of(v));
            }
        }
        let mut vscode = payload(
            &rng,
            "com.microsoft.VSCode",
            "vscode",
            "VS Code: extensions allowed by the AI tool reviews",
        )?;
        vscode.insert(
            "AllowedExtensions".into(),
            str_value(&serde_json::to_string(&p.vscode_allowed).unwrap_or_default()),
        );
        content.push(Value::Dictionary(vscode));
    }
    content.splice(
        0..0,
        [
            Value::Dictionary(agent),
            Value::Dictionary(chrome),
            Value::Dictionary(edge),
            Value::Dictionary(firefox),
        ],
    );
    let mut top = Dictionary::new();
    top.insert("PayloadContent".into(), Value::Array(content));
    top.insert(
        "PayloadDescription".into(),
        str_value(&format!(
            "Connects the aiscout agent to {} and keeps browser DNS visible to it.",
            s.collector_url
        )),
    );
    top.insert("PayloadDisplayName".into(), str_value("aiscout agent"));
    top.insert("PayloadIdentifier".into(), str_value(PROFILE_IDENTIFIER));
    top.insert("PayloadOrganization".into(), str_value("aiscout"));
    top.insert("PayloadRemovalDisallowed".into(), Value::Boolean(true));
    top.insert("PayloadScope".into(), str_value("System"));
    top.insert("PayloadType".into(), str_value("Configuration"));
    top.insert("PayloadUUID".into(), Value::String(uuid_v4(&rng)?));
    top.insert("PayloadVersion".into(), Value::Integer(1.into()));
    Ok(Value::Dictionary(top))
}

pub(super) fn write_macos(w: &mut Writer<'_>, s: &Settings) -> Result<(), MdmError> {
    w.plist("com.aiscout.agent.mobileconfig", 0o600, &mobileconfig(s)?)?;
    let launchd = Value::from_reader_xml(LAUNCHD_PLIST.as_bytes()).map_err(|error| {
        MdmError::Plist { path: "installer/macos/com.aiscout.agent.plist".into(), error }
    })?;
    w.plist("com.aiscout.agent.plist", 0o644, &launchd)?;
    let readme = macos_readme(s) + &policies_readme(s, Platform::Macos);
    w.file("README.md", 0o644, readme.as_bytes())
}

pub(super) fn macos_readme(s: &Settings) -> String {
    let email = s.email_placeholder.as_deref().map_or_else(
        || "left out (`--email-placeholder ''`)".to_owned(),
        |e| format!("the MDM variable `{e}`"),
    );
    fill(
        MACOS_README,
        &[
            ("url", s.collector_url.as_str()),
            ("domain", MANAGED_DOMAIN),
            ("email", email.as_str()),
            ("pin", pin_text(s).as_str()),
            ("key", s.catalog_key.as_str()),
        ],
    )
}
