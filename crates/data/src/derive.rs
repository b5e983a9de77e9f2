//! A sanitized version of a registered dataset. The sanitizer runs on the version's verified
//! tables; its report is stored as a `sanitizer-report` artifact and signed (a DSSE envelope
//! over an in-toto statement, recorded in the evidence ledger), and the output is registered
//! with the profile's lower classification only when the report says it was earned — otherwise
//! it keeps the source's classification. Lineage gets an edge source → derived.

use std::path::Path;

use serde_json::json;
use tidegate_artifacts::lineage::{Entry, LineageLog};
use tidegate_artifacts::signing::Signer;
use tidegate_artifacts::{gates, ArtifactKind, ArtifactStore, Digest, PutOptions};
use tidegate_model::Fleet;
use tidegate_sanitize::{Key, Options, Profile, Report};

use crate::registry::{ClassificationNames, DatasetVersion, RegisterSpec, Registry};
use crate::DataError;

/// Predicate type of a signed sanitizer report.
pub const SANITIZER_REPORT: &str = "https://tidegate.dev/attestations/sanitizer-report/v1";

/// The outcome of [`sanitize_version`].
#[derive(Debug)]
pub struct Derived {
    /// The registered output version.
    pub version: DatasetVersion,
    /// The sanitizer's report.
    pub report: Report,
    /// Its artifact digest.
    pub report_digest: Digest,
}

/// What a sanitizer report is about: where its input came from and what its output is called.
#[derive(Debug, Clone)]
pub struct ReportSubject {
    /// The input: a dataset version (`name@version`) or a path.
    pub source: String,
    /// The input snapshot's digest, for a registered version.
    pub source_snapshot: Option<String>,
    /// The output: a dataset version or a path.
    pub output: String,
}

/// Stores a sanitizer report (`report_bytes`, the JSON of `report`) as a `sanitizer-report`
/// artifact, keeps it as a ledger document (counts, column names, line numbers; never cell
/// values), and signs it (a DSSE envelope over an in-toto statement whose predicate says what
/// was sanitized, with which profile and key id, and whether the lower class was earned).
/// Through a ledgered store each step is an evidence entry. Returns the report's digest.
///
/// # Errors
/// Store, signing and ledger errors.
pub fn record_report(
    store: &ArtifactStore,
    signer: &Signer,
    report: &Report,
    report_bytes: &[u8],
    subject: &ReportSubject,
    now: u64,
) -> Result<Digest, DataError> {
    let rec = store.put(
        report_bytes,
        ArtifactKind::SanitizerReport,
        &PutOptions {
            name: format!("{}/sanitize-report.json", subject.output),
            ..PutOptions::default()
        },
        now,
    )?;
    store.record_document(report_bytes)?;
    gates::attest(
        store,
        signer,
        &rec.digest,
        SANITIZER_REPORT,
        json!({
            "source": subject.source,
            "source_snapshot": subject.source_snapshot,
            "output": subject.output,
            "profile": report.profile,
            "key_id": report.key_id,
            "earned": report.earned,
            "output_classification": report.output_classification,
            "reasons": report.reasons,
        }),
        now,
    )?;
    Ok(rec.digest)
}

/// `level/tag,tag` (the profile's notation) as names, keeping `source`'s residency and
/// retention (de-identification does not lift a residency obligation here).
fn earned_names(text: &str, source: &ClassificationNames) -> ClassificationNames {
    let (level, tags) = text.split_once('/').unwrap_or((text, ""));
    ClassificationNames {
        level: level.trim().to_owned(),
        tags: tags
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        residency: source.residency.clone(),
        retention: source.retention.clone(),
    }
}

/// A sanitized version to derive: from `source`, with `profile`, signed by `signer`, as
/// `name@version` in the same zone.
pub struct Derivation<'a> {
    /// The registry.
    pub registry: &'a Registry,
    /// The data directory's artifact store (recording through the evidence ledger).
    pub store: &'a ArtifactStore,
    /// The fleet (for the classification scheme and zones).
    pub fleet: &'a Fleet,
    /// The registered source version.
    pub source: &'a DatasetVersion,
    /// The sanitizer profile.
    pub profile: &'a Profile,
    /// Signs the report.
    pub signer: &'a Signer,
    /// New version's name.
    pub name: &'a str,
    /// New version.
    pub version: &'a str,
}

/// Sanitizes `d.source` with the pseudonymisation `key`, working under `work` (a scratch
/// directory, removed after), and registers the result.
///
/// # Errors
/// Store, sanitizer, signing, ledger and registry errors; nothing is registered then.
pub fn sanitize_version(
    d: &Derivation<'_>,
    key: Key,
    work: &Path,
    now: u64,
) -> Result<Derived, DataError> {
    let input = work.join("in");
    let output = work.join("out");
    let _ = std::fs::remove_dir_all(work);
    d.registry.materialise(d.store, d.source, &input)?;
    let result = run(d, key, &input, &output, now);
    let _ = std::fs::remove_dir_all(work);
    result
}

fn run(
    d: &Derivation<'_>,
    key: Key,
    input: &Path,
    output: &Path,
    now: u64,
) -> Result<Derived, DataError> {
    let Derivation {
        registry,
        store,
        fleet,
        source,
        profile,
        signer,
        name,
        version,
    } = *d;
    let report = tidegate_sanitize::sanitize(profile, input, output, &Options { key })?;
    // The report travels as a signed artifact, not as a table of the dataset.
    let report_path = output.join(tidegate_sanitize::engine::REPORT_FILE);
    let report_bytes = std::fs::read(&report_path).map_err(|e| DataError::io(&report_path, e))?;
    std::fs::remove_file(&report_path).map_err(|e| DataError::io(&report_path, e))?;
    let id = format!("{name}@{version}");
    let subject = ReportSubject {
        source: source.id(),
        source_snapshot: Some(source.snapshot.to_string()),
        output: id,
    };
    let digest = record_report(store, signer, &report, &report_bytes, &subject, now)?;
    let classification = if report.earned {
        earned_names(&report.output_classification, &source.classification)
    } else {
        source.classification.clone()
    };
    let spec = RegisterSpec {
        name: name.to_owned(),
        version: version.to_owned(),
        owner: source.owner.clone(),
        home_zone: source.home_zone.clone(),
        classification,
        derived_from: Some(source.id()),
        report: Some(digest.clone()),
    };
    let derived = registry.register(store, fleet, &spec, output, now)?;
    LineageLog::new(store.data_dir()).append(&Entry::Edge {
        from: source.node(),
        to: derived.node(),
        relation: "derived".into(),
        at: now,
    })?;
    Ok(Derived {
        version: derived,
        report,
        report_digest: digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earned_classification_keeps_residency_and_retention() {
        let src = ClassificationNames {
            level: "restricted".into(),
            tags: vec!["phi".into()],
            residency: Some(vec!["US".into()]),
            retention: Some("regulated".into()),
        };
        let e = earned_names("confidential/deidentified", &src);
        assert_eq!(e.level, "confidential");
        assert_eq!(e.tags, vec!["deidentified".to_owned()]);
        assert_eq!(e.residency, src.residency);
        assert_eq!(e.retention, src.retention);
        assert!(earned_names("internal", &src).tags.is_empty());
    }
}
