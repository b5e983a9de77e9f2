//! May this data be held in that zone? One rule for every way data reaches a zone besides a
//! transfer: the inputs of a job token (checked when the token is minted and again at every
//! read through it) and an artifact read from inside a zone. Data is judged as a burst-eligible
//! job of its owner reading exactly that data — the hard placement constraints and a plain Cedar
//! evaluation, as placement and transfers judge it — so data only goes where work on it could
//! run. What cannot be classified (an unknown dataset, an unclassified artifact, a level the
//! fleet does not know) is judged as the most sensitive data the fleet knows.

use std::collections::{BTreeMap, BTreeSet};

use tidegate_artifacts::{ArtifactClass, ArtifactRecord, ArtifactStore, Digest};
use tidegate_model::{
    Classification, DatasetRef, Fleet, Input, JobKind, JobProfile, JobSpec, Labels, Origin,
    Resources, Scheme,
};
use tidegate_placement::zone_failures;
use tidegate_policy::PolicyEngine;

use crate::registry::DatasetVersion;

/// What a piece of data is, for the holding rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// The owning team (policies may read the team).
    pub owner: String,
    /// Its classification, the strictest of everything known about it.
    pub classification: Classification,
    /// The registered dataset version it is, or is part of (its home zone gives the origin
    /// jurisdiction for export control).
    pub dataset: Option<DatasetRef>,
}

/// A job of `team` reading `inputs` with its own `classification`, burst-eligible: how data is
/// judged for a zone (transfers use the same probe).
#[must_use]
pub fn probe_job(
    name: String,
    team: String,
    inputs: Vec<Input>,
    classification: Option<Classification>,
) -> JobSpec {
    JobSpec {
        name,
        team,
        kind: JobKind::Train,
        inputs,
        outputs: Vec::new(),
        resources: Resources {
            gpus: 0,
            gpu_types: Vec::new(),
            gpu_memory_gb: 0,
            memory_gb: 0,
            expected_hours: 0.0,
        },
        deadline: None,
        sla: None,
        budget_class: String::new(),
        code_commit: None,
        hyperparameters: BTreeMap::new(),
        justification: None,
        classification,
        command: Vec::new(),
        labels: Labels {
            burst_eligible: Some(true),
            ..Labels::default()
        },
        origin: Origin::builtin("<holding>"),
    }
}

/// The most sensitive classification a fleet knows: its top level, every private-only tag.
#[must_use]
pub fn strictest(scheme: &Scheme) -> Classification {
    let top = u8::try_from(scheme.levels.len().saturating_sub(1)).unwrap_or(u8::MAX);
    Classification {
        level: top,
        tags: scheme
            .tags
            .iter()
            .filter(|t| t.private_only)
            .map(|t| t.name.clone())
            .collect(),
        residency: None,
        retention: None,
    }
}

/// The classification an artifact carries, ranked by `scheme`; unclassified, or naming a level
/// the scheme does not know, is [`strictest`].
#[must_use]
pub fn artifact_classification(class: Option<&ArtifactClass>, scheme: &Scheme) -> Classification {
    let Some(c) = class else {
        return strictest(scheme);
    };
    let Some(level) = scheme.level_rank(&c.level) else {
        return strictest(scheme);
    };
    Classification {
        level,
        tags: c.tags.clone(),
        residency: c.residency.clone(),
        retention: None,
    }
}

/// Parses `LEVEL` or `LEVEL/TAG,TAG` against `scheme`.
///
/// # Errors
/// An unknown level or tag, named.
pub fn parse_classification(text: &str, scheme: &Scheme) -> Result<Classification, String> {
    let (level, tags) = text.split_once('/').unwrap_or((text, ""));
    let rank = scheme.level_rank(level.trim()).ok_or_else(|| {
        format!(
            "unknown level `{}` (known: {})",
            level.trim(),
            scheme.level_names().join(", ")
        )
    })?;
    let mut c = Classification {
        level: rank,
        ..Classification::default()
    };
    for t in tags.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if !scheme.knows_tag(t) {
            return Err(format!("unknown tag `{t}`"));
        }
        c.tags.insert(t.to_owned());
    }
    Ok(c)
}

/// Unambiguous direct identifiers (SSNs, e-mail addresses, phone numbers) in raw content, counted
/// by kind: what tabular content claimed below a private-only classification must not hold.
#[must_use]
pub fn direct_identifiers_in(bytes: &[u8]) -> Vec<(tidegate_sanitize::scan::Kind, u64)> {
    let mut reader = bytes;
    direct_identifiers_in_reader(&mut reader).unwrap_or_default()
}

/// Bytes scanned at once by [`direct_identifiers_in_reader`].
const SCAN_WINDOW: usize = 1 << 20;
/// How far windows overlap: longer than any identifier the scan finds (an e-mail address is at
/// most 320 bytes), so each is seen whole in the window where it starts, and counted there only.
const SCAN_OVERLAP: usize = 4096;

/// [`direct_identifiers_in`] of what `reader` yields, scanned in overlapping windows of
/// [`SCAN_WINDOW`] bytes (memory stays bounded); the same counts as scanning it whole.
///
/// # Errors
/// The reader's I/O errors.
pub fn direct_identifiers_in_reader(
    reader: &mut dyn std::io::Read,
) -> std::io::Result<Vec<(tidegate_sanitize::scan::Kind, u64)>> {
    use tidegate_sanitize::scan::{Kind, Scanner};
    let mut counts: BTreeMap<Kind, u64> = BTreeMap::new();
    let full = SCAN_WINDOW + SCAN_OVERLAP;
    let mut buf: Vec<u8> = Vec::with_capacity(full);
    let mut first = true;
    let mut scanner = Scanner::default();
    loop {
        let mut chunk = [0u8; 64 * 1024];
        while buf.len() < full {
            let want = (full - buf.len()).min(chunk.len());
            let n = match reader.read(chunk.get_mut(..want).unwrap_or_default()) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                break;
            }
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
        let eof = buf.len() < full;
        if first {
            // A header naming an identifier column (an SSN written without dashes is still an
            // SSN).
            let header = buf.split(|b| *b == b'\n').next().unwrap_or_default();
            for field in header.split(|b| matches!(b, b',' | b'\t' | b';' | b'|')) {
                if identifier_column(&String::from_utf8_lossy(field)) {
                    *counts.entry(Kind::Ssn).or_default() += 1;
                }
            }
        }
        let from = if first { 0 } else { SCAN_OVERLAP };
        let until = if eof { buf.len() } else { SCAN_WINDOW };
        scanner.scan(&buf, |k, start, _| {
            if start >= from && start < until && matches!(k, Kind::Ssn | Kind::Email | Kind::Phone)
            {
                *counts.entry(k).or_default() += 1;
            }
        });
        if eof {
            return Ok(counts.into_iter().collect());
        }
        buf.drain(..until - SCAN_OVERLAP);
        first = false;
    }
}

/// Whether a column name names a direct identifier (SSN, passport, driver's licence), whatever
/// its values look like.
#[must_use]
pub fn identifier_column(name: &str) -> bool {
    let n: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    matches!(
        n.as_str(),
        "ssn"
            | "socialsecurity"
            | "socialsecuritynumber"
            | "passport"
            | "passportnumber"
            | "drivers"
            | "driverslicense"
            | "driverslicence"
            | "licensenumber"
    )
}

/// Refuses content other than weights (models, checkpoints) classified below a private-only
/// level that holds direct identifiers (or names an identifier column): raw rows with a byte
/// changed, or uploaded as another kind, are still raw rows.
///
/// # Errors
/// What was found, counted by kind (never the values).
pub fn check_claim(
    kind: tidegate_artifacts::ArtifactKind,
    class: Option<&Classification>,
    scheme: &Scheme,
    bytes: &[u8],
) -> Result<(), String> {
    let mut reader = bytes;
    check_claim_reader(kind, class, scheme, &mut reader)
}

/// [`check_claim`] of content read from `reader` in bounded windows (an upload spooled to a
/// file), so content of any size is checked with bounded memory.
///
/// # Errors
/// The reason the claim is refused, or the reader's I/O error.
pub fn check_claim_reader(
    kind: tidegate_artifacts::ArtifactKind,
    class: Option<&Classification>,
    scheme: &Scheme,
    reader: &mut dyn std::io::Read,
) -> Result<(), String> {
    use tidegate_artifacts::ArtifactKind;
    // Every kind but weights: a report, a card or an image reference holding raw rows is still
    // raw rows.
    let weights = matches!(kind, ArtifactKind::Model | ArtifactKind::Checkpoint);
    let Some(c) = class else { return Ok(()) };
    if weights || scheme.private_only(c) {
        return Ok(());
    }
    let found = direct_identifiers_in_reader(reader)
        .map_err(|e| format!("the content could not be read to check it: {e}"))?;
    if found.is_empty() {
        return Ok(());
    }
    let what: Vec<String> = found.iter().map(|(k, n)| format!("{n} {k:?}")).collect();
    Err(format!(
        "the content holds direct identifiers ({}): {} data is stored only at a private-only classification, or sanitized first",
        what.join(", "),
        c.describe(scheme)
    ))
}

/// An artifact class by names for a ranked classification.
#[must_use]
pub fn class_of(c: &Classification, scheme: &Scheme) -> ArtifactClass {
    ArtifactClass {
        level: scheme.level_name(c.level).to_owned(),
        tags: c.tags.clone(),
        residency: c.residency.clone(),
    }
}

/// The classification a promotion gate leaves to an artifact released for public or edge
/// serving (`released-public`, `released-edge`: the gates required their evidence, e.g. a
/// leakage check for a model trained on sensitive data): its level is capped just below the
/// first private-only level and its private-only tags are lifted; every other tag (export
/// control, IP, contractual), and residency, carry over.
#[must_use]
pub fn released(c: &Classification, scheme: &Scheme) -> Classification {
    let cap = scheme
        .levels
        .iter()
        .position(|l| l.private_only)
        .map_or(c.level, |p| u8::try_from(p.saturating_sub(1)).unwrap_or(0));
    let private_only_tag = |t: &String| scheme.tags.iter().any(|d| &d.name == t && d.private_only);
    Classification {
        level: c.level.min(cap),
        tags: c
            .tags
            .iter()
            .filter(|t| !private_only_tag(t))
            .cloned()
            .collect(),
        residency: c.residency.clone(),
        retention: c.retention.clone(),
    }
}

/// What an artifact record is: its own classification joined with that of every registered
/// version it belongs to (a snapshot manifest or one of its table files). `released_beyond_private`
/// is whether its promotions reach `released-public` or `released-edge` ([`released`]; only a
/// model's gates lead there).
#[must_use]
pub fn of_artifact(
    record: &ArtifactRecord,
    released_beyond_private: bool,
    versions: &[DatasetVersion],
    fleet: &Fleet,
) -> Holding {
    let scheme = &fleet.scheme;
    let mut classification = artifact_classification(record.classification.as_ref(), scheme);
    if released_beyond_private && record.kind == tidegate_artifacts::ArtifactKind::Model {
        classification = released(&classification, scheme);
    }
    let mut owner = record.labels.get("team").cloned().unwrap_or_default();
    let mut dataset = None;
    for v in versions.iter().filter(|v| {
        v.snapshot == record.digest || v.tables.iter().any(|t| t.digest == record.digest)
    }) {
        let c = v
            .classification
            .resolve(scheme)
            .unwrap_or_else(|_| strictest(scheme));
        classification = classification.join(&c, scheme);
        if dataset.is_none() {
            owner.clone_from(&v.owner);
            dataset = Some(DatasetRef {
                name: v.name.clone(),
                version: v.version.clone(),
            });
        }
    }
    Holding {
        owner,
        classification,
        dataset,
    }
}

/// Whether `digest`'s promotions reach `released-public` or `released-edge` (a stage that
/// cannot be read counts as not released).
#[must_use]
pub fn is_released(store: &ArtifactStore, digest: &Digest) -> bool {
    use tidegate_artifacts::gates::{current_stage, Stage};
    matches!(
        current_stage(store, digest),
        Ok(Stage::ReleasedPublic | Stage::ReleasedEdge)
    )
}

/// What a job token's input resource is: `dataset:NAME@VERSION` (a dataset the fleet knows) or
/// `KIND:sha256:HEX` (an artifact in `store`).
///
/// # Errors
/// Why it cannot be classified (unknown dataset or artifact, a name of no known form): such an
/// input is never granted.
pub fn of_resource(
    resource: &str,
    fleet: &Fleet,
    versions: &[DatasetVersion],
    store: &ArtifactStore,
) -> Result<Holding, String> {
    if let Some(d) = resource.strip_prefix("dataset:") {
        let (name, version) = d
            .split_once('@')
            .ok_or_else(|| format!("input `{resource}`: name a dataset as dataset:NAME@VERSION"))?;
        let r = DatasetRef {
            name: name.to_owned(),
            version: version.to_owned(),
        };
        let ds = fleet
            .dataset(&r)
            .ok_or_else(|| format!("input `{resource}`: the fleet knows no dataset version {d}"))?;
        return Ok(Holding {
            owner: ds.owner.clone(),
            classification: ds.classification.clone(),
            dataset: Some(r),
        });
    }
    let digest = resource
        .split_once(':')
        .and_then(|(_, d)| d.parse::<Digest>().ok())
        .ok_or_else(|| format!("input `{resource}` is neither dataset:NAME@VERSION nor KIND:sha256:HEX, so it cannot be classified"))?;
    let record = store
        .record(&digest)
        .map_err(|e| format!("input `{resource}`: {e}"))?;
    // The record's attributes count only as its encryption authenticates them.
    store
        .get(&digest)
        .map_err(|e| format!("input `{resource}`: {e}"))?;
    Ok(of_artifact(
        &record,
        is_released(store, &digest),
        versions,
        fleet,
    ))
}

/// Whether `what` may be held in zone `zone`: every reason it may not, at once.
///
/// # Errors
/// Every failed hard constraint and every forbidding policy (or no permit).
pub fn may_hold(
    fleet: &Fleet,
    policy: &PolicyEngine,
    what: &Holding,
    zone: &str,
) -> Result<(), Vec<String>> {
    let Some(zi) = fleet.zones.iter().position(|z| z.name == zone) else {
        return Err(vec![format!("unknown zone `{zone}`")]);
    };
    let Some(z) = fleet.zones.get(zi) else {
        return Err(vec![format!("unknown zone `{zone}`")]);
    };
    let inputs = what
        .dataset
        .iter()
        .map(|d| Input::Dataset(d.clone()))
        .collect();
    let job = probe_job(
        format!("hold-in-{zone}"),
        what.owner.clone(),
        inputs,
        Some(what.classification.clone()),
    );
    let profile =
        JobProfile::resolve(&job, fleet).map_err(|e| vec![format!("cannot be classified: {e}")])?;
    let mut reasons = Vec::new();
    let f = zone_failures(&profile.attrs, z);
    let failed: Vec<&str> = f.constraints().map(|c| c.name()).collect();
    if !failed.is_empty() {
        reasons.push(format!(
            "{} data may not be in zone {} (tier {}, ceiling {}, jurisdiction {}): {}",
            profile.effective.describe(&fleet.scheme),
            z.name,
            z.tier,
            fleet.scheme.level_name(z.max_classification),
            z.jurisdiction,
            failed.join(", ")
        ));
    }
    let v = policy.evaluate_one_naive(
        &profile.attrs,
        fleet.scheme.level_name(profile.attrs.level),
        zi,
    );
    if !v.allowed {
        reasons.extend(v.reasons().into_iter().map(|r| format!("policy: {r}")));
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

/// Whether the artifact `record` (in `store`) may be read in `zone`: [`of_artifact`] (its
/// release stage counted) judged by [`may_hold`]; the reasons joined for a refusal. What both
/// front ends' job-token reads pass as their admission check.
///
/// # Errors
/// Why not.
pub fn admit(
    fleet: &Fleet,
    policy: &PolicyEngine,
    versions: &[DatasetVersion],
    store: &ArtifactStore,
    record: &ArtifactRecord,
    zone: &str,
) -> Result<(), String> {
    let what = of_artifact(record, is_released(store, &record.digest), versions, fleet);
    may_hold(fleet, policy, &what, zone).map_err(|r| r.join("; "))
}

/// Checks every input of a job token bound for `zone` ([`of_resource`], then [`may_hold`]).
///
/// # Errors
/// One line per refused input, naming it and why.
pub fn check_token_inputs(
    fleet: &Fleet,
    policy: &PolicyEngine,
    versions: &[DatasetVersion],
    store: &ArtifactStore,
    inputs: &[String],
    zone: &str,
) -> Result<(), Vec<String>> {
    let mut refused = Vec::new();
    let mut seen = BTreeSet::new();
    for input in inputs {
        if !seen.insert(input) {
            continue;
        }
        match of_resource(input, fleet, versions, store) {
            Err(e) => refused.push(e),
            Ok(h) => {
                if let Err(reasons) = may_hold(fleet, policy, &h, zone) {
                    refused.push(format!(
                        "input `{input}` may not be read in zone {zone}: {}",
                        reasons.join("; ")
                    ));
                }
            }
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(refused)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// The whole content scanned at once: what the windowed scan must agree with.
    fn whole(bytes: &[u8]) -> Vec<(tidegate_sanitize::scan::Kind, u64)> {
        use tidegate_sanitize::scan::{Kind, Scanner};
        let mut counts: BTreeMap<Kind, u64> = BTreeMap::new();
        Scanner::default().scan(bytes, |k, _, _| {
            if matches!(k, Kind::Ssn | Kind::Email | Kind::Phone) {
                *counts.entry(k).or_default() += 1;
            }
        });
        counts.into_iter().collect()
    }

    #[test]
    fn windowed_scan_counts_what_a_whole_scan_counts_across_window_edges() {
        // Identifiers on every line, of varying lengths, so that every window edge (wherever
        // it falls) cuts through some, for 3.5 windows of text.
        let mut text = Vec::new();
        let mut i = 0u64;
        while text.len() < 3 * SCAN_WINDOW + SCAN_WINDOW / 2 {
            let pad = "y".repeat((i % 37) as usize);
            text.extend_from_slice(
                format!("{pad} user{i}@example.org 555-01-{:04} words\n", i % 10_000).as_bytes(),
            );
            i += 1;
        }
        let expected = whole(&text);
        assert!(
            expected.iter().map(|(_, n)| n).sum::<u64>() > 50_000,
            "{expected:?}"
        );
        let mut reader: &[u8] = &text;
        assert_eq!(direct_identifiers_in_reader(&mut reader).unwrap(), expected);
    }
}
