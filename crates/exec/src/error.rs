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
    /// The executor cannot run jobs as configured (who jobs run as, where their state lives).
    #[error("the local executor cannot be set up: {reason}")]
    Setup {
        /// What is wrong and what would fix it.
        reason: String,
    },
}

impl ExecError {
    /// An I/O failure on `path` while doing `what` for `job`.
    pub fn io(
        job: &str,
        what: &'static str,
        path: &std::path::Path,
        source: std::io::Error,
    ) -> Self {
        ExecError::Io {
            job: job.to_owned(),
            what,
            path: path.display().to_string(),
            source,
        }
    }
}

/// Checks a run id before it names a directory or a backend object: 1 to 64 characters of
/// `A-Z a-z 0-9 . _ -`, not starting with `.`.
pub fn check_run_id(job: &str) -> Result<(), ExecError> {
    let ok = !job.is_empty()
        && job.len() <= 64
        && job
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !job.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ExecError::Invalid {
            job: job.to_owned(),
            reason: "job id must be 1-64 characters of A-Z a-z 0-9 . _ -".into(),
        })
    }
}
