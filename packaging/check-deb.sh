#!/usr/bin/env bash
# Builds the .deb and proves it on this machine (CI runs it as root):
# contents, conffile and permissions (dpkg-deb -c/-I), install (dpkg -i:
# binary, unit, user, env file root:procship 0640), the unit through
# systemd-analyze verify, `procship --check-config` reading the service's
# env file, and a purge that leaves nothing behind.
#
#   packaging/check-deb.sh [PACKAGE.deb]   (root; builds it with cargo-deb if not given)
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "check-deb: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "run as root (it installs and purges the package)"
if dpkg -s procship >/dev/null 2>&1; then
  fail "procship is installed on this machine already; not touching it"
fi

# A built package may be given (CI builds it as the unprivileged user).
deb=${1:-}
if [ -z "$deb" ]; then
  cargo build --release --locked --quiet
  deb=target/debian/procship-check.deb
  rm -f "$deb"
  cargo deb --no-build --output "$deb"
fi
[ -f "$deb" ] || fail "no package at $deb"
echo "== $deb"

echo "== dpkg-deb -c"
contents=$(dpkg-deb -c "$deb")
echo "$contents"
expect_entry() { # mode path
  grep -Eq "^$1 (root/root|0/0) .* \./$2\$" <<<"$contents" || fail "missing or wrong: $1 $2"
}
expect_entry '-rwxr-xr-x' usr/bin/procship
expect_entry '-rw-r--r--' lib/systemd/system/procship.service
expect_entry '-rw-r-----' etc/procship/procship.env
expect_entry '-rw-r--r--' usr/share/procship/alerts/procship.rules.yml
expect_entry '-rw-r--r--' usr/share/procship/grafana/procship.json
expect_entry '-rw-r--r--' usr/share/procship/grafana/procship-fleet.json
expect_entry '-rw-r--r--' usr/share/man/man1/procship.1.gz
expect_entry '-rw-r--r--' usr/share/doc/procship/changelog.gz
expect_entry '-rw-r--r--' usr/share/doc/procship/changelog.Debian.gz

echo "== dpkg-deb -I"
dpkg-deb -I "$deb"
[ "$(dpkg-deb -f "$deb" Package)" = procship ] || fail "package name"
ctl=$(mktemp -d)
trap 'rm -rf "$ctl"' EXIT
dpkg-deb -e "$deb" "$ctl"
grep -qx /etc/procship/procship.env "$ctl/conffiles" || fail "env file is not a conffile"
for s in postinst prerm postrm; do [ -x "$ctl/$s" ] || fail "no $s"; done

echo "== dpkg -i"
dpkg -i "$deb"
getent passwd procship >/dev/null || fail "no procship user"
[ "$(stat -c '%U:%G %a' /etc/procship/procship.env)" = "root:procship 640" ] ||
  fail "env file is $(stat -c '%U:%G %a' /etc/procship/procship.env), want root:procship 640"
[ -x /usr/bin/procship ] || fail "no /usr/bin/procship"

echo "== systemd-analyze verify"
systemd-analyze verify /lib/systemd/system/procship.service

echo "== procship --check-config reads /etc/procship/procship.env"
echo "PROCSHIP_INTERVAL=7" >>/etc/procship/procship.env
out=$(cd / && /usr/bin/procship --check-config)
grep -q 'PROCSHIP_INTERVAL=7  # env file' <<<"$out" || { echo "$out"; fail "env file not read"; }
echo "PROCSHIP_INTERVAL=never" >>/etc/procship/procship.env
set +e
(cd / && /usr/bin/procship --check-config >/dev/null 2>&1)
rc=$?
set -e
[ "$rc" = 78 ] || fail "a bad value in the env file gave exit $rc, want 78"

echo "== dpkg -P"
dpkg -P procship
for p in /usr/bin/procship /lib/systemd/system/procship.service /etc/procship /var/lib/procship \
  /etc/systemd/system/multi-user.target.wants/procship.service; do
  [ ! -e "$p" ] || fail "$p left after purge"
done
! getent passwd procship >/dev/null || fail "procship user left after purge"
! getent group procship >/dev/null || fail "procship group left after purge"
echo "check-deb: ok"
