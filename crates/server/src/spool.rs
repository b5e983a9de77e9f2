//! Request bodies spooled to disk: an artifact upload is written to a file in the data
//! directory as it arrives, in bounded pieces, so the memory an upload holds does not grow with
//! its size (nor with the number of uploads in flight), and the store then reads it back in
//! chunks. The file is removed when the [`Spooled`] guard is dropped, whatever the outcome, and
//! what a killed control plane left behind is removed at the next start ([`clear`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::StatusCode;
use http_body::Body as _;

use crate::error::ApiError;

/// Bytes gathered from the body before they are written out.
const FLUSH_AT: usize = 1024 * 1024;

/// A spooled body: its file (removed on drop) and its length.
#[derive(Debug)]
pub struct Spooled {
    path: PathBuf,
    len: u64,
}

impl Spooled {
    /// The file holding the body.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many bytes the body had.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body was empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a spooled upload");
            }
        }
    }
}

/// Removes every file left in the spool directory `dir`: uploads in flight when a control plane
/// was killed (their plaintext must not stay on disk). Called at start, before anything is
/// spooled; returns how many were removed.
///
/// # Errors
/// When the directory exists but cannot be read or a file in it cannot be removed.
pub fn clear(dir: &Path) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for e in entries {
        let path = e?.path();
        if path.is_file() || path.is_symlink() {
            std::fs::remove_file(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Where a data directory's uploads are spooled.
#[must_use]
pub fn dir_of(data_dir: &Path) -> PathBuf {
    tidegate_vocab::DataDir::new(data_dir).upload_spool()
}

fn unavailable(dir: &Path, e: &std::io::Error) -> ApiError {
    tracing::error!(dir = %dir.display(), error = %e, "cannot spool an upload");
    ApiError::unavailable(
        "the upload cannot be written to disk for now (is the disk full?); retry later",
    )
}

/// Writes `body` to a new file in `dir` (created owner-only), refusing past `max` bytes (413
/// `too_large`, naming the limit) and a body that cannot be read (400, or 408 when it stalled).
///
/// # Errors
/// As above; 503 `unavailable` when the file cannot be written (a full disk).
pub async fn spool(body: Body, dir: &Path, max: u64) -> Result<Spooled, ApiError> {
    let dir = dir.to_path_buf();
    let d = dir.clone();
    let (file, path) = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&d)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))?;
        }
        let named = tempfile::Builder::new().prefix("upload-").tempfile_in(&d)?;
        named.keep().map_err(|e| e.error)
    })
    .await
    .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
    .map_err(|e| unavailable(&dir, &e))?;
    // From here on the guard removes the file, whatever happens.
    let mut spooled = Spooled { path, len: 0 };
    let mut file = Some(file);
    let mut body = std::pin::pin!(body);
    let mut pending: Vec<u8> = Vec::with_capacity(FLUSH_AT);
    loop {
        let frame = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
        let done = match frame {
            None => true,
            Some(Err(e)) => {
                return Err(ApiError::invalid(
                    "body",
                    format!("the body could not be read: {e}"),
                ))
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    spooled.len = spooled.len.saturating_add(data.len() as u64);
                    if spooled.len > max {
                        return Err(ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "too_large",
                            format!("the content is over {max} bytes"),
                        )
                        .field("body"));
                    }
                    pending.extend_from_slice(&data);
                }
                false
            }
        };
        if pending.len() >= FLUSH_AT || (done && !pending.is_empty()) {
            let mut f = file
                .take()
                .ok_or_else(|| ApiError::internal("spool file lost"))?;
            let piece = std::mem::take(&mut pending);
            let (f, piece) = tokio::task::spawn_blocking(move || {
                let r = f.write_all(&piece);
                r.map(|()| (f, piece))
            })
            .await
            .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
            .map_err(|e| unavailable(&dir, &e))?;
            file = Some(f);
            pending = piece;
            pending.clear();
        }
        if done {
            break;
        }
    }
    Ok(spooled)
}
