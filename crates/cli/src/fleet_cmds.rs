//! `check`, `explain`, `plan` and `policy`: the offline commands over a fleet directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use miette::miette;
use serde::Serialize;
use tidegate_client::output::{fleet_dir, print_json, Format};
use tidegate_model::{load_fleet, load_job, load_jobs_dir, Fleet, JobSpec};
use tidegate_placement::{Explanation, FleetState, PlacementEngine};
use tidegate_policy::PolicyEngine;

/// Arguments of `tidegate check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Fleet directory (fleet.yaml, zones/*.yaml, datasets.yaml, policies/*.cedar).
    #[arg(long, env = "TIDEGATE_FLEET")]
    fleet: Option<PathBuf>,
    /// Directory of job specs to validate too (default: `jobs/` beside the fleet directory, if any).
    #[arg(long)]
    jobs: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: Format,
}

/// Arguments of `tidegate explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Fleet directory.
    #[arg(long, env = "TIDEGATE_FLEET")]
    fleet: Option<PathBuf>,
    /// The job spec (YAML, `apiVersion: tidegate.io/v1`, `kind: Job`).
    #[arg(long)]
    job: PathBuf,
    /// Output format; `json` has job, decision {zone, pool}, policy_hash and candidates.
    #[arg(long, value_enum, default_value_t)]
    output: Format,
}

/// Arguments of `tidegate plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Record the fleet, the policy set and every job's submission and placement in the evidence
    /// ledger of the data directory (then `tidegate evidence job NAME --out FILE`).
    #[arg(long)]
    record: bool,
    /// Data directory for `--record` (ledger, keys, documents).
    #[arg(
        long,
        value_name = "DIR",
        env = "TIDEGATE_DATA_DIR",
        default_value = ".tidegate"
    )]
    data_dir: PathBuf,
    /// Fleet directory.
    #[arg(long, env = "TIDEGATE_FLEET")]
    fleet: Option<PathBuf>,
    /// Directory of job specs (*.yaml).
    #[arg(long)]
    jobs: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: Format,
}

/// `tidegate policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Print the Cedar schema generated from the fleet's model (write policies against it).
    Schema {
        /// Fleet directory.
        #[arg(long, env = "TIDEGATE_FLEET")]
        fleet: Option<PathBuf>,
    },
    /// Print the built-in baseline policies.
    Baseline,
    /// Print the hash of the policy set in force and the number of policies.
    Hash {
        /// Fleet directory.
        #[arg(long, env = "TIDEGATE_FLEET")]
        fleet: Option<PathBuf>,
    },
}

fn load(dir: &Path) -> miette::Result<Fleet> {
    load_fleet(dir).map_err(|e| {
        miette!(
            help = "fix the listed fields; `tidegate check` lists every problem at once",
            "fleet {} does not load:\n{e}",
            dir.display()
        )
    })
}

fn engine(fleet: &Fleet) -> miette::Result<PolicyEngine> {
    PolicyEngine::load(fleet).map_err(|e| {
        miette!(
            help = "nothing is allowed while the policy set does not load; `tidegate policy schema` prints the schema policies are checked against",
            "policy set does not load (all placements refused):\n{e}"
        )
    })
}

#[derive(Serialize)]
struct CheckReport {
    fleet: String,
    ok: bool,
    zones: usize,
    pools: usize,
    datasets: usize,
    policies: usize,
    jobs: usize,
    policy_hash: Option<String>,
    fleet_hash: Option<String>,
    errors: Vec<String>,
}

/// `tidegate check`.
pub fn check(a: &CheckArgs) -> miette::Result<()> {
    let dir = fleet_dir(a.fleet.clone())?;
    let mut report = CheckReport {
        fleet: dir.display().to_string(),
        ok: false,
        zones: 0,
        pools: 0,
        datasets: 0,
        policies: 0,
        jobs: 0,
        policy_hash: None,
        fleet_hash: None,
        errors: vec![],
    };
    match load_fleet(&dir) {
        Err(e) => report.errors.extend(e.0.iter().map(ToString::to_string)),
        Ok(fleet) => {
            report.zones = fleet.zones.len();
            report.pools = fleet.pool_count();
            report.datasets = fleet.datasets.len();
            report.fleet_hash = Some(fleet.fleet_hash.clone());
            match PolicyEngine::load(&fleet) {
                Ok(p) => {
                    report.policies = p.len();
                    report.policy_hash = Some(p.hash().to_string());
                }
                Err(e) => report.errors.extend(e.0.iter().map(ToString::to_string)),
            }
            let jobs_dir = a.jobs.clone().or_else(|| {
                let d = dir.parent().map(|p| p.join("jobs"))?;
                d.is_dir().then_some(d)
            });
            if let Some(jd) = jobs_dir {
                match load_jobs_dir(&jd, &fleet) {
                    Ok(j) => report.jobs = j.len(),
                    Err(e) => report.errors.extend(e.0.iter().map(ToString::to_string)),
                }
            }
        }
    }
    report.ok = report.errors.is_empty();
    match a.output {
        Format::Json => print_json(&report)?,
        Format::Text => {
            for e in &report.errors {
                eprintln!("error: {e}");
            }
            if report.ok {
                println!(
                    "ok: fleet {} — {} zones, {} pools, {} datasets, {} policies, {} jobs",
                    report.fleet,
                    report.zones,
                    report.pools,
                    report.datasets,
                    report.policies,
                    report.jobs
                );
                if let Some(h) = &report.policy_hash {
                    println!("policy set sha256:{h}");
                }
            }
        }
    }
    if report.ok {
        Ok(())
    } else {
        Err(miette!(
            "{} error(s) in {}",
            report.errors.len(),
            report.fleet
        ))
    }
}

fn load_one_job(path: &Path, fleet: &Fleet) -> miette::Result<JobSpec> {
    load_job(path, fleet).map_err(|e| miette!("job {} does not load:\n{e}", path.display()))
}

/// `tidegate explain`.
pub fn explain(a: &ExplainArgs) -> miette::Result<()> {
    let dir = fleet_dir(a.fleet.clone())?;
    let fleet = load(&dir)?;
    let policy = engine(&fleet)?;
    let job = load_one_job(&a.job, &fleet)?;
    let mut eng = PlacementEngine::new(&fleet, policy);
    let p = eng
        .place(&job, &FleetState::idle(&fleet))
        .map_err(|e| miette!("{e}"))?;
    let ex = Explanation::new(&p, &job, &fleet);
    match a.output {
        Format::Json => print_json(&ex),
        Format::Text => {
            print!("{}", ex.to_text());
            Ok(())
        }
    }
}

#[derive(Serialize)]
struct PlanRow {
    job: String,
    kind: String,
    classification: String,
    decision: Option<String>,
    allowed_zones: Vec<String>,
    refused_zones: BTreeMap<String, String>,
    data_moves: Vec<String>,
    notes: Vec<String>,
}

/// `tidegate plan`.
pub fn plan(a: &PlanArgs) -> miette::Result<()> {
    let dir = fleet_dir(a.fleet.clone())?;
    let fleet = load(&dir)?;
    let policy = engine(&fleet)?;
    let jobs = load_jobs_dir(&a.jobs, &fleet)
        .map_err(|e| miette!("jobs in {} do not load:\n{e}", a.jobs.display()))?;
    if jobs.is_empty() {
        return Err(miette!(
            help = "job specs are *.yaml files with `kind: Job`",
            "no job specs in {}",
            a.jobs.display()
        ));
    }
    let mut eng = PlacementEngine::new(&fleet, policy);
    let state = FleetState::idle(&fleet);
    let mut rows = Vec::new();
    let mut placed = Vec::new();
    for job in &jobs {
        let p = eng.place(job, &state).map_err(|e| miette!("{e}"))?;
        let ex = Explanation::new(&p, job, &fleet);
        let mut row = PlanRow {
            job: job.name.clone(),
            kind: job.kind.to_string(),
            classification: ex.effective_classification.clone(),
            decision: ex
                .decision
                .zone
                .clone()
                .zip(ex.decision.pool.clone())
                .map(|(z, p)| format!("{z}/{p}")),
            allowed_zones: vec![],
            refused_zones: BTreeMap::new(),
            data_moves: vec![],
            notes: ex.notes.clone(),
        };
        for c in &ex.candidates {
            if c.allowed {
                row.allowed_zones.push(c.zone.clone());
            } else {
                let why = c.first_refusal().unwrap_or_else(|| "not allowed".into());
                row.refused_zones.insert(c.zone.clone(), why);
            }
        }
        if let Some(z) = &ex.decision.zone {
            for d in &p.profile.data {
                if &d.zone != z {
                    row.data_moves.push(format!(
                        "{} ({} GB) {} -> {}",
                        d.dataset, d.size_gb, d.zone, z
                    ));
                }
            }
        }
        rows.push(row);
        placed.push((job, p));
    }
    if a.record {
        let n = crate::record::record_plan(&a.data_dir, &fleet, eng.policy(), &placed)?;
        eprintln!("recorded {n} entries in {} (see `tidegate audit verify`, `tidegate evidence job NAME`)", a.data_dir.display());
    }
    match a.output {
        Format::Json => {
            print_json(&serde_json::json!({ "policy_hash": eng.policy().hash(), "jobs": rows }))
        }
        Format::Text => {
            println!(
                "{:<22} {:<12} {:<24} {:<26} MAY RUN IN",
                "JOB", "KIND", "CLASSIFICATION", "DECISION"
            );
            for r in &rows {
                println!(
                    "{:<22} {:<12} {:<24} {:<26} {}",
                    r.job,
                    r.kind,
                    r.classification,
                    r.decision.as_deref().unwrap_or("REFUSED"),
                    if r.allowed_zones.is_empty() {
                        "-".to_string()
                    } else {
                        r.allowed_zones.join(", ")
                    }
                );
            }
            println!("\nWhy not elsewhere, and what data would move:");
            for r in &rows {
                println!("  {}:", r.job);
                for n in &r.notes {
                    println!("    note: {n}");
                }
                for m in &r.data_moves {
                    println!("    moves: {m}");
                }
                for (z, why) in &r.refused_zones {
                    println!("    {z}: {why}");
                }
            }
            println!("\npolicy set sha256:{}", eng.policy().hash());
            Ok(())
        }
    }
}

/// `tidegate policy ...`.
pub fn policy(c: &PolicyCmd) -> miette::Result<()> {
    match c {
        PolicyCmd::Schema { fleet } => {
            let fleet = load(&fleet_dir(fleet.clone())?)?;
            print!("{}", tidegate_policy::schema_text(&fleet.scheme));
        }
        PolicyCmd::Baseline => print!("{}", tidegate_policy::BASELINE_TEXT),
        PolicyCmd::Hash { fleet } => {
            let fleet = load(&fleet_dir(fleet.clone())?)?;
            let p = engine(&fleet)?;
            println!("sha256:{}  ({} policies)", p.hash(), p.len());
        }
    }
    Ok(())
}
