//! `tidegate bench slurm`: submissions per second through the Slurm executor's `start` (state
//! files, lock, script, `sbatch --parsable`) next to raw `sbatch --parsable --wrap true`, in the
//! same run against the same cluster, and the executor's overhead ratio.
//!
//! Both sides submit the same trivial job (`true`, no GPUs) to the same partition, sequentially,
//! in two alternating rounds (raw, executor, raw, executor) so a cluster warming up or slowing
//! down under its growing queue does not favour one side. A third side submits the executor's
//! own script file with plain `sbatch --parsable FILE`, to split the overhead between what Slurm
//! spends on the richer script (directives, environment) and the executor's bookkeeping (lock,
//! state files, time-limited command runner). Every submitted job is cancelled at
//! the end (one `scancel` per 500 ids).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use clap::Args;
use miette::miette;
use serde::Serialize;
use tidegate_client::output::{print_json, Format};
use tidegate_exec::{Executor as _, Launch};
use tidegate_slurm::{SlurmConfig, SlurmExecutor};

/// Arguments of `tidegate bench slurm`.
#[derive(Debug, Args)]
pub struct BenchSlurmArgs {
    /// Jobs submitted by each side.
    #[arg(long, default_value_t = 200)]
    jobs: usize,
    /// Partition (default: Slurm's default partition).
    #[arg(long)]
    partition: Option<String>,
    /// The executor's state dir (default: a temporary directory, removed afterwards; it must be
    /// visible to the compute nodes).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Leave the submitted jobs alone instead of cancelling them.
    #[arg(long)]
    keep_jobs: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: Format,
}

#[derive(Debug, Serialize)]
struct Report {
    jobs: usize,
    partition: String,
    executor_per_sec: f64,
    sbatch_per_sec: f64,
    script_sbatch_per_sec: f64,
    executor_ms_per_job: f64,
    sbatch_ms_per_job: f64,
    script_sbatch_ms_per_job: f64,
    overhead_ratio: f64,
    executor_errors: usize,
    sbatch_errors: usize,
}

fn default_partition() -> miette::Result<String> {
    let out = Command::new("sinfo")
        .args(["-h", "-o", "%P"])
        .output()
        .map_err(|e| {
            miette!(
                help = "install slurm-wlm and start slurmctld/slurmd (scripts/slurm-services.sh)",
                "cannot run sinfo: {e}"
            )
        })?;
    if !out.status.success() {
        return Err(miette!(
            "sinfo failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_suffix('*').map(str::to_owned))
        .or_else(|| text.lines().next().map(|l| l.trim().to_owned()))
        .filter(|p| !p.is_empty())
        .ok_or_else(|| miette!("Slurm lists no partition"))
}

/// Runs the benchmark.
pub fn run(a: &BenchSlurmArgs) -> miette::Result<()> {
    let partition = match &a.partition {
        Some(p) => p.clone(),
        None => default_partition()?,
    };
    let tmp = tempfile::Builder::new()
        .prefix("tidegate-bench-slurm-")
        .tempdir()
        .map_err(|e| miette!("temporary directory: {e}"))?;
    let state = a
        .state_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let render = std::sync::Arc::new(tidegate_render::slurm::script);
    let exec = SlurmExecutor::new(SlurmConfig::new(&state, partition.clone()), render)
        .map_err(|e| miette!("{e}"))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let n = a.jobs.max(2);
    let halves = [n / 2, n - n / 2];
    let (mut raw_s, mut exec_s, mut script_s) = (0.0, 0.0, 0.0);
    let (mut raw_err, mut exec_err) = (0usize, 0usize);
    let launch_for = |k: usize| Launch {
        job_id: format!("bench-{stamp}-{k}"),
        name: "bench".into(),
        team: "bench".into(),
        zone: "bench".into(),
        pool: "bench".into(),
        gpus: 0,
        gpu_type: String::new(),
        command: vec!["true".into()],
        stand_in_seconds: 0.0,
        time_limit_s: 60,
        env: Vec::new(),
        labels: Default::default(),
    };
    let script_launch = launch_for(0);
    let script_dir = exec.job_dir(&script_launch.job_id);
    std::fs::create_dir_all(&script_dir).map_err(|e| miette!("{}: {e}", script_dir.display()))?;
    let script_path = script_dir.join("job.sh");
    let script = exec
        .batch_script(&script_launch)
        .map_err(|e| miette!("{e}"))?;
    std::fs::write(&script_path, script).map_err(|e| miette!("{}: {e}", script_path.display()))?;
    let script_arg = script_path.display().to_string();
    let mut ids: Vec<String> = Vec::new();
    let mut k = 0usize;
    eprintln!("bench slurm: {n} raw sbatch submissions, {n} of the executor's script and {n} through the executor, partition {partition}");
    for half in halves {
        let t = Instant::now();
        for _ in 0..half {
            match Command::new("sbatch")
                .args([
                    "--parsable",
                    "-p",
                    &partition,
                    "-o",
                    "/dev/null",
                    "--wrap",
                    "true",
                ])
                .output()
            {
                Ok(o) if o.status.success() => {
                    ids.push(String::from_utf8_lossy(&o.stdout).trim().to_owned())
                }
                _ => raw_err += 1,
            }
        }
        raw_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        for _ in 0..half {
            match Command::new("sbatch")
                .args(["--parsable", &script_arg])
                .output()
            {
                Ok(o) if o.status.success() => {
                    ids.push(String::from_utf8_lossy(&o.stdout).trim().to_owned())
                }
                _ => raw_err += 1,
            }
        }
        script_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        for _ in 0..half {
            k += 1;
            match exec.start(&launch_for(k)) {
                Ok(true) => {}
                _ => exec_err += 1,
            }
        }
        exec_s += t.elapsed().as_secs_f64();
    }
    for j in 1..=k {
        if let Ok(Some(id)) = exec.slurm_id(&format!("bench-{stamp}-{j}")) {
            ids.push(id);
        }
    }
    if !a.keep_jobs {
        for chunk in ids.chunks(500) {
            let _ = Command::new("scancel").args(chunk).output();
        }
    }
    let rate = |s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    let report = Report {
        jobs: n,
        partition,
        executor_per_sec: rate(exec_s),
        sbatch_per_sec: rate(raw_s),
        script_sbatch_per_sec: rate(script_s),
        script_sbatch_ms_per_job: script_s * 1000.0 / n as f64,
        executor_ms_per_job: exec_s * 1000.0 / n as f64,
        sbatch_ms_per_job: raw_s * 1000.0 / n as f64,
        overhead_ratio: if raw_s > 0.0 { exec_s / raw_s } else { 0.0 },
        executor_errors: exec_err,
        sbatch_errors: raw_err,
    };
    match a.output {
        Format::Json => print_json(&report)?,
        Format::Text => {
            println!(
                "raw sbatch --wrap true: {:.0} submissions/s ({:.2} ms each), {} errors",
                report.sbatch_per_sec, report.sbatch_ms_per_job, raw_err
            );
            println!(
                "sbatch FILE (executor's script): {:.0} submissions/s ({:.2} ms each)",
                report.script_sbatch_per_sec, report.script_sbatch_ms_per_job
            );
            println!(
                "SlurmExecutor::start:   {:.0} submissions/s ({:.2} ms each), {} errors",
                report.executor_per_sec, report.executor_ms_per_job, exec_err
            );
            println!(
                "overhead ratio (executor time / raw time): {:.2}x",
                report.overhead_ratio
            );
        }
    }
    if raw_err + exec_err > 0 {
        return Err(miette!("{} submissions failed", raw_err + exec_err));
    }
    Ok(())
}
