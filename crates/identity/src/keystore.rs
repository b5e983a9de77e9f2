//! Root keys on disk for an issuer: `<keys-dir>/token/keyring.json` (public, ship it to every
//! verifier), `<keys-dir>/token/root-<id>.key` (private, mode 0600) and `active`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{IdentityError, Issuer, RootKey, RootKeyring, MAX_TTL_MINUTES};

/// The token root keys of one data directory.
#[derive(Debug, Clone)]
pub struct RootKeyStore {
    dir: PathBuf,
}

fn io(path: &Path, e: &std::io::Error) -> IdentityError {
    IdentityError::InvalidKeyring(format!("{}: {e}", path.display()))
}

fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), IdentityError> {
    let dir = path.parent().ok_or_else(|| {
        IdentityError::InvalidKeyring(format!("{} has no parent", path.display()))
    })?;
    fs::create_dir_all(dir).map_err(|e| io(dir, &e))?;
    let tmp = path.with_extension("tmp");
    // A leftover temp file could carry looser permissions; start from nothing.
    let _ = fs::remove_file(&tmp);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(&tmp).map_err(|e| io(&tmp, &e))?;
    f.write_all(bytes).map_err(|e| io(&tmp, &e))?;
    f.sync_all().map_err(|e| io(&tmp, &e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| io(path, &e))
}

impl RootKeyStore {
    /// The store under `<keys_dir>/token`.
    #[must_use]
    pub fn new(keys_dir: &Path) -> Self {
        Self {
            dir: keys_dir.join("token"),
        }
    }

    /// Path of the public keyring.
    #[must_use]
    pub fn keyring_path(&self) -> PathBuf {
        self.dir.join("keyring.json")
    }

    /// The public keyring (empty if none).
    ///
    /// # Errors
    /// [`IdentityError::InvalidKeyring`] for I/O or content errors.
    pub fn keyring(&self) -> Result<RootKeyring, IdentityError> {
        let path = self.keyring_path();
        match fs::read_to_string(&path) {
            Ok(text) => RootKeyring::from_json(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RootKeyring::default()),
            Err(e) => Err(io(&path, &e)),
        }
    }

    fn save(&self, ring: &RootKeyring) -> Result<(), IdentityError> {
        write_file(&self.keyring_path(), ring.to_json()?.as_bytes(), false)
    }

    /// The active key id, if any.
    ///
    /// # Errors
    /// [`IdentityError::InvalidKeyring`] for I/O errors or a corrupt file.
    pub fn active_id(&self) -> Result<Option<u32>, IdentityError> {
        let path = self.dir.join("active");
        match fs::read_to_string(&path) {
            Ok(s) => s.trim().parse().map(Some).map_err(|_| {
                IdentityError::InvalidKeyring(format!("{} is corrupt", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path, &e)),
        }
    }

    /// Creates a new root key valid from `now` for `days`, makes it active, and — when an
    /// older key was active — retires the older one once every token it could still have minted
    /// has expired (`now` + [`MAX_TTL_MINUTES`]), so rotation never breaks live tokens.
    ///
    /// # Errors
    /// [`IdentityError::InvalidKeyring`] for I/O errors.
    pub fn rotate(&self, now: u64, days: u64) -> Result<RootKey, IdentityError> {
        let mut ring = self.keyring()?;
        let id = ring.max_id().map_or(1, |m| m.saturating_add(1));
        let issuer = Issuer::generate(id);
        let key = issuer.root_key(now, now.saturating_add(days.saturating_mul(86_400)));
        ring.add(key.clone())?;
        if let Some(old) = self.active_id()? {
            ring.retire(old, now.saturating_add(u64::from(MAX_TTL_MINUTES) * 60))?;
        }
        write_file(
            &self.dir.join(format!("root-{id}.key")),
            issuer.private_hex().as_bytes(),
            true,
        )?;
        self.save(&ring)?;
        write_file(&self.dir.join("active"), id.to_string().as_bytes(), false)?;
        tracing::info!(id, "created token root key");
        Ok(key)
    }

    /// Revokes root key `id` at `now`: every token it signed is refused.
    ///
    /// # Errors
    /// [`IdentityError::UnknownRootKey`] or I/O errors.
    pub fn revoke(&self, id: u32, now: u64) -> Result<(), IdentityError> {
        let mut ring = self.keyring()?;
        ring.revoke(id, now)?;
        self.save(&ring)
    }

    /// Refuses one token by its revocation id.
    ///
    /// # Errors
    /// I/O errors.
    pub fn revoke_token(&self, revocation_id_hex: &str) -> Result<(), IdentityError> {
        let mut ring = self.keyring()?;
        ring.revoke_token(revocation_id_hex);
        self.save(&ring)
    }

    /// The active issuer.
    ///
    /// # Errors
    /// [`IdentityError::InvalidKeyring`] if no key was created or the key file is unreadable.
    pub fn issuer(&self) -> Result<Issuer, IdentityError> {
        let id = self.active_id()?.ok_or_else(|| {
            IdentityError::InvalidKeyring(
                "no token root key; create one with `tidegate token keys rotate`".to_owned(),
            )
        })?;
        let path = self.dir.join(format!("root-{id}.key"));
        let hex = fs::read_to_string(&path).map_err(|e| io(&path, &e))?;
        Issuer::from_private_hex(id, &hex)
    }
}
