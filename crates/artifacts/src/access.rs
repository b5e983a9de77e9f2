//! Token-gated reads: the artifact endpoint checks a scoped job token offline before handing out
//! content, and records every use (and every refusal) as an evidence event first.
//!
//! The resource a token must name is `<kind>:<digest>`, e.g. `checkpoint:sha256:...` or
//! `model:sha256:...`, exactly as minted into the job token's inputs.

use tidegate_identity::{IdentityError, Operation, Request, Verifier};

use crate::events::ArtifactEvent;
use crate::signing::Keyring;
use crate::{ArtifactError, ArtifactRecord, ArtifactStore, Digest};

/// The resource name a token must grant to read `digest` of `kind`.
#[must_use]
pub fn resource_name(kind: crate::ArtifactKind, digest: &Digest) -> String {
    format!("{kind}:{digest}")
}

/// A short identifier for why a token was refused, fit for evidence records (the message
/// itself may quote token content).
#[must_use]
pub fn refusal_code(e: &IdentityError) -> &'static str {
    match e {
        IdentityError::Malformed(_) => "token-malformed",
        IdentityError::MissingKeyId => "token-missing-key-id",
        IdentityError::UnknownRootKey(_) => "token-unknown-root-key",
        IdentityError::RevokedRootKey { .. } => "token-root-key-revoked",
        IdentityError::RootKeyOutsideWindow { .. } => "token-root-key-outside-window",
        IdentityError::BadSignature { .. } => "token-bad-signature",
        IdentityError::RevokedToken(_) => "token-revoked",
        IdentityError::Expired { .. } => "token-expired",
        IdentityError::Denied(_) => "token-request-denied",
        IdentityError::InvalidSpec(_) => "token-invalid-spec",
        IdentityError::InvalidKeyring(_) => "token-invalid-keyring",
        IdentityError::Library(_) => "token-library-error",
    }
}

/// Decides whether an artifact may be held in a zone (the caller's fleet, hard constraints and
/// policy: see `tidegate_data::holding`); `Err` says why not. A token grant never overrides it.
pub type Admit<'a> = &'a dyn Fn(&ArtifactRecord, &str) -> Result<(), String>;

/// Refusal code of a read into a zone the artifact may not be in.
pub const ZONE_NOT_ALLOWED: &str = "zone-not-allowed";

/// Reads `digest` for the holder of `token` in `zone` at `now`: the token must verify against
/// `verifier`'s root keys and grant a read of [`resource_name`]; `admit` must allow the
/// artifact in `zone` (its classification against the zone, whatever the token grants); the
/// artifact must verify against `keyring` (checkpoints and models need signed provenance). The
/// use is recorded before content is returned; a refusal is recorded too.
///
/// # Errors
/// [`ArtifactError::TokenRefused`] naming why the token was refused (or
/// [`ZONE_NOT_ALLOWED`]), or any verification error.
#[allow(clippy::too_many_arguments)]
pub fn read_with_token(
    store: &ArtifactStore,
    verifier: &Verifier,
    keyring: &Keyring,
    admit: Admit<'_>,
    token: &str,
    digest: &Digest,
    zone: &str,
    now: u64,
) -> Result<Vec<u8>, ArtifactError> {
    let record = store.record(digest)?;
    let resource = resource_name(record.kind, digest);
    let request = Request::Data {
        operation: Operation::Read,
        resource: resource.clone(),
        zone: zone.to_owned(),
    };
    let grant = match verifier.authorize(token, &request, now) {
        Ok(g) => g,
        Err(e) => {
            store.record_event(&ArtifactEvent::TokenRefused {
                digest: digest.clone(),
                zone: zone.to_owned(),
                reason: e.to_string(),
                code: refusal_code(&e).to_owned(),
                token_id: Verifier::claimed_token_id(token),
                at: now,
            })?;
            return Err(ArtifactError::TokenRefused {
                resource,
                code: refusal_code(&e),
                reason: e.to_string(),
            });
        }
    };
    if let Err(why) = admit(&record, zone) {
        store.record_event(&ArtifactEvent::TokenRefused {
            digest: digest.clone(),
            zone: zone.to_owned(),
            reason: why.clone(),
            code: ZONE_NOT_ALLOWED.to_owned(),
            token_id: Some(grant.claims.revocation_id.clone()),
            at: now,
        })?;
        return Err(ArtifactError::TokenRefused {
            resource,
            code: ZONE_NOT_ALLOWED,
            reason: why,
        });
    }
    let claims = grant.claims;
    store.record_event(&ArtifactEvent::TokenUse {
        digest: digest.clone(),
        resource,
        job: claims.job.clone(),
        subject: claims.job.or(claims.subject).unwrap_or_default(),
        key_id: claims.key_id,
        revocation_id: claims.revocation_id,
        zone: zone.to_owned(),
        at: now,
    })?;
    if record.kind.requires_provenance() {
        Ok(store.pull(digest, keyring, now)?.0)
    } else {
        store.get(digest)
    }
}
