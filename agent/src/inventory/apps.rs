//! Installed applications: macOS bundles, Linux desktop entries and package databases, Windows
//! Uninstall entries and per-user program folders.

use std::path::{Path, PathBuf};

use aiscout_signatures::AppRef;

use super::fs::{Fs, MAX_FILE_BYTES};
use super::{Found, Home, Kind, Sink};

pub(crate) fn scan(fs: &mut Fs, sink: &mut Sink<'_>, homes: &[Home], registry_exports: &[PathBuf]) {
    macos(fs, sink, homes);
    linux(fs, sink, homes);
    windows(fs, sink, homes, registry_exports);
}

// ---- macOS ------------------------------------------------------------------------------

fn macos(fs: &mut Fs, sink: &mut Sink<'_>, homes: &[Home]) {
    let mut folders: Vec<(Option<&str>, PathBuf)> =
        vec![(None, fs.host("/Applications")), (None, fs.host("/Applications/Utilities"))];
    for h in homes {
        folders.push((Some(h.user.as_str()), h.dir.join("Applications")));
    }
    for (user, folder) in folders {
        for (name, path) in fs.list(&folder) {
            if name.ends_with(".app") {
                bundle(fs, sink, user, &path);
            }
        }
    }
}

/// Reads one `.app` bundle's `Contents/Info.plist` (XML or binary).
fn bundle(fs: &mut Fs, sink: &mut Sink<'_>, user: Option<&str>, app: &Path) {
    let plist_path = app.join("Contents/Info.plist");
    let Some(bytes) = fs.read(&plist_path, MAX_FILE_BYTES) else { return };
    let value = match plist::Value::from_reader(std::io::Cursor::new(bytes)) {
        Ok(v) => v,
        Err(e) => {
            fs.warn(&plist_path, format!("malformed Info.plist: {e}"));
            return;
        }
    };
    let Some(dict) = value.as_dictionary() else {
        fs.warn(&plist_path, "Info.plist is not a dictionary");
        return;
    };
    let text = |key: &str| dict.get(key).and_then(plist::Value::as_string).map(str::to_owned);
    let Some(bundle_id) = text("CFBundleIdentifier") else {
        fs.warn(&plist_path, "Info.plist has no CFBundleIdentifier");
        return;
    };
    let version = text("CFBundleShortVersionString").or_else(|| text("CFBundleVersion"));
    let matched = sink.index().app(AppRef::MacosBundleId(&bundle_id));
    let found = Found::new(bundle_id).user(user).path(fs.display(app)).version(version);
    sink.add(Kind::App, matched, found);
}

// ---- Linux ------------------------------------------------------------------------------

fn linux(fs: &mut Fs, sink: &mut Sink<'_>, homes: &[Home]) {
    let mut desktop_dirs: Vec<(Option<&str>, PathBuf)> = [
        "/usr/share/applications",
        "/usr/local/share/applications",
        "/var/lib/flatpak/exports/share/applications",
        "/var/lib/snapd/desktop/applications",
    ]
    .iter()
    .map(|d| (None, fs.host(d)))
    .collect();
    for h in homes {
        desktop_dirs.push((Some(h.user.as_str()), h.dir.join(".local/share/applications")));
    }
    for (user, dir) in desktop_dirs {
        for (name, path) in fs.list(&dir) {
            if name.ends_with(".desktop") {
                desktop_entry(fs, sink, user, &name, &path);
            }
        }
    }
    dpkg(fs, sink);
    rpm(fs, sink);
    snaps(fs, sink);
    flatpaks(fs, sink, homes);
}

/// A `.desktop` file: matched by its id (the file name), with `Version` unknown; the file must
/// parse as a desktop entry (a `[Desktop Entry]` group) to count.
fn desktop_entry(fs: &mut Fs, sink: &mut Sink<'_>, user: Option<&str>, id: &str, path: &Path) {
    let matched = sink.index().app(AppRef::LinuxDesktopId(id));
    if matched.is_none() {
        return; // Not ours: no need to read it.
    }
    let Some(text) = fs.read_text(path) else { return };
    if !text.lines().any(|l| l.trim() == "[Desktop Entry]") {
        fs.warn(path, "not a desktop entry (no [Desktop Entry] group)");
        return;
    }
    let found = Found::new(id).user(user).path(fs.display(path));
    sink.add(Kind::App, matched, found);
}

/// The dpkg status database: stanzas of `Key: value` lines separated by blank lines.
fn dpkg(fs: &mut Fs, sink: &mut Sink<'_>) {
    let path = fs.host("/var/lib/dpkg/status");
    let Some(text) =
        fs.read(&path, 256 * 1024 * 1024).map(|b| String::from_utf8_lossy(&b).into_owned())
    else {
        return;
    };
    for stanza in text.split("\n\n") {
        let field = |key: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
                .map(str::trim)
        };
        let (Some(package), Some(status)) = (field("Package"), field("Status")) else { continue };
        if !status.ends_with("installed") || status.contains("not-installed") {
            continue;
        }
        let matched = sink.index().app(AppRef::LinuxPackage(package));
        let version = field("Version").map(str::to_owned);
        let found =
            Found::new(package).path("/var/lib/dpkg/status".into()).version(version).detail("dpkg");
        sink.add(Kind::App, matched, found);
    }
}

/// The rpm database (Fedora, RHEL, SUSE), read with `rpm --root` when the root has one and
/// the `rpm` tool is installed: the database format (Berkeley DB, NDB or SQLite) depends on the
/// distribution, and only rpm reads all of them. `--root` keeps rpm inside the scanned root.
fn rpm(fs: &mut Fs, sink: &mut Sink<'_>) {
    let db = ["/usr/lib/sysimage/rpm", "/var/lib/rpm"].into_iter().find(|d| {
        let dir = fs.host(d);
        fs.list(&dir).iter().any(|(name, _)| name.starts_with("rpmdb") || name == "Packages")
    });
    let Some(db) = db else { return };
    let root = fs.host("/");
    // `--dbpath` is explicit because distributions move the default (Debian's rpm points it
    // at the home folder); rpm reads it relative to `--root`.
    let out = std::process::Command::new("rpm")
        .arg("--root")
        .arg(&root)
        .args(["--dbpath", db, "-qa", "--qf", "%{NAME}\\t%{VERSION}-%{RELEASE}\\n"])
        .output();
    let text = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => {
            let why = String::from_utf8_lossy(&o.stderr).trim().to_owned();
            fs.warn(&fs.host(db), format!("rpm could not read the database: {why}"));
            return;
        }
        Err(e) => {
            fs.warn(&fs.host(db), format!("an rpm database is present but rpm cannot run: {e}"));
            return;
        }
    };
    for line in text.lines() {
        let Some((name, version)) = line.split_once('\t') else { continue };
        let matched = sink.index().app(AppRef::LinuxPackage(name));
        let found =
            Found::new(name).path(db.to_owned()).version(Some(version.to_owned())).detail("rpm");
        sink.add(Kind::App, matched, found);
    }
}

/// Snap packages: one folder per snap under `/snap`, the revision `current` links to.
fn snaps(fs: &mut Fs, sink: &mut Sink<'_>) {
    let dir = fs.host("/snap");
    for (name, path) in fs.list(&dir) {
        if name == "bin" || !fs.is_dir(&path) {
            continue;
        }
        let matched = sink.index().app(AppRef::LinuxPackage(&name));
        let found = Found::new(name.clone()).path(fs.display(&path)).detail("snap");
        sink.add(Kind::App, matched, found);
    }
}

/// Flatpak apps, system-wide and per user: one folder per application id.
fn flatpaks(fs: &mut Fs, sink: &mut Sink<'_>, homes: &[Home]) {
    let mut dirs: Vec<(Option<&str>, PathBuf)> = vec![(None, fs.host("/var/lib/flatpak/app"))];
    for h in homes {
        dirs.push((Some(h.user.as_str()), h.dir.join(".local/share/flatpak/app")));
    }
    for (user, dir) in dirs {
        for (name, path) in fs.list(&dir) {
            let matched = sink.index().app(AppRef::LinuxPackage(&name));
            let found =
                Found::new(name.clone()).user(user).path(fs.display(&path)).detail("flatpak");
            sink.add(Kind::App, matched, found);
        }
    }
}

// ---- Windows ----------------------------------------------------------------------------

/// One program from an Uninstall registry key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UninstallEntry {
    /// The key path the values came from.
    pub key: String,
    /// `DisplayName`.
    pub display_name: String,
    /// `Publisher`.
    pub publisher: Option<String>,
    /// `DisplayVersion`.
    pub version: Option<String>,
    /// `InstallLocation`.
    pub install_location: Option<String>,
}

fn windows(fs: &mut Fs, sink: &mut Sink<'_>, homes: &[Home], registry_exports: &[PathBuf]) {
    let mut entries = Vec::new();
    for export in registry_exports {
        let Some(bytes) = fs.read_named(export, 64 * 1024 * 1024) else { continue };
        entries.extend(parse_reg_export(&decode_reg_text(&bytes)));
    }
    entries.extend(read_registry());
    for e in entries {
        let app =
            AppRef::WindowsApp { display_name: &e.display_name, publisher: e.publisher.as_deref() };
        let matched = sink.index().app(app);
        // A per-user key (HKEY_USERS\<sid> or HKEY_CURRENT_USER) says whose install it is only
        // by SID; the path shows the hive.
        let found =
            Found::new(e.display_name.clone()).path(e.key.clone()).version(e.version.clone());
        let found = match &e.publisher {
            Some(p) => found.detail(p.clone()),
            None => found,
        };
        sink.add(Kind::App, matched, found);
    }
    // Per-user installs that skip the registry: %LOCALAPPDATA%\Programs\<App>\<App>.exe.
    for h in homes {
        let programs = h.dir.join("AppData/Local/Programs");
        for (_, app_dir) in fs.list(&programs) {
            for (name, path) in fs.list(&app_dir) {
                if name.to_ascii_lowercase().ends_with(".exe") && fs.is_file(&path) {
                    let matched = sink.index().process(&name);
                    let found =
                        Found::new(name.clone()).user(Some(&h.user)).path(fs.display(&path));
                    sink.add(Kind::App, matched, found);
                }
            }
        }
    }
}

/// `regedit` writes exports as UTF-16LE with a byte-order mark; `reg export` can write ANSI.
pub fn decode_reg_text(bytes: &[u8]) -> String {
    match bytes {
        [0xff, 0xfe, rest @ ..] => {
            let units: Vec<u16> = rest
                .chunks_exact(2)
                .map(|c| {
                    u16::from_le_bytes([
                        c.first().copied().unwrap_or(0),
                        c.get(1).copied().unwrap_or(0),
                    ])
                })
                .collect();
            String::from_utf16_lossy(&units)
        }
        [0xef, 0xbb, 0xbf, rest @ ..] => String::from_utf8_lossy(rest).into_owned(),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Parses a `.reg` export and returns the entries of keys under an `...\Uninstall\<name>` path
/// that have a `DisplayName`. Only string values (`"Name"="value"`) are read; line
/// continuations and escapes (`\\`, `\"`) are handled.
pub fn parse_reg_export(text: &str) -> Vec<UninstallEntry> {
    let mut out = Vec::new();
    let mut current: Option<UninstallEntry> = None;
    let mut logical = String::new();
    let flush = |cur: &mut Option<UninstallEntry>, out: &mut Vec<UninstallEntry>| {
        if let Some(e) = cur.take()
            && !e.display_name.is_empty()
        {
            out.push(e);
        }
    };
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        if let Some(cont) = line.strip_suffix('\\') {
            logical.push_str(cont.trim_start());
            continue;
        }
        logical.push_str(line.trim_start());
        let l = std::mem::take(&mut logical);
        if let Some(key) = l.strip_prefix('[').and_then(|k| k.strip_suffix(']')) {
            flush(&mut current, &mut out);
            let parent = key.rsplit_once('\\').map(|(p, _)| p).unwrap_or("");
            if parent.to_ascii_lowercase().ends_with("\\uninstall") {
                current = Some(UninstallEntry { key: key.to_owned(), ..UninstallEntry::default() });
            }
            continue;
        }
        let Some(entry) = current.as_mut() else { continue };
        let Some((name, value)) = parse_string_value(&l) else { continue };
        match name.as_str() {
            "DisplayName" => entry.display_name = value,
            "Publisher" => entry.publisher = Some(value),
            "DisplayVersion" => entry.version = Some(value),
            "InstallLocation" => entry.install_location = Some(value),
            _ => {}
        }
    }
    flush(&mut current, &mut out);
    out
}

/// `"Name"="value"` with `\\` and `\"` escapes; `None` for other value types.
fn parse_string_value(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('"')?;
    let (name, rest) = read_quoted(rest)?;
    let rest = rest.strip_prefix('=')?.strip_prefix('"')?;
    let (value, _) = read_quoted(rest)?;
    Some((name, value))
}

fn read_quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '"' => return Some((out, s.get(i.saturating_add(1)..)?)),
            c => out.push(c),
        }
    }
    None
}

/// The Uninstall keys of the live registry (HKLM, HKLM WOW6432Node, and each loaded user
/// hive). Off Windows there is no registry: the exports above are the only source.
#[cfg(not(windows))]
fn read_registry() -> Vec<UninstallEntry> {
    Vec::new()
}

#[cfg(windows)]
fn read_registry() -> Vec<UninstallEntry> {
    use winreg::RegKey;
    use winreg::enums::{HKEY_LOCAL_MACHINE, HKEY_USERS, KEY_READ};
    const UNINSTALL: &str = r"Software\Microsoft\Windows\CurrentVersion\Uninstall";
    const UNINSTALL_WOW: &str = r"Software\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall";
    let mut roots: Vec<(String, RegKey)> = Vec::new();
    let hklm = RegKey::predef(HKEY_LOCAL_MACHINE);
    for path in [UNINSTALL, UNINSTALL_WOW] {
        if let Ok(k) = hklm.open_subkey_with_flags(path, KEY_READ) {
            roots.push((format!(r"HKEY_LOCAL_MACHINE\{path}"), k));
        }
    }
    let users = RegKey::predef(HKEY_USERS);
    for sid in users.enum_keys().flatten() {
        if let Ok(k) = users.open_subkey_with_flags(format!(r"{sid}\{UNINSTALL}"), KEY_READ) {
            roots.push((format!(r"HKEY_USERS\{sid}\{UNINSTALL}"), k));
        }
    }
    let mut out = Vec::new();
    for (base, key) in roots {
        for name in key.enum_keys().flatten() {
            let Ok(sub) = key.open_subkey_with_flags(&name, KEY_READ) else { continue };
            let get = |v: &str| sub.get_value::<String, _>(v).ok();
            if let Some(display_name) = get("DisplayName") {
                out.push(UninstallEntry {
                    key: format!(r"{base}\{name}"),
                    display_name,
                    publisher: get("Publisher"),
                    version: get("DisplayVersion"),
                    install_location: get("InstallLocation"),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reg_export_string_values_and_continuations() {
        let text = "Windows Registry Editor Version 5.00\r\n\r\n\
[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\{A}]\r\n\
\"DisplayName\"=\"Ollama version 0.5\"\r\n\
\"Publisher\"=\"Ollama\"\r\n\
\"DisplayVersion\"=\"0.5.7\"\r\n\
\"InstallLocation\"=\"C:\\\\Users\\\\a\\\\AppData\\\\Local\\\\Programs\\\\Ollama\\\\\"\r\n\
\"EstimatedSize\"=dword:00001000\r\n\
\"Comments\"=hex(2):43,00,\\\r\n  3a,00\r\n\
\r\n\
[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\{NoName}]\r\n\
\"Publisher\"=\"Nobody\"\r\n\
[HKEY_LOCAL_MACHINE\\SOFTWARE\\Classes\\foo]\r\n\
\"DisplayName\"=\"not an uninstall key\"\r\n";
        let e = parse_reg_export(text);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].display_name, "Ollama version 0.5");
        assert_eq!(e[0].publisher.as_deref(), Some("Ollama"));
        assert_eq!(e[0].version.as_deref(), Some("0.5.7"));
        assert_eq!(
            e[0].install_location.as_deref(),
            Some("C:\\Users\\a\\AppData\\Local\\Programs\\Ollama\\")
        );
    }

    #[test]
    fn utf16_exports_decode() {
        let mut bytes = vec![0xff, 0xfe];
        for u in "[x]\r\n".encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(decode_reg_text(&bytes), "[x]\r\n");
    }
}
