//! tidegate policy: Cedar placement policy over the fleet model. Generates the Cedar schema from
//! the model, loads the built-in baseline and the fleet's own policy files, validates them
//! (any error is fatal, with file:line), evaluates a job against a zone with the ids of the
//! policies that decided, and hashes the whole policy set so every decision names what made it.
//!
//! The public face is [`PolicyEngine`]; Cedar types stay inside.

#![warn(missing_docs, unreachable_pub)]

mod engine;
mod error;
mod facts;
mod schema;

pub use engine::{PolicyEngine, PolicyRef, ZoneVerdict, BASELINE_TEXT};
pub use error::{PolicyError, PolicyErrors};
pub use facts::{JobFacts, Projection, Val, JOB_ATTRS, ZONE_ATTRS};
pub use schema::schema_text;
