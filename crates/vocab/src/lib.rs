//! tidegate's shared vocabulary: primitives every crate spells the same way, written once. A leaf
//! crate: it depends on nothing of tidegate, so the pure core and the I/O shells may both use it.

#![warn(missing_docs, unreachable_pub)]

pub mod canonical;
mod canonical_ser;
mod data_dir;
mod digest;
mod redact;
mod rng;
mod timestamp;

pub use data_dir::DataDir;
pub use digest::{Digest, DigestError};
pub use redact::redact_url;
pub use rng::SplitMix;
pub use timestamp::{TimeError, Timestamp};
