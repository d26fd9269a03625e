#!/usr/bin/env python3
"""Where a cycle's cost goes: per cycle of procship and of its floor, the
system calls (by kind), context switches, page faults, user-space
instructions and heap allocations, and the bytes procship compresses and
sends. The table issue 19 asked for; run it before and after a change.

    scripts/profile.py [-d SECONDS] [-w SECONDS]

Rows: the floor with its process walk, procship (default collectors, gzip
JSON to a loopback sink, 1 s cadence, one POST per cycle), and both without
the process walk. Each row runs three times, -w seconds of warm-up then a
window of -d seconds (default 20):
  1. plainly: CPU (schedstat of every thread), context switches (every
     thread's voluntary + involuntary), page faults (minor + major, from
     /proc/PID/stat), request bytes as sent and as decompressed by the sink;
  2. under `strace -c -f` attached for the window: system calls by kind;
  3. under valgrind's callgrind, zeroed after the warm-up and dumped after
     the window: instructions executed in user space, and calls to malloc,
     calloc and realloc (every heap allocation, Rust's and libc's).
Cycles are the window's seconds. procship runs from a build that keeps its
symbols (target/symbol-order, as scripts/symbol-order.sh builds it), so
callgrind can name functions: add --top N to print each row's N costliest.
Needs strace and valgrind; only loopback is used, every process is started
here and stopped by its PID.
"""

import argparse
import collections
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the sink and the readings are shared)

ROOT = bench.ROOT
PROCSHIP = os.path.join(ROOT, "target/symbol-order/release/procship")
FLOOR = bench.FLOOR


def rows():
    env = {
        "PATH": "/usr/bin:/bin",
        "PROCSHIP_INTERVAL": "1",
        "PROCSHIP_FLUSH_INTERVAL": "1",
        "PROCSHIP_FLUSH_JITTER": "0",
        "PROCSHIP_HOSTNAME": "bench",
    }
    return [
        ("floor-procs", [FLOOR, "-p"], None),
        ("procship", [PROCSHIP], env),
        ("floor", [FLOOR], None),
        ("procship -processes", [PROCSHIP], dict(env, PROCSHIP_COLLECTORS="default,-processes")),
    ]


def switches(pid):
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def faults(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[7]) + int(rest[9])  # minflt, majflt


class Run:
    """One process of a row, with its sink; stopped by its PID."""

    def __init__(self, cmd, env, wrap=()):
        self.sink = bench.Sink(decompress=True) if env is not None else None
        if self.sink:
            env = dict(env, PROCSHIP_INGEST_URL=f"http://127.0.0.1:{self.sink.port}/write")
        self.proc = subprocess.Popen(list(wrap) + cmd, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, cwd="/")

    def stop(self):
        bench.stop(self.proc, self.sink, within=30)


def plain(cmd, env, warmup, window):
    r = Run(cmd, env)
    try:
        time.sleep(warmup)
        pid = r.proc.pid
        s0, f0, c0 = switches(pid), faults(pid), bench.cpu_ns(pid)
        b0 = (r.sink.bytes, r.sink.plain) if r.sink else (0, 0)
        time.sleep(window)
        s1, f1, c1 = switches(pid), faults(pid), bench.cpu_ns(pid)
        b1 = (r.sink.bytes, r.sink.plain) if r.sink else (0, 0)
        return {
            "cpu_us": (c1 - c0) / 1000 / window,
            "switches": (s1 - s0) / window,
            "faults": (f1 - f0) / window,
            "wire": (b1[0] - b0[0]) / window if r.sink else None,
            "plain": (b1[1] - b0[1]) / window if r.sink else None,
        }
    finally:
        r.stop()


def traced(cmd, env, warmup, window):
    r = Run(cmd, env)
    out = tempfile.mktemp(prefix="procship-strace-")
    try:
        time.sleep(warmup)
        st = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(r.proc.pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(window)
        st.send_signal(signal.SIGINT)
        st.wait(timeout=30)
        calls = collections.Counter()
        with open(out) as f:
            for line in f:
                parts = line.split()
                # % time, seconds, usecs/call, calls, [errors], syscall
                if len(parts) >= 5 and parts[3].isdigit() and parts[-1] != "total":
                    calls[parts[-1]] += int(parts[3])
        return {k: v / window for k, v in calls.items()}
    finally:
        r.stop()
        if os.path.exists(out):
            os.unlink(out)


ALLOCATORS = {"malloc", "calloc", "realloc"}


def callgrind_counts(path):
    """(instructions, allocator calls) of one callgrind output file."""
    names, instr, allocs = {}, 0, 0
    cfn = None
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                instr = int(line.split()[1])
            m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line)
            if m:
                if m.group(3):
                    names[m.group(2)] = m.group(3).strip()
                cfn = names.get(m.group(2), "") if m.group(1) == "cfn" else None
                continue
            if line.startswith("calls=") and cfn is not None:
                if cfn.split("@")[0] in ALLOCATORS:
                    allocs += int(line.split("=")[1].split()[0])
                cfn = None
    return instr, allocs


def ground(cmd, env, warmup, window, top):
    base = tempfile.mkdtemp(prefix="procship-callgrind-")
    out = os.path.join(base, "cg.out")
    r = Run(cmd, env, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"])
    try:
        time.sleep(warmup + 3)  # valgrind starts slowly
        subprocess.run(["callgrind_control", "-z", str(r.proc.pid)], capture_output=True, check=False)
        time.sleep(window)
        subprocess.run(["callgrind_control", "-d", str(r.proc.pid)], capture_output=True, check=False)
        time.sleep(1)
        dumps = sorted(p for p in os.listdir(base) if p.startswith("cg.out."))
        if not dumps:
            raise RuntimeError(f"callgrind wrote no dump for {cmd[0]}")
        dump = os.path.join(base, dumps[0])
        instr, allocs = callgrind_counts(dump)
        if top:
            ann = subprocess.run(["callgrind_annotate", "--threshold=100", dump],
                                 capture_output=True, text=True, check=False).stdout
            # After the zeroing, callgrind charges the whole window to the
            # frames that were on the stack then (main and above): not
            # functions' own costs, so every line over 90 % is left out.
            lines = [l for l in ann.splitlines()
                     if re.match(r"\s*[\d,]+ \(", l) and not re.search(r"\((100\.0|9\d\.\d\d)%\)", l)]
            print(f"\n{cmd[0]}: costliest functions (self), window of {window:.0f} s", file=sys.stderr)
            for l in lines[:top]:
                print("   " + l[:150], file=sys.stderr)
        return {"instr": instr / window, "allocs": allocs / window}
    finally:
        r.stop()
        subprocess.run(["rm", "-rf", base], check=False)


def build():
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "floor"], cwd=ROOT, check=True)
    env = dict(os.environ, PROCSHIP_BUILD_KEEP_SYMBOLS="1")
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet", "--target-dir",
                    os.path.join(ROOT, "target/symbol-order")], cwd=ROOT, check=True, env=env)


def table(results):
    print("\n| per cycle (1 s cadence) | CPU µs | syscalls | of them | context switches | page faults "
          "| user instructions | heap allocations | bytes encoded → sent |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        sc = r["syscalls"]
        top = ", ".join(f"{k} {v:.0f}" for k, v in sorted(sc.items(), key=lambda kv: -kv[1])[:5])
        wire = f"{r['plain']:,.0f} → {r['wire']:,.0f}" if r["wire"] is not None else "–"
        print(f"| {name} | {r['cpu_us']:,.0f} | {sum(sc.values()):,.0f} | {top} | {r['switches']:.1f} "
              f"| {r['faults']:.1f} | {r['instr']:,.0f} | {r['allocs']:,.1f} | {wire} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-d", type=float, default=20, help="window, seconds")
    ap.add_argument("-w", type=float, default=5, help="warm-up, seconds")
    ap.add_argument("--top", type=int, default=0, help="print each row's N costliest functions")
    a = ap.parse_args()
    for tool in ("strace", "valgrind", "callgrind_control"):
        if not any(os.access(os.path.join(d, tool), os.X_OK) for d in os.environ["PATH"].split(":")):
            sys.exit(f"{tool} is not installed: apt-get install strace valgrind")
    build()
    results = {}
    for name, cmd, env in rows():
        print(f"{name}: plain, strace, callgrind", file=sys.stderr)
        r = plain(cmd, env, a.w, a.d)
        r["syscalls"] = traced(cmd, env, a.w, a.d)
        r.update(ground(cmd, env, a.w, a.d, a.top))
        results[name] = r
    table(results)


if __name__ == "__main__":
    main()
