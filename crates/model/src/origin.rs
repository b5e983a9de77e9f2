//! Where a value came from (file and line), so that every later error can point at it.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// The file and 1-based line a model item was declared at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The file, as given to the loader.
    pub file: Arc<Path>,
    /// 1-based line; 0 when unknown (items built in code).
    pub line: u32,
}

impl Origin {
    /// An origin for items built in code rather than loaded from a file.
    pub fn builtin(name: &str) -> Self {
        Self {
            file: Arc::from(Path::new(name)),
            line: 0,
        }
    }

    /// Origin at `line` within the same file.
    pub fn at(&self, line: u64) -> Self {
        Self {
            file: self.file.clone(),
            line: u32::try_from(line).unwrap_or(u32::MAX),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}", self.file.display(), self.line)
        }
    }
}
