//! The zero-copy canonical check accepts exactly what decode-and-re-encode accepts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use tidegate_ledger::entry::{
    Action, DataForm, Decision, Digest, Entry, EntryDraft, Ident, ObjectKind, Subject, SubjectKind,
};
use tidegate_ledger::entry_check::check_entry;

fn id(s: &str) -> Ident {
    Ident::new(s).unwrap()
}

fn dg(s: &str) -> Digest {
    Digest::of(s.as_bytes())
}

/// One action of every variant (and the optional and list shapes).
fn actions() -> Vec<Action> {
    vec![
        Action::JobSubmitted { spec: dg("spec") },
        Action::JobApproved { scope: id("run") },
        Action::JobPlaced {
            decision: Decision::Allowed,
            zone: id("eu-private"),
            pool: id("a100"),
            reasons: vec![id("phi-stays-private"), id("rule:7")],
            policy_hash: dg("p"),
        },
        Action::JobPlaced {
            decision: Decision::Refused,
            zone: id("z"),
            pool: id("p"),
            reasons: vec![],
            policy_hash: dg("p"),
        },
        Action::JobBurst {
            zone: id("us-east"),
            pool: id("h100"),
            justification: dg("j"),
        },
        Action::JobRevoked {
            zone: id("public-us"),
            pool: id("h100-spot"),
            run: id("job-7.2"),
            reasons: vec![id("constraint:private-only-data")],
            policy_hash: dg("p"),
        },
        Action::JobAdmitted {
            zone: id("public-us"),
            pool: id("h100-spot"),
            run: id("job-7.2"),
            policy_hash: dg("p"),
        },
        Action::KeyChanged {
            key_id: id("ed25519:0011aabb"),
            change: id("revoked"),
            keyring: None,
        },
        Action::KeyChanged {
            key_id: id("ed25519:0011aabb"),
            change: id("created-builder"),
            keyring: Some(dg("k")),
        },
        Action::ArtifactDeployed {
            artifact: dg("m"),
            deployment: id("readmit-serving"),
        },
        Action::JobRun {
            zone: id("public-us"),
            pool: id("h100-spot"),
            run: id("job-7.2"),
            event: id("exited-0"),
        },
        Action::DatasetCopied {
            version: id("ds-1@v3"),
            from_zone: id("a"),
            to_zone: id("b"),
            form: DataForm::Sanitized,
            content: dg("c"),
            bytes: 4096,
            report: Some(dg("r")),
        },
        Action::DatasetCopied {
            version: id("ds-1@v3"),
            from_zone: id("a"),
            to_zone: id("b"),
            form: DataForm::Raw,
            content: dg("c"),
            bytes: 4096,
            report: None,
        },
        Action::DatasetRegistered {
            version: id("ds-1@v3"),
            snapshot: dg("s"),
            level: id("restricted"),
            zone: id("hospital-onprem"),
            report: None,
            owner: None,
            tags: None,
            residency: None,
            retention: None,
            derived_from: None,
        },
        Action::DatasetRegistered {
            version: id("ds-1@v4"),
            snapshot: dg("s"),
            level: id("internal"),
            zone: id("hospital-onprem"),
            report: Some(dg("r")),
            owner: Some(id("clinical-data")),
            tags: Some(vec![id("phi"), id("contractual:acme")]),
            residency: Some(vec![id("US")]),
            retention: Some(id("regulated")),
            derived_from: Some(id("ds-1@v3")),
        },
        Action::DatasetRegistered {
            version: id("ds-1@v5"),
            snapshot: dg("s"),
            level: id("public"),
            zone: id("public-eu"),
            report: None,
            owner: Some(id("clinical-data")),
            tags: Some(vec![]),
            residency: None,
            retention: None,
            derived_from: None,
        },
        Action::ArtifactSigned {
            artifact: dg("a"),
            key_id: id("k1"),
            signature: dg("s"),
        },
        Action::ArtifactPromoted {
            artifact: dg("a"),
            from_stage: id("dev"),
            to_stage: id("prod"),
            policy_hash: tidegate_ledger::Digest::of(b"promotion policy"),
        },
        Action::ArtifactStored {
            artifact: dg("a"),
            kind: id("model"),
            classification: None,
            lane: Ident::new("production").unwrap(),
            sensitive: false,
        },
        Action::ArtifactStored {
            artifact: dg("a"),
            kind: id("checkpoint"),
            classification: Some(id("restricted/phi+pii")),
            lane: Ident::new("production").unwrap(),
            sensitive: true,
        },
        Action::ArtifactAttested {
            artifact: dg("a"),
            envelope: dg("e"),
            predicate: id("security-review"),
            key_id: id("k"),
        },
        Action::ArtifactPromotionRefused {
            artifact: dg("a"),
            to_stage: id("prod"),
            reasons: vec![id("no-review")],
        },
        Action::ArtifactShredded { artifact: dg("a") },
        Action::ArtifactDeployedEdge {
            artifact: dg("a"),
            site: id("clinic-4"),
        },
        Action::CheckpointArchived {
            checkpoint: dg("ck"),
            zone: id("cold"),
        },
        Action::CheckpointDestroyed {
            checkpoint: dg("ck"),
            method: id("crypto-shred"),
        },
        Action::TokenIssued {
            token_id: id("t-1"),
            expires_ms: 1_700_000_000_000,
            scope: vec![id("read"), id("list")],
        },
        Action::TokenUsed {
            token_id: id("t-1"),
            resource: dg("r"),
            zone: id("z"),
        },
        Action::TokenRefused {
            resource: dg("r"),
            zone: id("z"),
            reason: id("token-expired"),
            token_id: None,
        },
        Action::TokenRefused {
            resource: dg("r"),
            zone: id("z"),
            reason: id("token-request-denied"),
            token_id: Some(id("a1b2c3")),
        },
        Action::PolicyLoaded {
            policy_hash: dg("p"),
        },
        Action::FleetLoaded {
            fleet_hash: dg("f"),
        },
        Action::RetentionRegistered {
            object: dg("o"),
            kind: ObjectKind::InferenceTraces,
        },
        Action::RetentionHoldSet { order: dg("o") },
        Action::RetentionHoldReleased { order: dg("o") },
        Action::RetentionDeleted {
            object: dg("o"),
            rule: id("logs-30d"),
            method: id("crypto-shred"),
        },
    ]
}

fn entry_bytes(k: usize, seq: u64, ts: u64, subjects: usize) -> Vec<u8> {
    let all = actions();
    let action = all[k % all.len()].clone();
    let kinds = [
        SubjectKind::Job,
        SubjectKind::Dataset,
        SubjectKind::Zone,
        SubjectKind::Token,
    ];
    let subjects = (0..subjects)
        .map(|i| Subject::new(kinds[i % kinds.len()], format!("s-{i}")).unwrap())
        .collect();
    EntryDraft::new(id("scheduler"), action, subjects)
        .unwrap()
        .into_entry(seq, ts)
        .encode()
        .unwrap()
}

fn agree(bytes: &[u8]) {
    let slow = Entry::decode(bytes);
    let fast = check_entry(bytes);
    assert_eq!(
        fast.is_ok(),
        slow.is_ok(),
        "fast {fast:?} slow {slow:?} on {}",
        String::from_utf8_lossy(bytes)
    );
    if let (Ok(f), Ok(s)) = (fast, slow) {
        assert_eq!(f.seq, s.seq);
    }
}

#[test]
fn every_variant_is_accepted() {
    for k in 0..actions().len() {
        for subjects in [0, 1, 3, 16] {
            let b = entry_bytes(k, k as u64 * 1000, 1_700_000_000_000, subjects);
            assert_eq!(check_entry(&b).unwrap().seq, k as u64 * 1000);
            agree(&b);
        }
    }
}

#[test]
fn targeted_mutations_agree() {
    let base = String::from_utf8(entry_bytes(5, 42, 7, 2)).unwrap();
    let tricky = [
        base.replacen(',', ", ", 1),
        base.replacen("{", "{ ", 1),
        format!("{base} "),
        format!("{base}\n"),
        base.replace(r#""seq":42"#, r#""seq":042"#),
        base.replace(r#""seq":42"#, r#""seq":-42"#),
        base.replace(r#""seq":42"#, r#""seq":42.0"#),
        base.replace(r#""seq":42"#, r#""seq":4.2e1"#),
        base.replace(r#""seq":42"#, r#""seq":9007199254740992"#),
        base.replace(r#""seq":42"#, r#""seq":9007199254740991"#),
        base.replace(r#""seq":42"#, r#""seq":99999999999999999999999"#),
        base.replace(r#""v":1"#, r#""v":256"#),
        base.replace(r#""v":1"#, r#""v":255"#),
        base.replace(r#""v":1"#, r#""v":"1""#),
        base.replace(r#""report":"#, r#""reporu":"#),
        base.replace("scheduler", r"sched\u0075ler"),
        base.replace("scheduler", "sch\u{e9}duler"),
        base.replace(r#""form":"sanitized""#, r#""form":"encrypted""#),
        base.replace(r#""form":"sanitized""#, r#""form":"Sanitized""#),
        base.replace(
            r#""actor":"scheduler""#,
            r#""actor":"scheduler","actor":"scheduler""#,
        ),
        base.replace(r#""action":{"#, r#""action":{"a":1,"#),
        base.replace(r#""v":1"#, r#""v":1,"w":1"#),
        base.replace(r#""v":1}"#, r#""v":1,"v":1}"#),
        base.replace(r#""kind":"job""#, r#""kind":"jobs""#),
        base.replace(r#""type":"dataset.copied""#, r#""type":"dataset.copy""#),
        base.replace(r#""subjects":["#, r#""subjects":[null,"#),
        base.replace("s-0", "123-45-6789"),
        base.replace("s-0", "-s0"),
    ];
    for t in &tricky {
        agree(t.as_bytes());
    }
    // An optional member given as null, and absent.
    let no_report = String::from_utf8(entry_bytes(6, 1, 1, 1)).unwrap();
    agree(no_report.as_bytes());
    agree(
        no_report
            .replace(r#""form":"raw","#, r#""form":"raw","report":null,"#)
            .as_bytes(),
    );
    // Too many list items and subjects.
    let many: Vec<Ident> = (0..33).map(|i| id(&format!("r{i}"))).collect();
    let e = EntryDraft::new(id("a"), Action::JobApproved { scope: id("x") }, vec![])
        .unwrap()
        .into_entry(0, 0);
    let mut e2 = e.clone();
    e2.action = Action::ArtifactPromotionRefused {
        artifact: dg("a"),
        to_stage: id("p"),
        reasons: many,
    };
    agree(&e2.encode().unwrap());
    let mut e3 = e;
    e3.subjects = (0..17)
        .map(|i| Subject::new(SubjectKind::Job, format!("j{i}")).unwrap())
        .collect();
    agree(&e3.encode().unwrap());
}

const INTERESTING: &[u8] = b"{}[],:\" \\0123456789-.eE+abcdefzA_@/\x00\x7f\xc3\xa9";

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn fast_check_agrees_with_decode_on_valid_entries(k in 0usize..29, seq in 0u64..(1u64 << 53), ts in 0u64..(1u64 << 53), subjects in 0usize..17) {
        agree(&entry_bytes(k, seq, ts, subjects));
    }

    #[test]
    fn fast_check_agrees_with_decode_on_mutated_entries(
        k in 0usize..29,
        seq in 0u64..100_000,
        subjects in 0usize..4,
        edits in proptest::collection::vec((0u8..4, any::<prop::sample::Index>(), 0usize..INTERESTING.len(), any::<u8>()), 1..3),
    ) {
        let mut b = entry_bytes(k, seq, 1_700_000_000_000, subjects);
        for (op, at, pick, raw) in edits {
            let i = at.index(b.len().max(1));
            let c = if raw % 2 == 0 { INTERESTING[pick] } else { raw };
            match op {
                0 if !b.is_empty() => { let at = i.min(b.len() - 1); b[at] = c; }
                1 if !b.is_empty() => { let at = i.min(b.len() - 1); b.remove(at); }
                2 => { let at = i.min(b.len()); b.insert(at, c); }
                _ => {
                    // Swap two bytes (reorders, shuffles digits).
                    let j = (i + 1 + usize::from(raw)) % b.len().max(1);
                    if i < b.len() { b.swap(i, j); }
                }
            }
        }
        agree(&b);
    }
}
