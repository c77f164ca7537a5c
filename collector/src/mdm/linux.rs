//! The Linux package: the agent config, enroll secret and catalog key as the .deb/.rpm lay
//! them out, an Ansible playbook, browser DNS policies and the README.

#[allow(clippy::wildcard_imports)] // Reason: a part of the mdm module, sharing its helpers.
use super::*;

/// The Linux agent config for this collector (paths as the .deb/.rpm lay them out).
pub fn linux_agent_toml(s: &Settings) -> String {
    format!(
        "# aiscout agent configuration for {url}\n\
         # Written by `aiscout-collector mdm-package --platform linux`.\n\
         # Install as /etc/aiscout/agent.toml (owner root, mode 0600).\n\
         \n\
         collector_url = {url_q}\n\
         enroll_secret_file = \"/etc/aiscout/enroll_secret\"\n\
         {pin}\
         catalog_key_file = \"/etc/aiscout/catalog.pub\"\n\
         {overlay}\
         interfaces = []\n\
         state_dir = \"/var/lib/aiscout\"\n",
        url = s.collector_url,
        url_q = toml_string(&s.collector_url),
        pin = pin_line(s),
        overlay = if s.overlay_key.is_some() {
            "overlay_key_file = \"/etc/aiscout/overlay.pub\"\n"
        } else {
            ""
        },
    )
}

pub(super) fn write_linux(w: &mut Writer<'_>, s: &Settings) -> Result<(), MdmError> {
    w.file("agent.toml", 0o600, linux_agent_toml(s).as_bytes())?;
    w.file("enroll_secret", 0o600, format!("{}\n", s.enroll_secret.expose()).as_bytes())?;
    w.file("catalog.pub", 0o644, format!("{}\n", s.catalog_key).as_bytes())?;
    if let Some(key) = &s.overlay_key {
        w.file("overlay.pub", 0o644, format!("{key}\n").as_bytes())?;
    }
    w.file("aiscout-agent.yml", 0o644, ANSIBLE_PLAYBOOK.as_bytes())?;
    w.file("chrome-dns-policy.json", 0o644, b"{\n  \"DnsOverHttpsMode\": \"off\"\n}\n")?;
    let mut firefox = serde_json::json!({ "DNSOverHTTPS": { "Enabled": false, "Locked": true } });
    if let (Some(p), Some(map)) = (&s.policies, firefox.as_object_mut()) {
        w.file("chrome-aiscout-policy.json", 0o644, pretty_json(&p.chrome).as_bytes())?;
        w.file(
            "vscode-settings.json",
            0o644,
            pretty_json(&serde_json::json!({ "extensions.allowed": p.vscode_allowed })).as_bytes(),
        )?;
        if let Some(policies) = p.firefox.as_object() {
            map.extend(policies.clone());
        }
    }
    w.file(
        "firefox-policies.json",
        0o644,
        pretty_json(&serde_json::json!({ "policies": firefox })).as_bytes(),
    )?;
    let readme = linux_readme(s) + &policies_readme(s, Platform::Linux);
    w.file("README.md", 0o644, readme.as_bytes())
}

/// The Ansible playbook of the Linux package (a file of its own, so it reads as YAML).
const ANSIBLE_PLAYBOOK: &str = include_str!("templates/aiscout-agent.yml");

pub(super) fn linux_readme(s: &Settings) -> String {
    fill(
        LINUX_README,
        &[
            ("url", s.collector_url.as_str()),
            ("pin", pin_text(s).as_str()),
            ("key", s.catalog_key.as_str()),
        ],
    )
}
