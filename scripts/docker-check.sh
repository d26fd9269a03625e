#!/usr/bin/env bash
# The project's Dockerfile built and run by a real Docker daemon from
# Debian's docker.io, offline (CI, as root):
#  - a private dockerd (--iptables=false --bridge=none, its own data root and
#    socket) is started here and stopped by its PID at exit;
#  - the base images the Dockerfile names are made here: a debootstrap
#    minimal Debian root from the apt mirror this machine uses, imported as
#    the runtime image's name (gcr.io/distroless/cc-debian12:nonroot), and
#    the same root with gcc, this machine's Rust toolchain and cargo's
#    registry cache (so the build is offline) as rust:1.95-bookworm;
#  - the unchanged Dockerfile is built with the legacy builder, which takes
#    those local images by name;
#  - the image is run the README's way and must report the host (memory
#    total, host name, the root filesystem), run as uid 65532, and keep its
#    spool across a kill while the backend is down: started again with a
#    backend, every batch of the first run arrives.
#  - the same env file read by the agent itself, through
#    `docker run --env-file` and through systemd's own parser (its
#    environment.d generator, which needs no systemd PID 1) gives the same
#    configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '== docker-check: %s\n' "$*"; }
fail() { printf 'docker-check: FAIL: %s\n' "$*" >&2; exit 1; }

work=$(mktemp -d /tmp/procship-docker.XXXXXX)
sock="$work/docker.sock"
export DOCKER_HOST="unix://$sock"
receiver_pid=""
cleanup() {
  set +e
  [ -n "$receiver_pid" ] && kill "$receiver_pid" 2>/dev/null
  if [ -S "$sock" ]; then
    docker rm -f procship-ci >/dev/null 2>&1
    docker volume rm procship-ci-spool >/dev/null 2>&1
  fi
  if [ -f "$work/dockerd.pid" ]; then
    pid=$(cat "$work/dockerd.pid")
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  # dockerd leaves its network namespace mounted under the exec root.
  umount -R "$work/exec/netns/default" "$work/data" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

say "dockerd"
dockerd --iptables=false --bridge=none --data-root "$work/data" --exec-root "$work/exec" \
  --pidfile "$work/dockerd.pid" -H "unix://$sock" >"$work/dockerd.log" 2>&1 &
for _ in $(seq 1 150); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
docker info >/dev/null 2>&1 || { cat "$work/dockerd.log"; fail "dockerd did not start"; }

# The first Debian mirror apt is configured with.
mirror=$(grep -hoE '^(URIs:|deb) +[^ ]+' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
  | grep -m1 -oE 'https?://[^ ]*debian/?$' || true)
mirror=${mirror:-http://deb.debian.org/debian}
say "debootstrap from $mirror"
mkdir -p "$work/cache"
debootstrap --variant=minbase --cache-dir="$work/cache" bookworm "$work/runtime" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log"; fail "debootstrap"; }
debootstrap --variant=minbase --cache-dir="$work/cache" --include=gcc,libc6-dev bookworm "$work/build" "$mirror" \
  >>"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; fail "debootstrap (build root)"; }

say "base images"
tar -C "$work/runtime" -c . | docker import - gcr.io/distroless/cc-debian12:nonroot >/dev/null
sysroot=$(rustc --print sysroot)
mkdir -p "$work/build/usr/local/rust" "$work/build/usr/local/cargo"
cp -a "$sysroot/bin" "$sysroot/lib" "$work/build/usr/local/rust/"
cp -a "${CARGO_HOME:-$HOME/.cargo}/registry" "$work/build/usr/local/cargo/"
tar -C "$work/build" -c . | docker import \
  --change 'ENV PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV CARGO_HOME=/usr/local/cargo' \
  --change 'ENV CARGO_NET_OFFLINE=true' \
  - rust:1.95-bookworm >/dev/null
rm -rf "$work/build" "$work/runtime"

say "docker build (the repository's Dockerfile, legacy builder)"
start=$(date +%s)
DOCKER_BUILDKIT=0 docker build -q -t procship:ci . >"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; fail "docker build"; }
say "built in $(( $(date +%s) - start )) s"

run() { # the README's mounts and namespaces, then the arguments
  docker run --rm --pid=host --network=host \
    -v /proc:/host/proc:ro -v /sys:/host/sys:ro -v /:/host/root:ro "$@"
}

say "the host's points"
out=$(run procship:ci --once --format influx --collectors mem,disk)
mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
host=$(cat /etc/hostname 2>/dev/null || hostname)
grep -q "^mem,host=$host .*total=$((mem_kb * 1024))i" <<<"$out" || fail "no mem total of this host ($host, $mem_kb kB): $out"
grep -q "^disk,.*path=/[ ,]" <<<"$out" || fail "no root filesystem: $out"

say "non-root, and the spool across a kill with the backend down"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
docker volume create procship-ci-spool >/dev/null
docker run -d --name procship-ci --pid=host --network=host \
  -v /proc:/host/proc:ro -v /sys:/host/sys:ro -v /:/host/root:ro \
  -v procship-ci-spool:/var/lib/procship \
  -e PROCSHIP_INGEST_URL="http://127.0.0.1:$port/write" -e PROCSHIP_FORMAT=json \
  -e PROCSHIP_INTERVAL=0.5 -e PROCSHIP_FLUSH_INTERVAL=0.5 -e PROCSHIP_COLLECTORS=mem,system \
  procship:ci >/dev/null
pid=$(docker inspect -f '{{.State.Pid}}' procship-ci)
[ "$pid" != 0 ] || { docker logs procship-ci 2>&1 | tail -5; fail "the container stopped at once"; }
uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
[ "$uid" = 65532 ] || fail "the agent runs as uid $uid, not 65532"
for _ in $(seq 1 100); do docker logs procship-ci 2>&1 | grep -q "delivery failed" && break; sleep 0.1; done
sleep 3
docker kill procship-ci >/dev/null
python3 - "$port" "$work/received" <<'PY' &
import http.server, sys
port, path = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            import gzip; body = gzip.decompress(body)
        with open(path, "ab") as f: f.write(body + b"\n")
        self.send_response(204); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
PY
receiver_pid=$!
docker start procship-ci >/dev/null
for _ in $(seq 1 200); do
  docker logs procship-ci 2>&1 | grep -q "recovered" && [ -s "$work/received" ] && break
  sleep 0.1
done
sleep 3
docker stop -t 10 procship-ci >/dev/null
python3 - "$work/received" <<'PY' || { docker logs procship-ci 2>&1 | tail -20; fail "the batches did not all arrive"; }
import json, sys
runs = {}
for line in open(sys.argv[1]):
    if line.strip():
        batch = json.loads(line)
        runs.setdefault(batch["run"], set()).add(batch["seq"])
# The killed run's batches all came from the spool (the backend was down);
# the next run numbers its batches on from the spool's last.
assert len(runs) == 2, f"batches of {len(runs)} runs, not the killed one and the next"
assert all(len(s) >= 2 for s in runs.values()), f"{runs}"
seqs = set().union(*runs.values())
want = set(range(1, max(seqs) + 1))
assert seqs == want, f"missing batches {sorted(want - seqs)}"
print("batches received per run:", sorted(len(s) for s in runs.values()))
PY

say "one env file, read by the agent, through docker run --env-file and by systemd's parser"
cat >"$work/test.env" <<'ENV'
# comments on lines of their own
PROCSHIP_INGEST_URL=https://metrics.example.com/write
PROCSHIP_FORMAT=influx
PROCSHIP_TAGS=dc=ams1,role=db
PROCSHIP_HEADERS=X-Scope-OrgID=team-a
PROCSHIP_INTERVAL=15s
ENV
keys=$(grep -oE '^PROCSHIP_[A-Z_]+' "$work/test.env" | paste -sd '|')
values() { grep -E "^($keys)=" | sed 's/  #.*//'; }
direct=$(target/release/procship --env-file "$work/test.env" --check-config | values)
viadocker=$(run --env-file "$work/test.env" procship:ci --check-config | values)
[ "$(wc -l <<<"$direct")" = 5 ] || fail "the agent read: $direct"
diff <(echo "$direct") <(echo "$viadocker") || fail "the agent and docker --env-file read the file differently"
# systemd's own env-file parser (the one EnvironmentFile= uses), run without
# a systemd PID 1: its environment.d generator prints what it read.
gen=/usr/lib/systemd/user-environment-generators/30-systemd-environment-d-generator
[ -x "$gen" ] || fail "no $gen (apt-get install systemd)"
mkdir -p "$work/xdg/environment.d"
cp "$work/test.env" "$work/xdg/environment.d/procship.conf"
# (It prints a value with shell characters in double quotes; this file has none.)
mapfile -t sysenv < <(env -i XDG_CONFIG_HOME="$work/xdg" HOME="$work/xdg" "$gen" | grep '^PROCSHIP_' |
  sed -E 's/^([A-Z_]+)="(.*)"$/\1=\2/')
: >"$work/empty.env"
viasystemd=$(env -i "${sysenv[@]}" target/release/procship --env-file "$work/empty.env" --check-config | values)
diff <(echo "$direct") <(echo "$viasystemd") || fail "the agent and systemd's parser read the file differently"
say "ok"
