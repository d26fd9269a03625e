//! `PROCSHIP_NAMES=node_exporter` against the real node_exporter from
//! Debian (`prometheus-node-exporter`), on this host: both started on
//! 127.0.0.1 and scraped a moment apart. For each compared collector every
//! series node_exporter exposes (name, label names, label values) must be
//! in procship's /metrics, constants equal and counters close; the few
//! deliberate differences are listed with their reason. And `promtool
//! check metrics` finds nothing in procship's text that it does not find in
//! node_exporter's own (node_exporter's meminfo names are camelCase and its
//! entropy is in bits: procship keeps those names, since dashboards use them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::*;

/// node_exporter's collectors compared, and procship's that match them.
const NODE_COLLECTORS: &[&str] = &[
    "cpu",
    "meminfo",
    "loadavg",
    "stat",
    "netdev",
    "entropy",
    "filesystem",
    "diskstats",
    "pressure",
    "vmstat",
    "filefd",
    "conntrack",
    "timex",
    "uname",
    "os",
    "netstat",
    "sockstat",
    "netclass",
    "hwmon",
    "thermal_zone",
];
const PROCSHIP_COLLECTORS: &str = "cpu,mem,system,kernel,net,disk,diskio,pressure,vmstat,filefd,conntrack,timex,info,netstat,netclass,temp";

/// Series node_exporter has and procship does not, and why.
const DIFFERENCES: &[(&str, &str)] = &[
    (
        "node_network_receive_nohandler_total",
        "node_exporter reads it over netlink; /proc/net/dev has no such column",
    ),
    (
        "node_scrape_collector_",
        "a scrape's own bookkeeping: procship reports agent_collector_*",
    ),
    ("node_exporter_build_info", "the exporter's own build"),
    (
        "node_cooling_device_",
        "thermal_zone's cooling devices (fan and throttle states) are not read",
    ),
    (
        "node_nf_conntrack_stat_",
        "per-CPU conntrack event counters from /proc/net/stat/nf_conntrack, not read yet",
    ),
];

/// name → labels → value, from exposition text.
type Series = BTreeMap<String, BTreeMap<BTreeMap<String, String>, f64>>;

fn parse(text: &str) -> Series {
    let mut out = Series::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (head, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (head, ""),
        };
        let labels: BTreeMap<String, String> = labels
            .split("\",")
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), v.trim_matches('"').to_string())
            })
            .collect();
        out.entry(name.to_string())
            .or_default()
            .insert(labels, value.parse().unwrap());
    }
    out
}

/// GET /metrics (ureq: node_exporter answers HTTP/1.1 chunked, kept alive).
fn scrape(port: u16) -> String {
    let mut r = ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .unwrap_or_else(|e| panic!("scrape 127.0.0.1:{port}: {e}"));
    r.body_mut().read_to_string().unwrap()
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn node_exporter() -> (Process, u16) {
    node_exporter_with(NODE_COLLECTORS, &[])
}

fn node_exporter_with(collectors: &[&str], args: &[String]) -> (Process, u16) {
    let bin = Path::new("/usr/bin/prometheus-node-exporter");
    assert!(
        bin.exists(),
        "apt-get install prometheus-node-exporter (scripts/test.sh does it)"
    );
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--collector.disable-defaults");
    for c in collectors {
        cmd.arg(format!("--collector.{c}"));
    }
    cmd.args(args);
    // Both read sysfs, as procship does (not netlink).
    cmd.arg("--no-collector.netclass.netlink");
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = Process(child);
    wait_for("node_exporter answers", Duration::from_secs(20), || {
        listening(port) && scrape(port).contains("node_")
    });
    (p, port)
}

fn procship_node() -> (Agent, u16) {
    procship_node_with(PROCSHIP_COLLECTORS, &[])
}

fn procship_node_with(collectors: &str, vars: &[(&str, &str)]) -> (Agent, u16) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut all = vec![
        ("PROCSHIP_NAMES", "node_exporter"),
        ("PROCSHIP_COLLECTORS", collectors),
        ("PROCSHIP_STATUS_ADDR", &addr),
        ("PROCSHIP_INTERVAL", "0.5"),
        ("PROCSHIP_HOSTNAME", "ne-host"),
    ];
    all.extend_from_slice(vars);
    let agent = Agent::start(&all);
    wait_for("procship's /metrics", Duration::from_secs(20), || {
        listening(port) && scrape(port).contains("node_cpu_seconds_total")
    });
    (agent, port)
}

fn deliberate(name: &str) -> bool {
    DIFFERENCES
        .iter()
        .any(|(d, _)| name == *d || (d.ends_with('_') && name.starts_with(d)))
}

/// Every node_exporter series but the deliberate differences, found in
/// procship's by name and labels (procship adds host, and job and instance,
/// which a scrape adds; an empty label is no label: node_disk_info's udev
/// facts); `check(name, labels, procship's value, node_exporter's)` on each.
/// Returns how many were compared.
fn compare(
    ne: &Series,
    ps: &Series,
    check: impl Fn(&str, &BTreeMap<String, String>, f64, f64),
) -> usize {
    let mut compared = 0;
    for (name, series) in ne
        .iter()
        .filter(|(n, _)| n.starts_with("node_") && !deliberate(n))
    {
        let mine = ps
            .get(name)
            .unwrap_or_else(|| panic!("procship has no {name}"));
        for (labels, value) in series {
            let (_, got) = mine
                .iter()
                .find(|(l, _)| {
                    labels
                        .iter()
                        .all(|(k, v)| v.is_empty() || l.get(k) == Some(v))
                })
                .unwrap_or_else(|| panic!("procship has no {name}{labels:?}: {mine:?}"));
            check(name, labels, *got, *value);
            compared += 1;
        }
    }
    compared
}

#[test]
fn every_node_exporter_series_is_there_with_its_labels_and_values() {
    let (_ne, ne_port) = node_exporter();
    let (agent, ps_port) = procship_node();
    let ps_text = scrape(ps_port);
    let ne_text = scrape(ne_port);
    let (ne, ps) = (parse(&ne_text), parse(&ps_text));
    let compared = compare(&ne, &ps, |name, labels, got, value| {
        let constant = name.starts_with("node_memory_") && name.contains("Total")
            || [
                "node_memory_Hugepagesize_bytes",
                "node_filesystem_size_bytes",
                "node_filesystem_files",
                "node_filesystem_readonly",
                "node_filesystem_device_error",
                "node_disk_info",
                "node_uname_info",
                "node_os_info",
                "node_os_version",
                "node_filefd_maximum",
                "node_nf_conntrack_entries_limit",
                "node_timex_tick_seconds",
                "node_timex_status",
                "node_timex_sync_status",
                "node_entropy_pool_size_bits",
            ]
            .contains(&name);
        if constant {
            assert_eq!(got, value, "{name}{labels:?}");
        } else if name == "node_boot_time_seconds" {
            assert!((got - value).abs() <= 1.0, "{name}: {got} vs {value}");
        } else if name.ends_with("_total") {
            // A counter read a moment apart.
            assert!(
                got >= value * 0.9 - 1.0 && got <= value * 1.1 + 100_000.0,
                "{name}{labels:?}: procship {got}, node_exporter {value}"
            );
        }
    });
    assert!(compared > 100, "only {compared} series compared");
    for labels in ps["node_cpu_seconds_total"].keys() {
        assert_eq!(labels.get("job").map(String::as_str), Some("node"));
        assert_eq!(labels.get("instance").map(String::as_str), Some("ne-host"));
    }
    let (status, _, err) = agent.stop(Duration::from_secs(10));
    assert!(status.success(), "{err}");
}

/// `promtool check metrics` over exposition text: its complaints.
fn promtool_lint(text: &str) -> BTreeSet<String> {
    use std::io::Write;
    let mut child = Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .map(str::to_string)
        .collect()
}

#[test]
fn promtool_finds_nothing_node_exporter_does_not_share() {
    let (_ne, ne_port) = node_exporter();
    let (agent, ps_port) = procship_node();
    let ne = promtool_lint(&scrape(ne_port));
    let ps = promtool_lint(&scrape(ps_port));
    let own: Vec<_> = ps.difference(&ne).collect();
    assert!(own.is_empty(), "promtool on procship's /metrics: {own:?}");
    let (status, _, err) = agent.stop(Duration::from_secs(10));
    assert!(status.success(), "{err}");
}

/// The same on the basic fixture tree, both programs pointed at it with
/// their path flags: every value equal, whatever machine runs the test
/// (filesystems are left out: statvfs would ask the machine's disks).
#[test]
fn on_a_fixture_tree_every_value_is_equal() {
    let fx = fixture("basic");
    let (proc_, sys) = (fx.join("proc"), fx.join("sys"));
    let collectors = [
        "cpu",
        "meminfo",
        "loadavg",
        "stat",
        "netdev",
        "entropy",
        "diskstats",
        "pressure",
        "vmstat",
        "filefd",
        "conntrack",
        "uname",
        "os",
        "netstat",
        "sockstat",
        "netclass",
        "hwmon",
        "thermal_zone",
    ];
    let root = fx.join("root");
    let args = [
        format!("--path.procfs={}", proc_.display()),
        format!("--path.sysfs={}", sys.display()),
        format!("--path.rootfs={}", root.display()),
        // Over netlink it would read this machine's interfaces, not the tree's.
        "--no-collector.netdev.netlink".into(),
    ];
    let (_ne, ne_port) = node_exporter_with(&collectors, &args);
    let (p, s, r) = (
        proc_.display().to_string(),
        sys.display().to_string(),
        root.display().to_string(),
    );
    let (agent, ps_port) = procship_node_with(
        "cpu,mem,system,kernel,net,diskio,pressure,vmstat,filefd,conntrack,info,netstat,netclass,temp",
        &[
            ("PROCSHIP_HOST_PROC", &p),
            ("PROCSHIP_HOST_SYS", &s),
            ("PROCSHIP_HOST_ROOT", &r),
        ],
    );
    let (ne, ps) = (parse(&scrape(ne_port)), parse(&scrape(ps_port)));
    let compared = compare(&ne, &ps, |name, labels, got, value| {
        assert!(
            (got - value).abs() <= value.abs() * 1e-9,
            "{name}{labels:?}: procship {got}, node_exporter {value}"
        );
    });
    assert!(compared > 80, "only {compared} series compared");
    for family in [
        "node_pressure_io_stalled_seconds_total",
        "node_vmstat_pgfault",
        "node_filefd_allocated",
        "node_nf_conntrack_entries",
        "node_os_info",
        "node_disk_read_bytes_total",
        "node_netstat_Tcp_InSegs",
        "node_sockstat_TCP_alloc",
        "node_network_mtu_bytes",
        "node_hwmon_temp_celsius",
    ] {
        assert!(
            ne.contains_key(family),
            "node_exporter gave no {family} on the tree"
        );
    }
    let (status, _, err) = agent.stop(Duration::from_secs(10));
    assert!(status.success(), "{err}");
}
