//! Loading a fleet directory and job files: YAML to the model, with every error naming the file,
//! the line and the field, and every problem in a file reported, not just the first.
//!
//! One module per kind of file: `fleet` (fleet.yaml, zones, datasets and artifacts files), `scheduling`
//! (the teams, classes and failover of fleet.yaml, checked against the zones), `job` (job files).

mod fleet;
mod job;
mod scheduling;

pub use fleet::{load_fleet, load_fleet_with_scheduling};
pub use job::{load_job, load_jobs_dir, parse_job, MAX_INPUTS, RESERVED_LABELS};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};

use crate::classification::{norm_jurisdiction, ClassificationSpec, SchemeLines, SchemeSpec};
use crate::fleet::PolicyFile;
use crate::scheduling::{
    scope_known, Budget, Failover, FailoverAction, FailoverRule, JobClass, Scheduling, TeamQuota,
};
use crate::{
    ArtifactRecord, Backend, Classification, Dataset, DatasetRef, Fleet, Input, JobKind, JobSpec,
    Labels, LoadError, LoadErrors, Origin, Pool, Pricing, Resources, Scheme, Sla, Tier, Zone,
    ZoneScope, DEFAULT_ADMISSION_TIMEOUT_S, MAX_ADMISSION_TIMEOUT_S,
};

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_yaml<T: de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, LoadError> {
    serde_saphyr::from_str::<T>(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        LoadError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message: plain_message(&e),
        }
    })
}

/// The parser's message without its rendered source snippet (we print file:line ourselves).
fn plain_message(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    let first = full
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid YAML");
    let first = first.trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // We print file:line:column ourselves: drop the parser's own "line N column M: " prefix
    // and " at line N column M" suffix.
    let first = match first.find(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    match first
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((pos, msg))
            if pos
                .split(' ')
                .all(|w| w == "column" || w.bytes().all(|b| b.is_ascii_digit())) =>
        {
            msg.to_string()
        }
        _ => first.to_string(),
    }
}

fn origin_of<T>(file: &Arc<Path>, s: &Spanned<T>) -> Origin {
    Origin {
        file: file.clone(),
        line: u32::try_from(s.referenced.line()).unwrap_or(u32::MAX),
    }
}

/// A label value: any YAML scalar, kept as its text (`true`, `8`, `private`).
#[derive(Debug, Clone)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// One element of a job's `spec.command`: a YAML string, or what else was written there (so the
/// error can name the element instead of failing the whole document).
#[derive(Debug, Clone)]
enum CommandArg {
    Text(String),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for CommandArg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CommandArg;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CommandArg, E> {
                Ok(CommandArg::Text(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<CommandArg, E> {
                Ok(CommandArg::Other("a boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<CommandArg, E> {
                Ok(CommandArg::Other("a number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<CommandArg, E> {
                Ok(CommandArg::Other("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<CommandArg, E> {
                Ok(CommandArg::Other("a number"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<CommandArg, E> {
                Ok(CommandArg::Other("null"))
            }
            fn visit_none<E: de::Error>(self) -> Result<CommandArg, E> {
                Ok(CommandArg::Other("null"))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<CommandArg, A::Error> {
                while a.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(CommandArg::Other("a list"))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut a: A) -> Result<CommandArg, A::Error> {
                while a.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
                Ok(CommandArg::Other("a mapping"))
            }
        }
        d.deserialize_any(V)
    }
}

fn classification(
    spec: &ClassificationSpec,
    scheme: &Scheme,
    origin: &Origin,
    field: &str,
    errs: &mut Vec<LoadError>,
) -> Classification {
    let mut c = Classification::default();
    if let Some(level) = &spec.level {
        match scheme.level_rank(&level.value) {
            Some(r) => c.level = r,
            None => {
                errs.push(LoadError::invalid(
                    &origin.at(level.referenced.line()),
                    format!("{field}.level"),
                    format!(
                        "unknown classification level `{}` (known: {})",
                        level.value,
                        scheme.level_names().join(", ")
                    ),
                ));
                // Fail closed: an unknown level is treated as the most sensitive one.
                c.level = u8::try_from(scheme.levels.len().saturating_sub(1)).unwrap_or(u8::MAX);
            }
        }
    }
    for tag in &spec.tags {
        if !scheme.knows_tag(&tag.value) {
            errs.push(LoadError::invalid(
                &origin.at(tag.referenced.line()),
                format!("{field}.tags"),
                format!(
                    "unknown legal tag `{}` (declare it in fleet.yaml, or use contractual:NAME)",
                    tag.value
                ),
            ));
        }
        c.tags.insert(tag.value.clone());
    }
    c.residency = spec.residency.as_ref().map(|r| {
        r.iter()
            .map(|j| norm_jurisdiction(j))
            .collect::<BTreeSet<_>>()
    });
    if let Some(ret) = &spec.retention {
        if scheme.retention_rank(&ret.value).is_none() {
            errs.push(LoadError::invalid(
                &origin.at(ret.referenced.line()),
                format!("{field}.retention"),
                format!(
                    "unknown retention class `{}` (known: {})",
                    ret.value,
                    scheme.retention_classes.join(", ")
                ),
            ));
        }
        c.retention = Some(ret.value.clone());
    }
    c
}

fn list_dir(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, LoadError> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => {
            return Err(LoadError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for entry in rd {
        let entry = entry.map_err(|source| LoadError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let p = entry.path();
        if p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ext.split('|').any(|x| x == e))
        {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn rel_name(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

fn join(names: &BTreeSet<&str>) -> String {
    names.iter().copied().collect::<Vec<_>>().join(", ")
}

/// Whether `s` is `sha256:` followed by 64 lower-case hex digits.
pub(crate) fn valid_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Whether `name` is a valid zone, pool, team or dataset name: a DNS-1123 label (lower-case
/// letters, digits and `-`, starting and ending with a letter or digit, at most 63).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn check_name(name: &str, origin: &Origin, field: &str, errs: &mut Vec<LoadError>) {
    if !is_valid_name(name) {
        errs.push(LoadError::invalid(
            origin,
            field,
            format!("`{name}` is not a valid name (lower-case letters, digits and '-', at most 63, as in Kubernetes)"),
        ));
    }
}
