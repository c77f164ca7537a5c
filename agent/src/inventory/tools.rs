//! Command-line AI tools on PATH and in user bin folders, their package-manager installs (see
//! [`super::packages`]), and the MCP servers that AI clients
//! are configured to start.
//!
//! MCP configurations hold secrets (API tokens in `env`, headers, arguments). Only the server's
//! name, the command or URL it runs (arguments that carry a secret replaced by `<redacted>`, URLs
//! without userinfo or query) and its risk flags are kept. `env` and headers are read only to
//! decide whether a secret is written there in plain text: the flag leaves, never the value,
//! a hash or a length.
//!
//! Risk flags ([`McpFlag`], issue 17, after the `risk_flags` column of Fleet's `ai_tools`
//! table, vendored from karmine05/agentic-detector `internal/mcp/risk.go`):
//! - `plaintext_secret`: an `env` or `headers` entry of a secret-named key holds a literal value
//!   (not a `${...}` or `$NAME` reference), or an argument carries one (`--token X`,
//!   `--api-key=X`, `-H "Authorization: Bearer X"`, `KEY_TOKEN=X`, a known token prefix), or
//!   the URL has a password or a secret-named query parameter.
//! - `shell_exec`: the command is a shell (after unwrapping `cmd /c X` and `sh -c "X"`), or a
//!   known command-execution server (`KNOWN_SERVERS`).
//! - `file_write`: a known filesystem server (`KNOWN_SERVERS`).
//! - `unpinned_package`: `npx`, `bunx`, `pnpx`, `uvx` or `pipx run` fetches a package without an
//!   exact version.
//! - `remote_url`: `url`, `serverUrl` or `httpUrl`, or `type` `sse` / `http` /
//!   `streamable-http`.

use std::path::PathBuf;

use aiscout_wire::McpFlag;

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
                let flags = risk_flags(server);
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
                    flags,
                });
            }
        }
    }
}

/// A dotted key path (`mcp.servers`) into a JSON value.
fn lookup<'a>(v: &'a serde_json::Value, dotted: &str) -> Option<&'a serde_json::Value> {
    dotted.split('.').try_fold(v, |cur, k| cur.get(k))
}

/// The keys a server's URL can be in.
const URL_KEYS: [&str; 3] = ["url", "serverUrl", "httpUrl"];

/// What the server runs: `command args...` (arguments that carry a secret redacted) or its URL
/// (without userinfo or query). `env` and headers are never part of it.
fn launch_line(server: &serde_json::Value) -> Option<String> {
    if let Some(url) = URL_KEYS.iter().find_map(|k| server[*k].as_str()) {
        return Some(strip_url_secrets(url));
    }
    let command = server["command"].as_str()?;
    let (args, _) = redact_args(&string_args(server));
    let mut line = command.to_owned();
    for arg in args {
        line.push(' ');
        line.push_str(&arg);
    }
    Some(line)
}

fn string_args(server: &serde_json::Value) -> Vec<String> {
    server["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// Substrings of a key or flag name that conventionally holds a secret (the list of
/// karmine05/agentic-detector `internal/mcp/risk.go` `secretKeyMarkers`, without `session`,
/// plus `authorization` and `auth`).
const SECRET_MARKERS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "passphrase",
    "apikey",
    "api_key",
    "api-key",
    "access_key",
    "access-key",
    "private_key",
    "private-key",
    "credential",
    "bearer",
    "auth",
];

fn secret_name(name: &str) -> bool {
    let low = name.trim_start_matches('-').to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|m| low.contains(m))
}

/// Prefixes of well-known token formats (OpenAI and Anthropic `sk-`, GitHub `ghp_`, `gho_`,
/// `ghs_`, `github_pat_`, Slack `xox?-`, GitLab `glpat-`, AWS `AKIA`, Google `AIza`).
const TOKEN_PREFIXES: &[&str] = &[
    "sk-",
    "ghp_",
    "gho_",
    "ghs_",
    "github_pat_",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "glpat-",
    "AKIA",
    "AIza",
];

/// True for a value that names a secret kept elsewhere (`${input:token}`, `${env:X}`,
/// `Bearer ${TOKEN}`, `$TOKEN`) rather than holding one.
fn is_reference(value: &str) -> bool {
    let v = value.trim();
    v.contains("${")
        || v.strip_prefix('$').is_some_and(|n| {
            !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

fn literal(value: &str) -> bool {
    !value.trim().is_empty() && !is_reference(value)
}

const REDACTED: &str = "<redacted>";

/// The arguments with every secret replaced by [`REDACTED`] and URLs stripped, and whether a
/// literal secret was among them.
fn redact_args(args: &[String]) -> (Vec<String>, bool) {
    let mut out = Vec::with_capacity(args.len());
    let mut found = false;
    let mut secret_next = false;
    let mut header_next = false;
    for arg in args {
        if secret_next {
            secret_next = false;
            found |= literal(arg);
            out.push(REDACTED.to_owned());
            continue;
        }
        if header_next {
            header_next = false;
            if let Some((name, value)) = arg.split_once(':')
                && secret_name(name)
            {
                found |= literal(value);
                out.push(format!("{name}: {REDACTED}"));
                continue;
            }
        }
        if arg.contains("://") {
            let stripped = strip_url_secrets(arg);
            found |= url_has_secret(arg);
            out.push(stripped);
            continue;
        }
        if let Some((name, value)) = arg.split_once('=')
            && secret_name(name)
        {
            found |= literal(value);
            out.push(format!("{name}={REDACTED}"));
            continue;
        }
        let low = arg.to_ascii_lowercase();
        if TOKEN_PREFIXES.iter().any(|p| arg.starts_with(p) && arg.len() > p.len() + 8)
            || low.starts_with("bearer ")
        {
            found = true;
            out.push(REDACTED.to_owned());
            continue;
        }
        if arg == "-H" || arg == "--header" || arg == "--headers" {
            header_next = true;
        } else if arg.starts_with('-') && secret_name(arg) {
            secret_next = true;
        }
        out.push(arg.clone());
    }
    (out, found)
}

/// True when a URL carries a password in its userinfo or a secret-named query parameter with
/// a value.
fn url_has_secret(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let password = authority
        .rsplit_once('@')
        .is_some_and(|(user, _)| user.split_once(':').is_some_and(|(_, pw)| literal(pw)));
    let query = rest.split_once('?').map_or("", |(_, q)| q.split('#').next().unwrap_or(""));
    password
        || query
            .split('&')
            .any(|pair| pair.split_once('=').is_some_and(|(k, v)| secret_name(k) && literal(v)))
}

/// A literal secret in a JSON object of names to values (`env`, `headers`).
fn object_has_secret(v: &serde_json::Value) -> bool {
    v.as_object()
        .is_some_and(|o| o.iter().any(|(k, v)| secret_name(k) && v.as_str().is_some_and(literal)))
}

/// Servers known to run commands or write files, by package or image name. Sources:
/// `@modelcontextprotocol/server-filesystem` and its image `mcp/filesystem`
/// (modelcontextprotocol/servers `src/filesystem/README.md`: tools `write_file`, `edit_file`,
/// `move_file`); `@wonderwhy-er/desktop-commander` (wonderwhy-er/DesktopCommanderMCP
/// `README.md`: "Execute terminal commands", `start_process`, `write_file`).
const KNOWN_SERVERS: &[(&str, &[McpFlag])] = &[
    ("@modelcontextprotocol/server-filesystem", &[McpFlag::FileWrite]),
    ("mcp/filesystem", &[McpFlag::FileWrite]),
    ("@wonderwhy-er/desktop-commander", &[McpFlag::ShellExec, McpFlag::FileWrite]),
];

/// Shells, by executable name without a Windows suffix.
const SHELLS: &[&str] = &["sh", "bash", "zsh", "fish", "dash", "ksh", "cmd", "powershell", "pwsh"];

/// Package runners that fetch what they run at launch.
const RUNNERS: &[&str] = &["npx", "bunx", "pnpx", "uvx"];

/// The executable's name without folders or a Windows suffix, lowercased.
fn program(command: &str) -> String {
    let base = command.rsplit(['/', '\\']).next().unwrap_or(command);
    strip_windows_suffix(base).to_ascii_lowercase()
}

/// A package or image name without its version or tag (`pkg@1.2`, `@scope/pkg@1`, `img:tag`,
/// `pkg==1.0`).
fn package_name(spec: &str) -> &str {
    let spec = spec.split("==").next().unwrap_or(spec);
    let spec = match spec.get(1..).and_then(|rest| rest.rfind('@')) {
        Some(at) => spec.get(..=at).unwrap_or(spec),
        None => spec,
    };
    spec.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')).map_or(spec, |(name, _)| name)
}

/// True when a package spec names an exact version: `pkg@1.2.3`, `@scope/pkg@1.2.3`,
/// `pkg==1.2.3` (not `latest`, `next` or `*`).
fn pinned(spec: &str) -> bool {
    if let Some((_, v)) = spec.split_once("==") {
        return !v.is_empty();
    }
    let Some(at) = spec.get(1..).and_then(|rest| rest.rfind('@')) else { return false };
    let version = spec.get(at + 2..).unwrap_or("").to_ascii_lowercase();
    !version.is_empty() && !["latest", "next", "*"].contains(&version.as_str())
}

/// The command and arguments that actually run: `cmd /c X ...` and `sh -c "X ..."` unwrapped
/// (once; a wrapped line is split at whitespace).
fn effective(command: &str, args: &[String]) -> (String, Vec<String>) {
    let prog = program(command);
    let wrapped = match (prog.as_str(), args.first().map(String::as_str)) {
        ("cmd", Some(c)) if c.eq_ignore_ascii_case("/c") => {
            Some(args.get(1..).unwrap_or(&[]).to_vec())
        }
        ("sh" | "bash" | "zsh" | "dash", Some("-c")) => {
            args.get(1).map(|line| line.split_whitespace().map(str::to_owned).collect())
        }
        _ => None,
    };
    match wrapped {
        Some(mut inner) if !inner.is_empty() => {
            let cmd = inner.remove(0);
            (program(&cmd), inner)
        }
        _ => (prog, args.to_vec()),
    }
}

/// The package a runner fetches: `--package X` / `-p X` / `--from X`, else the first argument
/// that is not an option.
fn fetched_package(prog: &str, args: &[String]) -> Option<Option<String>> {
    let args = match prog {
        p if RUNNERS.contains(&p) => args,
        "pipx" if args.first().is_some_and(|a| a == "run") => args.get(1..).unwrap_or(&[]),
        _ => return None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if ["--package", "-p", "--from"].contains(&a.as_str()) {
            return Some(it.next().cloned());
        }
        if let Some(v) = a.strip_prefix("--package=").or_else(|| a.strip_prefix("--from=")) {
            return Some(Some(v.to_owned()));
        }
        if !a.starts_with('-') {
            return Some(Some(a.clone()));
        }
    }
    Some(None)
}

/// The risk flags of one configured server, sorted.
fn risk_flags(server: &serde_json::Value) -> Vec<McpFlag> {
    let mut flags = Vec::new();
    let url = URL_KEYS.iter().find_map(|k| server[*k].as_str());
    let kind = server["type"].as_str().unwrap_or("").to_ascii_lowercase();
    if url.is_some()
        || ["sse", "http", "streamable-http", "streamablehttp"].contains(&kind.as_str())
    {
        flags.push(McpFlag::RemoteUrl);
    }
    let args = string_args(server);
    let (_, secret_arg) = redact_args(&args);
    if secret_arg
        || url.is_some_and(url_has_secret)
        || object_has_secret(&server["env"])
        || object_has_secret(&server["headers"])
        || object_has_secret(&server["requestInit"]["headers"])
    {
        flags.push(McpFlag::PlaintextSecret);
    }
    if let Some(command) = server["command"].as_str() {
        let (prog, args) = effective(command, &args);
        if SHELLS.contains(&prog.as_str()) {
            flags.push(McpFlag::ShellExec);
        }
        for arg in std::iter::once(&prog).chain(&args) {
            let name = package_name(arg);
            for (known, adds) in KNOWN_SERVERS {
                if name == *known {
                    flags.extend_from_slice(adds);
                }
            }
        }
        if let Some(pkg) = fetched_package(&prog, &args)
            && !pkg.as_deref().is_some_and(pinned)
        {
            flags.push(McpFlag::UnpinnedPackage);
        }
    }
    flags.sort();
    flags.dedup();
    flags
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
