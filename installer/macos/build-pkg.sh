#!/bin/sh
# Builds aiscout-agent.pkg with pkgbuild and productbuild. Runs on macOS only (the tools are
# Apple's; there is no Linux equivalent that MDMs accept).
#
# Usage: installer/macos/build-pkg.sh [AGENT_BINARY]
#   AGENT_BINARY  defaults to target/release/aiscout-agent (built when absent). For a universal
#                 binary: cargo build --release -p aiscout-agent --target aarch64-apple-darwin
#                 and --target x86_64-apple-darwin, then lipo -create -output aiscout-agent ...
# Environment:
#   OUT_DIR               default target/installer
#   VERSION               default: the workspace version in Cargo.toml
#   INSTALLER_SIGN_ID     "Developer ID Installer: ..." to sign the product (MDMs need a
#                         signed package; Jamf and Kandji re-sign nothing)
#   APP_SIGN_ID           "Developer ID Application: ..." to codesign the binary (hardened runtime)
# Notarize afterwards: xcrun notarytool submit OUT.pkg --keychain-profile PROFILE --wait
#                      xcrun stapler staple OUT.pkg
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}

die() { echo "build-pkg.sh: $*" >&2; exit 1; }

[ "$(uname -s)" = Darwin ] || die "pkgbuild and productbuild exist only on macOS"
command -v pkgbuild >/dev/null 2>&1 || die "pkgbuild not found (install the Xcode command line tools)"
command -v productbuild >/dev/null 2>&1 || die "productbuild not found"

binary=${1:-}
if [ -z "$binary" ]; then
    binary=$target_dir/release/aiscout-agent
    if [ ! -x "$binary" ]; then
        (cd "$root" && cargo build --release --locked -p aiscout-agent) || die "cargo build failed"
    fi
fi
[ -x "$binary" ] || die "agent binary $binary does not exist or is not executable"

version=${VERSION:-$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml")}
out_dir=${OUT_DIR:-$target_dir/installer}
mkdir -p "$out_dir"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT INT TERM
payload=$stage/root
mkdir -p "$payload/usr/local/bin" "$payload/Library/LaunchDaemons" \
    "$payload/Library/Application Support/aiscout"
cp "$binary" "$payload/usr/local/bin/aiscout-agent"
chmod 0755 "$payload/usr/local/bin/aiscout-agent"
if [ -n "${APP_SIGN_ID:-}" ]; then
    codesign --force --options runtime --timestamp --sign "$APP_SIGN_ID" \
        "$payload/usr/local/bin/aiscout-agent"
fi
cp "$here/com.aiscout.agent.plist" "$payload/Library/LaunchDaemons/"
chmod 0644 "$payload/Library/LaunchDaemons/com.aiscout.agent.plist"
plutil -lint "$payload/Library/LaunchDaemons/com.aiscout.agent.plist"
# Installed as a default; postinstall copies it to agent.toml only when there is none.
cp "$here/agent.toml" "$payload/Library/Application Support/aiscout/agent.toml.default"
chmod 0600 "$payload/Library/Application Support/aiscout/agent.toml.default"

pkgbuild --root "$payload" \
    --identifier com.aiscout.agent \
    --version "$version" \
    --scripts "$here/scripts" \
    --install-location / \
    --ownership recommended \
    "$stage/aiscout-agent-component.pkg"

out=$out_dir/aiscout-agent-$version.pkg
if [ -n "${INSTALLER_SIGN_ID:-}" ]; then
    productbuild --package "$stage/aiscout-agent-component.pkg" --sign "$INSTALLER_SIGN_ID" "$out"
else
    echo "build-pkg.sh: INSTALLER_SIGN_ID not set: the package is unsigned (fine for testing, not for MDM)" >&2
    productbuild --package "$stage/aiscout-agent-component.pkg" "$out"
fi
echo "$out"
