//! Who this machine is: the device identity sent at enrollment, and the pseudonymisation of OS
//! user names.
//!
//! Host ids are the ones MDM tools and osquery use, so devices join up across tools: Linux
//! `/etc/machine-id`, macOS `IOPlatformUUID` (from `ioreg`), Windows `MachineGuid` (from the
//! registry, through `reg query`).

use aiscout_wire::{DeviceIdentity, Secret};
use ring::hmac;

/// This machine's identity, with `owner_email` from the configuration.
pub fn device(owner_email: Option<String>) -> DeviceIdentity {
    DeviceIdentity {
        host_id: host_id().unwrap_or_else(|| format!("hostname:{}", hostname())),
        hostname: hostname(),
        os: std::env::consts::OS.to_owned(),
        os_version: sysinfo::System::long_os_version().unwrap_or_default(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        owner_email,
    }
}

fn hostname() -> String {
    sysinfo::System::host_name().unwrap_or_else(|| "unknown".to_owned())
}

/// The stable host id, when the platform has one.
#[allow(clippy::disallowed_methods)] // Reason: /etc/machine-id, a system file of 33 bytes.
pub fn host_id() -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        for path in ["/etc/machine-id", "/var/lib/dbus/machine-id"] {
            if let Ok(id) = std::fs::read_to_string(path) {
                let id = id.trim();
                if !id.is_empty() {
                    return Some(id.to_owned());
                }
            }
        }
        None
    }
    #[cfg(target_os = "macos")]
    {
        let out = std::process::Command::new("/usr/sbin/ioreg")
            .args(["-rd1", "-c", "IOPlatformExpertDevice"])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find(|l| l.contains("IOPlatformUUID"))
            .and_then(|l| l.rsplit('"').nth(1))
            .map(str::to_owned)
    }
    #[cfg(windows)]
    {
        let out = std::process::Command::new("reg")
            .args(["query", r"HKLM\SOFTWARE\Microsoft\Cryptography", "/v", "MachineGuid"])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find(|l| l.contains("MachineGuid"))
            .and_then(|l| l.split_whitespace().last())
            .map(str::to_owned)
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
    {
        None
    }
}

/// Replaces OS user names with a keyed hash when the organisation configured a key, so the
/// collector can count distinct users without learning their names.
#[derive(Clone, Debug)]
pub struct Pseudonymizer {
    key: Option<hmac::Key>,
}

impl Pseudonymizer {
    /// With a key, names become `u-` and 16 bytes of HMAC-SHA256 in hex; without, they pass
    /// through unchanged.
    pub fn new(key: Option<&Secret>) -> Self {
        Self { key: key.map(|k| hmac::Key::new(hmac::HMAC_SHA256, k.expose().as_bytes())) }
    }

    /// The name to send for `user`.
    pub fn user(&self, user: &str) -> String {
        match &self.key {
            Some(key) => {
                let tag = hmac::sign(key, user.as_bytes());
                let short = tag.as_ref().get(..16).unwrap_or(tag.as_ref());
                format!("u-{}", aiscout_signatures::hex::encode(short))
            }
            None => user.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_keyed_and_hide_the_name() {
        let a = Pseudonymizer::new(Some(&Secret::new("org-key-1")));
        let b = Pseudonymizer::new(Some(&Secret::new("org-key-2")));
        assert_eq!(a.user("alice"), a.user("alice"));
        assert_ne!(a.user("alice"), a.user("bob"));
        assert_ne!(a.user("alice"), b.user("alice"));
        assert!(!a.user("alice").contains("alice"));
        assert_eq!(a.user("alice").len(), 2 + 32);
        assert_eq!(Pseudonymizer::new(None).user("alice"), "alice");
    }

    #[test]
    fn this_machine_has_an_identity() {
        let d = device(Some("it@example.com".into()));
        assert!(!d.host_id.is_empty());
        assert!(!d.hostname.is_empty());
        assert_eq!(d.os, std::env::consts::OS);
        assert_eq!(d.owner_email.as_deref(), Some("it@example.com"));
    }
}
