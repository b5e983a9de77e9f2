//! Choosing where the ledger lives: segment files under the data directory, or PostgreSQL.
//!
//! [`open_ledger`] opens either behind one type, [`AnyLedger`], with the API of the file
//! [`Ledger`]: `submit`/`append`/`record_then` (fail closed: an append that is not durable is an
//! error and the action it records must not happen), `len`, `with_tree`, `verifier`,
//! `publish_checkpoint`, `close`. The checkpoint signing key stays in `<data-dir>/keys/` for both:
//! the database holds entries and signed notes, never the key that signs them. The PostgreSQL
//! ledger is built with the feature `postgres`; without it a `postgres://` target is refused
//! when opened ([`OpenError::Database`]).

use std::path::Path;

use crate::checkpoint::{NoteVerifier, SignedNote};
use crate::entry::EntryDraft;
use crate::ledger::{
    AppendError, Ledger, LedgerOptions, OpenError, PendingAppend, PublishError, Receipt,
};
use crate::merkle::MerkleTree;
#[cfg(feature = "postgres")]
use crate::pg::{PgLedger, PgLedgerOptions};

/// Where the entries live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerTarget {
    /// Segment files under `<data-dir>/ledger`.
    Files,
    /// A PostgreSQL database (`postgres://...`), optionally in a schema of its own.
    Postgres {
        /// Connection URL.
        url: String,
        /// Schema for the tables.
        schema: Option<String>,
    },
}

impl LedgerTarget {
    /// `Files` for `None`, else the database URL (which must start with `postgres://` or
    /// `postgresql://`).
    ///
    /// # Errors
    /// [`OpenError::Database`] for any other URL.
    pub fn from_database(database: Option<&str>, schema: Option<&str>) -> Result<Self, OpenError> {
        match database {
            None => Ok(Self::Files),
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Ok(Self::Postgres {
                    url: u.to_owned(),
                    schema: schema.map(str::to_owned),
                })
            }
            Some(u) => Err(OpenError::Database(format!(
                "`{}` is not a postgres:// URL",
                redact(u)
            ))),
        }
    }
}

/// The URL without its password, for messages.
pub use tidegate_vocab::redact_url as redact;

/// An open, writable ledger of either kind.
#[derive(Debug)]
pub enum AnyLedger {
    /// Segment files.
    File(Ledger),
    /// PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres(PgLedger),
}

/// Open the ledger for `data_dir` (which holds the signing key) at `target`. `opts` apply to
/// both (the segment size only to files).
///
/// # Errors
/// See [`OpenError`].
pub fn open_ledger(
    data_dir: &Path,
    target: &LedgerTarget,
    opts: LedgerOptions,
) -> Result<AnyLedger, OpenError> {
    match target {
        LedgerTarget::Files => Ledger::open(data_dir, opts).map(AnyLedger::File),
        #[cfg(feature = "postgres")]
        LedgerTarget::Postgres { url, schema } => {
            let signer = crate::keys::load_or_create_signer(
                &crate::ledger::key_path(data_dir),
                "tidegate-ledger",
            )?;
            let pg = PgLedgerOptions {
                schema: schema.clone(),
                max_batch: opts.max_batch,
                checkpoint_every: opts.checkpoint_every,
                ..PgLedgerOptions::default()
            };
            PgLedger::open(url, signer, pg).map(AnyLedger::Postgres)
        }
        #[cfg(not(feature = "postgres"))]
        LedgerTarget::Postgres { url, .. } => Err(OpenError::Database(format!(
            "`{}`: this build has no PostgreSQL ledger (feature `postgres` of tidegate-ledger)",
            redact(url)
        ))),
    }
}

impl AnyLedger {
    /// Queue an entry; [`PendingAppend::wait`] returns once it is durable.
    ///
    /// # Errors
    /// See [`AppendError`].
    pub fn submit(&self, draft: EntryDraft, ts_ms: u64) -> Result<PendingAppend, AppendError> {
        match self {
            Self::File(l) => l.submit(draft, ts_ms),
            #[cfg(feature = "postgres")]
            Self::Postgres(l) => l.submit(draft, ts_ms),
        }
    }

    /// Append an entry and return once it is durable.
    ///
    /// # Errors
    /// See [`AppendError`]; on error the action must not go ahead.
    pub fn append(&self, draft: EntryDraft, ts_ms: u64) -> Result<Receipt, AppendError> {
        self.submit(draft, ts_ms)?.wait()
    }

    /// Record first, then act: `effect` runs only once the entry is durable.
    ///
    /// # Errors
    /// The append error; `effect` did not run.
    pub fn record_then<T>(
        &self,
        draft: EntryDraft,
        ts_ms: u64,
        effect: impl FnOnce(Receipt) -> T,
    ) -> Result<T, AppendError> {
        Ok(effect(self.append(draft, ts_ms)?))
    }

    /// Every durable entry, by index, checked against what was signed (files) or stored
    /// (PostgreSQL).
    ///
    /// # Errors
    /// Why the log could not be read, or the first bad index.
    pub fn entries(&self) -> Result<Vec<Vec<u8>>, String> {
        match self {
            Self::File(l) => l.sealed_entries().map_err(|e| e.to_string()),
            #[cfg(feature = "postgres")]
            Self::Postgres(l) => l.entries().map_err(|e| e.to_string()),
        }
    }

    /// Number of durable entries.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.with_tree(MerkleTree::len)
    }

    /// Whether there are no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Run `f` with read access to the tree over the durable entries (for proofs).
    pub fn with_tree<T>(&self, f: impl FnOnce(&MerkleTree) -> T) -> T {
        match self {
            Self::File(l) => l.with_tree(f),
            #[cfg(feature = "postgres")]
            Self::Postgres(l) => l.with_tree(f),
        }
    }

    /// The checkpoint verifier key.
    #[must_use]
    pub fn verifier(&self) -> NoteVerifier {
        match self {
            Self::File(l) => l.verifier(),
            #[cfg(feature = "postgres")]
            Self::Postgres(l) => l.verifier(),
        }
    }

    /// Sign and store a checkpoint of the durable state.
    ///
    /// # Errors
    /// When it cannot be stored.
    pub fn publish_checkpoint(&self) -> Result<SignedNote, PublishError> {
        match self {
            Self::File(l) => l.publish_checkpoint(),
            #[cfg(feature = "postgres")]
            Self::Postgres(l) => l.publish_checkpoint(),
        }
    }

    /// Why the ledger stopped taking appends, if it did.
    #[must_use]
    pub fn stopped(&self) -> Option<String> {
        match self {
            Self::File(l) => l.stopped(),
            #[cfg(feature = "postgres")]
            Self::Postgres(l) => l.stopped(),
        }
    }

    /// Flush, publish a final checkpoint, and let go of the writer lock.
    ///
    /// # Errors
    /// When the final checkpoint cannot be stored.
    pub fn close(&self) -> Result<(), PublishError> {
        match self {
            Self::File(l) => l.close(),
            #[cfg(feature = "postgres")]
            Self::Postgres(l) => l.close(),
        }
    }
}
