//! Minting tokens from a root key ([`Issuer`]) and narrowing them offline ([`attenuate`]).

use std::collections::HashMap;

use biscuit_auth::builder::{fact, string, Term};
use biscuit_auth::{Algorithm, Biscuit, BlockBuilder, KeyPair, PrivateKey, UnverifiedBiscuit};
use serde::{Deserialize, Serialize};

use crate::verify::{Operation, Role};
use crate::{IdentityError, RootKey, RootKeyring};

/// The longest lifetime a token may be minted with: credentials live for minutes to hours,
/// never days.
pub const MAX_TTL_MINUTES: u32 = 12 * 60;

/// What a token is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenSpec {
    /// A per-job token: exactly these inputs may be read, writes only under the output prefix,
    /// only in this zone.
    Job {
        /// Job id.
        job_id: String,
        /// The zone the job runs in; requests from any other zone are refused.
        zone: String,
        /// Readable resources, exact strings: `dataset:NAME@VERSION`, `checkpoint:sha256:HEX`,
        /// `artifact:sha256:HEX`.
        inputs: Vec<String>,
        /// Writable prefix, e.g. `artifacts/job-42/`; must end with `/`.
        output_prefix: String,
        /// Lifetime in minutes (1..=[`MAX_TTL_MINUTES`]).
        ttl_minutes: u32,
    },
    /// An API user token: a role within one team.
    User {
        /// The user's name.
        subject: String,
        /// The user's role.
        role: Role,
        /// The user's team.
        team: String,
        /// Lifetime in minutes (1..=[`MAX_TTL_MINUTES`]).
        ttl_minutes: u32,
    },
}

impl TokenSpec {
    fn validate(&self) -> Result<(), IdentityError> {
        let bad = |m: &str| Err(IdentityError::InvalidSpec(m.to_owned()));
        let ttl = match self {
            TokenSpec::Job {
                job_id,
                zone,
                inputs,
                output_prefix,
                ttl_minutes,
            } => {
                if job_id.trim().is_empty() {
                    return bad("job id is empty");
                }
                if zone.trim().is_empty() {
                    return bad("zone is empty");
                }
                if inputs.iter().any(|i| i.trim().is_empty()) {
                    return bad("an input resource is empty");
                }
                if output_prefix.len() < 2 || !output_prefix.ends_with('/') {
                    return bad("output prefix must be a non-empty path ending with '/'");
                }
                // A relative path of plain segments: nothing that climbs out of where it
                // points, no absolute path, no control or space characters.
                let plain = |seg: &str| {
                    !seg.is_empty()
                        && !seg.starts_with('.')
                        && seg.bytes().all(|b| {
                            b.is_ascii_alphanumeric()
                                || matches!(b, b'.' | b'_' | b'-' | b':' | b'@' | b'+')
                        })
                };
                let segments = output_prefix.strip_suffix('/').unwrap_or(output_prefix);
                if output_prefix.len() > 200 || !segments.split('/').all(plain) {
                    return bad("output prefix must be a relative path of plain segments (letters, digits and . _ - : @ +, not starting with '.'), ending with '/', at most 200 bytes");
                }
                *ttl_minutes
            }
            TokenSpec::User {
                subject,
                team,
                ttl_minutes,
                ..
            } => {
                if subject.trim().is_empty() {
                    return bad("subject is empty");
                }
                if team.trim().is_empty() {
                    return bad("team is empty");
                }
                *ttl_minutes
            }
        };
        if ttl == 0 || ttl > MAX_TTL_MINUTES {
            return Err(IdentityError::InvalidSpec(format!(
                "lifetime must be 1..={MAX_TTL_MINUTES} minutes, got {ttl}"
            )));
        }
        Ok(())
    }
}

/// A private root key with its key id: the only thing that can mint tokens.
pub struct Issuer {
    key_id: u32,
    keypair: KeyPair,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("key_id", &self.key_id)
            .field("public_key", &self.keypair.public().to_bytes_hex())
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// A fresh ed25519 root key from the operating system's random source.
    #[must_use]
    pub fn generate(key_id: u32) -> Self {
        Self {
            key_id,
            keypair: KeyPair::new(),
        }
    }

    /// Loads a root key from its hex-encoded 32-byte ed25519 private key.
    ///
    /// # Errors
    /// [`IdentityError::InvalidKeyring`] if the hex or the key is invalid.
    pub fn from_private_hex(key_id: u32, private_hex: &str) -> Result<Self, IdentityError> {
        let private = PrivateKey::from_bytes_hex(private_hex.trim(), Algorithm::Ed25519)
            .map_err(|e| IdentityError::InvalidKeyring(format!("private key {key_id}: {e}")))?;
        Ok(Self {
            key_id,
            keypair: KeyPair::from(&private),
        })
    }

    /// Hex of the private key, for storing in a file only the issuer can read.
    #[must_use]
    pub fn private_hex(&self) -> String {
        self.keypair.private().to_bytes_hex()
    }

    /// This issuer's key id.
    #[must_use]
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The keyring entry for this key, valid from `not_before` until `not_after`.
    #[must_use]
    pub fn root_key(&self, not_before: u64, not_after: u64) -> RootKey {
        RootKey {
            id: self.key_id,
            algorithm: "ed25519".to_owned(),
            public_key: self.keypair.public().to_bytes_hex(),
            not_before,
            not_after,
            revoked_at: None,
        }
    }

    /// Mints a token for `spec` at time `now`. The key must be usable in `keyring` at `now`
    /// (minting with a revoked or expired root key is refused) and its public half must match.
    ///
    /// # Errors
    /// [`IdentityError::InvalidSpec`] for a bad spec, key errors from the keyring, or
    /// [`IdentityError::Library`] if the token library fails.
    pub fn mint(
        &self,
        keyring: &RootKeyring,
        spec: &TokenSpec,
        now: u64,
    ) -> Result<String, IdentityError> {
        spec.validate()?;
        let public = keyring.usable_key(self.key_id, now)?;
        if public != self.keypair.public() {
            return Err(IdentityError::InvalidKeyring(format!(
                "keyring entry {} does not match this private key",
                self.key_id
            )));
        }
        let ttl = match spec {
            TokenSpec::Job { ttl_minutes, .. } | TokenSpec::User { ttl_minutes, .. } => {
                *ttl_minutes
            }
        };
        let expires_at = now.saturating_add(u64::from(ttl) * 60);
        let mut builder = Biscuit::builder().root_key_id(self.key_id);
        let mut facts = Vec::new();
        match spec {
            TokenSpec::Job {
                job_id,
                zone,
                inputs,
                output_prefix,
                ..
            } => {
                facts.push(fact("kind", &[string("job")]));
                facts.push(fact("job", &[string(job_id)]));
                facts.push(fact("job_zone", &[string(zone)]));
                facts.push(fact("output_prefix", &[string(output_prefix)]));
                for input in inputs {
                    facts.push(fact("input", &[string(input)]));
                }
            }
            TokenSpec::User {
                subject,
                role,
                team,
                ..
            } => {
                facts.push(fact("kind", &[string("user")]));
                facts.push(fact("subject", &[string(subject)]));
                facts.push(fact("role", &[string(role.as_str())]));
                facts.push(fact("team", &[string(team)]));
            }
        }
        facts.push(fact("expires", &[unix_date(expires_at)]));
        for f in facts {
            builder = builder.fact(f).map_err(lib)?;
        }
        let params = HashMap::from([("exp".to_owned(), unix_date(expires_at))]);
        builder = builder
            .code_with_params("check if time($t), $t < {exp};", params, HashMap::new())
            .map_err(lib)?;
        let token = builder.build(&self.keypair).map_err(lib)?;
        tracing::debug!(key_id = self.key_id, expires_at, "minted token");
        token.to_base64().map_err(lib)
    }
}

/// Restrictions to append to a token. Each present field adds one check; a token can only
/// become narrower.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attenuation {
    /// The token stops working at this time (Unix seconds), if earlier than its own expiry.
    pub expires_at: Option<u64>,
    /// Only this operation.
    pub operation: Option<Operation>,
    /// Only resources starting with this prefix.
    pub resource_prefix: Option<String>,
    /// Only requests from this zone.
    pub zone: Option<String>,
}

/// Appends a block of checks to `token`, offline and without any private root key.
///
/// The block holds **checks only**: facts in appended blocks are never trusted by the
/// verifier's policies, so no block can grant what the authority block did not.
///
/// # Errors
/// [`IdentityError::Malformed`] if `token` does not parse, [`IdentityError::InvalidSpec`] for
/// an empty attenuation.
pub fn attenuate(token: &str, restriction: &Attenuation) -> Result<String, IdentityError> {
    let unverified = UnverifiedBiscuit::from_base64(token.trim())
        .map_err(|e| IdentityError::Malformed(e.to_string()))?;
    let mut block = BlockBuilder::new();
    let mut added = 0usize;
    if let Some(exp) = restriction.expires_at {
        let params = HashMap::from([("exp".to_owned(), unix_date(exp))]);
        block = block
            .code_with_params("check if time($t), $t < {exp};", params, HashMap::new())
            .map_err(lib)?;
        added += 1;
    }
    if let Some(op) = restriction.operation {
        let params = HashMap::from([("op".to_owned(), string(op.as_str()))]);
        block = block
            .code_with_params("check if req_operation({op});", params, HashMap::new())
            .map_err(lib)?;
        added += 1;
    }
    if let Some(prefix) = &restriction.resource_prefix {
        let params = HashMap::from([("p".to_owned(), string(prefix))]);
        block = block
            .code_with_params(
                "check if req_resource($r), $r.starts_with({p});",
                params,
                HashMap::new(),
            )
            .map_err(lib)?;
        added += 1;
    }
    if let Some(zone) = &restriction.zone {
        let params = HashMap::from([("z".to_owned(), string(zone))]);
        block = block
            .code_with_params("check if req_zone({z});", params, HashMap::new())
            .map_err(lib)?;
        added += 1;
    }
    if added == 0 {
        return Err(IdentityError::InvalidSpec(
            "attenuation adds no restriction".to_owned(),
        ));
    }
    let narrowed = unverified.append(block).map_err(lib)?;
    narrowed.to_base64().map_err(lib)
}

/// A Datalog date of `secs` Unix seconds. Biscuit dates are Unix seconds (`u64`), so every
/// value is one; going through `SystemTime` would overflow past the platform's range.
pub(crate) fn unix_date(secs: u64) -> Term {
    Term::Date(secs)
}

/// A date read back from a query, as Unix seconds (without a `SystemTime`, which cannot hold
/// every date a token can carry).
#[derive(Debug, Clone, Copy)]
pub(crate) struct UnixDate(pub(crate) u64);

impl TryFrom<Term> for UnixDate {
    type Error = biscuit_auth::error::Token;

    fn try_from(t: Term) -> Result<Self, Self::Error> {
        match t {
            Term::Date(d) => Ok(Self(d)),
            other => Err(biscuit_auth::error::Token::ConversionError(format!(
                "expected a date, got {other}"
            ))),
        }
    }
}

pub(crate) fn lib(e: biscuit_auth::error::Token) -> IdentityError {
    IdentityError::Library(e.to_string())
}
