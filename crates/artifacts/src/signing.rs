//! ed25519 signing keys for provenance and attestations: a keyring of public keys with key ids,
//! owners, roles, validity windows and revocation, and the DSSE sign/verify pair.
//!
//! Rules (fail closed):
//! - every signature on an envelope must verify; one bad, unknown or revoked signature refuses
//!   the envelope;
//! - a key is accepted only for signatures made inside its validity window, so retiring a key at
//!   rotation keeps everything it signed before verifiable, while a signature it makes afterwards
//!   is refused. The time that counts is when the evidence ledger recorded the envelope
//!   ([`Keyring::verify_recorded`], what the store uses), never the time the statement claims: a
//!   retired key's holder cannot sign by backdating;
//! - a revoked key verifies nothing, whatever the time (revocation means compromise);
//! - a statement may not claim a signing time more than [`MAX_CLOCK_SKEW`] in the future.

use std::fs;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::atomic::{write_atomic, write_secret};
use crate::dsse::{pae, Envelope, Signature, INTOTO_PAYLOAD_TYPE};
use crate::intoto::Statement;
use crate::{ArtifactError, Digest};

/// How far in the future a statement's signing time may be, in seconds.
pub const MAX_CLOCK_SKEW: u64 = 300;

/// One public signing key in the keyring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    /// Key id: `ed25519:` and the first 16 hex digits of SHA-256 of the public key.
    pub keyid: String,
    /// Always `ed25519`.
    pub algorithm: String,
    /// Hex of the 32-byte public key.
    pub public_key: String,
    /// Who holds the private key (a zone builder, a person).
    pub owner: String,
    /// What its signatures count as: `builder`, `approver`, ...
    pub roles: Vec<String>,
    /// Start of validity, inclusive (Unix seconds).
    pub not_before: u64,
    /// End of validity, exclusive (Unix seconds); lowered when the key is rotated out.
    pub not_after: u64,
    /// Set when revoked: nothing it signed verifies any more.
    #[serde(default)]
    pub revoked_at: Option<u64>,
}

/// The public half of the signing keys a verifier trusts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keyring {
    /// The keys; ids are unique.
    pub keys: Vec<KeyEntry>,
}

/// A private signing key and its id.
pub struct Signer {
    keyid: String,
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("keyid", &self.keyid)
            .finish_non_exhaustive()
    }
}

fn keyid_of(public: &VerifyingKey) -> String {
    format!(
        "ed25519:{}",
        &hex::encode(Sha256::digest(public.as_bytes()))[..16]
    )
}

impl Signer {
    /// A fresh key from the operating system's random source.
    #[must_use]
    pub fn generate() -> Self {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        Self {
            keyid: keyid_of(&key.verifying_key()),
            key,
        }
    }

    /// Loads a key from the hex of its 32-byte seed.
    ///
    /// # Errors
    /// [`ArtifactError::Key`] if the hex is invalid.
    pub fn from_hex(seed_hex: &str) -> Result<Self, ArtifactError> {
        let bytes = hex::decode(seed_hex.trim())
            .map_err(|e| ArtifactError::Key(format!("private key is not hex: {e}")))?;
        let seed = <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| ArtifactError::Key("private key must be 32 bytes".to_owned()))?;
        let key = SigningKey::from_bytes(&seed);
        Ok(Self {
            keyid: keyid_of(&key.verifying_key()),
            key,
        })
    }

    /// Hex of the private seed, for a file only its owner reads.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.key.to_bytes())
    }

    /// The key id.
    #[must_use]
    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// The keyring entry for this key.
    #[must_use]
    pub fn entry(&self, owner: &str, roles: &[&str], not_before: u64, not_after: u64) -> KeyEntry {
        KeyEntry {
            keyid: self.keyid.clone(),
            algorithm: "ed25519".to_owned(),
            public_key: hex::encode(self.key.verifying_key().as_bytes()),
            owner: owner.to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            not_before,
            not_after,
            revoked_at: None,
        }
    }

    /// Signs an in-toto statement into a DSSE envelope.
    ///
    /// # Errors
    /// [`ArtifactError::Invalid`] if the statement does not serialize.
    pub fn sign_statement(&self, statement: &Statement) -> Result<Envelope, ArtifactError> {
        let payload =
            serde_json::to_vec(statement).map_err(|e| ArtifactError::Invalid(e.to_string()))?;
        Ok(self.sign_payload(INTOTO_PAYLOAD_TYPE, &payload))
    }

    /// Signs arbitrary bytes of `payload_type` into a DSSE envelope (signature over the PAE).
    #[must_use]
    pub fn sign_payload(&self, payload_type: &str, payload: &[u8]) -> Envelope {
        let sig = self.key.sign(&pae(payload_type, payload));
        Envelope {
            payload: B64.encode(payload),
            payload_type: payload_type.to_owned(),
            signatures: vec![Signature {
                keyid: self.keyid.clone(),
                sig: B64.encode(sig.to_bytes()),
            }],
        }
    }
}

/// A statement whose envelope verified, with who signed it.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedStatement {
    /// The statement.
    pub statement: Statement,
    /// Key ids of the signers.
    pub keyids: Vec<String>,
    /// Owners of the signing keys.
    pub owners: Vec<String>,
    /// Union of the signing keys' roles.
    pub roles: Vec<String>,
    /// The statement's signing time (Unix seconds).
    pub signed_at: u64,
}

impl Keyring {
    /// Parses a keyring from JSON and checks it.
    ///
    /// # Errors
    /// [`ArtifactError::Key`] for invalid JSON, duplicate ids or bad keys.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ArtifactError> {
        let ring: Keyring = serde_json::from_slice(bytes)
            .map_err(|e| ArtifactError::Key(format!("signing keyring: {e}")))?;
        let mut ids = std::collections::BTreeSet::new();
        for k in &ring.keys {
            if !ids.insert(k.keyid.clone()) {
                return Err(ArtifactError::Key(format!("duplicate key id {}", k.keyid)));
            }
            let vk = parse_public(k)?;
            if keyid_of(&vk) != k.keyid {
                return Err(ArtifactError::Key(format!(
                    "key id {} does not match its key",
                    k.keyid
                )));
            }
        }
        Ok(ring)
    }

    /// Adds a key; refuses a duplicate id.
    ///
    /// # Errors
    /// [`ArtifactError::Key`] for a duplicate id.
    pub fn add(&mut self, entry: KeyEntry) -> Result<(), ArtifactError> {
        if self.get(&entry.keyid).is_some() {
            return Err(ArtifactError::Key(format!(
                "duplicate key id {}",
                entry.keyid
            )));
        }
        self.keys.push(entry);
        Ok(())
    }

    /// The entry for `keyid`.
    #[must_use]
    pub fn get(&self, keyid: &str) -> Option<&KeyEntry> {
        self.keys.iter().find(|k| k.keyid == keyid)
    }

    /// The keyring's digest: SHA-256 of its compact JSON (what `key.changed` entries record, so a
    /// keyring file edited outside tidegate is recognised whatever its formatting).
    ///
    /// # Errors
    /// [`ArtifactError::Invalid`] if it cannot be encoded.
    pub fn digest(&self) -> Result<Digest, ArtifactError> {
        Ok(Digest::of(&self.to_compact_json()?))
    }

    /// The keyring as compact JSON (the document a `key.changed` entry's digest names).
    ///
    /// # Errors
    /// [`ArtifactError::Invalid`] if it cannot be encoded.
    pub fn to_compact_json(&self) -> Result<Vec<u8>, ArtifactError> {
        serde_json::to_vec(self).map_err(|e| ArtifactError::Invalid(e.to_string()))
    }

    /// Marks `keyid` revoked at `at`.
    ///
    /// # Errors
    /// [`ArtifactError::Key`] if the key is unknown.
    pub fn revoke(&mut self, keyid: &str, at: u64) -> Result<(), ArtifactError> {
        let k = self
            .keys
            .iter_mut()
            .find(|k| k.keyid == keyid)
            .ok_or_else(|| ArtifactError::Key(format!("unknown signing key {keyid}")))?;
        k.revoked_at.get_or_insert(at);
        Ok(())
    }

    /// Ends `keyid`'s validity at `at` (rotation). Signatures dated before stay valid.
    ///
    /// # Errors
    /// [`ArtifactError::Key`] if the key is unknown.
    pub fn retire(&mut self, keyid: &str, at: u64) -> Result<(), ArtifactError> {
        let k = self
            .keys
            .iter_mut()
            .find(|k| k.keyid == keyid)
            .ok_or_else(|| ArtifactError::Key(format!("unknown signing key {keyid}")))?;
        k.not_after = k.not_after.min(at.max(k.not_before.saturating_add(1)));
        Ok(())
    }

    /// Checks that `keyid` may have signed at `signed_at`: known, not revoked, in its window.
    ///
    /// # Errors
    /// [`ArtifactError::Key`] naming the key and what is wrong.
    pub fn check_key(&self, keyid: &str, signed_at: u64) -> Result<&KeyEntry, ArtifactError> {
        let k = self.get(keyid).ok_or_else(|| {
            ArtifactError::Key(format!(
                "unknown signing key {keyid}: not in the trusted keyring"
            ))
        })?;
        if let Some(at) = k.revoked_at {
            return Err(ArtifactError::Key(format!(
                "signing key {keyid} ({}) was revoked at {at}; nothing it signed is trusted",
                k.owner
            )));
        }
        if signed_at < k.not_before || signed_at >= k.not_after {
            return Err(ArtifactError::Key(format!(
                "signing key {keyid} was not valid at signing time {signed_at} (valid {} until {})",
                k.not_before, k.not_after
            )));
        }
        Ok(k)
    }

    /// Verifies a DSSE envelope holding an in-toto statement, at time `now`. Pure.
    ///
    /// # Errors
    /// [`ArtifactError::Signature`] for a wrong payload type, no signatures, a signature that
    /// does not verify or a payload that is not a statement; [`ArtifactError::Key`] for an
    /// unknown, revoked or out-of-window key.
    pub fn verify(
        &self,
        envelope: &Envelope,
        now: u64,
    ) -> Result<VerifiedStatement, ArtifactError> {
        self.verify_inner(envelope, None, now)
    }

    /// Verifies an envelope the evidence ledger recorded at `recorded_at` (Unix seconds): each
    /// key must have been valid *then*, whatever signing time the statement claims, so a retired
    /// key cannot sign by backdating its statement. The verified `signed_at` is `recorded_at`.
    ///
    /// # Errors
    /// As [`Keyring::verify`].
    pub fn verify_recorded(
        &self,
        envelope: &Envelope,
        recorded_at: u64,
        now: u64,
    ) -> Result<VerifiedStatement, ArtifactError> {
        self.verify_inner(envelope, Some(recorded_at), now)
    }

    fn verify_inner(
        &self,
        envelope: &Envelope,
        recorded_at: Option<u64>,
        now: u64,
    ) -> Result<VerifiedStatement, ArtifactError> {
        if envelope.payload_type != INTOTO_PAYLOAD_TYPE {
            return Err(ArtifactError::Signature(format!(
                "payloadType is {:?}, expected {INTOTO_PAYLOAD_TYPE}",
                envelope.payload_type
            )));
        }
        if envelope.signatures.is_empty() {
            return Err(ArtifactError::Signature(
                "envelope has no signatures".to_owned(),
            ));
        }
        let payload = envelope.payload_bytes()?;
        let message = pae(&envelope.payload_type, &payload);
        let mut keys = Vec::new();
        for s in &envelope.signatures {
            let entry = self.get(&s.keyid).ok_or_else(|| {
                ArtifactError::Key(format!(
                    "unknown signing key {}: not in the trusted keyring",
                    s.keyid
                ))
            })?;
            if let Some(at) = entry.revoked_at {
                return Err(ArtifactError::Key(format!(
                    "signing key {} ({}) was revoked at {at}; nothing it signed is trusted",
                    s.keyid, entry.owner
                )));
            }
            let vk = parse_public(entry)?;
            let raw = B64.decode(&s.sig).map_err(|e| {
                ArtifactError::Signature(format!("signature by {} is not base64: {e}", s.keyid))
            })?;
            let sig = ed25519_dalek::Signature::from_slice(&raw).map_err(|_| {
                ArtifactError::Signature(format!("signature by {} is malformed", s.keyid))
            })?;
            vk.verify_strict(&message, &sig).map_err(|_| {
                ArtifactError::Signature(format!(
                    "signature by {} does not match the payload (changed payload or signature)",
                    s.keyid
                ))
            })?;
            keys.push(entry);
        }
        let statement = Statement::from_json(&payload)?;
        let claimed = statement.signed_at()?;
        let signed_at = match recorded_at {
            Some(t) => {
                if claimed > t.saturating_add(MAX_CLOCK_SKEW) {
                    return Err(ArtifactError::Signature(format!(
                        "statement claims signing time {claimed}, in the future of when the evidence ledger recorded it ({t})"
                    )));
                }
                t
            }
            None => claimed,
        };
        if signed_at > now.saturating_add(MAX_CLOCK_SKEW) {
            return Err(ArtifactError::Signature(format!(
                "statement claims signing time {signed_at}, in the future of {now}"
            )));
        }
        let mut roles = Vec::new();
        for k in &keys {
            self.check_key(&k.keyid, signed_at)?;
            roles.extend(k.roles.iter().cloned());
        }
        roles.sort();
        roles.dedup();
        Ok(VerifiedStatement {
            statement,
            keyids: keys.iter().map(|k| k.keyid.clone()).collect(),
            owners: keys.iter().map(|k| k.owner.clone()).collect(),
            roles,
            signed_at,
        })
    }
}

fn parse_public(k: &KeyEntry) -> Result<VerifyingKey, ArtifactError> {
    if k.algorithm != "ed25519" {
        return Err(ArtifactError::Key(format!(
            "key {} has unsupported algorithm {}",
            k.keyid, k.algorithm
        )));
    }
    let bytes = hex::decode(&k.public_key)
        .map_err(|e| ArtifactError::Key(format!("key {}: public key not hex: {e}", k.keyid)))?;
    let arr = <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| ArtifactError::Key(format!("key {}: public key must be 32 bytes", k.keyid)))?;
    VerifyingKey::from_bytes(&arr).map_err(|e| ArtifactError::Key(format!("key {}: {e}", k.keyid)))
}

/// The signing keys of one data directory: `keys/signing/keyring.json` (public),
/// `keys/signing/<keyid>.key` (private, mode 0600) and `keys/signing/active` (the key id new
/// signatures use).
#[derive(Debug)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    /// The key store under `<keys_dir>/signing`.
    #[must_use]
    pub fn new(keys_dir: &Path) -> Self {
        Self {
            dir: keys_dir.join("signing"),
        }
    }

    fn ring_path(&self) -> PathBuf {
        self.dir.join("keyring.json")
    }

    fn key_path(&self, keyid: &str) -> PathBuf {
        self.dir.join(format!("{}.key", keyid.replace(':', "_")))
    }

    /// The public keyring (empty if none yet).
    ///
    /// # Errors
    /// I/O or [`ArtifactError::Key`] for a corrupt keyring.
    pub fn keyring(&self) -> Result<Keyring, ArtifactError> {
        let path = self.ring_path();
        match fs::read(&path) {
            Ok(bytes) => Keyring::from_json(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Keyring::default()),
            Err(e) => Err(ArtifactError::io(&path, e)),
        }
    }

    /// Saves the public keyring atomically.
    ///
    /// # Errors
    /// I/O errors.
    pub fn save_keyring(&self, ring: &Keyring) -> Result<(), ArtifactError> {
        let json =
            serde_json::to_vec_pretty(ring).map_err(|e| ArtifactError::Invalid(e.to_string()))?;
        write_atomic(&self.ring_path(), &json)
    }

    /// Creates a key, adds it to the keyring valid from `now` for `valid_days`, and keeps its
    /// private half. When `make_active`, it becomes the key new signatures use.
    ///
    /// # Errors
    /// I/O and keyring errors.
    pub fn create(
        &self,
        owner: &str,
        roles: &[&str],
        now: u64,
        valid_days: u64,
        make_active: bool,
    ) -> Result<KeyEntry, ArtifactError> {
        let signer = Signer::generate();
        let entry = signer.entry(
            owner,
            roles,
            now,
            now.saturating_add(valid_days.saturating_mul(86_400)),
        );
        let mut ring = self.keyring()?;
        ring.add(entry.clone())?;
        write_secret(&self.key_path(signer.keyid()), signer.to_hex().as_bytes())?;
        self.save_keyring(&ring)?;
        if make_active {
            write_atomic(&self.dir.join("active"), signer.keyid().as_bytes())?;
        }
        tracing::info!(keyid = signer.keyid(), owner, "created signing key");
        Ok(entry)
    }

    /// Rotates the active key: creates a new builder key valid from `now` and retires the old
    /// active key at `now`. Everything the old key signed before stays verifiable.
    ///
    /// # Errors
    /// I/O and keyring errors.
    pub fn rotate(
        &self,
        owner: &str,
        now: u64,
        valid_days: u64,
    ) -> Result<KeyEntry, ArtifactError> {
        let old = self.active_keyid()?;
        let entry = self.create(owner, &["builder"], now, valid_days, true)?;
        if let Some(old) = old {
            let mut ring = self.keyring()?;
            ring.retire(&old, now)?;
            self.save_keyring(&ring)?;
            tracing::info!(old = %old, new = %entry.keyid, "rotated signing key");
        }
        Ok(entry)
    }

    /// Trusts a public key held elsewhere (another zone's builder, an approver's laptop): adds
    /// its entry to the keyring without any private key.
    ///
    /// # Errors
    /// [`ArtifactError::Key`] for a duplicate id or an entry whose id does not match its key.
    pub fn trust(&self, entry: KeyEntry) -> Result<(), ArtifactError> {
        let vk = parse_public(&entry)?;
        if keyid_of(&vk) != entry.keyid {
            return Err(ArtifactError::Key(format!(
                "key id {} does not match its key",
                entry.keyid
            )));
        }
        let mut ring = self.keyring()?;
        ring.add(entry)?;
        self.save_keyring(&ring)
    }

    /// Revokes `keyid` at `now`.
    ///
    /// # Errors
    /// I/O and keyring errors.
    pub fn revoke(&self, keyid: &str, now: u64) -> Result<(), ArtifactError> {
        let mut ring = self.keyring()?;
        ring.revoke(keyid, now)?;
        self.save_keyring(&ring)
    }

    /// The active key id, if one was set.
    ///
    /// # Errors
    /// I/O errors.
    pub fn active_keyid(&self) -> Result<Option<String>, ArtifactError> {
        let path = self.dir.join("active");
        match fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ArtifactError::io(&path, e)),
        }
    }

    /// The private key `keyid`, checked usable at `now` in the keyring.
    ///
    /// # Errors
    /// [`ArtifactError::Key`] if missing, revoked or outside its window.
    pub fn signer(&self, keyid: &str, now: u64) -> Result<Signer, ArtifactError> {
        self.keyring()?.check_key(keyid, now)?;
        let path = self.key_path(keyid);
        let text = fs::read_to_string(&path).map_err(|e| ArtifactError::io(&path, e))?;
        let signer = Signer::from_hex(&text)?;
        if signer.keyid() != keyid {
            return Err(ArtifactError::Key(format!(
                "{} does not hold key {keyid}",
                path.display()
            )));
        }
        Ok(signer)
    }

    /// The active signer at `now`.
    ///
    /// # Errors
    /// [`ArtifactError::Key`] if there is none or it is not usable.
    pub fn active_signer(&self, now: u64) -> Result<Signer, ArtifactError> {
        let keyid = self.active_keyid()?.ok_or_else(|| {
            ArtifactError::Key(
                "no active signing key; create one first (tidegate artifact key init)".to_owned(),
            )
        })?;
        self.signer(&keyid, now)
    }
}
