#!/bin/sh
# Installs procship on a host without dpkg: the binary, the systemd unit,
# the env file (only if there is none: configuration is never overwritten),
# the procship system user; then daemon-reload and enable. Starts the
# service only once PROCSHIP_INGEST_URL is set. Safe to run again (upgrade).
#
#   sudo packaging/install.sh [BINARY]     default: target/release/procship
#   sudo packaging/install.sh --uninstall [--purge]
#
# Environment: BIN_DIR (default /usr/local/bin), MAN_DIR (default
# /usr/local/share/man/man1: the man page procship(1)).
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
BIN_DIR=${BIN_DIR:-/usr/local/bin}
MAN_DIR=${MAN_DIR:-/usr/local/share/man/man1}
ENV_DIR=/etc/procship
ENV_FILE=$ENV_DIR/procship.env
UNIT_FILE=/etc/systemd/system/procship.service

say() { echo "install.sh: $*"; }
die() { echo "install.sh: $*" >&2; exit 1; }
have_systemd() { [ -d /run/systemd/system ]; }

[ "$(id -u)" = 0 ] || die "run as root (sudo $0 $*)"

uninstall() {
    if have_systemd; then
        systemctl disable --now procship.service >/dev/null 2>&1 || true
    elif command -v systemctl >/dev/null; then
        systemctl disable procship.service >/dev/null 2>&1 || true
    fi
    rm -f "$UNIT_FILE" "$BIN_DIR/procship" "$MAN_DIR/procship.1"
    if have_systemd; then systemctl daemon-reload; fi
    if [ "${1:-}" = --purge ]; then
        rm -rf "$ENV_DIR" /var/lib/procship /var/lib/private/procship
        if getent passwd procship >/dev/null; then userdel procship; fi
        if getent group procship >/dev/null; then groupdel procship; fi
        say "removed procship, its configuration, spool and user"
    else
        say "removed procship; kept $ENV_FILE, the spool and the user (--purge removes them)"
    fi
}

if [ "${1:-}" = --uninstall ]; then
    uninstall "${2:-}"
    exit 0
fi

bin=${1:-$here/target/release/procship}
[ -x "$bin" ] || die "no executable at $bin (cargo build --release, or pass its path)"
"$bin" --version >/dev/null || die "$bin does not run on this host"

if ! getent group procship >/dev/null; then
    groupadd --system procship
fi
if ! getent passwd procship >/dev/null; then
    useradd --system --gid procship --no-create-home --home-dir /var/lib/procship \
        --shell /usr/sbin/nologin --comment "procship agent" procship
    say "created the procship system user"
fi

install -d -m 0755 "$BIN_DIR"
install -m 0755 "$bin" "$BIN_DIR/procship.new"
mv -f "$BIN_DIR/procship.new" "$BIN_DIR/procship"

install -d -m 0755 "$MAN_DIR"
install -m 0644 "$here/packaging/procship.1" "$MAN_DIR/procship.1"

install -d -m 0755 "$ENV_DIR"
if [ -e "$ENV_FILE" ]; then
    say "kept the existing $ENV_FILE"
else
    install -m 0640 -o root -g procship "$here/.env.example" "$ENV_FILE"
    say "wrote $ENV_FILE (every setting commented out: set PROCSHIP_INGEST_URL)"
fi
chown root:procship "$ENV_FILE"
chmod 0640 "$ENV_FILE"

sed "s|^ExecStart=/usr/bin/procship|ExecStart=$BIN_DIR/procship|" \
    "$here/systemd/procship.service" >"$UNIT_FILE.new"
chmod 0644 "$UNIT_FILE.new"
mv -f "$UNIT_FILE.new" "$UNIT_FILE"

if have_systemd; then
    systemctl daemon-reload
    systemctl enable procship.service >/dev/null 2>&1
    if grep -Eq '^[[:space:]]*PROCSHIP_INGEST_URL=[^[:space:]]' "$ENV_FILE"; then
        "$BIN_DIR/procship" --env-file "$ENV_FILE" --check-config >/dev/null ||
            die "$ENV_FILE is invalid: $BIN_DIR/procship --env-file $ENV_FILE --check-config"
        systemctl restart procship.service
        say "procship (re)started: systemctl status procship"
    else
        say "enabled; set PROCSHIP_INGEST_URL in $ENV_FILE, then: systemctl start procship"
    fi
elif command -v systemctl >/dev/null; then
    # Offline (a chroot, an image build): enabling only writes symlinks.
    systemctl enable procship.service >/dev/null 2>&1 || true
    say "installed and enabled; systemd is not running here, so nothing was started"
else
    say "installed; no systemd here: run $BIN_DIR/procship --env-file $ENV_FILE under your supervisor"
fi
