//! The data boundary on the real Synthea tables (`../shared/data/synthea`) and the example fleet:
//! registration, a sanitized version that earns its lower classification, and transfers that
//! policy, routes and budgets allow or refuse with their reasons.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use tidegate_artifacts::events::{ArtifactEvent, JsonlSink};
use tidegate_artifacts::signing::Signer;
use tidegate_artifacts::ArtifactStore;
use tidegate_data::derive::{sanitize_version, Derivation};
use tidegate_data::transfer::{execute, plan, TransferRequest};
use tidegate_data::{ClassificationNames, ColumnRef, DataError, RegisterSpec, Registry};
use tidegate_model::{load_fleet, DatasetRef, Fleet};
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

/// A small copy of three Synthea tables (the first rows), so the test stays quick.
fn small_synthea(src: &Path, dir: &Path, rows: usize) -> PathBuf {
    let out = dir.join("raw");
    std::fs::create_dir_all(&out).unwrap();
    for t in ["patients.csv", "conditions.csv", "encounters.csv"] {
        let text = std::fs::read_to_string(src.join(t)).unwrap();
        let head: Vec<&str> = text.lines().take(rows + 1).collect();
        std::fs::write(out.join(t), head.join("\n") + "\n").unwrap();
    }
    out
}

fn phi() -> ClassificationNames {
    ClassificationNames {
        level: "restricted".into(),
        tags: vec!["phi".into()],
        residency: Some(vec!["US".into()]),
        retention: Some("regulated".into()),
    }
}

fn spec(name: &str, version: &str, zone: &str, c: ClassificationNames) -> RegisterSpec {
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

fn events(data: &Path) -> Vec<ArtifactEvent> {
    JsonlSink::new(data.join("artifacts").join("events.jsonl"))
        .read_all()
        .unwrap()
}

#[test]
fn raw_stays_private_sanitized_moves_projected_and_ledgered() {
    let Some(src) = synthea() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let raw_dir = small_synthea(&src, tmp.path(), 400);
    let data = tmp.path().join("private");
    let store = ledgered_store(&data);
    let registry = Registry::open(&data);
    let mut fleet = fleet();

    // Register raw PHI in the hospital.
    let raw = registry
        .register(
            &store,
            &fleet,
            &spec("synthea", "raw-1", "hospital-onprem", phi()),
            &raw_dir,
            10,
        )
        .unwrap();
    assert_eq!(raw.tables.len(), 3);
    assert!(raw
        .table("patients")
        .unwrap()
        .columns
        .contains(&"SSN".to_owned()));
    // Same content again: the same version; other content under that version: refused.
    let again = registry
        .register(
            &store,
            &fleet,
            &spec("synthea", "raw-1", "hospital-onprem", phi()),
            &raw_dir,
            11,
        )
        .unwrap();
    assert_eq!(again.snapshot, raw.snapshot);
    let other = small_synthea(&src, &tmp.path().join("other"), 10);
    let err = registry
        .register(
            &store,
            &fleet,
            &spec("synthea", "raw-1", "hospital-onprem", phi()),
            &other,
            12,
        )
        .unwrap_err();
    assert!(matches!(err, DataError::Conflict { .. }), "{err}");
    assert_eq!(
        registry
            .list_recorded(&store.evidence_entries().unwrap())
            .unwrap()
            .len(),
        1
    );
    assert!(events(&data).iter().any(
        |e| matches!(e, ArtifactEvent::DatasetRegistered { dataset, level, .. }
        if dataset == "synthea@raw-1" && level == "restricted")
    ));

    // Sanitize with the built-in k = 5: eleven patients cannot reach it, so the output keeps
    // the raw classification and the report says why.
    let signer = Signer::generate();
    let try_derive = |profile: &Profile, version: &str, key: u8| {
        let d = Derivation {
            registry: &registry,
            store: &store,
            fleet: &fleet,
            source: &raw,
            profile,
            signer: &signer,
            approval: None,
            name: "synthea",
            version,
        };
        sanitize_version(
            &d,
            Key::from_bytes(&[key; 32]).unwrap(),
            &tmp.path().join("work"),
            20,
        )
    };
    let derive =
        |profile: &Profile, version: &str, key: u8| try_derive(profile, version, key).unwrap();
    let strict = derive(&Profile::hipaa_safe_harbor().unwrap(), "deid-k5", 8);
    assert!(!strict.report.earned);
    assert_eq!(strict.version.classification, raw.classification);
    // k = 5 was not reached, so nothing was suppressed: with k = 1 and the same key the output is
    // the same bytes, which already have the raw classification; registering them lower is
    // refused, naming that registration.
    let mut k1 = Profile::hipaa_safe_harbor().unwrap();
    k1.set_k(1).unwrap();
    let again = try_derive(&k1, "deid-again", 8).unwrap_err();
    assert!(
        matches!(&again, DataError::Downgrade { earlier, .. } if earlier == "synthea@deid-k5"),
        "{again}"
    );
    assert!(
        registry
            .get_recorded(
                &DatasetRef::parse("synthea@deid-again").unwrap(),
                &store.evidence_entries().unwrap(),
            )
            .is_err(),
        "nothing registered"
    );
    // With k = 1 every other check still applies, and passes: the lower classification is
    // earned, the report stored and signed.
    let derived = derive(&k1, "deid-1", 7);
    assert!(derived.report.earned, "{:?}", derived.report.reasons);
    assert_eq!(derived.version.classification.level, "confidential");
    assert_eq!(
        derived.version.derived_from.as_deref(),
        Some("synthea@raw-1")
    );
    assert_eq!(
        derived.version.report.as_ref(),
        Some(&derived.report_digest)
    );
    assert_eq!(store.envelopes(&derived.report_digest).unwrap().len(), 1);
    assert!(
        !tmp.path().join("work").exists(),
        "scratch space is removed"
    );
    let deid_patients = store
        .get(&derived.version.table("patients").unwrap().digest)
        .unwrap();
    let raw_patients = std::fs::read_to_string(raw_dir.join("patients.csv")).unwrap();
    let first_ssn = raw_patients
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(3)
        .unwrap()
        .to_owned();
    assert!(first_ssn.len() == 11 && !String::from_utf8_lossy(&deid_patients).contains(&first_ssn));

    registry
        .merge_into(&mut fleet, &store.evidence_entries().unwrap())
        .unwrap();
    let policy = PolicyEngine::load(&fleet).unwrap();
    let req = |cols: &[&str]| TransferRequest {
        to_zone: "public-us".into(),
        columns: cols
            .iter()
            .map(|c| ColumnRef::parse(c, &derived.version).unwrap())
            .collect(),
        max_cost: 10.0,
    };

    // Raw PHI to the public zone: refused, saying why.
    let refused = plan(
        &fleet,
        &policy,
        &raw,
        &TransferRequest {
            columns: Vec::new(),
            ..req(&[])
        },
    )
    .unwrap_err();
    let text = refused.to_string();
    assert!(
        text.contains("private-only") || text.contains("classification ceiling"),
        "{text}"
    );
    assert!(
        text.contains("policy:"),
        "Cedar's verdict is part of the explanation: {text}"
    );
    let unearned = plan(
        &fleet,
        &policy,
        &strict.version,
        &TransferRequest {
            columns: Vec::new(),
            ..req(&[])
        },
    );
    assert!(
        unearned.is_err(),
        "a version that did not earn its lower classification stays private"
    );

    // The sanitized version, projected to a narrow feature matrix: allowed.
    let cols = [
        "patients.Id",
        "patients.BIRTHDATE",
        "patients.GENDER",
        "conditions.PATIENT",
        "conditions.CODE",
    ];
    let p = plan(&fleet, &policy, &derived.version, &req(&cols)).unwrap();
    assert_eq!(p.form, "sanitized");
    assert_eq!(
        p.projection["patients"],
        vec!["Id".to_owned(), "BIRTHDATE".to_owned(), "GENDER".to_owned()]
    );
    assert!(!p.projection.contains_key("encounters"));
    let public = ArtifactStore::open(&tmp.path().join("public")).unwrap();
    let moved = execute(&p, &derived.version, &store, &public, 30).unwrap();
    let shipped = public
        .get(
            &moved
                .tables
                .iter()
                .find(|t| t.table == "patients")
                .unwrap()
                .digest,
        )
        .unwrap();
    let header = String::from_utf8_lossy(&shipped)
        .lines()
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(header, "Id,BIRTHDATE,GENDER");
    assert!(
        moved.bytes < derived.version.bytes,
        "only the projection moves"
    );
    assert!(events(&data).iter().any(|e| matches!(e, ArtifactEvent::DatasetCopied { dataset, to_zone, form, bytes, report, .. }
        if dataset == "synthea@deid-1" && to_zone == "public-us" && form == "sanitized" && *bytes == moved.bytes && report.is_some())));

    // Unknown columns are named.
    let bad = plan(&fleet, &policy, &derived.version, &req(&["patients.NOPE"])).unwrap_err();
    assert!(bad.to_string().contains("no column \"NOPE\""), "{bad}");
}

#[test]
fn routes_and_budgets_refuse_with_reasons() {
    let Some(src) = synthea() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_synthea(&src, tmp.path(), 50);
    // Public data holds no direct identifiers (the patients table has SSNs: it is never public).
    std::fs::remove_file(dir.join("patients.csv")).unwrap();
    let data = tmp.path().join("d");
    let store = ledgered_store(&data);
    let registry = Registry::open(&data);
    let mut fleet = fleet();
    let public_level = ClassificationNames {
        level: "public".into(),
        ..ClassificationNames::default()
    };
    let a = registry
        .register(
            &store,
            &fleet,
            &spec("lit", "v1", "private-cloud", public_level.clone()),
            &dir,
            1,
        )
        .unwrap();
    let b = registry
        .register(
            &store,
            &fleet,
            &spec("usage", "v1", "public-us", public_level),
            &dir,
            1,
        )
        .unwrap();
    registry
        .merge_into(&mut fleet, &store.evidence_entries().unwrap())
        .unwrap();
    let policy = PolicyEngine::load(&fleet).unwrap();
    // private-cloud's allowlist has no route to public-us.
    let r = plan(
        &fleet,
        &policy,
        &a,
        &TransferRequest {
            to_zone: "public-us".into(),
            columns: Vec::new(),
            max_cost: 1.0,
        },
    )
    .unwrap_err();
    assert!(
        r.reasons.iter().any(|x| x.starts_with("no egress route")),
        "{r}"
    );
    // public-us charges egress: a zero budget refuses, a sufficient one allows.
    let r = plan(
        &fleet,
        &policy,
        &b,
        &TransferRequest {
            to_zone: "hospital-onprem".into(),
            columns: Vec::new(),
            max_cost: 0.0,
        },
    )
    .unwrap_err();
    assert!(
        r.reasons
            .iter()
            .any(|x| x.starts_with("budget: estimated egress cost")),
        "{r}"
    );
    let ok = plan(
        &fleet,
        &policy,
        &b,
        &TransferRequest {
            to_zone: "hospital-onprem".into(),
            columns: Vec::new(),
            max_cost: 1.0,
        },
    )
    .unwrap();
    assert!(ok.estimated_cost > 0.0 && ok.estimated_bytes == b.bytes);
    // Unknown zones and unknown versions are named.
    let r = plan(
        &fleet,
        &policy,
        &b,
        &TransferRequest {
            to_zone: "moon".into(),
            columns: Vec::new(),
            max_cost: 1.0,
        },
    )
    .unwrap_err();
    assert!(r.to_string().contains("unknown zone \"moon\""), "{r}");
    let e = registry
        .get_recorded(
            &DatasetRef::parse("lit@v9").unwrap(),
            &store.evidence_entries().unwrap(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("known: lit@v1, usage@v1"), "{e}");
    // A bad classification names the field; nothing is registered.
    let bad = ClassificationNames {
        level: "top-secret".into(),
        ..ClassificationNames::default()
    };
    let e = registry
        .register(
            &store,
            &fleet,
            &spec("x", "v1", "private-cloud", bad),
            &dir,
            1,
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("classification.level: unknown level"),
        "{e}"
    );
    assert_eq!(
        registry
            .list_recorded(&store.evidence_entries().unwrap())
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn a_torn_registry_tail_is_ignored_and_damage_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::open(tmp.path());
    let path = tmp.path().join("datasets").join("registry.jsonl");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "{\"name\":\"half").unwrap();
    assert!(
        registry.list_recorded(&[]).unwrap().is_empty(),
        "an unterminated last line was never acknowledged"
    );
    std::fs::write(&path, "not json\n").unwrap();
    let e = registry.list_recorded(&[]).unwrap_err();
    assert!(
        e.to_string()
            .contains("registry.jsonl:1: damaged registry entry"),
        "{e}"
    );
}

/// Parquet tables go through the same boundary: registered with their schema, sanitized into
/// Parquet, projected to typed Parquet columns; a schema the sanitizer cannot read is refused at
/// registration, naming the column, and nothing is registered.
#[test]
fn parquet_tables_register_sanitize_and_move_projected() {
    use arrow_array::{Array, RecordBatchReader};
    use arrow_schema::{DataType, Field};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use tidegate_testkit::parquet::{csv_to_parquet, write_parquet};

    let Some(src) = synthea() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let csv_dir = small_synthea(&src, tmp.path(), 300);
    let raw_dir = tmp.path().join("raw-parquet");
    std::fs::create_dir_all(&raw_dir).unwrap();
    for t in ["patients", "conditions", "encounters"] {
        csv_to_parquet(
            &csv_dir.join(format!("{t}.csv")),
            &raw_dir.join(format!("{t}.parquet")),
        );
    }
    let data = tmp.path().join("private");
    let store = ledgered_store(&data);
    let registry = Registry::open(&data);
    let mut fleet = fleet();

    let raw = registry
        .register(
            &store,
            &fleet,
            &spec("synthea", "raw-pq", "hospital-onprem", phi()),
            &raw_dir,
            10,
        )
        .unwrap();
    let patients = raw.table("patients").unwrap();
    assert_eq!(patients.format, "parquet");
    let csv_header: Vec<String> = std::fs::read_to_string(csv_dir.join("patients.csv"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    assert_eq!(
        patients.columns, csv_header,
        "the Parquet schema's fields are the table's columns"
    );

    let mut k1 = Profile::hipaa_safe_harbor().unwrap();
    k1.set_k(1).unwrap();
    let signer = Signer::generate();
    let d = Derivation {
        registry: &registry,
        store: &store,
        fleet: &fleet,
        source: &raw,
        profile: &k1,
        signer: &signer,
        approval: None,
        name: "synthea",
        version: "deid-pq",
    };
    let derived = sanitize_version(
        &d,
        Key::from_bytes(&[7u8; 32]).unwrap(),
        &tmp.path().join("work"),
        20,
    )
    .unwrap();
    assert!(derived.report.earned, "{:?}", derived.report.reasons);
    let deid_patients = derived.version.table("patients").unwrap();
    assert_eq!(
        (deid_patients.format.as_str(), deid_patients.file.as_str()),
        ("parquet", "patients.parquet")
    );
    assert!(!deid_patients.columns.contains(&"SSN".to_owned()));

    registry
        .merge_into(&mut fleet, &store.evidence_entries().unwrap())
        .unwrap();
    let policy = PolicyEngine::load(&fleet).unwrap();
    let cols = [
        "patients.Id",
        "patients.GENDER",
        "conditions.PATIENT",
        "conditions.CODE",
    ];
    let req = TransferRequest {
        to_zone: "public-us".into(),
        columns: cols
            .iter()
            .map(|c| ColumnRef::parse(c, &derived.version).unwrap())
            .collect(),
        max_cost: 10.0,
    };
    let p = plan(&fleet, &policy, &derived.version, &req).unwrap();
    let public = ArtifactStore::open(&tmp.path().join("public")).unwrap();
    let moved = execute(&p, &derived.version, &store, &public, 30).unwrap();
    let conditions = moved
        .tables
        .iter()
        .find(|t| t.table == "conditions")
        .unwrap();
    let shipped = public.get(&conditions.digest).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(shipped))
        .unwrap()
        .build()
        .unwrap();
    let names: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        ["PATIENT", "CODE"],
        "only the projected columns, as Parquet"
    );
    let rows = |bytes: Vec<u8>| -> usize {
        let r = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap();
        r.map(|b| b.unwrap().num_rows()).sum()
    };
    let sanitized = store
        .get(&derived.version.table("conditions").unwrap().digest)
        .unwrap();
    assert_eq!(
        reader.map(|b| b.unwrap().num_rows()).sum::<usize>(),
        rows(sanitized),
        "every row of the table moves"
    );
    assert!(moved.bytes < derived.version.bytes);

    // Projection keeps each column's type: an integer column stays an integer column.
    let typed = tmp.path().join("typed");
    std::fs::create_dir_all(&typed).unwrap();
    let n = arrow_array::Int64Array::from(vec![1_i64, 2, 3]);
    let s = arrow_array::StringArray::from(vec!["a", "b", "c"]);
    write_parquet(
        &typed.join("t.parquet"),
        vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ],
        vec![std::sync::Arc::new(n), std::sync::Arc::new(s)],
        2,
    );
    let public_level = ClassificationNames {
        level: "public".into(),
        ..ClassificationNames::default()
    };
    let t = registry
        .register(
            &store,
            &fleet,
            &spec("typed", "v1", "hospital-onprem", public_level),
            &typed,
            40,
        )
        .unwrap();
    let only_n = tidegate_sanitize::project_table(
        Path::new("t.parquet"),
        &store.get(&t.tables[0].digest).unwrap(),
        &["n".to_owned()],
    )
    .unwrap();
    let mut r = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(only_n))
        .unwrap()
        .build()
        .unwrap();
    let batch = r.next().unwrap().unwrap();
    assert_eq!(batch.schema().field(0).data_type(), &DataType::Int64);
    let values = batch
        .column(0)
        .as_any()
        .downcast_ref::<arrow_array::Int64Array>()
        .unwrap();
    assert_eq!(
        values.values().to_vec(),
        vec![1, 2, 3],
        "every row, across row groups of two"
    );

    // A column the sanitizer cannot read (a list) is refused at registration, naming it.
    let nested = tmp.path().join("nested");
    std::fs::create_dir_all(&nested).unwrap();
    let list =
        arrow_array::ListArray::from_iter_primitive::<arrow_array::types::Int32Type, _, _>(vec![
            Some(vec![Some(1)]),
        ]);
    let field = Field::new("codes", list.data_type().clone(), true);
    write_parquet(
        &nested.join("bad.parquet"),
        vec![field],
        vec![std::sync::Arc::new(list)],
        10,
    );
    let before = registry
        .list_recorded(&store.evidence_entries().unwrap())
        .unwrap()
        .len();
    let e = registry
        .register(
            &store,
            &fleet,
            &spec("nested", "v1", "hospital-onprem", phi()),
            &nested,
            50,
        )
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("bad.parquet") && text.contains("column `codes`"),
        "{text}"
    );
    assert_eq!(
        registry
            .list_recorded(&store.evidence_entries().unwrap())
            .unwrap()
            .len(),
        before,
        "nothing registered"
    );

    // Not Parquet at all, under a .parquet name: refused with the file named.
    std::fs::write(nested.join("bad.parquet"), b"PAR1 not really").unwrap();
    let e = registry
        .register(
            &store,
            &fleet,
            &spec("nested", "v1", "hospital-onprem", phi()),
            &nested,
            51,
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("bad.parquet")
            && e.to_string().contains("not a readable Parquet file"),
        "{e}"
    );
}
