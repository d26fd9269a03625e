#!/usr/bin/env bash
# Proves packaging/install.sh on this machine (CI runs it as root): two
# runs in a row (idempotent, configuration kept), the files, user and
# permissions it leaves, the installed unit through systemd-analyze
# verify, then --uninstall --purge leaving nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "check-install: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "run as root"
[ ! -e /etc/procship ] || fail "/etc/procship exists on this machine already; not touching it"

[ -x target/release/procship ] || cargo build --release --locked --quiet
bin=/usr/local/bin/procship unit=/etc/systemd/system/procship.service env=/etc/procship/procship.env
man=/usr/local/share/man/man1/procship.1

echo "== install.sh (first run)"
packaging/install.sh
[ -x "$bin" ] || fail "no $bin"
[ -f "$man" ] || fail "no $man"
getent passwd procship >/dev/null || fail "no procship user"
[ "$(stat -c '%U:%G %a' "$env")" = "root:procship 640" ] || fail "env file permissions"
grep -qx "ExecStart=$bin" "$unit" || fail "unit does not run $bin"
systemd-analyze verify "$unit"
[ -L /etc/systemd/system/multi-user.target.wants/procship.service ] || fail "not enabled"

echo "== install.sh (second run: idempotent, keeps the configuration)"
echo "PROCSHIP_INTERVAL=7" >>"$env"
packaging/install.sh
grep -qx "PROCSHIP_INTERVAL=7" "$env" || fail "configuration overwritten"
[ "$(getent passwd procship | cut -d: -f1)" = procship ] || fail "user"
[ "$(stat -c '%U:%G %a' "$env")" = "root:procship 640" ] || fail "env file permissions after rerun"
"$bin" --env-file "$env" --check-config | grep -q 'PROCSHIP_INTERVAL=7  # env file' ||
  fail "installed binary does not read the env file"

echo "== install.sh --uninstall --purge"
packaging/install.sh --uninstall --purge
[ -e /etc/systemd/system/multi-user.target.wants/procship.service ] && fail "still enabled"
for p in "$bin" "$unit" "$man" /etc/procship /var/lib/procship; do
  [ ! -e "$p" ] || fail "$p left after purge"
done
! getent passwd procship >/dev/null || fail "user left after purge"
echo "check-install: ok"
