//! tidegate's one canonical JSON: RFC 8785 (JSON Canonicalization Scheme) for the subset of JSON
//! the ledger uses, and the same text with any number for records that may hold measurements.
//!
//! Ledger entries and evidence bundles contain only strings, integers, booleans, null, arrays
//! and objects. For that subset RFC 8785 is: no whitespace; object members sorted by the UTF-16
//! code units of their names; strings escaped as ECMAScript `JSON.stringify` does (`\"`, `\\`,
//! `\b`, `\f`, `\n`, `\r`, `\t`, other controls as `\u00xx` with lowercase hex, everything else
//! literal UTF-8); integers in plain decimal. Non-integer numbers and integers outside the I-JSON
//! safe range (|n| <= 2^53 - 1) are refused instead of being approximated, so an encoding is
//! never ambiguous.

use serde_json::Value;

/// Largest integer magnitude that I-JSON (RFC 7493) guarantees to round-trip.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a value has no canonical encoding here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// A number that is not an integer in the safe range.
    #[error("number {0} is not an integer within +/-(2^53 - 1); the ledger stores no floats")]
    Number(String),
    /// The value could not be turned into JSON at all.
    #[error("value is not representable as JSON: {0}")]
    Serialize(String),
}

/// Canonical bytes of a JSON value.
///
/// # Errors
/// [`CanonicalError::Number`] for floats or out-of-range integers.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_value(value, Numbers::SafeIntegers, &mut out)?;
    Ok(out)
}

/// The canonical text of a JSON value that may hold any number: the same text as [`to_vec`]
/// wherever that accepts the value, and a number outside its subset (a float, a large integer)
/// written as `serde_json` writes it (the shortest text that reads back to the same value).
/// For records that are digested and stored, not signed: the job store's specs and event
/// details, where a cost estimate is a float.
pub fn to_text_any_number(value: &Value) -> String {
    let mut out = Vec::with_capacity(256);
    // Infallible: with `Numbers::Any` no branch returns an error.
    let _ = write_value(value, Numbers::Any, &mut out);
    // Only UTF-8 is ever written (string contents are copied from `&str`).
    String::from_utf8(out).unwrap_or_default()
}

/// Which numbers a writer accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Numbers {
    /// Integers within +/-(2^53 - 1) only (RFC 8785's exact subset).
    SafeIntegers,
    /// Any number; those outside the subset as `serde_json` writes them.
    Any,
}

/// Canonical bytes of any serializable value (via `serde_json::Value`).
///
/// # Errors
/// When serialization fails or the value contains a non-canonical number.
pub fn to_vec_of<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    crate::canonical_ser::to_vec(value)
}

fn write_value(value: &Value, numbers: Numbers, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // Within the subset this is the same decimal text as below.
        Value::Number(n) if numbers == Numbers::Any => {
            out.extend_from_slice(n.to_string().as_bytes())
        }
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                if u > MAX_SAFE_INTEGER {
                    return Err(CanonicalError::Number(n.to_string()));
                }
                out.extend_from_slice(u.to_string().as_bytes());
            } else if let Some(i) = n.as_i64() {
                if i.unsigned_abs() > MAX_SAFE_INTEGER {
                    return Err(CanonicalError::Number(n.to_string()));
                }
                out.extend_from_slice(i.to_string().as_bytes());
            } else {
                return Err(CanonicalError::Number(n.to_string()));
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, numbers, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write_value(v, numbers, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

pub(crate) fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for ch in s.chars() {
        match ch {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                let b = c as u32 as u8;
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        String::from_utf8(to_vec(v).unwrap_or_default()).unwrap_or_default()
    }

    #[test]
    fn sorts_members_by_utf16_code_units() {
        // RFC 8785 §3.2.3 sorting example (the numeric-valued members replaced by integers).
        let v = json!({
            "\u{20ac}": "Euro Sign",
            "\r": "Carriage Return",
            "\u{fb33}": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\u{1f600}": "Emoji: Grinning Face",
            "\u{0080}": "Control",
            "\u{00f6}": "Latin Small Letter O With Diaeresis"
        });
        let got = canon(&v);
        let order: Vec<usize> = [
            "\\r",
            "\"1\"",
            "\u{0080}",
            "\u{00f6}",
            "\u{20ac}",
            "\u{1f600}",
            "\u{fb33}",
        ]
        .iter()
        .map(|k| got.find(k).unwrap_or(usize::MAX))
        .collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, sorted, "{got}");
        assert!(!order.contains(&usize::MAX));
    }

    #[test]
    fn escapes_like_ecmascript() {
        let v = json!({"s": "\u{1}\u{8}\t\n\u{c}\r\"\\/\u{7f}\u{e9}"});
        assert_eq!(
            canon(&v),
            "{\"s\":\"\\u0001\\b\\t\\n\\f\\r\\\"\\\\/\u{7f}\u{e9}\"}"
        );
    }

    #[test]
    fn nested_structures_have_no_whitespace() {
        let v = json!({"b": [1, true, null, {"z": -5, "a": "x"}], "a": {}});
        assert_eq!(canon(&v), r#"{"a":{},"b":[1,true,null,{"a":"x","z":-5}]}"#);
    }

    #[test]
    fn any_number_text_agrees_with_the_subset_and_writes_floats_as_serde_json_does() {
        let v = json!({"b": [1, -2, "\u{1}\u{e9}"], "a": {"\u{fb33}": 0, "\u{1f600}": 1}});
        assert_eq!(
            to_text_any_number(&v).as_bytes(),
            to_vec(&v).unwrap_or_default()
        );
        let f = json!({"cost": 1.5, "big": MAX_SAFE_INTEGER + 1, "n": -0.25});
        assert_eq!(
            to_text_any_number(&f),
            r#"{"big":9007199254740992,"cost":1.5,"n":-0.25}"#
        );
    }

    #[test]
    fn refuses_floats_and_unsafe_integers() {
        assert!(to_vec(&json!(1.5)).is_err());
        assert!(to_vec(&json!(MAX_SAFE_INTEGER + 1)).is_err());
        assert!(to_vec(&json!(-(MAX_SAFE_INTEGER as i64) - 1)).is_err());
        assert_eq!(canon(&json!(MAX_SAFE_INTEGER)), "9007199254740991");
    }
}
