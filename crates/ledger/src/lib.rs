//! tidegate evidence ledger: an append-only, tamper-evident record of every consequential action.
//!
//! Layers, from pure to I/O:
//! - [`merkle`]: RFC 6962 / 9162 tree hashing, inclusion and consistency proofs (pure).
//! - [`canonical`]: RFC 8785 JSON canonicalization (pure; tidegate-vocab's, re-exported).
//! - [`entry`]: entry types; identifiers and digests only, never data content (pure).
//! - [`entry_check`]: zero-copy proof that bytes are a canonical, well-formed entry (pure).
//! - [`checkpoint`]: C2SP signed-note checkpoints, ed25519 signing, witness co-signing (pure).
//! - [`segment`]: the on-disk record format and its scanner (pure over bytes).
//! - [`subjects`]: the subject map every commit signs: per subject, a count, the last index and
//!   a hash chain, so bundles prove completeness (pure).
//! - [`commit`]: the signed commit sealing each group commit, and the check that a log's
//!   commits vouch for every entry (pure).
//! - [`ledger`]: segment files, group commit, torn-tail repair, checkpoints on disk (I/O).
//! - [`keys`]: key files (I/O).
//! - [`verify`]: full verification of a ledger directory (I/O shell over the pure checks).
//! - [`witness`]: the C2SP tlog-witness protocol: co-sign only consistent extensions (pure).
//! - `pg` (feature `postgres`): the ledger in PostgreSQL: same entries, hashing, checkpoints and
//!   verification.
//! - [`backend`]: [`backend::open_ledger`], choosing the file or (feature `postgres`) the
//!   PostgreSQL ledger.
//! - [`bundle`]: evidence bundles: building, offline verification, plain summary (pure).
//! - [`evidence`]: building a bundle from a data directory (I/O).
//! - [`retention`]: retention rules, legal holds, tombstones, the deletion plan (pure planning).

#![warn(missing_docs, unreachable_pub)]

pub mod audit;
pub mod backend;
pub mod bundle;
pub use tidegate_vocab::canonical;
pub mod checkpoint;
pub mod commit;
pub mod entry;
pub mod entry_check;
pub mod evidence;
pub mod keys;
pub mod ledger;
pub mod merkle;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod retention;
pub mod segment;
pub mod subjects;
pub mod verify;
pub mod witness;

pub use backend::{open_ledger, AnyLedger, LedgerTarget};
pub use checkpoint::{Checkpoint, NoteSigner, NoteVerifier, SignedNote};
pub use entry::{
    Action, DataForm, Decision, Digest, Entry, EntryDraft, Ident, ObjectKind, Subject, SubjectKind,
};
pub use ledger::{AppendError, Ledger, LedgerOptions, OpenError, Receipt};
