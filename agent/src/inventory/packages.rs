//! Packages installed through a language or system package manager: global npm packages,
//! Python distributions in site-packages (system, user, pipx and uv tool environments),
//! Homebrew formulae and casks, and crates installed with `cargo install`.
//!
//! Each candidate becomes a package id, `ecosystem:name` as the catalog writes it
//! (`npm:@anthropic-ai/claude-code`, `pypi:aider_chat`), and is asked of the index; only a match
//! becomes a finding (kind [`Kind::Cli`]: these are the command-line tools' installs). Names are
//! read from folder names and from the two small cargo manifests only, through `Fs`, so every
//! read is bounded and a FIFO or a huge file planted in their place is a warning, not a hang.

use std::path::{Path, PathBuf};

use super::fs::{Fs, MAX_FILE_BYTES};
use super::{Found, Home, Kind, Sink};

/// System-wide global `node_modules` folders (npm's default prefixes on Linux, macOS Intel and
/// Apple silicon Homebrew).
const NPM_SYSTEM: &[&str] =
    &["/usr/local/lib/node_modules", "/usr/lib/node_modules", "/opt/homebrew/lib/node_modules"];
/// Per-user global `node_modules` folders: a user prefix (`npm config set prefix ~/.npm-global`
/// or `~/.local`), Windows' `%APPDATA%\npm`, and bun's global install folder.
const NPM_USER: &[&str] = &[
    ".npm-global/lib/node_modules",
    ".local/lib/node_modules",
    "AppData/Roaming/npm/node_modules",
    ".bun/install/global/node_modules",
];
/// Folders holding one Node.js install per version, each with its own global prefix.
const NODE_VERSIONS: &[(&str, &str)] = &[
    (".nvm/versions/node", "lib/node_modules"),
    (".local/share/fnm/node-versions", "installation/lib/node_modules"),
];

/// System library folders holding `python3.*` folders.
const PY_SYSTEM_LIBS: &[&str] =
    &["/usr/lib", "/usr/lib64", "/usr/local/lib", "/opt/homebrew/lib", "/usr/local/lib64"];
/// Per-user library folders holding `python3.*` folders.
const PY_USER_LIBS: &[&str] = &[".local/lib"];
/// Per-user folders holding one version folder each (`3.12`, `Python312`) with site-packages.
const PY_USER_VERSIONED: &[(&str, &str)] =
    &[("Library/Python", "lib/python/site-packages"), ("AppData/Roaming/Python", "site-packages")];
/// Folders of tool environments, one virtual environment per tool: pipx (old and new homes)
/// and uv.
const PY_TOOL_VENVS: &[&str] =
    &[".local/pipx/venvs", ".local/share/pipx/venvs", ".local/share/uv/tools", "pipx/venvs"];

/// Homebrew's Cellar (formulae) and Caskroom (casks) folders.
const BREW_SYSTEM: &[&str] = &[
    "/opt/homebrew/Cellar",
    "/opt/homebrew/Caskroom",
    "/usr/local/Cellar",
    "/usr/local/Caskroom",
    "/home/linuxbrew/.linuxbrew/Cellar",
];
const BREW_USER: &[&str] = &[".linuxbrew/Cellar"];

pub(crate) fn scan(fs: &mut Fs, sink: &mut Sink<'_>, homes: &[Home]) {
    npm(fs, sink, homes);
    python(fs, sink, homes);
    brew(fs, sink, homes);
    for h in homes {
        cargo(fs, sink, h);
    }
}

fn npm(fs: &mut Fs, sink: &mut Sink<'_>, homes: &[Home]) {
    let mut dirs: Vec<(Option<&str>, PathBuf)> =
        NPM_SYSTEM.iter().map(|d| (None, fs.host(d))).collect();
    for h in homes {
        for rel in NPM_USER {
            dirs.push((Some(&h.user), h.dir.join(rel)));
        }
        for (versions, modules) in NODE_VERSIONS {
            for (_, version) in fs.list(&h.dir.join(versions)) {
                dirs.push((Some(&h.user), version.join(modules)));
            }
        }
    }
    for (user, dir) in dirs {
        for (name, path) in fs.list(&dir) {
            if let Some(scope) = name.strip_prefix('@') {
                if scope.is_empty() {
                    continue;
                }
                for (inner, inner_path) in fs.list(&path) {
                    npm_package(fs, sink, user, &format!("{name}/{inner}"), &inner_path);
                }
            } else if !name.starts_with('.') {
                npm_package(fs, sink, user, &name, &path);
            }
        }
    }
}

fn npm_package(fs: &mut Fs, sink: &mut Sink<'_>, user: Option<&str>, name: &str, path: &Path) {
    let id = format!("npm:{name}");
    let matched = sink.index().package(&id);
    if matched.is_none() || !fs.is_dir(path) {
        return;
    }
    let version = fs
        .read_json(&path.join("package.json"))
        .and_then(|j| j["version"].as_str().map(str::to_owned));
    let found = Found::new(id).user(user).path(fs.display(path)).version(version);
    sink.add(Kind::Cli, matched, found.detail("npm package"));
}

fn python(fs: &mut Fs, sink: &mut Sink<'_>, homes: &[Home]) {
    let mut sites: Vec<(Option<&str>, PathBuf)> = Vec::new();
    for lib in PY_SYSTEM_LIBS {
        let lib = fs.host(lib);
        sites.extend(versioned_libs(fs, None, &lib));
    }
    for h in homes {
        let user = Some(h.user.as_str());
        for lib in PY_USER_LIBS {
            sites.extend(versioned_libs(fs, user, &h.dir.join(lib)));
        }
        for (base, site) in PY_USER_VERSIONED {
            for (_, version) in fs.list(&h.dir.join(base)) {
                sites.push((user, version.join(site)));
            }
        }
        for venvs in PY_TOOL_VENVS {
            for (_, venv) in fs.list(&h.dir.join(venvs)) {
                sites.extend(versioned_libs(fs, user, &venv.join("lib")));
                sites.push((user, venv.join("Lib/site-packages")));
            }
        }
    }
    for (user, site) in sites {
        for (name, path) in fs.list(&site) {
            let Some((dist, version)) = distribution(&name) else { continue };
            let id = format!("pypi:{dist}");
            let matched = sink.index().package(&id);
            if matched.is_none() {
                continue;
            }
            let found = Found::new(id).user(user).path(fs.display(&path)).version(version);
            sink.add(Kind::Cli, matched, found.detail("Python package"));
        }
    }
}

/// The site-packages and dist-packages folders of every `python3*` folder in `lib`.
fn versioned_libs<'u>(
    fs: &mut Fs,
    user: Option<&'u str>,
    lib: &Path,
) -> Vec<(Option<&'u str>, PathBuf)> {
    let mut out = Vec::new();
    for (name, dir) in fs.list(lib) {
        if name.starts_with("python3") {
            out.push((user, dir.join("site-packages")));
            out.push((user, dir.join("dist-packages")));
        }
    }
    out
}

/// The distribution name and version of a `NAME-VERSION.dist-info` or
/// `NAME-VERSION[-pyX.Y].egg-info` (or `NAME.egg-info`) folder name.
fn distribution(entry: &str) -> Option<(&str, Option<String>)> {
    let stem = entry.strip_suffix(".dist-info").or_else(|| entry.strip_suffix(".egg-info"))?;
    let (name, rest) = match stem.split_once('-') {
        Some((name, rest)) => (name, Some(rest)),
        None => (stem, None),
    };
    if name.is_empty() {
        return None;
    }
    let version = rest.map(|r| r.split('-').next().unwrap_or(r).to_owned());
    Some((name, version))
}

fn brew(fs: &mut Fs, sink: &mut Sink<'_>, homes: &[Home]) {
    let mut dirs: Vec<(Option<&str>, PathBuf)> =
        BREW_SYSTEM.iter().map(|d| (None, fs.host(d))).collect();
    for h in homes {
        for rel in BREW_USER {
            dirs.push((Some(&h.user), h.dir.join(rel)));
        }
    }
    for (user, dir) in dirs {
        for (name, path) in fs.list(&dir) {
            let id = format!("brew:{name}");
            let matched = sink.index().package(&id);
            if matched.is_none() || !fs.is_dir(&path) {
                continue;
            }
            // One folder per installed version; the last by name is reported.
            let version = fs.list(&path).into_iter().map(|(v, _)| v).rfind(|v| !v.starts_with('.'));
            let found = Found::new(id).user(user).path(fs.display(&path)).version(version);
            sink.add(Kind::Cli, matched, found.detail("Homebrew package"));
        }
    }
}

/// `cargo install` records what it installed in `~/.cargo/.crates2.json` (current cargo) and
/// `~/.cargo/.crates.toml` (older, still written); the first is read when present.
fn cargo(fs: &mut Fs, sink: &mut Sink<'_>, home: &Home) {
    let json_path = home.dir.join(".cargo/.crates2.json");
    let toml_path = home.dir.join(".cargo/.crates.toml");
    let (path, keys) = if fs.is_file(&json_path) {
        let Some(json) = fs.read_json(&json_path) else { return };
        let keys: Vec<String> =
            json["installs"].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        (json_path, keys)
    } else if fs.is_file(&toml_path) {
        let Some(bytes) = fs.read(&toml_path, MAX_FILE_BYTES) else { return };
        (toml_path, crates_toml_keys(&String::from_utf8_lossy(&bytes)))
    } else {
        return;
    };
    for key in keys {
        // "NAME VERSION (SOURCE)"
        let mut words = key.split_whitespace();
        let Some(name) = words.next() else { continue };
        let version = words.next().map(str::to_owned);
        let id = format!("cargo:{name}");
        let matched = sink.index().package(&id);
        let found = Found::new(id).user(Some(&home.user)).path(fs.display(&path)).version(version);
        sink.add(Kind::Cli, matched, found.detail("cargo package"));
    }
}

/// The quoted keys of `.crates.toml`'s `[v1]` table, one per line
/// (`"ripgrep 14.1.0 (registry+https://...)" = ["rg"]`); other lines are ignored.
fn crates_toml_keys(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.trim_start().strip_prefix('"')?.split_once('"').map(|(k, _)| k))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_folder_names() {
        let v = |s: &str| Some(s.to_owned());
        assert_eq!(distribution("aider_chat-0.86.1.dist-info"), Some(("aider_chat", v("0.86.1"))));
        assert_eq!(distribution("llm-0.19-py3.12.egg-info"), Some(("llm", v("0.19"))));
        assert_eq!(distribution("llm.egg-info"), Some(("llm", None)));
        assert_eq!(distribution("aider_chat"), None);
        assert_eq!(distribution("-1.0.dist-info"), None);
    }

    #[test]
    fn crates_toml_lines() {
        let t = "[v1]\n\"ripgrep 14.1.0 (registry+https://github.com/rust-lang/crates.io-index)\" = [\"rg\"]\n# \"not\"\nbad \"x\n\"unterminated\n";
        assert_eq!(
            crates_toml_keys(t),
            vec!["ripgrep 14.1.0 (registry+https://github.com/rust-lang/crates.io-index)"]
        );
    }
}
