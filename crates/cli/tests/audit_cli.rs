//! End-to-end tests of `tidegate audit` and `tidegate evidence`: a ledger written through the
//! library, then verified, proven, checkpointed, witnessed and bundled through the binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use tidegate_ledger::ledger::{ledger_dir, put_document, read_log};
use tidegate_ledger::segment::{RECORD_OVERHEAD, SEGMENT_HEADER};
use tidegate_ledger::{
    Action, Decision, EntryDraft, Ident, Ledger, LedgerOptions, Subject, SubjectKind,
};

fn tidegate(args: &[&str], data: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(args)
        .env("TIDEGATE_DATA_DIR", data)
        .output()
        .unwrap()
}

/// stdout + stderr, with diagnostic line wrapping undone (miette wraps at the terminal width and
/// prefixes continuation lines with `│`), so assertions do not depend on path lengths.
fn text(o: &Output) -> String {
    let raw = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let mut out = String::new();
    for line in raw.lines() {
        let l = line.trim().trim_start_matches(['│', '×']).trim();
        if l.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(if line.trim_start().starts_with('│') {
                ' '
            } else {
                '\n'
            });
        }
        out.push_str(l);
    }
    out
}

fn id(s: &str) -> Ident {
    Ident::new(s).unwrap()
}

fn fill(data: &Path, from: u64, to: u64) {
    let l = Ledger::open(data, LedgerOptions::default()).unwrap();
    let policy = put_document(data, b"permit(principal, action, resource);").unwrap();
    for i in from..to {
        let job = Subject::new(SubjectKind::Job, format!("job-{}", i % 5)).unwrap();
        let action = if i % 2 == 0 {
            Action::JobApproved { scope: id("run") }
        } else {
            Action::JobPlaced {
                decision: Decision::Allowed,
                zone: id("eu-private"),
                pool: id("a100"),
                reasons: vec![id("policy0")],
                policy_hash: policy.clone(),
            }
        };
        l.append(
            EntryDraft::new(id("dr.chen"), action, vec![job]).unwrap(),
            1_763_900_000_000 + i,
        )
        .unwrap();
    }
    l.close().unwrap();
}

#[test]
fn verify_proof_and_checkpoint_on_a_good_ledger() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 0, 40);
    let o = tidegate(&["audit", "verify"], d.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("OK: 40 entries verified"), "{}", text(&o));

    let o = tidegate(&["audit", "proof", "--entry", "17"], d.path());
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["index"], 17);
    assert_eq!(v["tree_size"], 40);
    assert_eq!(v["proof"].as_array().unwrap().len(), 6);
    assert!(v["entry"].as_str().unwrap().contains("\"seq\":17"));

    let o = tidegate(&["audit", "proof", "--entry", "40"], d.path());
    assert!(!o.status.success());
    assert!(text(&o).contains("no entry 40"), "{}", text(&o));

    let o = tidegate(&["audit", "checkpoint"], d.path());
    assert!(o.status.success(), "{}", text(&o));
    let note = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = note.lines().collect();
    assert!(lines[0].starts_with("tidegate-ledger/"));
    assert_eq!(lines[1], "40");
    // The batch line of the commit that sealed entry 39: the first index it added, the digest of
    // its leaves and the hash of the commit before it.
    assert!(lines[3].starts_with("tidegate-batch 39 "), "{note}");
    // And the root of the subject map at that size.
    assert!(lines[4].starts_with("tidegate-subjects "), "{note}");
    assert_eq!(lines[5], "");
    assert!(lines[6].starts_with("\u{2014} tidegate-ledger/"));
}

#[test]
fn verify_names_the_first_bad_index_and_fails() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 0, 30);
    let log = read_log(&ledger_dir(d.path()), false).unwrap();
    let seg = log.segments[0].0.clone();
    let mut bytes = std::fs::read(&seg).unwrap();
    // Walk to entry record 12 (past the commit records between entries) and flip a payload byte.
    let mut pos = SEGMENT_HEADER;
    let mut entries = 0;
    loop {
        let raw = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap());
        if raw & tidegate_ledger::segment::COMMIT_FLAG == 0 {
            if entries == 12 {
                break;
            }
            entries += 1;
        }
        pos += RECORD_OVERHEAD + (raw & !tidegate_ledger::segment::COMMIT_FLAG) as usize;
    }
    bytes[pos + 40] ^= 0x04;
    std::fs::write(&seg, &bytes).unwrap();
    for args in [
        &["audit", "verify"][..],
        &["audit", "verify", "--skip-decode"],
    ] {
        let o = tidegate(args, d.path());
        assert!(!o.status.success());
        assert!(text(&o).contains("first bad index 12"), "{}", text(&o));
    }
}

#[test]
fn witness_cosigns_and_detects_a_rewritten_history() {
    let d = tempfile::tempdir().unwrap();
    let w = tempfile::tempdir().unwrap();
    let key = w.path().join("witness.key");
    let key_s = key.to_str().unwrap();
    fill(d.path(), 0, 20);
    let o = tidegate(&["audit", "witness", "--key", key_s], d.path());
    assert!(o.status.success(), "{}", text(&o));
    let cosigned = w.path().join("at-20.note");
    std::fs::write(&cosigned, &o.stdout).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout)
            .matches('\u{2014}')
            .count(),
        2,
        "log + witness signatures"
    );

    // The log grows honestly: the old checkpoint still checks, and the witness co-signs again.
    fill(d.path(), 20, 35);
    let o = tidegate(
        &[
            "audit",
            "witness",
            "--key",
            key_s,
            "--check",
            cosigned.to_str().unwrap(),
        ],
        d.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = tidegate(&["audit", "witness", "--key", key_s], d.path());
    assert!(o.status.success(), "{}", text(&o));

    // Someone with the ledger key rebuilds the log with entry 3 changed and re-signs it.
    let log = read_log(&ledger_dir(d.path()), true).unwrap();
    std::fs::remove_dir_all(ledger_dir(d.path())).unwrap();
    let l = Ledger::open(d.path(), LedgerOptions::default()).unwrap();
    for (i, bytes) in log.entries.iter().enumerate() {
        let e = tidegate_ledger::Entry::decode(bytes).unwrap();
        let actor = if i == 3 { id("someone-else") } else { e.actor };
        l.append(
            EntryDraft::new(actor, e.action, e.subjects).unwrap(),
            e.ts_ms,
        )
        .unwrap();
    }
    l.close().unwrap();
    drop(l);
    let o = tidegate(&["audit", "verify"], d.path());
    assert!(
        o.status.success(),
        "the rewritten log is self-consistent: {}",
        text(&o)
    );
    // Against a ledger key held elsewhere, a re-keyed rewrite is caught too.
    let other = tempfile::tempdir().unwrap();
    let l = Ledger::open(other.path(), LedgerOptions::default()).unwrap();
    drop(l);
    let foreign = other.path().join("keys/ledger.pub");
    let o = tidegate(
        &["audit", "verify", "--key", foreign.to_str().unwrap()],
        d.path(),
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("no signature by"), "{}", text(&o));
    let o = tidegate(
        &[
            "audit",
            "witness",
            "--key",
            key_s,
            "--check",
            cosigned.to_str().unwrap(),
        ],
        d.path(),
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("history rewritten"), "{}", text(&o));
    let o = tidegate(&["audit", "witness", "--key", key_s], d.path());
    assert!(
        !o.status.success(),
        "the witness must refuse to co-sign: {}",
        text(&o)
    );
    assert!(text(&o).contains("history rewritten"), "{}", text(&o));
}

#[test]
fn evidence_bundle_round_trip_and_tamper() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 0, 25);
    let out = d.path().join("job-3.json");
    let o = tidegate(
        &["evidence", "job", "job-3", "--out", out.to_str().unwrap()],
        d.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let key = d.path().join("keys/ledger.pub");
    // Offline: run from an empty data dir.
    let empty = tempfile::tempdir().unwrap();
    let o = tidegate(
        &[
            "evidence",
            "verify",
            out.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
        empty.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let s = text(&o);
    assert!(s.contains("Evidence for job job-3: VERIFIED"), "{s}");
    assert!(
        s.contains("placement Allowed in zone eu-private, pool a100"),
        "{s}"
    );
    assert!(s.contains("dr.chen approved run for job job-3"), "{s}");

    let mut bytes = std::fs::read(&out).unwrap();
    let at = String::from_utf8_lossy(&bytes).find("eu-private").unwrap();
    bytes[at] = b'E';
    std::fs::write(&out, &bytes).unwrap();
    let o = tidegate(
        &[
            "evidence",
            "verify",
            out.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
        empty.path(),
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("FAILED verification: entry"),
        "{}",
        text(&o)
    );
}

#[test]
fn help_explains_every_argument() {
    let d = tempfile::tempdir().unwrap();
    for args in [
        &["audit", "verify", "-h"][..],
        &["audit", "proof", "-h"],
        &["audit", "checkpoint", "-h"],
        &["audit", "witness", "-h"],
        &["witness", "-h"],
        &["evidence", "job", "-h"],
        &["evidence", "verify", "-h"],
        &["bench", "ledger", "-h"],
        &["retention", "plan", "-h"],
    ] {
        let o = tidegate(args, d.path());
        assert!(o.status.success());
        let h = text(&o);
        let mut options = 0;
        // Every option and argument line carries a description after its flag.
        for line in h
            .lines()
            .map(str::trim_start)
            .filter(|l| l.starts_with('-') || l.starts_with('<'))
        {
            options += 1;
            let described = line
                .split_once("  ")
                .is_some_and(|(_, rest)| rest.trim().len() > 8);
            assert!(described, "undocumented: {line:?} in {args:?}\n{h}");
        }
        assert!(options >= 2, "{args:?}: {h}");
    }
}

#[test]
fn retention_plan_shows_due_held_and_deleted_objects() {
    let d = tempfile::tempdir().unwrap();
    let l = Ledger::open(d.path(), LedgerOptions::default()).unwrap();
    let t0 = 1_763_900_000_000u64;
    let job = |j: &str| vec![Subject::new(SubjectKind::Job, j).unwrap()];
    let reg = |o: &[u8], j: &str| {
        let a = Action::RetentionRegistered {
            object: tidegate_ledger::Digest::of(o),
            kind: tidegate_ledger::ObjectKind::InferenceTraces,
        };
        l.append(EntryDraft::new(id("gw"), a, job(j)).unwrap(), t0)
            .unwrap();
    };
    reg(b"traces-1", "job-1");
    reg(b"traces-2", "job-2");
    reg(b"traces-3", "job-3");
    let hold = Action::RetentionHoldSet {
        order: tidegate_ledger::Digest::of(b"order"),
    };
    l.append(
        EntryDraft::new(id("legal"), hold, job("job-2")).unwrap(),
        t0 + 1,
    )
    .unwrap();
    let del = Action::RetentionDeleted {
        object: tidegate_ledger::Digest::of(b"traces-3"),
        rule: id("inference-traces-30d"),
        method: id("crypto-shred"),
    };
    l.append(
        EntryDraft::new(id("retention"), del, job("job-3")).unwrap(),
        t0 + 2,
    )
    .unwrap();
    l.close().unwrap();
    drop(l);
    let now = (t0 + 31 * 86_400_000).to_string();
    let o = tidegate(&["retention", "plan", "--now-ms", &now], d.path());
    assert!(o.status.success(), "{}", text(&o));
    let s = text(&o);
    assert!(s.contains("3 objects"), "{s}");
    assert_eq!(s.matches("DUE NOW").count(), 1, "{s}");
    assert_eq!(s.matches("DUE BUT HELD").count(), 1, "{s}");
    assert!(s.contains("deleted (tombstone entry 4)"), "{s}");
    assert!(s.contains("delete at 2025-12-23T12:13:20.000Z"), "{s}");
    assert!(s.contains("HIPAA 45 CFR 164.316(b)(2)"), "{s}");
}

/// Someone who can write the data directory, but has no ledger key, appends a well-formed
/// `job.approved` with valid checksums and rewrites a placement: `audit verify`, `audit
/// checkpoint` and `evidence job` refuse or leave the forgery out, and nothing new is signed.
#[test]
fn forged_or_rewritten_entries_are_never_signed_by_the_cli() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 0, 36);
    let seg = read_log(&ledger_dir(d.path()), false).unwrap().segments[0]
        .0
        .clone();
    let clean = std::fs::read(&seg).unwrap();
    let checkpoints = || {
        std::fs::read_dir(ledger_dir(d.path()).join("checkpoints"))
            .unwrap()
            .count()
    };
    let before = checkpoints();

    // (c) A forged approval by "chief-privacy-officer", appended with valid checksums.
    let forged = EntryDraft::new(
        id("chief-privacy-officer"),
        Action::JobApproved { scope: id("run") },
        vec![Subject::new(SubjectKind::Job, "job-1").unwrap()],
    )
    .unwrap()
    .into_entry(36, 1_763_900_100_000);
    let mut bytes = clean.clone();
    tidegate_ledger::segment::encode_record(36, &forged.encode().unwrap(), &mut bytes);
    std::fs::write(&seg, &bytes).unwrap();
    let o = tidegate(&["audit", "verify"], d.path());
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("first bad index 36") && text(&o).contains("sealed by no signed commit"),
        "{}",
        text(&o)
    );
    let out = d.path().join("job-1.json");
    let o = tidegate(
        &["evidence", "job", "job-1", "--out", out.to_str().unwrap()],
        d.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !std::fs::read_to_string(&out)
            .unwrap()
            .contains("chief-privacy-officer"),
        "the forged approval is in the bundle"
    );
    let o = tidegate(&["audit", "checkpoint"], d.path());
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().nth(1),
        Some("36")
    );

    // (a) Entry 31 rewritten with its checksums recomputed: everything refuses, naming 31.
    let mut pos = SEGMENT_HEADER;
    let mut entries = 0;
    let mut bytes = clean.clone();
    let (start, end) = loop {
        let raw = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap());
        let len = (raw & !tidegate_ledger::segment::COMMIT_FLAG) as usize;
        if raw & tidegate_ledger::segment::COMMIT_FLAG == 0 {
            if entries == 31 {
                break (pos, pos + RECORD_OVERHEAD + len);
            }
            entries += 1;
        }
        pos += RECORD_OVERHEAD + len;
    };
    let old = tidegate_ledger::Entry::decode(&bytes[start + 16..end - 4]).unwrap();
    let text_old = String::from_utf8(old.encode().unwrap()).unwrap();
    let moved = text_old.replace("eu-private", "us-public");
    assert_ne!(moved, text_old);
    let mut rec = Vec::new();
    tidegate_ledger::segment::encode_record(31, moved.as_bytes(), &mut rec);
    bytes.splice(start..end, rec);
    std::fs::write(&seg, &bytes).unwrap();
    for args in [
        &["audit", "verify"][..],
        &["audit", "checkpoint"],
        &["evidence", "job", "job-1", "--out", out.to_str().unwrap()],
    ] {
        let o = tidegate(args, d.path());
        assert!(!o.status.success(), "{args:?}: {}", text(&o));
        assert!(
            text(&o).contains("first bad index 31"),
            "{args:?}: {}",
            text(&o)
        );
    }
    assert_eq!(
        checkpoints(),
        before,
        "a checkpoint was signed over tampered history"
    );
}

#[test]
fn a_wiped_history_is_never_ok_a_lost_key_is_never_replaced_and_set_asides_are_reported() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 0, 12);
    let o = tidegate(&["audit", "verify"], d.path());
    assert!(o.status.success(), "{}", text(&o));
    let ledger = ledger_dir(d.path());
    let keep = d.path().join("kept");
    copy_dir(&ledger, &keep);
    // Every entry and every checkpoint removed: nothing signed, so never OK.
    for (seg, _) in tidegate_ledger::ledger::list_segments(&ledger).unwrap() {
        std::fs::remove_file(seg).unwrap();
    }
    for cp in std::fs::read_dir(ledger.join("checkpoints")).unwrap() {
        std::fs::remove_file(cp.unwrap().path()).unwrap();
    }
    let o = tidegate(&["audit", "verify"], d.path());
    assert!(!o.status.success(), "a wiped ledger verified: {}", text(&o));
    assert!(text(&o).contains("no signed commit"), "{}", text(&o));
    std::fs::remove_dir_all(&ledger).unwrap();
    copy_dir(&keep, &ledger);
    // The signing key removed: no command makes a new one over the history it began.
    let key = d.path().join("keys/ledger.key");
    let public = d.path().join("keys/ledger.pub");
    let pub_before = std::fs::read(&public).unwrap();
    let aside = d.path().join("ledger.key.aside");
    std::fs::rename(&key, &aside).unwrap();
    let o = tidegate(&["token", "keys", "rotate"], d.path());
    assert!(!o.status.success(), "recorded with a new key: {}", text(&o));
    assert!(text(&o).contains("signing key is missing"), "{}", text(&o));
    assert!(!key.exists(), "a new ledger key was made");
    assert_eq!(
        std::fs::read(&public).unwrap(),
        pub_before,
        "ledger.pub was replaced"
    );
    // Nor with the log's entries gone too (its checkpoints and public key still there).
    let segs_aside = d.path().join("segments.aside");
    std::fs::create_dir_all(&segs_aside).unwrap();
    for (seg, _) in tidegate_ledger::ledger::list_segments(&ledger).unwrap() {
        std::fs::rename(&seg, segs_aside.join(seg.file_name().unwrap())).unwrap();
    }
    let o = tidegate(&["token", "keys", "rotate"], d.path());
    assert!(!o.status.success(), "recorded with a new key: {}", text(&o));
    assert!(!key.exists(), "a new ledger key was made");
    assert_eq!(
        std::fs::read(&public).unwrap(),
        pub_before,
        "ledger.pub was replaced"
    );
    for e in std::fs::read_dir(&segs_aside).unwrap() {
        let e = e.unwrap();
        std::fs::rename(e.path(), ledger.join(e.file_name())).unwrap();
    }
    std::fs::rename(&aside, &key).unwrap();
    // Bytes past the last commit (a forged entry) are set aside by the next open, and every
    // later verification says so.
    let seg = tidegate_ledger::ledger::list_segments(&ledger).unwrap()[0]
        .0
        .clone();
    let mut bytes = std::fs::read(&seg).unwrap();
    let forged = EntryDraft::new(
        id("chief-privacy-officer"),
        Action::JobApproved { scope: id("run") },
        vec![Subject::new(SubjectKind::Job, "job-1").unwrap()],
    )
    .unwrap()
    .into_entry(12, 1_763_900_100_000);
    tidegate_ledger::segment::encode_record(12, &forged.encode().unwrap(), &mut bytes);
    std::fs::write(&seg, &bytes).unwrap();
    fill(d.path(), 12, 13);
    let o = tidegate(&["audit", "verify"], d.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("set-aside piece(s)") && text(&o).contains("quarantine"),
        "{}",
        text(&o)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 0, 5);
    for args in [
        &["audit", "verify"][..],
        &["audit", "proof", "--entry", "1"],
    ] {
        // The reader is gone before the first byte is written (as `| head -1` ends up).
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let o = Command::new(env!("CARGO_BIN_EXE_tidegate"))
            .args(args)
            .env("TIDEGATE_DATA_DIR", d.path())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn a_witness_key_given_as_a_bare_file_name_is_created_in_the_current_directory() {
    let d = tempfile::tempdir().unwrap();
    fill(d.path(), 0, 3);
    let cwd = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let o = Command::new(env!("CARGO_BIN_EXE_tidegate"))
            .args(["audit", "witness", "--key", "w0.key"])
            .env("TIDEGATE_DATA_DIR", d.path())
            .current_dir(cwd.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }
    assert!(cwd.path().join("w0.key").exists() && cwd.path().join("w0.pub").exists());
}
