//! The root keyring: which public root keys a verifier trusts, when, and which are revoked.

use std::collections::BTreeSet;

use biscuit_auth::{Algorithm, PublicKey};
use serde::{Deserialize, Serialize};

use crate::IdentityError;

/// One trusted root public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootKey {
    /// Key id carried in every token this key signs (Biscuit `root_key_id`).
    pub id: u32,
    /// Always `"ed25519"` for now.
    pub algorithm: String,
    /// Hex of the 32-byte ed25519 public key.
    pub public_key: String,
    /// Start of validity, inclusive (Unix seconds).
    pub not_before: u64,
    /// End of validity, exclusive (Unix seconds).
    pub not_after: u64,
    /// Set when the key was revoked; a revoked key verifies nothing, whatever the time.
    #[serde(default)]
    pub revoked_at: Option<u64>,
}

/// The set of root keys a verifier trusts, plus revoked token ids. Serialized as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootKeyring {
    /// Trusted keys; ids are unique.
    pub keys: Vec<RootKey>,
    /// Hex revocation ids of individual tokens that are refused.
    #[serde(default)]
    pub revoked_tokens: BTreeSet<String>,
}

impl RootKeyring {
    /// Parses and validates a keyring from JSON.
    ///
    /// # Errors
    /// [`IdentityError::InvalidKeyring`] if the JSON is invalid or the content inconsistent.
    pub fn from_json(text: &str) -> Result<Self, IdentityError> {
        let ring: RootKeyring =
            serde_json::from_str(text).map_err(|e| IdentityError::InvalidKeyring(e.to_string()))?;
        ring.validate()?;
        Ok(ring)
    }

    /// Serializes the keyring as pretty JSON.
    ///
    /// # Errors
    /// [`IdentityError::InvalidKeyring`] if serialization fails.
    pub fn to_json(&self) -> Result<String, IdentityError> {
        serde_json::to_string_pretty(self).map_err(|e| IdentityError::InvalidKeyring(e.to_string()))
    }

    /// Checks ids are unique, algorithms known, keys parse and windows are non-empty.
    ///
    /// # Errors
    /// [`IdentityError::InvalidKeyring`] naming the first problem found.
    pub fn validate(&self) -> Result<(), IdentityError> {
        let mut seen = BTreeSet::new();
        for key in &self.keys {
            if !seen.insert(key.id) {
                return Err(IdentityError::InvalidKeyring(format!(
                    "duplicate key id {}",
                    key.id
                )));
            }
            if key.not_after <= key.not_before {
                return Err(IdentityError::InvalidKeyring(format!(
                    "key {} has an empty validity window",
                    key.id
                )));
            }
            parse_public_key(key)?;
        }
        Ok(())
    }

    /// Adds a key. Refuses a duplicate id.
    ///
    /// # Errors
    /// [`IdentityError::InvalidKeyring`] for a duplicate id or an invalid key.
    pub fn add(&mut self, key: RootKey) -> Result<(), IdentityError> {
        if self.keys.iter().any(|k| k.id == key.id) {
            return Err(IdentityError::InvalidKeyring(format!(
                "duplicate key id {}",
                key.id
            )));
        }
        parse_public_key(&key)?;
        self.keys.push(key);
        Ok(())
    }

    /// Marks a key revoked at `at`. Tokens it signed are refused from then on.
    ///
    /// # Errors
    /// [`IdentityError::UnknownRootKey`] if no key has this id.
    pub fn revoke(&mut self, id: u32, at: u64) -> Result<(), IdentityError> {
        let key = self
            .keys
            .iter_mut()
            .find(|k| k.id == id)
            .ok_or(IdentityError::UnknownRootKey(id))?;
        if key.revoked_at.is_none() {
            key.revoked_at = Some(at);
        }
        Ok(())
    }

    /// Ends a key's validity window at `at` (rotation: the old key stops being valid).
    ///
    /// # Errors
    /// [`IdentityError::UnknownRootKey`] if no key has this id.
    pub fn retire(&mut self, id: u32, at: u64) -> Result<(), IdentityError> {
        let key = self
            .keys
            .iter_mut()
            .find(|k| k.id == id)
            .ok_or(IdentityError::UnknownRootKey(id))?;
        key.not_after = key.not_after.min(at.max(key.not_before.saturating_add(1)));
        Ok(())
    }

    /// Refuses one token by its revocation id (hex).
    pub fn revoke_token(&mut self, revocation_id_hex: &str) {
        self.revoked_tokens
            .insert(revocation_id_hex.to_ascii_lowercase());
    }

    /// The public key to verify a token signed by key `id` at time `now`, fail closed:
    /// unknown, revoked or out-of-window keys are refused with the matching error.
    ///
    /// # Errors
    /// [`IdentityError::UnknownRootKey`], [`IdentityError::RevokedRootKey`],
    /// [`IdentityError::RootKeyOutsideWindow`] or [`IdentityError::InvalidKeyring`].
    pub fn usable_key(&self, id: u32, now: u64) -> Result<PublicKey, IdentityError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(IdentityError::UnknownRootKey(id))?;
        if let Some(revoked_at) = key.revoked_at {
            return Err(IdentityError::RevokedRootKey { id, revoked_at });
        }
        if now < key.not_before || now >= key.not_after {
            return Err(IdentityError::RootKeyOutsideWindow {
                id,
                now,
                not_before: key.not_before,
                not_after: key.not_after,
            });
        }
        parse_public_key(key)
    }

    /// The highest key id present, if any (new keys take the next id).
    #[must_use]
    pub fn max_id(&self) -> Option<u32> {
        self.keys.iter().map(|k| k.id).max()
    }
}

fn parse_public_key(key: &RootKey) -> Result<PublicKey, IdentityError> {
    if key.algorithm != "ed25519" {
        return Err(IdentityError::InvalidKeyring(format!(
            "key {} has unsupported algorithm {:?} (only ed25519)",
            key.id, key.algorithm
        )));
    }
    PublicKey::from_bytes_hex(&key.public_key, Algorithm::Ed25519)
        .map_err(|e| IdentityError::InvalidKeyring(format!("key {}: {e}", key.id)))
}
