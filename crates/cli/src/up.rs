//! `tidegate up`: the whole control plane on one machine (SQLite state, local executors standing
//! in for every zone, HTTPS on loopback with a certificate authority of its own in
//! `<data-dir>/pki/`), or one replica of it on PostgreSQL.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use miette::{miette, IntoDiagnostic};
use tidegate_sched::SchedConfig;
use tidegate_server::control::LoopConfig;
use tidegate_server::ServerConfig;

/// The example fleet, built in so `tidegate up` works from any directory.
const EXAMPLE_FLEET: &[(&str, &str)] = &[
    (
        "fleet.yaml",
        include_str!("../../../examples/fleet/fleet.yaml"),
    ),
    (
        "datasets.yaml",
        include_str!("../../../examples/fleet/datasets.yaml"),
    ),
    (
        "artifacts.yaml",
        include_str!("../../../examples/fleet/artifacts.yaml"),
    ),
    (
        "policies/hospital.cedar",
        include_str!("../../../examples/fleet/policies/hospital.cedar"),
    ),
    (
        "zones/edge-clinic.yaml",
        include_str!("../../../examples/fleet/zones/edge-clinic.yaml"),
    ),
    (
        "zones/hospital-onprem.yaml",
        include_str!("../../../examples/fleet/zones/hospital-onprem.yaml"),
    ),
    (
        "zones/private-cloud.yaml",
        include_str!("../../../examples/fleet/zones/private-cloud.yaml"),
    ),
    (
        "zones/public-eu.yaml",
        include_str!("../../../examples/fleet/zones/public-eu.yaml"),
    ),
    (
        "zones/public-us.yaml",
        include_str!("../../../examples/fleet/zones/public-us.yaml"),
    ),
];

/// Start the control plane: API, scheduler loop, executors, evidence ledger.
///
/// With no arguments it runs everything on this machine: state in `.tidegate/state.sqlite`
/// (WAL, every acknowledged write survives a crash), the example fleet, and a local executor
/// per zone (jobs run as real processes under `.tidegate/zones/<zone>/<job-id>/`; GPU pools are
/// counted slots). It serves HTTPS: on first start it creates a certificate authority in
/// `.tidegate/pki/` (the CLI on this machine trusts it by itself; elsewhere pass `--ca` or set
/// `TIDEGATE_CA`; `curl --cacert .tidegate/pki/ca.pem`), and issues zone agents short-lived
/// workload certificates from it. It prints the API's URL and where the admin token is; stop it with Ctrl-C or
/// SIGTERM (it drains: requests in flight finish, running jobs keep running and are found again
/// at the next start).
///
/// Several replicas can share one PostgreSQL database (`--database postgres://...`): each serves
/// the API, and only the one holding the scheduler lease runs the scheduler loop.
///
/// Then, in another terminal: `tidegate demo burst`, `tidegate submit examples/jobs/sepsis-hpo-sweep.yaml`,
/// `tidegate jobs`, `tidegate job ID`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Data directory: state, evidence ledger, token keys, admin token, zone work directories.
    #[arg(long, default_value = ".tidegate")]
    pub data_dir: PathBuf,
    /// Fleet directory (default: ./examples/fleet if present, else the built-in example fleet,
    /// written to <data-dir>/example-fleet).
    #[arg(long)]
    pub fleet: Option<PathBuf>,
    /// PostgreSQL URL for shared state (default: SQLite in the data directory).
    #[arg(long, env = "TIDEGATE_DATABASE")]
    pub database: Option<String>,
    /// Address to listen on (port 0 picks a free port; the URL is written to <data-dir>/server.url).
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// Burst a burst-eligible job to public capacity when its home queue holds this many jobs.
    #[arg(long, default_value_t = 16)]
    pub burst_queue_depth: usize,
    /// Run jobs that have no command as stand-ins sleeping expected_hours x 3600 / SCALE seconds.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// This replica's name: in the scheduler lease, and for its evidence ledger log in
    /// PostgreSQL (default: the host name; the lease then adds the process id). Replicas on one
    /// host need distinct names.
    #[arg(long)]
    pub replica: Option<String>,
    /// Seconds the scheduler lease lasts without renewal: a new leader takes over this long
    /// after the leader dies (plus at most half a second). The leader renews every third of
    /// it, so the default rides out a database stall of over 3 s without a needless handover;
    /// shorter trades that margin for a faster takeover.
    #[arg(long, default_value_t = 5)]
    pub lease_seconds: u64,
    /// Root of the zone work directories (default <data-dir>/zones); replicas on one host can share it.
    #[arg(long)]
    pub work_root: Option<PathBuf>,
    /// Token root keys (default <data-dir>/keys). Replicas must share one: point them all at the
    /// same directory (or a copy of it).
    #[arg(long)]
    pub keys_dir: Option<PathBuf>,
    /// Lifetime of the admin token written at start, minutes (at most 720).
    #[arg(long, default_value_t = 720)]
    pub admin_token_minutes: u32,
    /// A zone run by an agent inside it (`tidegate agent --zone NAME`) instead of an executor on
    /// this machine (repeatable). An agent silent for --agent-timeout makes its zone unreachable.
    #[arg(long = "agent-zone", value_name = "ZONE")]
    pub agent_zones: Vec<String>,
    /// Seconds without a sync before an agent's zone is marked unreachable.
    #[arg(long, default_value_t = 10)]
    pub agent_timeout: u64,
    /// Which engines run each zone's jobs: `local` (the embedded default: a local process
    /// executor stands in for every zone) or `fleet` (each zone's declared backend: Slurm zones
    /// submit with sbatch to their partition, Kubernetes zones create Jobs through the
    /// kubeconfig context the zone names, local zones run processes). A backend that cannot be
    /// set up stops the start, naming the zone.
    #[arg(long, value_parser = ["local", "fleet"], default_value = "local")]
    pub backends: String,
    /// Container image for Kubernetes Jobs (with --backends fleet).
    #[arg(long, default_value = "tidegate-job:latest")]
    pub image: String,
    /// Serve the API only: do not run the scheduler loop (another replica on the same
    /// PostgreSQL database schedules).
    #[arg(long)]
    pub no_scheduler: bool,
    /// Serve plain HTTP instead of TLS: only on a loopback --listen address (refused otherwise),
    /// and connections from any other address are dropped. For local development and tests.
    #[arg(long)]
    pub plain_http: bool,
    /// Another name clients reach this control plane by, put in its server certificate (an IP
    /// address or DNS name; repeatable). The listen address, 127.0.0.1, ::1, localhost and the
    /// host name are always in it.
    #[arg(long = "tls-san", value_name = "NAME")]
    pub tls_sans: Vec<String>,
    /// Lifetime of the workload certificates issued to zone agents, seconds (at most 86400;
    /// agents renew at half of it).
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub workload_cert_ttl: u64,
}

pub(crate) fn example_fleet(data_dir: &Path) -> miette::Result<PathBuf> {
    let local = PathBuf::from("examples/fleet");
    if local.join("fleet.yaml").is_file() {
        return Ok(local);
    }
    let dir = data_dir.join("example-fleet");
    for (name, text) in EXAMPLE_FLEET {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).into_diagnostic()?;
        }
        std::fs::write(&path, text).map_err(|e| miette!("cannot write {}: {e}", path.display()))?;
    }
    Ok(dir)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "host".into(), |s| s.trim().to_owned())
}

/// Runs `tidegate up` until Ctrl-C or SIGTERM.
pub fn run(args: &UpArgs) -> miette::Result<()> {
    if !(args.time_scale > 0.0 && args.time_scale.is_finite()) {
        return Err(miette!(
            "--time-scale must be a positive number, got {}",
            args.time_scale
        ));
    }
    let fleet_dir = match &args.fleet {
        Some(f) => f.clone(),
        None => example_fleet(&args.data_dir)?,
    };
    let executors = if args.backends == "fleet" {
        fleet_executors(&fleet_dir, args)?
    } else {
        tidegate_backends::Executors::new()
    };
    let cfg = ServerConfig {
        data_dir: args.data_dir.clone(),
        fleet_dir: fleet_dir.clone(),
        database: args.database.clone(),
        store: None,
        listen: args.listen,
        loop_cfg: LoopConfig {
            holder: args
                .replica
                .clone()
                .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id())),
            lease_ttl: Duration::from_secs(args.lease_seconds.max(1)),
            tick: Duration::from_millis(200),
            sched: SchedConfig {
                burst_queue_depth: args.burst_queue_depth,
                ..SchedConfig::default()
            },
            time_scale: args.time_scale,
            agent_timeout: Duration::from_secs(args.agent_timeout.max(1)),
        },
        work_root: args.work_root.clone(),
        keys_dir: args.keys_dir.clone(),
        executors,
        admin_token_minutes: args.admin_token_minutes,
        agent_zones: args.agent_zones.clone(),
        replica: args.replica.clone().unwrap_or_else(hostname),
        scheduler: !args.no_scheduler,
        http: Default::default(),
        tls: (!args.plain_http).then(|| tidegate_server::TlsSettings {
            server_names: args.tls_sans.clone(),
            workload_ttl: Duration::from_secs(args.workload_cert_ttl),
            ..tidegate_server::TlsSettings::in_data_dir(&args.data_dir)
        }),
    };
    if args.plain_http && !args.listen.ip().to_canonical().is_loopback() {
        return Err(miette!(
            help = "drop --plain-http to serve TLS there, or listen on 127.0.0.1",
            "--plain-http is only allowed on a loopback --listen address, not {}",
            args.listen
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .into_diagnostic()?;
    rt.block_on(async move {
        let server = tidegate_server::start(cfg, tidegate_server::auth::system_clock())
            .await
            .map_err(|e| miette!(help = "nothing was started", "{e}"))?;
        let store = server.state.shared.store.describe();
        let zones = server.state.shared.rules().fleet.zones.len();
        println!("tidegate control plane is up");
        println!("  API          {}  (OpenAPI at /openapi.json and Prometheus at /metrics, with a token)", server.url);
        println!("  admin token  {}", server.admin_token_path.display());
        match (&server.ca_path, &server.state.tls) {
            (Some(ca), Some(tls)) => {
                let made = if tls.created { "created" } else { "reused" };
                println!("  TLS          certificate authority {} ({made}); server certificate for {}", ca.display(), tls.server_names.join(", "));
                println!("               this machine's CLI trusts it from --data-dir; elsewhere: --ca {0} (or TIDEGATE_CA), curl --cacert {0}", ca.display());
            }
            _ => println!("  TLS          off: plain HTTP on loopback only (--plain-http)"),
        }
        println!("  state        {store}");
        println!("  fleet        {} ({zones} zones, a local executor standing in for each)", fleet_dir.display());
        println!("  evidence     {}", tidegate_vocab::DataDir::new(&args.data_dir).ledger().display());
        println!("next, in another terminal:  tidegate demo burst   (or: tidegate submit examples/jobs/sepsis-hpo-sweep.yaml)");
        println!("change the fleet live with SIGHUP (re-reads {}) or `tidegate fleet apply DIR`", fleet_dir.display());
        println!("stop with Ctrl-C (drains gracefully)");
        reload_on_hangup(server.state.shared.clone());
        wait_for_signal().await;
        println!("draining...");
        server.shutdown().await;
        println!("stopped");
        Ok(())
    })
}

/// SIGHUP re-reads the fleet directory in force and puts it in force if it loads whole (the
/// last good set stays otherwise, and the reason is printed).
fn reload_on_hangup(shared: std::sync::Arc<tidegate_server::control::Shared>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; use `tidegate fleet apply` to change the fleet");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let s = shared.clone();
            match tokio::task::spawn_blocking(move || s.reload(None)).await {
                Ok(Ok(r)) => println!(
                    "SIGHUP: fleet {} and policy set {} in force (generation {})",
                    r.fleet.fleet_hash,
                    r.policy.hash(),
                    r.generation
                ),
                Ok(Err(e)) => eprintln!("SIGHUP: the fleet was not changed: {e}"),
                Err(e) => eprintln!("SIGHUP: reload task failed: {e}"),
            }
        }
    });
}

pub(crate) async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

/// The executors of `--backends fleet` that do not run on this machine, from the one place that
/// builds executors. Built before the control plane's runtime starts (the Kubernetes executor
/// owns a runtime of its own).
fn fleet_executors(
    fleet_dir: &Path,
    args: &UpArgs,
) -> miette::Result<tidegate_backends::Executors> {
    let (fleet, sched) = tidegate_model::load_fleet_with_scheduling(fleet_dir)
        .map_err(|e| miette!("the fleet in {} does not load:\n{e}", fleet_dir.display()))?;
    let options = tidegate_backends::Options {
        backends: tidegate_backends::Backends::Fleet,
        image: args.image.clone(),
    };
    tidegate_backends::remote(&fleet, &sched, &args.data_dir, &options).map_err(|e| {
        match e.help() {
            Some(help) => miette!(help = help, "{e}"),
            None => miette!("{e}"),
        }
    })
}
