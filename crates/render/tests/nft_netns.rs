//! The rendered nftables ruleset enforced for real: a network namespace joined to the host by a
//! veth pair, TCP listeners on two host-side addresses, the ruleset of a zone whose allowlist
//! names one peer zone (resolved to one of the addresses) applied inside the namespace; the
//! allowed destination answers and the other is blocked. Also `nft -c` on every example zone's
//! ruleset. Needs root, `nft` and `ip` (scripts/test.sh installs nftables and iproute2 with
//! CI=true); otherwise it says why and passes, except under CI=true, where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tidegate_model::{load_fleet, Zone};
use tidegate_render::nft;

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn possible_or_skip(test: &str) -> bool {
    let why = if !is_root() {
        Some("not root")
    } else if !have("nft") {
        Some("nft is not installed (apt-get install nftables)")
    } else if !have("ip") {
        Some("ip is not installed (apt-get install iproute2)")
    } else {
        None
    };
    match why {
        None => true,
        Some(w) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: CI=true but {w}")
        }
        Some(w) => {
            eprintln!("{test}: skipped ({w}); run as root with nftables and iproute2 installed");
            false
        }
    }
}

fn sh(cmd: &str) -> std::process::Output {
    Command::new("sh").arg("-c").arg(cmd).output().unwrap()
}

fn ok(cmd: &str) {
    let o = sh(cmd);
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Removes the namespace and the host end of the veth on every path out of the test.
struct Netns {
    ns: String,
    host_if: String,
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&format!(
            "ip netns del {} 2>/dev/null; ip link del {} 2>/dev/null",
            self.ns, self.host_if
        ));
    }
}

fn connects(ns: &str, addr: &str, port: u16) -> bool {
    // bash's /dev/tcp inside the namespace; bounded by timeout(1).
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "timeout",
            "2",
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/{addr}/{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn rendered_ruleset_lets_the_allowed_zone_through_and_blocks_the_rest() {
    if !possible_or_skip("rendered_ruleset_lets_the_allowed_zone_through_and_blocks_the_rest") {
        return;
    }
    let n = std::process::id() % 200 + 20;
    let guard = Netns {
        ns: format!("tgnft{n}"),
        host_if: format!("tgnft{n}h"),
    };
    let (ns, host_if, peer_if) = (
        guard.ns.clone(),
        guard.host_if.clone(),
        format!("tgnft{n}n"),
    );
    let (allowed, other, inside) = (
        format!("10.231.{n}.1"),
        format!("10.231.{n}.3"),
        format!("10.231.{n}.2"),
    );
    let _ = sh(&format!(
        "ip netns del {ns} 2>/dev/null; ip link del {host_if} 2>/dev/null"
    ));
    ok(&format!("ip netns add {ns}"));
    ok(&format!(
        "ip link add {host_if} type veth peer name {peer_if}"
    ));
    ok(&format!("ip link set {peer_if} netns {ns}"));
    ok(&format!("ip addr add {allowed}/24 dev {host_if} && ip addr add {other}/24 dev {host_if} && ip link set {host_if} up"));
    ok(&format!("ip -n {ns} addr add {inside}/24 dev {peer_if} && ip -n {ns} link set {peer_if} up && ip -n {ns} link set lo up"));
    let l1 = TcpListener::bind((allowed.as_str(), 0)).unwrap();
    let l2 = TcpListener::bind((other.as_str(), 0)).unwrap();
    let (p1, p2) = (
        l1.local_addr().unwrap().port(),
        l2.local_addr().unwrap().port(),
    );
    // Before the ruleset both answer (the kernel completes the handshake from the backlog).
    assert!(
        connects(&ns, &allowed, p1),
        "no connectivity before the ruleset"
    );
    assert!(
        connects(&ns, &other, p2),
        "no connectivity before the ruleset"
    );

    let zone = Zone {
        name: "lab-zone".into(),
        tier: tidegate_model::Tier::Public,
        provider: "test".into(),
        region: "test".into(),
        jurisdiction: "EU".into(),
        certifications: Default::default(),
        max_classification: 0,
        egress_allowlist: vec!["peer-zone".into()],
        egress_price_per_gb: 0.0,
        backend: tidegate_model::Backend::Local {
            workdir: None,
            run_as: None,
        },
        pools: Vec::new(),
        origin: tidegate_model::Origin::builtin("test"),
    };
    let addrs = BTreeMap::from([("peer-zone".to_string(), vec![format!("{allowed}/32")])]);
    let rules = nft::ruleset(&zone, &["lab-zone".into(), "peer-zone".into()], &addrs);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.nft");
    std::fs::write(&file, &rules).unwrap();
    ok(&format!("ip netns exec {ns} nft -f {}", file.display()));
    // Applying again replaces the table (idempotent).
    ok(&format!("ip netns exec {ns} nft -f {}", file.display()));

    let t = std::time::Instant::now();
    assert!(
        connects(&ns, &allowed, p1),
        "the allowed zone does not answer:\n{rules}"
    );
    assert!(
        !connects(&ns, &other, p2),
        "a destination outside the allowlist answered:\n{rules}"
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    drop((l1, l2));
    drop(guard);
}

#[test]
fn example_zone_rulesets_pass_nft_check() {
    if !possible_or_skip("example_zone_rulesets_pass_nft_check") {
        return;
    }
    let fleet =
        load_fleet(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleet")).unwrap();
    let known: Vec<String> = fleet.zones.iter().map(|z| z.name.clone()).collect();
    let addrs = BTreeMap::from([(
        "hospital-onprem".to_string(),
        vec!["10.20.0.0/16".to_string(), "fd00:20::/48".to_string()],
    )]);
    let dir = tempfile::tempdir().unwrap();
    for z in &fleet.zones {
        for a in [&addrs, &BTreeMap::new()] {
            let file = dir.path().join(format!("{}.nft", z.name));
            std::fs::write(&file, nft::ruleset(z, &known, a)).unwrap();
            let o = sh(&format!("nft -c -f {}", file.display()));
            assert!(
                o.status.success(),
                "{}: {}",
                z.name,
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}
