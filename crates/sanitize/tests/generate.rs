//! The generator writes Synthea-schema tables with joining keys; the built-in profile sanitizes
//! them and earns the lower classification (the address survey answers are redacted).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use tidegate_sanitize::generate::{generate, GenerateSpec};
use tidegate_sanitize::{sanitize, Key, Options, Profile};

#[test]
fn generated_tables_have_the_synthea_schema_and_sanitize_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    let stats = generate(
        &raw,
        GenerateSpec {
            patients: Some(40),
            target_bytes: None,
            seed: 1,
        },
    )
    .unwrap();
    assert_eq!(stats.patients, 40);
    assert!(stats.observations > stats.encounters * 8);
    let shared =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/synthea");
    for t in [
        "patients",
        "encounters",
        "conditions",
        "observations",
        "organizations",
        "providers",
        "payers",
    ] {
        let mut r = csv::Reader::from_path(raw.join(format!("{t}.csv"))).unwrap();
        let fields = r.headers().unwrap().len();
        assert!(
            r.records().all(|x| x.is_ok_and(|x| x.len() == fields)),
            "{t} is rectangular"
        );
        if shared.exists() {
            let mut s = csv::Reader::from_path(shared.join(format!("{t}.csv"))).unwrap();
            assert_eq!(
                s.headers().unwrap(),
                csv::Reader::from_path(raw.join(format!("{t}.csv")))
                    .unwrap()
                    .headers()
                    .unwrap(),
                "{t} header"
            );
        }
    }
    let same = generate(
        &tmp.path().join("again"),
        GenerateSpec {
            patients: Some(40),
            target_bytes: None,
            seed: 1,
        },
    )
    .unwrap();
    assert_eq!(same.bytes, stats.bytes, "seeded");

    let mut p = Profile::hipaa_safe_harbor().unwrap();
    p.set_k(1).unwrap();
    let out = tmp.path().join("out");
    let r = sanitize(
        &p,
        &raw,
        &out,
        &Options::new(Key::from_bytes(&[9; 32]).unwrap()).with_source("restricted/phi"),
    )
    .unwrap();
    assert!(r.earned, "{:?}", r.reasons);
    let obs = r.tables.iter().find(|t| t.table == "observations").unwrap();
    assert!(
        obs.columns
            .iter()
            .any(|c| c.name == "VALUE" && c.redactions > 0),
        "address answers redacted"
    );
    let ids: HashSet<String> = csv::Reader::from_path(out.join("patients.csv"))
        .unwrap()
        .records()
        .map(|r| r.unwrap()[0].to_string())
        .collect();
    for rec in csv::Reader::from_path(out.join("observations.csv"))
        .unwrap()
        .records()
    {
        assert!(ids.contains(&rec.unwrap()[1]));
    }
}

#[test]
fn generator_stops_at_the_target_size() {
    let tmp = tempfile::tempdir().unwrap();
    let s = generate(
        tmp.path(),
        GenerateSpec {
            patients: None,
            target_bytes: Some(3 << 20),
            seed: 2,
        },
    )
    .unwrap();
    assert!(s.bytes >= 3 << 20 && s.bytes < 4 << 20, "{}", s.bytes);
}
