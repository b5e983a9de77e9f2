//! `tidegate bench submit`: durable job submissions per second through the HTTP API (SQLite,
//! every acknowledged submission fsynced and ledgered) with N concurrent clients, and — when
//! Slurm is installed — the same number of `sbatch` submissions with N parallel submitters into
//! the same single-host Slurm, in the same run, in two rounds that do the same work on both
//! sides: `accept` (tidegate's scheduler off; `sbatch --hold`) and `scheduled` (tidegate places,
//! admits and starts every job, each admission ledgered; slurmctld schedules and launches every
//! job). The data directory must be on a filesystem where fsync reaches the disk.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use miette::{miette, IntoDiagnostic};
use serde::Serialize;
use tidegate_api::{SubmitRequest, SubmitResponse};
use tidegate_client::output::{fleet_dir, print_json, Format};
use tidegate_client::Client;
use tidegate_server::ServerConfig;

/// Arguments of `tidegate bench submit`.
#[derive(Debug, Args)]
pub struct BenchSubmitArgs {
    /// Submissions in total.
    #[arg(long, default_value_t = 5_000)]
    pub jobs: usize,
    /// Concurrent clients (each its own connection).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Fleet (default: ./examples/fleet).
    #[arg(long, env = "TIDEGATE_FLEET")]
    pub fleet: Option<PathBuf>,
    /// Directory for the control plane's data (default: a temporary directory under the current
    /// one). It must not be on tmpfs or ramfs, where fsync does nothing.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Slurm partition for the sbatch peer (default: Slurm's default partition).
    #[arg(long)]
    pub partition: Option<String>,
    /// Skip the sbatch peer even if Slurm is installed.
    #[arg(long)]
    pub no_sbatch: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: Format,
}

#[derive(Debug, Serialize)]
struct Side {
    submissions: usize,
    clients: usize,
    elapsed_s: f64,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
    /// Jobs per state when the last submission was acknowledged (tidegate).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    states_at_last_ack: std::collections::BTreeMap<String, u64>,
    /// Jobs per state once the scheduler had worked through them (tidegate, scheduled round).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    states_after: std::collections::BTreeMap<String, u64>,
    /// Seconds after the last acknowledgement until every job had ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    all_ended_after_s: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Round {
    /// `accept` or `scheduled`.
    round: &'static str,
    /// What tidegate did for each submission.
    tidegate_did: &'static str,
    /// What Slurm did for each submission.
    sbatch_did: &'static str,
    tidegate: Side,
    sbatch: Option<Side>,
    ratio_vs_sbatch: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    store: String,
    /// The data directory and the filesystem it is on.
    dir: String,
    filesystem: String,
    clients: usize,
    rounds: Vec<Round>,
    sbatch_note: Option<String>,
}

/// The filesystem type of the mount holding `dir` (from /proc/self/mounts).
fn filesystem_of(dir: &std::path::Path) -> String {
    let Ok(dir) = dir.canonicalize() else {
        return "unknown".into();
    };
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, at, ty) = (f.next()?, f.next()?, f.next()?);
            let at = at.replace("\\040", " ");
            dir.starts_with(&at).then(|| (at.len(), ty.to_owned()))
        })
        .max_by_key(|(n, _)| *n)
        .map_or_else(|| "unknown".into(), |(_, ty)| ty)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted
        .get(idx.min(sorted.len() - 1))
        .copied()
        .unwrap_or(0.0)
}

/// Runs `work(i)` for i in 0..n across `clients` threads; returns per-call latencies (ms),
/// errors and the wall time.
fn drive(
    n: usize,
    clients: usize,
    work: impl Fn(usize) -> bool + Send + Sync + 'static,
) -> (Vec<f64>, usize, f64) {
    let next = Arc::new(AtomicUsize::new(0));
    let work = Arc::new(work);
    let started = Instant::now();
    let handles: Vec<_> = (0..clients.max(1))
        .map(|_| {
            let next = next.clone();
            let work = work.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut errors = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let t = Instant::now();
                    if work(i) {
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    } else {
                        errors += 1;
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut lat = Vec::with_capacity(n);
    let mut errors = 0;
    for h in handles {
        if let Ok((l, e)) = h.join() {
            lat.extend(l);
            errors += e;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    (lat, errors, elapsed)
}

fn side(n: usize, clients: usize, (lat, errors, elapsed): (Vec<f64>, usize, f64)) -> Side {
    Side {
        submissions: n,
        clients,
        elapsed_s: elapsed,
        per_sec: lat.len() as f64 / elapsed.max(1e-9),
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        errors,
        states_at_last_ack: Default::default(),
        states_after: Default::default(),
        all_ended_after_s: None,
    }
}

const MANIFEST: &str = include_str!("../../../examples/jobs/sepsis-hpo-sweep.yaml");

/// The example sweep as a one-GPU job running `true`, like `sbatch --wrap=true`.
fn manifest(i: usize) -> String {
    MANIFEST
        .replace("name: sepsis-hpo-sweep", &format!("name: bench-{i}"))
        .replace("    gpus: 8\n", "    gpus: 1\n")
        .replace("  budget_class:", "  command: [\"true\"]\n  budget_class:")
}

fn sbatch_available() -> Result<(), String> {
    let probe = Command::new("sinfo")
        .arg("-h")
        .arg("-o")
        .arg("%P")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match probe {
        Ok(s) if s.success() => Ok(()),
        Ok(_) => Err("sinfo failed: slurmctld is not answering".into()),
        Err(_) => Err("Slurm is not installed here (no sinfo/sbatch); install slurm-wlm and start slurmctld/slurmd to compare".into()),
    }
}

/// Submits `a.jobs` jobs through a fresh control plane in `data`, its scheduler on or off.
fn tidegate_round(
    a: &BenchSubmitArgs,
    data: &std::path::Path,
    scheduler: bool,
) -> miette::Result<(Side, String)> {
    let cfg = ServerConfig {
        replica: "bench".into(),
        scheduler,
        // A benchmark of the API on loopback: plain HTTP.
        tls: None,
        ..ServerConfig::embedded(data, &fleet_dir(a.fleet.clone())?)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .into_diagnostic()?;
    let server = rt
        .block_on(tidegate_server::start(
            cfg,
            tidegate_server::auth::system_clock(),
        ))
        .map_err(|e| miette!("{e}"))?;
    let token = std::fs::read_to_string(&server.admin_token_path).into_diagnostic()?;
    let store = server.state.shared.store.describe();
    let clients: Vec<Client> = (0..a.clients)
        .map(|_| Client::new(&server.url, token.trim()))
        .collect::<miette::Result<_>>()?;
    let clients = Arc::new(clients);
    let r = drive(a.jobs, a.clients, move |i| {
        let c = &clients[i % clients.len()];
        let key = format!("bench-{i}");
        c.post::<_, SubmitResponse>(
            "/v1/jobs",
            &SubmitRequest {
                manifest: manifest(i),
            },
            &[("Idempotency-Key", key.as_str())],
        )
        .is_ok()
    });
    // What the control plane did with them: by the last acknowledgement, and once the
    // scheduler has worked through them (at most a minute).
    let counts =
        |shared: &tidegate_server::control::Shared| -> std::collections::BTreeMap<String, u64> {
            let mut m = std::collections::BTreeMap::new();
            for c in shared.store.counts().unwrap_or_default() {
                *m.entry(c.state.to_string()).or_default() += c.count;
            }
            m
        };
    let mut out = side(a.jobs, a.clients, r);
    out.states_at_last_ack = counts(&server.state.shared);
    if scheduler {
        let t = Instant::now();
        while t.elapsed().as_secs() < 60 {
            let c = counts(&server.state.shared);
            let open: u64 = c
                .iter()
                .filter(|(s, _)| {
                    !matches!(
                        s.as_str(),
                        "succeeded" | "failed" | "cancelled" | "rejected"
                    )
                })
                .map(|(_, n)| n)
                .sum();
            if open == 0 {
                out.all_ended_after_s = Some(t.elapsed().as_secs_f64());
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        out.states_after = counts(&server.state.shared);
    }
    rt.block_on(server.shutdown());
    Ok((out, store))
}

/// Submits `a.jobs` trivial jobs with `sbatch`, held or not, then cancels what it queued.
fn sbatch_round(a: &BenchSubmitArgs, hold: bool) -> miette::Result<Side> {
    let partition = a.partition.clone();
    let out = tempfile::tempdir().into_diagnostic()?;
    let out_dir = out.path().to_owned();
    let ids: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let submitted = ids.clone();
    let r = drive(a.jobs, a.clients, move |i| {
        let mut cmd = Command::new("sbatch");
        cmd.arg("--parsable")
            .arg(format!("--job-name=bench-{i}"))
            .arg(format!("--chdir={}", out_dir.display()))
            .arg("--output=/dev/null")
            .arg("--wrap=true");
        if hold {
            cmd.arg("--hold");
        }
        if let Some(p) = &partition {
            cmd.arg(format!("--partition={p}"));
        }
        match cmd.stderr(Stdio::null()).output() {
            Ok(o) if o.status.success() => {
                let id = String::from_utf8_lossy(&o.stdout).trim().to_owned();
                if let Ok(mut v) = submitted.lock() {
                    v.push(id);
                }
                true
            }
            _ => false,
        }
    });
    // Leave the cluster as we found it: cancel what the benchmark queued.
    let ids = ids.lock().map(|v| v.clone()).unwrap_or_default();
    for chunk in ids.chunks(500) {
        let _ = Command::new("scancel")
            .args(chunk)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    Ok(side(a.jobs, a.clients, r))
}

/// Runs the benchmark.
pub fn run(a: &BenchSubmitArgs) -> miette::Result<()> {
    if a.jobs == 0 || a.clients == 0 {
        return Err(miette!("--jobs and --clients must be at least 1"));
    }
    let holder;
    let dir = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d)
                .map_err(|e| miette!("cannot create {}: {e}", d.display()))?;
            d.clone()
        }
        None => {
            holder = tempfile::Builder::new()
                .prefix(".tidegate-bench-submit-")
                .tempdir_in(".")
                .into_diagnostic()?;
            holder.path().to_path_buf()
        }
    };
    let filesystem = filesystem_of(&dir);
    if matches!(filesystem.as_str(), "tmpfs" | "ramfs") {
        return Err(miette!(
            "{} is on {filesystem}, where fsync does nothing: durable submissions cannot be measured there; give --dir on a disk",
            dir.display()
        ));
    }
    let slurm = if a.no_sbatch {
        Err("skipped (--no-sbatch)".to_string())
    } else {
        sbatch_available()
    };
    let mut rounds = Vec::new();
    let mut store = String::new();
    for (round, scheduler, tidegate_did, sbatch_did) in [
        (
            "accept",
            false,
            "durable accept: parse and validate the manifest, store the job (fsync), ledger its submission; scheduler off",
            "sbatch --hold: slurmctld accepts and queues the job held",
        ),
        (
            "scheduled",
            true,
            "durable accept, then the scheduler places, admits and starts every job (`true`, one GPU), each step ledgered",
            "sbatch: slurmctld accepts, schedules and launches every job (`true`) on the single host",
        ),
    ] {
        if a.output == Format::Text {
            eprintln!(
                "{round}: tidegate, {} submissions with {} clients (data in {}, {filesystem}) ...",
                a.jobs,
                a.clients,
                dir.display()
            );
        }
        let data = dir.join(round);
        let _ = std::fs::remove_dir_all(&data);
        let (tidegate, s) = tidegate_round(a, &data, scheduler)?;
        store = s;
        let sbatch = match &slurm {
            Ok(()) => {
                if a.output == Format::Text {
                    eprintln!("{round}: sbatch, {} submissions with {} submitters ...", a.jobs, a.clients);
                }
                Some(sbatch_round(a, !scheduler)?)
            }
            Err(_) => None,
        };
        let ratio = sbatch
            .as_ref()
            .filter(|s| s.per_sec > 0.0)
            .map(|s| tidegate.per_sec / s.per_sec);
        rounds.push(Round {
            round,
            tidegate_did,
            sbatch_did,
            tidegate,
            sbatch,
            ratio_vs_sbatch: ratio,
        });
    }
    let report = Report {
        store,
        dir: dir.display().to_string(),
        filesystem,
        clients: a.clients,
        rounds,
        sbatch_note: slurm.err(),
    };
    let errors: usize = report.rounds.iter().map(|r| r.tidegate.errors).sum();
    if a.output == Format::Json {
        print_json(&report)?;
    } else {
        println!(
            "store {}; data in {} ({}); {} concurrent submitters on each side",
            report.store, report.dir, report.filesystem, report.clients
        );
        for r in &report.rounds {
            let t = &r.tidegate;
            println!("\n{} round", r.round);
            println!("  tidegate: {}", r.tidegate_did);
            println!(
                "    {:.0} submissions/s, p50 {:.2} ms, p99 {:.2} ms, {} errors ({} jobs, {:.2} s)",
                t.per_sec, t.p50_ms, t.p99_ms, t.errors, t.submissions, t.elapsed_s
            );
            let show = |m: &std::collections::BTreeMap<String, u64>| {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "    jobs at the last acknowledgement: {}",
                show(&t.states_at_last_ack)
            );
            if !t.states_after.is_empty() {
                println!(
                    "    then: {}{}",
                    show(&t.states_after),
                    t.all_ended_after_s
                        .map_or_else(String::new, |s| format!(" (all ended {s:.1} s later)"))
                );
            }
            println!("  sbatch:   {}", r.sbatch_did);
            match &r.sbatch {
                Some(s) => println!(
                    "    {:.0} submissions/s, p50 {:.2} ms, p99 {:.2} ms, {} errors  ->  tidegate is {:.1}x sbatch",
                    s.per_sec,
                    s.p50_ms,
                    s.p99_ms,
                    s.errors,
                    r.ratio_vs_sbatch.unwrap_or(0.0)
                ),
                None => println!(
                    "    not measured: {}",
                    report.sbatch_note.clone().unwrap_or_default()
                ),
            }
        }
    }
    if errors > 0 {
        return Err(miette!("{errors} tidegate submissions failed"));
    }
    Ok(())
}
