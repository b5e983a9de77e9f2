//! `tidegate bench submit`: durable job submissions per second through the HTTP API (SQLite,
//! every acknowledged submission fsynced and ledgered) with N concurrent clients, and — when
//! Slurm is installed — the same number of `sbatch` submissions with N parallel submitters in
//! the same run.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use miette::{miette, IntoDiagnostic};
use serde::Serialize;
use tidegate_server::api::{SubmitRequest, SubmitResponse};
use tidegate_server::control::LoopConfig;
use tidegate_server::ServerConfig;

use crate::client::Client;
use crate::output::{fleet_dir, print_json, Format};

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
    /// Also run the scheduler loop during the run (placement and admission compete for the
    /// store); by default the API is measured alone.
    #[arg(long)]
    pub with_scheduler: bool,
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
}

#[derive(Debug, Serialize)]
struct Report {
    store: String,
    submits_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    tidegate: Side,
    sbatch: Option<Side>,
    sbatch_note: Option<String>,
    ratio_vs_sbatch: Option<f64>,
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
    }
}

const MANIFEST: &str = include_str!("../../../examples/jobs/sepsis-hpo-sweep.yaml");

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

/// Runs the benchmark.
pub fn run(a: &BenchSubmitArgs) -> miette::Result<()> {
    if a.jobs == 0 || a.clients == 0 {
        return Err(miette!("--jobs and --clients must be at least 1"));
    }
    let fleet = fleet_dir(a.fleet.clone())?;
    let dir = tempfile::tempdir().into_diagnostic()?;
    let cfg = ServerConfig {
        data_dir: dir.path().to_owned(),
        fleet_dir: fleet,
        database: None,
        store: None,
        listen: "127.0.0.1:0".parse().into_diagnostic()?,
        loop_cfg: LoopConfig::default(),
        work_root: None,
        keys_dir: None,
        executors: Default::default(),
        admin_token_minutes: 60,
        agent_zones: vec![],
        replica: "test".into(),
        scheduler: a.with_scheduler,
        http: Default::default(),
        // A benchmark of the API on loopback: plain HTTP.
        tls: None,
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
    let base = server.url.clone();
    if a.output == Format::Text {
        eprintln!(
            "tidegate: {} submissions through {base} with {} clients ...",
            a.jobs, a.clients
        );
    }
    let clients: Vec<Client> = (0..a.clients)
        .map(|_| Client::new(&base, token.trim()))
        .collect::<miette::Result<_>>()?;
    let clients = Arc::new(clients);
    let tg = {
        let clients = clients.clone();
        drive(a.jobs, a.clients, move |i| {
            let c = &clients[i % clients.len()];
            let manifest = MANIFEST.replace("name: sepsis-hpo-sweep", &format!("name: bench-{i}"));
            let key = format!("bench-{i}");
            c.post::<_, SubmitResponse>(
                "/v1/jobs",
                &SubmitRequest { manifest },
                &[("Idempotency-Key", key.as_str())],
            )
            .is_ok()
        })
    };
    let tidegate = side(a.jobs, a.clients, tg);
    rt.block_on(server.shutdown());

    let (sbatch, note) = if a.no_sbatch {
        (None, Some("skipped (--no-sbatch)".to_string()))
    } else {
        match sbatch_available() {
            Ok(()) => {
                if a.output == Format::Text {
                    eprintln!(
                        "sbatch: {} submissions with {} parallel submitters ...",
                        a.jobs, a.clients
                    );
                }
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
                (Some(side(a.jobs, a.clients, r)), None)
            }
            Err(why) => (None, Some(why)),
        }
    };
    let ratio = sbatch
        .as_ref()
        .filter(|s| s.per_sec > 0.0)
        .map(|s| tidegate.per_sec / s.per_sec);
    let report = Report {
        store,
        submits_per_sec: tidegate.per_sec,
        p50_ms: tidegate.p50_ms,
        p99_ms: tidegate.p99_ms,
        tidegate,
        sbatch,
        sbatch_note: note,
        ratio_vs_sbatch: ratio,
    };
    if a.output == Format::Json {
        return print_json(&report);
    }
    let t = &report.tidegate;
    println!(
        "tidegate API ({}): {:.0} durable submissions/s, p50 {:.2} ms, p99 {:.2} ms, {} errors ({} clients, {} jobs, {:.2} s)",
        report.store, t.per_sec, t.p50_ms, t.p99_ms, t.errors, t.clients, t.submissions, t.elapsed_s
    );
    match (&report.sbatch, &report.sbatch_note) {
        (Some(s), _) => println!(
            "sbatch:  {:.0} submissions/s, p50 {:.2} ms, p99 {:.2} ms, {} errors  →  tidegate is {:.1}x sbatch",
            s.per_sec,
            s.p50_ms,
            s.p99_ms,
            s.errors,
            report.ratio_vs_sbatch.unwrap_or(0.0)
        ),
        (None, Some(n)) => println!("sbatch:  not measured: {n}"),
        (None, None) => {}
    }
    if report.tidegate.errors > 0 {
        return Err(miette!("{} submissions failed", report.tidegate.errors));
    }
    Ok(())
}
