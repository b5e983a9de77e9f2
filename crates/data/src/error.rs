//! Errors of the data boundary, one variant per way an operation fails.

use std::path::PathBuf;

use tidegate_artifacts::ArtifactError;

/// Why a data-boundary operation failed. Nothing was registered or moved.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An input table is malformed.
    #[error("{path}: {message}")]
    Table {
        /// The file.
        path: PathBuf,
        /// What is wrong (with the line where known).
        message: String,
    },
    /// A field of a registration or request is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// Why.
        message: String,
    },
    /// The dataset version is not registered.
    #[error("dataset {dataset} is not registered (known: {known})")]
    NotFound {
        /// `name@version`.
        dataset: String,
        /// Known versions, comma separated (or `none`).
        known: String,
    },
    /// The version exists with other content (versions are immutable).
    #[error("dataset {dataset} is already registered with snapshot {existing}; versions are immutable, register a new version")]
    Conflict {
        /// `name@version`.
        dataset: String,
        /// Its snapshot digest.
        existing: String,
    },
    /// A sanitizer profile's approval is there but does not hold (bad signature, unknown or
    /// revoked key, no approver role, or a profile changed since it was signed).
    #[error("{profile}: profile approval refused: {message}")]
    Approval {
        /// The profile (or its signature file).
        profile: String,
        /// Why.
        message: String,
    },
    /// Known content registered below the classification it already has.
    #[error("{field}: {dataset} holds content already registered as {earlier} ({why}); the same bytes keep their strictest classification, register it at {required} or stricter")]
    Downgrade {
        /// The field at fault (`level`, `tag`, `residency`, `retention`).
        field: String,
        /// `name@version` being registered.
        dataset: String,
        /// The earlier registration (`name@version`).
        earlier: String,
        /// What would be weaker.
        why: String,
        /// The classification the content has.
        required: String,
    },
    /// The registry file is damaged.
    #[error("{path}:{line}: damaged registry entry: {message}")]
    Registry {
        /// The registry file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Parse error.
        message: String,
    },
    /// A registry row the evidence ledger does not vouch for: not recorded, recorded otherwise,
    /// or a recorded version whose row is missing. Nothing is decided on it.
    #[error("dataset {dataset}: {field}: {message}")]
    Unrecorded {
        /// `name@version`.
        dataset: String,
        /// The field at fault (`classification.level`, `owner`, `registration`, ...).
        field: String,
        /// What differs, with the ledger entry's index.
        message: String,
    },
    /// A ledger entry the registry reads does not decode.
    #[error("evidence ledger entry {index}: {message}")]
    Evidence {
        /// Index of the entry.
        index: usize,
        /// Why.
        message: String,
    },
    /// The artifact store refused (including: the evidence ledger could not record).
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// The sanitizer failed.
    #[error(transparent)]
    Sanitize(#[from] tidegate_sanitize::SanitizeError),
    /// A transfer was refused by policy, route or budget.
    #[error(transparent)]
    Refused(#[from] crate::transfer::TransferRefusal),
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
