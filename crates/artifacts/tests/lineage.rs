//! Lineage drills: the append-only graph, up/down trees, and OpenLineage RunEvent structure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tidegate_artifacts::lineage::{
    random_uuid_v4, Direction, JobRun, LineageLog, OPENLINEAGE_SCHEMA_URL,
};
use tidegate_artifacts::{parse_rfc3339, Digest};

const T0: u64 = 1_800_000_000;

fn run(job: &str, inputs: &[&str], outputs: &[Digest]) -> JobRun {
    JobRun {
        job_id: job.into(),
        zone: "onprem-a".into(),
        code_commit: "0123456789abcdef0123456789abcdef01234567".into(),
        hyperparameters: BTreeMap::from([("lr".to_string(), json!(0.001))]),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: outputs.to_vec(),
        started_at: T0,
        finished_at: T0 + 600,
    }
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[test]
fn graph_goes_up_and_down_through_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let log = LineageLog::new(dir.path());
    let ckpt = Digest::of(b"ckpt");
    let model = Digest::of(b"model");
    log.record_job(&run(
        "train-1",
        &["dataset:claims@v3"],
        std::slice::from_ref(&ckpt),
    ))
    .unwrap();
    log.record_job(&run(
        "finetune-2",
        &[&format!("artifact:{ckpt}"), "dataset:notes@v1"],
        std::slice::from_ref(&model),
    ))
    .unwrap();
    log.record_deployment(&model, "fraud-eu", T0 + 900).unwrap();

    let g = log.graph().unwrap();
    let id = g.resolve(&model.to_string()).unwrap();
    assert_eq!(id, format!("artifact:{model}"));
    let up = g.render(&id, Direction::Up);
    assert!(
        up.contains("job:finetune-2 [commit 0123456789ab, zone onprem-a, lr=0.001]"),
        "{up}"
    );
    assert!(up.contains("dataset:claims@v3"), "{up}");
    assert!(up.contains("dataset:notes@v1"), "{up}");
    assert!(!up.contains("deployment:"), "{up}");

    let down = g.render(&g.resolve("dataset:claims@v3").unwrap(), Direction::Down);
    assert!(down.contains("job:train-1"), "{down}");
    assert!(down.contains(&format!("artifact:{model}")), "{down}");
    assert!(down.contains("deployment:fraud-eu"), "{down}");
    assert!(!down.contains("dataset:notes@v1"), "{down}");
    assert_eq!(g.resolve("job-none"), None);
}

#[test]
fn lineage_is_persisted_and_rejects_untyped_ids() {
    let dir = tempfile::tempdir().unwrap();
    let log = LineageLog::new(dir.path());
    log.record_job(&run("j", &["dataset:a@1"], &[Digest::of(b"x")]))
        .unwrap();
    let again = LineageLog::new(dir.path());
    assert_eq!(again.entries().unwrap().len(), 3);
    assert!(log.record_job(&run("j2", &["claims"], &[])).is_err());
}

#[test]
fn openlineage_run_event_has_the_required_fields() {
    let dir = tempfile::tempdir().unwrap();
    let log = LineageLog::new(dir.path());
    let (path, event) = log
        .write_run_event(&run("train-1", &["dataset:claims@v3"], &[Digest::of(b"c")]))
        .unwrap();
    let on_disk: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(on_disk, event);

    // Required by the OpenLineage RunEvent schema (2-0-2): eventTime, producer, schemaURL, run,
    // job; run.runId is a UUID; job has namespace and name; eventType is one of the enum.
    let s = |p: &str| {
        event
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("missing {p}"))
    };
    assert!(["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"].contains(&s("/eventType")));
    assert_eq!(parse_rfc3339(s("/eventTime")).unwrap(), T0 + 600);
    assert!(is_uuid(s("/run/runId")), "{}", s("/run/runId"));
    assert_eq!(s("/job/namespace"), "tidegate://onprem-a");
    assert_eq!(s("/job/name"), "train-1");
    assert!(s("/producer").starts_with("https://"));
    assert_eq!(s("/schemaURL"), OPENLINEAGE_SCHEMA_URL);
    assert!(s("/schemaURL").contains("#/$defs/RunEvent"));
    for ds in event["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .chain(event["outputs"].as_array().unwrap())
    {
        assert!(
            ds["namespace"].is_string() && ds["name"].is_string(),
            "{ds}"
        );
    }
    // Custom run facets must carry _producer and _schemaURL (BaseFacet).
    for (_, facet) in event["run"]["facets"].as_object().unwrap() {
        assert!(facet["_producer"].is_string() && facet["_schemaURL"].is_string());
    }
    assert_eq!(
        event["run"]["facets"]["tidegate_job"]["codeCommit"],
        "0123456789abcdef0123456789abcdef01234567"
    );
}

#[test]
fn uuids_are_version_4() {
    let a = random_uuid_v4();
    let b = random_uuid_v4();
    assert_ne!(a, b);
    assert!(is_uuid(&a));
    assert_eq!(a.as_bytes()[14], b'4');
    assert!(matches!(a.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
}
