#!/usr/bin/env python3
"""The whole-process benchmark: what procship costs the host it runs on,
side by side with its floor (examples/floor.rs: the same kernel files read,
nothing else) and, when installed, node_exporter from Debian as a peer.

    scripts/bench.py [-d SECONDS] [-w SECONDS] [-r ROUNDS] [--no-peers] [--site]

Every row runs for a window of -d seconds (default 30) after -w seconds of
warm-up (default 5), -r times (default 2), the rows interleaved round by
round; the table gives medians with (min-max). Cadence is 1 s: procship
collects and POSTs one gzip JSON batch a second to a counting HTTP sink on
127.0.0.1 (keep-alive, answers 204); node_exporter is scraped once a second.

CPU per cycle: on-CPU nanoseconds of all the process's threads
(/proc/PID/task/*/schedstat) over the window, divided by the cycles in it
(window / 1 s for the push agent and the floor, scrapes for node_exporter).
The "+ POST" rows are the floor of a push agent: the floor's reads plus
one POST a cycle of a body the size of procship's (POST_BYTES) to the same
sink over one kept-alive connection (one write, one read; examples/floor.rs
-u): what handing the bytes to the kernel and hearing back costs, on this
machine, without any encoding. The "+ POST, 2 threads" rows make that POST
from a second thread the reading thread wakes once a cycle (-t), as
procship's main thread hands its batch to its shipper: the floor of a push
agent with DESIGN.md's threads. "wake-up only" reads nothing (-e): what
waking once a second costs on this machine. The "-n" rows read what procship reads
with node_exporter's names (every interface's netclass attributes, about
22 a link instead of 6: examples/floor.rs -n), the floor of those rows.
RSS: VmHWM (peak) and RssAnon at the window's end, from /proc/PID/status.
Wire: request body bytes the sink received per cycle. Only loopback is
used; every process is started here and stopped by its PID. With --site,
a row adds the site's metrics: 100 .prom files of 5 series and 5 commands
printing one line each (temporary directories, removed afterwards).
"""

import argparse
import gzip
import http.client
import http.server
import os
import signal
import socket
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROCSHIP = os.path.join(ROOT, "target/release/procship")
FLOOR = os.path.join(ROOT, "target/release/examples/floor")
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
# The body the push floor POSTs each cycle: about what procship's gzip'd
# JSON batch of the default collectors is (the table's wire column).
POST_BYTES = 2200


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """A counting HTTP sink on 127.0.0.1: requests and body bytes, and with
    `decompress` also the bytes of the bodies decompressed (`plain`)."""

    def __init__(self, decompress=False):
        sink = self
        self.requests = 0
        self.bytes = 0
        self.plain = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(n)
                sink.requests += 1
                sink.bytes += n
                if decompress:
                    gz = self.headers.get("Content-Encoding") == "gzip"
                    sink.plain += len(gzip.decompress(body)) if gz else n
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def counts(self):
        return self.requests, self.bytes


def cpu_ns(pid):
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that ended meanwhile
    return total


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def wait_port(port, within=10.0):
    end = time.monotonic() + within
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class Scraper:
    """Scrapes a pull agent once a second over one kept-alive connection."""

    def __init__(self, port):
        self.port, self.scrapes, self.bytes, self.stop = port, 0, 0, False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        next_at = time.monotonic()
        while not self.stop:
            try:
                conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
                body = conn.getresponse().read()
            except (OSError, http.client.HTTPException):
                return  # the agent is gone: the window is over
            self.scrapes += 1
            self.bytes += len(body)
            next_at += 1.0
            time.sleep(max(0.0, next_at - time.monotonic()))

    def end(self):
        self.stop = True
        self.thread.join(timeout=15)

    def counts(self):
        return self.scrapes, self.bytes


def site_dirs():
    """(textfile dir, exec dir) for the --site row."""
    base = tempfile.mkdtemp(prefix="procship-bench-site-")
    text, cmds = os.path.join(base, "textfile"), os.path.join(base, "exec")
    os.mkdir(text)
    os.mkdir(cmds, 0o755)
    for f in range(100):
        with open(os.path.join(text, f"{f}.prom"), "w") as out:
            for i in range(5):
                out.write(f'# TYPE site_metric_{i} gauge\nsite_metric_{i}{{file="{f}"}} {f}.5\n')
    for c in range(5):
        path = os.path.join(cmds, f"cmd{c}")
        with open(path, "w") as out:
            out.write(f"#!/bin/sh\necho 'site_command_{c} 1'\n")
        os.chmod(path, 0o755)
    return base, text, cmds


def rows(peers, site):
    env = {
        "PATH": "/usr/bin:/bin",
        "PROCSHIP_INTERVAL": "1",
        "PROCSHIP_FLUSH_INTERVAL": "1",
        "PROCSHIP_FLUSH_JITTER": "0",
        "PROCSHIP_HOSTNAME": "bench",
    }
    out = [
        ("wake-up only", [FLOOR, "-e"], {}, None),
        ("floor-procs", [FLOOR, "-p"], {}, None),
        ("floor", [FLOOR], {}, None),
        ("floor-procs + POST", [FLOOR, "-p"], {}, "post"),
        ("floor + POST", [FLOOR], {}, "post"),
        ("floor-procs + POST, 2 threads", [FLOOR, "-p", "-t"], {}, "post"),
        ("floor + POST, 2 threads", [FLOOR, "-t"], {}, "post"),
        ("floor-procs -n", [FLOOR, "-p", "-n"], {}, None),
        ("floor-procs -n + POST", [FLOOR, "-p", "-n"], {}, "post"),
        ("procship", [PROCSHIP], env, "push"),
        ("procship -processes", [PROCSHIP], dict(env, PROCSHIP_COLLECTORS="default,-processes"), "push"),
        ("procship node_exporter names", [PROCSHIP], dict(env, PROCSHIP_NAMES="node_exporter"), "push"),
        ("procship node_exporter names, remote write", [PROCSHIP],
         dict(env, PROCSHIP_NAMES="node_exporter", PROCSHIP_FORMAT="prometheus"), "push"),
    ]
    if site:
        _, text, cmds = site
        out.append(("procship + site", [PROCSHIP], dict(env, PROCSHIP_TEXTFILE_DIR=text,
                                                        PROCSHIP_EXEC_DIR=cmds), "push"))
    if peers:
        out.append(("node_exporter", [NODE_EXPORTER], {}, "pull"))
    return out


def measure(name, cmd, env, kind, warmup, window):
    sink = Sink() if kind in ("push", "post") else None
    port = free_port()
    if kind == "push":
        env = dict(env, PROCSHIP_INGEST_URL=f"http://127.0.0.1:{sink.port}/write")
    if kind == "post":
        cmd = cmd + ["-u", str(sink.port), "-b", str(POST_BYTES)]
    if kind == "pull":
        cmd = cmd + [f"--web.listen-address=127.0.0.1:{port}"]
    proc = subprocess.Popen(cmd, env=env or None, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd="/")
    scraper = None
    try:
        if kind == "pull":
            wait_port(port)
            scraper = Scraper(port)
        time.sleep(warmup)
        counter = sink or scraper
        c0, b0 = counter.counts() if counter else (0, 0)
        cpu0, t0 = cpu_ns(proc.pid), time.monotonic()
        time.sleep(window)
        cpu1, t1 = cpu_ns(proc.pid), time.monotonic()
        c1, b1 = counter.counts() if counter else (0, 0)
        cycles = (c1 - c0) if kind == "pull" else (t1 - t0)
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        return {
            "name": name,
            "cpu_us": (cpu1 - cpu0) / 1000 / max(cycles, 1),
            "hwm_kib": status_kib(proc.pid, "VmHWM"),
            "anon_kib": status_kib(proc.pid, "RssAnon"),
            "wire": (b1 - b0) / max(cycles, 1) if counter else None,
            "threads": len(os.listdir(f"/proc/{proc.pid}/task")),
        }
    finally:
        if scraper:
            scraper.end()
        stop(proc, sink)


def stop(proc, sink=None, within=15):
    """Stops a process this script started, by its PID (SIGTERM, then
    SIGKILL after `within` seconds), and its sink."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if sink:
        sink.server.shutdown()


def fmt(values, unit=""):
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:,.0f}{unit}"
    return f"{med:,.0f}{unit} ({min(values):,.0f}–{max(values):,.0f})"


def table(results, runs):
    med = {n: statistics.median(r["cpu_us"] for r in rs) for n, rs in results.items()}
    floor_of = {"procship": "floor-procs", "procship -processes": "floor",
                "procship node_exporter names": "floor-procs -n",
                "procship node_exporter names, remote write": "floor-procs -n",
                "procship + site": "procship",
                "node_exporter": "floor-procs", "floor + POST": "floor",
                "floor-procs + POST": "floor-procs",
                "floor + POST, 2 threads": "floor",
                "floor-procs + POST, 2 threads": "floor-procs",
                "floor-procs -n + POST": "floor-procs -n"}
    print(f"\n| row (1 s cadence, {runs} rounds) | CPU µs/cycle, median (min–max) | vs floor "
          "| vs floor + POST | vs floor + POST, 2 threads | peak RSS | anon RSS | wire B/cycle "
          "| threads |")
    print("|---|---|---|---|---|---|---|---|---|")

    def ratio(name, floor):
        if floor not in med or floor == name:
            return "–"
        return f"{med[name] / med[floor]:.2f}× {floor}"

    for name, rs in results.items():
        floor = floor_of.get(name)
        pushed = floor and floor.startswith("floor") and name.startswith("procship")
        wire = [r["wire"] for r in rs if r["wire"] is not None]
        print(f"| {name} | {fmt([r['cpu_us'] for r in rs])} | {ratio(name, floor)} | "
              f"{ratio(name, f'{floor} + POST') if pushed else '–'} | "
              f"{ratio(name, f'{floor} + POST, 2 threads') if pushed else '–'} | "
              f"{statistics.median(r['hwm_kib'] for r in rs) / 1024:.1f} MiB | "
              f"{statistics.median(r['anon_kib'] for r in rs) / 1024:.2f} MiB | "
              f"{fmt(wire) if wire else '–'} | {rs[0]['threads']} |")
    print(f"\nstripped binary: {os.path.getsize(PROCSHIP):,} bytes")


def build():
    # Two builds: one cargo run for both would build procship with the
    # features the example's dev-dependencies unify in, a binary other than
    # the one shipped (other symbol names: the symbol order would not apply).
    for target in (["--bin", "procship"], ["--example", "floor"]):
        subprocess.run(["cargo", "build", "--release", "--quiet", *target], cwd=ROOT, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-d", type=float, default=30, help="window, seconds")
    ap.add_argument("-w", type=float, default=5, help="warm-up, seconds")
    ap.add_argument("-r", type=int, default=2, help="rounds")
    ap.add_argument("--no-peers", action="store_true", help="leave node_exporter out")
    ap.add_argument("--site", action="store_true",
                    help="add a row with 100 .prom files and 5 commands")
    a = ap.parse_args()
    build()
    peers = not a.no_peers
    if peers and not os.access(NODE_EXPORTER, os.X_OK):
        sys.exit("node_exporter is not installed: apt-get install prometheus-node-exporter "
                 "(its service may be left stopped), or pass --no-peers")
    site = site_dirs() if a.site else None
    results = {}
    try:
        for rnd in range(a.r):
            for name, cmd, env, kind in rows(peers, site):
                print(f"round {rnd + 1}/{a.r}: {name}", file=sys.stderr)
                results.setdefault(name, []).append(measure(name, cmd, env, kind, a.w, a.d))
    finally:
        if site:
            shutil.rmtree(site[0], ignore_errors=True)
    table(results, a.r)


if __name__ == "__main__":
    main()
