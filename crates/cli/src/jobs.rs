//! `tidegate submit | jobs | job | cancel | logs`: the job lifecycle, through the API.

use std::path::PathBuf;

use clap::Args;
use miette::{miette, IntoDiagnostic};
use tidegate_api::{JobDetail, JobList, JobView, LogsView, SubmitRequest, SubmitResponse};
use tidegate_client::output::{print_json, Format};
use tidegate_client::{Client, ClientArgs};

/// Submit job manifests (YAML, as in examples/jobs/) to the control plane.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Job manifest files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Idempotency key: a retry with the same key returns the job it created instead of a new
    /// one (with several files, `-N` is appended per file).
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: Format,
    /// Server and token.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// List jobs.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only jobs in this state (submitted, queued, admitted, running, succeeded, failed, cancelled, preempted).
    #[arg(long)]
    pub state: Option<String>,
    /// Only this team's jobs.
    #[arg(long)]
    pub team: Option<String>,
    /// Only jobs in this zone.
    #[arg(long)]
    pub zone: Option<String>,
    /// At most this many jobs.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: Format,
    /// Server and token.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Show one job: state, placement explanation, events.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// Job id (from `tidegate submit` or `tidegate jobs`).
    pub id: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: Format,
    /// Server and token.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Cancel a job (a running job is stopped).
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// Job id.
    pub id: String,
    /// Server and token.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Print the end of a job's output.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Job id.
    pub id: String,
    /// Bytes from the end (at most 1 MiB are returned).
    #[arg(long, default_value_t = 65_536)]
    pub tail: u64,
    /// Server and token.
    #[command(flatten)]
    pub client: ClientArgs,
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `tidegate submit`.
pub fn submit(args: &SubmitArgs) -> miette::Result<()> {
    let client = Client::from_args(&args.client)?;
    let mut out = Vec::new();
    let many = args.files.len() > 1;
    for (i, file) in args.files.iter().enumerate() {
        let manifest = std::fs::read_to_string(file)
            .map_err(|e| miette!("cannot read {}: {e}", file.display()))?;
        let key = args.idempotency_key.as_ref().map(|k| {
            if many {
                format!("{k}-{}", i + 1)
            } else {
                k.clone()
            }
        });
        let headers: Vec<(&str, &str)> = key
            .as_deref()
            .map(|k| vec![("Idempotency-Key", k)])
            .unwrap_or_default();
        let resp: SubmitResponse = client
            .post("/v1/jobs", &SubmitRequest { manifest }, &headers)
            .map_err(|e| miette!("{}: {e}", file.display()))?;
        if args.output == Format::Text {
            let note = if resp.replayed {
                " (already submitted with this key)"
            } else {
                ""
            };
            println!(
                "{}  {}  {}{note}",
                resp.job.id, resp.job.name, resp.job.state
            );
        }
        out.push(resp);
    }
    if args.output == Format::Json {
        print_json(&out)?;
    }
    Ok(())
}

/// `tidegate jobs`.
pub fn list(args: &JobsArgs) -> miette::Result<()> {
    let client = Client::from_args(&args.client)?;
    let mut q = vec![format!("limit={}", args.limit)];
    for (k, v) in [
        ("state", &args.state),
        ("team", &args.team),
        ("zone", &args.zone),
    ] {
        if let Some(v) = v {
            q.push(format!("{k}={}", encode(v)));
        }
    }
    let page: JobList = client.get(&format!("/v1/jobs?{}", q.join("&")))?;
    if args.output == Format::Json {
        return print_json(&page);
    }
    println!(
        "{:<26} {:<24} {:<16} {:<10} {:<24} REASON",
        "ID", "NAME", "TEAM", "STATE", "ZONE/POOL"
    );
    for j in &page.jobs {
        println!(
            "{:<26} {:<24} {:<16} {:<10} {:<24} {}",
            j.id,
            j.name,
            j.team,
            j.state,
            place(j),
            j.reason.as_deref().unwrap_or("")
        );
    }
    if page.next.is_some() {
        println!("(more: raise --limit or filter by --state / --team)");
    }
    Ok(())
}

fn place(j: &JobView) -> String {
    match (&j.zone, &j.pool) {
        (Some(z), Some(p)) => format!("{z}/{p}"),
        (Some(z), None) => format!("{z} (queue)"),
        _ => "-".into(),
    }
}

/// `tidegate job ID`.
pub fn show(args: &JobArgs) -> miette::Result<()> {
    let client = Client::from_args(&args.client)?;
    let d: JobDetail = client.get(&format!("/v1/jobs/{}", encode(&args.id)))?;
    if args.output == Format::Json {
        return print_json(&d);
    }
    let j = &d.job;
    println!("job {}  ({}, team {})", j.id, j.name, j.team);
    println!(
        "  state   {}{}",
        j.state,
        j.reason
            .as_deref()
            .map(|r| format!(" — {r}"))
            .unwrap_or_default()
    );
    println!("  place   {}", place(j));
    if let Some(ex) = d
        .events
        .iter()
        .find(|e| e.details.get("allowed").is_some())
        .map(|e| &e.details)
    {
        println!(
            "  placement (policy {})",
            ex.get("policy_hash")
                .and_then(|v| v.as_str())
                .unwrap_or("?")
        );
        if let Some(c) = ex.get("effective_classification").and_then(|v| v.as_str()) {
            println!("    classification  {c}");
        }
        let allowed: Vec<&str> = ex
            .get("allowed")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        println!(
            "    allowed         {}",
            if allowed.is_empty() {
                "nowhere".to_string()
            } else {
                allowed.join(", ")
            }
        );
        if let Some(refused) = ex.get("refused_zones").and_then(|v| v.as_object()) {
            for (zone, reasons) in refused {
                let rs: Vec<&str> = reasons
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                    .unwrap_or_default();
                println!("    not {zone}: {}", rs.join("; "));
            }
        }
    }
    println!("  events");
    for e in &d.events {
        let change = match (&e.from_state, &e.to_state) {
            (Some(f), Some(t)) => format!("{f} -> {t}"),
            (None, Some(t)) => t.clone(),
            _ => e.kind.clone(),
        };
        let extra = match e.details.get("justification").and_then(|v| v.as_str()) {
            Some(j) => format!(" [justification: {j}]"),
            None => String::new(),
        };
        println!(
            "    {:>3}  {}  {:<22} {}{extra}",
            e.seq,
            crate::clock::format_ms(e.at),
            change,
            e.reason.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

/// `tidegate cancel ID`.
pub fn cancel(args: &CancelArgs) -> miette::Result<()> {
    let client = Client::from_args(&args.client)?;
    let j: JobView = client.post(
        &format!("/v1/jobs/{}/cancel", encode(&args.id)),
        &serde_json::json!({}),
        &[],
    )?;
    println!("{}  {}", j.id, j.state);
    Ok(())
}

/// `tidegate logs ID`.
pub fn logs(args: &LogsArgs) -> miette::Result<()> {
    let client = Client::from_args(&args.client)?;
    let l: LogsView = client.get(&format!(
        "/v1/jobs/{}/logs?tail_bytes={}",
        encode(&args.id),
        args.tail.min(tidegate_api::MAX_LOG_TAIL)
    ))?;
    print!("{}", l.logs);
    Ok(())
}

/// The fleet in force on a running control plane.
#[derive(Debug, clap::Subcommand)]
pub enum FleetCmd {
    /// Put a fleet directory in force on the running control plane (admin): it is checked here
    /// first (nothing is sent if it does not load), then the server loads it whole, ledgers its
    /// hashes and swaps it in; queued and running work is re-checked against it and a run no
    /// longer allowed is withdrawn. Without DIR the server re-reads the directory in force (as
    /// SIGHUP does). A set that does not load leaves the one in force.
    ///
    /// Example: tidegate fleet apply examples/fleet
    Apply {
        /// The fleet directory (on the control plane's host).
        dir: Option<std::path::PathBuf>,
        /// Server and token.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The fleet and policy set in force on the control plane: directory, hashes, generation.
    Show {
        /// Server and token.
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `tidegate fleet ...`.
pub fn fleet(cmd: &FleetCmd) -> miette::Result<()> {
    let (dir, client) = match cmd {
        FleetCmd::Apply { dir, client } => (dir, client),
        FleetCmd::Show { client } => {
            let v: tidegate_api::FleetView = Client::from_args(client)?.get("/v1/fleet")?;
            print_fleet(&v);
            return Ok(());
        }
    };
    let dir = match dir {
        Some(d) => {
            let (fleet, _) = tidegate_model::load_fleet_with_scheduling(d).map_err(|e| {
                miette!(
                    help = "nothing was sent",
                    "the fleet in {} does not load:\n{e}",
                    d.display()
                )
            })?;
            tidegate_policy::PolicyEngine::load(&fleet).map_err(|e| {
                miette!(
                    help = "nothing was sent",
                    "the policy set does not load:\n{e}"
                )
            })?;
            Some(
                std::fs::canonicalize(d)
                    .into_diagnostic()?
                    .display()
                    .to_string(),
            )
        }
        None => None,
    };
    let client = Client::from_args(client)?;
    let v: tidegate_api::FleetView =
        client.post("/v1/fleet", &tidegate_api::FleetApplyRequest { dir }, &[])?;
    print_fleet(&v);
    Ok(())
}

fn print_fleet(v: &tidegate_api::FleetView) {
    println!(
        "fleet {} in force (generation {}): {} zones, {} dataset versions\n  fleet hash  {}\n  policy hash {}",
        v.dir, v.generation, v.zones, v.datasets, v.fleet_hash, v.policy_hash
    );
}

/// Zones: list them with their load and condition, or set a zone's condition.
#[derive(Debug, clap::Subcommand)]
pub enum ZoneCmd {
    /// Zones, pools, queued and running jobs, health.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Format,
        /// Server and token.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set a zone's condition (admin): `degraded` or `unreachable` applies the fleet's failure
    /// hierarchy to its queue; `--throttled` sheds per class; `healthy` ends the drill or outage.
    Set {
        /// Zone name.
        zone: String,
        /// healthy, degraded or unreachable.
        #[arg(long, value_parser = ["healthy", "degraded", "unreachable"])]
        health: String,
        /// The zone's provider throttles new work.
        #[arg(long)]
        throttled: bool,
        /// Why (kept with the condition).
        #[arg(long)]
        reason: Option<String>,
        /// Server and token.
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `tidegate zone ...`.
pub fn zone(cmd: &ZoneCmd) -> miette::Result<()> {
    match cmd {
        ZoneCmd::List { output, client } => {
            let client = Client::from_args(client)?;
            let zones: Vec<tidegate_api::ZoneView> = client.get("/v1/zones")?;
            if *output == Format::Json {
                return print_json(&zones);
            }
            println!(
                "{:<18} {:<8} {:<11} {:>6} {:>7}  {:<12} POOLS",
                "ZONE", "TIER", "BACKEND", "QUEUED", "RUNNING", "HEALTH"
            );
            for z in &zones {
                let pools: Vec<String> = z
                    .pools
                    .iter()
                    .map(|p| format!("{} {}x{}", p.name, p.gpus, p.gpu_type))
                    .collect();
                let health = if z.throttled {
                    format!("{} (throttled)", z.health)
                } else {
                    z.health.clone()
                };
                println!(
                    "{:<18} {:<8} {:<11} {:>6} {:>7}  {:<12} {}",
                    z.name,
                    z.tier,
                    z.backend,
                    z.queued,
                    z.running,
                    health,
                    pools.join(", ")
                );
            }
            Ok(())
        }
        ZoneCmd::Set {
            zone,
            health,
            throttled,
            reason,
            client,
        } => {
            let client = Client::from_args(client)?;
            let body = tidegate_api::ConditionRequest {
                health: health.clone(),
                throttled: *throttled,
                reason: reason.clone(),
            };
            let z: tidegate_api::ZoneView =
                client.post(&format!("/v1/zones/{}/condition", encode(zone)), &body, &[])?;
            println!(
                "{}  {}{}",
                z.name,
                z.health,
                if z.throttled { " (throttled)" } else { "" }
            );
            Ok(())
        }
    }
}
