//! Errors of the sanitizer; each names the file and, for data, the line (CSV) or row (Parquet)
//! and the column.

use std::path::PathBuf;

/// Why a sanitizer run failed. A failed run publishes nothing.
#[derive(Debug, thiserror::Error)]
pub enum SanitizeError {
    /// A file or directory could not be read or written.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The profile YAML is malformed.
    #[error("{path}:{line}:{column}: {message}")]
    ProfileSyntax {
        /// The profile file (or `<built-in NAME>`).
        path: String,
        /// 1-based line (0 when unknown).
        line: u64,
        /// 1-based column (0 when unknown).
        column: u64,
        /// What the parser said.
        message: String,
    },
    /// The profile parses but is not usable.
    #[error("{path}: {field}: {message}")]
    ProfileInvalid {
        /// The profile file (or `<built-in NAME>`).
        path: String,
        /// The offending field, dotted.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The input is not acceptable (malformed CSV, invalid UTF-8, a huge field, an uncovered
    /// column or table).
    #[error("{path}:{line}: {message}")]
    Input {
        /// The input file.
        path: PathBuf,
        /// 1-based line in the file where the problem is (0 when it is about the whole file).
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// A Parquet row is not acceptable (a huge field, a value a transform cannot read) or the rows
    /// around it cannot be decoded.
    #[error("{path}: row {row}: {message}")]
    Row {
        /// The input file.
        path: PathBuf,
        /// 0-based index of the row within the file.
        row: u64,
        /// What is wrong.
        message: String,
    },
    /// A Parquet file's schema is not acceptable: a column that cannot be read as text (nested,
    /// list, struct, map, binary), a duplicate column name, a column the profile does not cover.
    #[error("{path}: column `{column}`: {message}")]
    Schema {
        /// The input file.
        path: PathBuf,
        /// The offending column.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// The key is unusable.
    #[error("key: {0}")]
    Key(String),
    /// The output directory already exists and is not empty.
    #[error("{0}: output directory exists and is not empty; refusing to overwrite it")]
    OutputExists(PathBuf),
}

impl SanitizeError {
    pub(crate) fn io(path: impl Into<PathBuf>, what: &'static str, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            what,
            source,
        }
    }

    pub(crate) fn input(path: impl Into<PathBuf>, line: u64, message: impl Into<String>) -> Self {
        Self::Input {
            path: path.into(),
            line,
            message: message.into(),
        }
    }
}
