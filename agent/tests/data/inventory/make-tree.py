#!/usr/bin/env python3
"""Writes the endpoint-inventory fixture tree: one root laid out like a macOS, a Linux and a
Windows machine at once (three users), with real file formats (XML and binary Info.plist,
Chromium manifests with localised names, Firefox extensions.json, VS Code extensions.json and
package.json, a JetBrains plugin jar, MCP configs, an Ollama manifest, a dpkg status file, a
regedit UTF-16 export), decoys that must not match, and malformed files that must only warn.

Deterministic: run `python3 make-tree.py` here to regenerate `tree/` and `uninstall.reg`.
Hostile cases that git cannot hold well (symlink loops, a 2 GB sparse file) are made by the
tests themselves in a temporary copy.
"""
import json, os, plistlib, shutil, zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "tree")


def write(rel, data, mode="w"):
    path = os.path.join(ROOT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(data)


def jwrite(rel, obj):
    write(rel, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def app(rel, bundle_id, name, version, binary=False):
    info = {"CFBundleIdentifier": bundle_id, "CFBundleName": name,
            "CFBundleShortVersionString": version, "CFBundlePackageType": "APPL"}
    fmt = plistlib.FMT_BINARY if binary else plistlib.FMT_XML
    write(rel + "/Contents/Info.plist", plistlib.dumps(info, fmt=fmt, sort_keys=True), "wb")


shutil.rmtree(ROOT, ignore_errors=True)

# ---- macOS: user alice ----------------------------------------------------------------------
app("Applications/ChatGPT.app", "com.openai.chat", "ChatGPT", "1.2025.140")
app("Applications/Utilities/Claude.app", "com.anthropic.claudefordesktop", "Claude", "0.9.3", binary=True)
app("Users/alice/Applications/Cursor.app", "com.todesktop.230313mzl4w4u92", "Cursor", "1.4.2", binary=True)
app("Applications/GPT Helper.app", "com.example.gpthelper", "GPT Helper", "2.0")  # decoy: GPT in the name only
write("Applications/Broken.app/Contents/Info.plist", "<?xml version='1.0'?><plist><dict><key>CFBundle")  # malformed
chrome = "Users/alice/Library/Application Support/Google/Chrome"
claude_ext = "fcoeoabgfenejglbffodgkkbkcdhcgfn"
jwrite(f"{chrome}/Default/Extensions/{claude_ext}/1.0.2_0/manifest.json",
       {"manifest_version": 3, "name": "__MSG_appName__", "default_locale": "en_US", "version": "1.0.2"})
jwrite(f"{chrome}/Default/Extensions/{claude_ext}/1.0.2_0/_locales/en_US/messages.json",
       {"APPNAME": {"message": "Claude"}})
jwrite(f"{chrome}/Profile 2/Extensions/aaaabbbbccccddddeeeeffffgggghhhh/3.1_0/manifest.json",
       {"manifest_version": 3, "name": "ChatGPT Assistant Pro", "version": "3.1"})  # decoy: unknown id
write(f"{chrome}/Profile 3/Extensions/{claude_ext}/0.9_0/manifest.json", "{ not json")  # malformed
jwrite("Users/alice/Library/Application Support/Claude/claude_desktop_config.json", {
    "mcpServers": {
        "github": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"],
                   "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_fixture_secret_never_printed"}},
        "remote-docs": {"url": "https://docs-user:pw@mcp.internal.example/sse?key=fixture_secret"},
    }})
jwrite("Users/alice/.vscode/extensions/extensions.json", [
    {"identifier": {"id": "github.copilot"}, "version": "1.250.0"},
    {"identifier": {"id": "someone.chatgpt-clone"}, "version": "0.0.1"},  # decoy
])
jwrite("Users/alice/.vscode/extensions/github.copilot-1.250.0/package.json",
       {"publisher": "GitHub", "name": "copilot", "version": "1.250.0", "displayName": "GitHub Copilot"})
jwrite("Users/alice/.cursor/extensions/anthropic.claude-code-2.0.1/package.json",
       {"publisher": "anthropic", "name": "claude-code", "version": "2.0.1"})
jwrite("Users/alice/.cursor/mcp.json", {"mcpServers": {"filesystem": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/Users/alice/src"]}}})

# ---- Linux: user bob ------------------------------------------------------------------------
write("usr/share/applications/cursor.desktop", "[Desktop Entry]\nName=Cursor\nExec=/usr/share/cursor/cursor %F\nType=Application\n")
write("usr/share/applications/gedit.desktop", "[Desktop Entry]\nName=Text Editor\nExec=gedit\n")  # not AI
write("home/bob/.local/share/applications/cursor.desktop", "this is not a desktop entry\n")  # malformed
write("var/lib/dpkg/status", "Package: aitool-fixture\nStatus: install ok installed\nVersion: 1.2.3\n\n"
      "Package: coreutils\nStatus: install ok installed\nVersion: 9.1-1\n\n"
      "Package: aitool-removed\nStatus: deinstall ok config-files\nVersion: 0.1\n")
write("usr/local/bin/ollama", "#!/bin/sh\necho fixture\n")
write("home/bob/.local/bin/claude", "#!/bin/sh\necho fixture\n")
write("home/bob/.local/bin/grep-gpt", "#!/bin/sh\n")  # decoy
jwrite("home/bob/.ollama/models/manifests/registry.ollama.ai/library/llama3.2/3b", {
    "schemaVersion": 2, "config": {"size": 561},
    "layers": [{"size": 2019377376}, {"size": 7711}, {"size": 1481}]})
os.makedirs(os.path.join(ROOT, "home/bob/.lmstudio/models/lmstudio-community/Qwen3-8B-GGUF"), exist_ok=True)
write("home/bob/.lmstudio/models/lmstudio-community/Qwen3-8B-GGUF/Qwen3-8B-Q4_K_M.gguf", "GGUF" + "\0" * 60)
firefox = "home/bob/.mozilla/firefox"
jwrite(f"{firefox}/abcd1234.default-release/extensions.json", {"schemaVersion": 36, "addons": [
    {"id": "ai-helper@fixture.example", "version": "4.2", "defaultLocale": {"name": "AI Helper"}, "active": True},
    {"id": "uBlock0@raymondhill.net", "version": "1.60", "defaultLocale": {"name": "uBlock Origin"}}]})
write(f"{firefox}/efgh5678.work/extensions.json", "[[[")  # malformed
jb = "home/bob/.local/share/JetBrains/IntelliJIdea2025.2"
os.makedirs(os.path.join(ROOT, jb, "github-copilot-intellij/lib"), exist_ok=True)
with zipfile.ZipFile(os.path.join(ROOT, jb, "github-copilot-intellij/lib/github-copilot-intellij.jar"), "w") as z:
    info = zipfile.ZipInfo("META-INF/plugin.xml", date_time=(2026, 1, 1, 0, 0, 0))
    z.writestr(info, "<idea-plugin>\n  <id>com.github.copilot</id>\n  <name>GitHub Copilot</name>\n  <version>1.5.59</version>\n</idea-plugin>\n")
write(f"{jb}/some-theme/META-INF/plugin.xml", "<idea-plugin><id>com.example.theme</id><version>1</version></idea-plugin>")
jwrite("home/bob/.claude.json", {"projects": {"/home/bob/src/app": {"mcpServers": {"postgres": {"command": "uvx", "args": ["mcp-server-postgres"], "env": {"PGPASSWORD": "fixture_secret"}}}}}})

# ---- Windows: user carol --------------------------------------------------------------------
write("Users/carol/AppData/Local/Programs/cursor/Cursor.exe", "MZ fixture")
write("Users/carol/AppData/Local/Programs/notepad-plus/notepad++.exe", "MZ fixture")
edge = "Users/carol/AppData/Local/Microsoft/Edge/User Data"
jwrite(f"{edge}/Default/Extensions/{claude_ext}/1.0.0_0/manifest.json", {"name": "Claude", "version": "1.0.0", "manifest_version": 3})
write("Users/carol/AppData/Roaming/Code/User/settings.json", """{
  // VS Code settings are JSON with comments and trailing commas
  "editor.fontSize": 13,
  "mcp": {
    "servers": {
      "playwright": { "command": "npx", "args": ["@playwright/mcp@latest"], },
    },
  },
}
""")

reg = """Windows Registry Editor Version 5.00

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\{44E83376-CE68-45EB-8FC1-393500EB558C}_is1]
"DisplayName"="Ollama version 0.12.3"
"DisplayVersion"="0.12.3"
"Publisher"="Ollama"
"InstallLocation"="C:\\\\Users\\\\carol\\\\AppData\\\\Local\\\\Programs\\\\Ollama\\\\"

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\7-Zip]
"DisplayName"="7-Zip 24.08 (x64)"
"Publisher"="Igor Pavlov"

[HKEY_USERS\\S-1-5-21-1000\\Software\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\ChatGPT]
"DisplayName"="ChatGPT"
"Publisher"="Fake Publisher Ltd"
"""
with open(os.path.join(HERE, "uninstall.reg"), "wb") as f:
    f.write(b"\xff\xfe" + reg.replace("\n", "\r\n").encode("utf-16-le"))
print("wrote", ROOT)
