//! Evidence events: every effect on the store is recorded *before* it happens, through an
//! [`EventSink`]. The default sink appends JSON lines to `<data-dir>/artifacts/events.jsonl`;
//! the evidence ledger plugs in behind the same trait. Events carry identifiers and digests,
//! never content. If the sink cannot record, the operation is refused.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::atomic::{append_line, read_lines};
use crate::{ArtifactError, Digest};

/// One effect on the artifact store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ArtifactEvent {
    /// An object is about to be stored.
    Put {
        /// The artifact.
        digest: Digest,
        /// Its kind.
        kind: String,
        /// Its classification (`LEVEL` or `LEVEL/TAG+TAG`), when it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        classification: Option<String>,
        /// Its lane.
        #[serde(default)]
        lane: String,
        /// Whether it derives from sensitive data.
        #[serde(default)]
        sensitive: bool,
        /// When (Unix seconds).
        at: u64,
    },
    /// An envelope is about to be attached.
    Attest {
        /// The artifact.
        digest: Digest,
        /// Digest of the envelope JSON.
        envelope: Digest,
        /// Predicate type of the statement.
        predicate_type: String,
        /// Key ids of the envelope's signatures.
        #[serde(default)]
        keyids: Vec<String>,
        /// For provenance: the job that built the artifact.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job: Option<String>,
        /// For provenance: its inputs' resource names (`dataset:name@version`, ...).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        inputs: Vec<String>,
    },
    /// A stage change is about to be recorded.
    Promote {
        /// The artifact.
        digest: Digest,
        /// From stage.
        from: String,
        /// To stage.
        to: String,
        /// Who asked.
        actor: String,
        /// Hash of the deciding policy.
        policy_hash: Digest,
        /// When (Unix seconds).
        at: u64,
    },
    /// A promotion was refused (recorded as evidence too).
    PromotionRefused {
        /// The artifact.
        digest: Digest,
        /// Target stage.
        to: String,
        /// Missing evidence, named.
        reasons: Vec<String>,
        /// One short identifier per reason (the forbidding policy's `@id`, or a fixed code).
        #[serde(default)]
        codes: Vec<String>,
        /// When (Unix seconds).
        at: u64,
    },
    /// A scoped token was used to read an artifact (recorded before the content is returned).
    TokenUse {
        /// The artifact.
        digest: Digest,
        /// The resource name the token was checked for (`checkpoint:sha256:...`).
        resource: String,
        /// Job id or user name of the token.
        subject: String,
        /// The job, when it is a job's token (its evidence bundle then holds the use).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job: Option<String>,
        /// Root key id that signed the token.
        key_id: u32,
        /// Revocation id of the token.
        revocation_id: String,
        /// Zone of the request.
        zone: String,
        /// When (Unix seconds).
        at: u64,
    },
    /// A token was refused for a read.
    TokenRefused {
        /// The artifact.
        digest: Digest,
        /// Zone of the request.
        zone: String,
        /// Why.
        reason: String,
        /// Why, as a short identifier (`token-expired`, `request-denied`, ...).
        #[serde(default)]
        code: String,
        /// The id the refused token carries (verified when the token was valid but not allowed
        /// there; only claimed when it did not verify); `None` when it does not even parse.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_id: Option<String>,
        /// When (Unix seconds).
        at: u64,
    },
    /// An object is about to be crypto-shredded.
    Shred {
        /// The artifact.
        digest: Digest,
    },
    /// A new promotion policy is about to take effect.
    PromotionPolicySet {
        /// SHA-256 of the policy text (kept as an evidence document).
        policy_hash: Digest,
        /// The approver who set it (a signing key id with the approver role).
        actor: String,
        /// When (Unix seconds).
        at: u64,
    },
    /// A dataset version is about to be registered.
    DatasetRegistered {
        /// `name@version`.
        dataset: String,
        /// Digest of its snapshot manifest.
        snapshot: Digest,
        /// Classification level name.
        level: String,
        /// Zone holding it.
        zone: String,
        /// The sanitizer report that earned its classification, when derived.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<Digest>,
        /// The version it was derived from (`name@version`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        derived_from: Option<String>,
        /// Owning team.
        #[serde(default)]
        owner: String,
        /// Legal tags of its classification.
        #[serde(default)]
        tags: Vec<String>,
        /// Jurisdictions it may be processed in; absent = unrestricted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        residency: Option<Vec<String>>,
        /// Retention class.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retention: Option<String>,
        /// When (Unix seconds).
        at: u64,
    },
    /// A dataset version (or a projection of it) is about to be copied into another zone.
    DatasetCopied {
        /// `name@version`.
        dataset: String,
        /// Source zone.
        from_zone: String,
        /// Destination zone.
        to_zone: String,
        /// `raw`, `sanitized` or `encrypted`.
        form: String,
        /// Digest of the bytes that move.
        content: Digest,
        /// How many bytes move.
        bytes: u64,
        /// The sanitizer report behind a sanitized copy.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<Digest>,
        /// When (Unix seconds).
        at: u64,
    },
    /// A released model is about to be deployed to an edge site.
    DeployedEdge {
        /// The artifact.
        digest: Digest,
        /// The edge site (zone).
        site: String,
        /// When (Unix seconds).
        at: u64,
    },
    /// A checkpoint is about to be archived in a zone's store.
    CheckpointArchived {
        /// The checkpoint.
        digest: Digest,
        /// Zone holding the archive.
        zone: String,
        /// When (Unix seconds).
        at: u64,
    },
}

/// Where evidence events go.
pub trait EventSink: Send + Sync {
    /// Records `event` durably; an error refuses the operation it describes.
    ///
    /// # Errors
    /// Any failure to record.
    fn record(&self, event: &ArtifactEvent) -> Result<(), ArtifactError>;

    /// Keeps a document the recorded events cite by digest (a signed statement, a report).
    /// Sinks without a document store keep nothing.
    ///
    /// # Errors
    /// Any failure to keep it.
    fn document(&self, _bytes: &[u8]) -> Result<(), ArtifactError> {
        Ok(())
    }

    /// What the evidence ledger this sink records into says about the store's artifacts (what
    /// artifact decisions are derived from); `None` for sinks that keep no ledger.
    fn ledger_history(&self) -> Option<Result<crate::history::History, ArtifactError>> {
        None
    }

    /// Every entry of the evidence ledger this sink records into, as canonical bytes checked
    /// against what the ledger signed (what decisions outside the store, such as the dataset
    /// registry's, are derived from); `None` for sinks that keep no ledger.
    fn ledger_entries(&self) -> Option<Result<Vec<Vec<u8>>, ArtifactError>> {
        None
    }
}

/// Appends events as JSON lines to a file, fsynced.
#[derive(Debug, Clone)]
pub struct JsonlSink {
    path: PathBuf,
}

impl JsonlSink {
    /// A sink appending to `path`.
    #[must_use]
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Every event recorded so far.
    ///
    /// # Errors
    /// I/O errors or [`ArtifactError::Invalid`] for a corrupt line.
    pub fn read_all(&self) -> Result<Vec<ArtifactEvent>, ArtifactError> {
        read_lines(&self.path)?
            .iter()
            .map(|l| {
                serde_json::from_str(l)
                    .map_err(|e| ArtifactError::Invalid(format!("{}: {e}", self.path.display())))
            })
            .collect()
    }
}

impl EventSink for JsonlSink {
    fn record(&self, event: &ArtifactEvent) -> Result<(), ArtifactError> {
        let line =
            serde_json::to_string(event).map_err(|e| ArtifactError::Invalid(e.to_string()))?;
        append_line(&self.path, &line)
    }
}
