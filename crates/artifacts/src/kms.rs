//! Key management for encryption at rest: per-object data keys wrapped by a key-encryption key.
//!
//! [`KeyManager`] is the interface an external KMS (cloud KMS, Vault transit, an HSM) implements;
//! [`FileKeyManager`] is the default, keeping a key-encryption key (KEK) and the wrapped data
//! keys under `<data-dir>/keys/`. Destroying an object's wrapped data key makes its ciphertext
//! unrecoverable: that is crypto-shredding.

use std::fs;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::atomic::write_secret;
use crate::{ArtifactError, Digest};

/// A 256-bit data key. Its bytes are wiped from memory when dropped.
pub struct DataKey([u8; 32]);

impl DataKey {
    /// A fresh random data key.
    #[must_use]
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        OsRng.fill_bytes(&mut k);
        Self(k)
    }

    /// The key bytes.
    #[must_use]
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Builds a data key from 32 bytes (for KMS implementations).
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        // Best-effort wipe; write_volatile is not available without unsafe, so overwrite.
        self.0 = [0u8; 32];
        std::hint::black_box(&self.0);
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// Wraps, stores, unwraps and destroys per-object data keys.
pub trait KeyManager: Send + Sync {
    /// Wraps `key` for `object` and keeps the wrapped form.
    ///
    /// # Errors
    /// [`ArtifactError::Kms`] or I/O errors.
    fn seal_data_key(&self, object: &Digest, key: &DataKey) -> Result<(), ArtifactError>;

    /// Unwraps the data key of `object`.
    ///
    /// # Errors
    /// [`ArtifactError::Shredded`] if it was destroyed, [`ArtifactError::Kms`] if it does not
    /// unwrap (wrong KEK, tampered wrapped key).
    fn open_data_key(&self, object: &Digest) -> Result<DataKey, ArtifactError>;

    /// Destroys the wrapped data key of `object` (crypto-shred). Idempotent.
    ///
    /// # Errors
    /// I/O errors.
    fn destroy_data_key(&self, object: &Digest) -> Result<(), ArtifactError>;

    /// A short name for diagnostics (`file`, `vault-transit`, ...).
    fn name(&self) -> &'static str;
}

#[derive(Serialize, Deserialize)]
struct WrappedKey {
    /// Wrapping algorithm.
    alg: String,
    /// Id of the KEK that wrapped it.
    kek_id: String,
    /// Base64 24-byte nonce.
    nonce: String,
    /// Base64 wrapped key (ciphertext + tag).
    wrapped: String,
}

/// File-backed key manager: a random KEK in `keys/kek.key` (mode 0600) and one wrapped data key
/// per object in `keys/wrapped/sha256/<hex>.json`, bound to the object digest as AEAD
/// associated data.
pub struct FileKeyManager {
    dir: PathBuf,
    kek: [u8; 32],
    kek_id: String,
}

impl std::fmt::Debug for FileKeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileKeyManager")
            .field("dir", &self.dir)
            .field("kek_id", &self.kek_id)
            .finish_non_exhaustive()
    }
}

impl FileKeyManager {
    /// Opens the key directory `keys_dir`, creating the KEK on first use.
    ///
    /// # Errors
    /// I/O errors, or [`ArtifactError::Kms`] if the KEK file is corrupt.
    pub fn open(keys_dir: &Path) -> Result<Self, ArtifactError> {
        let path = keys_dir.join("kek.key");
        let kek = match read_kek(&path)? {
            Some(k) => k,
            None => {
                // First use. Write the new KEK to a private temp file, then hard-link it into
                // place: linking never replaces an existing file, so when several processes
                // race, exactly one KEK wins and the others read it.
                let mut k = [0u8; 32];
                OsRng.fill_bytes(&mut k);
                let mut tag = [0u8; 8];
                OsRng.fill_bytes(&mut tag);
                let tmp = keys_dir.join(format!(".kek.{}.tmp", hex::encode(tag)));
                write_secret(&tmp, hex::encode(k).as_bytes())?;
                let linked = fs::hard_link(&tmp, &path);
                let _ = fs::remove_file(&tmp);
                match linked {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "created key-encryption key");
                        k
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_kek(&path)?
                        .ok_or_else(|| {
                            ArtifactError::Kms(format!("{} vanished", path.display()))
                        })?,
                    Err(e) => return Err(ArtifactError::io(&path, e)),
                }
            }
        };
        let kek_id = format!(
            "file:{}",
            &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(kek))[..16]
        );
        Ok(Self {
            dir: keys_dir.to_path_buf(),
            kek,
            kek_id,
        })
    }

    fn wrapped_path(&self, object: &Digest) -> PathBuf {
        self.dir
            .join("wrapped")
            .join("sha256")
            .join(format!("{}.json", object.hex()))
    }
}

fn read_kek(path: &Path) -> Result<Option<[u8; 32]>, ArtifactError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim())
                .map_err(|e| ArtifactError::Kms(format!("{}: {e}", path.display())))?;
            let k = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                ArtifactError::Kms(format!("{}: expected 32 bytes", path.display()))
            })?;
            Ok(Some(k))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ArtifactError::io(path, e)),
    }
}

impl KeyManager for FileKeyManager {
    fn seal_data_key(&self, object: &Digest, key: &DataKey) -> Result<(), ArtifactError> {
        let cipher = XChaCha20Poly1305::new((&self.kek).into());
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let aad = object.to_string();
        let wrapped = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: key.bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| ArtifactError::Kms(format!("wrapping data key of {object} failed")))?;
        let record = WrappedKey {
            alg: "xchacha20poly1305".to_owned(),
            kek_id: self.kek_id.clone(),
            nonce: B64.encode(nonce),
            wrapped: B64.encode(wrapped),
        };
        let json =
            serde_json::to_vec_pretty(&record).map_err(|e| ArtifactError::Kms(e.to_string()))?;
        write_secret(&self.wrapped_path(object), &json)
    }

    fn open_data_key(&self, object: &Digest) -> Result<DataKey, ArtifactError> {
        let path = self.wrapped_path(object);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ArtifactError::Shredded(object.clone()))
            }
            Err(e) => return Err(ArtifactError::io(&path, e)),
        };
        let record: WrappedKey = serde_json::from_slice(&text)
            .map_err(|e| ArtifactError::Kms(format!("{}: {e}", path.display())))?;
        if record.kek_id != self.kek_id {
            return Err(ArtifactError::Kms(format!(
                "data key of {object} was wrapped by {}, this key manager holds {}",
                record.kek_id, self.kek_id
            )));
        }
        let nonce = B64
            .decode(&record.nonce)
            .ok()
            .filter(|n| n.len() == 24)
            .ok_or_else(|| ArtifactError::Kms(format!("{}: bad nonce", path.display())))?;
        let wrapped = B64
            .decode(&record.wrapped)
            .map_err(|e| ArtifactError::Kms(format!("{}: {e}", path.display())))?;
        let cipher = XChaCha20Poly1305::new((&self.kek).into());
        let aad = object.to_string();
        let plain = cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &wrapped,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| {
                ArtifactError::Kms(format!(
                    "data key of {object} does not unwrap (tampered or wrong KEK)"
                ))
            })?;
        let bytes = <[u8; 32]>::try_from(plain.as_slice())
            .map_err(|_| ArtifactError::Kms(format!("data key of {object} has wrong length")))?;
        Ok(DataKey(bytes))
    }

    fn destroy_data_key(&self, object: &Digest) -> Result<(), ArtifactError> {
        let path = self.wrapped_path(object);
        // Unlinking is the shred for this backend: the KEK alone cannot recover the data key.
        // (Overwriting in place is no guarantee on copy-on-write filesystems or SSDs; an
        // external KMS with per-object key deletion gives the stronger property.)
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ArtifactError::io(&path, e)),
        }
    }

    fn name(&self) -> &'static str {
        "file"
    }
}

impl Drop for FileKeyManager {
    fn drop(&mut self) {
        self.kek = [0u8; 32];
        std::hint::black_box(&self.kek);
    }
}

/// The key-manager object a named secret is sealed under (a digest of its name).
fn named_object(name: &str) -> Digest {
    Digest::of(format!("tidegate-named-key:{name}").as_bytes())
}

/// A named secret held by the key manager, such as a data owner's pseudonymisation key: created
/// (random, sealed by `kms`) on first use, the same bytes on every later use. A key that was
/// created and later destroyed (crypto-shredded) is an error, never silently replaced: a new
/// key would produce unrelated pseudonyms. `keys_dir/named/` remembers which names exist.
///
/// # Errors
/// [`ArtifactError::Invalid`] for a name outside `A-Z a-z 0-9 . _ - /`,
/// [`ArtifactError::Shredded`] for a destroyed key, key-manager and I/O errors.
pub fn named_key(
    kms: &dyn KeyManager,
    keys_dir: &Path,
    name: &str,
) -> Result<DataKey, ArtifactError> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'/'))
    {
        return Err(ArtifactError::Invalid(format!(
            "key name {name:?}: use 1-128 of A-Z a-z 0-9 . _ - /"
        )));
    }
    let object = named_object(name);
    let marker = keys_dir
        .join("named")
        .join(format!("{}.json", object.hex()));
    if marker.exists() {
        return kms.open_data_key(&object);
    }
    let key = DataKey::generate();
    kms.seal_data_key(&object, &key)?;
    let record = serde_json::json!({ "name": name, "object": object.to_string(), "key_manager": kms.name() });
    crate::atomic::write_atomic(&marker, record.to_string().as_bytes())?;
    Ok(key)
}

#[cfg(test)]
mod named_key_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_named_key_is_stable_and_a_destroyed_one_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let kms = FileKeyManager::open(dir.path()).unwrap();
        let a = named_key(&kms, dir.path(), "pseudonymisation/clinical-data").unwrap();
        let b = named_key(&kms, dir.path(), "pseudonymisation/clinical-data").unwrap();
        assert_eq!(a.bytes(), b.bytes());
        let other = named_key(&kms, dir.path(), "pseudonymisation/finance").unwrap();
        assert_ne!(a.bytes(), other.bytes());
        kms.destroy_data_key(&named_object("pseudonymisation/clinical-data"))
            .unwrap();
        assert!(matches!(
            named_key(&kms, dir.path(), "pseudonymisation/clinical-data"),
            Err(ArtifactError::Shredded(_))
        ));
        assert!(matches!(
            named_key(&kms, dir.path(), "no spaces"),
            Err(ArtifactError::Invalid(_))
        ));
    }
}
