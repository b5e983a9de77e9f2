//! `tidegate checkpoint push`: the job-side step that syncs a checkpoint out of the zone it was
//! written in, to the control plane's artifact endpoint (`POST /v1/artifacts?kind=checkpoint`).
//!
//! A zone's egress rules may not allow the destination. Then nothing is lost: the checkpoint
//! stays where it is, a `<file>.unsynced` note records its digest, the destination and the error,
//! and the command exits with code 75 (`EX_TEMPFAIL`), which the control plane turns into a job
//! event that says the sync was blocked and the checkpoint was kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use miette::{miette, IntoDiagnostic, WrapErr};
use serde_json::json;

/// Exit code of a sync that could not reach its destination (`EX_TEMPFAIL`).
pub const SYNC_BLOCKED: i32 = tidegate_server::control::CHECKPOINT_SYNC_BLOCKED;

/// Options of `tidegate checkpoint push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The checkpoint file.
    pub file: PathBuf,
    /// Base URL of the destination control plane (inside a zone: across its interconnect).
    #[arg(long)]
    pub to: String,
    /// File holding a bearer token allowed to store artifacts.
    #[arg(long, env = "TIDEGATE_TOKEN_FILE")]
    pub token_file: PathBuf,
    /// The destination's certificate authority (PEM), for an `https://` destination.
    #[arg(long, env = "TIDEGATE_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Seconds to wait for the destination (a dropped connection shows as a timeout).
    #[arg(long, default_value_t = 10)]
    pub timeout_s: u64,
    /// The job that wrote the checkpoint (inside a run, the executor sets TIDEGATE_JOB_ID): the
    /// stored checkpoint inherits that job's effective classification.
    #[arg(long, env = "TIDEGATE_JOB_ID")]
    pub job: String,
}

/// Options of `tidegate checkpoint archive`.
#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// The checkpoint's digest in the data directory's store.
    pub digest: String,
    /// Zone whose store keeps the archive copy.
    #[arg(long)]
    pub zone: String,
    /// Where the data directory and fleet are.
    #[command(flatten)]
    pub data: crate::dataset::DataArgs,
}

/// Checkpoint commands.
#[derive(Debug, clap::Subcommand)]
pub enum CheckpointCmd {
    /// Sync a checkpoint to the control plane; if the zone's egress rules (or an outage) keep it
    /// from the destination, keep it, note why next to it, and exit 75.
    Push(PushArgs),
    /// Archive a checkpoint into a zone's store: its content and signed provenance verified,
    /// ledgered (`checkpoint.archived`) before it is copied with its envelopes, encrypted there
    /// under the zone's keys. A checkpoint derived from sensitive data may only be archived in a
    /// private zone.
    Archive(ArchiveArgs),
}

fn archive(a: &ArchiveArgs) -> miette::Result<i32> {
    let digest: tidegate_artifacts::Digest = a.digest.parse().map_err(|e| miette!("{e}"))?;
    let fleet = crate::dataset::fleet_with_registry(a.data.fleet.clone(), &a.data.data_dir)?;
    let zone = fleet
        .zone(&a.zone)
        .ok_or_else(|| miette!("unknown zone {:?} (zones: {})", a.zone, fleet.zone_list()))?;
    let now = crate::clock::now()?;
    let led = crate::ledgered::Ledgered::open(&a.data.data_dir, now)?;
    let result = (|| -> miette::Result<()> {
        let store = led.home_store()?;
        let rec = store.record(&digest).map_err(|e| miette!("{e}"))?;
        if rec.kind != tidegate_artifacts::ArtifactKind::Checkpoint {
            return Err(miette!("{digest} is a {}, not a checkpoint", rec.kind));
        }
        if rec.sensitive && !zone.tier.is_private() {
            return Err(miette!(
                help = "archive it in a private zone",
                "{digest} derives from sensitive data; zone {} is {:?}, not private: refused",
                zone.name,
                zone.tier
            ));
        }
        // Verified (content and signed provenance) before anything is recorded or copied.
        let ring = store.trusted_keyring().map_err(|e| miette!("{e}"))?;
        store
            .verify(&digest, &ring, now)
            .map_err(|e| miette!("{e}"))?;
        store
            .record_event(
                &tidegate_artifacts::events::ArtifactEvent::CheckpointArchived {
                    digest: digest.clone(),
                    zone: zone.name.clone(),
                    at: now,
                },
            )
            .map_err(|e| miette!("{e}"))?;
        let dest = led.zone_store(&zone.name)?;
        let zones: Vec<String> = fleet.zones.iter().map(|z| z.name.clone()).collect();
        let rep = tidegate_artifacts::transfer::import(&store, &dest, &ring, &zones, &digest, now)
            .map_err(|e| miette!("{e}"))?;
        // The archive verifies on its own: the zone's keyring trusts the keys that signed it.
        let zone_keys = tidegate_artifacts::signing::KeyStore::new(&dest.keys_dir());
        for id in &rep.keyids {
            if let Some(entry) = ring.get(id) {
                zone_keys.trust(entry.clone()).map_err(|e| miette!("{e}"))?;
            }
        }
        let bytes = rec.size;
        println!(
            "archived checkpoint {digest} ({bytes} bytes, built by {} in {}) in zone {}'s store",
            rep.job_id, rep.zone, zone.name
        );
        Ok(())
    })();
    let closed = led.close();
    result.and(closed).map(|()| 0)
}

fn note_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".unsynced");
    PathBuf::from(s)
}

/// Runs a checkpoint command; returns the process exit code.
///
/// # Errors
/// An unreadable checkpoint or token, or a destination that answered with an error.
pub fn run(cmd: &CheckpointCmd) -> miette::Result<i32> {
    let a = match cmd {
        CheckpointCmd::Push(a) => a,
        CheckpointCmd::Archive(a) => return archive(a),
    };
    let bytes = std::fs::read(&a.file)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading checkpoint {}", a.file.display()))?;
    let digest = tidegate_ledger::Digest::of(&bytes).to_string();
    let token = std::fs::read_to_string(&a.token_file)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading token {}", a.token_file.display()))?;
    let base = a.to.trim_end_matches('/');
    // A run id `JOB.N` (a job admitted again) names job JOB.
    let job = match a.job.rsplit_once('.') {
        Some((j, n)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => j,
        _ => a.job.as_str(),
    };
    let url = format!("{base}/v1/artifacts?kind=checkpoint&job={job}");
    let ca = tidegate_client::find_ca(a.ca.as_deref(), None)?;
    let agent = tidegate_client::agent_trusting(
        Duration::from_secs(a.timeout_s.max(1)),
        ca.as_deref(),
        None,
    )?;
    let resp = agent
        .post(&url)
        .header("Authorization", format!("Bearer {}", token.trim()))
        .header("Content-Type", "application/octet-stream")
        .send(&bytes[..]);
    match resp {
        Err(e) => {
            // Never reached the destination: keep the checkpoint, say why, exit 75.
            let note = json!({
                "checkpoint": a.file.display().to_string(),
                "digest": digest,
                "bytes": bytes.len(),
                "destination": base,
                "error": e.to_string(),
            });
            let path = note_path(&a.file);
            std::fs::write(&path, serde_json::to_vec_pretty(&note).into_diagnostic()?)
                .into_diagnostic()?;
            eprintln!(
                "checkpoint sync blocked: cannot reach {base} ({e}); the zone's egress rules may not allow it. \
                 The checkpoint is kept: {} ({digest}, {} bytes); note in {}",
                a.file.display(),
                bytes.len(),
                path.display()
            );
            Ok(SYNC_BLOCKED)
        }
        Ok(mut r) => {
            let status = r.status();
            let text = r.body_mut().read_to_string().unwrap_or_default();
            if !status.is_success() {
                return Err(miette!(
                    "checkpoint sync to {base} refused: {status}: {text}"
                ));
            }
            let _ = std::fs::remove_file(note_path(&a.file));
            println!("checkpoint {} synced to {base}: {digest}", a.file.display());
            Ok(0)
        }
    }
}
