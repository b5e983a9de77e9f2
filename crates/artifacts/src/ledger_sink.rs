//! The artifact store's evidence sink backed by the evidence ledger: each [`ArtifactEvent`] is
//! mapped to a ledger entry (identifiers, digests and codes only) and appended durably before
//! the effect; the JSON-lines file `artifacts/events.jsonl` is then written too, as before. If
//! the ledger cannot record, the operation is refused.

use std::path::Path;
use std::sync::Arc;

use tidegate_ledger::entry::{EntryError, MAX_LIST, MAX_SUBJECTS};
use tidegate_ledger::{
    Action, AnyLedger, DataForm, Digest, EntryDraft, Ident, Ledger, Subject, SubjectKind,
};

use crate::events::{ArtifactEvent, EventSink, JsonlSink};
use crate::{intoto, ArtifactError, ArtifactKind, ArtifactStore};

/// Something that appends ledger entries durably: a file ledger, either backend, or the control
/// plane's evidence handle (which reopens a stopped ledger).
pub trait EntryWriter: Send + Sync {
    /// Appends `draft` stamped `ts_ms`; returns once it is durable.
    ///
    /// # Errors
    /// Why the entry could not be written (the action it records is then refused).
    fn write_entry(&self, draft: EntryDraft, ts_ms: u64) -> Result<(), String>;

    /// Every durable entry, by index, as canonical bytes checked against what the ledger signed:
    /// what artifact decisions are derived from ([`crate::history`]).
    ///
    /// # Errors
    /// Why the ledger could not be read (the decision is then refused).
    fn read_entries(&self) -> Result<Vec<Vec<u8>>, String>;
}

impl EntryWriter for Ledger {
    fn write_entry(&self, draft: EntryDraft, ts_ms: u64) -> Result<(), String> {
        self.append(draft, ts_ms)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn read_entries(&self) -> Result<Vec<Vec<u8>>, String> {
        self.sealed_entries().map_err(|e| e.to_string())
    }
}

impl EntryWriter for AnyLedger {
    fn write_entry(&self, draft: EntryDraft, ts_ms: u64) -> Result<(), String> {
        self.append(draft, ts_ms)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn read_entries(&self) -> Result<Vec<Vec<u8>>, String> {
        self.entries()
    }
}

/// The actor of entries with no person behind them (stores, refusals).
pub const ACTOR: &str = "tidegate-artifacts";
/// Prefix of tidegate's own attestation predicate types.
const ATTESTATION_PREFIX: &str = "https://tidegate.dev/attestations/";

/// Appends artifact events to the evidence ledger, then to the JSON-lines file.
pub struct LedgerSink {
    ledger: Arc<dyn EntryWriter>,
    lookup: ArtifactStore,
    jsonl: JsonlSink,
    ts_ms: u64,
    zone: Option<Ident>,
    documents: std::path::PathBuf,
}

impl LedgerSink {
    /// A sink for the store in `data_dir` writing to `ledger`; entries are stamped `now` (Unix
    /// seconds, the command's clock).
    ///
    /// # Errors
    /// When the store cannot be opened for looking artifact kinds up.
    pub fn new(
        data_dir: &Path,
        ledger: Arc<dyn EntryWriter>,
        now: u64,
    ) -> Result<Self, ArtifactError> {
        Ok(Self {
            ledger,
            lookup: ArtifactStore::open(data_dir)?,
            jsonl: JsonlSink::new(
                tidegate_vocab::DataDir::new(data_dir)
                    .artifacts()
                    .join("events.jsonl"),
            ),
            ts_ms: now.saturating_mul(1000),
            zone: None,
            documents: data_dir.to_path_buf(),
        })
    }

    /// Documents go to the evidence documents of `data_dir` (the ledger's data directory, when
    /// this store is a zone's store inside it); the default is the store's own directory.
    #[must_use]
    pub fn documents_in(mut self, data_dir: &Path) -> Self {
        self.documents = data_dir.to_path_buf();
        self
    }

    /// Every entry also names `zone` (the zone whose store this is), so that an entry about an
    /// object says where the object was.
    ///
    /// # Errors
    /// When `zone` is not an identifier.
    pub fn in_zone(mut self, zone: &str) -> Result<Self, ArtifactError> {
        self.zone = Some(
            Ident::new(zone).map_err(|e| ArtifactError::Invalid(format!("zone {zone:?}: {e}")))?,
        );
        Ok(self)
    }
}

impl EventSink for LedgerSink {
    fn record(&self, event: &ArtifactEvent) -> Result<(), ArtifactError> {
        let digest = event_digest(event);
        let kind = match event {
            ArtifactEvent::Put { kind, .. } => kind.parse().ok(),
            _ => self.lookup.record(digest).ok().map(|r| r.kind),
        };
        let mut draft =
            entry_for(event, kind).map_err(|e| ArtifactError::Evidence(e.to_string()))?;
        if let Some(zone) = &self.zone {
            let named = Subject {
                kind: SubjectKind::Zone,
                id: zone.clone(),
            };
            if !draft.subjects.contains(&named) && draft.subjects.len() < MAX_SUBJECTS {
                draft.subjects.push(named);
            }
        }
        self.ledger.write_entry(draft, self.ts_ms).map_err(|e| {
            ArtifactError::Evidence(format!("the evidence ledger refused the entry: {e}"))
        })?;
        self.jsonl.record(event)
    }

    fn ledger_entries(&self) -> Option<Result<Vec<Vec<u8>>, ArtifactError>> {
        Some(self.ledger.read_entries().map_err(|e| {
            ArtifactError::Evidence(format!("the evidence ledger could not be read: {e}"))
        }))
    }

    fn ledger_history(&self) -> Option<Result<crate::history::History, ArtifactError>> {
        Some(
            self.ledger
                .read_entries()
                .map_err(|e| {
                    ArtifactError::Evidence(format!("the evidence ledger could not be read: {e}"))
                })
                .and_then(|entries| {
                    crate::history::History::from_entries(
                        &entries,
                        self.zone.as_ref().map(Ident::as_str),
                    )
                }),
        )
    }

    fn document(&self, bytes: &[u8]) -> Result<(), ArtifactError> {
        tidegate_ledger::ledger::put_document(&self.documents, bytes)
            .map(|_| ())
            .map_err(|e| ArtifactError::io(&self.documents, e))
    }
}

fn event_digest(event: &ArtifactEvent) -> &crate::Digest {
    match event {
        ArtifactEvent::Put { digest, .. }
        | ArtifactEvent::Attest { digest, .. }
        | ArtifactEvent::Promote { digest, .. }
        | ArtifactEvent::PromotionRefused { digest, .. }
        | ArtifactEvent::TokenUse { digest, .. }
        | ArtifactEvent::TokenRefused { digest, .. }
        | ArtifactEvent::Shred { digest }
        | ArtifactEvent::DeployedEdge { digest, .. }
        | ArtifactEvent::CheckpointArchived { digest, .. } => digest,
        ArtifactEvent::PromotionPolicySet { policy_hash, .. } => policy_hash,
        ArtifactEvent::DatasetRegistered { snapshot, .. } => snapshot,
        ArtifactEvent::DatasetCopied { content, .. } => content,
    }
}

fn ident_or(s: &str, fallback: &'static str) -> Result<Ident, EntryError> {
    Ident::new(s).or_else(|_| Ident::new(fallback))
}

/// The subject an artifact is recorded under: a model or checkpoint by its kind, anything else
/// (or an unknown kind) as an artifact; the id is the digest.
fn artifact_subject(digest: &Digest, kind: Option<ArtifactKind>) -> Result<Subject, EntryError> {
    let k = match kind {
        Some(ArtifactKind::Model) => SubjectKind::Model,
        Some(ArtifactKind::Checkpoint) => SubjectKind::Checkpoint,
        _ => SubjectKind::Artifact,
    };
    Subject::new(k, digest.as_str())
}

/// A short code for a predicate type: tidegate attestations by name (`security-review`),
/// other types as written when they are identifiers, else `other-predicate`.
fn predicate_code(predicate_type: &str) -> Result<Ident, EntryError> {
    let short = predicate_type
        .strip_prefix(ATTESTATION_PREFIX)
        .map(|rest| rest.strip_suffix("/v1").unwrap_or(rest))
        .unwrap_or(predicate_type);
    ident_or(short, "other-predicate")
}

/// The ledger entry for an artifact event. Free text in the event (refusal messages, predicate
/// URIs, names) never reaches the entry: it is replaced by codes, and a value that is not an
/// identifier becomes a fixed code. An actor that is not an identifier is an error: who acted
/// is not replaced.
///
/// # Errors
/// When a digest or the actor cannot be recorded.
pub fn entry_for(
    event: &ArtifactEvent,
    kind: Option<ArtifactKind>,
) -> Result<EntryDraft, EntryError> {
    let artifact = event_digest(event).clone();
    let subject = artifact_subject(&artifact, kind)?;
    let service = Ident::new(ACTOR)?;
    let (actor, action, mut subjects) = match event {
        ArtifactEvent::Put {
            kind: k,
            classification,
            lane,
            sensitive,
            ..
        } => (
            service,
            Action::ArtifactStored {
                artifact,
                kind: ident_or(k, "unknown-kind")?,
                classification: classification.as_deref().map(Ident::new).transpose()?,
                lane: Ident::new(lane.as_str())?,
                sensitive: *sensitive,
            },
            vec![subject],
        ),
        ArtifactEvent::Attest {
            envelope,
            predicate_type,
            keyids,
            job,
            inputs,
            ..
        } => {
            let envelope = envelope.clone();
            let key_id = keyids.first().map_or_else(
                || Ident::new("unsigned"),
                |k| ident_or(k, "unrecognised-key"),
            )?;
            let action = if predicate_type == intoto::SLSA_PROVENANCE_V1 {
                Action::ArtifactSigned {
                    artifact,
                    key_id: key_id.clone(),
                    signature: envelope,
                }
            } else {
                Action::ArtifactAttested {
                    artifact,
                    envelope,
                    predicate: predicate_code(predicate_type)?,
                    key_id: key_id.clone(),
                }
            };
            let mut subjects = vec![subject];
            // The builder job and the dataset versions it read, when they are identifiers.
            if let Some(job) = job.as_deref().and_then(|j| Ident::new(j).ok()) {
                subjects.push(Subject {
                    kind: SubjectKind::Job,
                    id: job,
                });
            }
            for uri in inputs.iter().take(MAX_SUBJECTS.saturating_sub(3)) {
                if let Some(ds) = uri
                    .strip_prefix("dataset:")
                    .and_then(|d| Ident::new(d).ok())
                {
                    subjects.push(Subject {
                        kind: SubjectKind::Dataset,
                        id: ds,
                    });
                }
            }
            (key_id, action, subjects)
        }
        ArtifactEvent::PromotionPolicySet {
            policy_hash, actor, ..
        } => (
            Ident::new(actor.as_str())?,
            Action::PolicyLoaded {
                policy_hash: policy_hash.clone(),
            },
            vec![Subject::new(
                SubjectKind::Policy,
                crate::history::PROMOTION_POLICY_SUBJECT,
            )?],
        ),
        ArtifactEvent::Promote {
            from,
            to,
            actor,
            policy_hash,
            ..
        } => (
            Ident::new(actor.as_str())?,
            Action::ArtifactPromoted {
                artifact,
                from_stage: ident_or(from, "unknown-stage")?,
                to_stage: ident_or(to, "unknown-stage")?,
                policy_hash: policy_hash.clone(),
            },
            vec![subject],
        ),
        ArtifactEvent::PromotionRefused {
            to, reasons, codes, ..
        } => {
            let mut out = Vec::new();
            for code in codes.iter().take(MAX_LIST) {
                out.push(ident_or(code, "unrecognised-reason")?);
            }
            if codes.is_empty() && !reasons.is_empty() {
                out.push(Ident::new("unrecorded-reason")?);
            }
            (
                service,
                Action::ArtifactPromotionRefused {
                    artifact,
                    to_stage: ident_or(to, "unknown-stage")?,
                    reasons: out,
                },
                vec![subject],
            )
        }
        ArtifactEvent::TokenUse {
            subject: holder,
            revocation_id,
            zone,
            job,
            ..
        } => {
            let token_id = ident_or(revocation_id, "unknown-token")?;
            let zone = ident_or(zone, "unrecognised-zone")?;
            let mut subjects = vec![
                subject,
                Subject {
                    kind: SubjectKind::Token,
                    id: token_id.clone(),
                },
                Subject {
                    kind: SubjectKind::Zone,
                    id: zone.clone(),
                },
            ];
            // A job's token use is about the job too: `evidence job J` carries it.
            if let Some(j) = job.as_deref().and_then(|j| Ident::new(j).ok()) {
                subjects.push(Subject {
                    kind: SubjectKind::Job,
                    id: j,
                });
            }
            (
                ident_or(holder, "token-holder")?,
                Action::TokenUsed {
                    token_id,
                    resource: artifact,
                    zone,
                },
                subjects,
            )
        }
        ArtifactEvent::TokenRefused {
            zone,
            code,
            token_id,
            ..
        } => {
            let zone = ident_or(zone, "unrecognised-zone")?;
            // A token id that is no identifier (a forged one) is left unnamed, never cut.
            let token_id = token_id.as_deref().and_then(|t| Ident::new(t).ok());
            let mut subjects = vec![
                subject,
                Subject {
                    kind: SubjectKind::Zone,
                    id: zone.clone(),
                },
            ];
            if let Some(t) = &token_id {
                subjects.push(Subject {
                    kind: SubjectKind::Token,
                    id: t.clone(),
                });
            }
            (
                service,
                Action::TokenRefused {
                    resource: artifact,
                    zone,
                    reason: ident_or(code, "token-refused")?,
                    token_id,
                },
                subjects,
            )
        }
        // A checkpoint destroyed by crypto-shredding is recorded as what it is.
        ArtifactEvent::Shred { .. } if kind == Some(ArtifactKind::Checkpoint) => (
            service,
            Action::CheckpointDestroyed {
                checkpoint: artifact,
                method: Ident::new("crypto-shred")?,
            },
            vec![subject],
        ),
        ArtifactEvent::Shred { .. } => (
            service,
            Action::ArtifactShredded { artifact },
            vec![subject],
        ),
        ArtifactEvent::DeployedEdge { site, .. } => {
            let site = Ident::new(site.as_str())?;
            let subjects = vec![
                subject,
                Subject {
                    kind: SubjectKind::Zone,
                    id: site.clone(),
                },
            ];
            (
                service,
                Action::ArtifactDeployedEdge { artifact, site },
                subjects,
            )
        }
        ArtifactEvent::CheckpointArchived { zone, .. } => {
            let zone = Ident::new(zone.as_str())?;
            let subjects = vec![
                Subject::new(SubjectKind::Checkpoint, artifact.as_str())?,
                Subject {
                    kind: SubjectKind::Zone,
                    id: zone.clone(),
                },
            ];
            (
                service,
                Action::CheckpointArchived {
                    checkpoint: artifact,
                    zone,
                },
                subjects,
            )
        }
        ArtifactEvent::DatasetRegistered {
            dataset,
            level,
            zone,
            report,
            derived_from,
            owner,
            tags,
            residency,
            retention,
            ..
        } => {
            let version = Ident::new(dataset.as_str())?;
            let zone = Ident::new(zone.as_str())?;
            let report = report.clone();
            let mut subjects = vec![
                Subject {
                    kind: SubjectKind::Dataset,
                    id: version.clone(),
                },
                Subject {
                    kind: SubjectKind::Zone,
                    id: zone.clone(),
                },
            ];
            // Every attribute a decision reads is recorded; one that is not an identifier
            // refuses the registration rather than being left out.
            let derived_from = derived_from.as_deref().map(Ident::new).transpose()?;
            if let Some(from) = &derived_from {
                subjects.push(Subject {
                    kind: SubjectKind::Dataset,
                    id: from.clone(),
                });
            }
            let idents = |v: &[String]| {
                v.iter()
                    .map(|t| Ident::new(t.as_str()))
                    .collect::<Result<Vec<_>, _>>()
            };
            let action = Action::DatasetRegistered {
                version,
                snapshot: artifact,
                level: Ident::new(level.as_str())?,
                zone,
                report,
                owner: Some(Ident::new(owner.as_str())?),
                tags: Some(idents(tags)?),
                residency: residency.as_deref().map(idents).transpose()?,
                retention: retention.as_deref().map(Ident::new).transpose()?,
                derived_from,
            };
            (service, action, subjects)
        }
        ArtifactEvent::DatasetCopied {
            dataset,
            from_zone,
            to_zone,
            form,
            bytes,
            report,
            ..
        } => {
            let version = Ident::new(dataset.as_str())?;
            let from_zone = Ident::new(from_zone.as_str())?;
            let to_zone = Ident::new(to_zone.as_str())?;
            let form = match form.as_str() {
                "raw" => DataForm::Raw,
                "sanitized" => DataForm::Sanitized,
                _ => DataForm::Encrypted,
            };
            let report = report.clone();
            let subjects = vec![
                Subject {
                    kind: SubjectKind::Dataset,
                    id: version.clone(),
                },
                Subject {
                    kind: SubjectKind::Zone,
                    id: from_zone.clone(),
                },
                Subject {
                    kind: SubjectKind::Zone,
                    id: to_zone.clone(),
                },
            ];
            (
                service,
                Action::DatasetCopied {
                    version,
                    from_zone,
                    to_zone,
                    form,
                    content: artifact,
                    bytes: *bytes,
                    report,
                },
                subjects,
            )
        }
    };
    subjects.dedup();
    EntryDraft::new(actor, action, subjects)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn d() -> crate::Digest {
        crate::Digest::of(b"weights")
    }

    #[test]
    fn shredding_a_checkpoint_is_recorded_as_its_destruction() {
        let e = ArtifactEvent::Shred { digest: d() };
        let text = String::from_utf8(
            entry_for(&e, Some(ArtifactKind::Checkpoint))
                .unwrap()
                .into_entry(0, 1)
                .encode()
                .unwrap(),
        )
        .unwrap();
        assert!(
            text.contains(r#""type":"checkpoint.destroyed""#)
                && text.contains(r#""method":"crypto-shred""#),
            "{text}"
        );
        let text = String::from_utf8(
            entry_for(&e, Some(ArtifactKind::Model))
                .unwrap()
                .into_entry(0, 1)
                .encode()
                .unwrap(),
        )
        .unwrap();
        assert!(text.contains(r#""type":"artifact.shredded""#), "{text}");
    }

    #[test]
    fn refusal_reasons_become_codes() {
        let e = ArtifactEvent::PromotionRefused {
            digest: d(),
            to: "approved".into(),
            reasons: vec!["missing evidence: data approval signed by Dr. Alice Smith".into()],
            codes: vec!["data-approval".into(), "free text, not a code".into()],
            at: 1,
        };
        let draft = entry_for(&e, Some(ArtifactKind::Model)).unwrap();
        let text = String::from_utf8(draft.into_entry(0, 1000).encode().unwrap()).unwrap();
        assert!(
            text.contains(r#""reasons":["data-approval","unrecognised-reason"]"#),
            "{text}"
        );
        assert!(text.contains(r#""kind":"model""#), "{text}");
        assert!(
            !text.contains("Alice") && !text.contains("free text"),
            "{text}"
        );
    }

    #[test]
    fn attestations_are_signed_or_attested_by_predicate() {
        let att = |p: &str| ArtifactEvent::Attest {
            digest: d(),
            envelope: crate::Digest::of(b"env"),
            predicate_type: p.into(),
            keyids: vec!["ed25519:0011223344556677".into()],
            job: None,
            inputs: Vec::new(),
        };
        let a = entry_for(&att(intoto::SLSA_PROVENANCE_V1), None).unwrap();
        assert_eq!(a.action.name(), "artifact.signed");
        assert_eq!(a.actor.as_str(), "ed25519:0011223344556677");
        let b = entry_for(
            &att("https://tidegate.dev/attestations/security-review/v1"),
            None,
        )
        .unwrap();
        assert!(
            matches!(&b.action, Action::ArtifactAttested { predicate, .. } if predicate.as_str() == "security-review")
        );
        let c = entry_for(&att("a predicate with spaces"), None).unwrap();
        // Provenance links its builder job and dataset inputs as subjects.
        let mut p = att(intoto::SLSA_PROVENANCE_V1);
        if let ArtifactEvent::Attest { job, inputs, .. } = &mut p {
            *job = Some("job-42".into());
            *inputs = vec![
                "dataset:synthea@deid-1".into(),
                "artifact:not an ident".into(),
            ];
        }
        let linked = entry_for(&p, Some(ArtifactKind::Model)).unwrap();
        let kinds: Vec<_> = linked
            .subjects
            .iter()
            .map(|s| (s.kind, s.id.as_str().to_owned()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (SubjectKind::Model, d().to_string()),
                (SubjectKind::Job, "job-42".to_owned()),
                (SubjectKind::Dataset, "synthea@deid-1".to_owned()),
            ]
        );
        assert!(
            matches!(&c.action, Action::ArtifactAttested { predicate, .. } if predicate.as_str() == "other-predicate")
        );
    }

    #[test]
    fn a_job_token_use_is_about_the_job() {
        let e = ArtifactEvent::TokenUse {
            digest: d(),
            resource: "checkpoint:x".into(),
            subject: "finetune-2".into(),
            job: Some("finetune-2".into()),
            key_id: 1,
            revocation_id: "rev-1".into(),
            zone: "onprem-a".into(),
            at: 1,
        };
        let draft = entry_for(&e, Some(ArtifactKind::Checkpoint)).unwrap();
        assert!(draft
            .subjects
            .iter()
            .any(|s| s.kind == SubjectKind::Job && s.id.as_str() == "finetune-2"));
    }

    #[test]
    fn token_refusals_carry_codes_and_promotions_need_an_identifier_actor() {
        let e = ArtifactEvent::TokenRefused {
            digest: d(),
            zone: "us public".into(),
            reason: "token expired: valid until 5".into(),
            code: "token-expired".into(),
            token_id: Some("0a1b2c".into()),
            at: 1,
        };
        let draft = entry_for(&e, Some(ArtifactKind::Checkpoint)).unwrap();
        // The refused token is named, as a subject too (so its evidence bundle holds it).
        assert!(
            matches!(&draft.action, Action::TokenRefused { token_id: Some(t), .. } if t.as_str() == "0a1b2c")
        );
        assert!(draft
            .subjects
            .iter()
            .any(|s| s.kind == SubjectKind::Token && s.id.as_str() == "0a1b2c"));
        assert!(
            matches!(&draft.action, Action::TokenRefused { zone, reason, .. }
            if zone.as_str() == "unrecognised-zone" && reason.as_str() == "token-expired")
        );
        assert_eq!(draft.subjects[0].kind, SubjectKind::Checkpoint);
        let p = ArtifactEvent::Promote {
            digest: d(),
            from: "candidate".into(),
            to: "validated".into(),
            actor: "Alice Smith".into(),
            policy_hash: d(),
            at: 1,
        };
        assert!(entry_for(&p, None).is_err());
    }
}
