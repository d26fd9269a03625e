#!/usr/bin/env bash
# The test command (README): every unit, fixture, golden, integration and
# backend test. Integration tests start their own listeners, sockets and
# servers on 127.0.0.1. Besides a Rust toolchain and python3 with pip, it
# needs, and installs when missing:
#   - from Debian (root or sudo; otherwise it names the command and stops):
#     victoria-metrics, prometheus and influxdb (tests/it/backends.rs), and
#     python3-prometheus-client (tests/it/status.rs), openssl (tests/it/tls.rs
#     makes its CA and certificates with it), tinyproxy (tests/it/proxy.rs) and
#     nginx-light (TLS with client certificates in front of VictoriaMetrics),
#     prometheus-node-exporter (tests/it/node_exporter.rs compares its series),
#     systemd (its env-file parser, in tests/it/cli.rs; no systemd PID 1 needed),
#     iproute2 (tests/it/live.rs adds a veth pair in a network namespace of
#     its own). Their services are not
#     started: the tests start their own servers.
#   - from PyPI, pinned in tests/py/requirements.txt, into target/pydeps:
#     opentelemetry-proto (the OTLP JSON parser) and jsonschema.
# Ends with one total line.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/bin/victoria-metrics ] || missing+=(victoria-metrics)
[ -x /usr/bin/prometheus ] || missing+=(prometheus)
[ -x /usr/bin/influxd ] || missing+=(influxdb)
/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null || missing+=(python3-prometheus-client)
command -v openssl >/dev/null || missing+=(openssl)
[ -x /usr/bin/tinyproxy ] || missing+=(tinyproxy)
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
[ -x /usr/bin/prometheus-node-exporter ] || missing+=(prometheus-node-exporter)
[ -x /usr/lib/systemd/user-environment-generators/30-systemd-environment-d-generator ] || missing+=(systemd)
[ -x /usr/bin/ip ] || [ -x /bin/ip ] || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    sudo_=()
  elif sudo -n true 2>/dev/null; then
    sudo_=(sudo -n)
  else
    echo "scripts/test.sh: the tests need Debian packages; run: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "== apt-get install ${missing[*]}"
  # Keep the packages' own services from starting (and taking the default
  # ports) where no policy says otherwise; removed again afterwards.
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | "${sudo_[@]}" tee "$policy" >/dev/null
    "${sudo_[@]}" chmod 755 "$policy"
  fi
  status=0
  "${sudo_[@]}" apt-get update -qq &&
    "${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
    status=$?
  [ -z "$policy" ] || "${sudo_[@]}" rm -f "$policy"
  [ "$status" = 0 ] || exit "$status"
fi

# OTLP and JSON Schema checkers from PyPI, for the python3 the tests run.
pydeps=target/pydeps
if ! PYTHONPATH=$pydeps python3 -c 'import opentelemetry.proto.collector.metrics.v1.metrics_service_pb2, jsonschema' 2>/dev/null ||
   ! cmp -s tests/py/requirements.txt "$pydeps/requirements.txt"; then
  echo "== pip install -r tests/py/requirements.txt (into $pydeps)"
  rm -rf "$pydeps"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$pydeps" -r tests/py/requirements.txt
  cp tests/py/requirements.txt "$pydeps/requirements.txt"
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
