#!/usr/bin/env bash
# The test command (README): every unit, fixture, golden and integration test.
# Integration tests start their own HTTP listeners and sockets on 127.0.0.1.
# Besides a Rust toolchain, tests/status.rs needs Debian's Prometheus text
# parser (python3-prometheus-client): installed here when missing and we
# may (root or sudo), otherwise named. Ends with one total line.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! /usr/bin/python3 -c 'import prometheus_client' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then
    sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo -n"
    echo "== apt-get install python3-prometheus-client (for tests/status.rs)"
    $sudo_ apt-get update -qq
    $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-prometheus-client
  else
    echo "scripts/test.sh: tests/status.rs needs python3-prometheus-client; run: sudo apt-get install python3-prometheus-client" >&2
    exit 1
  fi
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
