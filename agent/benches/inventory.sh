#!/usr/bin/env bash
# Inventory scan benchmark: a full `aiscout-agent scan --root` of a generated tree with 500 apps,
# 300 browser extensions and 200 IDE extensions across 5 users, beside a plain `find` over the
# same tree (the floor: it only lists, it parses nothing). Prints wall time and peak RSS.
#
# Usage: bash agent/benches/inventory.sh [WORKDIR]   (needs python3 and /usr/bin/time)
set -euo pipefail
cd "$(dirname "$0")/../.."
work="${1:-$(mktemp -d)}"
tree="$work/tree"
cargo build --release -q -p aiscout-agent
bin="${CARGO_TARGET_DIR:-target}/release/aiscout-agent"

python3 - "$tree" <<'PY'
import json, os, plistlib, random, sys
root = sys.argv[1]
random.seed(7)
def w(rel, data, mode="w"):
    p = os.path.join(root, rel); os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, mode) as f: f.write(data)
users = [f"user{i}" for i in range(5)]
ai_bundles = ["com.openai.chat", "com.anthropic.claudefordesktop", "com.todesktop.230313mzl4w4u92"]
for i in range(500):  # 100 in /Applications, 80 per user
    bid = ai_bundles[i % 3] if i % 25 == 0 else f"com.vendor{i}.app{i}"
    base = "Applications" if i < 100 else f"Users/{users[i % 5]}/Applications"
    info = {"CFBundleIdentifier": bid, "CFBundleName": f"App {i}", "CFBundleShortVersionString": "1.0"}
    w(f"{base}/App{i}.app/Contents/Info.plist", plistlib.dumps(info, fmt=plistlib.FMT_BINARY if i % 2 else plistlib.FMT_XML), "wb")
    w(f"{base}/App{i}.app/Contents/MacOS/App{i}", "binary")
for i in range(300):
    ext_id = "fcoeoabgfenejglbffodgkkbkcdhcgfn" if i % 30 == 0 else "".join(random.choice("abcdefghijklmnop") for _ in range(32))
    u = users[i % 5]
    d = f"Users/{u}/Library/Application Support/Google/Chrome/Profile {i % 3}/Extensions/{ext_id}/1.{i}_0"
    w(f"{d}/manifest.json", json.dumps({"name": f"Ext {i}", "version": f"1.{i}", "manifest_version": 3}))
    w(f"{d}/background.js", "// code\n" * 20)
vs = {u: [] for u in users}
for i in range(200):
    u = users[i % 5]
    pub, name = ("GitHub", "copilot") if i % 20 == 0 else (f"pub{i}", f"ext{i}")
    d = f"Users/{u}/.vscode/extensions/{pub.lower()}.{name}-1.0.{i}"
    w(f"{d}/package.json", json.dumps({"publisher": pub, "name": name, "version": f"1.0.{i}"}))
    w(f"{d}/out/extension.js", "// code\n" * 20)
    vs[u].append({"identifier": {"id": f"{pub}.{name}"}, "version": f"1.0.{i}"})
for u in users:
    w(f"Users/{u}/.vscode/extensions/extensions.json", json.dumps(vs[u]))
PY

files=$(find "$tree" -type f | wc -l)
echo "tree: $files files under $tree"
measure() {
  local label="$1"; shift
  /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" > "$work/out.txt"
  read -r secs kb < "$work/time.txt"
  printf '%-34s wall %6ss  peak RSS %7s KB  output lines %s\n' "$label" "$secs" "$kb" "$(wc -l < "$work/out.txt")"
}
# Warm the page cache once so both read from memory.
find "$tree" > /dev/null
for run in 1 2 3; do
  measure "find (floor), run $run" find "$tree"
  measure "aiscout-agent scan --json, run $run" "$bin" scan --root "$tree" --json
done
