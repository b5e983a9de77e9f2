//! `tidegate bench placement`: placement decisions per second over a generated backlog, against
//! placing each job as a competent Cedar user would (one entity set a job, every zone
//! authorised), on the same threads; checks both ways decide identically.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use miette::miette;
use serde::Serialize;
use tidegate_client::output::{fleet_dir, print_json, Format};
use tidegate_model::{load_fleet, Fleet, JobSpec};
use tidegate_placement::{synth, FleetState, PlacementEngine};
use tidegate_policy::PolicyEngine;

/// Arguments of `tidegate bench placement`.
#[derive(Debug, Args)]
pub struct PlacementArgs {
    /// Jobs in the generated backlog.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Fleet to scale (default: ./examples/fleet).
    #[arg(long, env = "TIDEGATE_FLEET")]
    fleet: Option<PathBuf>,
    /// Copies of each zone (the example fleet x10 = 50 zones, 200 pools).
    #[arg(long, default_value_t = 10)]
    replicas: usize,
    /// The fair baseline places the whole backlog when that is estimated to take at most this
    /// many seconds, and otherwise as many jobs as fit (spread over the backlog).
    #[arg(long, default_value_t = 60)]
    fair_limit_s: u64,
    /// Jobs placed per batch (each batch uses every core; small batches keep memory warm).
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Seed of the backlog and fleet state.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: Format,
}

/// One backlog placed both ways.
#[derive(Debug, Serialize)]
struct CaseReport {
    /// `default` (the generated backlog) or `distinct` (no two jobs share what the policies read).
    backlog: &'static str,
    jobs: usize,
    policies: usize,
    /// Distinct attribute sets in the backlog (what the reuse is keyed by).
    distinct_attribute_sets: usize,
    decisions_per_sec: f64,
    fair_decisions_per_sec: f64,
    /// Jobs the fair baseline placed (the whole backlog when `fair_whole_backlog`).
    fair_jobs: usize,
    fair_whole_backlog: bool,
    speedup: f64,
    /// Every job the fair baseline placed got the same decision and policy verdicts both ways.
    decisions_agree: bool,
    placed: usize,
    refused: usize,
    cedar_evaluations_fast: u64,
    cedar_evaluations_fair: u64,
    elapsed_s: f64,
}

#[derive(Debug, Serialize)]
struct PlacementReport {
    zones: usize,
    pools: usize,
    /// Threads each side places on.
    threads: usize,
    /// Entity validation against the schema on each side (the same: entities are built from
    /// schema-typed values on both).
    entity_validation: &'static str,
    policy_hash: String,
    cases: Vec<CaseReport>,
}

/// Runs `tidegate bench placement`.
pub fn run(a: &PlacementArgs) -> miette::Result<()> {
    let base = load_fleet(&fleet_dir(a.fleet.clone())?)
        .map_err(|e| miette!("fleet does not load:\n{e}"))?;
    let fleet = synth::scale_fleet(&base, a.replicas.max(1));
    let threads = PlacementEngine::workers();
    let state = synth::busy_state(&fleet, a.seed);
    eprintln!(
        "bench placement: {} jobs, {} zones, {} pools, {threads} threads on each side",
        a.jobs,
        fleet.zones.len(),
        fleet.pool_count(),
    );
    let jobs = synth::backlog(&fleet, a.jobs, a.seed);
    let (default, hash) = place_both("default", &fleet, &jobs, &state, a)?;
    let (distinct_fleet, distinct_jobs) = synth::distinct_backlog(&fleet, a.jobs, a.seed);
    let (distinct, _) = place_both("distinct", &distinct_fleet, &distinct_jobs, &state, a)?;
    let report = PlacementReport {
        zones: fleet.zones.len(),
        pools: fleet.pool_count(),
        threads,
        entity_validation: "none on either side (entities built from schema-typed values)",
        policy_hash: hash,
        cases: vec![default, distinct],
    };
    match a.output {
        Format::Json => print_json(&report)?,
        Format::Text => {
            println!(
                "zones {}  pools {}  threads {} (each side)  entity validation: {}",
                report.zones, report.pools, report.threads, report.entity_validation
            );
            for c in &report.cases {
                println!(
                    "\n{} backlog: {} jobs, {} distinct attribute sets, {} policies",
                    c.backlog, c.jobs, c.distinct_attribute_sets, c.policies
                );
                println!(
                    "  placed {}  refused {}  Cedar evaluations: reused {} / fair {}",
                    c.placed, c.refused, c.cedar_evaluations_fast, c.cedar_evaluations_fair
                );
                println!(
                    "  tidegate (verdicts reused):        {:>12.0} decisions/s",
                    c.decisions_per_sec
                );
                println!(
                    "  fair Cedar (one entity set a job): {:>12.0} decisions/s  ({} jobs{})",
                    c.fair_decisions_per_sec,
                    c.fair_jobs,
                    if c.fair_whole_backlog {
                        ", the whole backlog"
                    } else {
                        ", spread over the backlog"
                    }
                );
                println!(
                    "  speedup {:.1}x; decisions agree: {}",
                    c.speedup, c.decisions_agree
                );
            }
        }
    }
    if report.cases.iter().any(|c| !c.decisions_agree) {
        return Err(miette!(
            "the reused and fair placements disagree: the reuse is unsound"
        ));
    }
    Ok(())
}

/// Places `jobs` with verdicts reused, then the fair way (the whole backlog when it fits in the
/// time limit), checking each fair decision against the reused one.
fn place_both(
    backlog: &'static str,
    fleet: &Fleet,
    jobs: &[JobSpec],
    state: &FleetState,
    a: &PlacementArgs,
) -> miette::Result<(CaseReport, String)> {
    let policy =
        PolicyEngine::load(fleet).map_err(|e| miette!("policy set does not load:\n{e}"))?;
    let policies = policy.len();
    let mut eng = PlacementEngine::new(fleet, policy);
    let distinct_attribute_sets = {
        let mut seen = std::collections::HashSet::new();
        for j in jobs {
            if let Ok(p) = tidegate_model::JobProfile::resolve(j, fleet) {
                seen.insert(p.attrs);
            }
        }
        seen.len()
    };
    eprintln!(
        "  {backlog}: placing {} jobs, verdicts reused ...",
        jobs.len()
    );

    // Verdicts reused per attribute signature; every placement is complete (policy ids and
    // reasons per zone, every constraint per pool, costs, waits, the decision).
    let t0 = Instant::now();
    let mut placed = 0usize;
    let mut fast = Vec::with_capacity(jobs.len());
    for batch in jobs.chunks(a.batch.max(1)) {
        for p in eng.place_batch(batch, state) {
            let p = p.map_err(|e| miette!("{e}"))?;
            if p.decision.zone.is_some() {
                placed += 1;
            }
            fast.push(p);
        }
    }
    let fast_s = t0.elapsed().as_secs_f64();

    // The fair way: a probe to estimate, then the whole backlog if it fits in the limit.
    let probe = jobs.len().min(512);
    let step = (jobs.len() / probe.max(1)).max(1);
    let probe_jobs: Vec<JobSpec> = jobs.iter().step_by(step).take(probe).cloned().collect();
    let tp = Instant::now();
    std::hint::black_box(eng.place_fair_batch(&probe_jobs, state));
    let per_job = tp.elapsed().as_secs_f64() / probe.max(1) as f64;
    let fits = (a.fair_limit_s as f64 / per_job.max(1e-12)) as usize;
    let (fair_idx, whole): (Vec<usize>, bool) = if fits >= jobs.len() {
        ((0..jobs.len()).collect(), true)
    } else {
        let n = fits.max(probe);
        let step = (jobs.len() / n.max(1)).max(1);
        ((0..jobs.len()).step_by(step).take(n).collect(), false)
    };
    eprintln!(
        "  {backlog}: placing {} jobs the fair way (about {:.0} s) ...",
        fair_idx.len(),
        per_job * fair_idx.len() as f64
    );
    let fair_jobs: Vec<JobSpec> = fair_idx
        .iter()
        .filter_map(|&i| jobs.get(i).cloned())
        .collect();
    let t1 = Instant::now();
    let mut fair = Vec::with_capacity(fair_jobs.len());
    for batch in fair_jobs.chunks(a.batch.max(1)) {
        fair.extend(eng.place_fair_batch(batch, state));
    }
    let fair_s = t1.elapsed().as_secs_f64();
    let mut agree = true;
    for (&i, f) in fair_idx.iter().zip(&fair) {
        let f = f.as_ref().map_err(|e| miette!("{e}"))?;
        let Some(r) = fast.get(i) else {
            agree = false;
            continue;
        };
        if r.decision != f.decision || r.verdicts.policy != f.verdicts.policy {
            agree = false;
            eprintln!(
                "disagreement on {}: reused {:?} fair {:?}",
                jobs.get(i).map_or("?", |j| j.name.as_str()),
                r.decision,
                f.decision
            );
        }
    }
    let decisions_per_sec = jobs.len() as f64 / fast_s.max(1e-9);
    let fair_decisions_per_sec = fair.len() as f64 / fair_s.max(1e-9);
    Ok((
        CaseReport {
            backlog,
            jobs: jobs.len(),
            policies,
            distinct_attribute_sets,
            decisions_per_sec,
            fair_decisions_per_sec,
            fair_jobs: fair.len(),
            fair_whole_backlog: whole,
            speedup: decisions_per_sec / fair_decisions_per_sec.max(1e-9),
            decisions_agree: agree,
            placed,
            refused: jobs.len() - placed,
            cedar_evaluations_fast: eng.cedar_evaluations(),
            cedar_evaluations_fair: (fair.len() * fleet.zones.len()) as u64,
            elapsed_s: t0.elapsed().as_secs_f64(),
        },
        eng.policy().hash().to_string(),
    ))
}
