#!/bin/sh
# Builds the aiscout-agent .rpm with rpmbuild from a prebuilt binary; same layout as the .deb.
#
# Usage: installer/linux/build-rpm.sh [AGENT_BINARY]
#   AGENT_BINARY  defaults to target/release/aiscout-agent (built when absent).
# Environment: OUT_DIR (default target/installer), VERSION (default: the workspace version).
# Exits 0 with a message, building nothing, when rpmbuild is not installed (Debian: apt-get
# install rpm), unless REQUIRE_RPMBUILD=1. Prints the path of the .rpm on its last line.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}

die() { echo "build-rpm.sh: $*" >&2; exit 1; }

if ! command -v rpmbuild >/dev/null 2>&1; then
    [ "${REQUIRE_RPMBUILD:-0}" = 1 ] && die "rpmbuild not found (apt-get install rpm, or dnf install rpm-build)"
    echo "build-rpm.sh: SKIPPED: rpmbuild not found (apt-get install rpm, or dnf install rpm-build)" >&2
    exit 0
fi

binary=${1:-}
if [ -z "$binary" ]; then
    binary=$target_dir/release/aiscout-agent
    if [ ! -x "$binary" ]; then
        echo "build-rpm.sh: building the agent: cargo build --release -p aiscout-agent" >&2
        (cd "$root" && cargo build --release --locked -p aiscout-agent) || die "cargo build failed"
    fi
fi
[ -x "$binary" ] || die "agent binary $binary does not exist or is not executable"

version=${VERSION:-$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml")}
[ -n "$version" ] || die "cannot read the workspace version; set VERSION"
# RPM versions may not contain '-' or '~' in older rpm; keep it simple.
rpm_version=$(printf '%s' "$version" | tr -- '-~' '__')
out_dir=${OUT_DIR:-$target_dir/installer}
mkdir -p "$out_dir"

top=$(mktemp -d)
trap 'rm -rf "$top"' EXIT INT TERM
src=$top/src
mkdir -p "$src"
cp "$binary" "$src/aiscout-agent"
# Packages ship stripped binaries; a debug build carries over 100 MB of symbols otherwise.
if command -v strip >/dev/null 2>&1; then
    strip --strip-debug "$src/aiscout-agent"
fi
cp "$here/agent.toml" "$here/aiscout-agent.service" "$here/../README.md" "$src/"

rpmbuild -bb "$here/aiscout-agent.spec" \
    --define "_topdir $top" \
    --define "aiscout_version $rpm_version" \
    --define "aiscout_src $src" \
    --define "_rpmdir $out_dir" \
    --define "_build_id_links none" >&2
rpm=$(find "$out_dir" -name "aiscout-agent-$rpm_version-1.*.rpm" | head -n 1)
[ -n "$rpm" ] || die "rpmbuild produced no package in $out_dir"
echo "$rpm"
