//! tidegate sanitizer: turns raw tables into minimised, pseudonymised tables, and says whether the
//! output has earned a lower classification.
//!
//! Layers, from pure to I/O:
//! - [`profile`]: the profile format (YAML), the built-in `hipaa-safe-harbor` profile, validation.
//! - [`transform`]: per-cell transforms (keyed pseudonyms, dates, ZIP3, ages, noise) (pure).
//! - [`scan`]: identifier scanners for free text (SSN, phone, email, record numbers, passport and
//!   licence numbers, card numbers with a Luhn check) (pure).
//! - [`report`]: the per-run report and the classification decision (pure).
//! - [`engine`]: streaming CSV in, CSV out, k-anonymity, atomic publication (I/O).
//! - [`generate`]: a Synthea-schema data generator for benchmarks (I/O).

pub mod engine;
mod error;
pub mod generate;
pub mod profile;
pub mod report;
pub mod scan;
pub mod transform;

pub use engine::{sanitize, Options};
pub use error::SanitizeError;
pub use profile::{Action, DateMode, Profile};
pub use report::Report;
pub use transform::Key;
