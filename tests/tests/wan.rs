//! A WAN between an edge and the fleet, end to end with real processes: the edge runs in a
//! network namespace of its own and reaches the manager's embedded broker over a veth pair. The
//! test cuts the link (`ip link set ... down`) for 5 s in the middle of delivery, brings it back
//! with 10 % random loss each way (nftables `numgen`) plus 20 ms delay each way where the kernel
//! has netem, and ends with every recording stored exactly once with matching SHA-256. Needs
//! root, iproute2 (`ip`, `tc`) and nftables; without them the test fails, it never skips.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use tapfleet_callgen::{GenOptions, generate_to_file};
use tapfleet_tests::{Proc, bin, require_tool, run_ok};

/// A network namespace joined to this one by a veth pair; removed on drop.
struct Wan {
    ns: String,
    host_if: String,
    ns_if: String,
    host_ip: String,
}

fn ip(args: &[&str]) -> String {
    let mut c = Command::new("ip");
    c.args(args);
    run_ok(c)
}

fn in_ns(ns: &str, tool: &str, args: &[&str]) -> String {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, tool]).args(args);
    run_ok(c)
}

impl Wan {
    /// Creates the namespace and the link (names and a /24 from this process's id).
    fn new() -> Wan {
        let pid = std::process::id();
        let net = format!("10.{}.{}", 200 + pid % 50, (pid / 50) % 250);
        let wan = Wan {
            ns: format!("tfwan{pid}"),
            host_if: format!("tfw{pid}h"),
            ns_if: format!("tfw{pid}n"),
            host_ip: format!("{net}.1"),
        };
        // Namespaces must work here: fail loudly otherwise (root, CAP_SYS_ADMIN, CAP_NET_ADMIN).
        ip(&["netns", "add", &wan.ns]);
        ip(&[
            "link",
            "add",
            &wan.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &wan.ns_if,
        ]);
        ip(&["link", "set", &wan.ns_if, "netns", &wan.ns]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", wan.host_ip),
            "dev",
            &wan.host_if,
        ]);
        ip(&["link", "set", &wan.host_if, "up"]);
        let ns_ip = format!("{net}.2/24");
        in_ns(&wan.ns, "ip", &["addr", "add", &ns_ip, "dev", &wan.ns_if]);
        in_ns(&wan.ns, "ip", &["link", "set", &wan.ns_if, "up"]);
        in_ns(&wan.ns, "ip", &["link", "set", "lo", "up"]);
        wan
    }

    fn link(&self, up: bool) {
        ip(&["link", "set", &self.host_if, if up { "up" } else { "down" }]);
    }

    /// Drops `percent` % of the packets each way, at random (nftables in the namespace: the
    /// kernels this runs on have nf_tables, not always netem).
    fn lose(&self, percent: u32) {
        in_ns(&self.ns, "nft", &["add", "table", "inet", "tfwan"]);
        for (chain, hook) in [("in", "input"), ("out", "output")] {
            let spec = format!("{{ type filter hook {hook} priority 0; }}");
            in_ns(
                &self.ns,
                "nft",
                &["add", "chain", "inet", "tfwan", chain, &spec],
            );
            let rule = [
                "add", "rule", "inet", "tfwan", chain, "numgen", "random", "mod", "100", "<",
            ];
            let pct = percent.to_string();
            let mut args = rule.to_vec();
            args.extend([pct.as_str(), "counter", "drop"]);
            in_ns(&self.ns, "nft", &args);
        }
    }

    /// Adds `ms` of delay each way with netem, when the kernel has it (`false`: it has not).
    fn delay(&self, ms: u32) -> bool {
        let d = format!("{ms}ms");
        let out = Command::new("tc")
            .args([
                "qdisc",
                "add",
                "dev",
                &self.host_if,
                "root",
                "netem",
                "delay",
                &d,
            ])
            .output()
            .expect("tc");
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("qdisc kind is unknown"), "tc netem: {err}");
            return false;
        }
        in_ns(
            &self.ns,
            "tc",
            &[
                "qdisc",
                "add",
                "dev",
                &self.ns_if,
                "root",
                "netem",
                "delay",
                &d,
            ],
        );
        true
    }

    /// Packets the loss rules dropped so far.
    fn dropped(&self) -> u64 {
        let rules = in_ns(&self.ns, "nft", &["list", "table", "inet", "tfwan"]);
        rules
            .split("counter packets ")
            .skip(1)
            .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// Starts `tapfleet-edge` inside the namespace.
    fn edge(&self, m: &Manager, replay: &Path) -> Proc {
        let broker = format!("mqtt://{}:{}", self.host_ip, m.mqtt_port);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg(bin("tapfleet-edge"))
            .args(edge_args(m, &m.root.join("edge"), &broker, replay, &[]));
        Proc::start("edge-wan", cmd, &m.root)
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

#[test]
fn delivery_survives_a_wan_cut_and_ten_percent_loss() {
    require_tool("ip");
    require_tool("tc");
    require_tool("nft");
    let wan = Wan::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let m = Manager::start_on(dir.path(), None, None, &wan.host_ip);
    // Paced uploads, so the cut lands in the middle of delivery.
    enroll_with_config(
        &m,
        serde_json::json!({"cache": {"bandwidth_limit_bps": 150000}, "telemetry_interval_secs": 1}),
    );
    let pcap = dir.path().join("calls.pcap");
    let opts = GenOptions {
        calls: 4,
        concurrency: 4,
        duration_s: 12.0,
        seed: 41,
        ..GenOptions::default()
    };
    let n = generate_to_file(&opts, &pcap, None)
        .expect("generate")
        .calls
        .len();
    let t0 = Instant::now();
    let _edge = wan.edge(&m, &pcap);
    let first = wait_stored(&m, 1, Duration::from_secs(20));
    assert!(first.len() < n, "the cut lands mid-delivery");
    wan.link(false);
    std::thread::sleep(Duration::from_secs(5));
    let during = wait_stored(&m, first.len(), Duration::from_secs(1)).len();
    wan.link(true);
    wan.lose(10);
    if !wan.delay(20) {
        eprintln!(
            "NOTE: this kernel has no netem (CONFIG_NET_SCH_NETEM): 10 % loss without the 20 ms delay"
        );
    }
    let recs = wait_stored(&m, n, Duration::from_secs(40));
    eprintln!(
        "{n} recordings delivered in {:?} (first {} before the cut, {during} after it), the loss rules dropped {} packets",
        t0.elapsed(),
        first.len(),
        wan.dropped()
    );
    assert_eq!(catalog(&m).len(), n, "one catalog entry per call");
    assert_target_exact(&m, "cloud", &recs, n);
    assert!(wan.dropped() > 0, "packets were dropped: the loss was real");
}
