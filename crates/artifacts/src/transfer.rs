//! Sync back: bring an artifact produced in another zone (a public burst zone) into this store
//! through a gated transfer. Nothing is copied unless the source object is intact, carries SLSA
//! provenance signed by a key *this* store trusts, and was built in an allowed source zone; the
//! copy is verified again on arrival and removed if that fails.

use crate::intoto::Provenance;
use crate::signing::Keyring;
use crate::{ArtifactError, ArtifactStore, Digest, PutOptions};

/// What a successful import brought in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// The artifact.
    pub digest: Digest,
    /// Zone it was built in (from its verified provenance).
    pub zone: String,
    /// Job that built it.
    pub job_id: String,
    /// Keys that signed its provenance.
    pub keyids: Vec<String>,
    /// Number of envelopes carried over.
    pub envelopes: usize,
}

/// Imports `digest` from `source` into `dest` at `now`, trusting only `keyring` (the
/// destination's keyring) and only artifacts built in one of `allowed_zones`.
///
/// # Errors
/// [`ArtifactError::Tampered`] if the source object is damaged, [`ArtifactError::Signature`]
/// or [`ArtifactError::Key`] if its envelopes do not verify or it has no provenance,
/// [`ArtifactError::Invalid`] if it was built in a zone that is not allowed.
pub fn import(
    source: &ArtifactStore,
    dest: &ArtifactStore,
    keyring: &Keyring,
    allowed_zones: &[String],
    digest: &Digest,
    now: u64,
) -> Result<ImportReport, ArtifactError> {
    let report = source.verify(digest, keyring, now)?;
    let prov = report.provenance().ok_or_else(|| {
        ArtifactError::Signature(format!(
            "{digest} has no signed SLSA provenance; only attested artifacts are synced back"
        ))
    })?;
    let facts = Provenance::from_predicate(&prov.statement.predicate)?;
    if !allowed_zones.iter().any(|z| z == &facts.zone) {
        return Err(ArtifactError::Invalid(format!(
            "{digest} was built in zone {:?}, which is not an allowed source zone ({})",
            facts.zone,
            allowed_zones.join(", ")
        )));
    }
    let content = source.get(digest)?;
    let record = &report.record;
    let options = PutOptions {
        name: record.name.clone(),
        lane: record.lane,
        sensitive: record.sensitive,
        labels: record.labels.clone(),
        classification: record.classification.clone(),
    };
    dest.put(&content, record.kind, &options, now)?;
    let envelopes = source.envelopes(digest)?;
    for env in &envelopes {
        dest.attach(digest, env)?;
    }
    if let Err(e) = dest.verify(digest, keyring, now) {
        tracing::error!(%digest, error = %e, "imported artifact failed verification; removing");
        dest.shred(digest)?;
        return Err(e);
    }
    tracing::info!(%digest, zone = %facts.zone, job = %facts.job_id, "imported artifact");
    Ok(ImportReport {
        digest: digest.clone(),
        zone: facts.zone,
        job_id: facts.job_id,
        keyids: prov.keyids.clone(),
        envelopes: envelopes.len(),
    })
}
