#!/usr/bin/env python3
"""How procship's cost grows with the host: a heavy host built in private
namespaces, at three sizes, procship beside its floor and node_exporter.

    sudo scripts/scale.py [-d SECONDS] [-w SECONDS] [-n SIZES]

For each size (processes, mounts, interfaces, cgroups) it starts, with
unshare(1), a new PID, mount, network and cgroup namespace holding that
many `sleep` processes, tmpfs mounts, veth interfaces and empty services
under system.slice (created inside, gone with the namespace; the cgroups
live in a group made for the size under the host's cgroup v2 root and are
removed with it: nothing else of the host's is touched), then runs inside
it, one
after the other, the floor with its process walk (examples/floor.rs -p),
procship with its default collectors (batches to stdout: the namespace has
no route to a sink, so this is collection and encoding without the HTTP
round trip) and Debian's node_exporter (scraped once a second from inside
the namespace). CPU per cycle and peak RSS as scripts/bench.py measures
them (on-CPU time of every thread over the window). Then, as procship's
cgroup collector is off by default, the same two with the groups and
without the process walk (so the groups' cost is not lost in the walk's):
the floor reading each group's files (-c) and procship with
`default,-processes,cgroup` (no cgroup v2 on the host, or one this script
cannot make a group in: those columns are left empty). Every process is
started here and stopped by its PID; the namespace's init is killed last,
which ends everything inside it.
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

SIZES = [(100, 10, 2, 10), (2000, 100, 20, 100), (10000, 500, 50, 500)]


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


def cgroup2_mount():
    """Where the host's cgroup v2 hierarchy is mounted, or None."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split(" ")[0] == "cgroup2":
                return left.split(" ")[4]
    return None


def make_parent(groups):
    """The host-side group the namespace's cgroup tree lives in (a child of
    the v2 root made for this size), or None without cgroup v2."""
    root = cgroup2_mount()
    if not root or groups == 0:
        return None
    parent = os.path.join(root, f"procship-scale-{os.getpid()}-{groups}")
    try:
        os.mkdir(parent)
    except OSError as e:  # a read-only or undelegated hierarchy (a container)
        print(f"scale.py: no cgroups at this size: {parent}: {e}", file=sys.stderr)
        return None
    return parent


def remove_parent(parent):
    """Removes the groups made below `parent`, deepest first, once the
    namespace's processes have left them (they die with its init)."""
    if not parent:
        return
    wait_for("the namespace's processes to leave their group", lambda: not any(
        open(os.path.join(d, "cgroup.procs")).read().strip()
        for d, _, _ in os.walk(parent)), 30)
    for d, _, _ in sorted(os.walk(parent), key=lambda w: -w[0].count("/")):
        os.rmdir(d)


def heavy_host(procs, mounts, ifaces, groups, base, parent):
    """The namespace's holder: (unshare's Popen, the PID inside to enter).

    sysfs is mounted again inside (its /sys/class/net shows the namespace's
    interfaces). With `parent`, the holder moves into it and unshares a
    cgroup namespace rooted there; inside, cgroup2 is mounted on
    /sys/fs/cgroup (showing only that subtree), the holder moves to a leaf
    `init` (and this script moves unshare itself there: a group with
    processes in it cannot pass controllers on), the controllers the host
    delegates are enabled, and `groups` empty services are made under
    system.slice."""
    cgroups = "" if not parent else f"""
cg=/sys/fs/cgroup
mount -t cgroup2 cgroup2 $cg
mkdir $cg/init; echo $$ > $cg/init/cgroup.procs
echo moved; read go
for c in $(cat $cg/cgroup.controllers); do echo +$c > $cg/cgroup.subtree_control 2>/dev/null || true; done
mkdir $cg/system.slice
for c in $(cat $cg/system.slice/cgroup.controllers); do
  echo +$c > $cg/system.slice/cgroup.subtree_control 2>/dev/null || true
done
for i in $(seq 1 {groups}); do mkdir $cg/system.slice/scale$i.service; done
"""
    setup = f"""
set -e
mount -t sysfs sysfs /sys
{cgroups}
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
    unshare = ["unshare", "--fork", "--pid", "--mount-proc", "--net", "--mount",
               "--propagation", "private"] + (["--cgroup"] if parent else [])
    cmd = unshare + ["bash", "-c", setup]
    if parent:
        # The cgroup namespace's root is the group unshare runs in.
        cmd = ["bash", "-c", f'echo $$ > {parent}/cgroup.procs && exec "$@"', "-"] + cmd
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    if parent and line.strip() == "moved":
        with open(os.path.join(parent, "init", "cgroup.procs"), "w") as f:
            f.write(str(p.pid))
        p.stdin.write("go\n")
        p.stdin.flush()
        line = p.stdout.readline()
    if line.strip() != "ready":
        p.kill()
        raise RuntimeError(f"the namespace did not come up: {line!r}")
    inner = wait_for("the namespace's init", lambda: children(p.pid), 10)[0]
    return p, inner


def inside(target, cmd, env):
    """Starts `cmd` in `target`'s namespaces: (nsenter's Popen, the program's PID)."""
    p = subprocess.Popen(
        ["nsenter", f"--target={target}", "--pid", "--net", "--mount", "--cgroup", "--"] + cmd,
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
    ap.add_argument("-n", type=int, default=len(SIZES), help="how many of the sizes, smallest first")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("scale.py: needs root (namespaces, mounts, interfaces)")
    bench.build()
    env = {"PATH": "/usr/bin:/bin", "PROCSHIP_INTERVAL": "1", "PROCSHIP_FLUSH_INTERVAL": "1",
           "PROCSHIP_FLUSH_JITTER": "0", "PROCSHIP_HOSTNAME": "scale"}
    print("| processes, mounts, interfaces, cgroups | floor-procs µs/cycle | procship µs/cycle "
          "| vs floor | procship peak RSS | node_exporter µs/cycle | vs floor "
          "| node_exporter peak RSS | floor + cgroups µs/cycle | procship -processes +cgroup µs/cycle "
          "| vs floor |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for procs, mounts, ifaces, groups in SIZES[:args.n]:
        base = tempfile.mkdtemp(prefix="procship-scale-")
        parent = make_parent(groups)
        holder = None
        try:
            holder, target = heavy_host(procs, mounts, ifaces, groups, base, parent)
            floor, _ = measure(target, [bench.FLOOR, "-p"], {}, args.w, args.d)
            ps, ps_rss = measure(target, [bench.PROCSHIP], env, args.w, args.d)
            port = 19_100
            ne, ne_rss = measure(target, [bench.NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}"],
                                 None, args.w, args.d, scrape_port=port)
            cg = "–", "–", "–"
            if parent:
                cg_floor, _ = measure(target, [bench.FLOOR, "-c", "/sys/fs/cgroup/system.slice"],
                                      {}, args.w, args.d)
                cg_ps, _ = measure(target, [bench.PROCSHIP], dict(
                    env, PROCSHIP_COLLECTORS="default,-processes,cgroup", PROCSHIP_CGROUP_MAX="10000"),
                    args.w, args.d)
                cg = f"{cg_floor:,.0f}", f"{cg_ps:,.0f}", f"{cg_ps / cg_floor:.2f}×"
        finally:
            if holder:
                for c in children(holder.pid):
                    os.kill(c, signal.SIGKILL)
                holder.wait(timeout=30)
            remove_parent(parent)
            os.rmdir(base) if not os.listdir(base) else subprocess.run(["rm", "-rf", base])
        print(f"| {procs:,}, {mounts:,}, {ifaces:,}, {groups if parent else 0:,} | {floor:,.0f} "
              f"| {ps:,.0f} | {ps / floor:.2f}× | {ps_rss:.1f} MiB | {ne:,.0f} | {ne / floor:.2f}× "
              f"| {ne_rss:.1f} MiB | {' | '.join(cg)} |", flush=True)


if __name__ == "__main__":
    main()
