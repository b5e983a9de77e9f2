//! Scoped short-lived credentials for tidegate: mint, attenuate, verify offline, rotate and
//! revoke root keys.
//!
//! # Format: Biscuit v3 (`biscuit-auth` 6), not PASETO v4.public
//!
//! Both are maintained, specified formats with ed25519 signatures and offline verification.
//! Biscuit is chosen because it supports **offline attenuation**: any holder of a token can append
//! a signed block that only *adds checks* (narrower expiry, narrower resource prefix, read-only,
//! one zone) without contacting the issuer and without a private root key. A scheduler can hand
//! a worker a token narrower than its own; an executor can narrow it again for one step. Its
//! Datalog authorizer also lets the verifier state the request as facts and the token state its
//! rights as facts, so "may this job read this checkpoint" is one evaluation with explainable
//! failed checks. PASETO v4.public carries a flat JSON claim set signed once: narrowing it needs
//! the issuer, and rights evaluation would be our own code. Biscuit also carries a root key id in
//! the token, which is what key rotation needs.
//!
//! # Shape
//! - [`RootKeyring`]: the public root keys (key id, validity window, revocation) a verifier
//!   trusts, plus revoked token ids. Plain JSON, shipped to every verifying endpoint.
//! - [`Issuer`]: one private root key and its id; mints [`TokenSpec`]s.
//! - [`attenuate`]: appends a block of checks; it can only narrow a token.
//! - [`Verifier`]: pure, offline: `authorize(token, request, now)` → [`Grant`] or a clear
//!   [`IdentityError`]. The current time is always a parameter.
//!
//! Every time in this crate is Unix seconds (`u64`).

#![warn(missing_docs, unreachable_pub)]

mod error;
mod issue;
mod keyring;
mod keystore;
mod verify;

pub use error::IdentityError;
pub use issue::{attenuate, Attenuation, Issuer, TokenSpec, MAX_TTL_MINUTES};
pub use keyring::{RootKey, RootKeyring};
pub use keystore::RootKeyStore;
pub use verify::{Action, Claims, Grant, Operation, Request, Role, Verifier};
