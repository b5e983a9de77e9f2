//! Crash-safe file writes: temp file in the same directory, fsync, rename, fsync the directory.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::ArtifactError;

/// Writes `bytes` to `path` atomically: readers see the old content or the new, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    write_atomic_mode(path, bytes, false)
}

/// [`write_atomic`], with the file created owner-only (0600 on Unix) from the start when
/// `secret`, so key material is never readable by others, even briefly.
fn write_atomic_mode(path: &Path, bytes: &[u8], secret: bool) -> Result<(), ArtifactError> {
    write_atomic_with(path, secret, &mut |f| f.write_all(bytes))
}

/// [`write_atomic`] of whatever `fill` writes (in as many pieces as it likes, so content of any
/// size is written with bounded memory).
///
/// # Errors
/// I/O errors of the file or of `fill`; the temporary file is removed.
pub fn write_atomic_streaming(
    path: &Path,
    fill: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), ArtifactError> {
    write_atomic_with(path, false, fill)
}

fn write_atomic_with(
    path: &Path,
    secret: bool,
    fill: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), ArtifactError> {
    let dir = path.parent().ok_or_else(|| {
        ArtifactError::Invalid(format!("path {} has no parent directory", path.display()))
    })?;
    fs::create_dir_all(dir).map_err(|e| ArtifactError::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut nonce = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(nonce)));
    let result = (|| {
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = secret;
        let mut f = opts.open(&tmp).map_err(|e| ArtifactError::io(&tmp, e))?;
        {
            let mut w = std::io::BufWriter::with_capacity(256 * 1024, &mut f);
            fill(&mut w).map_err(|e| ArtifactError::io(&tmp, e))?;
            w.flush().map_err(|e| ArtifactError::io(&tmp, e))?;
        }
        f.sync_all().map_err(|e| ArtifactError::io(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| ArtifactError::io(path, e))?;
        if let Ok(d) = File::open(dir) {
            // Persist the rename; some filesystems refuse fsync on directories, which is harmless.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Appends one line to an append-only JSON-lines file and fsyncs it.
pub fn append_line(path: &Path, line: &str) -> Result<(), ArtifactError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| ArtifactError::io(dir, e))?;
    }
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| ArtifactError::io(path, e))?;
    let mut buf = line.trim_end().to_owned();
    buf.push('\n');
    f.write_all(buf.as_bytes())
        .map_err(|e| ArtifactError::io(path, e))?;
    f.sync_all().map_err(|e| ArtifactError::io(path, e))
}

/// Reads a JSON-lines file; a missing file is empty. Blank lines are skipped, and so is a last
/// line without its newline: [`append_line`] acknowledges only after the newline is fsynced, so
/// such a line is the torn tail of an append that never returned.
pub fn read_lines(path: &Path) -> Result<Vec<String>, ArtifactError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text
            .get(..text.rfind('\n').map_or(0, |i| i + 1))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(ArtifactError::io(path, e)),
    }
}

/// Writes a secret file readable only by its owner (mode 0600 on Unix).
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    write_atomic_mode(path, bytes, true)
}
