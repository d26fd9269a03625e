//! Every wire format against the real servers, from Debian's packages
//! (`apt-get install victoria-metrics prometheus influxdb`; scripts/test.sh
//! installs them): each test starts its server on 127.0.0.1 with its data in
//! a temporary directory, runs the agent for a few cycles and reads back
//! through the server's own query API.
//!
//! The agent reads the fixture tree, whose files do not change, so every
//! sample of every series must equal what `procship --once` prints for the
//! same tree; a second agent reads the real host, whose `mem_total` must
//! equal MemTotal × 1024 from /proc/meminfo. A missing server fails the
//! test with the command that installs it: nothing is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;
use serde_json::Value as J;

const INSTALL: &str =
    "apt-get install victoria-metrics prometheus influxdb (scripts/test.sh does it)";

/// A server from its package, killed and its data removed on drop.
pub(crate) struct Server {
    name: &'static str,
    child: Child,
    dir: PathBuf,
    port: u16,
    pub(crate) base: String,
}

impl Server {
    pub(crate) fn spawn(
        name: &'static str,
        bin: &str,
        dir: PathBuf,
        port: u16,
        args: &[String],
    ) -> Server {
        let path = Path::new("/usr/bin").join(bin);
        assert!(
            path.exists(),
            "{name}: {} is missing; install it: {INSTALL}",
            path.display()
        );
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let child = Command::new(&path)
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start {}: {e}", path.display()));
        Server {
            name,
            child,
            dir,
            port,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Waits (bounded) until `path` answers `want`.
    pub(crate) fn ready(self, path: &str, want: u16) -> Server {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http().get(&format!("{}{path}", self.base)).call()
                && r.status().as_u16() == want
            {
                return self;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not become ready:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn victoria_metrics() -> Server {
        let dir = tempdir("vm");
        let port = free_port();
        Server::spawn(
            "victoria-metrics",
            "victoria-metrics",
            dir.clone(),
            port,
            &[
                format!("-storageDataPath={}", dir.join("data").display()),
                format!("-httpListenAddr=127.0.0.1:{port}"),
                // Samples are searchable as soon as they are flushed.
                "-search.latencyOffset=0s".into(),
                "-search.disableCache".into(),
                "-loggerLevel=WARN".into(),
            ],
        )
        .ready("/health", 200)
    }

    fn prometheus() -> Server {
        let dir = tempdir("prom");
        let port = free_port();
        std::fs::write(
            dir.join("prometheus.yml"),
            "global:\n  scrape_interval: 1h\n",
        )
        .unwrap();
        Server::spawn(
            "prometheus",
            "prometheus",
            dir.clone(),
            port,
            &[
                format!("--config.file={}", dir.join("prometheus.yml").display()),
                format!("--storage.tsdb.path={}", dir.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--web.enable-remote-write-receiver".into(),
                "--log.level=warn".into(),
            ],
        )
        .ready("/-/ready", 200)
    }

    /// InfluxDB 1.x with authentication on, an admin user and a database.
    fn influxdb(user: &str, password: &str, db: &str) -> Server {
        let dir = tempdir("influx");
        let (port, rpc) = (free_port(), free_port());
        let conf = format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [http]\n  bind-address = \"127.0.0.1:{port}\"\n  auth-enabled = true\n  log-enabled = false\n\
             [monitor]\n  store-enabled = false\n\
             [continuous_queries]\n  enabled = false\n",
            d = dir.display()
        );
        std::fs::write(dir.join("influxdb.conf"), conf).unwrap();
        let s = Server::spawn(
            "influxdb",
            "influxd",
            dir.clone(),
            port,
            &[
                "-config".into(),
                dir.join("influxdb.conf").display().to_string(),
            ],
        )
        .ready("/ping", 204);
        // With no user yet, InfluxDB takes this one statement unauthenticated.
        s.influxql(
            None,
            &format!("CREATE USER {user} WITH PASSWORD '{password}' WITH ALL PRIVILEGES"),
        );
        s.influxql(Some((user, password)), &format!("CREATE DATABASE {db}"));
        s
    }

    /// Runs an InfluxQL statement; returns the parsed answer.
    fn influxql(&self, auth: Option<(&str, &str)>, q: &str) -> J {
        let form = [("q", q.to_string()), ("epoch", "ns".into())];
        // Basic auth from the URL's user:password, as the agent sends it.
        let url = match auth {
            Some((u, p)) => format!("http://{u}:{p}@127.0.0.1:{}/query", self.port),
            None => format!("{}/query", self.base),
        };
        let mut r = http()
            .post(&url)
            .send_form(form.iter().map(|(k, v)| (*k, v.as_str())))
            .unwrap_or_else(|e| panic!("influxdb {q}: {e}"));
        let body = r.body_mut().read_to_string().unwrap();
        assert_eq!(r.status().as_u16(), 200, "influxdb {q}: {body}");
        let v: J = serde_json::from_str(&body).unwrap();
        assert!(
            v["results"][0].get("error").is_none(),
            "influxdb {q}: {body}"
        );
        v
    }

    /// GET of a query API path with form parameters; the parsed answer.
    pub(crate) fn query(&self, path: &str, params: &[(&str, &str)]) -> J {
        let mut r = http()
            .post(&format!("{}{path}", self.base))
            .send_form(params.iter().copied())
            .unwrap_or_else(|e| panic!("{} {path}: {e}", self.name));
        let body = r.body_mut().read_to_string().unwrap();
        assert_eq!(
            r.status().as_u16(),
            200,
            "{} {path} {params:?}: {body}",
            self.name
        );
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(15)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// Labels of a series without `host` (which names the run).
type Labels = BTreeMap<String, String>;
/// Series name and labels → samples (ms timestamp, value).
type Store = BTreeMap<(String, Labels), Vec<(i64, f64)>>;

fn fixture_vars() -> Vec<(&'static str, String)> {
    let fx = fixture("basic");
    vec![
        ("PROCSHIP_HOST_PROC", fx.join("proc").display().to_string()),
        ("PROCSHIP_HOST_SYS", fx.join("sys").display().to_string()),
        ("PROCSHIP_HOST_ROOT", fx.join("root").display().to_string()),
        // statvfs of the fixture's mount points reports this machine's
        // disks, and adjtimex its clock (which moves between cycles).
        ("PROCSHIP_COLLECTORS", "all,-disk,-timex".into()),
        ("PROCSHIP_TAGS", "env=test".into()),
    ]
}

/// What `--once` prints for the fixture tree: every series and its value.
fn expected() -> BTreeMap<(String, Labels), f64> {
    let mut vars = fixture_vars();
    vars.push(("PROCSHIP_FORMAT", "json".into()));
    vars.push(("PROCSHIP_INTERVAL", "0.1".into()));
    let out = procship(&refs(&vars)).arg("--once").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: J = serde_json::from_slice(&out.stdout).unwrap();
    let mut want = BTreeMap::new();
    for p in v["points"].as_array().unwrap() {
        let mut labels: Labels = p["tags"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        labels.remove("host");
        for (f, x) in p["fields"].as_object().unwrap() {
            let name = format!("{}_{f}", p["measurement"].as_str().unwrap());
            want.insert((name, labels.clone()), x.as_f64().unwrap());
        }
    }
    assert!(want.len() > 150, "the fixture yields {} series", want.len());
    want
}

/// Runs the agent against `url` until it has delivered a few cycles, then
/// stops it; asserts every point was delivered and returns its stderr.
fn ship(url: &str, format: &str, host: &str, extra: &[(&'static str, String)]) -> String {
    let mut vars = vec![
        ("PROCSHIP_INGEST_URL", url.to_string()),
        ("PROCSHIP_FORMAT", format.to_string()),
        ("PROCSHIP_HOSTNAME", host.to_string()),
        ("PROCSHIP_INTERVAL", "0.25".into()),
        ("PROCSHIP_FLUSH_INTERVAL", "0.25".into()),
        ("PROCSHIP_FLUSH_JITTER", "0".into()),
        ("PROCSHIP_RETRY_INITIAL", "0.1".into()),
        ("PROCSHIP_RETRY_MAX_DELAY", "0.5".into()),
        // The agent's own points every cycle: the cycles are counted by them.
        ("PROCSHIP_SELF_INTERVAL", "0.25".into()),
    ];
    let status = free_port();
    vars.push(("PROCSHIP_STATUS_ADDR", status.to_string()));
    vars.extend(extra.iter().cloned());
    let agent = Agent::start(&refs(&vars));
    wait_delivered(status, 6, Duration::from_secs(30));
    let (status, _, err) = agent.stop(Duration::from_secs(15));
    assert!(status.success(), "{err}");
    let a = account(&err);
    assert!(a.collected > 0 && a.balanced(), "{a:?}\n{err}");
    assert_eq!((a.sent, a.dropped), (a.collected, 0), "{host}: {err}");
    err
}

fn labels_of(metric: &serde_json::Map<String, J>) -> (String, Labels, String) {
    let mut labels: Labels = metric
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    let name = labels.remove("__name__").unwrap_or_default();
    let host = labels.remove("host").unwrap_or_default();
    (name, labels, host)
}

/// Every series of `host` in VictoriaMetrics, with raw samples (/api/v1/export).
fn vm_export(vm: &Server, selector: &str) -> Store {
    let mut r = http()
        .post(&format!("{}/api/v1/export", vm.base))
        .send_form([("match[]", selector)])
        .unwrap();
    let body = r.body_mut().read_to_string().unwrap();
    let mut store = Store::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let v: J = serde_json::from_str(line).unwrap();
        let (name, labels, _) = labels_of(v["metric"].as_object().unwrap());
        let ts = v["timestamps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_i64().unwrap());
        let vals = v["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap());
        let mut samples: Vec<(i64, f64)> = ts.zip(vals).collect();
        samples.sort_by_key(|s| s.0);
        store.insert((name, labels), samples);
    }
    store
}

/// Raw samples from Prometheus' query API (a range selector at `now`).
fn prom_export(p: &Server, selector: &str) -> Store {
    let v = p.query("/api/v1/query", &[("query", &format!("{selector}[10m]"))]);
    let mut store = Store::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let (name, labels, _) = labels_of(s["metric"].as_object().unwrap());
        let samples = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                let t = pair[0].as_f64().unwrap();
                let x: f64 = pair[1].as_str().unwrap().parse().unwrap();
                ((t * 1000.0).round() as i64, x)
            })
            .collect();
        store.insert((name, labels), samples);
    }
    store
}

/// Every field of every measurement of `host` in an InfluxDB database,
/// named `<measurement>_<field>` like the other formats.
fn influx_export(s: &Server, auth: (&str, &str), db: &str, host: &str) -> Store {
    let v = s.influxql(
        Some(auth),
        &format!("SELECT * FROM {db}.autogen./.*/ WHERE host = '{host}' GROUP BY *"),
    );
    let mut store = Store::new();
    for series in v["results"][0]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let m = series["name"].as_str().unwrap();
        let mut labels: Labels = series["tags"]
            .as_object()
            .map(|t| {
                t.iter()
                    .filter(|(_, v)| v.as_str().is_some_and(|v| !v.is_empty()))
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        labels.remove("host");
        let cols: Vec<&str> = series["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        for row in series["values"].as_array().unwrap() {
            let t = row[0].as_i64().unwrap() / 1_000_000;
            for (c, x) in cols.iter().zip(row.as_array().unwrap()).skip(1) {
                if let Some(x) = x.as_f64() {
                    store
                        .entry((format!("{m}_{c}"), labels.clone()))
                        .or_default()
                        .push((t, x));
                }
            }
        }
    }
    store
}

/// Polls (bounded) until `fetch` sees the agent's last cycle in every series.
fn settled(what: &str, mut fetch: impl FnMut() -> Store) -> Store {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Store::new();
    loop {
        let s = fetch();
        if !s.is_empty() && s == last {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the store never settled: {s:?}"
        );
        last = s;
        std::thread::sleep(Duration::from_millis(700));
    }
}

/// The store holds exactly the fixture's series (plus the agent's own),
/// every sample equal to `--once`'s value, all at the agent's cycle times.
fn assert_matches_fixture(what: &str, got: &Store, want: &BTreeMap<(String, Labels), f64>) {
    let (agent, data): (Store, Store) = got
        .clone()
        .into_iter()
        .partition(|((name, _), _)| name.starts_with("agent_"));
    let cycles: BTreeSet<i64> = agent
        .iter()
        .find(|((n, _), _)| n == "agent_collected")
        .unwrap_or_else(|| panic!("{what}: no agent_collected series"))
        .1
        .iter()
        .map(|s| s.0)
        .collect();
    assert!(
        cycles.len() >= 3,
        "{what}: only {} cycles stored",
        cycles.len()
    );
    let got_keys: BTreeSet<_> = data.keys().collect();
    let want_keys: BTreeSet<_> = want.keys().collect();
    let missing: Vec<_> = want_keys.difference(&got_keys).take(5).collect();
    let extra: Vec<_> = got_keys.difference(&want_keys).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: series differ from --once's; missing {missing:?}, unexpected {extra:?}"
    );
    for (key, samples) in &data {
        let w = want[key];
        // CPU usage needs two cycles, so it starts one cycle late.
        assert!(
            samples.len() + 1 >= cycles.len(),
            "{what}: {key:?} has {} samples for {} cycles",
            samples.len(),
            cycles.len()
        );
        for (t, x) in samples {
            assert!(
                cycles.contains(t),
                "{what}: {key:?} sample at {t} is not a cycle's time {cycles:?}"
            );
            let close = if w.fract() == 0.0 {
                *x == w
            } else {
                (x - w).abs() <= 1e-9 * w.abs().max(1.0)
            };
            assert!(close, "{what}: {key:?} at {t} is {x}, --once printed {w}");
        }
    }
    eprintln!(
        "{what}: {} series × {} cycles equal --once's values",
        data.len(),
        cycles.len()
    );
}

/// MemTotal × 1024 of this machine, as `mem_total` must carry it.
fn host_mem_total() -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = text.lines().find(|l| l.starts_with("MemTotal:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    (kb * 1024) as f64
}

fn assert_real_mem_total(what: &str, got: &Store) {
    let mem: Vec<_> = got.iter().filter(|((n, _), _)| n == "mem_total").collect();
    assert_eq!(mem.len(), 1, "{what}: one mem_total series: {mem:?}");
    let samples = mem[0].1;
    assert!(samples.len() >= 3, "{what}: {samples:?}");
    assert!(
        samples.iter().all(|s| s.1 == host_mem_total()),
        "{what}: mem_total {samples:?} != MemTotal × 1024 = {}",
        host_mem_total()
    );
}

#[test]
fn victoria_metrics_stores_the_same_series_from_every_protocol() {
    let vm = Server::victoria_metrics();
    let want = expected();
    let fx = fixture_vars();
    let routes = [
        ("influx", "/write", "via-influx"),
        ("influx", "/api/v2/write?org=o&bucket=b", "via-influx2"),
        ("prometheus", "/api/v1/write", "via-remote-write"),
    ];
    for (format, path, host) in routes {
        ship(&format!("{}{path}", vm.base), format, host, &fx);
    }
    let mut stores = Vec::new();
    for (format, path, host) in routes {
        let got = settled(host, || vm_export(&vm, &format!("{{host=\"{host}\"}}")));
        assert_matches_fixture(&format!("victoria-metrics {format} {path}"), &got, &want);
        stores.push(got.into_keys().collect::<BTreeSet<_>>());
    }
    assert!(
        stores.windows(2).all(|w| w[0] == w[1]),
        "same names and labels whichever protocol"
    );

    ship(
        &format!("{}/api/v1/write", vm.base),
        "prometheus",
        "real-host",
        &[("PROCSHIP_COLLECTORS", "mem".into())],
    );
    let got = settled("real-host", || vm_export(&vm, "{host=\"real-host\"}"));
    assert_real_mem_total("victoria-metrics", &got);

    // The site's own metrics keep their names, by remote write and by line protocol.
    let textfiles = fixture("textfile").join("root/var/lib/textfile");
    for (format, path, host) in [
        ("prometheus", "/api/v1/write", "site-rw"),
        ("influx", "/write", "site-influx"),
    ] {
        let site = [
            ("PROCSHIP_COLLECTORS", "textfile".into()),
            ("PROCSHIP_TEXTFILE_DIR", textfiles.display().to_string()),
        ];
        ship(&format!("{}{path}", vm.base), format, host, &site);
        let got = settled(host, || vm_export(&vm, &format!("{{host=\"{host}\"}}")));
        let name = if format == "prometheus" {
            "backup_age_seconds"
        } else {
            "backup_age_seconds_value"
        };
        let key = (
            name.to_string(),
            Labels::from([("job".to_string(), "nightly".to_string())]),
        );
        let samples = got
            .get(&key)
            .unwrap_or_else(|| panic!("{format}: no {key:?} in {:?}", got.keys()));
        assert!(samples.iter().all(|(_, v)| *v == 3600.0), "{samples:?}");
    }
}

#[test]
fn prometheus_remote_write_receiver_takes_every_series() {
    let p = Server::prometheus();
    let want = expected();
    ship(
        &format!("{}/api/v1/write", p.base),
        "prometheus",
        "via-prom",
        &fixture_vars(),
    );
    let got = settled("prometheus", || prom_export(&p, "{host=\"via-prom\"}"));
    assert_matches_fixture("prometheus", &got, &want);

    ship(
        &format!("{}/api/v1/write", p.base),
        "prometheus",
        "real-host",
        &[("PROCSHIP_COLLECTORS", "mem".into())],
    );
    let got = settled("real-host", || prom_export(&p, "{host=\"real-host\"}"));
    assert_real_mem_total("prometheus", &got);
}

#[test]
fn influxdb_v1_with_auth_takes_line_protocol_and_refuses_a_wrong_password() {
    let (user, password, db) = ("procship", "s3cret-pw", "telegraf");
    let s = Server::influxdb(user, password, db);
    let url = |pw: &str| format!("http://{user}:{pw}@127.0.0.1:{}/write?db={db}", s.port);
    let want = expected();
    ship(&url(password), "influx", "via-influxdb", &fixture_vars());
    let got = settled("influxdb", || {
        influx_export(&s, (user, password), db, "via-influxdb")
    });
    assert_matches_fixture("influxdb /write", &got, &want);

    ship(
        &url(password),
        "influx",
        "real-host",
        &[("PROCSHIP_COLLECTORS", "mem".into())],
    );
    let got = settled("real-host", || {
        influx_export(&s, (user, password), db, "real-host")
    });
    assert_real_mem_total("influxdb", &got);

    // A wrong password: batches are kept and retried (an operator's mistake
    // that will be fixed), the log says why once; without a spool, what is
    // still queued at the stop is counted as shutdown.
    let mut vars = fast(&url("wrong"));
    vars.push(("PROCSHIP_FORMAT", "influx".into()));
    vars.push(("PROCSHIP_COLLECTORS", "mem".into()));
    vars.push(("PROCSHIP_SHUTDOWN_TIMEOUT", "0.5".into()));
    let agent = Agent::start(&refs(&vars));
    wait_for("a refused batch", Duration::from_secs(20), || {
        agent.stderr().contains("status=401")
    });
    let (status, _, err) = agent.stop(Duration::from_secs(15));
    assert!(status.success(), "{err}");
    let a = account(&err);
    assert_eq!((a.sent, a.rejected), (0, 0), "{err}");
    assert_eq!(a.dropped, a.collected, "{a:?}");
    let refused: Vec<&str> = err.lines().filter(|l| l.contains("status=401")).collect();
    assert_eq!(refused.len(), 1, "one ERROR per episode: {err}");
    let line = refused[0];
    assert!(
        line.contains("ERROR")
            && line.contains("authentication failed")
            && line.contains("authorization failed")
            && line.contains(&format!("{user}:****@"))
            && !err.contains("wrong"),
        "{line}"
    );
}

/// A Grafana dashboard of packaging/grafana: its host variable's query
/// (if it has one) and every panel's queries (rows have none).
fn dashboard_queries(file: &str) -> (Option<String>, Vec<(String, String)>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging/grafana")
        .join(file);
    let d: J = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let vars = d["templating"]["list"].as_array().unwrap();
    let variable = vars
        .iter()
        .find(|v| v["name"] == "host")
        .map(|v| v["query"]["query"].as_str().unwrap().to_string());
    let mut queries = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap();
        for t in p["targets"].as_array().into_iter().flatten() {
            queries.push((title.to_string(), t["expr"].as_str().unwrap().to_string()));
        }
    }
    (variable, queries)
}

/// Waits (bounded) until `q` returns data; every series that names a host
/// names `host`. Returns how many series.
fn returns_data(vm: &Server, title: &str, q: &str, host: &str) -> usize {
    let mut series = 0;
    wait_for(
        &format!("data for {title}: {q}"),
        Duration::from_secs(20),
        || {
            let v = vm.query("/api/v1/query", &[("query", q)]);
            assert_eq!(v["status"], "success", "{title}: {q}: {v}");
            let r = v["data"]["result"].as_array().unwrap();
            series = r.len();
            !r.is_empty()
                && r.iter().all(|s| {
                    let h = &s["metric"]["host"];
                    h.is_null() || h == host
                })
        },
    );
    series
}

#[test]
fn grafana_dashboards_queries_all_return_data_from_victoria_metrics() {
    let (variable, host_queries) = dashboard_queries("procship.json");
    let (none, fleet_queries) = dashboard_queries("procship-fleet.json");
    assert!(none.is_none(), "the fleet dashboard has no host variable");
    assert!(host_queries.len() >= 20, "{host_queries:?}");
    assert!(fleet_queries.len() >= 12, "{fleet_queries:?}");
    let vm = Server::victoria_metrics();
    ship(
        &format!("{}/api/v1/write", vm.base),
        "prometheus",
        "dash-host",
        &[("PROCSHIP_COLLECTORS", "default".into())],
    );
    // The host selector: label_values(<metric>, host) lists the host.
    let variable = variable.expect("a host variable");
    let metric = variable
        .strip_prefix("label_values(")
        .and_then(|s| s.strip_suffix(", host)"))
        .unwrap_or_else(|| panic!("unexpected variable query {variable}"));
    wait_for("the host in the selector", Duration::from_secs(30), || {
        let v = vm.query("/api/v1/label/host/values", &[("match[]", metric)]);
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "dash-host")
    });
    for (title, expr) in host_queries.iter().chain(&fleet_queries) {
        let q = expr
            .replace("$host", "dash-host")
            .replace("$__rate_interval", "1m");
        assert!(
            !q.contains('$') || q.contains("\"$1\""),
            "{title}: a variable this test does not know: {expr}"
        );
        let series = returns_data(&vm, title, &q, "dash-host");
        eprintln!("{title}: {q} → {series} series");
    }
}

/// nginx from Debian terminating TLS and requiring a client certificate,
/// in front of a backend; stopped by its PID when dropped.
struct Nginx {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Nginx {
    fn mtls(pki: &crate::tls::Pki, backend_port: u16) -> Nginx {
        let dir = tempdir("nginx");
        let port = free_port();
        let d = dir.display();
        let conf = format!(
            "worker_processes 1;\ndaemon off;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             \x20 fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             \x20 server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n\
             \x20   ssl_client_certificate {};\n    ssl_verify_client on;\n\
             \x20   location / {{ proxy_pass http://127.0.0.1:{backend_port}; }}\n  }}\n}}\n",
            pki.path("server.pem"),
            pki.path("server.key"),
            pki.path("ca.pem"),
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("/usr/sbin/nginx (apt-get install nginx-light)");
        let n = Nginx { child, dir, port };
        wait_for("nginx", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", n.port)).is_ok()
        });
        n
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: a graceful stop of the master and its worker.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGQUIT);
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn victoria_metrics_behind_nginx_with_client_certificates() {
    let vm = Server::victoria_metrics();
    let pki = crate::tls::Pki::new();
    let nginx = Nginx::mtls(&pki, vm.port);
    let url = format!("https://127.0.0.1:{}/api/v1/write", nginx.port);
    let ca = ("PROCSHIP_TLS_CA_FILE", pki.path("ca.pem"));
    let with_cert = [
        ca.clone(),
        ("PROCSHIP_TLS_CERT_FILE", pki.path("agent-1.pem")),
        ("PROCSHIP_TLS_KEY_FILE", pki.path("agent-1.key")),
        ("PROCSHIP_COLLECTORS", "mem".into()),
    ];
    ship(&url, "prometheus", "mtls-host", &with_cert);
    let got = settled("mtls-host", || vm_export(&vm, "{host=\"mtls-host\"}"));
    assert_real_mem_total("victoria-metrics behind nginx", &got);

    // Without a certificate nginx answers 400: kept and retried, named.
    let mut vars = fast(&url);
    vars.push(ca);
    vars.push(("PROCSHIP_FORMAT", "prometheus".into()));
    vars.push(("PROCSHIP_HOSTNAME", "no-cert-host".into()));
    let agent = Agent::start(&refs(&vars));
    wait_for(
        "the client-certificate hint",
        Duration::from_secs(20),
        || {
            agent
                .stderr()
                .contains("the server wants a client certificate")
        },
    );
    let (status, _, err) = agent.stop(Duration::from_secs(15));
    assert!(status.success(), "{err}");
    assert_eq!(
        account(&err).rejected,
        0,
        "not dropped as a bad batch: {err}"
    );
    assert!(vm_export(&vm, "{host=\"no-cert-host\"}").is_empty());
}

/// With node_exporter's names, the expressions node_exporter dashboards
/// use (CPU busy, memory available, filesystem fill, network and disk
/// rates) return data for the
/// host from VictoriaMetrics fed over remote write, by `instance`.
#[test]
fn node_exporter_names_answer_node_exporter_dashboards_queries() {
    let vm = Server::victoria_metrics();
    ship(
        &format!("{}/api/v1/write", vm.base),
        "prometheus",
        "ne-host",
        &[
            ("PROCSHIP_NAMES", "node_exporter".into()),
            (
                "PROCSHIP_COLLECTORS",
                "cpu,mem,system,kernel,net,disk,diskio".into(),
            ),
        ],
    );
    let sel = r#"instance="ne-host",job="node""#;
    for (title, q) in [
        (
            "CPU busy",
            format!(
                r#"100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{{mode="idle",{sel}}}[1m])))"#
            ),
        ),
        (
            "memory available",
            format!(
                "node_memory_MemAvailable_bytes{{{sel}}} / node_memory_MemTotal_bytes{{{sel}}}"
            ),
        ),
        (
            "network rate",
            format!("rate(node_network_receive_bytes_total{{{sel}}}[1m])"),
        ),
        ("load", format!("node_load1{{{sel}}}")),
        (
            "filesystem fill",
            format!(
                r#"100 - node_filesystem_avail_bytes{{fstype!="tmpfs",{sel}}} * 100 / node_filesystem_size_bytes{{fstype!="tmpfs",{sel}}}"#
            ),
        ),
        (
            "disk throughput",
            format!("rate(node_disk_read_bytes_total{{{sel}}}[1m])"),
        ),
        (
            "uptime",
            format!("time() - node_boot_time_seconds{{{sel}}}"),
        ),
    ] {
        let series = returns_data(&vm, title, &q, "ne-host");
        eprintln!("{title}: {q} → {series} series");
    }
}
