//! The README's path through the binary: `tidegate up`, then `submit`, `jobs`, `job`, `logs`,
//! `cancel` and `demo burst` against it; and the errors a user meets when no server is running.
//! `up` serves HTTPS by default: it prints how to trust its certificate authority, the commands
//! find it from `--data-dir`, a client that does not trust it cannot talk to it, and
//! `--plain-http` is refused off loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.0.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn up(dir: &Path) -> Up {
    let child = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .current_dir(repo())
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--time-scale",
            "36000",
            "--data-dir",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = Up(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.join("server.url").exists() {
        assert!(Instant::now() < deadline, "tidegate up did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    up
}

fn tg(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .current_dir(repo())
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_job_commands_and_the_burst_demo_work_against_tidegate_up() {
    let dir = tempfile::tempdir().unwrap();
    let _server = up(dir.path());
    let o = tg(
        dir.path(),
        &[
            "submit",
            "examples/jobs/sepsis-hpo-sweep.yaml",
            "--idempotency-key",
            "readme-1",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let id = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(id.starts_with("job-"), "{}", text(&o));
    // Same key again: the same job.
    let again = tg(
        dir.path(),
        &[
            "submit",
            "examples/jobs/sepsis-hpo-sweep.yaml",
            "--idempotency-key",
            "readme-1",
        ],
    );
    assert!(
        text(&again).contains(&id) && text(&again).contains("already submitted"),
        "{}",
        text(&again)
    );
    // It runs (a stand-in: 6 expected hours at time scale 36000 is 0.6 s) and ends.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = tg(dir.path(), &["job", &id]);
        assert!(o.status.success(), "{}", text(&o));
        if text(&o).contains("state   succeeded") {
            let t = text(&o);
            assert!(
                t.contains("allowed") && t.contains("hospital-onprem/h100"),
                "{t}"
            );
            assert!(t.contains("running -> succeeded"), "{t}");
            break;
        }
        assert!(Instant::now() < deadline, "{}", text(&o));
        std::thread::sleep(Duration::from_millis(200));
    }
    let logs = tg(dir.path(), &["logs", &id]);
    assert!(
        text(&logs).contains("stand-in for sepsis-hpo-sweep"),
        "{}",
        text(&logs)
    );
    let list = tg(dir.path(), &["jobs", "--team", "icu-ml"]);
    assert!(
        text(&list).contains(&id) && text(&list).contains("succeeded"),
        "{}",
        text(&list)
    );
    let json = tg(dir.path(), &["jobs", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["jobs"].as_array().unwrap().len(), 1);
    // Cancelling a job that ended is refused, with the reason.
    let c = tg(dir.path(), &["cancel", &id]);
    assert!(
        !c.status.success() && text(&c).contains("already ended"),
        "{}",
        text(&c)
    );

    // Zones: list, and a drill on one.
    let z = tg(
        dir.path(),
        &[
            "zone",
            "set",
            "edge-clinic",
            "--health",
            "unreachable",
            "--reason",
            "link drill",
        ],
    );
    assert!(
        z.status.success() && text(&z).contains("edge-clinic  unreachable"),
        "{}",
        text(&z)
    );
    let z = tg(dir.path(), &["zone", "list"]);
    assert!(
        text(&z).contains("unreachable") && text(&z).contains("h100 32xH100"),
        "{}",
        text(&z)
    );
    let z = tg(
        dir.path(),
        &["zone", "set", "edge-clinic", "--health", "healthy"],
    );
    assert!(z.status.success(), "{}", text(&z));

    // The demo shows queueing, a burst with its justification, PHI kept private and a refusal.
    let demo = tg(
        dir.path(),
        &["demo", "burst", "--watch", "4", "--run-seconds", "3"],
    );
    let t = text(&demo);
    assert!(demo.status.success(), "{t}");
    assert!(
        t.contains("burst:    sepsis-sweep-") && t.contains("in public-"),
        "{t}"
    );
    assert!(t.contains("justification recorded:"), "{t}");
    assert!(t.contains("never public"), "{t}");
    assert!(
        t.contains("refused:  foundation-pretrain") && t.contains("job needs 1024 GPUs"),
        "{t}"
    );
}

#[test]
fn up_serves_https_with_its_own_authority_and_plain_http_only_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let server = up(dir.path());
    let url = std::fs::read_to_string(dir.path().join("server.url")).unwrap();
    assert!(url.trim().starts_with("https://127.0.0.1:"), "{url}");
    let key = dir.path().join("pki/ca.key");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the CA key is private");
    }
    // The commands trust the authority they find in --data-dir...
    let o = tg(dir.path(), &["jobs"]);
    assert!(o.status.success(), "{}", text(&o));
    // ...and refuse a server they cannot authenticate (another directory's authority).
    let other = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("admin.token"),
        other.path().join("admin.token"),
    )
    .unwrap();
    std::fs::write(other.path().join("server.url"), &url).unwrap();
    let o = tg(other.path(), &["jobs"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("--ca"),
        "says how to trust it: {}",
        text(&o)
    );
    // --ca (here: the right authority) makes it work from anywhere.
    let o = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(["jobs", "--data-dir"])
        .arg(other.path())
        .arg("--ca")
        .arg(dir.path().join("pki/ca.pem"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // How to trust it is printed at start.
    let mut server = server;
    let _ = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status();
    let mut out = String::new();
    use std::io::Read as _;
    server
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(out.contains("https://127.0.0.1:"), "{out}");
    assert!(
        out.contains("pki/ca.pem") && out.contains("--cacert"),
        "{out}"
    );
    // A restart reuses the authority: a client that trusted it still does.
    let ca = std::fs::read(dir.path().join("pki/ca.pem")).unwrap();
    drop(server);
    std::fs::remove_file(dir.path().join("server.url")).unwrap();
    let _again = up(dir.path());
    assert_eq!(std::fs::read(dir.path().join("pki/ca.pem")).unwrap(), ca);
    let o = tg(dir.path(), &["jobs"]);
    assert!(o.status.success(), "{}", text(&o));

    // Plain HTTP is refused off loopback, naming the flag; nothing starts.
    let plain = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .current_dir(repo())
        .args(["up", "--plain-http", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(plain.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("--plain-http"), "{}", text(&o));
    assert!(!plain.path().join("server.url").exists());
}

#[test]
fn without_a_server_the_commands_say_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let o = tg(dir.path(), &["jobs"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("tidegate up"), "{}", text(&o));
    std::fs::write(dir.path().join("admin.token"), "x").unwrap();
    std::fs::write(dir.path().join("server.url"), "http://127.0.0.1:9").unwrap();
    let o = tg(dir.path(), &["jobs"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("cannot reach http://127.0.0.1:9"),
        "{}",
        text(&o)
    );
    // A bad token gets the server's 401 with its code.
    let other = tempfile::tempdir().unwrap();
    let _server = up(other.path());
    std::fs::write(other.path().join("admin.token"), "not-a-token").unwrap();
    let o = tg(other.path(), &["jobs"]);
    assert!(
        text(&o).contains("401") && text(&o).contains("unauthenticated"),
        "{}",
        text(&o)
    );
}

#[test]
fn the_fleet_changes_live_with_fleet_apply_and_sighup_and_a_broken_one_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A copy of the example fleet to edit.
    let fleet = dir.path().join("fleet");
    let copy = Command::new("cp")
        .arg("-r")
        .arg(repo().join("examples/fleet"))
        .arg(&fleet)
        .status()
        .unwrap();
    assert!(copy.success());
    let data = dir.path().join("data");
    let child = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .current_dir(repo())
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--fleet")
        .arg(&fleet)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Up(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !data.join("server.url").exists() {
        assert!(Instant::now() < deadline, "tidegate up did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let generation = |o: &Output| -> u64 {
        let t = text(o);
        let g = t
            .split("(generation ")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .unwrap_or_else(|| panic!("{t}"));
        g.parse().unwrap()
    };
    let o = tg(&data, &["fleet", "apply"]);
    assert!(o.status.success(), "{}", text(&o));
    let first = generation(&o);
    // SIGHUP re-reads the directory in force.
    assert!(Command::new("kill")
        .args(["-HUP", &server.0.id().to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = tg(&data, &["fleet", "show"]);
        assert!(o.status.success(), "{}", text(&o));
        if generation(&o) == first + 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP put nothing in force: {}",
            text(&o)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = tg(&data, &["fleet", "apply"]);
    assert_eq!(
        generation(&o),
        first + 2,
        "SIGHUP and the apply each put the fleet in force: {}",
        text(&o)
    );
    // A broken fleet is refused before anything is sent, naming the file; the server's stays.
    std::fs::write(
        fleet.join("policies/broken.cedar"),
        "permit (principal, action, resource) when { resource.nope };\n",
    )
    .unwrap();
    let o = tg(&data, &["fleet", "apply", fleet.to_str().unwrap()]);
    assert!(
        !o.status.success()
            && text(&o).contains("broken.cedar")
            && text(&o).contains("nothing was sent"),
        "{}",
        text(&o)
    );
    // SIGHUP with the broken directory changes nothing either.
    assert!(Command::new("kill")
        .args(["-HUP", &server.0.id().to_string()])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(1500));
    let o = tg(&data, &["fleet", "show"]);
    assert_eq!(
        generation(&o),
        first + 2,
        "a broken SIGHUP put something in force: {}",
        text(&o)
    );
    std::fs::remove_file(fleet.join("policies/broken.cedar")).unwrap();
    let o = tg(&data, &["fleet", "apply", fleet.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        generation(&o),
        first + 3,
        "the broken SIGHUP put nothing in force: {}",
        text(&o)
    );
    drop(server);
}
