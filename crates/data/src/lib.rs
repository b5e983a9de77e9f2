//! tidegate data boundary: what datasets exist, in which version, classified how, and how a
//! version may (or may not) leave its zone.
//!
//! - [`registry`]: dataset versions as content-addressed snapshots in the artifact store, with
//!   schema, classification, owner and home zone; append-only, every registration ledgered first.
//! - [`approval`]: approver signatures over sanitizer profiles (a profile file earns a lower
//!   classification only with one).
//! - [`derive`]: a sanitized version of a registered dataset: the sanitizer's report is stored,
//!   signed and ledgered, and the lower classification is registered only when it was earned.
//! - [`holding`]: may this data (a dataset version, an artifact) be held in that zone — the one
//!   rule behind job-token grants and reads from inside a zone.
//! - [`transfer`]: the policy decision for moving a version (or a column projection of it) into
//!   another zone (pure), and carrying it out: projected, encrypted at rest in the destination
//!   zone's store, bytes and digests ledgered.

#![warn(missing_docs, unreachable_pub)]

pub mod approval;
pub mod derive;
mod error;
pub mod holding;
pub mod registry;
pub mod transfer;

pub use error::DataError;
pub use registry::{ClassificationNames, DatasetVersion, RegisterSpec, Registry, TableFile};
pub use transfer::{ColumnRef, TransferPlan, TransferRefusal};
