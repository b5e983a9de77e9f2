//! Zones as real hosts: each public zone's agent runs in its own network namespace, joined to
//! the control plane by a veth link (as across a private interconnect). Shows (a) a job placed in
//! a public zone runs there and reports back; (b) cutting that zone's link leaves its running job
//! alone, the zone turns unreachable, and after the link returns the status reconciles with
//! nothing placed twice; (c) restricted jobs never reach a public zone's agent, even with the
//! private side degraded. And with the zone's rendered nftables egress rules applied in its
//! namespace, (d) a job whose checkpoint sync goes to a destination the rules do not allow ends
//! with a clear event, and its checkpoint is kept intact; a sync to the allowed control plane
//! goes through. Every hop is HTTPS: the agents sync over mutual TLS with workload certificates
//! from the control plane, the checkpoint sync trusts its certificate authority, and (e) a
//! plain-HTTP request from inside a zone to the control plane's address across the link is
//! served nothing. Needs root, `ip` (iproute2) and `nft`: runs for real under CI, skips elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{agent_token, repo, start_agent, start_control_plane, wait_for, zone_job};
use serde_json::{json, Value};

fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A namespace with one veth link to the root namespace: `10.77.N.1` outside, `10.77.N.2` inside,
/// and `10.77.N.3` outside as well (standing for another site's address on the same link).
struct Zone {
    ns: String,
    outer: String,
    host_ip: String,
}

impl Zone {
    fn new(n: u8) -> Option<Self> {
        let pid = std::process::id() % 10_000;
        let ns = format!("tg{pid}z{n}");
        let outer = format!("tg{pid}o{n}");
        let inner = format!("tg{pid}i{n}");
        let host_ip = format!("10.77.{n}.1");
        let ok = sh(&["ip", "netns", "add", &ns])
            && sh(&[
                "ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ])
            && sh(&["ip", "link", "set", &inner, "netns", &ns])
            && sh(&["ip", "addr", "add", &format!("{host_ip}/29"), "dev", &outer])
            && sh(&[
                "ip",
                "addr",
                "add",
                &format!("10.77.{n}.3/29"),
                "dev",
                &outer,
            ])
            && sh(&["ip", "link", "set", &outer, "up"])
            && sh(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "ip",
                "addr",
                "add",
                &format!("10.77.{n}.2/29"),
                "dev",
                &inner,
            ])
            && sh(&[
                "ip", "netns", "exec", &ns, "ip", "link", "set", &inner, "up",
            ])
            && sh(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        let zone = Zone { ns, outer, host_ip };
        ok.then_some(zone)
    }

    fn cut(&self) {
        assert!(
            sh(&["ip", "link", "set", &self.outer, "down"]),
            "cannot cut the link"
        );
    }

    fn restore(&self) {
        assert!(
            sh(&["ip", "link", "set", &self.outer, "up"]),
            "cannot restore the link"
        );
    }
}

impl Drop for Zone {
    fn drop(&mut self) {
        let _ = sh(&["ip", "link", "del", &self.outer]);
        let _ = sh(&["ip", "netns", "del", &self.ns]);
    }
}

fn job(name: &str, zone: &str, dataset: &str, command: &str) -> String {
    zone_job(name, zone, dataset, "production", command)
}

fn can_run() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let ip = sh(&["ip", "-V"]);
    if root && ip {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but network namespaces cannot be made here (needs root and iproute2)");
    }
    eprintln!(
        "skipping: needs root and iproute2 (`ip netns`); runs under CI=true via scripts/test.sh"
    );
    false
}

#[test]
fn zones_behind_veth_links_run_their_work_survive_a_cut_and_never_see_restricted_data() {
    if !can_run() {
        return;
    }
    let (Some(eu), Some(us)) = (Zone::new(1), Zone::new(2)) else {
        panic!("cannot create network namespaces and veth links")
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cp");
    // The control plane listens on every address so both zones reach it over their own link;
    // its server certificate names its address on each link.
    let cp = start_control_plane(
        &data,
        "0.0.0.0:0",
        &["public-eu", "public-us"],
        &[
            "--agent-timeout",
            "2",
            "--tls-san",
            eu.host_ip.as_str(),
            "--tls-san",
            us.host_ip.as_str(),
        ],
    );
    let port = cp.port.clone();
    let url = cp.url.clone();
    assert!(url.starts_with("https://"), "{url}");
    let call = |m: &str, u: &str, t: &str, b: Option<Value>| cp.call(m, u, t, b);
    let admin = cp.admin.clone();
    let mut agents = Vec::new();
    let mut works = Vec::new();
    for (zone, z) in [("public-eu", &eu), ("public-us", &us)] {
        let token = dir.path().join(format!("{zone}.token"));
        agent_token(&data, zone, &token);
        let work = dir.path().join(format!("{zone}-work"));
        agents.push(start_agent(
            Some(&z.ns),
            zone,
            &format!("https://{}:{port}", z.host_ip),
            Some(&cp.ca),
            &token,
            &work,
        ));
        works.push(work);
    }
    let zone_health = |name: &str| -> String {
        let (_, zones) = call("GET", &format!("{url}/v1/zones"), &admin, None);
        zones
            .as_array()
            .unwrap()
            .iter()
            .find(|z| z["name"] == name)
            .unwrap()["health"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let submit = |m: String| -> String {
        let (s, b) = call(
            "POST",
            &format!("{url}/v1/jobs"),
            &admin,
            Some(json!({ "manifest": m })),
        );
        assert_eq!(s, 201, "{b}");
        b["job"]["id"].as_str().unwrap().to_owned()
    };
    let detail =
        |id: &str| -> Value { call("GET", &format!("{url}/v1/jobs/{id}"), &admin, None).1 };

    // (a) A job placed in a public zone runs behind its link and reports back.
    let a = submit(job(
        "over-the-link",
        "public-eu",
        "ehr-deid@2026-10",
        "echo from $TIDEGATE_ZONE",
    ));
    wait_for("the job to succeed", 30, || {
        detail(&a)["job"]["state"] == "succeeded"
    });
    assert!(works[0].join(".state").join(&a).join("exit").exists());

    // (e) Plain HTTP from inside the zone to the control plane's address on the link is served
    // nothing (the TLS handshake fails); the same address over HTTPS answers.
    let plain = Command::new("ip")
        .args(["netns", "exec", &eu.ns, "bash", "-c"])
        .arg(format!(
            "trap '' PIPE; if exec 3<>/dev/tcp/{}/{port}; then echo connected; printf 'GET /healthz HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' >&3; timeout 10 cat <&3; fi; echo done",
            eu.host_ip
        ))
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&plain.stdout);
    assert!(
        answer.contains("connected") && answer.contains("done"),
        "the plain request was not sent: {answer}{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    assert!(
        !answer.contains("HTTP/1."),
        "plain HTTP across the link was answered: {answer}"
    );
    let tls = Command::new("ip")
        .args([
            "netns",
            "exec",
            &eu.ns,
            env!("CARGO_BIN_EXE_tidegate"),
            "jobs",
            "--server",
        ])
        .arg(format!("https://{}:{port}", eu.host_ip))
        .arg("--ca")
        .arg(&cp.ca)
        .arg("--token-file")
        .arg(data.join("admin.token"))
        .output()
        .unwrap();
    assert!(
        tls.status.success(),
        "HTTPS across the link: {}",
        String::from_utf8_lossy(&tls.stderr)
    );

    // (b) Cut the link: the running job is left alone, the zone turns unreachable; the link
    // returns and the status reconciles, nothing placed twice.
    let b = submit(job(
        "across-the-cut",
        "public-eu",
        "ehr-deid@2026-10",
        "sleep 3; echo done",
    ));
    wait_for("the run to start in the zone", 20, || {
        works[0].join(".state").join(&b).join("run.json").exists()
    });
    eu.cut();
    wait_for("public-eu to turn unreachable", 20, || {
        zone_health("public-eu") == "unreachable"
    });
    assert_eq!(zone_health("public-us"), "healthy");
    assert_eq!(detail(&b)["job"]["state"], "running");
    wait_for("the job to end behind the cut", 20, || {
        works[0].join(".state").join(&b).join("exit").exists()
    });
    assert_eq!(
        detail(&b)["job"]["state"],
        "running",
        "nothing is known until the link returns"
    );
    eu.restore();
    wait_for("public-eu to be healthy again", 30, || {
        zone_health("public-eu") == "healthy"
    });
    wait_for("the status to reconcile", 30, || {
        detail(&b)["job"]["state"] == "succeeded"
    });
    let d = detail(&b);
    assert_eq!(
        d["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["to_state"] == "admitted")
            .count(),
        1,
        "{d}"
    );
    assert!(
        !works[1].join(&b).exists(),
        "never placed in the other zone"
    );

    // (c) With the private side degraded, restricted work still never reaches a public agent.
    for zone in ["hospital-onprem", "private-cloud"] {
        let (s, _) = call(
            "POST",
            &format!("{url}/v1/zones/{zone}/condition"),
            &admin,
            Some(json!({"health": "degraded", "reason": "drill"})),
        );
        assert_eq!(s, 200);
    }
    let raw = submit(job("raw-phi", "public", "ehr-raw@2026-10", "echo leaked"));
    std::thread::sleep(Duration::from_secs(2));
    let state = detail(&raw)["job"]["state"].as_str().unwrap().to_owned();
    assert!(
        state == "failed" || state == "queued",
        "restricted work is refused or waits: {state}"
    );
    for w in &works {
        assert!(
            !w.join(&raw).exists(),
            "restricted work reached a public zone's agent"
        );
    }
    drop(agents);
}

#[test]
fn egress_rules_block_a_checkpoint_sync_and_nothing_is_lost() {
    if !can_run() {
        return;
    }
    assert!(
        sh(&["nft", "--version"]) || std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but nft is missing"
    );
    if !sh(&["nft", "--version"]) {
        eprintln!("skipping: needs nft (apt-get install nftables)");
        return;
    }
    let Some(us) = Zone::new(3) else {
        panic!("cannot create a network namespace and veth link")
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cp");
    let tg = env!("CARGO_BIN_EXE_tidegate");
    let cp = start_control_plane(
        &data,
        "0.0.0.0:0",
        &["public-us"],
        &["--agent-timeout", "5", "--tls-san", us.host_ip.as_str()],
    );
    let port = cp.port.clone();
    let url = cp.url.clone();
    let call = |m: &str, u: &str, t: &str, b: Option<Value>| cp.call(m, u, t, b);
    let admin = cp.admin.clone();

    // public-us may send only to hospital-onprem, which is the control plane's side of the link.
    let addrs = dir.path().join("addresses.yaml");
    std::fs::write(&addrs, format!("hospital-onprem: [{}/32]\n", us.host_ip)).unwrap();
    let rules = Command::new(tg)
        .args([
            "render",
            "--target",
            "nftables",
            "--zone",
            "public-us",
            "--addresses",
        ])
        .arg(&addrs)
        .arg("--fleet")
        .arg(repo().join("examples/fleet"))
        .output()
        .unwrap();
    assert!(
        rules.status.success(),
        "{}",
        String::from_utf8_lossy(&rules.stderr)
    );
    let rules_file = dir.path().join("public-us.nft");
    std::fs::write(&rules_file, &rules.stdout).unwrap();
    assert!(
        sh(&[
            "ip",
            "netns",
            "exec",
            &us.ns,
            "nft",
            "-f",
            rules_file.to_str().unwrap()
        ]),
        "cannot apply the ruleset"
    );

    let agent_token_file = dir.path().join("agent.token");
    agent_token(&data, "public-us", &agent_token_file);
    // Jobs run as an unprivileged user when the tests run as root: the program and token the
    // job uses go where that user can read them.
    let job_files = tempfile::Builder::new()
        .prefix("tidegate-job-files")
        .tempdir()
        .unwrap();
    let readable = |p: &std::path::Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    readable(job_files.path(), 0o755);
    let tg_copy = job_files.path().join("tidegate");
    std::fs::copy(tg, &tg_copy).unwrap();
    readable(&tg_copy, 0o755);
    let tg = tg_copy.display().to_string();
    let push_token = job_files.path().join("push.token");
    std::fs::write(&push_token, &admin).unwrap();
    readable(&push_token, 0o644);
    let ca_copy = job_files.path().join("ca.pem");
    std::fs::copy(&cp.ca, &ca_copy).unwrap();
    readable(&ca_copy, 0o644);
    let work = dir.path().join("us-work");
    let _agent = start_agent(
        Some(&us.ns),
        "public-us",
        &format!("https://{}:{port}", us.host_ip),
        Some(&cp.ca),
        &agent_token_file,
        &work,
    );
    let submit = |m: String| -> String {
        let (s, b) = call(
            "POST",
            &format!("{url}/v1/jobs"),
            &admin,
            Some(json!({ "manifest": m })),
        );
        assert_eq!(s, 201, "{b}");
        b["job"]["id"].as_str().unwrap().to_owned()
    };
    let detail =
        |id: &str| -> Value { call("GET", &format!("{url}/v1/jobs/{id}"), &admin, None).1 };
    let push = |dest: &str| {
        format!(
            "head -c 65536 /dev/urandom > ckpt.bin && sha256sum ckpt.bin > ckpt.sha && {tg} checkpoint push ckpt.bin --to https://{dest}:{port} --ca {} --token-file {} --timeout-s 3",
            ca_copy.display(),
            push_token.display()
        )
    };

    // (d) The other site's address is not on the allowlist: the sync is dropped by the rules.
    let blocked = submit(job(
        "ckpt-blocked",
        "public-us",
        "ehr-deid@2026-10",
        &push("10.77.3.3"),
    ));
    wait_for("the blocked sync to end the job", 60, || {
        detail(&blocked)["job"]["state"] == "failed"
    });
    let d = detail(&blocked);
    let reason = d["job"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("checkpoint sync blocked") && reason.contains("kept"),
        "{d}"
    );
    let ev = d["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["to_state"] == "failed")
        .unwrap()
        .clone();
    assert_eq!(ev["details"]["checkpoint_sync"], "blocked", "{ev}");
    // Nothing lost: the checkpoint is there, intact, with a note naming its digest.
    let run = work.join(&blocked);
    let sha = std::fs::read_to_string(run.join("ckpt.sha")).unwrap();
    let digest = sha.split_whitespace().next().unwrap().to_owned();
    let bytes = std::fs::read(run.join("ckpt.bin")).unwrap();
    assert_eq!(bytes.len(), 65536);
    let note: Value =
        serde_json::from_slice(&std::fs::read(run.join("ckpt.bin.unsynced")).unwrap()).unwrap();
    assert_eq!(note["digest"], format!("sha256:{digest}"), "{note}");
    assert!(
        note["destination"].as_str().unwrap().contains("10.77.3.3"),
        "{note}"
    );

    // The allowed destination (the control plane across the link) takes a checkpoint.
    let allowed = submit(job(
        "ckpt-allowed",
        "public-us",
        "ehr-deid@2026-10",
        &push(&us.host_ip),
    ));
    wait_for("the allowed sync to finish", 60, || {
        let s = detail(&allowed)["job"]["state"].clone();
        s == "succeeded" || s == "failed"
    });
    let d = detail(&allowed);
    assert_eq!(d["job"]["state"], "succeeded", "{d}");
    assert!(!work.join(&allowed).join("ckpt.bin.unsynced").exists());
}
