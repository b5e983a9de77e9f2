//! tidegate sanitizer: turns raw tables into minimised, pseudonymised tables, and says whether the
//! output has earned a lower classification.
//!
//! Layers, from pure to I/O:
//! - [`profile`]: the profile format (YAML), the built-in `hipaa-safe-harbor` profile, validation.
//! - [`transform`]: per-cell transforms (keyed pseudonyms, dates, ZIP3, ages, noise) (pure).
//! - [`scan`]: identifier scanners for free text (SSN, phone, email, record numbers, passport and
//!   licence numbers, card numbers with a Luhn check) (pure).
//! - [`report`]: the per-run report and the classification decision (pure).
//! - [`engine`]: streaming tables in and out, k-anonymity, atomic publication (I/O). Tables are
//!   CSV or Parquet; each output table keeps its input's format and file name. Parquet cells of
//!   text, numeric, boolean, date, time and timestamp columns are read as their text form (nulls
//!   as empty cells) and go through the same per-cell transforms as CSV; Parquet output columns
//!   are all nullable UTF-8 (a transform may change a cell's type, a date becoming a year), empty
//!   cells written as null, snappy-compressed. Nested, list, map and binary columns are refused.
//! - [`generate`]: a Synthea-schema data generator for benchmarks (I/O).

#![warn(missing_docs, unreachable_pub)]

pub mod engine;
mod error;
pub mod generate;
mod parquet_io;
pub mod profile;
pub mod report;
pub mod scan;
mod table_io;
pub mod transform;

pub use engine::{sanitize, Options};
pub use error::SanitizeError;
pub use profile::{Action, Approval, DateMode, Profile};
pub use report::Report;
pub use table_io::{identifier_census, project_table, table_columns};
pub use transform::Key;
