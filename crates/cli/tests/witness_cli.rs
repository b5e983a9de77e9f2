//! A witness over HTTP (`tidegate witness`, the C2SP tlog-witness protocol; HTTPS with a
//! certificate, plain HTTP only on loopback) against someone who
//! holds the control plane's data directory, ledger key included: the witness co-signs honest
//! growth, refuses a rewritten history, remembers what it co-signed across a kill -9, and an
//! auditor who requires its co-signature (`evidence verify --witness`) or kept a checkpoint
//! (`--since`) is never shown a rewritten or cut history as valid.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use tidegate_ledger::ledger::{ledger_dir, read_log};
use tidegate_ledger::{Action, EntryDraft, Ident, Ledger, LedgerOptions, Subject, SubjectKind};

fn tidegate(args: &[&str], data: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(args)
        .env("TIDEGATE_DATA_DIR", data)
        .output()
        .unwrap()
}

/// stdout + stderr on one line, with diagnostic wrapping (`│` continuation lines) undone.
fn text(o: &Output) -> String {
    let raw = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    raw.lines()
        .map(|l| l.trim().trim_start_matches(['│', '×']).trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn fill(data: &Path, from: u64, to: u64) {
    let l = Ledger::open(data, LedgerOptions::default()).unwrap();
    for i in from..to {
        let job = Subject::new(SubjectKind::Job, format!("job-{}", i % 3)).unwrap();
        l.append(
            EntryDraft::new(
                Ident::new(format!("user-{i}")).unwrap(),
                Action::JobApproved {
                    scope: Ident::new("run").unwrap(),
                },
                vec![job],
            )
            .unwrap(),
            1_800_000_000_000 + i,
        )
        .unwrap();
    }
    l.close().unwrap();
}

/// The log rebuilt by a holder of the ledger key with entry 1's actor changed: self-consistent,
/// validly signed, and different.
fn rewrite(data: &Path) {
    let log = read_log(&ledger_dir(data), true).unwrap();
    std::fs::remove_dir_all(ledger_dir(data)).unwrap();
    let l = Ledger::open(data, LedgerOptions::default()).unwrap();
    for (i, bytes) in log.entries.iter().enumerate() {
        let e = tidegate_ledger::Entry::decode(bytes).unwrap();
        let actor = if i == 1 {
            Ident::new("someone-else").unwrap()
        } else {
            e.actor
        };
        l.append(
            EntryDraft::new(actor, e.action, e.subjects).unwrap(),
            e.ts_ms,
        )
        .unwrap();
    }
    l.close().unwrap();
}

struct WitnessProc {
    child: Child,
    url: String,
}

impl Drop for WitnessProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_witness(dir: &Path, log_pub: &Path) -> WitnessProc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args([
            "witness",
            "--listen",
            "127.0.0.1:0",
            "--key",
            dir.join("witness.key").to_str().unwrap(),
            "--follow",
            log_pub.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    // Keep reading what else it prints: a closed pipe would end it (SIGPIPE).
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let url = line
        .trim()
        .strip_prefix("witness listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    WitnessProc { child, url }
}

fn bundle(data: &Path, out: &Path, since: Option<&Path>) -> Output {
    let mut args = vec!["evidence", "job", "job-1", "--out", out.to_str().unwrap()];
    if let Some(s) = since {
        args.extend(["--since", s.to_str().unwrap()]);
    }
    tidegate(&args, data)
}

fn verify(data: &Path, file: &Path, extra: &[&str]) -> Output {
    let key = data.join("keys/ledger.pub");
    let mut args = vec![
        "evidence",
        "verify",
        file.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    args.extend(extra);
    tidegate(&args, data)
}

#[test]
fn a_witness_over_http_vouches_for_growth_and_never_for_a_rewritten_or_cut_history() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path();
    let w = tempfile::tempdir().unwrap();
    fill(data, 0, 12);
    let log_pub = data.join("keys/ledger.pub");
    let witness = start_witness(w.path(), &log_pub);
    let witness_pub: PathBuf = w.path().join("witness.pub");

    // Co-signed over HTTP; the stored checkpoint carries the co-signature.
    let o = tidegate(&["audit", "witness", "--url", &witness.url], data);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout)
            .matches('\u{2014}')
            .count(),
        2
    );
    // An auditor keeps this checkpoint.
    let kept = w.path().join("kept.note");
    let o = tidegate(&["audit", "checkpoint"], data);
    std::fs::write(&kept, &o.stdout).unwrap();

    // Honest growth: co-signed again (the client learns the witness's size from its 409).
    fill(data, 12, 20);
    let o = tidegate(&["audit", "witness", "--url", &witness.url], data);
    assert!(o.status.success(), "{}", text(&o));
    let b = w.path().join("b.json");
    let o = bundle(data, &b, Some(&kept));
    assert!(o.status.success(), "{}", text(&o));
    let o = verify(
        data,
        &b,
        &[
            "--witness",
            witness_pub.to_str().unwrap(),
            "--since",
            kept.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("witnessed: witness tidegate-witness/"),
        "{}",
        text(&o)
    );
    // A bundle is not accepted for a witness that never co-signed it.
    let stranger = tempfile::tempdir().unwrap();
    let other_key = stranger.path().join("other.key");
    tidegate_ledger::keys::load_or_create_cosigner(&other_key, "other-witness").unwrap();
    let o = verify(
        data,
        &b,
        &[
            "--witness",
            stranger.path().join("other.pub").to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("not co-signed by witness other-witness/"),
        "{}",
        text(&o)
    );

    // New entries after the co-signature: the bundle's checkpoint is not co-signed, so the
    // witness does not vouch for it (its tail could be cut or rewritten), until asked again.
    fill(data, 20, 22);
    let tail = w.path().join("tail.json");
    assert!(bundle(data, &tail, None).status.success());
    let o = verify(data, &tail, &["--witness", witness_pub.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("is not co-signed by witness"),
        "{}",
        text(&o)
    );
    let o = tidegate(&["audit", "witness", "--url", &witness.url], data);
    assert!(o.status.success(), "{}", text(&o));
    assert!(bundle(data, &tail, None).status.success());
    let o = verify(data, &tail, &["--witness", witness_pub.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));

    // The witness is killed hard and restarted: it still remembers size 22.
    drop(witness);
    let witness = start_witness(w.path(), &log_pub);

    // Someone with the data directory and the ledger key rewrites history and removes every
    // stored checkpoint: the log verifies on its own, but the witness refuses it...
    rewrite(data);
    std::fs::remove_dir_all(ledger_dir(data).join("checkpoints")).unwrap();
    std::fs::create_dir_all(ledger_dir(data).join("checkpoints")).unwrap();
    let o = tidegate(&["audit", "verify"], data);
    assert!(o.status.success(), "self-consistent: {}", text(&o));
    let o = tidegate(&["audit", "witness", "--url", &witness.url], data);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("history rewritten"), "{}", text(&o));
    // ...its bundles carry no co-signature, so an auditor requiring the witness refuses them...
    let o = bundle(data, &b, None);
    assert!(o.status.success(), "{}", text(&o));
    let o = verify(data, &b, &["--witness", witness_pub.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("is not co-signed by witness"),
        "{}",
        text(&o)
    );
    // ...and the auditor's kept checkpoint is not extended: no bundle proves it is.
    let o = bundle(data, &b, Some(&kept));
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("history was rewritten"), "{}", text(&o));
    let o = verify(data, &b, &["--since", kept.to_str().unwrap()]);
    assert!(!o.status.success(), "{}", text(&o));
}

#[test]
fn witness_help_teaches_the_protocol_and_the_commands_around_it() {
    let d = tempfile::tempdir().unwrap();
    let o = tidegate(&["witness", "--help"], d.path());
    assert!(o.status.success());
    let h = text(&o);
    for want in [
        "tlog-witness",
        "--follow",
        "--state",
        "audit witness --url",
        "--witness",
    ] {
        assert!(h.contains(want), "{want} missing from: {h}");
    }
}

#[test]
fn a_witness_over_https_is_reached_with_its_authority_and_refused_without_it() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path();
    let w = tempfile::tempdir().unwrap();
    fill(data, 0, 5);
    // A certificate authority (as `tidegate up` makes one) and a server certificate for the
    // witness from it.
    let ca_dir = tempfile::tempdir().unwrap();
    tidegate_pki::Authority::load_or_create(
        &ca_dir.path().join("pki"),
        tidegate_pki::DEFAULT_TRUST_DOMAIN,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let certs = w.path().join("tls");
    let o = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(["cert", "server", "--name", "127.0.0.1", "--out"])
        .arg(&certs)
        .arg("--data-dir")
        .arg(ca_dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(["witness", "--listen", "127.0.0.1:0", "--key"])
        .arg(w.path().join("witness.key"))
        .arg("--follow")
        .arg(data.join("keys/ledger.pub"))
        .arg("--tls-cert")
        .arg(certs.join("server.pem"))
        .arg("--tls-key")
        .arg(certs.join("server.key"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    // Keep reading what else it prints: a closed pipe would end it (SIGPIPE).
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let witness = WitnessProc {
        url: line
            .trim()
            .strip_prefix("witness listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned(),
        child,
    };
    assert!(
        witness.url.starts_with("https://127.0.0.1:"),
        "{}",
        witness.url
    );
    // Without the authority the witness cannot be authenticated: nothing is co-signed.
    let o = tidegate(&["audit", "witness", "--url", &witness.url], data);
    assert!(!o.status.success(), "{}", text(&o));
    let ca = certs.join("ca.pem");
    let o = tidegate(
        &[
            "audit",
            "witness",
            "--url",
            &witness.url,
            "--ca",
            ca.to_str().unwrap(),
        ],
        data,
    );
    assert!(o.status.success(), "{}", text(&o));
    // Plain HTTP is refused off loopback.
    let o = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(["witness", "--listen", "0.0.0.0:0", "--key"])
        .arg(w.path().join("witness2.key"))
        .arg("--follow")
        .arg(data.join("keys/ledger.pub"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("loopback"), "{}", text(&o));
}
