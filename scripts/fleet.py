#!/usr/bin/env python3
"""A fleet on one machine: N procship agents (own host names, own spools)
started together against one VictoriaMetrics behind nginx on 127.0.0.1,
with an outage of M seconds injected at the proxy (503 answers, or the
port closed). Reports requests per second (mean, peak, peak/mean in 1 s
buckets) in steady state and after the recovery, the drain time, CPU and
PSS per agent, and points lost and duplicated (per-host samples of the
agent's own point in VictoriaMetrics against the cycles each agent says it
ran).

    cargo build --release
    scripts/fleet.py -n 1000 --outage 300            # the README's figures
    scripts/fleet.py -n 20 --steady 30 --outage 30 --after 60   # a smoke run

Needs Debian's victoria-metrics and nginx-light (scripts/test.sh installs
them). Everything listens on 127.0.0.1; everything it starts it stops, by
PID. The default collectors run without `processes`: on one machine every
agent would walk every other agent's /proc entry, a cost no real host has.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, within, cond):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"fleet: timed out after {within}s waiting for {what}")


def http_get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


class VictoriaMetrics:
    def __init__(self, work):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                "/usr/bin/victoria-metrics",
                f"-storageDataPath={work}/vm",
                f"-httpListenAddr=127.0.0.1:{self.port}",
                "-search.latencyOffset=0s",
                "-search.disableCache",
                "-search.maxUniqueTimeseries=10000000",
                "-loggerLevel=WARN",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(f"{work}/vm.log", "w"),
        )
        wait_until("VictoriaMetrics", 30, lambda: http_get(self.base + "/health")[0] == 200)

    def query(self, q, at):
        url = self.base + "/api/v1/query?" + urllib.parse.urlencode({"query": q, "time": f"{at:.3f}"})
        return json.loads(http_get(url)[1])["data"]["result"]

    def export(self, selector):
        url = self.base + "/api/v1/export?" + urllib.parse.urlencode({"match[]": selector})
        _, body = http_get(url, timeout=300)
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


class Nginx:
    """The fault-injecting proxy: `pass` to VictoriaMetrics, `503`, or `refused`
    (its port closed); modes change with a reload (SIGHUP to its master)."""

    def __init__(self, work, upstream):
        self.work, self.upstream = work, upstream
        self.port, self.spare = free_port(), free_port()
        self.log = f"{work}/access.log"
        self.mode("pass", start=True)

    def conf(self, mode):
        listen = self.spare if mode == "refused" else self.port
        action = "return 503;" if mode == "503" else (
            "proxy_pass http://vm; proxy_http_version 1.1; proxy_set_header Connection \"\";"
        )
        w = self.work
        return f"""worker_processes 2;
daemon off;
pid {w}/nginx.pid;
error_log {w}/nginx-error.log warn;
worker_rlimit_nofile 16384;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {w}/body; proxy_temp_path {w}/proxy;
  fastcgi_temp_path {w}/fcgi; uwsgi_temp_path {w}/uwsgi; scgi_temp_path {w}/scgi;
  log_format fleet '$msec $status $request_length';
  upstream vm {{ server 127.0.0.1:{self.upstream}; keepalive 64; }}
  client_max_body_size 64m;
  client_body_buffer_size 64m;
  keepalive_requests 100000;
  server {{
    listen 127.0.0.1:{listen};
    access_log {self.log} fleet;
    location / {{ {action} }}
  }}
}}
"""

    def mode(self, mode, start=False):
        with open(f"{self.work}/nginx.conf", "w") as f:
            f.write(self.conf(mode))
        if start:
            self.proc = subprocess.Popen(
                ["/usr/sbin/nginx", "-e", f"{self.work}/nginx-error.log", "-c", f"{self.work}/nginx.conf"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_until("nginx", 20, lambda: socket.create_connection(("127.0.0.1", self.port), 1).close() or True)
        else:
            self.proc.send_signal(signal.SIGHUP)
        print(f"fleet: {time.strftime('%H:%M:%S')} proxy: {mode}", flush=True)

    def requests(self):
        out = []
        with open(self.log) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3:
                    out.append((float(parts[0]), int(parts[1]), int(parts[2])))
        return out

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_agents(args, work, url):
    agents = []
    for i in range(args.n):
        host = f"sim-{i:04d}"
        spool = f"{work}/spool/{host}"
        os.makedirs(spool, mode=0o700)
        env = {
            "PATH": "/usr/bin:/bin",
            "PROCSHIP_INGEST_URL": url,
            "PROCSHIP_FORMAT": args.format,
            "PROCSHIP_HOSTNAME": host,
            "PROCSHIP_SPOOL_DIR": spool,
            "PROCSHIP_INTERVAL": str(args.interval),
            "PROCSHIP_FLUSH_INTERVAL": str(args.interval),
            "PROCSHIP_COLLECTORS": "default,-processes",
            "PROCSHIP_SHUTDOWN_TIMEOUT": "30",
        }
        log = open(f"{work}/agents/{host}.log", "w")
        p = subprocess.Popen([args.bin], env=env, stdout=subprocess.DEVNULL, stderr=log)
        agents.append((host, p, log))
    return agents


def buckets(reqs, start, end):
    """Requests per 1 s bucket in [start, end)."""
    c = Counter(int(t) for t, _, _ in reqs if start <= t < end)
    return [c.get(s, 0) for s in range(int(start), int(end))]


def rate_line(name, counts):
    if not counts:
        return f"{name}: no requests"
    mean = statistics.mean(counts)
    peak = max(counts)
    return f"{name}: mean {mean:.1f} req/s, peak {peak} req/s, peak/mean {peak / mean if mean else 0:.2f} (1 s buckets, {len(counts)} s)"


def cpu_and_pss(agents):
    tick = os.sysconf("SC_CLK_TCK")
    cpu, pss = [], []
    for _, p, _ in agents:
        with open(f"/proc/{p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu.append((int(fields[11]) + int(fields[12])) / tick)
        with open(f"/proc/{p.pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss.append(int(line.split()[1]))
    return cpu, pss


def stopped_lines(agents):
    out = {}
    for host, p, log in agents:
        log.close()
        with open(log.name) as f:
            lines = [l for l in f if "stopped;" in l]
        fields = {}
        if lines:
            for tok in lines[-1].split():
                k, _, v = tok.partition("=")
                if v.isdigit():
                    fields[k] = int(v)
        out[host] = fields
    return out


def account(vm, agents, stopped):
    """Per host: cycles the agent ran against samples of its own point."""
    series = vm.export('{__name__="agent_uptime_seconds",host=~"sim-.*"}')
    raw, unique = Counter(), Counter()
    for s in series:
        host = s["metric"].get("host")
        raw[host] += len(s["timestamps"])
        unique[host] += len(set(s["timestamps"]))
    lost = dup = dropped = 0
    for host, _, _ in agents:
        f = stopped.get(host, {})
        lost += max(0, f.get("cycles", 0) - unique[host])
        dup += raw[host] - unique[host]
        dropped += f.get("dropped", 0)
    missing = [h for h, _, _ in agents if "cycles" not in stopped.get(h, {})]
    return lost, dup, dropped, missing, sum(unique.values())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=1000, help="agents")
    ap.add_argument("--steady", type=float, default=120, help="seconds before the outage")
    ap.add_argument("--outage", type=float, default=300, help="outage seconds")
    ap.add_argument("--kind", choices=["503", "refused"], default="503")
    ap.add_argument("--after", type=float, default=240, help="seconds after the recovery")
    ap.add_argument("--interval", type=float, default=10)
    ap.add_argument("--format", default="influx", choices=["influx", "prometheus", "otlp", "json"])
    ap.add_argument("--bin", default=f"{ROOT}/target/release/procship")
    args = ap.parse_args()
    path = {"influx": "/write", "prometheus": "/api/v1/write", "otlp": "/opentelemetry/v1/metrics", "json": "/write"}[args.format]
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"fleet: {args.bin} is missing: cargo build --release")

    work = tempfile.mkdtemp(prefix="procship-fleet-")
    # nginx's workers (nobody, when started as root) must reach their files.
    os.chmod(work, 0o755)
    os.makedirs(f"{work}/agents")
    vm = VictoriaMetrics(work)
    proxy = Nginx(work, vm.port)
    agents = []
    try:
        t0 = time.time()
        agents = start_agents(args, work, f"http://127.0.0.1:{proxy.port}{path}")
        print(f"fleet: {len(agents)} agents started in {time.time() - t0:.1f} s (work dir {work})", flush=True)
        warm = t0 + 2 * args.interval
        time.sleep(max(0, t0 + args.steady - time.time()))
        t_out = time.time()
        proxy.mode(args.kind)
        time.sleep(args.outage)
        t_rec = time.time()
        proxy.mode("pass")
        window = int(args.outage)
        progress = []
        while time.time() < t_rec + args.after:
            r = vm.query(f'sum(count_over_time(agent_uptime_seconds{{host=~"sim-.*"}}[{window}s]))', t_rec)
            progress.append((time.time(), float(r[0]["value"][1]) if r else 0.0))
            time.sleep(2)
        cpu, pss = cpu_and_pss(agents)
        elapsed = time.time() - t0
        for _, p, _ in agents:
            p.send_signal(signal.SIGTERM)
        for _, p, _ in agents:
            p.wait(timeout=120)
        t_end = time.time()
        time.sleep(2)
        stopped = stopped_lines(agents)
        agents = []
        reqs = proxy.requests()
        final = progress[-1][1] if progress else 0
        drained = next((t for t, v in progress if v >= final), t_rec)
        lost, dup, dropped, missing, samples = account(vm, [(h, None, None) for h in stopped], stopped)

        print(f"\nfleet: {args.n} agents, {args.format}, interval {args.interval:g} s, "
              f"outage {args.outage:g} s ({args.kind}) after {args.steady:g} s, {args.after:g} s after")
        print(rate_line("steady (before the outage)", buckets(reqs, warm, t_out)))
        print(rate_line("after the recovery", buckets(reqs, t_rec, t_rec + args.after)))
        steady_peak = max(buckets(reqs, warm, t_out) or [0])
        after_peak = max(buckets(reqs, t_rec, t_rec + args.after) or [0])
        print(f"post-outage peak / steady peak: {after_peak / steady_peak if steady_peak else 0:.2f}")
        print(f"drain: the outage's samples all in VictoriaMetrics {drained - t_rec:.0f} s after the recovery "
              f"({final:.0f} samples of agent_uptime_seconds in the outage window)")
        big = [l for _, s, l in reqs if s < 300]
        if big:
            print(f"requests delivered: {len(big)}, median {statistics.median(big):.0f} B, largest {max(big)} B")
        print(f"CPU per agent: {statistics.mean(cpu) / elapsed * 100:.4f} % of a core (mean over {elapsed:.0f} s); "
              f"PSS per agent: mean {statistics.mean(pss) / 1024:.2f} MiB, max {max(pss) / 1024:.2f} MiB")
        print(f"points: {samples} agent samples stored; lost {lost} cycles, duplicated {dup} samples, "
              f"dropped {dropped} points by the agents' own account; agents without a final line: {len(missing)}")
        print(f"stop: {t_end - t_rec - args.after:.1f} s for every agent to deliver what was pending and exit")
        return 0 if lost == 0 and dup == 0 and dropped == 0 and not missing else 1
    finally:
        for _, p, _ in agents:
            p.kill()
        proxy.stop()
        vm.stop()


if __name__ == "__main__":
    sys.exit(main())
