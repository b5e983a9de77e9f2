//! The OpenLineage RunEvents tidegate writes validate against the published OpenLineage JSON
//! schema (2-0-2, draft 2020-12, formats checked: `date-time`, `uri`, `uuid`), and the same
//! validation fails once any required field is removed or malformed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tidegate_artifacts::lineage::{random_uuid_v4, run_event, JobRun, LineageLog};
use tidegate_artifacts::Digest;

const T0: u64 = 1_800_000_000;

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/OpenLineage-2-0-2.json"
    ))
    .unwrap();
    let mut schema: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        schema["$id"],
        "https://openlineage.io/spec/2-0-2/OpenLineage.json"
    );
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    // The events name `#/$defs/RunEvent` as their schemaURL: validate against that definition
    // (the document's root also admits job and dataset events).
    assert!(schema["$defs"]["RunEvent"].is_object());
    schema["oneOf"] = json!([{ "$ref": "#/$defs/RunEvent" }]);
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

fn errors(v: &jsonschema::Validator, event: &Value) -> Vec<String> {
    v.iter_errors(event)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn job_run(
    inputs: &[&str],
    outputs: &[Digest],
    hyperparameters: BTreeMap<String, Value>,
) -> JobRun {
    JobRun {
        job_id: "train-1".into(),
        zone: "onprem-a".into(),
        code_commit: "0123456789abcdef0123456789abcdef01234567".into(),
        hyperparameters,
        inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
        outputs: outputs.to_vec(),
        started_at: T0,
        finished_at: T0 + 600,
    }
}

fn events() -> Vec<Value> {
    let hp = BTreeMap::from([
        ("lr".to_owned(), json!(0.001)),
        ("layers".to_owned(), json!([64, 32])),
        ("note".to_owned(), json!("a b")),
    ]);
    vec![
        run_event(
            &job_run(
                &["dataset:claims@v3", "artifact:sha256:00"],
                &[Digest::of(b"ckpt"), Digest::of(b"model")],
                hp,
            ),
            &random_uuid_v4(),
        )
        .unwrap(),
        run_event(&job_run(&[], &[], BTreeMap::new()), &random_uuid_v4()).unwrap(),
    ]
}

#[test]
fn produced_run_events_validate_against_the_published_schema() {
    let v = validator();
    for event in events() {
        assert_eq!(errors(&v, &event), Vec::<String>::new(), "{event:#}");
    }
    // As written to `<data-dir>/openlineage/` too.
    let dir = tempfile::tempdir().unwrap();
    let (path, event) = LineageLog::new(dir.path())
        .write_run_event(&job_run(
            &["dataset:claims@v3"],
            &[Digest::of(b"c")],
            BTreeMap::new(),
        ))
        .unwrap();
    let on_disk: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(on_disk, event);
    assert_eq!(errors(&v, &on_disk), Vec::<String>::new(), "{on_disk:#}");
}

/// Removes the member at a JSON pointer (`/run/facets/tidegate_job/_producer`).
fn without(event: &Value, pointer: &str) -> Value {
    let mut e = event.clone();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let removed = e
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|o| o.remove(key));
    assert!(removed.is_some(), "{pointer} is not in the event");
    e
}

fn with(event: &Value, pointer: &str, value: Value) -> Value {
    let mut e = event.clone();
    *e.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer} is not in the event")) = value;
    e
}

#[test]
fn removing_a_required_field_or_breaking_a_format_fails_validation() {
    let v = validator();
    let event = events().remove(0);
    assert!(v.is_valid(&event));
    for required in [
        "/eventTime",
        "/producer",
        "/schemaURL",
        "/run",
        "/job",
        "/run/runId",
        "/job/namespace",
        "/job/name",
        "/run/facets/tidegate_job/_producer",
        "/run/facets/tidegate_job/_schemaURL",
        "/inputs/0/namespace",
        "/outputs/0/name",
    ] {
        assert!(
            !v.is_valid(&without(&event, required)),
            "the schema should require {required}"
        );
    }
    for (pointer, bad) in [
        ("/run/runId", json!("train-1-run")),
        ("/eventTime", json!("yesterday at noon")),
        ("/eventType", json!("DONE")),
        ("/producer", json!("not a uri")),
        ("/job/name", json!(42)),
    ] {
        assert!(
            !v.is_valid(&with(&event, pointer, bad.clone())),
            "{pointer} = {bad} should not validate"
        );
    }
}
