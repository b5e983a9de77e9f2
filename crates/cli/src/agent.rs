//! `tidegate agent`: runs inside a zone, connects out to the control plane (as across a private
//! interconnect: nothing connects in), pulls the work placed in its zone, runs it with the local
//! executor, and reports status and heartbeats. When the control plane cannot be reached it keeps
//! its runs going and reports them once it can: status reconciles when the link returns.
//!
//! Over HTTPS the agent proves its zone with a workload certificate: it generates a key in
//! memory, sends a certificate signing request with its token (`POST
//! /v1/agents/{zone}/certificate`, the control plane authenticated by its certificate authority),
//! and syncs over mutual TLS presenting the certificate. It renews at half the certificate's
//! lifetime; a refused renewal is logged and tried again while the current certificate lasts.
//! Over plain HTTP (loopback development) the token alone is sent, as before TLS.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use miette::{miette, IntoDiagnostic};
use tidegate_api::{
    CertificateRequest, CertificateResponse, SyncReport, SyncRequest, SyncResponse,
};
use tidegate_client::{agent_trusting, find_ca, Client, ClientIdentity};
use tidegate_exec::{Executor, Launch, LocalConfig, LocalExecutor, RunStatus};

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
    /// The control plane's certificate authority (PEM; its `<data-dir>/pki/ca.pem`), required
    /// for an `https://` control plane.
    #[arg(long, env = "TIDEGATE_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// A workload certificate for the zone issued offline (`tidegate cert issue`), presented
    /// until its first renewal; without it the agent asks the control plane for one.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

fn unix_now() -> u64 {
    tidegate_vocab::Timestamp::now().unix_secs()
}

/// The agent's TLS identity: the client that presents its workload certificate, and when to
/// renew it.
struct Workload {
    /// Syncs over mutual TLS.
    client: Client,
    /// When to ask for the next certificate (unix seconds): half its lifetime.
    renew_at: u64,
    /// When the certificate stops being valid.
    not_after: u64,
}

/// How the agent reaches the control plane.
enum Link {
    /// Plain HTTP: the token alone.
    Plain(Client),
    /// HTTPS: `bootstrap` authenticates the control plane only and asks for certificates;
    /// `workload` syncs once a certificate is held.
    Tls {
        bootstrap: Client,
        ca: Vec<u8>,
        workload: Option<Workload>,
        next_try: u64,
    },
}

/// A new key (kept in memory) and a workload certificate for it from the control plane.
fn request_certificate(bootstrap: &Client, zone: &str) -> miette::Result<(ClientIdentity, u64)> {
    let req = tidegate_pki::new_key_and_csr(zone).map_err(|e| miette!("{e}"))?;
    let resp: CertificateResponse = bootstrap.post(
        &format!("/v1/agents/{zone}/certificate"),
        &CertificateRequest { csr: req.csr_pem },
        &[],
    )?;
    Ok((
        ClientIdentity {
            chain_pem: resp.certificate,
            key_pem: req.key_pem,
        },
        resp.not_after,
    ))
}

fn workload(
    base: &str,
    token: &str,
    timeout: Duration,
    ca: &[u8],
    id: &ClientIdentity,
    not_before: u64,
    not_after: u64,
) -> miette::Result<Workload> {
    let agent = agent_trusting(timeout, Some(ca), Some(id))?;
    Ok(Workload {
        client: Client::with_agent(base, token, agent),
        renew_at: not_before + not_after.saturating_sub(not_before) / 2,
        not_after,
    })
}

impl Link {
    /// Renews the workload certificate when due (or gets the first); a failure is logged and
    /// tried again shortly.
    fn refresh(&mut self, base: &str, token: &str, timeout: Duration, zone: &str) {
        let Link::Tls {
            bootstrap,
            ca,
            workload: current,
            next_try,
        } = self
        else {
            return;
        };
        let now = unix_now();
        if current.as_ref().is_some_and(|w| now < w.renew_at) || now < *next_try {
            return;
        }
        let got = request_certificate(bootstrap, zone)
            .and_then(|(id, not_after)| workload(base, token, timeout, ca, &id, now, not_after));
        match got {
            Ok(w) => {
                tracing::info!(
                    zone,
                    not_after = w.not_after,
                    "workload certificate renewed"
                );
                eprintln!(
                    "workload certificate for zone {zone} valid until {} (unix seconds); renewing at {}",
                    w.not_after, w.renew_at
                );
                *current = Some(w);
            }
            Err(e) => {
                let left = current
                    .as_ref()
                    .map_or(0, |w| w.not_after.saturating_sub(now));
                eprintln!("workload certificate renewal refused ({left} s left on the current one); trying again: {e:?}");
                *next_try = now + 5;
            }
        }
    }

    fn client(&self) -> Option<&Client> {
        match self {
            Link::Plain(c) => Some(c),
            Link::Tls { workload, .. } => workload.as_ref().map(|w| &w.client),
        }
    }
}

fn report(exec: &LocalExecutor, run: &str, status: RunStatus) -> Option<SyncReport> {
    let (status, exit_code) = match status {
        RunStatus::Running => ("running", None),
        RunStatus::Exited { code } => ("exited", Some(code)),
        RunStatus::Cancelled => ("cancelled", None),
        RunStatus::TimedOut { .. } => ("timed_out", None),
        // (The local executor never preempts.)
        RunStatus::Lost { .. } | RunStatus::Preempted { .. } => ("lost", None),
        // Nothing to report yet: the agent protocol has no queued state (and the local
        // executor never queues).
        RunStatus::Unknown | RunStatus::Queued => return None,
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
    let token = token.trim();
    // A sync that hangs (a cut link) gives up quickly so runs keep being watched.
    let timeout = Duration::from_millis((a.interval_ms * 5).clamp(2000, 10_000));
    let base = a.control_plane.trim_end_matches('/').to_owned();
    let mut link = if base.starts_with("https://") {
        let ca = find_ca(a.ca.as_deref(), None)?.ok_or_else(|| {
            miette!(
                help = "pass --ca FILE (or set TIDEGATE_CA): the control plane's <data-dir>/pki/ca.pem",
                "an https:// control plane needs its certificate authority"
            )
        })?;
        let bootstrap = Client::with_agent(&base, token, agent_trusting(timeout, Some(&ca), None)?);
        let offline = match (&a.cert, &a.key) {
            (Some(cert), Some(key)) => {
                let chain_pem = std::fs::read_to_string(cert)
                    .map_err(|e| miette!("cannot read {}: {e}", cert.display()))?;
                let key_pem = std::fs::read_to_string(key)
                    .map_err(|e| miette!("cannot read {}: {e}", key.display()))?;
                let v = tidegate_pki::certificate_validity(chain_pem.as_bytes())
                    .map_err(|e| miette!("{}: {e}", cert.display()))?;
                let id = ClientIdentity { chain_pem, key_pem };
                Some(workload(
                    &base,
                    token,
                    timeout,
                    &ca,
                    &id,
                    v.not_before,
                    v.not_after,
                )?)
            }
            _ => None,
        };
        Link::Tls {
            bootstrap,
            ca,
            workload: offline,
            next_try: 0,
        }
    } else {
        Link::Plain(Client::with_timeout(&base, token, timeout)?)
    };
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
        link.refresh(&base, token, timeout, &a.zone);
        let synced = match link.client() {
            Some(client) => client.post::<_, SyncResponse>(
                &path,
                &SyncRequest {
                    agent: name.clone(),
                    runs,
                },
                &[],
            ),
            None => Err(miette!(
                "no workload certificate yet: the control plane did not issue one"
            )),
        };
        match synced {
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
