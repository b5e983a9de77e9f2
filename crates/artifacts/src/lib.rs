//! The tidegate artifact store: content-addressed and encrypted at rest, with DSSE/in-toto
//! provenance, a signing keyring that survives rotation, Cedar promotion gates and lineage.
//!
//! Layout under a data directory:
//! ```text
//! <data-dir>/artifacts/blobs/sha256/<hex>        encrypted object (XChaCha20-Poly1305, in 64 KiB chunks)
//! <data-dir>/artifacts/records/sha256/<hex>.json immutable record: kind, size, lane, labels
//! <data-dir>/artifacts/envelopes/sha256/<hex>/   DSSE envelopes about the object
//! <data-dir>/artifacts/lineage.jsonl             append-only lineage edges
//! <data-dir>/artifacts/events.jsonl              evidence events, written before each effect
//! <data-dir>/keys/kek.key                        file-backed key-encryption key
//! <data-dir>/keys/wrapped/sha256/<hex>.json      wrapped per-object data keys
//! <data-dir>/keys/signing/                       signing keyring and private signing keys
//! ```
//!
//! Cores are pure: verification and gate decisions take the current time as a parameter. What a
//! decision reads about an artifact (how it was stored, its recorded signatures, its stage, the
//! promotion policy in force) comes from the evidence ledger ([`history`]).

#![warn(missing_docs, unreachable_pub)]

pub mod access;
pub mod atomic;
pub mod blobs;
pub mod dsse;
mod error;
pub mod events;
pub mod gates;
pub mod history;
pub mod intoto;
mod kind;
pub mod kms;
pub mod ledger_sink;
pub mod lineage;
pub mod ops;
pub mod signing;
mod store;
mod timefmt;
pub mod transfer;

pub use error::ArtifactError;
pub use kind::{ArtifactKind, Lane};
pub use store::{
    zone_store_dir, ArtifactClass, ArtifactRecord, ArtifactStore, PutOptions, VerifyReport,
};
pub use tidegate_vocab::Digest;
pub use timefmt::{format_rfc3339, parse_rfc3339};
