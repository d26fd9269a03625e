#!/usr/bin/env python3
"""How procship's cost grows with the host: a heavy host built in private
namespaces, at three sizes, procship beside its floor and node_exporter.

    sudo scripts/scale.py [-d SECONDS] [-w SECONDS]

For each size (processes, mounts, interfaces) it starts, with unshare(1),
a new PID, mount and network namespace holding that many `sleep`
processes, tmpfs mounts and veth interfaces (created inside, gone with the
namespace: nothing of the host's is touched), then runs inside it, one
after the other, the floor with its process walk (examples/floor.rs -p),
procship with its default collectors (batches to stdout: the namespace has
no route to a sink, so this is collection and encoding without the HTTP
round trip) and Debian's node_exporter (scraped once a second from inside
the namespace). CPU per cycle and peak RSS as scripts/bench.py measures
them (on-CPU time of every thread over the window). cgroups are not
scaled: cgroupfs is one hierarchy for the whole host, so groups made for
the test would be the host's (and procship's cgroup collector is off by
default). Every process is started here and stopped by its PID; the
namespace's init is killed last, which ends everything inside it.
"""

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("bench", os.path.join(HERE, "bench.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

SIZES = [(100, 10, 2), (2000, 100, 20), (10000, 500, 50)]


def children(pid):
    """The PIDs whose parent is `pid`."""
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def wait_for(what, cond, within):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def heavy_host(procs, mounts, ifaces, base):
    """The namespace's holder: (unshare's Popen, the PID inside to enter)."""
    setup = f"""
set -e
ip link set lo up
for i in $(seq 1 {ifaces // 2}); do
  ip link add va$i type veth peer name vb$i
  ip link set va$i up; ip link set vb$i up
done
for i in $(seq 1 {mounts}); do
  mkdir -p {base}/m$i; mount -t tmpfs -o size=1m scale$i {base}/m$i
done
for i in $(seq 1 {procs}); do sleep 100000 & done
echo ready
exec sleep 100000
"""
    p = subprocess.Popen(
        ["unshare", "--fork", "--pid", "--mount-proc", "--net", "--mount",
         "--propagation", "private", "bash", "-c", setup],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    if line.strip() != "ready":
        p.kill()
        raise RuntimeError(f"the namespace did not come up: {line!r}")
    inner = wait_for("the namespace's init", lambda: children(p.pid), 10)[0]
    return p, inner


def inside(target, cmd, env):
    """Starts `cmd` in `target`'s namespaces: (nsenter's Popen, the program's PID)."""
    p = subprocess.Popen(
        ["nsenter", f"--target={target}", "--pid", "--net", "--mount", "--"] + cmd,
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    pid = wait_for(f"{cmd[0]} inside", lambda: children(p.pid), 10)[0]
    return p, pid


def measure(target, cmd, env, warmup, window, scrape_port=None):
    proc, pid = inside(target, cmd, env)
    scraper = None
    try:
        if scrape_port:
            loop = f"while sleep 1; do curl -s -o /dev/null http://127.0.0.1:{scrape_port}/metrics; done"
            scraper, _ = inside(target, ["bash", "-c", loop], None)
        time.sleep(warmup)
        c0, t0 = bench.cpu_ns(pid), time.monotonic()
        time.sleep(window)
        c1, t1 = bench.cpu_ns(pid), time.monotonic()
        return (c1 - c0) / 1000 / (t1 - t0), bench.status_kib(pid, "VmHWM") / 1024
    finally:
        for p in [scraper, proc]:
            if p:
                # nsenter's child is the program: signal both, reap nsenter.
                for c in children(p.pid):
                    os.kill(c, signal.SIGTERM)
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-d", type=float, default=20, help="window, seconds")
    ap.add_argument("-w", type=float, default=5, help="warm-up, seconds")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("scale.py: needs root (namespaces, mounts, interfaces)")
    bench.build()
    env = {"PATH": "/usr/bin:/bin", "PROCSHIP_INTERVAL": "1", "PROCSHIP_FLUSH_INTERVAL": "1",
           "PROCSHIP_FLUSH_JITTER": "0", "PROCSHIP_HOSTNAME": "scale"}
    print("| processes, mounts, interfaces | floor-procs µs/cycle | procship µs/cycle | vs floor "
          "| procship peak RSS | node_exporter µs/cycle | vs floor | node_exporter peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for procs, mounts, ifaces in SIZES:
        base = tempfile.mkdtemp(prefix="procship-scale-")
        holder, target = heavy_host(procs, mounts, ifaces, base)
        try:
            floor, _ = measure(target, [bench.FLOOR, "-p"], {}, args.w, args.d)
            ps, ps_rss = measure(target, [bench.PROCSHIP], env, args.w, args.d)
            port = 19_100
            ne, ne_rss = measure(target, [bench.NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}"],
                                 None, args.w, args.d, scrape_port=port)
        finally:
            for c in children(holder.pid):
                os.kill(c, signal.SIGKILL)
            holder.wait(timeout=30)
            os.rmdir(base) if not os.listdir(base) else subprocess.run(["rm", "-rf", base])
        print(f"| {procs:,}, {mounts:,}, {ifaces:,} | {floor:,.0f} | {ps:,.0f} | {ps / floor:.2f}× "
              f"| {ps_rss:.1f} MiB | {ne:,.0f} | {ne / floor:.2f}× | {ne_rss:.1f} MiB |", flush=True)


if __name__ == "__main__":
    main()
