//! Errors from loading fleets and jobs; each names the file, the line and the field.

use std::fmt;
use std::path::PathBuf;

use crate::Origin;

/// One problem found while loading a fleet directory or a job file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file or directory could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed, has an unknown field, or a value of the wrong type.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 when the parser gave none).
        line: u64,
        /// 1-based column (0 when the parser gave none).
        column: u64,
        /// What the parser said.
        message: String,
    },
    /// The file parses, but a value is not acceptable (unknown zone, duplicate name, ...).
    #[error("{origin}: {field}: {message}")]
    Invalid {
        /// Where the offending value is.
        origin: Origin,
        /// The field, as a dotted path (e.g. `pools[1].gpu_type`).
        field: String,
        /// What is wrong and, where possible, what would be accepted.
        message: String,
    },
}

impl LoadError {
    pub(crate) fn invalid(
        origin: &Origin,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            origin: origin.clone(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// The file this error is about.
    pub fn path(&self) -> PathBuf {
        match self {
            Self::Io { path, .. } | Self::Syntax { path, .. } => path.clone(),
            Self::Invalid { origin, .. } => origin.file.to_path_buf(),
        }
    }

    /// The 1-based line this error is about, when known.
    pub fn line(&self) -> Option<u64> {
        match self {
            Self::Io { .. } => None,
            Self::Syntax { line, .. } => Some(*line),
            Self::Invalid { origin, .. } => Some(u64::from(origin.line)),
        }
    }
}

/// Every problem found in one load: loading does not stop at the first one.
#[derive(Debug, thiserror::Error)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_lines(f, &self.0)
    }
}

/// Writes each item on its own line (for error lists).
pub fn write_lines<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            writeln!(f)?;
        }
        write!(f, "{e}")?;
    }
    Ok(())
}

impl From<LoadError> for LoadErrors {
    fn from(e: LoadError) -> Self {
        Self(vec![e])
    }
}
