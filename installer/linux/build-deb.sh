#!/bin/sh
# Builds the aiscout-agent .deb from a staged tree with dpkg-deb (no debhelper needed).
#
# Usage: installer/linux/build-deb.sh [AGENT_BINARY]
#   AGENT_BINARY  defaults to target/release/aiscout-agent (built with
#                 `cargo build --release -p aiscout-agent` when absent).
# Environment:
#   OUT_DIR       where the .deb goes (default: target/installer)
#   VERSION       package version (default: the workspace version in Cargo.toml)
#   ARCH          Debian architecture (default: dpkg --print-architecture)
# Prints the path of the .deb on its last line.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}

die() { echo "build-deb.sh: $*" >&2; exit 1; }

command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found (apt-get install dpkg)"

binary=${1:-}
if [ -z "$binary" ]; then
    binary=$target_dir/release/aiscout-agent
    if [ ! -x "$binary" ]; then
        echo "build-deb.sh: building the agent: cargo build --release -p aiscout-agent" >&2
        (cd "$root" && cargo build --release --locked -p aiscout-agent) || die "cargo build failed"
    fi
fi
[ -f "$binary" ] || die "agent binary $binary does not exist"
[ -x "$binary" ] || die "agent binary $binary is not executable"

version=${VERSION:-$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml")}
[ -n "$version" ] || die "cannot read the workspace version from $root/Cargo.toml; set VERSION"
arch=${ARCH:-$(dpkg --print-architecture)}
out_dir=${OUT_DIR:-$target_dir/installer}
mkdir -p "$out_dir"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT INT TERM

install -d -m 0755 "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" \
    "$stage/usr/share/doc/aiscout-agent"
install -d -m 0700 "$stage/etc/aiscout"
install -m 0755 "$binary" "$stage/usr/bin/aiscout-agent"
# Packages ship stripped binaries; a debug build carries over 100 MB of symbols otherwise.
if command -v strip >/dev/null 2>&1; then
    strip --strip-debug "$stage/usr/bin/aiscout-agent"
fi
install -m 0600 "$here/agent.toml" "$stage/etc/aiscout/agent.toml"
install -m 0644 "$here/aiscout-agent.service" "$stage/lib/systemd/system/aiscout-agent.service"
install -m 0644 "$here/../README.md" "$stage/usr/share/doc/aiscout-agent/README.md"
for script in postinst prerm postrm; do
    install -m 0755 "$here/debian/$script" "$stage/DEBIAN/$script"
done
echo /etc/aiscout/agent.toml > "$stage/DEBIAN/conffiles"

size_kib=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: aiscout-agent
Version: $version
Architecture: $arch
Maintainer: aiscout <aiscout@localhost>
Section: net
Priority: optional
Depends: libpcap0.8 (>= 1.8) | libpcap0.8t64
Installed-Size: $size_kib
Description: aiscout agent: discovers AI tool use on this machine
 Watches DNS, TLS and QUIC handshakes and the installed software for AI tools
 listed in a signed catalog, and reports matches (never other traffic) to the
 organisation's aiscout collector. Runs as a hardened systemd service.
CONTROL

deb=$out_dir/aiscout-agent_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
echo "$deb"
