//! A sanitized version of a registered dataset. The sanitizer runs on the version's verified
//! tables, told the source's registered classification and the profile's verified approval; its
//! report is stored as a `sanitizer-report` artifact and signed (a DSSE envelope over an in-toto
//! statement, recorded in the evidence ledger), an approved profile is stored with its approver's
//! signature (so the ledger names the approver key and the profile digest), and the output is
//! registered with the profile's lower classification only when the report says it was earned —
//! otherwise it keeps the source's classification. Earned, it loses only the tags the profile
//! lifts; export control, `contractual:*`, `ip`, residency and retention always carry over.
//! Lineage gets an edge source → derived.

use std::path::Path;

use serde_json::json;
use tidegate_artifacts::lineage::{Entry, LineageLog};
use tidegate_artifacts::signing::Signer;
use tidegate_artifacts::{gates, ArtifactKind, ArtifactStore, Digest, PutOptions};
use tidegate_model::{Fleet, Scheme};
use tidegate_sanitize::profile::never_liftable;
use tidegate_sanitize::{Key, Options, Profile, Report};

use crate::approval::VerifiedProfile;
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
/// was sanitized, with which profile, profile digest, approver key and key id, and whether the
/// lower class was earned). When the run used an approval, the profile itself is stored as a
/// `sanitizer-profile` artifact with the approver's envelope attached, so the ledger's
/// `artifact.attested` entry names the approver key and the profile digest. Through a ledgered
/// store each step is an evidence entry. Returns the report's digest.
///
/// # Errors
/// Store, signing and ledger errors.
pub fn record_report(
    store: &ArtifactStore,
    signer: &Signer,
    report: &Report,
    report_bytes: &[u8],
    subject: &ReportSubject,
    approval: Option<&VerifiedProfile>,
    now: u64,
) -> Result<Digest, DataError> {
    if let (Some(a), Some(_)) = (approval, &report.approved_by) {
        let rec = store.put(
            a.text.as_bytes(),
            ArtifactKind::SanitizerProfile,
            &PutOptions {
                name: format!("sanitizer-profile/{}", report.profile),
                ..PutOptions::default()
            },
            now,
        )?;
        if rec.digest.to_string() != a.approval.profile_digest {
            return Err(DataError::Approval {
                profile: report.profile_source.clone(),
                message: format!(
                    "stored profile is {}, the approval is for {}",
                    rec.digest, a.approval.profile_digest
                ),
            });
        }
        store.attach(&rec.digest, &a.envelope)?;
    }
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
            "profile_digest": report.profile_digest,
            "profile_authority": report.profile_authority,
            "approved_by": report.approved_by,
            "source_classification": report.source_classification,
            "key_id": report.key_id,
            "earned": report.earned,
            "output_classification": report.output_classification,
            "reasons": report.reasons,
        }),
        now,
    )?;
    Ok(rec.digest)
}

/// A classification in the profile notation, `level/tag,tag`.
#[must_use]
pub fn notation(c: &ClassificationNames) -> String {
    if c.tags.is_empty() {
        c.level.clone()
    } else {
        format!("{}/{}", c.level, c.tags.join(","))
    }
}

/// Whether a profile may take `tag` off: it names it in `lifts`, and the tag is none that always
/// carries over (export control, `contractual:*`, `ip`, or any tag the scheme keeps in its
/// jurisdiction).
fn liftable(tag: &str, lifts: &[String], scheme: &Scheme) -> bool {
    lifts.iter().any(|l| l == tag)
        && !never_liftable(tag)
        && !scheme
            .tags
            .iter()
            .any(|t| t.name == tag && t.stays_in_jurisdiction)
}

/// The earned classification: the profile's output level and tags (`text`, profile notation),
/// plus every tag of `source` the profile does not lift, keeping `source`'s residency and
/// retention (de-identification does not lift a residency or retention obligation).
fn earned_names(
    text: &str,
    lifts: &[String],
    source: &ClassificationNames,
    scheme: &Scheme,
) -> ClassificationNames {
    let (level, own) = tidegate_sanitize::profile::parse_classification(text);
    let mut tags: Vec<String> = own.into_iter().collect();
    for t in &source.tags {
        if !liftable(t, lifts, scheme) && !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    ClassificationNames {
        level,
        tags,
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
    /// The profile's verified approval (see [`crate::approval::approval_for`]); `None` for a
    /// built-in profile, and a profile file without one earns nothing.
    pub approval: Option<&'a VerifiedProfile>,
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
        approval,
        name,
        version,
    } = *d;
    // The profile must be written for what the registry says the source's content is (the
    // strictest of every registration of its bytes).
    let source_class = ClassificationNames::of(
        &registry.content_classification(source, &fleet.scheme, &store.evidence_entries()?)?,
        &fleet.scheme,
    );
    let mut opts = Options::new(key).with_source(notation(&source_class));
    if let Some(a) = approval {
        opts = opts.with_approval(a.approval.clone());
    }
    let report = tidegate_sanitize::sanitize(profile, input, output, &opts)?;
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
    let digest = record_report(
        store,
        signer,
        &report,
        &report_bytes,
        &subject,
        approval,
        now,
    )?;
    let classification = if report.earned {
        earned_names(
            &report.output_classification,
            &profile.lifts,
            &source_class,
            &fleet.scheme,
        )
    } else {
        source_class
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
        let scheme = Scheme::default();
        let lifts = vec!["phi".to_owned()];
        let e = earned_names("confidential/deidentified", &lifts, &src, &scheme);
        assert_eq!(e.level, "confidential");
        assert_eq!(e.tags, vec!["deidentified".to_owned()]);
        assert_eq!(e.residency, src.residency);
        assert_eq!(e.retention, src.retention);
        assert!(earned_names("internal", &lifts, &src, &scheme)
            .tags
            .is_empty());
    }

    #[test]
    fn only_named_tags_are_lifted_and_some_never_are() {
        let src = ClassificationNames {
            level: "restricted".into(),
            tags: vec![
                "phi".into(),
                "pii".into(),
                "export-controlled".into(),
                "contractual:acme".into(),
                "ip".into(),
            ],
            residency: Some(vec!["US".into()]),
            retention: Some("regulated".into()),
        };
        let scheme = Scheme::default();
        // Lifting nothing keeps every tag.
        let none = earned_names("confidential/deidentified", &[], &src, &scheme);
        assert_eq!(
            none.tags,
            [
                "deidentified",
                "phi",
                "pii",
                "export-controlled",
                "contractual:acme",
                "ip"
            ]
        );
        // Even a profile naming them (one built in memory, bypassing validation) cannot lift
        // export control, contractual tags or IP.
        let all: Vec<String> = src.tags.clone();
        let e = earned_names("confidential/deidentified", &all, &src, &scheme);
        assert_eq!(
            e.tags,
            [
                "deidentified",
                "export-controlled",
                "contractual:acme",
                "ip"
            ]
        );
        assert_eq!(
            (e.residency, e.retention),
            (src.residency.clone(), src.retention.clone())
        );
    }
}
