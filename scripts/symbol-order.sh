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
# How: a release build with its symbols (PROCSHIP_BUILD_KEEP_SYMBOLS=1: the
# same profile, so the same symbol names as the stripped one) runs under
# callgrind in a series of configurations, default first (json + gzip to an
# HTTP sink, the default collectors), then node_exporter's names (json, and
# remote write: the other steady state an operator runs), then spool, status endpoint, the other
# formats, every collector, retries, refused connections, the site's metrics
# (textfile and exec) and reload. Every
# function of the binary's own that ran is listed: each run's new ones after
# the runs before, sorted by name so a new list differs little from the old.
#
#   scripts/symbol-order.sh          regenerate the file (needs valgrind, python3; ~2 min)
#   scripts/symbol-order.sh --check  is the file still good for this build? Exits 1 when
#                                    under 75 % of its symbols are in the build (a new
#                                    rustc renames them all) or when more than 8 functions
#                                    a default run executes are not listed (new hot code:
#                                    each can cost a 64 KiB window of resident text)
set -euo pipefail
cd "$(dirname "$0")/.."
out=packaging/symbol-order.txt
target=target/symbol-order
bin=$target/release/procship
check=false
[ "${1:-}" = "--check" ] && check=true

command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)"; exit 1; }
PROCSHIP_BUILD_KEEP_SYMBOLS=1 cargo build --release --locked --quiet --target-dir "$target"

work=$(mktemp -d)
sink_pid=
cleanup() {
  if [ -n "$sink_pid" ]; then kill "$sink_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The binary's own function symbols with their sizes: "name size".
nm -S --defined-only "$bin" | awk '$3 ~ /^[tTwW]$/ {print $4, $2}' | sort -u >"$work/own"

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
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
  sleep 0.1
done

# run NAME SECONDS [VAR=VALUE...] [-- ARGS...]: the agent under callgrind for a
# while, then SIGTERM; its profile goes to $work/NN.out.
n=0
run() {
  local name=$1 secs=$2 vars=() args=() pid t=0
  shift 2
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do vars+=("$1"); shift; done
  [ $# -gt 0 ] && shift && args=("$@")
  n=$((n + 1))
  echo "  run $n: $name"
  env -i PATH="$PATH" PROCSHIP_INTERVAL=0.5 PROCSHIP_FLUSH_INTERVAL=0.5 PROCSHIP_FLUSH_JITTER=0 \
    PROCSHIP_INGEST_URL="$url/write" PROCSHIP_LOG_LEVEL=info "${vars[@]}" \
    valgrind --tool=callgrind --demangle=no --dump-instr=no --compress-strings=no \
    --callgrind-out-file="$work/$(printf %02d "$n").out" "$bin" "${args[@]}" \
    >/dev/null 2>"$work/$n.log" &
  pid=$!
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

# The function names a profile saw (defined or called), one a line.
seen() { sed -n 's/^c\{0,1\}fn=\(([0-9]*) \)\{0,1\}//p' "$@" | sort -u; }

if $check; then
  [ -s "$out" ] || { echo "no $out: run scripts/symbol-order.sh"; exit 1; }
  run default 10
  python3 - "$work/own" "$out" <(seen "$work"/01.out) <<'PY'
import sys
own = dict(l.split() for l in open(sys.argv[1]))
listed = [l.strip() for l in open(sys.argv[2]) if l.strip()]
ran = [n for n in (l.strip() for l in open(sys.argv[3])) if n in own]
present = sum(n in own for n in listed)
size = lambda names: sum(int(own[n], 16) for n in names)
listed_set = set(listed)
missing = [n for n in ran if n not in listed_set]
total = size(ran) or 1
p1 = 100 * present // max(len(listed), 1)
print(f"symbol order: {present} of {len(listed)} listed symbols are in this build ({p1} %); "
      f"a default run executes {len(ran)} functions ({total} bytes), {len(missing)} of them "
      f"unlisted ({size(missing)} bytes)")
for n in missing[:20]:
    print("  unlisted:", n)
# Each unlisted function can cost a 64 KiB window of resident text.
if p1 < 75 or len(missing) > 8:
    print("stale: run scripts/symbol-order.sh and commit packaging/symbol-order.txt")
    sys.exit(1)
PY
  exit
fi

echo "training runs:"
run default 12
run node-names 8 PROCSHIP_NAMES=node_exporter
run node-names-remote-write 5 PROCSHIP_NAMES=node_exporter PROCSHIP_FORMAT=prometheus
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
mkdir -m 0755 "$work/textfile" "$work/exec"
printf 'site_metric{kind="x"} 1\n' >"$work/textfile/a.prom"
printf '#!/bin/sh\necho "site_command 1"\n' >"$work/exec/cmd" && chmod 0755 "$work/exec/cmd"
run site 6 PROCSHIP_TEXTFILE_DIR="$work/textfile" PROCSHIP_EXEC_DIR="$work/exec" PROCSHIP_EXEC_TIMEOUT=4
env_file=$work/reload.env
printf 'PROCSHIP_INTERVAL=0.5\n' >"$env_file"
run reload 5 PROCSHIP_LOG_FORMAT=json -- --env-file "$env_file"

# Each run's new functions after those of the runs before, the binary's own only.
cut -d' ' -f1 "$work/own" >"$work/own-names"
: >"$work/order"
for f in "$work"/[0-9][0-9].out; do
  seen "$f" | grep -xFf "$work/own-names" | grep -vxFf "$work/order" >"$work/new" || true
  cat "$work/new" >>"$work/order"
done
lines=$(wc -l <"$work/order")
[ "$lines" -gt 100 ] || { echo "only $lines functions seen: see the logs in $work"; trap - EXIT; exit 1; }
# lld reads one symbol a line and knows no comments: the provenance is above.
cp "$work/order" "$out"
echo "wrote $out: $lines of the binary's $(wc -l <"$work/own") functions"
