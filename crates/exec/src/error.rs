//! Executor errors: one enum, each variant naming the job and what failed.

use thiserror::Error;

/// Why an executor could not do what it was asked.
#[derive(Debug, Error)]
pub enum ExecError {
    /// The launch request is not valid (bad id, empty zone...).
    #[error("invalid launch for job {job}: {reason}")]
    Invalid {
        /// Job id.
        job: String,
        /// What is wrong.
        reason: String,
    },
    /// A file or process operation failed.
    #[error("job {job}: {what} {path}: {source}")]
    Io {
        /// Job id.
        job: String,
        /// What was being done.
        what: &'static str,
        /// Path involved.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The backend refused the job (sbatch rejection, 403, quota exceeded).
    #[error("job {job}: the backend refused it: {reason}")]
    Refused {
        /// Job id.
        job: String,
        /// The backend's message.
        reason: String,
    },
    /// The pool or region has no capacity for the job now.
    #[error("job {job}: no capacity: {reason}")]
    NoCapacity {
        /// Job id.
        job: String,
        /// The backend's message.
        reason: String,
    },
    /// The job is unknown to the executor.
    #[error("job {0} is unknown to this executor")]
    Unknown(String),
}
