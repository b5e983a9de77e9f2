//! The cloud-burst training pattern end to end (`tidegate demo burst-training`), with the
//! negative cases in the same run: raw PHI refused public (transfer and placement), the
//! sanitized version earned, the sweep burst within budget with its justification and trained in
//! the public zone, models signed and synced back, public copies shredded and capacity
//! released, lineage raw → sanitized → model, and an evidence bundle that verifies offline and
//! fails when a byte changes. Then the data commands on the same directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tidegate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(args)
        .current_dir(root())
        .env_remove("TIDEGATE_DATA_DIR")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn burst_training_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dd = tmp.path().join("demo");
    let o = tidegate(&[
        "demo",
        "burst-training",
        "--data-dir",
        dd.to_str().unwrap(),
        "--output",
        "json",
        "--trials",
        "2",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));

    // Raw registered restricted; sanitized earned deidentified with a signed report.
    assert_eq!(out["raw_classification"], "restricted/phi,pii");
    assert_eq!(out["earned"], true);
    assert_eq!(out["deid_classification"], "confidential/deidentified");
    assert!(out["report"].as_str().unwrap().starts_with("sha256:"));
    // Raw to public: refused, by the hard constraints and by Cedar, with reasons.
    let refused: Vec<&str> = out["raw_transfer_refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        refused.iter().any(|r| r.starts_with("private-only data")),
        "{refused:?}"
    );
    assert!(
        refused
            .iter()
            .any(|r| r.contains("baseline.sensitive-stays-private")),
        "{refused:?}"
    );
    assert!(out["moved_bytes"].as_u64().unwrap() > 0);

    // The sweep burst to the public zone with its justification, and trained a real model there.
    let trials = out["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 2);
    for t in trials {
        assert_eq!(t["zone"], "public-us", "{t}");
        assert!(
            t["justification"]
                .as_str()
                .unwrap()
                .contains("private queue is full"),
            "{t}"
        );
        // Age carries a real signal (the generated prevalence rises with age as NHANES
        // measured), so the held-out AUC is well above chance.
        let auc = t["auc"].as_f64().unwrap();
        assert!(auc > 0.7 && auc <= 1.0, "{t}");
    }
    // What the best model learned: risk rising with age and higher in men; other conditions,
    // drawn independently of hypertension, carry next to nothing.
    let learned = |f: &str| {
        out["learned"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["feature"] == f)
            .unwrap_or_else(|| panic!("no {f} in {out}"))["odds_ratio"]
            .as_f64()
            .unwrap()
    };
    assert!(learned("age_years") > 1.5, "{out}");
    assert!(learned("sex_male") > 1.0, "{out}");
    assert!((learned("other_conditions") - 1.0).abs() < 0.2, "{out}");
    assert!(
        out["released"].as_u64().unwrap() >= 2,
        "public capacity released after each trial: {out}"
    );
    // The same sweep on raw data never reached the public zone, and says why.
    let raw = &out["raw_sweep"];
    assert_ne!(raw["zone"], "public-us", "{raw}");
    assert!(
        raw["public_refused"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("sensitive-stays-private")),
        "{raw}"
    );

    // Synced back; public copies shredded (2 tables, the copy manifest, 2 models).
    let model = out["model"].as_str().unwrap();
    assert_eq!(out["shredded"].as_array().unwrap().len(), 5);
    let lineage = out["lineage"].as_str().unwrap();
    let (raw_at, deid_at) = (
        lineage.find("dataset:synthea@raw").unwrap(),
        lineage.find("dataset:synthea@deid").unwrap(),
    );
    assert!(
        deid_at < raw_at,
        "raw sits upstream of the sanitized version: {lineage}"
    );
    assert!(
        lineage.starts_with(&format!("artifact:{model}")),
        "{lineage}"
    );

    // One OpenLineage RunEvent per trial, naming its inputs and output.
    let events: Vec<Value> = std::fs::read_dir(dd.join("openlineage"))
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    for e in &events {
        assert!(
            e["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i.to_string().contains("synthea@deid")),
            "{e}"
        );
        assert_eq!(e["outputs"].as_array().unwrap().len(), 1, "{e}");
    }

    // The model in the private store verifies; in the public store it is gone.
    let v = tidegate(&[
        "artifact",
        "--data-dir",
        dd.to_str().unwrap(),
        "verify",
        model,
    ]);
    assert!(v.status.success(), "{}", text(&v));
    let public = dd.join("zone-stores/public-us");
    let g = tidegate(&[
        "artifact",
        "--data-dir",
        public.to_str().unwrap(),
        "get",
        model,
        "-o",
        tmp.path().join("m").to_str().unwrap(),
    ]);
    assert!(
        !g.status.success() && text(&g).contains("shredded"),
        "{}",
        text(&g)
    );

    // The evidence bundle verifies offline and answers the three questions; one byte changed fails.
    assert_eq!(out["evidence_verified"], true);
    let bundle = PathBuf::from(out["evidence"].as_str().unwrap());
    let key = dd.join("keys/ledger.pub");
    let ok = tidegate(&[
        "evidence",
        "verify",
        bundle.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    let summary = text(&ok);
    assert!(ok.status.success(), "{summary}");
    assert!(summary.contains("burst to zone public-us"), "{summary}");
    assert!(
        summary.contains("copied from zone hospital-onprem to zone public-us as Sanitized"),
        "{summary}"
    );
    assert!(
        summary.contains("classification earned by sanitizer report"),
        "{summary}"
    );
    assert!(
        summary.contains("(attached"),
        "the sanitizer report and policy texts travel in the bundle: {summary}"
    );
    assert!(
        summary.lines().any(|l| l.contains("signed artifact")
            && l.contains("envelope sha256:")
            && l.contains("(attached")),
        "the signature envelopes travel in the bundle: {summary}"
    );
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = bytes.windows(9).position(|w| w == b"public-us").unwrap();
    bytes[at] = b'P';
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, &bytes).unwrap();
    let no = tidegate(&[
        "evidence",
        "verify",
        bad.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert!(
        !no.status.success() && text(&no).contains("FAILED"),
        "{}",
        text(&no)
    );

    // The data commands on the same directory.
    let ds = |args: &[&str]| {
        let mut all = vec!["dataset", "--data-dir", dd.to_str().unwrap()];
        all.extend_from_slice(args);
        tidegate(&all)
    };
    let l = ds(&["list"]);
    assert!(
        text(&l).contains("synthea@raw") && text(&l).contains("synthea@deid"),
        "{}",
        text(&l)
    );
    let s = ds(&["show", "synthea@deid", "--output", "json"]);
    let shown: Value = serde_json::from_slice(&s.stdout).unwrap();
    assert_eq!(shown["derived_from"], "synthea@raw");
    assert!(shown["tables"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["table"] == "patients"));
    let miss = ds(&["show", "synthea@nope"]);
    assert!(
        !miss.status.success() && text(&miss).contains("known: synthea@raw, synthea@deid"),
        "{}",
        text(&miss)
    );
    let t = tidegate(&[
        "transfer",
        "synthea@raw",
        "--to",
        "public-us",
        "--dry-run",
        "--data-dir",
        dd.to_str().unwrap(),
    ]);
    assert!(
        !t.status.success()
            && text(&t).contains("refused")
            && text(&t).contains("nothing was moved"),
        "{}",
        text(&t)
    );
    let t = tidegate(&[
        "transfer",
        "synthea@deid",
        "--to",
        "public-us",
        "--columns",
        "patients.GENDER",
        "--dry-run",
        "--data-dir",
        dd.to_str().unwrap(),
    ]);
    assert!(
        t.status.success() && text(&t).contains("patients: GENDER"),
        "{}",
        text(&t)
    );
    let lin = tidegate(&[
        "lineage",
        "--data-dir",
        dd.to_str().unwrap(),
        &format!("artifact:{model}"),
        "--up",
    ]);
    assert!(text(&lin).contains("dataset:synthea@raw"), "{}", text(&lin));
    // The ledger as a whole verifies.
    let a = tidegate(&["audit", "verify", "--data-dir", dd.to_str().unwrap()]);
    assert!(a.status.success(), "{}", text(&a));
}
