//! The Windows package: the Intune scripts and their settings, the enroll secret and catalog
//! key, browser policies as a .reg file and the README.

#[allow(clippy::wildcard_imports)] // Reason: a part of the mdm module, sharing its helpers.
use super::*;

/// The settings `install.ps1` reads from beside itself (a PowerShell data file: no code runs).
/// `OverlayKey` is the collector's organisation-overlay public key (issue 17), written to
/// `overlay.pub` and `overlay_key_file` by `install.ps1`; empty when the package has none.
pub fn windows_settings(s: &Settings) -> String {
    let pin = s.pin_sha256.as_deref().map_or_else(|| "''".to_owned(), ps_string);
    let overlay = s.overlay_key.as_deref().map_or_else(|| "''".to_owned(), ps_string);
    format!(
        "# aiscout agent settings for {url}, read by install.ps1 (Import-PowerShellDataFile).\n\
         @{{\n    CollectorUrl = {url_q}\n    PinSha256 = {pin}\n    OverlayKey = {overlay}\n}}\n",
        url = s.collector_url,
        url_q = ps_string(&s.collector_url),
    )
}

pub(super) fn write_windows(w: &mut Writer<'_>, s: &Settings) -> Result<(), MdmError> {
    w.file("install.ps1", 0o644, INSTALL_PS1.as_bytes())?;
    w.file("uninstall.ps1", 0o644, UNINSTALL_PS1.as_bytes())?;
    w.file("detect.ps1", 0o644, DETECT_PS1.as_bytes())?;
    w.file("install-settings.psd1", 0o600, windows_settings(s).as_bytes())?;
    w.file("enroll_secret", 0o600, format!("{}\n", s.enroll_secret.expose()).as_bytes())?;
    w.file("catalog.pub", 0o644, format!("{}\n", s.catalog_key).as_bytes())?;
    if let Some(p) = &s.policies {
        w.file("browser-policies.reg", 0o644, &utf16le_with_bom(&registry_file(p)))?;
    }
    let readme = windows_readme(s) + &policies_readme(s, Platform::Windows);
    w.file("README.md", 0o644, readme.as_bytes())
}

/// The README section on the review decisions' browser and IDE policies.
pub(super) fn policies_readme(s: &Settings, platform: Platform) -> String {
    let Some(p) = &s.policies else {
        return "\n## The review decisions\n\nThis package carries no browser or IDE blocklists \
                (no collector database was read, or --no-policies). Run mdm-package where the \
                collector's database is to include them, or use `aiscout-collector policy \
                export`.\n"
            .to_owned();
    };
    let count = |v: &serde_json::Value| v.as_array().map_or(0, Vec::len);
    let summary = format!(
        "{} blocked extension(s), {} blocked and {} allowed web name(s)",
        count(&p.chrome["ExtensionInstallBlocklist"]),
        count(&p.chrome["URLBlocklist"]),
        count(&p.chrome["URLAllowlist"]),
    );
    let where_ = match platform {
        Platform::Linux => {
            "- `chrome-aiscout-policy.json`: install as \
             `/etc/opt/chrome/policies/managed/aiscout.json` (Chromium: \
             `/etc/chromium/policies/managed/`, Edge: `/etc/opt/edge/policies/managed/`).\n\
             - `firefox-policies.json` now also holds `ExtensionSettings` and `WebsiteFilter`.\n\
             - `vscode-settings.json`: the `extensions.allowed` setting for VS Code and Cursor.\n"
        }
        Platform::Macos => {
            "- The profile's Chrome and Edge payloads carry `ExtensionInstallBlocklist`, \
             `URLBlocklist` and `URLAllowlist`; the Firefox payload `ExtensionSettings` and \
             `WebsiteFilter`; a `com.microsoft.VSCode` payload sets `AllowedExtensions`.\n"
        }
        Platform::Windows => {
            "- `browser-policies.reg`: the same for Chrome, Edge, Firefox and VS Code under \
             `HKLM\\SOFTWARE\\Policies`. Deploy it with an Intune platform script or \
             remediation running `reg import browser-policies.reg` as SYSTEM.\n"
        }
    };
    format!(
        "\n## The review decisions\n\n\
         This package carries the browser and IDE policies of the AI tool decisions as they \
         were when it was written ({summary}; products blocked in the collector's reviews):\n\n\
         {where_}\n\
         A profile does not change by itself: run mdm-package again and redeploy after \
         decisions change, or let your tools fetch `GET /api/v1/policy/chrome-policy` (and the \
         other formats) with a `policy` token.\n"
    )
}

/// A `.reg` string value: backslashes and quotes escaped, one line.
fn reg_string(text: &str) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    format!("\"{}\"", clean.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The browser and IDE policies as a registry file for `reg import` (Chrome, Edge, Firefox,
/// VS Code under `HKLM\SOFTWARE\Policies`). Each list key is deleted first, so an entry
/// removed from the decisions is removed from the machine.
pub fn registry_file(p: &crate::policy::BrowserPolicies) -> String {
    const POLICIES: &str = "HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies";
    let mut out = String::from(
        "Windows Registry Editor Version 5.00\r\n\r\n\
         ; aiscout: the browser and IDE policies of the current AI tool review decisions.\r\n\
         ; Import as administrator: reg import browser-policies.reg\r\n",
    );
    let list = |out: &mut String, key: &str, values: &[String]| {
        out.push_str(&format!("\r\n[-{key}]\r\n[{key}]\r\n"));
        for (i, v) in values.iter().enumerate() {
            out.push_str(&format!("\"{}\"={}\r\n", i + 1, reg_string(v)));
        }
    };
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    for vendor in ["Google\\Chrome", "Microsoft\\Edge"] {
        for name in ["ExtensionInstallBlocklist", "URLBlocklist", "URLAllowlist"] {
            list(&mut out, &format!("{POLICIES}\\{vendor}\\{name}"), &strings(&p.chrome[name]));
        }
    }
    let firefox = format!("{POLICIES}\\Mozilla\\Firefox");
    out.push_str(&format!(
        "\r\n[{firefox}]\r\n\"ExtensionSettings\"={}\r\n",
        reg_string(&serde_json::to_string(&p.firefox["ExtensionSettings"]).unwrap_or_default())
    ));
    out.push_str(&format!("\r\n[-{firefox}\\WebsiteFilter]\r\n"));
    for part in ["Block", "Exceptions"] {
        list(
            &mut out,
            &format!("{firefox}\\WebsiteFilter\\{part}"),
            &strings(&p.firefox["WebsiteFilter"][part]),
        );
    }
    out.push_str(&format!(
        "\r\n[{POLICIES}\\Microsoft\\VSCode]\r\n\"AllowedExtensions\"={}\r\n",
        reg_string(&serde_json::to_string(&p.vscode_allowed).unwrap_or_default())
    ));
    out
}

/// UTF-16 little-endian with a byte order mark: the encoding `regedit` writes and reads.
fn utf16le_with_bom(text: &str) -> Vec<u8> {
    let mut bytes = vec![0xff, 0xfe];
    for unit in text.encode_utf16() {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    bytes
}

pub(super) fn windows_readme(s: &Settings) -> String {
    fill(
        WINDOWS_README,
        &[
            ("url", s.collector_url.as_str()),
            ("pin", pin_text(s).as_str()),
            ("key", s.catalog_key.as_str()),
        ],
    )
}
