//! The generator's tables are shaped like the shipped Synthea ones, table by table: rows per
//! patient, and how many of one patient's rows come one after another (a run). A generator that
//! wrote each patient's rows all together would flatter any per-column cache of the sanitizer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::Path;

use tidegate_sanitize::generate::{generate, GenerateSpec};

/// Rows per patient (mean) and mean run length of `table`'s PATIENT column.
fn shape(dir: &Path, table: &str) -> (f64, f64) {
    let mut rdr = csv::Reader::from_path(dir.join(format!("{table}.csv"))).unwrap();
    let col = rdr
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "PATIENT")
        .unwrap();
    let mut per: HashMap<String, u64> = HashMap::new();
    let (mut runs, mut rows) = (0u64, 0u64);
    let mut prev = String::new();
    for r in rdr.records() {
        let p = r.unwrap().get(col).unwrap().to_owned();
        *per.entry(p.clone()).or_default() += 1;
        rows += 1;
        if p != prev {
            runs += 1;
            prev = p;
        }
    }
    (rows as f64 / per.len() as f64, rows as f64 / runs as f64)
}

#[test]
fn rows_per_patient_and_runs_match_the_shipped_tables() {
    let Some(shipped) = tidegate_testkit::synthea_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    generate(
        dir.path(),
        GenerateSpec {
            patients: Some(400),
            target_bytes: None,
            seed: 9,
        },
    )
    .unwrap();
    for table in ["encounters", "conditions", "observations"] {
        let (want_rows, want_run) = shape(&shipped, table);
        let (rows, run) = shape(dir.path(), table);
        eprintln!("{table}: rows/patient {rows:.1} (shipped {want_rows:.1}), run {run:.1} (shipped {want_run:.1})");
        for (what, got, want) in [
            ("rows per patient", rows, want_rows),
            ("run length", run, want_run),
        ] {
            assert!(
                (got / want - 1.0).abs() < 0.35,
                "{table}: {what} {got:.1}, shipped {want:.1}"
            );
        }
    }
}
