//! The data boundary's safety floor: the same bytes keep their strictest classification however
//! they are registered again; a home zone must be allowed to hold what it is given; a profile
//! file earns only with an approver's signature over exactly its bytes, which the ledger keeps;
//! and de-identification lifts only the tags the profile names — export control, contractual
//! tags, residency and retention always carry over.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use tidegate_artifacts::events::{ArtifactEvent, JsonlSink};
use tidegate_artifacts::signing::{KeyStore, Signer};
use tidegate_artifacts::{ArtifactKind, ArtifactStore};
use tidegate_data::approval::{sign_profile, verify_profile};
use tidegate_data::derive::{sanitize_version, Derivation};
use tidegate_data::transfer::{plan, TransferRequest};
use tidegate_data::{ClassificationNames, DataError, RegisterSpec, Registry};
use tidegate_model::{load_fleet, Fleet};
use tidegate_policy::PolicyEngine;
use tidegate_sanitize::{Key, Profile};

use tidegate_testkit::synthea_dir as synthea;

/// The store of `dir`, recording into the evidence ledger there (what the registry is checked
/// against), as every store of the product does.
fn ledgered_store(dir: &Path) -> ArtifactStore {
    let ledger = std::sync::Arc::new(
        tidegate_ledger::Ledger::open(dir, tidegate_ledger::LedgerOptions::default()).unwrap(),
    );
    let sink = tidegate_artifacts::ledger_sink::LedgerSink::new(dir, ledger as _, 10).unwrap();
    ArtifactStore::open(dir)
        .unwrap()
        .with_event_sink(Box::new(sink))
}

fn fleet() -> Fleet {
    load_fleet(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleet")).unwrap()
}

fn small_synthea(src: &Path, dir: &Path, rows: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for t in ["patients.csv", "conditions.csv", "encounters.csv"] {
        let text = std::fs::read_to_string(src.join(t)).unwrap();
        let head: Vec<&str> = text.lines().take(rows + 1).collect();
        std::fs::write(dir.join(t), head.join("\n") + "\n").unwrap();
    }
    dir.to_path_buf()
}

fn class(level: &str, tags: &[&str], residency: Option<&[&str]>) -> ClassificationNames {
    ClassificationNames {
        level: level.into(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        residency: residency.map(|r| r.iter().map(|x| (*x).to_owned()).collect()),
        retention: Some("regulated".into()),
    }
}

fn spec(id: &str, zone: &str, c: ClassificationNames) -> RegisterSpec {
    let (name, version) = id.split_once('@').unwrap();
    RegisterSpec {
        name: name.into(),
        version: version.into(),
        owner: "clinical-data".into(),
        home_zone: zone.into(),
        classification: c,
        derived_from: None,
        report: None,
    }
}

#[test]
fn the_same_bytes_registered_again_keep_their_strictest_classification() {
    let Some(src) = synthea() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let raw_dir = small_synthea(&src, &tmp.path().join("raw"), 30);
    let data = tmp.path().join("d");
    let store = ledgered_store(&data);
    let registry = Registry::open(&data);
    let fleet = fleet();
    let phi = class("restricted", &["phi"], Some(&["US"]));
    registry
        .register(
            &store,
            &fleet,
            &spec("synthea@raw", "hospital-onprem", phi.clone()),
            &raw_dir,
            1,
        )
        .unwrap();

    // The whole snapshot under another name, lower: refused, naming the earlier registration.
    let public = ClassificationNames {
        level: "public".into(),
        ..ClassificationNames::default()
    };
    let e = registry
        .register(
            &store,
            &fleet,
            &spec("copy@v1", "hospital-onprem", public.clone()),
            &raw_dir,
            2,
        )
        .unwrap_err();
    assert!(
        matches!(&e, DataError::Downgrade { field, earlier, .. } if field == "level" && earlier == "synthea@raw"),
        "{e}"
    );
    assert!(
        e.to_string().contains("register it at restricted/phi"),
        "{e}"
    );
    // One table file of it, alone (another manifest): refused too.
    let one = tmp.path().join("one");
    std::fs::create_dir_all(&one).unwrap();
    std::fs::copy(raw_dir.join("patients.csv"), one.join("patients.csv")).unwrap();
    let e = registry
        .register(
            &store,
            &fleet,
            &spec("pts@v1", "hospital-onprem", public),
            &one,
            3,
        )
        .unwrap_err();
    assert!(
        matches!(&e, DataError::Downgrade { earlier, .. } if earlier == "synthea@raw"),
        "{e}"
    );
    // Same level without the tag, or without the residency: refused, naming the field.
    let e = registry
        .register(
            &store,
            &fleet,
            &spec(
                "pts@v2",
                "hospital-onprem",
                class("restricted", &[], Some(&["US"])),
            ),
            &one,
            4,
        )
        .unwrap_err();
    assert!(
        matches!(&e, DataError::Downgrade { field, .. } if field == "tag"),
        "{e}"
    );
    let e = registry
        .register(
            &store,
            &fleet,
            &spec(
                "pts@v3",
                "hospital-onprem",
                class("restricted", &["phi"], None),
            ),
            &one,
            5,
        )
        .unwrap_err();
    assert!(
        matches!(&e, DataError::Downgrade { field, .. } if field == "residency"),
        "{e}"
    );
    assert_eq!(
        registry
            .list_recorded(&store.evidence_entries().unwrap())
            .unwrap()
            .len(),
        1,
        "nothing registered"
    );

    // Stricter is allowed, and then the earlier registration's content is that strict too.
    let stricter = class("restricted", &["phi", "pci"], Some(&["US"]));
    registry
        .register(
            &store,
            &fleet,
            &spec("pts@pci", "hospital-onprem", stricter),
            &one,
            6,
        )
        .unwrap();
    let raw = registry
        .list_recorded(&store.evidence_entries().unwrap())
        .unwrap()
        .into_iter()
        .find(|v| v.id() == "synthea@raw")
        .unwrap();
    let c = registry
        .content_classification(&raw, &fleet.scheme, &store.evidence_entries().unwrap())
        .unwrap();
    assert!(c.tags.contains("pci"), "{c:?}");
    let mut f = fleet.clone();
    registry
        .merge_into(&mut f, &store.evidence_entries().unwrap())
        .unwrap();
    let d = f
        .datasets
        .iter()
        .find(|d| d.name == "synthea" && d.version == "raw")
        .unwrap();
    assert!(
        d.classification.tags.contains("pci"),
        "placement sees the content's strictest classification"
    );

    // A derived version below its source needs a stored report that says it was earned.
    let other = small_synthea(&src, &tmp.path().join("other"), 5);
    std::fs::write(other.join("patients.csv"), "Id\nnew\n").unwrap();
    let mut derived = spec(
        "synthea@fake-deid",
        "hospital-onprem",
        class("confidential", &["deidentified"], Some(&["US"])),
    );
    derived.derived_from = Some("synthea@raw".into());
    let e = registry
        .register(&store, &fleet, &derived, &other, 7)
        .unwrap_err();
    assert!(
        e.to_string().contains("no stored sanitizer report says"),
        "{e}"
    );
    derived.report = Some(
        store
            .put(
                b"{\"earned\": false}",
                ArtifactKind::SanitizerReport,
                &Default::default(),
                8,
            )
            .unwrap()
            .digest,
    );
    let e = registry
        .register(&store, &fleet, &derived, &other, 9)
        .unwrap_err();
    assert!(
        matches!(&e, DataError::Downgrade { earlier, .. } if earlier == "synthea@raw"),
        "{e}"
    );
}

#[test]
fn a_home_zone_that_may_not_hold_the_data_is_refused_and_nothing_registered() {
    let Some(src) = synthea() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_synthea(&src, &tmp.path().join("raw"), 5);
    let data = tmp.path().join("d");
    let store = ledgered_store(&data);
    let registry = Registry::open(&data);
    let fleet = fleet();
    let refused = |id: &str, zone: &str, c: ClassificationNames, part: &str| {
        let e = registry
            .register(&store, &fleet, &spec(id, zone, c), &dir, 1)
            .unwrap_err();
        assert!(
            matches!(&e, DataError::Invalid { field, .. } if field == "zone"),
            "{e}"
        );
        assert!(e.to_string().contains(part), "{e}");
    };
    let phi = class("restricted", &["phi"], Some(&["US"]));
    refused(
        "a@1",
        "public-us",
        phi.clone(),
        "private-only and the zone is public",
    );
    refused(
        "a@2",
        "edge-clinic",
        phi,
        "private-only and the zone is edge",
    );
    refused(
        "a@3",
        "hospital-onprem",
        class("internal", &[], Some(&["EU"])),
        "residency [EU] excludes the zone's jurisdiction US",
    );
    refused(
        "a@4",
        "public-eu",
        class("confidential", &["pii", "export-controlled"], Some(&["US"])),
        "jurisdiction EU",
    );
    refused(
        "a@5",
        "public-eu",
        class("confidential", &["phi"], None),
        "private-only",
    );
    assert!(
        registry
            .list_recorded(&store.evidence_entries().unwrap())
            .unwrap()
            .is_empty(),
        "nothing registered"
    );
    // Data a public EU zone may hold (no direct identifiers in it) is registered there.
    std::fs::remove_file(dir.join("patients.csv")).unwrap();
    registry
        .register(
            &store,
            &fleet,
            &spec(
                "ok@1",
                "public-eu",
                class("internal", &["pii"], Some(&["EU"])),
            ),
            &dir,
            2,
        )
        .unwrap();
}

#[test]
fn an_approved_profile_earns_lifting_only_its_tags_and_the_ledger_names_the_approver() {
    let Some(src) = synthea() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let raw_dir = small_synthea(&src, &tmp.path().join("raw"), 40);
    let data = tmp.path().join("d");
    let store = ledgered_store(&data);
    let registry = Registry::open(&data);
    let mut fleet = fleet();
    let source_class = class(
        "restricted",
        &["phi", "export-controlled", "contractual:acme"],
        Some(&["US"]),
    );
    let raw = registry
        .register(
            &store,
            &fleet,
            &spec("trial@raw", "hospital-onprem", source_class),
            &raw_dir,
            10,
        )
        .unwrap();

    // A profile file written for exactly that classification, k = 1 in its text.
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../sanitize/profiles/hipaa-safe-harbor.yaml"),
    )
    .unwrap()
    .replace("name: hipaa-safe-harbor", "name: trial-deid")
    .replace(
        "input_classification: restricted/phi",
        "input_classification: restricted/phi,export-controlled,contractual:acme",
    )
    .replace("k: 5", "k: 1");
    let path = tmp.path().join("trial.yaml");
    std::fs::write(&path, &text).unwrap();
    let profile = Profile::load(path.to_str().unwrap()).unwrap();
    let keys = KeyStore::new(&store.keys_dir());
    let entry = keys.create("alice", &["approver"], 5, 30, false).unwrap();
    let approver = keys.signer(&entry.keyid, 10).unwrap();
    let envelope = sign_profile(&approver, &profile, 10).unwrap();
    let verified = verify_profile(&keys.keyring().unwrap(), &envelope, &profile, 20).unwrap();
    let signer = Signer::generate();
    let derive = |version: &str, key: u8, approval| {
        let d = Derivation {
            registry: &registry,
            store: &store,
            fleet: &fleet,
            source: &raw,
            profile: &profile,
            signer: &signer,
            approval,
            name: "trial",
            version,
        };
        sanitize_version(
            &d,
            Key::from_bytes(&[key; 32]).unwrap(),
            &tmp.path().join("work"),
            20,
        )
        .unwrap()
    };

    // Without the approval: nothing earned.
    let unapproved = derive("unapproved", 4, None);
    assert!(
        !unapproved.report.earned
            && unapproved
                .report
                .reasons
                .iter()
                .any(|r| r.contains("neither built in nor signed"))
    );
    assert_eq!(unapproved.version.classification, raw.classification);

    // Approved: earned, phi lifted, export control and the contract carried over with residency
    // and retention.
    let earned = derive("deid", 5, Some(&verified));
    assert!(earned.report.earned, "{:?}", earned.report.reasons);
    assert_eq!(
        earned.report.approved_by.as_deref(),
        Some(entry.keyid.as_str())
    );
    assert_eq!(earned.report.profile_digest, profile.digest());
    let c = &earned.version.classification;
    assert_eq!(c.level, "confidential");
    assert_eq!(
        c.tags,
        ["contractual:acme", "deidentified", "export-controlled"]
    );
    assert_eq!(c.residency.as_deref(), Some(&["US".to_owned()][..]));
    assert_eq!(c.retention.as_deref(), Some("regulated"));

    // The profile is kept with the approver's signature: the ledger's attestation entry names
    // the approver key and the profile digest.
    let digest = profile.digest().parse().unwrap();
    assert_eq!(
        store.record(&digest).unwrap().kind,
        ArtifactKind::SanitizerProfile
    );
    assert_eq!(store.envelopes(&digest).unwrap().len(), 1);
    let events = JsonlSink::new(data.join("artifacts").join("events.jsonl"))
        .read_all()
        .unwrap();
    assert!(events.iter().any(
        |e| matches!(e, ArtifactEvent::Attest { digest: d, keyids, .. }
        if *d == digest && keyids == &vec![entry.keyid.clone()])
    ));

    // Still export-controlled and US-resident: it does not move to the EU.
    registry
        .merge_into(&mut fleet, &store.evidence_entries().unwrap())
        .unwrap();
    let policy = PolicyEngine::load(&fleet).unwrap();
    let r = plan(
        &fleet,
        &policy,
        &earned.version,
        &TransferRequest {
            to_zone: "public-eu".into(),
            columns: Vec::new(),
            max_cost: 100.0,
        },
    )
    .unwrap_err();
    assert!(
        r.reasons
            .iter()
            .any(|x| x.starts_with("export control") || x.starts_with("jurisdiction")),
        "{r}"
    );
}

/// The case end to end: a profile claiming `public` that keeps ADDRESS and Id and codes
/// the rest of patients.csv, even signed by an approver, leaves the derived version restricted,
/// and it may not move to public-us.
#[test]
fn a_profile_that_copies_patients_never_makes_them_movable() {
    let Some(src) = synthea() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let raw_dir = tmp.path().join("raw");
    std::fs::create_dir_all(&raw_dir).unwrap();
    std::fs::copy(src.join("patients.csv"), raw_dir.join("patients.csv")).unwrap();
    let data = tmp.path().join("d");
    let store = ledgered_store(&data);
    let registry = Registry::open(&data);
    let mut fleet = fleet();
    let phi = class("restricted", &["phi"], Some(&["US"]));
    let raw = registry
        .register(
            &store,
            &fleet,
            &spec("pts@raw", "hospital-onprem", phi),
            &raw_dir,
            10,
        )
        .unwrap();
    let mut yaml = String::from(
        "name: looks-harmless\ninput_classification: restricted/phi\noutput_classification: public\nlifts: [phi]\nreference_year: 2025\ntables:\n  patients:\n    columns:\n",
    );
    for c in &raw.table("patients").unwrap().columns {
        let action = if c == "ADDRESS" || c == "Id" {
            "keep"
        } else {
            "code"
        };
        yaml.push_str(&format!("      {c}: {action}\n"));
    }
    let path = tmp.path().join("hostile.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let profile = Profile::load(path.to_str().unwrap()).unwrap();
    let keys = KeyStore::new(&store.keys_dir());
    let entry = keys.create("mallory", &["approver"], 5, 30, false).unwrap();
    let envelope = sign_profile(&keys.signer(&entry.keyid, 10).unwrap(), &profile, 10).unwrap();
    let verified = verify_profile(&keys.keyring().unwrap(), &envelope, &profile, 20).unwrap();
    let signer = Signer::generate();
    let d = Derivation {
        registry: &registry,
        store: &store,
        fleet: &fleet,
        source: &raw,
        profile: &profile,
        signer: &signer,
        approval: Some(&verified),
        name: "pts",
        version: "public",
    };
    let derived = sanitize_version(
        &d,
        Key::from_bytes(&[1u8; 32]).unwrap(),
        &tmp.path().join("work"),
        20,
    );
    // Its output is the raw table again: either the registry refuses it as known bytes, or it is
    // registered at the raw classification. Never lower.
    match derived {
        Err(e) => assert!(matches!(&e, DataError::Downgrade { .. }), "{e}"),
        Ok(v) => {
            assert!(!v.report.earned);
            assert_eq!(v.version.classification, raw.classification);
            registry
                .merge_into(&mut fleet, &store.evidence_entries().unwrap())
                .unwrap();
            let policy = PolicyEngine::load(&fleet).unwrap();
            let r = plan(
                &fleet,
                &policy,
                &v.version,
                &TransferRequest {
                    to_zone: "public-us".into(),
                    columns: Vec::new(),
                    max_cost: 100.0,
                },
            )
            .unwrap_err();
            assert!(
                r.reasons.iter().any(|x| x.starts_with("private-only data")),
                "{r}"
            );
        }
    }
    assert!(registry
        .list_recorded(&store.evidence_entries().unwrap())
        .unwrap()
        .iter()
        .all(|v| v.classification.level == "restricted"));
}

#[test]
fn raw_rows_with_a_byte_changed_are_not_registered_below_private_only() {
    let Some(src) = synthea() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_synthea(&src, &tmp.path().join("raw"), 5);
    let data = tmp.path().join("d");
    let store = ledgered_store(&data);
    let registry = Registry::open(&data);
    let fleet = fleet();
    registry
        .register(
            &store,
            &fleet,
            &spec(
                "raw@1",
                "hospital-onprem",
                class("restricted", &["phi"], Some(&["US"])),
            ),
            &dir,
            1,
        )
        .unwrap();
    // One newline more: other bytes, the same SSNs.
    let near = tmp.path().join("near");
    std::fs::create_dir_all(&near).unwrap();
    let mut text = std::fs::read(dir.join("patients.csv")).unwrap();
    text.push(b'\n');
    std::fs::write(near.join("patients.csv"), text).unwrap();
    let e = registry
        .register(
            &store,
            &fleet,
            &spec("low@1", "hospital-onprem", class("internal", &[], None)),
            &near,
            2,
        )
        .unwrap_err();
    assert!(
        matches!(&e, DataError::Invalid { field, .. } if field == "level"),
        "{e}"
    );
    assert!(e.to_string().contains("SSN"), "{e}");
    assert_eq!(
        registry
            .list_recorded(&store.evidence_entries().unwrap())
            .unwrap()
            .len(),
        1,
        "nothing more registered"
    );
}

#[test]
fn a_fleet_file_naming_a_registered_version_never_loosens_it() {
    let Some(src) = synthea() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_synthea(&src, &tmp.path().join("raw"), 5);
    let data = tmp.path().join("d");
    let store = ledgered_store(&data);
    let registry = Registry::open(&data);
    let fleet = fleet();
    registry
        .register(
            &store,
            &fleet,
            &spec(
                "pt@raw",
                "hospital-onprem",
                class("restricted", &["phi"], Some(&["US"])),
            ),
            &dir,
            1,
        )
        .unwrap();
    // datasets.yaml says the same name@version is public.
    let mut lying = fleet.clone();
    let mut d = lying.datasets[0].clone();
    d.name = "pt".into();
    d.version = "raw".into();
    d.classification = tidegate_model::Classification::default();
    lying.datasets.push(d);
    registry
        .merge_into(&mut lying, &store.evidence_entries().unwrap())
        .unwrap();
    let merged = lying
        .datasets
        .iter()
        .find(|d| d.name == "pt" && d.version == "raw")
        .unwrap();
    assert!(
        lying.scheme.private_only(&merged.classification),
        "{:?}",
        merged.classification
    );
    assert!(merged.classification.tags.contains("phi"));
}

#[test]
fn an_identifier_column_by_name_is_never_registered_below_private_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("in");
    std::fs::create_dir_all(&dir).unwrap();
    // SSNs without dashes: no shape to find, but the column says what it is.
    std::fs::write(
        dir.join("people.csv"),
        "Id,SSN,STATE\n1,999332827,MA\n2,999654321,MA\n",
    )
    .unwrap();
    let data = tmp.path().join("d");
    let store = ledgered_store(&data);
    let registry = Registry::open(&data);
    let e = registry
        .register(
            &store,
            &fleet(),
            &spec("people@1", "hospital-onprem", class("internal", &[], None)),
            &dir,
            1,
        )
        .unwrap_err();
    assert!(
        matches!(&e, DataError::Invalid { field, .. } if field == "level")
            && e.to_string().contains("SSN"),
        "{e}"
    );
}
