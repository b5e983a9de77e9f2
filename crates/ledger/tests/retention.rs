//! Retention tests on a real ledger: legal hold blocks deletion, deletion writes a tombstone
//! before shredding, and tombstones never break verification or old checkpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use tidegate_ledger::keys::load_verifier;
use tidegate_ledger::ledger::{key_path, ledger_dir, read_log};
use tidegate_ledger::merkle::verify_consistency;
use tidegate_ledger::retention::{default_rules, delete, plan, DeleteError, Status};
use tidegate_ledger::verify::verify_ledger;
use tidegate_ledger::{Action, Digest, Entry, EntryDraft, ObjectKind, SubjectKind};

const DAY: u64 = 86_400_000;

fn entries(data: &std::path::Path) -> Vec<Entry> {
    read_log(&ledger_dir(data), true)
        .unwrap()
        .entries
        .iter()
        .map(|b| Entry::decode(b).unwrap())
        .collect()
}

#[test]
fn hold_blocks_deletion_and_tombstones_keep_the_log_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let l = open(data);
    let t0 = 1_763_900_000_000u64;
    let traces = Digest::of(b"inference traces of job-1");
    let ckpt = Digest::of(b"checkpoint of job-2");
    let reg = |object: &Digest, kind, job: &str, ts| {
        l.append(
            EntryDraft::new(
                id("inference-gw"),
                Action::RetentionRegistered {
                    object: object.clone(),
                    kind,
                },
                vec![subject(SubjectKind::Job, job)],
            )
            .unwrap(),
            ts,
        )
        .unwrap();
    };
    reg(&traces, ObjectKind::InferenceTraces, "job-1", t0);
    reg(&ckpt, ObjectKind::Checkpoints, "job-2", t0);
    l.append(
        EntryDraft::new(
            id("legal@hospital.example"),
            Action::RetentionHoldSet {
                order: Digest::of(b"litigation hold 2026-17"),
            },
            vec![subject(SubjectKind::Job, "job-1")],
        )
        .unwrap(),
        t0 + DAY,
    )
    .unwrap();
    let before = l.tree();
    let now = t0 + 120 * DAY;

    let p = plan(&entries(data), &default_rules(), now);
    let held = p.iter().find(|x| x.object == traces).unwrap();
    assert_eq!(held.status, Status::Held);
    let mut shredded = Vec::new();
    let err = delete(&l, held, id("retention"), now, || {
        shredded.push(traces.clone())
    })
    .unwrap_err();
    assert!(matches!(err, DeleteError::LegalHold(_)), "{err}");
    assert!(shredded.is_empty(), "held object was shredded");

    let due = p.iter().find(|x| x.object == ckpt).unwrap();
    assert_eq!(due.status, Status::Due);
    let n_before = l.len();
    delete(&l, due, id("retention"), now, || {
        shredded.push(ckpt.clone())
    })
    .unwrap();
    assert_eq!(shredded, vec![ckpt.clone()]);
    assert_eq!(l.len(), n_before + 1, "one tombstone entry appended");

    let p = plan(&entries(data), &default_rules(), now);
    assert_eq!(
        p.iter().find(|x| x.object == ckpt).unwrap().status,
        Status::Deleted {
            tombstone: n_before
        }
    );
    let again = delete(
        &l,
        p.iter().find(|x| x.object == ckpt).unwrap(),
        id("retention"),
        now,
        || (),
    )
    .unwrap_err();
    assert!(matches!(again, DeleteError::AlreadyDeleted(..)));

    // The log only grew: the pre-deletion tree is a prefix, and everything verifies.
    let after = l.tree();
    let proof = after.consistency_proof(before.len(), after.len()).unwrap();
    verify_consistency(
        before.len(),
        after.len(),
        &before.root(),
        &after.root(),
        &proof,
    )
    .unwrap();
    l.close().unwrap();
    drop(l);
    verify_ledger(&ledger_dir(data), &load_verifier(&key_path(data)).unwrap()).unwrap();
}
