//! Teams that hold an artifact another team stored first.
//!
//! The artifact store keeps one immutable record per content digest, labelled with the team that
//! stored it. A second team storing the same bytes must not learn that they were already there:
//! the API answers it as for new content, and records here that this team holds the digest too,
//! with its own metadata (kind, name, lane, labels, classification as it declared them), so its
//! later reads and lists work as for any artifact of its own. The owner's record, stage and
//! attestations are untouched, and neither team sees the other's metadata.
//!
//! Layout: `<data-dir>/artifact-holders/<digest hex>/<team as hex>.json`, one record per team,
//! written atomically (a temporary file renamed into place, then synced).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use tidegate_artifacts::{ArtifactRecord, Digest};

use crate::error::ApiError;

const DIR: &str = "artifact-holders";

fn digest_dir(data_dir: &Path, digest: &Digest) -> PathBuf {
    let text = digest.to_string();
    let hex = text.strip_prefix("sha256:").unwrap_or(&text);
    data_dir.join(DIR).join(hex)
}

/// A team name as a file name: its bytes in hex, so no name can reach outside the directory.
fn team_file(team: &str) -> String {
    format!("{}.json", hex::encode(team.as_bytes()))
}

fn unavailable(what: &str, path: &Path, e: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(path = %path.display(), error = %e, "artifact holdings: cannot {what}");
    ApiError::unavailable(
        "artifact storage cannot be read or written for now (out of space, an I/O error or a \
         backend that cannot be reached); nothing was changed, retry later",
    )
}

/// The record `team` holds for `digest`, if it holds one.
pub(crate) fn get(
    data_dir: &Path,
    digest: &Digest,
    team: &str,
) -> Result<Option<ArtifactRecord>, ApiError> {
    // Only a team name can hold anything (and only its file name fits the file system).
    if !tidegate_model::is_valid_name(team) {
        return Ok(None);
    }
    let path = digest_dir(data_dir, digest).join(team_file(team));
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unavailable("read", &path, &e)),
    };
    let rec: ArtifactRecord = serde_json::from_slice(&bytes).map_err(|e| {
        tracing::error!(path = %path.display(), error = %e, "artifact holdings: unreadable record");
        ApiError::internal(
            "a stored artifact record cannot be read; the details are in the server's log",
        )
    })?;
    // A record filed under another digest or team is not this team's holding.
    if rec.digest != *digest
        || rec.labels.get(tidegate_api::TEAM_LABEL).map(String::as_str) != Some(team)
    {
        return Ok(None);
    }
    Ok(Some(rec))
}

/// Records that the team named in `rec`'s team label holds `rec.digest`.
pub(crate) fn put(data_dir: &Path, rec: &ArtifactRecord) -> Result<(), ApiError> {
    let team = rec
        .labels
        .get(tidegate_api::TEAM_LABEL)
        .map_or("", String::as_str);
    let dir = digest_dir(data_dir, &rec.digest);
    std::fs::create_dir_all(&dir).map_err(|e| unavailable("create a directory", &dir, &e))?;
    let path = dir.join(team_file(team));
    let tmp = path.with_extension("tmp");
    let json = serde_json::to_vec_pretty(rec).map_err(|e| {
        tracing::error!(error = %e, "artifact holdings: cannot encode a record");
        ApiError::internal(
            "an artifact record cannot be encoded; the details are in the server's log",
        )
    })?;
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        unavailable("write", &path, &e)
    })
}

/// Every record `team` holds, in no particular order.
pub(crate) fn of_team(data_dir: &Path, team: &str) -> Result<Vec<ArtifactRecord>, ApiError> {
    let root = data_dir.join(DIR);
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(unavailable("list", &root, &e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| unavailable("list", &root, &e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Ok(digest) = Digest::from_hex(&name) else {
            continue;
        };
        if let Some(rec) = get(data_dir, &digest, team)? {
            out.push(rec);
        }
    }
    Ok(out)
}
