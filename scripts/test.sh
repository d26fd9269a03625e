#!/usr/bin/env bash
# The test command (README): every unit, fixture, golden and integration test.
# Integration tests start their own HTTP listeners on 127.0.0.1; nothing else
# is needed on a fresh machine beyond a Rust toolchain. Ends with one total line.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
