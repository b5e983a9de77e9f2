//! Artifact events in the evidence ledger: a model's signing, attestations and promotion show
//! up in `tidegate evidence model DIGEST` and verify offline; a ledger that cannot record
//! refuses the operation; promotion refusals reach the ledger as codes only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use tidegate_ledger::{Ledger, LedgerOptions};

const T0: u64 = 1_800_000_000;

fn tg(dir: &Path, now: u64, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(args)
        .env("TIDEGATE_DATA_DIR", dir)
        .env("TIDEGATE_NOW", now.to_string())
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn ok(dir: &Path, now: u64, args: &[&str]) -> String {
    let out = tg(dir, now, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn refused(dir: &Path, now: u64, args: &[&str]) -> String {
    let out = tg(dir, now, args);
    assert!(!out.status.success(), "{args:?} should have been refused");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Output with the lines of an error box joined (the box wraps long messages).
fn flat(s: &str) -> String {
    s.lines()
        .map(|l| l.trim_start_matches([' ', '│', '×', '╰', '─', '▶']))
        .collect::<Vec<_>>()
        .join(" ")
}

fn ledger_text(dir: &Path) -> String {
    let log =
        tidegate_ledger::ledger::read_log(&tidegate_ledger::ledger::ledger_dir(dir), true).unwrap();
    log.entries
        .iter()
        .map(|e| String::from_utf8(e.clone()).unwrap() + "\n")
        .collect()
}

fn put_and_sign(dir: &Path) -> String {
    let model = dir.join("model.bin");
    std::fs::write(&model, b"weights of a fraud model").unwrap();
    let digest = ok(
        dir,
        T0,
        &[
            "artifact",
            "put",
            model.to_str().unwrap(),
            "--kind",
            "model",
        ],
    )
    .trim()
    .to_string();
    ok(
        dir,
        T0,
        &["artifact", "key", "init", "--owner", "zone:onprem-a"],
    );
    ok(
        dir,
        T0 + 10,
        &[
            "artifact",
            "sign",
            &digest,
            "--job",
            "job-42",
            "--zone",
            "onprem-a",
            "--repo",
            "https://git.example.org/ml/fraud",
            "--commit",
            "3f2a9c1d0b7e6f5a4c3b2a1908f7e6d5c4b3a291",
            "--input",
            "dataset:claims@v3",
        ],
    );
    digest
}

#[test]
fn model_signing_attestation_and_promotion_are_in_verifiable_evidence() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let digest = put_and_sign(dir);
    let approver = ok(
        dir,
        T0 + 30,
        &["artifact", "key", "add-approver", "--owner", "alice"],
    )
    .trim()
    .to_string();
    ok(
        dir,
        T0 + 31,
        &[
            "artifact",
            "attest",
            &digest,
            "--type",
            "data-approval",
            "--field",
            "dataset=claims@v3",
            "--key",
            &approver,
        ],
    );
    ok(
        dir,
        T0 + 31,
        &[
            "artifact",
            "attest",
            &digest,
            "--type",
            "feature-pin",
            "--field",
            "featureSet=claims",
            "--field",
            "version=7",
        ],
    );
    ok(
        dir,
        T0 + 31,
        &[
            "artifact",
            "attest",
            &digest,
            "--type",
            "validation-report",
            "--field",
            "metric=auc",
            "--field",
            "value=0.91",
            "--field",
            "testSet=holdout",
        ],
    );
    let promoted = ok(
        dir,
        T0 + 40,
        &[
            "artifact",
            "promote",
            &digest,
            "--to",
            "validated",
            "--actor",
            "bob@bank.example",
        ],
    );
    assert!(promoted.contains("candidate -> validated"), "{promoted}");

    ok(dir, T0 + 50, &["audit", "verify"]);
    let bundle = dir.join("evidence.json");
    ok(
        dir,
        T0 + 50,
        &[
            "evidence",
            "model",
            &digest,
            "--out",
            bundle.to_str().unwrap(),
        ],
    );
    let key = dir.join("keys").join("ledger.pub");
    let summary = ok(
        dir,
        T0 + 50,
        &[
            "evidence",
            "verify",
            bundle.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    assert!(summary.contains("VERIFIED"), "{summary}");
    assert!(
        summary.contains("bob@bank.example promoted artifact")
            && summary.contains("from candidate to validated"),
        "{summary}"
    );
    assert!(summary.contains("signed artifact"), "{summary}");
    assert!(summary.contains("attested data-approval"), "{summary}");
    assert!(summary.contains("artifact.stored"), "{summary}");
    let approved = summary.split("Who approved what:").nth(1).unwrap();
    assert!(
        approved.contains("promoted artifact"),
        "promotion is under who approved what: {summary}"
    );
}

#[test]
fn an_unrecordable_ledger_refuses_the_put_and_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = dir.join("model.bin");
    std::fs::write(&model, b"weights nobody may store").unwrap();
    let held = Ledger::open(dir, LedgerOptions::default()).unwrap();
    let msg = refused(
        dir,
        T0,
        &[
            "artifact",
            "put",
            model.to_str().unwrap(),
            "--kind",
            "model",
        ],
    );
    assert!(msg.contains("evidence ledger"), "{msg}");
    drop(held);
    assert_eq!(
        ok(dir, T0, &["artifact", "list"]).trim(),
        "",
        "nothing was stored"
    );
    let blobs = dir.join("artifacts").join("blobs");
    assert!(!blobs.exists() || std::fs::read_dir(&blobs).unwrap().next().is_none());
    assert!(!ledger_text(dir).contains("artifact.stored"));
}

#[test]
fn promotion_refusal_reaches_the_ledger_as_codes_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let digest = put_and_sign(dir);
    let msg = refused(
        dir,
        T0 + 30,
        &["artifact", "promote", &digest, "--to", "validated"],
    );
    assert!(msg.contains("data approval"), "{msg}");
    let text = ledger_text(dir);
    let line = text
        .lines()
        .find(|l| l.contains("artifact.promotion_refused"))
        .expect("refusal recorded");
    assert!(
        line.contains(r#""reasons":["#) && line.contains("data-approval"),
        "{line}"
    );
    assert!(
        !text.contains("missing evidence") && !text.contains(' '),
        "no free text in the ledger: {text}"
    );
    ok(dir, T0 + 31, &["audit", "verify"]);
}

/// A legal hold, set and released by an approver through the ledger, stops `artifact shred`,
/// naming the hold; a key without the approver role cannot set one.
#[test]
fn a_legal_hold_stops_shredding_until_an_approver_releases_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let digest = put_and_sign(dir);
    let approver = ok(
        dir,
        T0 + 30,
        &["artifact", "key", "add-approver", "--owner", "counsel"],
    )
    .trim()
    .to_string();
    let builder = ok(dir, T0 + 30, &["artifact", "key", "list"]);
    let order = dir.join("order.txt");
    std::fs::write(
        &order,
        "Preserve all fraud-model artifacts: case 26-cv-0141.",
    )
    .unwrap();
    let subject = format!("model:{digest}");
    let hold = |key: &str| {
        vec![
            "retention".to_owned(),
            "hold".to_owned(),
            "--subject".to_owned(),
            subject.clone(),
            "--order".to_owned(),
            order.to_str().unwrap().to_owned(),
            "--key".to_owned(),
            key.to_owned(),
        ]
    };
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    // The builder key (first key listed that is not the approver) has no approver role.
    let other = builder
        .split_whitespace()
        .find(|w| w.starts_with("ed25519:") && *w != approver)
        .expect("a builder key")
        .to_owned();
    let msg = refused(dir, T0 + 40, &args(&hold(&other)));
    assert!(msg.contains("not approver"), "{msg}");
    ok(dir, T0 + 41, &args(&hold(&approver)));
    assert!(ledger_text(dir).contains("retention.hold_set"));
    let msg = refused(dir, T0 + 42, &["artifact", "shred", &digest]);
    assert!(
        msg.contains("under legal hold") && msg.contains(&approver),
        "{msg}"
    );
    // Holds name stored artifacts by their exact digest: anything else would protect nothing.
    for bad in [
        "dataset:claims@v3".to_owned(),
        format!("model:{}", digest.to_uppercase()),
        format!("model:{}", digest.trim_start_matches("sha256:")),
        format!("model:{}", &digest[..20]),
    ] {
        let mut h = hold(&approver);
        h[3] = bad.clone();
        refused(dir, T0 + 42, &args(&h));
    }
    // A release cites its own order, not the one that placed the hold.
    let mut release = hold(&approver);
    release[1] = "release".into();
    let msg = refused(dir, T0 + 43, &args(&release));
    assert!(msg.contains("a release needs its own"), "{msg}");
    let release_order = dir.join("release.txt");
    std::fs::write(
        &release_order,
        "Case 26-cv-0141 closed; preservation lifted.",
    )
    .unwrap();
    release[5] = release_order.to_str().unwrap().to_owned();
    ok(dir, T0 + 43, &args(&release));
    ok(dir, T0 + 44, &["artifact", "shred", &digest]);
}

/// Key changes are points of action: each is a ledger entry, and a key
/// the ledger could not record is revoked again at once, so it never signs.
#[test]
fn key_changes_are_ledgered_and_an_unrecorded_key_never_signs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let digest = put_and_sign(dir);
    let approver = ok(
        dir,
        T0 + 30,
        &["artifact", "key", "add-approver", "--owner", "alice"],
    )
    .trim()
    .to_string();
    let text = ledger_text(dir);
    assert!(text.contains("\"change\":\"created-builder\""), "{text}");
    assert!(
        text.contains(&format!(
            "\"change\":\"created-approver\",\"key_id\":\"{approver}\""
        )),
        "{text}"
    );
    ok(dir, T0 + 31, &["artifact", "key", "revoke", &approver]);
    assert!(ledger_text(dir).contains(&format!("\"change\":\"revoked\",\"key_id\":\"{approver}\"")));

    // With the ledger held elsewhere, no key change happens at all: no new key, and a rotation
    // leaves the active key as it was.
    let before = ok(dir, T0 + 39, &["artifact", "key", "list"]);
    let held = Ledger::open(dir, LedgerOptions::default()).unwrap();
    for change in [
        &["artifact", "key", "add-approver", "--owner", "mallory"][..],
        &["artifact", "key", "rotate", "--owner", "zone:onprem-a"],
        &["token", "keys", "rotate"],
    ] {
        let msg = refused(dir, T0 + 40, change);
        assert!(msg.contains("evidence ledger"), "{change:?}: {msg}");
    }
    drop(held);
    assert_eq!(ok(dir, T0 + 39, &["artifact", "key", "list"]), before);
    let _ = digest;
}

#[test]
fn files_in_the_data_directory_neither_promote_nor_deploy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let digest = put_and_sign(dir);
    // A forged stage change where one could once be appended: still a candidate, not deployable.
    std::fs::write(
        dir.join("artifacts/promotions.jsonl"),
        format!("{{\"digest\":\"{digest}\",\"from\":\"released-private\",\"to\":\"released-edge\",\"actor\":\"ops\",\"at\":{T0},\"policy_hash\":\"{digest}\",\"evidence\":{{}}}}\n"),
    )
    .unwrap();
    let list = ok(dir, T0 + 20, &["artifact", "list"]);
    assert!(list.contains("candidate"), "{list}");
    let out = refused(
        dir,
        T0 + 20,
        &[
            "artifact",
            "deploy",
            &digest,
            "--as",
            "triage",
            "--edge-site",
            "clinic-1",
        ],
    );
    assert!(out.contains("candidate"), "{out}");
    // A promotion policy swapped in the data directory refuses every promotion.
    let permit_all = dir.join("permit-all.cedar");
    std::fs::write(&permit_all, "permit(principal, action, resource);\n").unwrap();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::copy(&permit_all, dir.join("policies/promotion.cedar")).unwrap();
    let out = refused(
        dir,
        T0 + 20,
        &["artifact", "promote", &digest, "--to", "validated"],
    );
    assert!(
        out.contains("is not the promotion policy in force"),
        "{out}"
    );
    // Only an approver records a change; a builder key is refused.
    let builder = ok(dir, T0 + 20, &["artifact", "key", "list"]);
    let builder_id = builder.split_whitespace().next().unwrap().to_owned();
    let out = refused(
        dir,
        T0 + 20,
        &[
            "artifact",
            "set-policy",
            permit_all.to_str().unwrap(),
            "--key",
            &builder_id,
        ],
    );
    assert!(out.contains("not approver"), "{out}");
    let approver = ok(
        dir,
        T0 + 30,
        &["artifact", "key", "add-approver", "--owner", "risk-board"],
    )
    .trim()
    .to_string();
    ok(
        dir,
        T0 + 40,
        &[
            "artifact",
            "set-policy",
            permit_all.to_str().unwrap(),
            "--key",
            &approver,
        ],
    );
    ok(
        dir,
        T0 + 50,
        &["artifact", "promote", &digest, "--to", "validated"],
    );
    // The change and the promotion are evidence, with the policy's hash and text.
    let hash = tidegate_ledger::Digest::of(b"permit(principal, action, resource);\n").to_string();
    let ledger = ledger_text(dir);
    assert!(
        ledger.contains(&format!("\"policy_hash\":\"{hash}\"")),
        "{ledger}"
    );
    assert!(
        ledger.contains("\"id\":\"promotion\",\"kind\":\"policy\""),
        "{ledger}"
    );
    let bundle = dir.join("model.json");
    ok(
        dir,
        T0 + 60,
        &[
            "evidence",
            "model",
            &digest,
            "--out",
            bundle.to_str().unwrap(),
        ],
    );
    let key = dir.join("keys/ledger.pub");
    let summary = ok(
        dir,
        T0 + 60,
        &[
            "evidence",
            "verify",
            bundle.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        summary.contains(&format!("promotion policy {hash} (attached")),
        "{summary}"
    );
}

#[test]
fn keyring_edits_backdating_and_re_puts_count_for_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let digest = put_and_sign(dir);
    assert!(ok(dir, T0 + 20, &["artifact", "verify", &digest]).starts_with("ok"));
    let builder = ok(dir, T0 + 20, &["artifact", "key", "list"])
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    // The builder key given the approver role, a window widened, a key added: the keyring file
    // is no longer the one the ledger recorded, so nothing it vouches for counts, and it
    // authorizes no approver act.
    let ring_path = dir.join("keys/signing/keyring.json");
    let original = std::fs::read_to_string(&ring_path).unwrap();
    let edited = original.replacen("\"builder\"", "\"builder\",\"approver\"", 1);
    assert_ne!(edited, original);
    std::fs::write(&ring_path, &edited).unwrap();
    let out = refused(dir, T0 + 30, &["artifact", "verify", &digest]);
    assert!(
        out.contains("not the one the evidence ledger last recorded"),
        "{out}"
    );
    let policy = dir.join("permit.cedar");
    std::fs::write(&policy, "permit(principal, action, resource);\n").unwrap();
    let out = refused(
        dir,
        T0 + 30,
        &[
            "artifact",
            "set-policy",
            policy.to_str().unwrap(),
            "--key",
            &builder,
        ],
    );
    assert!(
        out.contains("not the one the evidence ledger last recorded"),
        "{out}"
    );
    // Nor can a key command launder the edit by recording the keyring it finds.
    let out = refused(
        dir,
        T0 + 30,
        &["artifact", "key", "add-approver", "--owner", "decoy"],
    );
    assert!(out.contains("refusing to change keys"), "{out}");
    std::fs::write(&ring_path, &original).unwrap();
    assert!(ok(dir, T0 + 30, &["artifact", "verify", &digest]).starts_with("ok"));

    // A rotation retires the builder key at T0 + 1000; a statement signed with it by a command
    // whose clock was set back is recorded after the rotation, and counts for nothing.
    ok(
        dir,
        T0 + 1000,
        &["artifact", "key", "rotate", "--owner", "zone:onprem-a"],
    );
    ok(
        dir,
        T0 + 500,
        &[
            "artifact",
            "attest",
            &digest,
            "--type",
            "feature-pin",
            "--field",
            "featureSet=claims",
            "--field",
            "version=7",
            "--key",
            &builder,
        ],
    );
    let out = refused(dir, T0 + 1100, &["artifact", "verify", &digest]);
    assert!(out.contains("not valid at signing time"), "{out}");

    // An experiment model whose files are deleted and whose bytes are put again as production:
    // what it was first stored as stands.
    let exp = dir.join("exp.bin");
    std::fs::write(&exp, b"an experiment").unwrap();
    let e = ok(
        dir,
        T0 + 1100,
        &[
            "artifact",
            "put",
            exp.to_str().unwrap(),
            "--kind",
            "dataset-snapshot",
            "--lane",
            "experiment",
        ],
    )
    .trim()
    .to_string();
    let hex = e.trim_start_matches("sha256:");
    for f in [
        format!("artifacts/records/sha256/{hex}.json"),
        format!("artifacts/blobs/sha256/{hex}"),
        format!("keys/wrapped/sha256/{hex}.json"),
    ] {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    // Put again as production: refused at once, naming what the ledger first recorded.
    let out = refused(
        dir,
        T0 + 1200,
        &[
            "artifact",
            "put",
            exp.to_str().unwrap(),
            "--kind",
            "dataset-snapshot",
            "--lane",
            "production",
        ],
    );
    assert!(
        out.contains("already exists as dataset-snapshot in lane experiment"),
        "{out}"
    );
    // And a record file written by hand to say production is refused on use.
    ok(
        dir,
        T0 + 1200,
        &[
            "artifact",
            "put",
            exp.to_str().unwrap(),
            "--kind",
            "dataset-snapshot",
            "--lane",
            "experiment",
        ],
    );
    let record = dir.join(format!("artifacts/records/sha256/{hex}.json"));
    let text = std::fs::read_to_string(&record).unwrap();
    std::fs::write(&record, text.replace("\"experiment\"", "\"production\"")).unwrap();
    let out = refused(dir, T0 + 1200, &["artifact", "verify", &e]);
    assert!(
        out.contains("tampered") || out.contains("failed integrity"),
        "{out}"
    );
}

#[test]
fn a_checkpoint_file_that_cannot_be_written_does_not_turn_a_stored_artifact_into_a_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Every checkpoint file write fails (its temporary name is taken by a directory), as on a
    // full disk after the log's own write succeeded.
    for size in 0..256 {
        std::fs::create_dir_all(dir.join(format!("ledger/checkpoints/{size:020}.tmp"))).unwrap();
    }
    let file = dir.join("snap.bin");
    std::fs::write(&file, b"a snapshot").unwrap();
    let out = tg(
        dir,
        T0,
        &[
            "artifact",
            "put",
            file.to_str().unwrap(),
            "--kind",
            "dataset-snapshot",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    // One truthful outcome: stored, ledgered, and said so (exit 0), with a warning.
    assert!(out.status.success(), "{stderr}");
    let digest = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        stderr.contains("checkpoint file could not be written"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Error:") && !stderr.contains("ERROR"),
        "a success with an error beside it: {stderr}"
    );
    assert!(ledger_text(dir).contains("\"type\":\"artifact.stored\""));
    let back = dir.join("back.bin");
    ok(
        dir,
        T0 + 1,
        &["artifact", "get", &digest, "-o", back.to_str().unwrap()],
    );
    assert_eq!(std::fs::read(&back).unwrap(), b"a snapshot");
    assert!(ok(dir, T0 + 1, &["audit", "verify"]).contains("OK"));
}

#[test]
fn a_keyring_edited_in_the_source_neither_signs_nor_is_trusted_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("burst-zone");
    let dst = tmp.path().join("onprem");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    let digest = put_and_sign(&src);
    let builder = ok(&src, T0 + 20, &["artifact", "key", "list"])
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    // In the source, the builder key is given the approver role in the keyring file (its own
    // ledger recorded it as a builder only).
    let ring_path = src.join("keys/signing/keyring.json");
    let original = std::fs::read_to_string(&ring_path).unwrap();
    let edited = original.replacen("\"builder\"", "\"builder\",\"approver\"", 1);
    assert_ne!(edited, original);
    std::fs::write(&ring_path, &edited).unwrap();
    let envelopes = |dir: &Path| {
        let hex = digest.trim_start_matches("sha256:");
        std::fs::read_dir(dir.join(format!("artifacts/envelopes/sha256/{hex}")))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let before = envelopes(&src);
    // Neither sign nor attest signs anything with it.
    for kind in ["data-approval", "security-review"] {
        let out = flat(&refused(
            &src,
            T0 + 30,
            &[
                "artifact",
                "attest",
                &digest,
                "--type",
                kind,
                "--field",
                "approver=mallory",
                "--key",
                &builder,
            ],
        ));
        assert!(
            out.contains("not the one the evidence ledger last recorded"),
            "{kind}: {out}"
        );
    }
    let out = flat(&refused(
        &src,
        T0 + 30,
        &[
            "artifact",
            "sign",
            &digest,
            "--job",
            "job-43",
            "--zone",
            "onprem-a",
            "--repo",
            "https://git.example.org/ml/fraud",
            "--commit",
            "3f2a9c1d0b7e6f5a4c3b2a1908f7e6d5c4b3a291",
        ],
    ));
    assert!(
        out.contains("not the one the evidence ledger last recorded"),
        "{out}"
    );
    assert_eq!(envelopes(&src), before, "nothing was attached");
    assert!(!ledger_text(&src).contains("\"type\":\"artifact.attested\""));

    // The destination does not trust the key from that keyring, and grants it nothing.
    let out = flat(&refused(
        &dst,
        T0 + 40,
        &[
            "artifact",
            "key",
            "trust",
            &builder,
            "--from",
            src.to_str().unwrap(),
        ],
    ));
    assert!(out.contains("refusing to trust"), "{out}");
    assert!(
        out.contains("not the one the evidence ledger last recorded"),
        "{out}"
    );
    assert!(!ok(&dst, T0 + 40, &["artifact", "key", "list"]).contains(&builder));

    // A keyring whose store never recorded one (the file copied into a directory with no
    // ledger) vouches for nothing either.
    let bare = tmp.path().join("bare");
    std::fs::create_dir_all(bare.join("keys/signing")).unwrap();
    std::fs::write(bare.join("keys/signing/keyring.json"), &edited).unwrap();
    let out = flat(&refused(
        &dst,
        T0 + 40,
        &[
            "artifact",
            "key",
            "trust",
            &builder,
            "--from",
            bare.to_str().unwrap(),
        ],
    ));
    assert!(out.contains("never recorded a signing keyring"), "{out}");
    assert!(!ok(&dst, T0 + 40, &["artifact", "key", "list"]).contains(&builder));

    // Restored to what the source's ledger recorded, the key is trusted with exactly the
    // recorded roles, and that trust is ledgered in the destination.
    std::fs::write(&ring_path, &original).unwrap();
    assert_eq!(
        ok(
            &dst,
            T0 + 50,
            &[
                "artifact",
                "key",
                "trust",
                &builder,
                "--from",
                src.to_str().unwrap(),
            ],
        )
        .trim(),
        format!("trusted {builder}")
    );
    let list = ok(&dst, T0 + 50, &["artifact", "key", "list"]);
    let line = list.lines().find(|l| l.starts_with(&builder)).unwrap();
    assert!(line.contains("roles=builder "), "{line}");
    assert!(!line.contains("approver"), "{line}");
    assert!(ledger_text(&dst).contains(&format!("\"change\":\"trusted\",\"key_id\":\"{builder}\"")));
}
