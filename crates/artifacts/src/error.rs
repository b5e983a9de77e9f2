//! Errors of the artifact crate; each names the artifact, key or evidence at fault.

use crate::Digest;

/// Why an artifact operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// A digest string is not `sha256:<64 lowercase hex>`.
    #[error("invalid digest {0:?}: expected sha256:<64 hex digits>")]
    InvalidDigest(String),
    /// No artifact with this digest is in the store.
    #[error("artifact {0} not found")]
    NotFound(Digest),
    /// The stored object does not decrypt or does not hash to its digest.
    #[error("artifact {digest} failed integrity check: {reason}")]
    Tampered {
        /// The artifact.
        digest: Digest,
        /// What did not match.
        reason: String,
    },
    /// The object's data key was destroyed: its content is unrecoverable.
    #[error("artifact {0} was crypto-shredded: its data key is destroyed")]
    Shredded(Digest),
    /// The same content was put again with different, conflicting metadata.
    #[error("artifact {digest} already exists as {existing}; objects are immutable")]
    Conflict {
        /// The artifact.
        digest: Digest,
        /// Its existing kind.
        existing: String,
    },
    /// Storing failed after the store was recorded (a full disk): nothing was kept.
    #[error("artifact {digest} was NOT stored: {reason}; {}", if *recorded { "what was written is removed and the evidence ledger records it undone (artifact.shredded after its artifact.stored)" } else { "what was written is removed, but the evidence ledger could not record that: its artifact.stored entry for it stands alone" })]
    NotStored {
        /// The artifact.
        digest: Digest,
        /// What failed.
        reason: String,
        /// Whether the undoing is in the ledger.
        recorded: bool,
    },
    /// A scoped token does not allow this access.
    #[error("access refused: {0}")]
    Unauthorized(String),
    /// A scoped job token was refused for a read (and the refusal recorded).
    #[error("access refused: {resource}: {reason}")]
    TokenRefused {
        /// The resource the token was checked for (`checkpoint:sha256:...`).
        resource: String,
        /// Why, as a short identifier ([`crate::access::refusal_code`]: `token-expired`,
        /// `token-request-denied`, ...).
        code: &'static str,
        /// Why, for a person.
        reason: String,
    },
    /// The blob backend (object storage) failed.
    #[error("blob storage: {0}")]
    Backend(String),
    /// Key management failed.
    #[error("key management: {0}")]
    Kms(String),
    /// A signing key problem (unknown, revoked, outside its window, bad key material).
    #[error("signing key: {0}")]
    Key(String),
    /// A DSSE envelope or in-toto statement failed verification.
    #[error("signature verification failed: {0}")]
    Signature(String),
    /// Malformed input data (JSON, kind names, stage names).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A promotion was refused; the reasons name the missing evidence.
    #[error("promotion of {digest} to {to} refused:\n  - {}", reasons.join("\n  - "))]
    PromotionRefused {
        /// The artifact.
        digest: Digest,
        /// The target stage.
        to: String,
        /// Why: each missing or failing piece of evidence.
        reasons: Vec<String>,
    },
    /// The evidence sink could not record the event; the operation did not happen.
    #[error("evidence not recorded, operation refused: {0}")]
    Evidence(String),
    /// The promotion policy itself is invalid.
    #[error("promotion policy: {0}")]
    Policy(String),
    /// A filesystem error, with the path involved.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl ArtifactError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        ArtifactError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

impl From<tidegate_vocab::DigestError> for ArtifactError {
    fn from(e: tidegate_vocab::DigestError) -> Self {
        ArtifactError::InvalidDigest(e.text)
    }
}
