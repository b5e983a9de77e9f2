//! tidegate evidence ledger: an append-only, tamper-evident record of every consequential action.
//!
//! Layers, from pure to I/O:
//! - [`merkle`]: RFC 6962 / 9162 tree hashing, inclusion and consistency proofs (pure).
//! - [`canonical`]: RFC 8785 JSON canonicalization (pure).
//! - [`entry`]: entry types; identifiers and digests only, never data content (pure).

pub mod canonical;
pub mod entry;
pub mod merkle;
pub mod checkpoint;
