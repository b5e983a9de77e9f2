//! The artifact operations both front ends run: the command line working directly on a data
//! directory, and the control plane's artifact API. Each opens what it needs from the store's
//! own data directory (signing keyring, promotion policy, promotion history), so the two modes
//! read, verify and promote alike.

use std::path::Path;

use tidegate_identity::{RootKeyStore, Verifier};

use crate::gates::{self, PromotionRecord, Stage};
use crate::signing::Keyring;
use crate::{access, ArtifactError, ArtifactRecord, ArtifactStore, Digest, VerifyReport};

/// The signing keyring of the store's data directory (`<data-dir>/keys/signing/`).
///
/// # Errors
/// I/O errors or a corrupt keyring.
pub fn signing_keyring(store: &ArtifactStore) -> Result<Keyring, ArtifactError> {
    store.trusted_keyring()
}

/// A verifier for scoped tokens trusting the root keys under `keys_dir` (the direct mode uses
/// `<data-dir>/keys`, the control plane its configured token keys).
///
/// # Errors
/// [`ArtifactError::Key`] when the token keyring cannot be read.
pub fn token_verifier(keys_dir: &Path) -> Result<Verifier, ArtifactError> {
    let roots = RootKeyStore::new(keys_dir)
        .keyring()
        .map_err(|e| ArtifactError::Key(format!("token keyring in {}: {e}", keys_dir.display())))?;
    Ok(Verifier::new(roots))
}

/// The verified content of `digest` at `now`: decrypted, authenticated and re-hashed to its
/// digest; checkpoints and models must also carry signed provenance that verifies against the
/// store's keyring.
///
/// # Errors
/// [`ArtifactError::NotFound`], [`ArtifactError::Tampered`], [`ArtifactError::Shredded`] or a
/// signature error.
pub fn read_verified(
    store: &ArtifactStore,
    digest: &Digest,
    now: u64,
) -> Result<(ArtifactRecord, Vec<u8>), ArtifactError> {
    let record = store.record(digest)?;
    let content = if record.kind.requires_provenance() {
        store.pull(digest, &signing_keyring(store)?, now)?.0
    } else {
        store.get(digest)?
    };
    Ok((record, content))
}

/// A read with a scoped job token, checked offline by `verifier` for `<kind>:<digest>` from
/// `zone`, with `admit` deciding whether the artifact may be in `zone` at all
/// ([`access::read_with_token`]): the use, or the refusal, is recorded before anything is
/// returned.
///
/// # Errors
/// [`ArtifactError::TokenRefused`] with the refusal code, or any verification error.
pub fn read_with_job_token(
    store: &ArtifactStore,
    verifier: &Verifier,
    admit: access::Admit<'_>,
    token: &str,
    digest: &Digest,
    zone: &str,
    now: u64,
) -> Result<(ArtifactRecord, Vec<u8>), ArtifactError> {
    let record = store.record(digest)?;
    let keyring = signing_keyring(store)?;
    let content =
        access::read_with_token(store, verifier, &keyring, admit, token, digest, zone, now)?;
    Ok((record, content))
}

/// Verifies `digest` fully at `now` against the store's keyring ([`ArtifactStore::verify`]).
///
/// # Errors
/// The first failure, naming what is tampered or unsigned.
pub fn verify(
    store: &ArtifactStore,
    digest: &Digest,
    now: u64,
) -> Result<VerifyReport, ArtifactError> {
    store.verify(digest, &signing_keyring(store)?, now)
}

/// Every record with its current stage, in the store's order.
///
/// # Errors
/// I/O or parse errors.
pub fn list_with_stages(
    store: &ArtifactStore,
) -> Result<Vec<(ArtifactRecord, Stage)>, ArtifactError> {
    let history = store.history()?;
    Ok(store
        .list()?
        .into_iter()
        .map(|r| {
            let stage = history.stage(&r.digest);
            (r, stage)
        })
        .collect())
}

/// Promotes `digest` to `to` for `actor` through the data directory's Cedar promotion gates
/// ([`gates::load_policy`], [`gates::promote`]); a refusal is recorded and names each missing
/// piece of evidence.
///
/// # Errors
/// Verification errors, policy errors or [`ArtifactError::PromotionRefused`].
pub fn promote(
    store: &ArtifactStore,
    digest: &Digest,
    to: Stage,
    actor: &str,
    now: u64,
) -> Result<PromotionRecord, ArtifactError> {
    let policy = gates::load_policy(store)?;
    gates::promote(
        store,
        &signing_keyring(store)?,
        &policy,
        digest,
        to,
        actor,
        now,
    )
}
