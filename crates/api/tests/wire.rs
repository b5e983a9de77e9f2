//! The wire types read back what they write, their schemas state the bounds the constants name,
//! and an error body reads as the server writes it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use tidegate_api::{
    ErrorBody, JobTokenRequest, LogsQuery, SubmitRequest, SyncRequest, MAX_JOB_TOKEN_INPUTS,
};
use utoipa::PartialSchema;

fn schema_of<T: PartialSchema>() -> Value {
    serde_json::to_value(T::schema()).unwrap()
}

#[test]
fn a_job_tokens_schema_bounds_its_inputs_by_the_constant() {
    let s = schema_of::<JobTokenRequest>();
    assert_eq!(
        s["properties"]["inputs"]["maxItems"].as_u64(),
        Some(MAX_JOB_TOKEN_INPUTS as u64),
        "{s}"
    );
}

#[test]
fn an_error_body_reads_as_the_server_writes_it() {
    let text = r#"{"error":{"code":"invalid_request","message":"no","field":"manifest"}}"#;
    let b: ErrorBody = serde_json::from_str(text).unwrap();
    assert_eq!(b.error.code, "invalid_request");
    assert_eq!(b.error.field.as_deref(), Some("manifest"));
    assert_eq!(serde_json::to_string(&b).unwrap(), text);
    let b: ErrorBody =
        serde_json::from_value(json!({"error": {"code": "x", "message": "y"}})).unwrap();
    assert_eq!(
        serde_json::to_value(&b).unwrap(),
        json!({"error": {"code": "x", "message": "y"}})
    );
}

#[test]
fn requests_refuse_unknown_fields_and_round_trip() {
    let r: SubmitRequest = serde_json::from_value(json!({"manifest": "m"})).unwrap();
    assert_eq!(serde_json::to_value(&r).unwrap(), json!({"manifest": "m"}));
    assert!(serde_json::from_value::<SubmitRequest>(json!({"manifest": "m", "x": 1})).is_err());
    let s: SyncRequest = serde_json::from_value(json!({"agent": "a"})).unwrap();
    assert!(s.runs.is_empty());
    assert!(serde_json::from_value::<LogsQuery>(json!({"tail": 1})).is_err());
}
