#!/bin/sh
# Memory through a long outage in fast motion: an agent at 50 cycles/s
# (PROCSHIP_INTERVAL=0.02) whose memory queue (256 KiB) is full and dropping
# against a port nothing listens on. Prints RssAnon every 10 s and the final
# account. 300 s are 15,000 cycles: about 42 hours of the default 10 s cycle.
#
#   cargo build --release && scripts/outage-memory.sh 300
set -eu
secs=${1:-300}
bin=${PROCSHIP_BIN:-$(dirname "$0")/../target/release/procship}
[ -x "$bin" ] || { echo "outage-memory: $bin is missing: cargo build --release" >&2; exit 1; }
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
PROCSHIP_INGEST_URL=http://127.0.0.1:$port/write PROCSHIP_FORMAT=influx \
PROCSHIP_INTERVAL=0.02 PROCSHIP_FLUSH_INTERVAL=0.02 PROCSHIP_FLUSH_JITTER=0 \
PROCSHIP_QUEUE_MAX_BYTES=256KiB PROCSHIP_RETRY_INITIAL=0.05 PROCSHIP_RETRY_MAX_DELAY=0.5 \
PROCSHIP_HOSTNAME=outage "$bin" 2>"$log" &
agent=$!
trap 'kill "$agent" 2>/dev/null || true; rm -f "$log"' EXIT
echo "seconds RssAnon_kB"
t=0
while [ "$t" -lt "$secs" ]; do
  sleep 10
  t=$((t + 10))
  echo "$t $(awk '/^RssAnon/ { print $2 }' "/proc/$agent/status")"
done
kill -TERM "$agent"
wait "$agent" || true
grep 'stopped;' "$log" | sed 's/.*stopped; //'
