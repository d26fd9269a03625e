#!/usr/bin/env bash
# Whole-process cost of the release binary: runs procship at a fixed interval
# (default 1 s) for a window (default 60 s) after a warm-up, writing batches
# to a file (the stdout default), and prints cycles, CPU time per cycle
# (on-CPU nanoseconds of all its threads, from /proc/PID/task/*/schedstat),
# peak RSS (sampled each second, and the kernel's VmHWM) and binary size.
#
#   scripts/measure.sh [-d SECONDS] [-i INTERVAL] [-w WARMUP] [-- PROCSHIP FLAGS...]
#   scripts/measure.sh -d 60 -- --collectors all,-processes
set -euo pipefail

duration=60 interval=1 warmup=5
while getopts "d:i:w:h" opt; do
  case "$opt" in
    d) duration=$OPTARG ;;
    i) interval=$OPTARG ;;
    w) warmup=$OPTARG ;;
    *) sed -n '2,9p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift

cd "$(dirname "$0")/.."
bin=target/release/procship
[ -x "$bin" ] || cargo build --release --quiet
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

cpu_ns() { # on-CPU ns of every thread of $1
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%d", s}'
}
rss_kib() { awk '/^VmRSS:/ {print $2}' /proc/"$1"/status; }

env -i PATH="$PATH" PROCSHIP_INTERVAL="$interval" PROCSHIP_FLUSH_INTERVAL="$interval" \
  PROCSHIP_FLUSH_JITTER=0 PROCSHIP_HOSTNAME=measure "$bin" "$@" >"$work/out" 2>"$work/err" &
pid=$!
sleep "$warmup"
kill -0 "$pid" 2>/dev/null || { echo "procship exited:"; cat "$work/err"; exit 1; }
cpu0=$(cpu_ns "$pid") lines0=$(wc -l <"$work/out") peak=0
end=$((SECONDS + duration))
while [ "$SECONDS" -lt "$end" ]; do
  sleep 1
  r=$(rss_kib "$pid"); [ "$r" -gt "$peak" ] && peak=$r
done
cpu1=$(cpu_ns "$pid") lines1=$(wc -l <"$work/out")
hwm=$(awk '/^VmHWM:/ {print $2}' /proc/"$pid"/status)
threads=$(find /proc/"$pid"/task -mindepth 1 -maxdepth 1 | wc -l)
kill -TERM "$pid"; wait "$pid" || true
cycles=$((lines1 - lines0))
[ "$cycles" -gt 0 ] || { echo "no cycles completed"; cat "$work/err"; exit 1; }
awk -v c="$cycles" -v a="$cpu0" -v b="$cpu1" -v p="$peak" -v h="$hwm" -v t="$threads" \
    -v s="$(stat -c %s "$bin")" -v bytes="$(tail -n 1 "$work/out" | wc -c)" 'BEGIN {
  printf "cycles            %d\n", c
  printf "cpu_us_per_cycle  %.0f\n", (b - a) / c / 1000
  printf "rss_peak_kib      %d\n", p
  printf "vmhwm_kib         %d\n", h
  printf "threads           %d\n", t
  printf "batch_bytes       %d (json, uncompressed)\n", bytes
  printf "binary_bytes      %d\n", s
}'
