//! `tidegate agent`: runs inside a zone, connects out to the control plane (as across a private
//! interconnect: nothing connects in), pulls the work placed in its zone, runs it with the local
//! executor, and reports status and heartbeats. When the control plane cannot be reached it keeps
//! its runs going and reports them once it can: status reconciles when the link returns.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use miette::{miette, IntoDiagnostic};
use tidegate_exec::{Executor, Launch, LocalConfig, LocalExecutor, RunStatus};
use tidegate_server::api::{SyncReport, SyncRequest, SyncResponse};

use crate::client::Client;

/// Run a zone's work as an agent inside the zone.
///
/// Start the control plane with `--agent-zone NAME`, mint an agent token for the zone
/// (`tidegate token mint --user agent-1 --role agent --team NAME`), and run this inside the zone.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The zone this agent runs.
    #[arg(long)]
    pub zone: String,
    /// Base URL of the control plane's API.
    #[arg(long, env = "TIDEGATE_URL")]
    pub control_plane: String,
    /// File holding the agent token (role agent, team = the zone).
    #[arg(long, env = "TIDEGATE_TOKEN_FILE")]
    pub token: PathBuf,
    /// Where runs live (one directory per run).
    #[arg(long, default_value = ".tidegate-agent")]
    pub work_dir: PathBuf,
    /// The unprivileged user the zone's jobs run as (the zone's `run_as`). An agent running as
    /// root runs jobs as this user (`nobody` when unset), never as root; one not running as root
    /// runs them as itself and accepts only its own name.
    #[arg(long, env = "TIDEGATE_RUN_AS")]
    pub run_as: Option<String>,
    /// This agent's name (default: host name and process id).
    #[arg(long)]
    pub name: Option<String>,
    /// Milliseconds between syncs.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Stop after this many seconds (for tests and drills; default: run until killed).
    #[arg(long)]
    pub for_seconds: Option<u64>,
}

fn report(exec: &LocalExecutor, run: &str, status: RunStatus) -> Option<SyncReport> {
    let (status, exit_code) = match status {
        RunStatus::Running => ("running", None),
        RunStatus::Exited { code } => ("exited", Some(code)),
        RunStatus::Cancelled => ("cancelled", None),
        RunStatus::TimedOut { .. } => ("timed_out", None),
        RunStatus::Lost { .. } => ("lost", None),
        RunStatus::Unknown => return None,
    };
    let log_tail = exec.logs(run, 16 * 1024).unwrap_or_default();
    Some(SyncReport {
        run_id: run.to_owned(),
        status: status.to_owned(),
        exit_code,
        log_tail,
    })
}

/// Runs the agent loop.
pub fn run(a: &AgentArgs) -> miette::Result<()> {
    let token = std::fs::read_to_string(&a.token)
        .map_err(|e| miette!("cannot read the agent token {}: {e}", a.token.display()))?;
    // A sync that hangs (a cut link) gives up quickly so runs keep being watched.
    let client = Client::with_timeout(
        &a.control_plane,
        token.trim(),
        Duration::from_millis((a.interval_ms * 5).clamp(2000, 10_000)),
    );
    let exec = LocalExecutor::with_config(
        &a.work_dir,
        LocalConfig {
            run_as: a.run_as.clone(),
            ..LocalConfig::default()
        },
    )
    .into_diagnostic()?;
    let name = a.name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map_or_else(|_| "host".into(), |s| s.trim().to_owned());
        format!("{host}-{}", std::process::id())
    });
    let started = Instant::now();
    // Ended runs the control plane has acknowledged (it stores the first final report).
    let mut acked: HashSet<String> = HashSet::new();
    // Runs we were asked to stop but never started: reported cancelled once.
    let mut never_started: HashSet<String> = HashSet::new();
    let mut failures = 0u32;
    let path = format!("/v1/agents/{}/sync", a.zone);
    eprintln!(
        "tidegate agent {name} for zone {} syncing with {}",
        a.zone, a.control_plane
    );
    loop {
        if a.for_seconds
            .is_some_and(|s| started.elapsed() >= Duration::from_secs(s))
        {
            return Ok(());
        }
        let mut runs = Vec::new();
        let mut finals = Vec::new();
        for run in exec.runs().into_diagnostic()? {
            if acked.contains(&run) {
                continue;
            }
            let status = exec.poll(&run).into_diagnostic()?;
            let fin = status.is_final();
            if let Some(r) = report(&exec, &run, status) {
                if fin {
                    finals.push(run.clone());
                }
                runs.push(r);
            }
        }
        for run in &never_started {
            runs.push(SyncReport {
                run_id: run.clone(),
                status: "cancelled".into(),
                exit_code: None,
                log_tail: String::new(),
            });
        }
        match client.post::<_, SyncResponse>(
            &path,
            &SyncRequest {
                agent: name.clone(),
                runs,
            },
            &[],
        ) {
            Ok(work) => {
                if failures > 0 {
                    eprintln!("control plane reachable again after {failures} failed syncs");
                }
                failures = 0;
                acked.extend(finals);
                never_started.clear();
                for launch in work.start {
                    match serde_json::from_value::<Launch>(launch) {
                        Ok(l) => match exec.start(&l) {
                            Ok(true) => tracing::info!(run = %l.job_id, "started"),
                            Ok(false) => {}
                            Err(e) => eprintln!("cannot start {}: {e}", l.job_id),
                        },
                        Err(e) => {
                            eprintln!("the control plane sent a launch this agent cannot read: {e}")
                        }
                    }
                }
                for run in work.cancel {
                    match exec.poll(&run) {
                        Ok(RunStatus::Unknown) => {
                            never_started.insert(run);
                        }
                        _ => {
                            if let Err(e) = exec.cancel(&run) {
                                eprintln!("cannot stop {run}: {e}");
                            }
                        }
                    }
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(10) {
                    eprintln!("sync failed ({failures} in a row); runs keep going: {e}");
                }
            }
        }
        let backoff = if failures == 0 {
            a.interval_ms
        } else {
            (a.interval_ms * u64::from(failures.min(5))).min(5000)
        };
        std::thread::sleep(Duration::from_millis(backoff.max(50)));
    }
}
