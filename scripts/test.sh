#!/usr/bin/env bash
# The test command (README): every unit, fixture, golden and integration test.
# Integration tests start their own HTTP listeners on 127.0.0.1; nothing else
# is needed on a fresh machine beyond a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked "$@"
