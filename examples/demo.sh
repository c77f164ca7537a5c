#!/usr/bin/env bash
# The whole product on one machine, end to end:
#   1. a collector on SQLite (HTTPS on 127.0.0.1, self-signed certificate pinned by the agent);
#   2. the agent on this machine for a few seconds: live capture (when run as root) and the
#      inventory scan of installed AI software;
#   3. the agent replaying the bundled captures of real clients (curl, openssl, dig, Chromium
#      over TLS and QUIC) from examples/captures/;
#   4. the sample expense, gateway and people files imported from examples/;
#   5. the inventory and procurement's reconciliation printed as tables;
#   6. the console left serving the demo data: it prints the URL and an admin sign-in token
#      (and opens a browser when this machine has a display). Ctrl-C stops it.
#
# Usage: bash examples/demo.sh [WORKDIR]     (WORKDIR is kept for a look around afterwards)
# Environment: DEMO_PORT (default 8443), DEMO_EXIT=1 to stop after the reports.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
log() { printf '\n== %s\n' "$*"; }
port="${DEMO_PORT:-8443}"

log "installing missing system packages"
bash .ci/install-deps

log "building the binaries (debug)"
cargo build -q -p aiscout-agent -p aiscout-collector -p aiscout-signatures --features aiscout-signatures/sign
bin="${CARGO_TARGET_DIR:-target}/debug"

# New installs store people as keyed pseudonyms (issue 21); every command below uses the key
# the collector creates in its data folder.
export AISCOUT_PRIVACY=pseudonymous
log "starting the collector in $work/collector"
mkdir -p "$work/collector" "$work/agent"
printf 'demo-enroll-secret-not-for-production-use\n' > "$work/collector/enroll.secret"
"$bin/aiscout-collector" serve --listen "127.0.0.1:$port" --data-dir "$work/collector" \
  --enroll-secret-file "$work/collector/enroll.secret" > "$work/collector.out" 2> "$work/collector.log" &
collector=$!
trap 'kill $collector 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  grep -q '^listening on ' "$work/collector.out" 2>/dev/null && break
  sleep 0.1
done
grep -q '^listening on ' "$work/collector.out" || { cat "$work/collector.log"; echo "collector did not start" >&2; exit 1; }
url=$(sed -n 's/^listening on //p' "$work/collector.out")
pin=$(sed -n 's/^certificate .* sha256 //p' "$work/collector.out")
echo "collector at $url, certificate sha256 $pin"

log "configuring the agent (the pin and enroll secret an MDM profile would deliver)"
cp "$work/collector/enroll.secret" "$work/agent/enroll.secret"
[ -f "$work/agent/catalog.pub" ] || "$bin/aiscout-catalog" keygen --out "$work/agent/catalog" > /dev/null
cat > "$work/agent/agent.toml" <<TOML
collector_url = "$url"
pin_sha256 = "$pin"
enroll_secret_file = "$work/agent/enroll.secret"
catalog_key_file = "$work/agent/catalog.pub"
state_dir = "$work/agent/state"
upload_interval_secs = 1
TOML
"$bin/aiscout-agent" check-config --config "$work/agent/agent.toml"

run_agent() {
  "$bin/aiscout-agent" run --config "$work/agent/agent.toml" "$@" 2>> "$work/agent.log" &
  local pid=$!
  sleep 6
  kill -TERM "$pid"
  wait "$pid"
}
if [ "$(id -u)" -eq 0 ]; then
  log "running the agent on this machine for 6 s: live capture on every interface and the inventory scan"
  run_agent
else
  log "running the agent on this machine for 6 s: inventory scan only (live capture needs root)"
  run_agent --no-capture
fi

log "replaying the bundled captures of real clients (examples/captures/)"
args=()
for p in examples/captures/*.pcap; do args+=(--pcap "$p"); done
run_agent --no-scan "${args[@]}"

log "importing the sample people, expense and gateway files"
db=(--data-dir "$work/collector")
"$bin/aiscout-collector" import people "${db[@]}" examples/people.csv
"$bin/aiscout-collector" import expenses "${db[@]}" examples/expenses/*.csv
"$bin/aiscout-collector" import gateway "${db[@]}" examples/gateway/*

log "the AI inventory (every source joined)"
"$bin/aiscout-collector" report inventory "${db[@]}" --as-of 2026-11-20
log "procurement's reconciliation"
"$bin/aiscout-collector" report reconcile "${db[@]}" --as-of 2026-11-20

log "review decisions, as a security reviewer would make them in the console"
admin=$("$bin/aiscout-collector" token create "${db[@]}" --role admin --name demo-admin)
"$bin/aiscout-collector" token create "${db[@]}" --role security --name demo-security > "$work/security.token"
"$bin/aiscout-collector" token create "${db[@]}" --role procurement --name demo-procurement > "$work/procurement.token"
review() {
  curl -sS --fail-with-body -k -X PUT -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
    --data "{\"status\":\"$2\",\"note\":\"$3\"}" "$url/api/v1/products/$1/review" > /dev/null
}
review openai.chatgpt sanctioned "Enterprise agreement signed; SSO enforced"
review anthropic.api sanctioned "Through the LiteLLM gateway only"
review deepseek.chat blocked "Data residency: not approved"
review anysphere.cursor under_review "Security questionnaire sent"
echo "set 4 review decisions"

echo
echo "Done. Everything is in $work (agent log: $work/agent.log; CSV: add --format csv)."
printf '%s\n' "$admin" > "$work/admin.token"
chmod 600 "$work"/*.token
if [ "${DEMO_EXIT:-0}" = "1" ]; then
  exit 0
fi
cat <<EOF

  The console is serving the demo data:

      $url/

  Sign in with this admin token (also in $work/admin.token; security and procurement
  tokens are beside it):

      $admin

  The certificate is self-signed: your browser will ask you to accept it once.
  Ctrl-C stops the collector.
EOF
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && command -v xdg-open > /dev/null; then
  xdg-open "$url/login" > /dev/null 2>&1 || true
fi
wait "$collector"
