//! Errors from loading policies: every one names the file and line, and any one of them stops
//! the policy set from loading (there is no partial, silently permissive set).

use std::fmt;
use std::path::PathBuf;

/// One problem with the policy set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A Cedar file does not parse.
    #[error("{path}:{line}:{column}: Cedar syntax error: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// A policy does not validate against the schema generated from the model.
    #[error("{path}:{line}:{column}: policy `{policy}` does not match the schema: {message}")]
    Schema {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The policy id.
        policy: String,
        /// What the validator said.
        message: String,
    },
    /// Two policies share an id.
    #[error("{path}:{line}: duplicate policy id `{id}` (first at {first})")]
    DuplicateId {
        /// The file of the second one.
        path: PathBuf,
        /// Its line.
        line: usize,
        /// The id.
        id: String,
        /// Where the first is.
        first: String,
    },
    /// `baseline.exclude` names a policy the baseline does not have.
    #[error("fleet.yaml: baseline.exclude: unknown baseline policy `{0}`")]
    UnknownExclude(String),
    /// The fleet's classification scheme weakens a built-in level or tag (the loader refuses
    /// such a fleet with the line; this catches fleets built any other way).
    #[error("fleet.yaml: classification: {0}")]
    WeakScheme(String),
    /// The generated schema or the baseline itself is broken (a defect, never user input).
    #[error("internal policy error: {0}")]
    Internal(String),
}

/// Every problem found; the policy set does not load if there is any.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        tidegate_model::error::write_lines(f, &self.0)
    }
}

/// 1-based (line, column) of a byte offset in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
        + 1;
    (line, col)
}
