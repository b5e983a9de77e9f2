//! A small, deterministic YAML emitter for JSON values: block style, keys in the order the value
//! holds them (sorted, as `serde_json` maps are), strings plain when YAML reads them back as the
//! same string and double-quoted (JSON escapes, valid YAML) otherwise. Enough for Kubernetes
//! manifests, without a YAML serialiser dependency.

use std::fmt::Write as _;

use serde_json::Value;

/// Whether a string can be written plain and still read back as that string.
fn plain_ok(s: &str) -> bool {
    if s.is_empty() || s.trim() != s {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "true"
            | "false"
            | "null"
            | "~"
            | "yes"
            | "no"
            | "on"
            | "off"
            | "y"
            | "n"
            | ".nan"
            | ".inf"
            | "-.inf"
    ) {
        return false;
    }
    if s.parse::<f64>().is_ok()
        || s.starts_with(|c: char| c.is_ascii_digit() || c == '+' || c == '.')
            && s.chars().all(|c| {
                c.is_ascii_digit()
                    || matches!(c, '.' | '_' | ':' | '+' | '-' | 'e' | 'E' | 'x' | 'o')
            })
    {
        return false;
    }
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.'));
    first_ok
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '/' | '_' | '.' | '-' | '@' | ':' | '=' | '+' | ',' | ' ' | '(' | ')' | '*'
                )
        })
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with(':')
}

fn scalar(s: &str) -> String {
    if plain_ok(s) {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
    }
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

fn inline(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

fn emit(out: &mut String, v: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            // Keys in sorted order whatever map type serde_json was built with (another crate in
            // the build may switch on its insertion-ordered maps).
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            for (k, val) in entries {
                if is_block(val) {
                    let _ = writeln!(out, "{pad}{}:", scalar(k));
                    // Sequences under a key are not indented further (the common Kubernetes style).
                    let child = if matches!(val, Value::Array(_)) {
                        indent
                    } else {
                        indent + 2
                    };
                    emit(out, val, child);
                } else {
                    let _ = writeln!(out, "{pad}{}: {}", scalar(k), inline(val));
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        let mut inner = String::new();
                        emit(&mut inner, item, indent + 2);
                        // Replace the first line's indentation with the dash.
                        let body = inner.get(indent + 2..).unwrap_or("");
                        let _ = write!(out, "{pad}- {body}");
                    }
                    Value::Array(x) if !x.is_empty() => {
                        let _ = writeln!(out, "{pad}-");
                        emit(out, item, indent + 2);
                    }
                    _ => {
                        let _ = writeln!(out, "{pad}- {}", inline(item));
                    }
                }
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", inline(other));
        }
    }
}

/// One YAML document for a value (no `---` marker).
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    emit(&mut out, v, 0);
    out
}

/// Several documents separated by `---`.
pub fn to_yaml_stream(values: &[Value]) -> String {
    values.iter().map(to_yaml).collect::<Vec<_>>().join("---\n")
}
