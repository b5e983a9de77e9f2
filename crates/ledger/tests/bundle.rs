//! Evidence bundle tests: lineage selection, offline verification, the plain summary, and that
//! changing any single byte of a bundle makes verification fail, naming what was changed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use tidegate_ledger::bundle::{encode_bundle, summary, verify_bundle, BundleError};
use tidegate_ledger::evidence::bundle_for;
use tidegate_ledger::keys::load_verifier;
use tidegate_ledger::ledger::key_path;
use tidegate_ledger::{Entry, NoteSigner, SubjectKind};

fn job_bundle() -> (tempfile::TempDir, Vec<u8>, tidegate_ledger::NoteVerifier) {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    record_workflow(&l, dir.path());
    l.close().unwrap();
    drop(l);
    let b = bundle_for(dir.path(), &subject(SubjectKind::Job, "job-7f3a")).unwrap();
    let bytes = encode_bundle(&b).unwrap();
    let v = load_verifier(&key_path(dir.path())).unwrap();
    (dir, bytes, v)
}

#[test]
fn job_bundle_holds_its_lineage_and_verifies_offline() {
    let (_d, bytes, v) = job_bundle();
    let vb = verify_bundle(&bytes, &v).unwrap();
    let actions: Vec<&str> = vb.entries.iter().map(|e: &Entry| e.action.name()).collect();
    // Direct entries, lineage neighbours (dataset copy, model deployment) and the deciding policy.
    for want in [
        "job.submitted",
        "job.approved",
        "job.placed",
        "job.burst",
        "dataset.copied",
        "artifact.deployed_edge",
        "policy.loaded",
    ] {
        assert!(actions.contains(&want), "{want} missing from {actions:?}");
    }
    // Not the unrelated job, not the fleet, not the policy that decided nothing here.
    assert!(!vb.entries.iter().any(|e| e.mentions("job-other")));
    assert!(!actions.contains(&"fleet.loaded"));
    assert_eq!(actions.iter().filter(|a| **a == "policy.loaded").count(), 1);
    assert_eq!(
        vb.documents.len(),
        3,
        "policy text, justification and sanitizer report attached"
    );
    let s = summary(&vb);
    for want in [
        "Evidence for job job-7f3a: VERIFIED",
        "placement Allowed in zone eu-private, pool a100-private",
        "reasons: policy0, phi-stays-private",
        "burst to zone us-public, pool h100-spot",
        "copied from zone hospital-onprem to zone eu-private as Sanitized",
        "dr.chen@hospital.example approved run for job job-7f3a",
        "bob@hospital.example promoted artifact",
        "deployed to edge site clinic-12",
        "(attached,",
    ] {
        assert!(s.contains(want), "summary lacks {want:?}:\n{s}");
    }
}

#[test]
fn a_job_bundle_holds_no_entry_about_other_jobs_that_read_the_same_data() {
    use tidegate_ledger::{Action, Decision, Digest, EntryDraft};
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    record_workflow(&l, dir.path());
    // Thirty other jobs read the same dataset and are placed.
    for n in 0..30u64 {
        let subjects = vec![
            subject(SubjectKind::Job, &format!("job-reader-{n}")),
            subject(SubjectKind::Dataset, "synthea-patients"),
        ];
        let placed = EntryDraft::new(
            id("scheduler"),
            Action::JobPlaced {
                decision: Decision::Allowed,
                zone: id("eu-private"),
                pool: id("a100-private"),
                reasons: vec![id("policy0")],
                policy_hash: Digest::of(b"p"),
            },
            subjects,
        )
        .unwrap();
        l.append(placed, 1_763_990_000_000 + n).unwrap();
    }
    l.close().unwrap();
    drop(l);
    let b = bundle_for(dir.path(), &subject(SubjectKind::Job, "job-7f3a")).unwrap();
    let v = load_verifier(&key_path(dir.path())).unwrap();
    let vb = verify_bundle(&encode_bundle(&b).unwrap(), &v).unwrap();
    assert!(
        !vb.entries.iter().any(|e| e
            .subjects
            .iter()
            .any(|s| s.id.as_str().starts_with("job-reader-"))),
        "other jobs' entries in the bundle"
    );
    // The provenance of the data it read is still there.
    assert!(vb
        .entries
        .iter()
        .any(|e| e.action.name() == "dataset.copied"));
    // The dataset's own bundle still shows who used it.
    let d = bundle_for(
        dir.path(),
        &subject(SubjectKind::Dataset, "synthea-patients"),
    )
    .unwrap();
    assert!(d.entries.iter().any(|e| e.entry.contains("job-reader-3")));
    // Adding another job's entry (a real one, proven included at the same size) to the job's
    // bundle is caught: it is not part of the job's evidence.
    let other = d
        .entries
        .iter()
        .find(|e| e.entry.contains("job-reader-3"))
        .unwrap()
        .clone();
    let mut m = b.clone();
    m.entries.push(other.clone());
    m.entries.sort_by_key(|e| e.index);
    let err = verify_bundle(&encode_bundle(&m).unwrap(), &v).unwrap_err();
    assert!(
        matches!(&err, BundleError::Entry { index, why } if *index == other.index && why.contains("not part of the evidence about job job-7f3a")),
        "{err}"
    );
}

#[test]
fn bundle_from_the_wrong_key_is_rejected() {
    let (_d, bytes, v) = job_bundle();
    let other = NoteSigner::from_seed(&v.name, &[9; 32]).unwrap().verifier();
    let err = verify_bundle(&bytes, &other).unwrap_err();
    assert!(matches!(err, BundleError::Checkpoint(_)), "{err}");
}

#[test]
fn targeted_changes_are_named() {
    let (_d, bytes, v) = job_bundle();
    let text = String::from_utf8(bytes).unwrap();
    let b: tidegate_ledger::bundle::Bundle = serde_json::from_str(&text).unwrap();
    let encode = |b: &tidegate_ledger::bundle::Bundle| encode_bundle(b).unwrap();

    // An entry's content changed (kept canonical): its proof fails, naming the index.
    let mut m = b.clone();
    let placed = m
        .entries
        .iter_mut()
        .find(|e| e.entry.contains("job.placed"))
        .unwrap();
    let idx = placed.index;
    placed.entry = placed.entry.replace("eu-private", "us-public");
    assert_eq!(
        verify_bundle(&encode(&m), &v).unwrap_err(),
        BundleError::Proof {
            index: idx,
            why: "recomputed root does not match the expected root".into()
        }
    );
    // A proof hash changed.
    let mut m = b.clone();
    let e = m.entries.iter_mut().find(|e| !e.proof.is_empty()).unwrap();
    let idx = e.index;
    e.proof[0] = "00".repeat(32);
    assert!(
        matches!(verify_bundle(&encode(&m), &v).unwrap_err(), BundleError::Proof { index, .. } if index == idx)
    );
    // The checkpoint's root changed: its signature fails.
    let mut m = b.clone();
    let lines: Vec<&str> = m.checkpoint.lines().collect();
    let root = lines[2];
    let flipped = if root.starts_with('A') {
        root.replacen('A', "B", 1)
    } else {
        format!("A{}", &root[1..])
    };
    m.checkpoint = m.checkpoint.replacen(root, &flipped, 1);
    assert!(matches!(
        verify_bundle(&encode(&m), &v).unwrap_err(),
        BundleError::Checkpoint(_)
    ));
    // A document's content changed: named by digest.
    let mut m = b.clone();
    let digest = m.documents[0].digest.to_string();
    m.documents[0].content = base64_of(b"a different policy");
    assert!(
        matches!(verify_bundle(&encode(&m), &v).unwrap_err(), BundleError::Document { digest: d, .. } if d == digest)
    );
    // The subject changed to something the entries are not about.
    let mut m = b;
    m.subject = subject(SubjectKind::Job, "job-other");
    assert!(matches!(
        verify_bundle(&encode(&m), &v).unwrap_err(),
        BundleError::Subject(_)
    ));
}

#[test]
fn a_bundle_proves_it_holds_every_entry_about_its_subject() {
    let (_d, bytes, v) = job_bundle();
    let b: tidegate_ledger::bundle::Bundle = serde_json::from_slice(&bytes).unwrap();
    let encode = |b: &tidegate_ledger::bundle::Bundle| encode_bundle(b).unwrap();
    let vb = verify_bundle(&bytes, &v).unwrap();
    assert!(
        summary(&vb).contains("complete: these are all"),
        "{}",
        summary(&vb)
    );
    let about_job = |e: &tidegate_ledger::bundle::BundleEntry| {
        Entry::decode(e.entry.as_bytes())
            .unwrap()
            .subjects
            .contains(&subject(SubjectKind::Job, "job-7f3a"))
    };
    // Dropping any one of the job's own entries (each still proven included) is caught.
    let own: Vec<u64> = b
        .entries
        .iter()
        .filter(|e| about_job(e))
        .map(|e| e.index)
        .collect();
    assert!(own.len() >= 4, "{own:?}");
    for drop in &own {
        let mut m = b.clone();
        m.entries.retain(|e| e.index != *drop);
        let err = verify_bundle(&encode(&m), &v).unwrap_err();
        assert!(
            matches!(&err, BundleError::Incomplete(why) if why.contains(&format!("holds {} entries about job job-7f3a but the ledger holds {}", own.len() - 1, own.len()))),
            "dropping {drop}: {err}"
        );
    }
    // Re-labelling the bundle to a subject its entries also name (a dataset the job read) is
    // caught: the bundle holds only a selection of that dataset's entries.
    let relabelled = b
        .entries
        .iter()
        .filter(|e| about_job(e))
        .flat_map(|e| Entry::decode(e.entry.as_bytes()).unwrap().subjects)
        .find(|s| s.kind == SubjectKind::Dataset)
        .expect("a job entry names its dataset");
    let mut m = b.clone();
    m.subject = relabelled;
    assert!(
        matches!(
            verify_bundle(&encode(&m), &v).unwrap_err(),
            BundleError::Incomplete(_)
        ),
        "re-labelled bundle verified"
    );
    // The map proof cannot be bent to match fewer entries: lowering the count, or swapping in
    // another subject's bucket, fails.
    let mut m = b.clone();
    m.entries.retain(|e| e.index != own[own.len() - 1]);
    for item in &mut m.subject_map.bucket {
        item.count -= 1;
    }
    assert!(matches!(
        verify_bundle(&encode(&m), &v).unwrap_err(),
        BundleError::Incomplete(_)
    ));
    let mut m = b.clone();
    m.subject_map.siblings[0] = "00".repeat(32);
    assert!(matches!(
        verify_bundle(&encode(&m), &v).unwrap_err(),
        BundleError::Incomplete(_)
    ));
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn changing_any_single_byte_fails_verification() {
    let (_d, bytes, v) = job_bundle();
    verify_bundle(&bytes, &v).unwrap();
    let mut kinds = std::collections::BTreeMap::<&'static str, usize>::new();
    for i in 0..bytes.len() {
        for delta in [0x01u8, 0x20] {
            let mut m = bytes.clone();
            m[i] ^= delta;
            let err = verify_bundle(&m, &v)
                .expect_err(&format!("flip {delta:#x} at byte {i} went unnoticed"));
            let kind = match err {
                BundleError::Parse(_) => "parse",
                BundleError::NotCanonical { .. } => "not-canonical",
                BundleError::Format(_) => "format",
                BundleError::Checkpoint(_) => "checkpoint",
                BundleError::Entry { .. } => "entry",
                BundleError::Proof { .. } => "proof",
                BundleError::Document { .. } => "document",
                BundleError::Subject(_) => "subject",
                BundleError::Incomplete(_) => "incomplete",
                BundleError::Anchor { .. } => "anchor",
                BundleError::Required(_) => "required",
            };
            *kinds.entry(kind).or_default() += 1;
        }
    }
    // The failures are spread over the checks that name what changed, not only over parsing.
    for k in ["checkpoint", "proof", "document", "entry"] {
        assert!(
            kinds.get(k).copied().unwrap_or(0) > 0,
            "no flip was reported as {k}: {kinds:?}"
        );
    }
}
