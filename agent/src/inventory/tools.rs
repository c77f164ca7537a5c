//! Command-line AI tools on PATH and in user bin folders, their package-manager installs (see
//! [`super::packages`]), and the MCP servers that AI clients
//! are configured to start.
//!
//! MCP configurations hold secrets (API tokens in `env`, headers). Only the server's name and
//! the command or URL it runs are ever kept; `env`, `headers` and everything else are never read
//! into a finding.

use std::path::PathBuf;

use super::fs::{Fs, strip_jsonc};
use super::{Found, Home, Kind, Sink};

pub(crate) fn scan(fs: &mut Fs, sink: &mut Sink<'_>, homes: &[Home], live: bool) {
    cli(fs, sink, homes, live);
    super::packages::scan(fs, sink, homes);
    for h in homes {
        mcp(fs, sink, h);
    }
}

/// System-wide bin folders, then per-user ones, then (live scans only) this process's `$PATH`.
const SYSTEM_BINS: &[&str] =
    &["/usr/local/bin", "/usr/bin", "/bin", "/opt/homebrew/bin", "/snap/bin", "/usr/local/sbin"];
const USER_BINS: &[&str] = &[
    ".local/bin",
    "bin",
    ".cargo/bin",
    ".npm-global/bin",
    ".bun/bin",
    ".volta/bin",
    ".deno/bin",
    ".claude/local",
    ".ollama/bin",
    "go/bin",
    "AppData/Local/Programs/Ollama",
    "AppData/Roaming/npm",
];

fn cli(fs: &mut Fs, sink: &mut Sink<'_>, homes: &[Home], live: bool) {
    let mut dirs: Vec<(Option<String>, PathBuf)> =
        SYSTEM_BINS.iter().map(|d| (None, fs.host(d))).collect();
    for h in homes {
        for rel in USER_BINS {
            dirs.push((Some(h.user.clone()), h.dir.join(rel)));
        }
    }
    if live && let Some(path) = std::env::var_os("PATH") {
        {
            for dir in std::env::split_paths(&path) {
                if !dirs.iter().any(|(_, d)| *d == dir) {
                    dirs.push((None, dir));
                }
            }
        }
    }
    for (user, dir) in dirs {
        for (name, path) in fs.list(&dir) {
            // A command is what the shell would run: the name without a Windows suffix.
            let command = strip_windows_suffix(&name);
            let matched = sink.index().cli(command);
            if matched.is_none() || !fs.is_file(&path) {
                continue;
            }
            let found = Found::new(command).user(user.as_deref()).path(fs.display(&path));
            sink.add(Kind::Cli, matched, found);
        }
    }
}

fn strip_windows_suffix(name: &str) -> &str {
    for suffix in [".exe", ".cmd", ".ps1", ".bat"] {
        if name.len() > suffix.len() && name.to_ascii_lowercase().ends_with(suffix) {
            return name.get(..name.len() - suffix.len()).unwrap_or(name);
        }
    }
    name
}

/// (client product, config file relative to the home, JSON key holding the servers).
const MCP_CONFIGS: &[(&str, &str, &str)] = &[
    (
        "anthropic.claude",
        "Library/Application Support/Claude/claude_desktop_config.json",
        "mcpServers",
    ),
    ("anthropic.claude", "AppData/Roaming/Claude/claude_desktop_config.json", "mcpServers"),
    ("anthropic.claude", ".config/Claude/claude_desktop_config.json", "mcpServers"),
    ("anthropic.claude-code", ".claude.json", "mcpServers"),
    ("anthropic.claude-code", ".claude/settings.json", "mcpServers"),
    ("anysphere.cursor", ".cursor/mcp.json", "mcpServers"),
    ("cognition.windsurf", ".codeium/windsurf/mcp_config.json", "mcpServers"),
    ("github.copilot", ".config/Code/User/mcp.json", "servers"),
    ("github.copilot", "Library/Application Support/Code/User/mcp.json", "servers"),
    ("github.copilot", "AppData/Roaming/Code/User/mcp.json", "servers"),
    ("github.copilot", ".config/Code/User/settings.json", "mcp.servers"),
    ("github.copilot", "Library/Application Support/Code/User/settings.json", "mcp.servers"),
    ("github.copilot", "AppData/Roaming/Code/User/settings.json", "mcp.servers"),
];

fn mcp(fs: &mut Fs, sink: &mut Sink<'_>, home: &Home) {
    for (client, rel, key) in MCP_CONFIGS {
        let path = home.dir.join(rel);
        if !fs.is_file(&path) {
            continue;
        }
        let Some(text) = fs.read_text(&path) else { continue };
        let json: serde_json::Value = match serde_json::from_str(&strip_jsonc(&text)) {
            Ok(v) => v,
            Err(e) => {
                fs.warn(&path, format!("malformed JSON: {e}"));
                continue;
            }
        };
        let mut tables = vec![lookup(&json, key)];
        // Claude Code also keeps servers per project.
        if let Some(projects) = json["projects"].as_object() {
            tables.extend(projects.values().map(|p| lookup(p, key)));
        }
        for servers in tables.into_iter().flatten().filter_map(serde_json::Value::as_object) {
            for (name, server) in servers {
                let Some(launch) = launch_line(server) else { continue };
                // The server belongs to its client's product, which must be in the catalog.
                let product = sink.index().catalog().product(client).map(|p| p.id.clone());
                let Some(product) = product else { continue };
                sink.findings.push(super::Finding {
                    kind: Kind::McpServer,
                    product,
                    value: format!("{name}: {launch}"),
                    user: Some(home.user.clone()),
                    path: Some(fs.display(&path)),
                    version: None,
                    detail: Some(name.clone()),
                });
            }
        }
    }
}

/// A dotted key path (`mcp.servers`) into a JSON value.
fn lookup<'a>(v: &'a serde_json::Value, dotted: &str) -> Option<&'a serde_json::Value> {
    dotted.split('.').try_fold(v, |cur, k| cur.get(k))
}

/// What the server runs: `command args...` or its URL. `env`, headers and other keys (where
/// tokens live) are never read.
fn launch_line(server: &serde_json::Value) -> Option<String> {
    if let Some(url) = server["url"].as_str().or_else(|| server["serverUrl"].as_str()) {
        return Some(strip_url_secrets(url));
    }
    let command = server["command"].as_str()?;
    let mut line = command.to_owned();
    for arg in server["args"].as_array().into_iter().flatten().filter_map(serde_json::Value::as_str)
    {
        line.push(' ');
        line.push_str(arg);
    }
    Some(line)
}

/// Drops userinfo and the query string from a URL: both carry tokens in practice.
fn strip_url_secrets(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    match no_query.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{rest}")
        }
        None => no_query.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_lines_never_carry_secrets() {
        let s = serde_json::json!({"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"], "env": {"GITHUB_TOKEN": "ghp_secret"}});
        assert_eq!(launch_line(&s).as_deref(), Some("npx -y @modelcontextprotocol/server-github"));
        let u = serde_json::json!({"url": "https://user:pw@mcp.example.com/sse?token=abc", "headers": {"Authorization": "Bearer x"}});
        assert_eq!(launch_line(&u).as_deref(), Some("https://mcp.example.com/sse"));
        assert_eq!(launch_line(&serde_json::json!({"env": {}})), None);
    }

    #[test]
    fn windows_suffixes() {
        assert_eq!(strip_windows_suffix("ollama.EXE"), "ollama");
        assert_eq!(strip_windows_suffix("claude.cmd"), "claude");
        assert_eq!(strip_windows_suffix("aider"), "aider");
        assert_eq!(strip_windows_suffix(".exe"), ".exe");
    }
}
