//! Key files: the ledger signing key under `<data-dir>/keys/`, created on first use with mode 0600.
//!
//! The private key is stored in the signed-note text form (`PRIVATE+KEY+...`), the public key
//! next to it (`ledger.pub`, `name+keyid+base64`), which is what auditors are given to verify
//! checkpoints and evidence bundles. The same functions create and load witness keys.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::checkpoint::{CheckpointError, NoteSigner, NoteVerifier};

/// File name of the ledger private key inside `<data-dir>/keys/`.
pub const LEDGER_KEY: &str = "ledger.key";
/// File name of the ledger public key inside `<data-dir>/keys/`.
pub const LEDGER_PUB: &str = "ledger.pub";

/// Why a key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The key file does not hold a valid key.
    #[error("key file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: CheckpointError,
    },
    /// The private key file can be read by others.
    #[error("key file {path} has mode {mode:o}; private keys must be 0600 (chmod 600 it)")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The system random source failed.
    #[error("no randomness available to generate a key: {0}")]
    Random(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Load the private key at `path`, or create one named `name_prefix/<random hex>` (mode 0600)
/// together with `<path>.pub` when the file does not exist.
///
/// # Errors
/// When the file cannot be read, created, parsed, or is readable by group/others.
pub fn load_or_create_signer(path: &Path, name_prefix: &str) -> Result<NoteSigner, KeyError> {
    load_or_create(path, name_prefix, false)
}

/// As [`load_or_create_signer`], for a witness: the key created is a C2SP `cosignature/v1` key,
/// and an existing key file must hold one.
///
/// # Errors
/// As [`load_or_create_signer`]; [`KeyError::Parse`] for a key of another kind.
pub fn load_or_create_cosigner(path: &Path, name_prefix: &str) -> Result<NoteSigner, KeyError> {
    load_or_create(path, name_prefix, true)
}

fn load_or_create(path: &Path, name_prefix: &str, cosigner: bool) -> Result<NoteSigner, KeyError> {
    let signer = load_or_create_any(path, name_prefix, cosigner)?;
    if signer.is_cosigner() != cosigner {
        return Err(KeyError::Parse {
            path: path.to_owned(),
            source: crate::checkpoint::CheckpointError::Key(if cosigner {
                "not a witness (cosignature/v1) key"
            } else {
                "a witness (cosignature/v1) key cannot sign notes"
            }),
        });
    }
    Ok(signer)
}

fn load_or_create_any(
    path: &Path,
    name_prefix: &str,
    cosigner: bool,
) -> Result<NoteSigner, KeyError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let mode = fs::metadata(path).map_err(io(path))?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Permissions {
                    path: path.to_owned(),
                    mode,
                });
            }
            NoteSigner::parse(&text).map_err(|source| KeyError::Parse {
                path: path.to_owned(),
                source,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_signer(path, name_prefix, cosigner)
        }
        Err(e) => Err(KeyError::Io {
            path: path.to_owned(),
            source: e,
        }),
    }
}

fn create_signer(path: &Path, name_prefix: &str, cosigner: bool) -> Result<NoteSigner, KeyError> {
    // A bare file name lives in the current directory.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    let mut tag = [0u8; 4];
    getrandom::fill(&mut tag).map_err(|e| KeyError::Random(e.to_string()))?;
    let name = format!("{name_prefix}/{}", hex::encode(tag));
    let signer = if cosigner {
        NoteSigner::cosigner_from_seed(&name, &seed)
    } else {
        NoteSigner::from_seed(&name, &seed)
    }
    .map_err(|source| KeyError::Parse {
        path: path.to_owned(),
        source,
    })?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(signer.to_private_text().as_bytes())
        .map_err(io(path))?;
    f.write_all(b"\n").map_err(io(path))?;
    f.sync_all().map_err(io(path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    let pub_path = public_path(path);
    fs::write(&pub_path, format!("{}\n", signer.verifier().to_text())).map_err(io(&pub_path))?;
    tracing::info!(key = %path.display(), name = %name, "generated a new signing key");
    Ok(signer)
}

/// Where the public key of the private key at `path` is written (`<path without .key>.pub`).
#[must_use]
pub fn public_path(path: &Path) -> PathBuf {
    path.with_extension("pub")
}

/// Read a verifier key file (`name+keyid+base64`), or derive it from a private key file.
///
/// # Errors
/// When the file cannot be read or holds neither form.
pub fn load_verifier(path: &Path) -> Result<NoteVerifier, KeyError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    let text = text.trim();
    if text.starts_with("PRIVATE+KEY+") {
        return NoteSigner::parse(text)
            .map(|s| s.verifier())
            .map_err(|source| KeyError::Parse {
                path: path.to_owned(),
                source,
            });
    }
    NoteVerifier::parse(text).map_err(|source| KeyError::Parse {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_0600_key_once_and_reloads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join(LEDGER_KEY);
        let a = load_or_create_signer(&path, "tidegate-ledger").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = load_or_create_signer(&path, "tidegate-ledger").unwrap();
        assert_eq!(a.verifier(), b.verifier());
        assert_eq!(load_verifier(&public_path(&path)).unwrap(), a.verifier());
        assert_eq!(load_verifier(&path).unwrap(), a.verifier());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create_signer(&path, "x"),
            Err(KeyError::Permissions { .. })
        ));
    }
}
