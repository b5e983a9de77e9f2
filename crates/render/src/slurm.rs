//! A job as an sbatch script: how a [`Launch`] becomes the script the Slurm executor submits.
//! The executor (`crates/slurm`) takes [`script`] as its renderer and submits exactly its text,
//! and `tidegate render --target slurm` prints it ([`batch_script`]), so both always agree.
//!
//! Mapping (every resource is an `#SBATCH` directive, so the script is self-contained and can be
//! reviewed or submitted by hand):
//! - `--job-name` ← the job's name; `--comment=tidegate:<job id>` (how a restarted control plane
//!   finds its jobs in `squeue`);
//! - `--partition` ← the zone's partition, or the pool's when the zone maps pools to partitions;
//! - `--account` ← the zone's account, else the job's team when so configured;
//! - `--clusters` ← the zone's cluster, when set (federated Slurm; needs slurmdbd);
//! - `--gres=gpu:<type lowercased>:<n>` ← the granted GPUs and the pool's GPU type (no GRES for
//!   zero GPUs);
//! - `--time=D-HH:MM:SS` ← the time limit (Slurm rounds up to the minute; none when 0);
//! - `--chdir` and `--output` (standard error joins it, appended across requeues) ← the job's
//!   directory under the executor's state dir, which must be visible on the compute nodes;
//! - `--export=NONE`: the control plane's own environment (its credentials) never reaches a job;
//!   the job gets `TIDEGATE_JOB_ID/ZONE/POOL/GPUS/GPU_TYPE/WORKDIR` and the launch's extra
//!   environment, exported in the script as the local executor passes them.
//!
//! Partition, account and cluster come resolved as a [`SlurmPlacement`]: the executor resolves
//! them from its configuration; for `tidegate render`, [`placement`] resolves them from the
//! zone's backend as the executor configured from that backend does.
//!
//! The body runs the job's argv (each word shell-quoted) or, with no command, the same stand-in
//! as the local executor, then records the exit code in `exit` beside the output. Slurm remains
//! the source of truth for a job's state; the `exit` file is read only once Slurm has forgotten a
//! finished job (after `MinJobAge`) and `sacct -c` has no record either.
//!
//! `#SBATCH` values are not shell words, so names going into directives are reduced to
//! `A-Z a-z 0-9 . _ -` (others become `_`), and a job directory holding whitespace or `#` is
//! refused.

use std::fmt::Write as _;
use std::path::Path;

use tidegate_exec::{ExecError, Launch};
use tidegate_model::{Backend, JobSpec, SlurmPlacement, Zone};

use crate::{launch_for, pick_pool, RenderError};

/// The sbatch script for `job` in `zone` (a Slurm zone), pool `pool` or the first that fits,
/// with the executor's state under `state_dir`: what the Slurm executor configured from the
/// zone's backend submits for it.
pub fn batch_script(
    job: &JobSpec,
    job_id: &str,
    zone: &Zone,
    pool: Option<&str>,
    state_dir: &Path,
) -> Result<String, RenderError> {
    let not_slurm = || RenderError::NoZone {
        job: job.name.clone(),
        reason: format!(
            "zone {} runs on {}, not slurm",
            zone.name,
            zone.backend.kind()
        ),
    };
    if !matches!(zone.backend, Backend::Slurm { .. }) {
        return Err(not_slurm());
    }
    let pool = pick_pool(job, zone, pool)?;
    let launch = launch_for(job, job_id, zone, pool);
    let at = placement(&zone.backend, &launch).ok_or_else(not_slurm)?;
    Ok(script(&launch, &at, &state_dir.join(job_id))?)
}

/// Where a zone's `backend: {kind: slurm, ...}` submits `launch`: its partition and cluster,
/// its account or, without one, the launch's team (the model's documented default; none for an
/// empty team). `None` for another backend kind.
pub fn placement(backend: &Backend, launch: &Launch) -> Option<SlurmPlacement> {
    match backend {
        Backend::Slurm {
            partition,
            cluster,
            account,
        } => Some(SlurmPlacement {
            partition: partition.clone(),
            account: account
                .clone()
                .or_else(|| (!launch.team.is_empty()).then(|| launch.team.clone())),
            cluster: cluster.clone(),
        }),
        _ => None,
    }
}

/// Reduces a value to characters safe in an `#SBATCH` directive.
pub fn directive_word(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        "_".into()
    } else {
        out
    }
}

/// Quotes a string as one POSIX shell word.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | '=' | ':' | ',' | '+')
        })
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `--time` value for a limit in seconds: `D-HH:MM:SS`.
pub fn time_limit(secs: u64) -> String {
    let d = secs / 86_400;
    let h = (secs % 86_400) / 3600;
    let m = (secs % 3600) / 60;
    let s = secs % 60;
    format!("{d}-{h:02}:{m:02}:{s:02}")
}

/// The `--gres` value for `gpus` GPUs of `gpu_type` (`None` for no GPUs).
pub fn gres(gpus: u32, gpu_type: &str) -> Option<String> {
    if gpus == 0 {
        return None;
    }
    let ty = directive_word(&gpu_type.to_ascii_lowercase());
    Some(if gpu_type.trim().is_empty() {
        format!("gpu:{gpus}")
    } else {
        format!("gpu:{ty}:{gpus}")
    })
}

/// The comment that marks a Slurm job as tidegate job `job_id`.
pub fn comment(job_id: &str) -> String {
    format!("tidegate:{job_id}")
}

fn valid_env_name(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The batch script for a launch placed at `placement`, working in `job_dir`: the Slurm
/// executor's renderer (`tidegate_slurm::Renderer`), which the executor submits as it is.
///
/// # Errors
/// [`ExecError::Invalid`] for a job directory that is not UTF-8 or holds whitespace, `#` or `%`,
/// and for an environment name that is not a shell name.
pub fn script(
    launch: &Launch,
    placement: &SlurmPlacement,
    job_dir: &Path,
) -> Result<String, ExecError> {
    let job = launch.job_id.as_str();
    let dir = job_dir.to_str().ok_or_else(|| ExecError::Invalid {
        job: job.to_owned(),
        reason: format!("job directory {} is not UTF-8", job_dir.display()),
    })?;
    if dir
        .chars()
        .any(|c| c.is_whitespace() || c == '#' || c == '%')
    {
        return Err(ExecError::Invalid {
            job: job.to_owned(),
            reason: format!("job directory {dir:?} holds whitespace, `#` or `%`, which #SBATCH directives cannot carry"),
        });
    }
    if let Some((k, _)) = launch.env.iter().find(|(k, _)| !valid_env_name(k)) {
        return Err(ExecError::Invalid {
            job: job.to_owned(),
            reason: format!("environment name {k:?} is not a shell name"),
        });
    }
    let mut s = String::from("#!/bin/sh\n");
    let mut d = |k: &str, v: &str| {
        let _ = writeln!(s, "#SBATCH --{k}={v}");
    };
    d("job-name", &directive_word(&launch.name));
    d("comment", &comment(&directive_word(job)));
    d("partition", &directive_word(&placement.partition));
    if let Some(a) = &placement.account {
        d("account", &directive_word(a));
    }
    if let Some(c) = &placement.cluster {
        d("clusters", &directive_word(c));
    }
    if let Some(g) = gres(launch.gpus, &launch.gpu_type) {
        d("gres", &g);
    }
    if launch.time_limit_s > 0 {
        d("time", &time_limit(launch.time_limit_s));
    }
    d("chdir", dir);
    d("output", &format!("{dir}/output.log"));
    d("open-mode", "append");
    d("export", "NONE");
    s.push_str("# Generated by tidegate: the job's environment.\n");
    s.push_str("export PATH=\"${PATH:-/usr/local/bin:/usr/bin:/bin}\"\n");
    let vars: [(&str, String); 6] = [
        ("TIDEGATE_JOB_ID", job.to_owned()),
        ("TIDEGATE_ZONE", launch.zone.clone()),
        ("TIDEGATE_POOL", launch.pool.clone()),
        ("TIDEGATE_GPUS", launch.gpus.to_string()),
        ("TIDEGATE_GPU_TYPE", launch.gpu_type.clone()),
        ("TIDEGATE_WORKDIR", dir.to_owned()),
    ];
    for (k, v) in vars
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    {
        let _ = writeln!(s, "export {k}={}", shell_quote(v));
    }
    s.push_str("rm -f exit exit.tmp\n");
    if launch.command.is_empty() {
        let secs = launch.stand_in_seconds.clamp(0.0, 86_400.0);
        let _ = writeln!(
            s,
            "echo {}",
            shell_quote(&format!(
                "tidegate stand-in for {}: {} x {} in {}/{}, {secs:.2} s",
                launch.name, launch.gpus, launch.gpu_type, launch.zone, launch.pool
            ))
        );
        let _ = writeln!(s, "sleep {secs:.3}\necho done");
    } else {
        let words: Vec<String> = launch.command.iter().map(|w| shell_quote(w)).collect();
        let _ = writeln!(s, "{}", words.join(" "));
    }
    s.push_str("code=$?\nprintf '%s\\n' \"$code\" >exit.tmp && mv exit.tmp exit\nexit \"$code\"\n");
    Ok(s)
}
