//! The store's errors: each names what failed (the field, the job, the key, the store location).

use crate::record::{JobId, JobState};

/// A boxed backend error kept as the source.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The input is invalid; nothing was written.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, as the API names it.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No job has this id.
    #[error("job `{id}` not found")]
    NotFound {
        /// The id asked for.
        id: JobId,
    },
    /// A job with this id already exists (and the submit carried no matching idempotency key).
    #[error("job `{id}` already exists")]
    AlreadyExists {
        /// The id.
        id: JobId,
    },
    /// The idempotency key was used before with a different request.
    #[error("idempotency key `{key}` of team `{team}` was already used for job `{existing}` with a different request")]
    IdempotencyConflict {
        /// The team the key belongs to.
        team: String,
        /// The key.
        key: String,
        /// The job the key created first.
        existing: JobId,
    },
    /// The job moved on since the caller read it (optimistic concurrency).
    #[error("job `{id}` changed concurrently: expected version {expected}, it is at version {actual} ({state})")]
    VersionConflict {
        /// The job.
        id: JobId,
        /// The version the caller expected.
        expected: u64,
        /// The version stored.
        actual: u64,
        /// The state stored.
        state: JobState,
    },
    /// The lifecycle does not allow this move.
    #[error("job `{id}`: illegal transition from {from} to {to}")]
    IllegalTransition {
        /// The job.
        id: JobId,
        /// Its current state.
        from: JobState,
        /// The state asked for.
        to: JobState,
    },
    /// The database cannot be reached or cannot write for now (down, refused, timed out,
    /// connection lost, disk full, an I/O error): retrying later may succeed.
    #[error("{backend} store at {location} is unavailable during {op}: {source}")]
    Unavailable {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// File path or URL without password.
        location: String,
        /// The operation.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The database answered with an error.
    #[error("{backend} store at {location}: {op} failed: {source}")]
    Database {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// File path or URL without password.
        location: String,
        /// The operation.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// A stored value cannot be read back (an unknown state, invalid JSON): the database was
    /// changed outside this crate or by a newer version.
    #[error("{backend} store at {location}: stored {what} is unreadable: {reason}")]
    Corrupt {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// File path or URL without password.
        location: String,
        /// What was being read.
        what: &'static str,
        /// Why it cannot be read.
        reason: String,
    },
    /// The schema could not be brought to the current version.
    #[error(
        "{backend} store at {location}: migration to schema version {version} failed: {reason}"
    )]
    Migration {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// File path or URL without password.
        location: String,
        /// The version being applied (or found).
        version: i64,
        /// Why.
        reason: String,
    },
}

impl StoreError {
    /// Whether retrying later may succeed (the database was unreachable).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}
