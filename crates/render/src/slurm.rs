//! A job as an sbatch script: the zone's Slurm backend configuration
//! ([`tidegate_slurm::SlurmConfig::from_backend`]) and the executor's own script generation, so
//! the rendered script is byte for byte what [`tidegate_slurm::SlurmExecutor`] would submit for
//! the same state dir.

use std::path::Path;

use tidegate_model::{JobSpec, Zone};
use tidegate_slurm::SlurmConfig;

use crate::{launch_for, pick_pool, RenderError};

/// The sbatch script for `job` in `zone` (a Slurm zone), pool `pool` or the first that fits,
/// with the executor's state under `state_dir`.
pub fn batch_script(
    job: &JobSpec,
    job_id: &str,
    zone: &Zone,
    pool: Option<&str>,
    state_dir: &Path,
) -> Result<String, RenderError> {
    let cfg =
        SlurmConfig::from_backend(&zone.backend, state_dir).ok_or_else(|| RenderError::NoZone {
            job: job.name.clone(),
            reason: format!(
                "zone {} runs on {}, not slurm",
                zone.name,
                zone.backend.kind()
            ),
        })?;
    let pool = pick_pool(job, zone, pool)?;
    Ok(cfg.batch_script(&launch_for(job, job_id, zone, pool))?)
}
