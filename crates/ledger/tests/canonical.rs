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
            prop::collection::vec(("[a-z\u{e9}\u{20ac}\u{1f600}\u{fb33}\r1]{0,4}", inner), 0..6)
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
