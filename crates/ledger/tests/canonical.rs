//! The direct canonical serializer agrees byte for byte with the `serde_json::Value` based
//! RFC 8785 writer, on random JSON values and on every kind of ledger entry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use proptest::prelude::*;
use serde_json::{Map, Number, Value};
use tidegate_ledger::canonical::{to_vec, to_vec_of, MAX_SAFE_INTEGER};
use tidegate_ledger::ledger::read_log;

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0..=MAX_SAFE_INTEGER).prop_map(|n| Value::Number(Number::from(n))),
        (-(MAX_SAFE_INTEGER as i64)..0).prop_map(|n| Value::Number(Number::from(n))),
        any::<String>().prop_map(Value::String),
        "[\\x00-\\x1f\"\\\\a-z\u{e9}\u{20ac}\u{1f600}\u{fb33}]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                ("[a-z\u{e9}\u{20ac}\u{1f600}\u{fb33}\r1]{0,4}", inner),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn serializer_matches_value_writer(v in json()) {
        prop_assert_eq!(to_vec_of(&v).unwrap(), to_vec(&v).unwrap());
    }
}

#[test]
fn every_entry_of_a_workflow_encodes_identically_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let l = common::open(dir.path());
    common::record_workflow(&l, dir.path());
    l.close().unwrap();
    drop(l);
    let log = read_log(&tidegate_ledger::ledger::ledger_dir(dir.path()), true).unwrap();
    assert!(log.entries.len() >= 10);
    for bytes in &log.entries {
        let e = tidegate_ledger::Entry::decode(bytes).unwrap();
        let via_value = to_vec(&serde_json::to_value(&e).unwrap()).unwrap();
        assert_eq!(&via_value, bytes);
        assert_eq!(&to_vec_of(&e).unwrap(), bytes);
    }
}

#[test]
fn non_canonical_inputs_are_refused_by_both() {
    assert!(to_vec_of(&1.5f64).is_err());
    assert!(to_vec_of(&(MAX_SAFE_INTEGER + 1)).is_err());
    let mut m = std::collections::BTreeMap::new();
    m.insert(1u32, "x");
    assert!(to_vec_of(&m).is_err(), "integer member names are refused");
}

#[test]
fn every_artifact_store_action_encodes_identically_both_ways() {
    use tidegate_ledger::{Action, Digest, Entry, EntryDraft, Ident, Subject, SubjectKind as K};
    let id = |s: &str| Ident::new(s).unwrap();
    let model = Digest::of(b"model weights");
    let actions = vec![
        Action::ArtifactStored {
            artifact: model.clone(),
            kind: id("model"),
            classification: None,
            lane: Ident::new("production").unwrap(),
            sensitive: false,
        },
        Action::ArtifactAttested {
            artifact: model.clone(),
            envelope: Digest::of(b"envelope"),
            predicate: id("security-review"),
            key_id: id("ed25519:0123456789abcdef"),
        },
        Action::ArtifactPromotionRefused {
            artifact: model.clone(),
            to_stage: id("released-private"),
            reasons: vec![id("data-approval"), id("security-review")],
        },
        Action::ArtifactShredded {
            artifact: model.clone(),
        },
        Action::TokenUsed {
            token_id: id(&"ab".repeat(64)),
            resource: model.clone(),
            zone: id("eu-private"),
        },
        Action::TokenRefused {
            resource: model.clone(),
            zone: id("us-public"),
            reason: id("token-expired"),
            token_id: Some(id("0a1b2c3d")),
        },
    ];
    let mut names = std::collections::BTreeSet::new();
    for (seq, action) in actions.into_iter().enumerate() {
        names.insert(action.name());
        let subjects = vec![
            Subject::new(K::Model, model.as_str()).unwrap(),
            Subject::new(K::Zone, "eu-private").unwrap(),
        ];
        let e = EntryDraft::new(id("tidegate-artifacts"), action, subjects)
            .unwrap()
            .into_entry(seq as u64, 1_763_900_000_000);
        let bytes = e.encode().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains(&format!("\"type\":\"{}\"", e.action.name())),
            "{text}"
        );
        assert_eq!(to_vec(&serde_json::to_value(&e).unwrap()).unwrap(), bytes);
        assert_eq!(Entry::decode(&bytes).unwrap(), e);
    }
    assert_eq!(names.len(), 6, "each action has its own name");
}

#[test]
fn promotion_refusals_hold_at_most_32_reasons() {
    use tidegate_ledger::{Action, Digest, EntryDraft, Ident};
    let reasons = (0..33)
        .map(|i| Ident::new(format!("r{i}")).unwrap())
        .collect();
    let action = Action::ArtifactPromotionRefused {
        artifact: Digest::of(b"m"),
        to_stage: Ident::new("approved").unwrap(),
        reasons,
    };
    assert!(EntryDraft::new(Ident::new("cli").unwrap(), action, vec![]).is_err());
}
