//! Shared helpers for the ledger integration tests: drafts, a ledger in a temp dir, file surgery.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};

use tidegate_ledger::ledger::{ledger_dir, read_log};
use tidegate_ledger::segment::{encode_record, COMMIT_FLAG, RECORD_OVERHEAD, SEGMENT_HEADER};
use tidegate_ledger::{
    Action, Decision, Digest, EntryDraft, Ident, Ledger, LedgerOptions, Subject, SubjectKind,
};

pub fn id(s: &str) -> Ident {
    Ident::new(s).unwrap()
}

pub fn subject(kind: SubjectKind, s: &str) -> Subject {
    Subject::new(kind, s).unwrap()
}

/// A job.placed draft for job `job-{n}`.
pub fn placed(n: u64) -> EntryDraft {
    EntryDraft::new(
        id("scheduler"),
        Action::JobPlaced {
            decision: Decision::Allowed,
            zone: id("eu-private"),
            pool: id("a100"),
            reasons: vec![id("phi-stays-private")],
            policy_hash: Digest::of(b"policy v1"),
        },
        vec![subject(SubjectKind::Job, &format!("job-{n}"))],
    )
    .unwrap()
}

pub fn open(data: &Path) -> Ledger {
    Ledger::open(data, LedgerOptions::default()).unwrap()
}

/// A ledger with `n` entries, closed (so a final checkpoint covers them all).
pub fn filled(n: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let l = open(&data);
    for i in 0..n {
        l.append(placed(i), 1_700_000_000_000 + i).unwrap();
    }
    l.close().unwrap();
    (dir, data)
}

/// The only segment file of a small ledger.
pub fn segment_file(data: &Path) -> PathBuf {
    let log = read_log(&ledger_dir(data), false).unwrap();
    assert_eq!(log.segments.len(), 1);
    log.segments[0].0.clone()
}

/// Byte ranges of each entry record (whole record, header included) in a segment file, by
/// entry index; commit records are skipped (see [`commit_ranges`]).
pub fn record_ranges(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    all_records(bytes)
        .into_iter()
        .filter(|(_, commit)| !commit)
        .map(|(r, _)| r)
        .collect()
}

/// Byte ranges of each commit record in a segment file, oldest first.
pub fn commit_ranges(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    all_records(bytes)
        .into_iter()
        .filter(|(_, commit)| *commit)
        .map(|(r, _)| r)
        .collect()
}

fn all_records(bytes: &[u8]) -> Vec<(std::ops::Range<usize>, bool)> {
    let mut out = Vec::new();
    let mut pos = SEGMENT_HEADER;
    while pos + 4 <= bytes.len() {
        let raw = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap());
        let len = (raw & !COMMIT_FLAG) as usize;
        out.push((pos..pos + RECORD_OVERHEAD + len, raw & COMMIT_FLAG != 0));
        pos += RECORD_OVERHEAD + len;
    }
    out
}

/// Re-encode a record with a new index and payload (valid checksums), as a careful forger would.
pub fn forge_record(index: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_record(index, payload, &mut out);
    out
}

/// Record a realistic workflow around job `job-7f3a`, dataset `synthea-patients` and model
/// `readmit-risk@1.2` (plus an unrelated job `job-other`), storing the policy text and the burst
/// justification as documents. Returns the digest of the policy text.
pub fn record_workflow(l: &Ledger, data: &Path) -> Digest {
    use tidegate_ledger::ledger::put_document;
    use tidegate_ledger::{DataForm, SubjectKind as K};
    let mut t = 1_763_900_000_000u64;
    let mut rec = |actor: &str, action: Action, subjects: Vec<Subject>| {
        t += 60_000;
        l.append(EntryDraft::new(id(actor), action, subjects).unwrap(), t)
            .unwrap();
    };
    let policy = put_document(data, b"permit(principal, action == Action::\"place\", resource) when { resource.zone == \"eu-private\" };").unwrap();
    let justification = put_document(
        data,
        b"Quarterly readmission report due Friday; private pool saturated.",
    )
    .unwrap();
    let report = put_document(
        data,
        b"{\"sanitizer\":\"v2\",\"direct_identifiers_remaining\":0}",
    )
    .unwrap();
    rec(
        "control-plane",
        Action::FleetLoaded {
            fleet_hash: Digest::of(b"fleet.yaml"),
        },
        vec![],
    );
    rec(
        "control-plane",
        Action::PolicyLoaded {
            policy_hash: policy.clone(),
        },
        vec![],
    );
    rec(
        "control-plane",
        Action::PolicyLoaded {
            policy_hash: Digest::of(b"older policy"),
        },
        vec![],
    );
    rec(
        "data-service",
        Action::DatasetCopied {
            version: id("synthea-patients@v3"),
            from_zone: id("hospital-onprem"),
            to_zone: id("eu-private"),
            form: DataForm::Sanitized,
            content: Digest::of(b"sanitized csv"),
            bytes: 13,
            report: Some(report),
        },
        vec![subject(K::Dataset, "synthea-patients")],
    );
    let job = vec![
        subject(K::Job, "job-7f3a"),
        subject(K::Dataset, "synthea-patients"),
    ];
    rec(
        "alice@hospital.example",
        Action::JobSubmitted {
            spec: Digest::of(b"job.yaml"),
        },
        job.clone(),
    );
    rec(
        "other@hospital.example",
        Action::JobSubmitted {
            spec: Digest::of(b"other.yaml"),
        },
        vec![subject(K::Job, "job-other")],
    );
    rec(
        "dr.chen@hospital.example",
        Action::JobApproved { scope: id("run") },
        job.clone(),
    );
    rec(
        "scheduler",
        Action::JobPlaced {
            decision: Decision::Allowed,
            zone: id("eu-private"),
            pool: id("a100-private"),
            reasons: vec![id("policy0"), id("phi-stays-private")],
            policy_hash: policy.clone(),
        },
        job.clone(),
    );
    rec(
        "scheduler",
        Action::JobBurst {
            zone: id("us-public"),
            pool: id("h100-spot"),
            justification,
        },
        job.clone(),
    );
    let model = Digest::of(b"model weights");
    let m = vec![
        subject(K::Model, "readmit-risk@1.2"),
        subject(K::Job, "job-7f3a"),
    ];
    rec(
        "artifacts",
        Action::ArtifactSigned {
            artifact: model.clone(),
            key_id: id("release-2026"),
            signature: Digest::of(b"dsse"),
        },
        m.clone(),
    );
    rec(
        "bob@hospital.example",
        Action::ArtifactPromoted {
            artifact: model.clone(),
            from_stage: id("staging"),
            to_stage: id("production"),
            policy_hash: tidegate_ledger::Digest::of(b"promotion policy"),
        },
        m.clone(),
    );
    rec(
        "edge-agent",
        Action::ArtifactDeployedEdge {
            artifact: model,
            site: id("clinic-12"),
        },
        vec![subject(K::Model, "readmit-risk@1.2")],
    );
    policy
}
