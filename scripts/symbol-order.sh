#!/usr/bin/env bash
# Regenerates packaging/symbol-order.txt, the order in which the linker lays
# out the release binary's functions (build.rs hands it to lld).
#
# Why: the kernel maps file pages 64 KiB around every page a process touches
# ("fault-around"), so code that runs scattered over the whole .text makes
# the whole binary resident. Laid out first and together, the functions
# procship actually runs fit in a few hundred KiB and steady-state RSS drops
# by about 1 MiB (README, "Performance").
#
# How: an unstripped release build runs under callgrind in a series of
# configurations, default first (json + gzip to an HTTP sink, the default
# collectors), then spool, status endpoint, the other formats, every
# collector, retries and reload. Every function that ran is listed, in that
# order; symbols that are not the binary's own (libc) are left out.
#
#   scripts/symbol-order.sh          regenerate the file (needs valgrind, python3; ~3 min)
#   scripts/symbol-order.sh --check  how many listed symbols the current build still has;
#                                    exits 1 below 75 % (the list has gone stale: regenerate)
set -euo pipefail
cd "$(dirname "$0")/.."
out=packaging/symbol-order.txt
target=target/symbol-order
bin=$target/release/procship

build() {
  PROCSHIP_BUILD_KEEP_SYMBOLS=1 cargo build --release --locked --quiet --target-dir "$target"
}

# The binary's own function symbols, one a line.
own_symbols() { nm --defined-only "$bin" | awk '$2 ~ /^[tTwW]$/ {print $3}' | sort -u; }

if [ "${1:-}" = "--check" ]; then
  [ -f "$out" ] || { echo "no $out"; exit 1; }
  build
  total=$(grep -c . "$out")
  found=$(own_symbols | grep -cxFf - "$out" || true)
  pct=$((100 * found / total))
  echo "symbol order: $found of $total listed symbols are in this build ($pct %)"
  [ "$pct" -ge 75 ] || { echo "stale: run scripts/symbol-order.sh and commit $out"; exit 1; }
  exit 0
fi

command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)"; exit 1; }
build
work=$(mktemp -d)
sink_pid=
cleanup() {
  if [ -n "$sink_pid" ]; then kill "$sink_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# A loopback sink: 204 for every POST, 500 for the first two to /fail.
port=$((20000 + RANDOM % 20000))
python3 - "$port" <<'PY' &
import http.server, sys
fails = {"n": 0}
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.startswith("/fail") and fails["n"] < 2:
            fails["n"] += 1
            self.send_response(500); self.send_header("Content-Length", "0"); self.end_headers()
            return
        self.send_response(204); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
sink_pid=$!
url=http://127.0.0.1:$port
for _ in $(seq 50); do
  python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null && break
  sleep 0.1
done

# run NAME SECONDS [VAR=VALUE...] [-- ARGS...]: the agent under callgrind for a
# while, then SIGTERM.
n=0
run() {
  local name=$1 secs=$2 vars=() args=()
  shift 2
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do vars+=("$1"); shift; done
  [ $# -gt 0 ] && shift && args=("$@")
  n=$((n + 1))
  echo "  $n $name"
  env -i PATH="$PATH" PROCSHIP_INTERVAL=0.5 PROCSHIP_FLUSH_INTERVAL=0.5 PROCSHIP_FLUSH_JITTER=0 \
    PROCSHIP_INGEST_URL="$url/write" PROCSHIP_LOG_LEVEL=info "${vars[@]}" \
    valgrind --tool=callgrind --demangle=no --dump-instr=no --compress-strings=no \
    --callgrind-out-file="$work/$(printf %02d "$n").out" "$bin" "${args[@]}" \
    >/dev/null 2>"$work/$n.log" &
  local pid=$! t=0
  sleep "$secs"
  case "$name" in
    status) python3 - "$status_port" <<'PY' || true
import sys, urllib.request
for p in ("/healthz", "/status", "/metrics", "/nope"):
    try: urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}{p}", timeout=5).read()
    except Exception: pass
PY
    sleep 1 ;;
    reload) kill -HUP "$pid"; sleep 2 ;;
  esac
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && [ $t -lt 300 ]; do sleep 0.1; t=$((t + 1)); done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

echo "training runs:"
run default 12
mkdir "$work/spool"
run spool 8 PROCSHIP_SPOOL_DIR="$work/spool"
status_port=$((port + 1))
run status 6 PROCSHIP_STATUS_ADDR=127.0.0.1:$status_port
run influx 5 PROCSHIP_FORMAT=influx
run prometheus 5 PROCSHIP_FORMAT=prometheus
run otlp 5 PROCSHIP_FORMAT=otlp
run uncompressed 4 PROCSHIP_COMPRESSION=none
run all-collectors 6 PROCSHIP_COLLECTORS=all PROCSHIP_RATES=true
run retries 8 PROCSHIP_INGEST_URL="$url/fail" PROCSHIP_RETRY_INITIAL=0.2
run refused 5 PROCSHIP_INGEST_URL=http://127.0.0.1:1/write PROCSHIP_RETRY_INITIAL=0.2
env_file=$work/reload.env
printf 'PROCSHIP_INTERVAL=0.5\n' >"$env_file"
run reload 5 PROCSHIP_LOG_FORMAT=json -- --env-file "$env_file"

# Function names in the order the runs first saw them, kept if the binary has them.
own_symbols >"$work/own"
cat "$work"/[0-9][0-9].out |
  sed -n 's/^c\{0,1\}fn=\(([0-9]*) \)\{0,1\}//p' |
  awk '!seen[$0]++' |
  grep -xFf "$work/own" >"$work/order" || true
lines=$(wc -l <"$work/order")
[ "$lines" -gt 100 ] || { echo "only $lines symbols seen: see $work/*.log"; trap - EXIT; exit 1; }
# lld reads one symbol a line and knows no comments: the provenance is here.
cp "$work/order" "$out"
echo "wrote $out: $lines functions of $(wc -l <"$work/own") in the binary"
