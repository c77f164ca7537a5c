#!/bin/sh
# Builds the aiscout-agent .deb, installs it on this machine, checks files, owners and modes,
# verifies the unit, checks that an upgrade keeps the configuration and the spool, purges the
# package and checks that nothing is left. Exits non-zero on the first failure.
#
# Usage (as root; CI runs it from .ci/run): installer/linux/test-deb.sh [AGENT_BINARY]
#   Without AGENT_BINARY the real agent is used when target/release/aiscout-agent or
#   target/debug/aiscout-agent exists (under $CARGO_TARGET_DIR when set); otherwise a stub
#   binary stands in and the script says so.
# It refuses to run where aiscout-agent is already installed or /etc/aiscout or
# /var/lib/aiscout exist, so it never touches a real installation.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}

fail() { echo "test-deb.sh: FAIL: $*" >&2; exit 1; }
ok() { echo "test-deb.sh: ok: $*"; }
note() { echo "test-deb.sh: $*"; }

[ "$(id -u)" -eq 0 ] || fail "must run as root (it installs a package)"
command -v dpkg >/dev/null 2>&1 || fail "dpkg not found"
if dpkg-query -W -f='${Status}' aiscout-agent 2>/dev/null | grep -q 'installed\|config-files'; then
    fail "aiscout-agent is already installed here; refusing to touch it"
fi
for p in /etc/aiscout /var/lib/aiscout; do
    [ ! -e "$p" ] || fail "$p already exists; refusing to touch it"
done

work=$(mktemp -d)
installed=0
cleanup() {
    if [ "$installed" -eq 1 ]; then
        note "cleaning up: dpkg --purge aiscout-agent"
        dpkg --purge aiscout-agent >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

binary=${1:-}
if [ -z "$binary" ]; then
    if [ -x "$target_dir/release/aiscout-agent" ]; then
        binary=$target_dir/release/aiscout-agent
        note "using the real agent binary $binary"
    elif [ -x "$target_dir/debug/aiscout-agent" ]; then
        binary=$target_dir/debug/aiscout-agent
        note "using the real agent binary $binary (debug build; no release build found)"
    else
        binary=$work/aiscout-agent
        cat > "$binary" <<'STUB'
#!/bin/sh
# Stub agent for package tests: check-config always reports a problem, run does nothing.
case "$1" in
check-config) echo "stub agent: not a real configuration check" >&2; exit 1 ;;
*) exit 0 ;;
esac
STUB
        chmod 0755 "$binary"
        note "no build of the agent in $target_dir/release or $target_dir/debug: using a STUB binary"
    fi
else
    note "using the agent binary $binary"
fi

# Build version 1, and a later version 2 for the upgrade check.
deb1=$(OUT_DIR=$work/v1 VERSION=0.0.1~test1 "$here/build-deb.sh" "$binary" | tail -n 1)
deb2=$(OUT_DIR=$work/v2 VERSION=0.0.1~test2 "$here/build-deb.sh" "$binary" | tail -n 1)
if [ ! -f "$deb1" ] || [ ! -f "$deb2" ]; then fail "build-deb.sh did not produce packages"; fi
ok "built $(basename "$deb1") and $(basename "$deb2")"

# The package's own metadata.
dpkg-deb --field "$deb1" Package | grep -qx aiscout-agent || fail "wrong Package field"
dpkg-deb --ctrl-tarfile "$deb1" | tar -tf - | grep -qx './conffiles' || fail "no conffiles"
dpkg-deb --info "$deb1" conffiles | grep -qx /etc/aiscout/agent.toml \
    || fail "/etc/aiscout/agent.toml is not a conffile"
ok "control fields and conffiles"

export DEBIAN_FRONTEND=noninteractive
if [ -d /run/systemd/system ]; then
    note "systemd is running: postinst may start the service"
else
    note "systemd is not running: postinst must succeed without starting anything"
fi
installed=1
dpkg -i "$deb1" || fail "dpkg -i $deb1 failed"
ok "dpkg -i (install)"

# mode owner group path
check() {
    [ -e "$4" ] || fail "$4 is missing"
    actual=$(stat -c '%a %U %G' "$4")
    [ "$actual" = "$1 $2 $3" ] || fail "$4 is '$actual', expected '$1 $2 $3'"
    ok "$4 $1 $2:$3"
}
check 755 root root /usr/bin/aiscout-agent
check 700 root root /etc/aiscout
check 600 root root /etc/aiscout/agent.toml
check 644 root root /lib/systemd/system/aiscout-agent.service
check 700 root root /var/lib/aiscout
# The package ships the binary stripped of debug info: compare with a stripped copy.
expected="$work/expected-agent"
cp "$binary" "$expected"
if command -v strip >/dev/null 2>&1; then
    strip --strip-debug "$expected"
fi
cmp -s /usr/bin/aiscout-agent "$expected" || fail "/usr/bin/aiscout-agent is not the packaged binary"
cmp -s /etc/aiscout/agent.toml "$here/agent.toml" || fail "/etc/aiscout/agent.toml differs from installer/linux/agent.toml"
if [ -L /etc/systemd/system/multi-user.target.wants/aiscout-agent.service ]; then
    ok "service enabled (multi-user.target.wants symlink)"
else
    fail "the service was not enabled"
fi

if command -v systemd-analyze >/dev/null 2>&1; then
    if out=$(systemd-analyze verify /lib/systemd/system/aiscout-agent.service 2>&1); then
        [ -z "$out" ] || { echo "$out" >&2; fail "systemd-analyze verify printed warnings"; }
        ok "systemd-analyze verify aiscout-agent.service: clean"
    else
        echo "$out" >&2
        fail "systemd-analyze verify aiscout-agent.service"
    fi
else
    note "SKIPPED: systemd-analyze verify (systemd-analyze not installed)"
fi

# Upgrade: an edited config and the spool must survive.
printf '\n# edited by test-deb.sh\n' >> /etc/aiscout/agent.toml
printf 'spool bytes' > /var/lib/aiscout/spool.db
printf 'deb-test-enroll-secret-0123456789abcdef\n' > /etc/aiscout/enroll_secret
chmod 0600 /etc/aiscout/enroll_secret
dpkg -i --force-confold "$deb2" || fail "dpkg -i $deb2 (upgrade) failed"
[ "$(dpkg-query -W -f='${Version}' aiscout-agent)" = 0.0.1~test2 ] || fail "upgrade did not install version 2"
grep -q 'edited by test-deb.sh' /etc/aiscout/agent.toml || fail "upgrade replaced the edited config"
[ "$(cat /var/lib/aiscout/spool.db)" = 'spool bytes' ] || fail "upgrade lost the spool"
[ -f /etc/aiscout/enroll_secret ] || fail "upgrade lost the enroll secret"
check 600 root root /etc/aiscout/agent.toml
ok "upgrade kept the edited config, the enroll secret and the spool"

# Remove keeps config and state; purge removes everything.
dpkg --remove aiscout-agent || fail "dpkg --remove failed"
[ ! -e /usr/bin/aiscout-agent ] || fail "remove left /usr/bin/aiscout-agent"
[ -f /etc/aiscout/agent.toml ] || fail "remove deleted the config (only purge may)"
ok "dpkg --remove kept the config"
dpkg --purge aiscout-agent || fail "dpkg --purge failed"
installed=0
for p in /usr/bin/aiscout-agent /etc/aiscout /var/lib/aiscout \
    /lib/systemd/system/aiscout-agent.service \
    /etc/systemd/system/multi-user.target.wants/aiscout-agent.service \
    /etc/systemd/system/aiscout-agent.service \
    /usr/share/doc/aiscout-agent; do
    if [ -e "$p" ] || [ -L "$p" ]; then fail "purge left $p"; fi
done
if find /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked \
    -name '*aiscout*' 2>/dev/null | grep -q .; then
    fail "purge left deb-systemd-helper state for aiscout-agent"
fi
if dpkg-query -W aiscout-agent >/dev/null 2>&1; then
    fail "dpkg still knows aiscout-agent after purge"
fi
ok "dpkg --purge removed the binary, unit, config, state and enablement"
# The .rpm: same layout, checked from the package metadata (not installed: this is not an
# RPM-based system).
if command -v rpmbuild >/dev/null 2>&1 && command -v rpm >/dev/null 2>&1; then
    rpmfile=$(OUT_DIR=$work/rpm REQUIRE_RPMBUILD=1 "$here/build-rpm.sh" "$binary" 2>/dev/null | tail -n 1)
    [ -f "$rpmfile" ] || fail "build-rpm.sh produced no package"
    listing=$(rpm -qlvp "$rpmfile")
    for expected in \
        'drwx------ root root /etc/aiscout' \
        '-rw------- root root /etc/aiscout/agent.toml' \
        '-rwxr-xr-x root root /usr/bin/aiscout-agent' \
        '-rw-r--r-- root root /usr/lib/systemd/system/aiscout-agent.service' \
        'drwx------ root root /var/lib/aiscout'; do
        echo "$listing" | awk '{print $1, $3, $4, $NF}' | grep -qxF -- "$expected" \
            || fail "rpm lacks '$expected'"
    done
    rpm -qp --configfiles "$rpmfile" | grep -qx /etc/aiscout/agent.toml \
        || fail "agent.toml is not %config in the rpm"
    ok "rpm $(basename "$rpmfile"): modes, owners and %config (not installed)"
else
    note "SKIPPED: the .rpm check (rpmbuild not installed; apt-get install rpm)"
fi
echo "test-deb.sh: PASS"
