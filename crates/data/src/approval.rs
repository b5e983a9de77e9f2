//! Approval of sanitizer profiles. A profile read from a file earns a lower classification only
//! when a key with the `approver` role, held in the data directory's keyring, signed exactly its
//! bytes: a DSSE envelope over an in-toto statement whose subject is the profile's `sha256:`
//! digest (`tidegate sanitize sign-profile`, kept beside the profile as `PROFILE.sig`). Built-in
//! profiles need none. Any changed byte changes the digest, and the approval no longer covers it.

use std::path::{Path, PathBuf};

use serde_json::json;
use tidegate_artifacts::dsse::Envelope;
use tidegate_artifacts::signing::{Keyring, Signer};
use tidegate_artifacts::{gates, Digest};
use tidegate_sanitize::{Approval, Profile};

use crate::DataError;

/// Predicate type of a profile approval.
pub const PROFILE_APPROVAL: &str =
    "https://tidegate.dev/attestations/sanitizer-profile-approval/v1";

/// The role a key needs for its signature to approve a profile.
pub const APPROVER_ROLE: &str = "approver";

/// A profile approval that verified: what the sanitizer is told, and the envelope and profile
/// bytes to keep as evidence.
#[derive(Debug, Clone)]
pub struct VerifiedProfile {
    /// The approver key and the profile digest it signed.
    pub approval: Approval,
    /// The signed envelope.
    pub envelope: Envelope,
    /// The profile's bytes.
    pub text: String,
}

fn refused(source: &str, message: impl Into<String>) -> DataError {
    DataError::Approval {
        profile: source.to_owned(),
        message: message.into(),
    }
}

fn digest_of(profile: &Profile) -> Result<Digest, DataError> {
    profile
        .digest()
        .parse()
        .map_err(|e| refused(&profile.source, format!("profile digest: {e}")))
}

/// Signs `profile` (its exact bytes) with `signer`, an approver's key.
///
/// # Errors
/// A built-in profile (it needs no approval), or a statement that does not serialize.
pub fn sign_profile(signer: &Signer, profile: &Profile, now: u64) -> Result<Envelope, DataError> {
    if profile.is_builtin() {
        return Err(refused(
            &profile.source,
            "a built-in profile needs no approval",
        ));
    }
    let digest = digest_of(profile)?;
    let statement = gates::attestation(
        &profile.name,
        &digest,
        PROFILE_APPROVAL,
        json!({
            "profile": profile.name,
            "input_classification": profile.input_classification,
            "output_classification": profile.output_classification,
            "lifts": profile.lifts,
        }),
        now,
    )?;
    Ok(signer.sign_statement(&statement)?)
}

/// Verifies `envelope` as an approval of `profile` at `now` against `keyring`: every signature
/// verifies with a known, unrevoked key valid when it signed; one signer holds the approver
/// role; the statement is a profile approval whose subject is exactly the profile's digest.
///
/// # Errors
/// [`DataError::Approval`] saying which of these fails, or the keyring's refusal.
pub fn verify_profile(
    keyring: &Keyring,
    envelope: &Envelope,
    profile: &Profile,
    now: u64,
) -> Result<VerifiedProfile, DataError> {
    let source = &profile.source;
    let v = keyring
        .verify(envelope, now)
        .map_err(|e| refused(source, e.to_string()))?;
    if v.statement.predicate_type != PROFILE_APPROVAL {
        return Err(refused(
            source,
            format!(
                "the signed statement is a {}, not a profile approval",
                v.statement.predicate_type
            ),
        ));
    }
    let Some(keyid) = v
        .keyids
        .iter()
        .find(|k| {
            keyring
                .get(k)
                .is_some_and(|e| e.roles.iter().any(|r| r == APPROVER_ROLE))
        })
        .cloned()
    else {
        return Err(refused(
            source,
            format!(
                "signed by {} without the {APPROVER_ROLE} role",
                v.keyids.join(", ")
            ),
        ));
    };
    let digest = digest_of(profile)?;
    if !v.statement.covers(&digest) {
        return Err(refused(
            source,
            format!("the approval by {keyid} covers another profile: this one ({digest}) was changed since it was signed"),
        ));
    }
    Ok(VerifiedProfile {
        approval: Approval {
            keyid,
            profile_digest: profile.digest().to_owned(),
        },
        envelope: envelope.clone(),
        text: profile.text().to_owned(),
    })
}

/// The approval file of a profile file: `PROFILE.sig` beside it.
#[must_use]
pub fn signature_path(profile_path: &Path) -> PathBuf {
    let mut p = profile_path.as_os_str().to_owned();
    p.push(".sig");
    PathBuf::from(p)
}

/// The verified approval of `profile` for a run: none for a built-in profile or a profile file
/// without a signature (`signature`, else `PROFILE.sig` when it exists; such a profile then
/// earns nothing); a signature that is there but does not verify refuses the run.
///
/// # Errors
/// An unreadable or invalid signature file, or [`verify_profile`]'s refusal.
pub fn approval_for(
    keyring: &Keyring,
    profile: &Profile,
    signature: Option<&Path>,
    now: u64,
) -> Result<Option<VerifiedProfile>, DataError> {
    if profile.is_builtin() {
        return Ok(None);
    }
    let path = match signature {
        Some(p) => p.to_path_buf(),
        None => {
            let p = signature_path(Path::new(&profile.source));
            if !p.is_file() {
                return Ok(None);
            }
            p
        }
    };
    let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
    let envelope = Envelope::from_json(&bytes)
        .map_err(|e| refused(&path.display().to_string(), e.to_string()))?;
    verify_profile(keyring, &envelope, profile, now).map(Some)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const YAML: &str = "name: p\ninput_classification: restricted/phi\noutput_classification: public\nreference_year: 2025\ntables:\n  t:\n    columns: { A: drop }\n";

    fn ring(signer: &Signer, roles: &[&str]) -> Keyring {
        let mut r = Keyring::default();
        r.add(signer.entry("alice", roles, 0, 10_000)).unwrap();
        r
    }

    #[test]
    fn an_approver_signature_covers_exactly_the_signed_bytes() {
        let p = Profile::from_yaml(YAML, "p.yaml").unwrap();
        let approver = Signer::generate();
        let env = sign_profile(&approver, &p, 100).unwrap();
        let ok = verify_profile(&ring(&approver, &["approver"]), &env, &p, 200).unwrap();
        assert_eq!(ok.approval.keyid, approver.keyid());
        assert_eq!(ok.approval.profile_digest, p.digest());
        // One byte changed: another digest, not covered.
        let changed = Profile::from_yaml(&YAML.replace("2025", "2026"), "p.yaml").unwrap();
        let e = verify_profile(&ring(&approver, &["approver"]), &env, &changed, 200).unwrap_err();
        assert!(e.to_string().contains("changed since it was signed"), "{e}");
        // A builder key is no approver; an unknown key is refused.
        let e = verify_profile(&ring(&approver, &["builder"]), &env, &p, 200).unwrap_err();
        assert!(e.to_string().contains("without the approver role"), "{e}");
        let e =
            verify_profile(&ring(&Signer::generate(), &["approver"]), &env, &p, 200).unwrap_err();
        assert!(e.to_string().contains("not in the trusted keyring"), "{e}");
        // A changed signature byte does not verify.
        let mut bad = env.clone();
        let mut sig = bad.signatures[0].sig.clone().into_bytes();
        sig[3] = if sig[3] == b'A' { b'B' } else { b'A' };
        bad.signatures[0].sig = String::from_utf8(sig).unwrap();
        assert!(verify_profile(&ring(&approver, &["approver"]), &bad, &p, 200).is_err());
    }
}
