//! Browser extensions (Chrome, Chromium, Edge, Brave, Firefox: every profile of every user) and
//! IDE extensions (VS Code, Insiders, VSCodium, Cursor, Windsurf; JetBrains plugins).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use aiscout_signatures::ExtensionRef;

use super::fs::{Fs, MAX_FILE_BYTES};
use super::{Found, Home, Kind, Sink};

pub(crate) fn scan(fs: &mut Fs, sink: &mut Sink<'_>, homes: &[Home]) {
    for h in homes {
        chromium_family(fs, sink, h);
        firefox(fs, sink, h);
        vscode_family(fs, sink, h);
        jetbrains(fs, sink, h);
    }
}

// ---- Chromium family ----------------------------------------------------------------------

/// (browser, user-data folder relative to the home) for Linux, macOS and Windows layouts.
const CHROMIUM_DIRS: &[(&str, &str)] = &[
    ("chrome", ".config/google-chrome"),
    ("chromium", ".config/chromium"),
    ("edge", ".config/microsoft-edge"),
    ("brave", ".config/BraveSoftware/Brave-Browser"),
    ("chrome", "Library/Application Support/Google/Chrome"),
    ("chromium", "Library/Application Support/Chromium"),
    ("edge", "Library/Application Support/Microsoft Edge"),
    ("brave", "Library/Application Support/BraveSoftware/Brave-Browser"),
    ("chrome", "AppData/Local/Google/Chrome/User Data"),
    ("chromium", "AppData/Local/Chromium/User Data"),
    ("edge", "AppData/Local/Microsoft/Edge/User Data"),
    ("brave", "AppData/Local/BraveSoftware/Brave-Browser/User Data"),
];

fn chromium_family(fs: &mut Fs, sink: &mut Sink<'_>, home: &Home) {
    for (browser, rel) in CHROMIUM_DIRS {
        let user_data = home.dir.join(rel);
        for (profile, profile_dir) in fs.list(&user_data) {
            let ext_dir = profile_dir.join("Extensions");
            for (id, id_dir) in fs.list(&ext_dir) {
                // Ask the catalog first: an unknown id is not read any further.
                if sink.index().extension(ExtensionRef::Chrome(&id)).is_none() {
                    continue;
                }
                // One folder per installed version; the highest name is the current one.
                let Some((version, version_dir)) = fs.list(&id_dir).into_iter().next_back() else {
                    continue;
                };
                let manifest = version_dir.join("manifest.json");
                let Some(json) = fs.read_json(&manifest) else { continue };
                let name = chromium_name(fs, &version_dir, &json);
                let version = json["version"].as_str().map(str::to_owned).or(Some(version));
                let matched = sink.index().extension(ExtensionRef::Chrome(&id));
                let detail = match name {
                    Some(n) => format!("{browser} {profile}: {n}"),
                    None => format!("{browser} {profile}"),
                };
                let found = Found::new(id.clone())
                    .user(Some(&home.user))
                    .path(fs.display(&id_dir))
                    .version(version)
                    .detail(detail);
                sink.add(Kind::Extension, matched, found);
            }
        }
    }
}

/// The extension's display name, resolving `__MSG_key__` from `_locales/<default>/messages.json`
/// (keys compare case-insensitively, as Chrome does).
fn chromium_name(fs: &mut Fs, dir: &Path, manifest: &serde_json::Value) -> Option<String> {
    let name = manifest["name"].as_str()?;
    let Some(key) = name.strip_prefix("__MSG_").and_then(|k| k.strip_suffix("__")) else {
        return Some(name.to_owned());
    };
    let locale = manifest["default_locale"].as_str().unwrap_or("en");
    let messages = fs.read_json(&dir.join("_locales").join(locale).join("messages.json"))?;
    let obj = messages.as_object()?;
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .and_then(|(_, v)| v["message"].as_str())
        .map(str::to_owned)
}

// ---- Firefox ------------------------------------------------------------------------------

const FIREFOX_DIRS: &[&str] = &[
    ".mozilla/firefox",
    "Library/Application Support/Firefox/Profiles",
    "AppData/Roaming/Mozilla/Firefox/Profiles",
];

fn firefox(fs: &mut Fs, sink: &mut Sink<'_>, home: &Home) {
    for rel in FIREFOX_DIRS {
        for (profile, profile_dir) in fs.list(&home.dir.join(rel)) {
            let path = profile_dir.join("extensions.json");
            if !fs.is_file(&path) {
                continue;
            }
            let Some(json) = fs.read_json(&path) else { continue };
            let Some(addons) = json["addons"].as_array() else {
                fs.warn(&path, "extensions.json has no addons list");
                continue;
            };
            for addon in addons {
                let Some(id) = addon["id"].as_str() else { continue };
                let matched = sink.index().extension(ExtensionRef::Firefox(id));
                let name = addon["defaultLocale"]["name"].as_str().unwrap_or_default();
                let found = Found::new(id)
                    .user(Some(&home.user))
                    .path(fs.display(&path))
                    .version(addon["version"].as_str().map(str::to_owned))
                    .detail(format!("firefox {profile}: {name}"));
                sink.add(Kind::Extension, matched, found);
            }
        }
    }
}

// ---- VS Code family -----------------------------------------------------------------------

/// (editor, extensions folder relative to the home); the same on every OS.
const VSCODE_DIRS: &[(&str, &str)] = &[
    ("vscode", ".vscode/extensions"),
    ("vscode-insiders", ".vscode-insiders/extensions"),
    ("vscodium", ".vscode-oss/extensions"),
    ("cursor", ".cursor/extensions"),
    ("windsurf", ".windsurf/extensions"),
];

fn vscode_family(fs: &mut Fs, sink: &mut Sink<'_>, home: &Home) {
    for (editor, rel) in VSCODE_DIRS {
        let dir = home.dir.join(rel);
        if !fs.is_dir(&dir) {
            continue;
        }
        let mut seen: Vec<String> = Vec::new();
        // extensions.json lists what the editor considers installed.
        let index_path = dir.join("extensions.json");
        if fs.is_file(&index_path)
            && let Some(json) = fs.read_json(&index_path)
        {
            {
                for ext in json.as_array().into_iter().flatten() {
                    let Some(id) = ext["identifier"]["id"].as_str() else { continue };
                    let version = ext["version"].as_str().map(str::to_owned);
                    seen.push(id.to_ascii_lowercase());
                    let matched = sink.index().extension(ExtensionRef::Vscode(id));
                    let found = Found::new(id)
                        .user(Some(&home.user))
                        .path(fs.display(&index_path))
                        .version(version)
                        .detail(*editor);
                    sink.add(Kind::Extension, matched, found);
                }
            }
        }
        // Each extension folder's package.json, for installs extensions.json does not list.
        for (name, ext_dir) in fs.list(&dir) {
            if !fs.is_dir(&ext_dir) || name.starts_with('.') {
                continue;
            }
            let pkg_path = ext_dir.join("package.json");
            if !fs.is_file(&pkg_path) {
                continue;
            }
            let Some(pkg) = fs.read_json(&pkg_path) else { continue };
            let (Some(publisher), Some(ext_name)) =
                (pkg["publisher"].as_str(), pkg["name"].as_str())
            else {
                fs.warn(&pkg_path, "package.json has no publisher or name");
                continue;
            };
            let id = format!("{publisher}.{ext_name}");
            if seen.contains(&id.to_ascii_lowercase()) {
                continue;
            }
            let matched = sink.index().extension(ExtensionRef::Vscode(&id));
            let found = Found::new(id)
                .user(Some(&home.user))
                .path(fs.display(&ext_dir))
                .version(pkg["version"].as_str().map(str::to_owned))
                .detail(*editor);
            sink.add(Kind::Extension, matched, found);
        }
    }
}

// ---- JetBrains ----------------------------------------------------------------------------

/// Folders holding one folder per IDE (`IntelliJIdea2025.2`, `PyCharm2025.1`, ...).
const JETBRAINS_DIRS: &[&str] = &[
    ".local/share/JetBrains",
    "Library/Application Support/JetBrains",
    "AppData/Roaming/JetBrains",
];

/// The biggest plugin jar opened when looking for `META-INF/plugin.xml`.
const MAX_JAR_BYTES: u64 = 256 * 1024 * 1024;

fn jetbrains(fs: &mut Fs, sink: &mut Sink<'_>, home: &Home) {
    for rel in JETBRAINS_DIRS {
        for (ide, ide_dir) in fs.list(&home.dir.join(rel)) {
            // Linux keeps plugins directly in the IDE folder; macOS and Windows in `plugins/`.
            let plugins_dir =
                if fs.is_dir(&ide_dir.join("plugins")) { ide_dir.join("plugins") } else { ide_dir };
            for (_, plugin_dir) in fs.list(&plugins_dir) {
                if !fs.is_dir(&plugin_dir) {
                    continue;
                }
                let Some((id, version)) = jetbrains_plugin_id(fs, &plugin_dir) else { continue };
                let matched = sink.index().extension(ExtensionRef::Jetbrains(&id));
                let found = Found::new(id)
                    .user(Some(&home.user))
                    .path(fs.display(&plugin_dir))
                    .version(version)
                    .detail(format!("jetbrains {ide}"));
                sink.add(Kind::Extension, matched, found);
            }
        }
    }
}

/// The plugin id and version from `META-INF/plugin.xml`, either unpacked in the plugin folder or
/// inside one of its `lib/*.jar` files.
fn jetbrains_plugin_id(fs: &mut Fs, plugin_dir: &Path) -> Option<(String, Option<String>)> {
    let unpacked = plugin_dir.join("META-INF/plugin.xml");
    if fs.is_file(&unpacked) {
        let xml = fs.read_text(&unpacked)?;
        return plugin_xml_id(&xml);
    }
    let jars: Vec<PathBuf> = fs
        .list(&plugin_dir.join("lib"))
        .into_iter()
        .filter(|(n, _)| n.ends_with(".jar"))
        .map(|(_, p)| p)
        .collect();
    for jar in jars {
        if let Some(found) = plugin_xml_in_jar(fs, &jar) {
            return Some(found);
        }
    }
    None
}

fn plugin_xml_in_jar(fs: &mut Fs, jar: &Path) -> Option<(String, Option<String>)> {
    let file = fs.open(jar, MAX_JAR_BYTES)?;
    let mut archive = match zip::ZipArchive::new(file) {
        Ok(a) => a,
        Err(e) => {
            fs.warn(jar, format!("unreadable jar: {e}"));
            return None;
        }
    };
    let entry = archive.by_name("META-INF/plugin.xml").ok()?;
    if entry.size() > MAX_FILE_BYTES {
        fs.warn(jar, "plugin.xml larger than the file limit");
        return None;
    }
    let mut xml = String::new();
    entry.take(MAX_FILE_BYTES).read_to_string(&mut xml).ok()?;
    plugin_xml_id(&xml)
}

/// The text of the first `<id>` (falling back to `<name>`) and `<version>` elements of a
/// plugin descriptor. A full XML parser buys nothing for two top-level elements.
fn plugin_xml_id(xml: &str) -> Option<(String, Option<String>)> {
    let element = |tag: &str| {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        let start = xml.find(&open)?.checked_add(open.len())?;
        let len = xml.get(start..)?.find(&close)?;
        xml.get(start..start.checked_add(len)?)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let id = element("id").or_else(|| element("name"))?;
    Some((id, element("version")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_xml_fields() {
        let xml = "<idea-plugin>\n <id>com.github.copilot</id>\n <name>GitHub Copilot</name>\n <version>1.5.0</version></idea-plugin>";
        assert_eq!(plugin_xml_id(xml), Some(("com.github.copilot".into(), Some("1.5.0".into()))));
        assert_eq!(
            plugin_xml_id("<idea-plugin><name>X</name></idea-plugin>"),
            Some(("X".into(), None))
        );
        assert_eq!(plugin_xml_id("<idea-plugin><id></id>"), None);
        assert_eq!(plugin_xml_id("<id>unterminated"), None);
    }
}
