//! Ledger entries: what happened, to which subjects, by whom, when; identifiers and digests only.
//!
//! Every field of an entry is either a short identifier ([`Ident`]: 1–128 characters from
//! `A-Z a-z 0-9 . _ : @ / + -`, starting with a letter or digit), a digest ([`Digest`]:
//! `sha256:` + 64 lowercase hex), an enum value, or an integer. There is no free-text field: a
//! business justification, a policy text or a sanitizer report is recorded by its digest, and the
//! document itself travels separately (for instance attached to an evidence bundle). This is how
//! the ledger never holds data content: names, addresses and notes cannot be expressed in it.
//!
//! The encoding of an entry (the bytes that are hashed into the Merkle tree) is its RFC 8785
//! canonical JSON; [`Entry::decode`] accepts only bytes that re-encode to themselves.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::canonical::{self, MAX_SAFE_INTEGER};

/// Longest identifier accepted.
pub const MAX_IDENT_LEN: usize = 128;
/// Most subjects one entry may name.
pub const MAX_SUBJECTS: usize = 16;
/// Most items in any list field of an action (reasons, scopes).
pub const MAX_LIST: usize = 32;
/// Version of the entry schema written into every entry.
pub const ENTRY_VERSION: u8 = 1;

/// Why a value is not acceptable in an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// An identifier that breaks the charset or length rule.
    #[error(
        "invalid identifier ({len} chars): {why}; ledger fields hold identifiers, not content"
    )]
    Ident {
        /// Length of the rejected value (the value itself is not echoed: it may be sensitive).
        len: usize,
        /// Which rule it broke.
        why: &'static str,
    },
    /// A digest that is not `sha256:` + 64 lowercase hex characters.
    #[error("invalid digest: expected `sha256:` followed by 64 lowercase hex characters")]
    Digest,
    /// A list field that is too long.
    #[error("too many items in `{field}`: {got} (at most {max})")]
    TooMany {
        /// The field.
        field: &'static str,
        /// Items given.
        got: usize,
        /// Items allowed.
        max: usize,
    },
    /// An integer outside the canonical range.
    #[error("`{field}` is larger than 2^53 - 1")]
    Integer {
        /// The field.
        field: &'static str,
    },
    /// The bytes are not a valid entry.
    #[error("not a valid entry: {0}")]
    Malformed(String),
    /// The bytes are a valid entry but not in canonical form.
    #[error("entry bytes are not in RFC 8785 canonical form")]
    NotCanonical,
}

pub(crate) fn ident_rule(s: &str) -> Result<(), &'static str> {
    ident_rule_bytes(s.as_bytes())
}

/// Whether `c` may appear in an identifier.
#[inline]
pub(crate) const fn ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'@' | b'/' | b'+' | b'-')
}

/// The identifier rule over UTF-8 bytes (any non-ASCII character has only non-ASCII bytes, none
/// of which is allowed, so this equals the rule over characters).
#[inline]
pub(crate) fn ident_rule_bytes(s: &[u8]) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    if s.len() > MAX_IDENT_LEN {
        return Err("longer than 128 characters");
    }
    if !s.iter().all(|&c| ident_byte(c)) {
        return Err("contains characters outside A-Z a-z 0-9 . _ : @ / + -");
    }
    if !s[0].is_ascii_alphanumeric() {
        return Err("must start with a letter or digit");
    }
    if looks_like_ssn(s) {
        return Err("shaped like a US social security number");
    }
    Ok(())
}

/// Defence in depth: an identifier that contains `ddd-dd-dddd` is refused.
#[inline]
pub(crate) fn looks_like_ssn(b: &[u8]) -> bool {
    b.len() >= 11
        && b.windows(11).any(|w| {
            w.iter().enumerate().all(|(i, c)| {
                if i == 3 || i == 6 {
                    *c == b'-'
                } else {
                    c.is_ascii_digit()
                }
            })
        })
}

/// A short identifier (job id, zone, actor, reason code...). See the module docs for the rule.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ident(String);

impl Ident {
    /// Validate and wrap an identifier.
    ///
    /// # Errors
    /// [`EntryError::Ident`] when the value breaks the charset or length rule.
    pub fn new(s: impl Into<String>) -> Result<Self, EntryError> {
        let s = s.into();
        ident_rule(&s).map_err(|why| EntryError::Ident {
            len: s.chars().count(),
            why,
        })?;
        Ok(Self(s))
    }

    /// The identifier text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Ident {
    type Error = EntryError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<Ident> for String {
    fn from(i: Ident) -> Self {
        i.0
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

pub use tidegate_vocab::Digest;

impl From<tidegate_vocab::DigestError> for EntryError {
    fn from(_: tidegate_vocab::DigestError) -> Self {
        EntryError::Digest
    }
}

/// What kind of thing a subject id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// A job.
    Job,
    /// A registered dataset (or one version of it).
    Dataset,
    /// A model.
    Model,
    /// A content-addressed artifact.
    Artifact,
    /// A training checkpoint.
    Checkpoint,
    /// A scoped credential.
    Token,
    /// A policy set.
    Policy,
    /// A fleet description.
    Fleet,
    /// A zone.
    Zone,
}

impl SubjectKind {
    /// The lower-case name used in the encoding.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Job => "job",
            Self::Dataset => "dataset",
            Self::Model => "model",
            Self::Artifact => "artifact",
            Self::Checkpoint => "checkpoint",
            Self::Token => "token",
            Self::Policy => "policy",
            Self::Fleet => "fleet",
            Self::Zone => "zone",
        }
    }
}

/// A subject an entry is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Subject {
    /// The identifier.
    pub id: Ident,
    /// What it identifies.
    pub kind: SubjectKind,
}

impl Subject {
    /// A subject of `kind` with identifier `id`.
    ///
    /// # Errors
    /// When `id` is not a valid identifier.
    pub fn new(kind: SubjectKind, id: impl Into<String>) -> Result<Self, EntryError> {
        Ok(Self {
            kind,
            id: Ident::new(id)?,
        })
    }
}

/// Outcome of a placement decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Allowed and placed.
    Allowed,
    /// Held in a queue.
    Queued,
    /// Refused.
    Refused,
}

/// In what form data crossed a boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataForm {
    /// The registered dataset version as is.
    Raw,
    /// A sanitized derivative with a passing report.
    Sanitized,
    /// Encrypted at rest and in transit; only the key holder can read it.
    Encrypted,
}

/// Kinds of stored objects, each with its own retention rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// Raw data copied into a zone.
    RawData,
    /// Derived features and sanitized datasets.
    Features,
    /// Training checkpoints.
    Checkpoints,
    /// Job and system logs.
    Logs,
    /// Embeddings computed from data.
    Embeddings,
    /// Inference request/response traces.
    InferenceTraces,
}

impl ObjectKind {
    /// Every kind, in a fixed order.
    pub const ALL: [Self; 6] = [
        Self::RawData,
        Self::Features,
        Self::Checkpoints,
        Self::Logs,
        Self::Embeddings,
        Self::InferenceTraces,
    ];

    /// The snake_case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RawData => "raw_data",
            Self::Features => "features",
            Self::Checkpoints => "checkpoints",
            Self::Logs => "logs",
            Self::Embeddings => "embeddings",
            Self::InferenceTraces => "inference_traces",
        }
    }
}

/// The action an entry records. The `type` field names it (`job.placed`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Action {
    /// A job spec was submitted.
    #[serde(rename = "job.submitted")]
    JobSubmitted {
        /// Digest of the job spec as submitted.
        spec: Digest,
    },
    /// A person approved a job (the approver is the entry's actor).
    #[serde(rename = "job.approved")]
    JobApproved {
        /// What the approval covers (e.g. `run`, `burst`, `export`).
        scope: Ident,
    },
    /// The placement decision for a job.
    #[serde(rename = "job.placed")]
    JobPlaced {
        /// The verdict.
        decision: Decision,
        /// Zone chosen (or considered, when refused).
        zone: Ident,
        /// Pool chosen.
        pool: Ident,
        /// Reason codes from the policy evaluation (policy ids, rule names).
        reasons: Vec<Ident>,
        /// Digest of the policy set that decided.
        policy_hash: Digest,
    },
    /// A placement no longer holds under the fleet, datasets and policy in force (data
    /// reclassified, a policy changed): the run at that zone and pool is not started, or is
    /// stopped, and the job is placed again.
    #[serde(rename = "job.revoked")]
    JobRevoked {
        /// Zone the run was placed in.
        zone: Ident,
        /// Pool the run was placed in.
        pool: Ident,
        /// The run (the executor-side id, `JOB` or `JOB.N`).
        run: Ident,
        /// Rule codes that refuse it now (policy ids, `constraint:*`).
        reasons: Vec<Ident>,
        /// Digest of the policy set that refused it.
        policy_hash: Digest,
    },
    /// A job was admitted to a pool: the exact zone, pool and run that will start, and the policy
    /// set that allowed it there (written before the run is launched).
    #[serde(rename = "job.admitted")]
    JobAdmitted {
        /// Zone admitted to.
        zone: Ident,
        /// Pool admitted to.
        pool: Ident,
        /// The run (the executor-side id, `JOB` or `JOB.N`).
        run: Ident,
        /// Digest of the policy set in force that allowed this zone and pool.
        policy_hash: Digest,
    },
    /// Something happened to a run: `started`, `exited-<code>`, `killed-by-signal-<n>`,
    /// `timed-out`, `cancelled`, `preempted`, `failed-over`, `released`, `lost` (written before the
    /// control plane acts on it).
    #[serde(rename = "job.run")]
    JobRun {
        /// Zone of the run.
        zone: Ident,
        /// Pool of the run.
        pool: Ident,
        /// The run.
        run: Ident,
        /// What happened.
        event: Ident,
    },
    /// A signing, approver or token root key was created, rotated in, trusted or revoked, or a
    /// token was revoked (written before the change can be used, or the new key is withdrawn).
    #[serde(rename = "key.changed")]
    KeyChanged {
        /// The key (or token revocation id) changed.
        key_id: Ident,
        /// What changed: `created-builder`, `created-approver`, `rotated-in`, `trusted`,
        /// `revoked`, `token-root-rotated-in`, `token-root-revoked`, `token-revoked`.
        change: Ident,
        /// Digest of the signing keyring as the change leaves it (the keyring kept as a
        /// document): verification refuses a keyring file that differs from the newest one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keyring: Option<Digest>,
    },
    /// A promoted artifact was deployed (a serving deployment, not an edge site).
    #[serde(rename = "artifact.deployed")]
    ArtifactDeployed {
        /// The artifact.
        artifact: Digest,
        /// The deployment's name.
        deployment: Ident,
    },
    /// A job burst to a public pool.
    #[serde(rename = "job.burst")]
    JobBurst {
        /// Zone burst into.
        zone: Ident,
        /// Pool burst into.
        pool: Ident,
        /// Digest of the business justification document.
        justification: Digest,
    },
    /// A dataset version was copied into a zone.
    #[serde(rename = "dataset.copied")]
    DatasetCopied {
        /// Dataset version identifier.
        version: Ident,
        /// Source zone.
        from_zone: Ident,
        /// Destination zone.
        to_zone: Ident,
        /// Form of the copy.
        form: DataForm,
        /// Digest of the bytes that moved.
        content: Digest,
        /// How many bytes moved.
        bytes: u64,
        /// Digest of the sanitizer report, when sanitized.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<Digest>,
    },
    /// A dataset version was registered (its content-addressed snapshot, classification and home).
    #[serde(rename = "dataset.registered")]
    DatasetRegistered {
        /// Dataset version identifier (`name@version`).
        version: Ident,
        /// Digest of the snapshot manifest (which names every table file by digest).
        snapshot: Digest,
        /// Classification level it was registered at.
        level: Ident,
        /// Zone holding it.
        zone: Ident,
        /// Digest of the sanitizer report that earned its classification, when derived.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<Digest>,
        /// Owning team. Every registration records it; an entry without one was written before
        /// the full registration was recorded, and vouches only for snapshot, level and zone.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<Ident>,
        /// Legal tags of its classification (recorded with `owner`; empty when none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tags: Option<Vec<Ident>>,
        /// Jurisdictions it may be processed in; absent (with `owner` recorded) = unrestricted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        residency: Option<Vec<Ident>>,
        /// Retention class; absent (with `owner` recorded) = none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retention: Option<Ident>,
        /// The version it was derived from (`name@version`), when derived.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        derived_from: Option<Ident>,
    },
    /// An artifact was signed.
    #[serde(rename = "artifact.signed")]
    ArtifactSigned {
        /// Artifact digest.
        artifact: Digest,
        /// Signing key id.
        key_id: Ident,
        /// Digest of the signature envelope.
        signature: Digest,
    },
    /// An artifact was promoted between stages.
    #[serde(rename = "artifact.promoted")]
    ArtifactPromoted {
        /// Artifact digest.
        artifact: Digest,
        /// Stage before.
        from_stage: Ident,
        /// Stage after.
        to_stage: Ident,
        /// Hash of the promotion policy that allowed it (its text is a ledger document).
        policy_hash: Digest,
    },
    /// An object was stored in the artifact store (encrypted, content-addressed).
    #[serde(rename = "artifact.stored")]
    ArtifactStored {
        /// Artifact digest.
        artifact: Digest,
        /// Artifact kind (`model`, `checkpoint`, `dataset-snapshot`, ...).
        kind: Ident,
        /// Its data classification as `LEVEL` or `LEVEL/TAG+TAG` (inherited from its job or
        /// declared); absent when unclassified.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        classification: Option<Ident>,
        /// Its lane (`production` or `experiment`): what promotion gates read comes from here.
        lane: Ident,
        /// Whether it derives from sensitive data (extra promotion gates apply).
        sensitive: bool,
    },
    /// A signed attestation (other than provenance) was attached to an artifact.
    #[serde(rename = "artifact.attested")]
    ArtifactAttested {
        /// Artifact digest.
        artifact: Digest,
        /// Digest of the signature envelope.
        envelope: Digest,
        /// What it attests, as a short code (`data-approval`, `security-review`, ...).
        predicate: Ident,
        /// Signing key id.
        key_id: Ident,
    },
    /// A promotion was refused by the gate policy.
    #[serde(rename = "artifact.promotion_refused")]
    ArtifactPromotionRefused {
        /// Artifact digest.
        artifact: Digest,
        /// Stage asked for.
        to_stage: Ident,
        /// Reason codes (ids of the forbidding policies).
        reasons: Vec<Ident>,
    },
    /// An artifact was crypto-shredded (its data key destroyed).
    #[serde(rename = "artifact.shredded")]
    ArtifactShredded {
        /// Artifact digest.
        artifact: Digest,
    },
    /// An artifact was deployed to an edge site.
    #[serde(rename = "artifact.deployed_edge")]
    ArtifactDeployedEdge {
        /// Artifact digest.
        artifact: Digest,
        /// Edge site.
        site: Ident,
    },
    /// A training checkpoint was archived.
    #[serde(rename = "checkpoint.archived")]
    CheckpointArchived {
        /// Checkpoint digest.
        checkpoint: Digest,
        /// Zone holding the archive.
        zone: Ident,
    },
    /// A training checkpoint was destroyed.
    #[serde(rename = "checkpoint.destroyed")]
    CheckpointDestroyed {
        /// Checkpoint digest.
        checkpoint: Digest,
        /// How (e.g. `crypto-shred`).
        method: Ident,
    },
    /// A scoped token was issued.
    #[serde(rename = "token.issued")]
    TokenIssued {
        /// Token id (never the token itself).
        token_id: Ident,
        /// Expiry, unix milliseconds.
        expires_ms: u64,
        /// What it grants.
        scope: Vec<Ident>,
    },
    /// A scoped token was used to read a resource.
    #[serde(rename = "token.used")]
    TokenUsed {
        /// Token id (its revocation id; never the token itself).
        token_id: Ident,
        /// Digest of the resource read.
        resource: Digest,
        /// Zone the request came from.
        zone: Ident,
    },
    /// A token was refused for a read.
    #[serde(rename = "token.refused")]
    TokenRefused {
        /// Digest of the resource asked for.
        resource: Digest,
        /// Zone the request came from.
        zone: Ident,
        /// Why, as a code (`token-expired`, `token-request-denied`, ...).
        reason: Ident,
        /// The refused token's id (only as claimed, when the token did not verify); absent when
        /// the token does not parse at all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_id: Option<Ident>,
    },
    /// A policy set was loaded or changed.
    #[serde(rename = "policy.loaded")]
    PolicyLoaded {
        /// Digest of the policy set.
        policy_hash: Digest,
    },
    /// A fleet description was loaded or changed.
    #[serde(rename = "fleet.loaded")]
    FleetLoaded {
        /// Digest of the fleet description.
        fleet_hash: Digest,
    },
    /// An object came under retention tracking (it will be deleted by the rule for its kind).
    #[serde(rename = "retention.registered")]
    RetentionRegistered {
        /// Digest of the object.
        object: Digest,
        /// What kind of object it is.
        kind: ObjectKind,
    },
    /// A legal hold was placed on the subjects.
    #[serde(rename = "retention.hold_set")]
    RetentionHoldSet {
        /// Digest of the hold order.
        order: Digest,
    },
    /// A legal hold was released.
    #[serde(rename = "retention.hold_released")]
    RetentionHoldReleased {
        /// Digest of the release order.
        order: Digest,
    },
    /// An object was deleted under a retention rule (tombstone: the entry stays, the data goes).
    #[serde(rename = "retention.deleted")]
    RetentionDeleted {
        /// Digest of the deleted object.
        object: Digest,
        /// The retention rule applied.
        rule: Ident,
        /// How (e.g. `crypto-shred`).
        method: Ident,
    },
}

impl Action {
    /// The `type` name of the action (e.g. `job.placed`).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::JobSubmitted { .. } => "job.submitted",
            Self::JobApproved { .. } => "job.approved",
            Self::JobPlaced { .. } => "job.placed",
            Self::JobBurst { .. } => "job.burst",
            Self::JobRevoked { .. } => "job.revoked",
            Self::JobAdmitted { .. } => "job.admitted",
            Self::KeyChanged { .. } => "key.changed",
            Self::ArtifactDeployed { .. } => "artifact.deployed",
            Self::JobRun { .. } => "job.run",
            Self::DatasetCopied { .. } => "dataset.copied",
            Self::DatasetRegistered { .. } => "dataset.registered",
            Self::ArtifactSigned { .. } => "artifact.signed",
            Self::ArtifactPromoted { .. } => "artifact.promoted",
            Self::ArtifactStored { .. } => "artifact.stored",
            Self::ArtifactAttested { .. } => "artifact.attested",
            Self::ArtifactPromotionRefused { .. } => "artifact.promotion_refused",
            Self::ArtifactShredded { .. } => "artifact.shredded",
            Self::TokenUsed { .. } => "token.used",
            Self::TokenRefused { .. } => "token.refused",
            Self::ArtifactDeployedEdge { .. } => "artifact.deployed_edge",
            Self::CheckpointArchived { .. } => "checkpoint.archived",
            Self::CheckpointDestroyed { .. } => "checkpoint.destroyed",
            Self::TokenIssued { .. } => "token.issued",
            Self::PolicyLoaded { .. } => "policy.loaded",
            Self::FleetLoaded { .. } => "fleet.loaded",
            Self::RetentionRegistered { .. } => "retention.registered",
            Self::RetentionHoldSet { .. } => "retention.hold_set",
            Self::RetentionHoldReleased { .. } => "retention.hold_released",
            Self::RetentionDeleted { .. } => "retention.deleted",
        }
    }

    /// Every digest the action refers to (documents an evidence bundle may attach).
    #[must_use]
    pub fn digests(&self) -> Vec<&Digest> {
        match self {
            Self::JobSubmitted { spec } => vec![spec],
            Self::JobApproved { .. } | Self::ArtifactDeployedEdge { .. } => Vec::new(),
            Self::ArtifactPromoted { policy_hash, .. } => vec![policy_hash],
            Self::JobPlaced { policy_hash, .. }
            | Self::JobRevoked { policy_hash, .. }
            | Self::JobAdmitted { policy_hash, .. } => vec![policy_hash],
            Self::KeyChanged { keyring, .. } => keyring.iter().collect(),
            Self::JobRun { .. } | Self::ArtifactDeployed { .. } => Vec::new(),
            Self::JobBurst { justification, .. } => vec![justification],
            Self::DatasetCopied { report, .. } | Self::DatasetRegistered { report, .. } => {
                report.iter().collect()
            }
            Self::ArtifactSigned { signature, .. } => vec![signature],
            Self::ArtifactAttested { envelope, .. } => vec![envelope],
            Self::ArtifactStored { .. }
            | Self::ArtifactPromotionRefused { .. }
            | Self::ArtifactShredded { .. }
            | Self::TokenUsed { .. }
            | Self::TokenRefused { .. } => Vec::new(),
            Self::CheckpointArchived { .. }
            | Self::CheckpointDestroyed { .. }
            | Self::TokenIssued { .. } => Vec::new(),
            Self::PolicyLoaded { policy_hash } => vec![policy_hash],
            Self::FleetLoaded { fleet_hash } => vec![fleet_hash],
            Self::RetentionHoldSet { order } | Self::RetentionHoldReleased { order } => vec![order],
            Self::RetentionDeleted { .. } | Self::RetentionRegistered { .. } => Vec::new(),
        }
    }

    fn validate(&self) -> Result<(), EntryError> {
        match self {
            Self::JobPlaced { reasons, .. } | Self::JobRevoked { reasons, .. }
                if reasons.len() > MAX_LIST =>
            {
                Err(EntryError::TooMany {
                    field: "reasons",
                    got: reasons.len(),
                    max: MAX_LIST,
                })
            }
            Self::ArtifactPromotionRefused { reasons, .. } if reasons.len() > MAX_LIST => {
                Err(EntryError::TooMany {
                    field: "reasons",
                    got: reasons.len(),
                    max: MAX_LIST,
                })
            }
            Self::DatasetRegistered {
                tags: Some(tags), ..
            } if tags.len() > MAX_LIST => Err(EntryError::TooMany {
                field: "tags",
                got: tags.len(),
                max: MAX_LIST,
            }),
            Self::DatasetRegistered {
                residency: Some(residency),
                ..
            } if residency.len() > MAX_LIST => Err(EntryError::TooMany {
                field: "residency",
                got: residency.len(),
                max: MAX_LIST,
            }),
            Self::TokenIssued { scope, .. } if scope.len() > MAX_LIST => Err(EntryError::TooMany {
                field: "scope",
                got: scope.len(),
                max: MAX_LIST,
            }),
            Self::DatasetCopied { bytes, .. } if *bytes > MAX_SAFE_INTEGER => {
                Err(EntryError::Integer { field: "bytes" })
            }
            Self::TokenIssued { expires_ms, .. } if *expires_ms > MAX_SAFE_INTEGER => {
                Err(EntryError::Integer {
                    field: "expires_ms",
                })
            }
            _ => Ok(()),
        }
    }
}

/// An entry before the ledger gives it a sequence index and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryDraft {
    /// Who did it (user, service or key id).
    pub actor: Ident,
    /// What was done.
    pub action: Action,
    /// What it was done to.
    pub subjects: Vec<Subject>,
}

impl EntryDraft {
    /// A checked draft.
    ///
    /// # Errors
    /// When a list is too long or an integer is out of range.
    pub fn new(actor: Ident, action: Action, subjects: Vec<Subject>) -> Result<Self, EntryError> {
        if subjects.len() > MAX_SUBJECTS {
            return Err(EntryError::TooMany {
                field: "subjects",
                got: subjects.len(),
                max: MAX_SUBJECTS,
            });
        }
        action.validate()?;
        Ok(Self {
            actor,
            action,
            subjects,
        })
    }

    /// The full entry at position `seq`, recorded at `ts_ms`.
    #[must_use]
    pub fn into_entry(self, seq: u64, ts_ms: u64) -> Entry {
        Entry {
            v: ENTRY_VERSION,
            seq,
            ts_ms,
            actor: self.actor,
            action: self.action,
            subjects: self.subjects,
        }
    }

    /// Encode the entry ahead of knowing its position, so the expensive canonicalization runs
    /// on the caller's thread and the ledger's writer only splices the index in.
    ///
    /// # Errors
    /// When the timestamp is out of range.
    pub fn prepare(self, ts_ms: u64) -> Result<PreparedEntry, EntryError> {
        let mut keys: Vec<crate::subjects::Key> = Vec::with_capacity(self.subjects.len());
        for s in &self.subjects {
            let k = crate::subjects::key(s.kind, s.id.as_str());
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        let bytes = self.into_entry(0, ts_ms).encode()?;
        // Canonical JSON sorts member names, and no identifier or digest can contain a quote, so
        // `"seq":0` occurs exactly once: as the top-level member. Split around its value.
        let marker = b"\"seq\":0";
        let at = bytes
            .windows(marker.len())
            .position(|w| w == marker)
            .ok_or_else(|| EntryError::Malformed("encoded entry has no seq member".into()))?;
        let split = at + marker.len() - 1;
        Ok(PreparedEntry {
            prefix_len: split,
            bytes,
            keys,
        })
    }
}

/// An entry encoded except for its sequence index (see [`EntryDraft::prepare`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedEntry {
    bytes: Vec<u8>,
    prefix_len: usize,
    keys: Vec<crate::subjects::Key>,
}

impl PreparedEntry {
    /// Append the canonical bytes of the entry at position `seq` to `out`; identical to
    /// `draft.into_entry(seq, ts_ms).encode()`.
    pub fn write_at(&self, seq: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes[..self.prefix_len]);
        out.extend_from_slice(seq.to_string().as_bytes());
        out.extend_from_slice(&self.bytes[self.prefix_len + 1..]);
    }

    /// The subject map keys of the entry's subjects (each once).
    #[must_use]
    pub fn keys(&self) -> &[crate::subjects::Key] {
        &self.keys
    }

    /// Length of the encoding at position `seq`.
    #[must_use]
    pub fn len_at(&self, seq: u64) -> usize {
        self.bytes.len() - 1 + seq.checked_ilog10().map_or(1, |d| d as usize + 1)
    }
}

/// One ledger entry as stored and hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Schema version.
    pub v: u8,
    /// Position in the log (0-based); equals the Merkle leaf index.
    pub seq: u64,
    /// When it was recorded, unix milliseconds (given by the caller's clock).
    pub ts_ms: u64,
    /// Who did it.
    pub actor: Ident,
    /// What was done.
    pub action: Action,
    /// What it was done to.
    pub subjects: Vec<Subject>,
}

impl Entry {
    /// Canonical (RFC 8785) bytes of the entry; these are the Merkle leaf data.
    ///
    /// # Errors
    /// When an integer is outside the canonical range.
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        if self.seq > MAX_SAFE_INTEGER {
            return Err(EntryError::Integer { field: "seq" });
        }
        if self.ts_ms > MAX_SAFE_INTEGER {
            return Err(EntryError::Integer { field: "ts_ms" });
        }
        canonical::to_vec_of(self).map_err(|e| EntryError::Malformed(e.to_string()))
    }

    /// Parse canonical entry bytes, checking every field rule and the canonical form.
    ///
    /// # Errors
    /// When the bytes are not a valid entry or not canonical.
    pub fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        let e: Self =
            serde_json::from_slice(bytes).map_err(|e| EntryError::Malformed(e.to_string()))?;
        if e.subjects.len() > MAX_SUBJECTS {
            return Err(EntryError::TooMany {
                field: "subjects",
                got: e.subjects.len(),
                max: MAX_SUBJECTS,
            });
        }
        e.action.validate()?;
        if e.encode()? != bytes {
            return Err(EntryError::NotCanonical);
        }
        Ok(e)
    }

    /// Whether the entry names `id` among its subjects (any kind).
    #[must_use]
    pub fn mentions(&self, id: &str) -> bool {
        self.subjects.iter().any(|s| s.id.as_str() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digest {
        Digest::parse(format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    #[test]
    fn identifier_rule() {
        assert!(Ident::new("job-42").is_ok());
        assert!(Ident::new("alice@example.org").is_ok());
        assert!(Ident::new("zone:eu-private/pool.a100+spot").is_ok());
        for bad in [
            "",
            " x",
            "-x",
            "a b",
            "x\n",
            "naïve",
            "a,b",
            "ssn-123-45-6789",
            &"a".repeat(129),
        ] {
            assert!(Ident::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn digest_rule() {
        assert!(Digest::parse(Digest::of(b"x").as_str()).is_ok());
        assert!(Digest::parse("sha256:ABCD").is_err());
        assert!(Digest::parse(format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(Digest::parse(format!("md5:{}", "a".repeat(64))).is_err());
    }

    #[test]
    fn prepared_entries_equal_direct_encoding() {
        for seq in [0u64, 1, 9, 10, 99, 100, 12_345, MAX_SAFE_INTEGER] {
            let draft = EntryDraft::new(
                Ident::new("seq").unwrap(),
                Action::TokenIssued {
                    token_id: Ident::new("seq:0").unwrap(),
                    expires_ms: 0,
                    scope: vec![Ident::new("seq").unwrap()],
                },
                vec![Subject::new(SubjectKind::Token, "seq").unwrap()],
            )
            .unwrap();
            let direct = draft.clone().into_entry(seq, 77).encode().unwrap();
            let prepared = draft.prepare(77).unwrap();
            let mut out = Vec::new();
            prepared.write_at(seq, &mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                String::from_utf8(direct.clone()).unwrap()
            );
            assert_eq!(prepared.len_at(seq), direct.len());
        }
    }

    #[test]
    fn encode_decode_round_trip_and_canonical_check() {
        let draft = EntryDraft::new(
            Ident::new("scheduler").unwrap(),
            Action::JobPlaced {
                decision: Decision::Allowed,
                zone: Ident::new("eu-private").unwrap(),
                pool: Ident::new("a100").unwrap(),
                reasons: vec![Ident::new("phi-stays-private").unwrap()],
                policy_hash: d('a'),
            },
            vec![Subject::new(SubjectKind::Job, "job-1").unwrap()],
        )
        .unwrap();
        let entry = draft.into_entry(7, 1_700_000_000_000);
        let bytes = entry.encode().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"action":{"decision":"allowed","policy_hash":"sha256:aaaa"#),
            "{text}"
        );
        assert!(text.contains(r#""type":"job.placed""#));
        assert_eq!(Entry::decode(&bytes), Ok(entry));
        let spaced = text.replacen(',', ", ", 1);
        assert_eq!(
            Entry::decode(spaced.as_bytes()),
            Err(EntryError::NotCanonical)
        );
        let bad = text.replace("phi-stays-private", "phi stays private");
        assert!(matches!(
            Entry::decode(bad.as_bytes()),
            Err(EntryError::Malformed(_))
        ));
    }
}
