//! The ledger holds identifiers and digests, never data content: values taken from the Synthea
//! patients table (names, SSNs, addresses, birthplaces) are refused by the entry API, and a
//! ledger built from a realistic sequence of actions over that data contains none of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use tidegate_ledger::entry::{Entry, EntryError};
use tidegate_ledger::ledger::{ledger_dir, put_document};
use tidegate_ledger::{Action, DataForm, Decision, Digest, EntryDraft, Ident, SubjectKind};

struct Patient {
    ssn: String,
    full_name: String,
    address: String,
    /// Every identifying value of at least 4 characters.
    fields: Vec<String>,
}

fn synthea_dir() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(d) = std::env::var("TIDEGATE_SYNTHEA_DIR") {
        candidates.push(PathBuf::from(d));
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    candidates.push(ws.join("shared/data/synthea"));
    candidates.push(PathBuf::from("/work/shared/data/synthea"));
    candidates
        .into_iter()
        .find(|d| d.join("patients.csv").is_file())
}

/// Patients' identifying values: FIRST, LAST, "FIRST LAST", SSN, DRIVERS, PASSPORT, MAIDEN,
/// BIRTHPLACE, ADDRESS, and "ADDRESS, CITY".
fn patients() -> Option<Vec<Patient>> {
    let Some(dir) = synthea_dir() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but the Synthea data is missing"
        );
        eprintln!(
            "SKIPPED: Synthea patients.csv not found; set TIDEGATE_SYNTHEA_DIR to its directory"
        );
        return None;
    };
    let text = std::fs::read_to_string(dir.join("patients.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (first, last, ssn, drivers, passport, maiden, birthplace, address, city) = (
        col("FIRST"),
        col("LAST"),
        col("SSN"),
        col("DRIVERS"),
        col("PASSPORT"),
        col("MAIDEN"),
        col("BIRTHPLACE"),
        col("ADDRESS"),
        col("CITY"),
    );
    let out: Vec<Patient> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            let mut fields: Vec<String> = [
                first, last, ssn, drivers, passport, maiden, birthplace, address,
            ]
            .iter()
            .map(|i| c[*i].to_owned())
            .collect();
            fields.push(format!("{} {}", c[first], c[last]));
            fields.push(format!("{}, {}", c[address], c[city]));
            fields.retain(|f| f.len() >= 4);
            Patient {
                ssn: c[ssn].to_owned(),
                full_name: format!("{} {}", c[first], c[last]),
                address: c[address].to_owned(),
                fields,
            }
        })
        .collect();
    assert!(out.len() >= 5, "expected several patients");
    Some(out)
}

#[test]
fn entry_api_refuses_free_form_patient_content() {
    let Some(ps) = patients() else { return };
    let mut refused = 0;
    for p in &ps {
        assert!(
            Ident::new(p.ssn.clone()).is_err(),
            "SSN accepted as an identifier"
        );
        assert!(Digest::parse(p.ssn.clone()).is_err());
        assert!(Ident::new(p.full_name.clone()).is_err());
        assert!(Ident::new(p.address.clone()).is_err());
        for f in &p.fields {
            // Anything with spaces, commas or other free-text characters cannot be an identifier.
            if f.contains(|c: char| !(c.is_ascii_alphanumeric() || ".-_:@/+".contains(c))) {
                let err = Ident::new(f.clone()).unwrap_err();
                // The error never echoes the value.
                assert!(!err.to_string().contains(f.as_str()), "{err}");
                refused += 1;
            }
        }
        // There is no free-text field to put content in: a smuggled field makes the entry invalid.
        let entry = placed(1).into_entry(0, 0);
        let mut v = serde_json::to_value(&entry).unwrap();
        v["action"]["note"] = serde_json::Value::String(p.address.clone());
        let smuggled = tidegate_ledger::canonical::to_vec(&v).unwrap();
        assert!(matches!(
            Entry::decode(&smuggled),
            Err(EntryError::NotCanonical | EntryError::Malformed(_))
        ));
    }
    assert!(
        refused >= ps.len() * 3,
        "only {refused} free-form values were tried"
    );
}

#[test]
fn ledger_of_a_realistic_workflow_contains_no_phi() {
    let Some(ps) = patients() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let csv = std::fs::read(synthea_dir().unwrap().join("patients.csv")).unwrap();
    let l = open(data);
    let mut t = 1_763_900_000_000u64;
    let mut rec = |actor: &str, action: Action, subjects: Vec<tidegate_ledger::Subject>| {
        t += 1000;
        l.append(EntryDraft::new(id(actor), action, subjects).unwrap(), t)
            .unwrap();
    };
    let policy_text =
        b"permit(principal, action, resource) when { resource.zone == \"eu-private\" };";
    let policy = put_document(data, policy_text).unwrap();
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
    // A sanitized copy of the patients table: recorded by digest; the report names no patient.
    let sanitized: Vec<u8> = csv
        .iter()
        .map(|b| if b.is_ascii_alphabetic() { b'x' } else { *b })
        .collect();
    rec(
        "data-service",
        Action::DatasetCopied {
            version: id("synthea-patients@v3"),
            from_zone: id("hospital-onprem"),
            to_zone: id("eu-private"),
            form: DataForm::Sanitized,
            content: Digest::of(&sanitized),
            bytes: sanitized.len() as u64,
            report: Some(Digest::of(b"sanitizer report: 0 direct identifiers remain")),
        },
        vec![
            subject(SubjectKind::Dataset, "synthea-patients"),
            subject(SubjectKind::Zone, "eu-private"),
        ],
    );
    let job = vec![
        subject(SubjectKind::Job, "job-7f3a"),
        subject(SubjectKind::Dataset, "synthea-patients"),
    ];
    rec(
        "alice@hospital.example",
        Action::JobSubmitted {
            spec: Digest::of(b"job.yaml"),
        },
        job.clone(),
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
            policy_hash: policy,
        },
        job.clone(),
    );
    // The business justification mentions a patient by name: only its digest is recorded.
    let justification = format!("Urgent re-run requested for patient {}", ps[0].full_name);
    rec(
        "scheduler",
        Action::JobBurst {
            zone: id("us-public"),
            pool: id("h100-spot"),
            justification: Digest::of(justification.as_bytes()),
        },
        job.clone(),
    );
    rec(
        "identity",
        Action::TokenIssued {
            token_id: id("tok-91ab"),
            expires_ms: 1_763_900_600_000,
            scope: vec![id("read:synthea-patients@v3")],
        },
        vec![
            subject(SubjectKind::Token, "tok-91ab"),
            subject(SubjectKind::Job, "job-7f3a"),
        ],
    );
    let model = Digest::of(b"model weights");
    let m = vec![
        subject(SubjectKind::Model, "readmit-risk@1.2"),
        subject(SubjectKind::Job, "job-7f3a"),
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
        "artifacts",
        Action::ArtifactPromoted {
            artifact: model.clone(),
            from_stage: id("staging"),
            to_stage: id("production"),
            policy_hash: tidegate_ledger::Digest::of(b"promotion policy"),
        },
        m.clone(),
    );
    rec(
        "artifacts",
        Action::ArtifactDeployedEdge {
            artifact: model,
            site: id("clinic-12"),
        },
        m,
    );
    let ck = Digest::of(b"checkpoint");
    rec(
        "trainer",
        Action::CheckpointArchived {
            checkpoint: ck.clone(),
            zone: id("eu-private"),
        },
        job.clone(),
    );
    rec(
        "retention",
        Action::CheckpointDestroyed {
            checkpoint: ck.clone(),
            method: id("crypto-shred"),
        },
        job.clone(),
    );
    rec(
        "retention",
        Action::RetentionDeleted {
            object: ck,
            rule: id("checkpoints-90d"),
            method: id("crypto-shred"),
        },
        job,
    );
    l.close().unwrap();
    drop(l);

    let mut ledger_bytes = Vec::new();
    for entry in walk(&ledger_dir(data)) {
        ledger_bytes.extend(std::fs::read(entry).unwrap());
    }
    assert!(ledger_bytes.len() > 2000);
    let hay = String::from_utf8_lossy(&ledger_bytes).to_lowercase();
    assert!(
        hay.contains("job-7f3a"),
        "the scan must see the ledger's own identifiers"
    );
    for p in &ps {
        for f in &p.fields {
            assert!(
                !hay.contains(&f.to_lowercase()),
                "PHI value found in the ledger ({} chars)",
                f.len()
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
