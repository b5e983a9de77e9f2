//! `tidegate bench ...`: benchmarks run as commands, each measuring the naive way in the same run.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};
use miette::miette;
use serde::Serialize;
use tidegate_model::load_fleet;
use tidegate_placement::{synth, PlacementEngine};
use tidegate_policy::PolicyEngine;

use crate::output::{fleet_dir, print_json, Format};

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Placement decisions per second over a generated backlog, against one Cedar call per
    /// (job, zone) with nothing reused; checks both ways decide identically.
    Placement(PlacementArgs),
    /// Durable appends/s with concurrent writers (group commit), verification entries/s and proof
    /// times, next to the naive ways (fsync per append; SQLite hash chain) in the same run.
    Ledger(crate::bench_ledger::BenchLedgerArgs),
    /// Sanitizer MB/s end to end on generated Synthea-schema tables, next to Presidio
    /// (presidio-structured) and a plain pandas + HMAC script on the same rows.
    Sanitize(crate::bench_sanitize::BenchSanitizeArgs),
    /// Durable submissions/s through the HTTP API with concurrent clients (p50/p99), next to the
    /// same number of `sbatch` submissions when Slurm is installed.
    Submit(crate::bench_submit::BenchSubmitArgs),
    /// Submissions/s through the Slurm executor's start next to raw `sbatch --wrap true`.
    Slurm(crate::bench_slurm::BenchSlurmArgs),
}

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
    /// Jobs placed the naive way (and compared with the fast way); its rate is per job too.
    #[arg(long, default_value_t = 1_000)]
    naive_sample: usize,
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

#[derive(Debug, Serialize)]
struct PlacementReport {
    jobs: usize,
    zones: usize,
    pools: usize,
    policies: usize,
    decisions_per_sec: f64,
    naive_decisions_per_sec: f64,
    speedup: f64,
    naive_sample: usize,
    decisions_agree: bool,
    placed: usize,
    refused: usize,
    cedar_evaluations_fast: u64,
    cedar_evaluations_naive: u64,
    policy_hash: String,
    elapsed_s: f64,
}

/// Runs a benchmark.
pub fn run(c: &BenchCmd) -> miette::Result<()> {
    match c {
        BenchCmd::Placement(a) => placement(a),
        BenchCmd::Ledger(a) => crate::bench_ledger::run(a),
        BenchCmd::Sanitize(a) => crate::bench_sanitize::run(a),
        BenchCmd::Submit(a) => crate::bench_submit::run(a),
        BenchCmd::Slurm(a) => crate::bench_slurm::run(a),
    }
}

fn placement(a: &PlacementArgs) -> miette::Result<()> {
    let base = load_fleet(&fleet_dir(a.fleet.clone())?)
        .map_err(|e| miette!("fleet does not load:\n{e}"))?;
    let fleet = synth::scale_fleet(&base, a.replicas.max(1));
    let policy =
        PolicyEngine::load(&fleet).map_err(|e| miette!("policy set does not load:\n{e}"))?;
    let policies = policy.len();
    let jobs = synth::backlog(&fleet, a.jobs, a.seed);
    let state = synth::busy_state(&fleet, a.seed);
    let mut eng = PlacementEngine::new(&fleet, policy);
    eprintln!(
        "bench placement: {} jobs, {} zones, {} pools, {} policies",
        jobs.len(),
        fleet.zones.len(),
        fleet.pool_count(),
        policies
    );

    // Fast way: verdicts reused per attribute signature; every placement is complete (policy ids
    // and reasons per zone, every constraint per pool, costs, waits, the decision).
    let t0 = Instant::now();
    let mut placed = 0usize;
    let mut decisions = Vec::with_capacity(jobs.len());
    for batch in jobs.chunks(a.batch.max(1)) {
        for p in eng.place_batch(batch, &state) {
            let p = p.map_err(|e| miette!("{e}"))?;
            if p.decision.zone.is_some() {
                placed += 1;
            }
            decisions.push((p.decision.zone, p.decision.pool));
            std::hint::black_box(&p);
        }
    }
    let fast_s = t0.elapsed().as_secs_f64();

    // Naive way on a sample: one Cedar authorization per (job, zone), nothing reused.
    let sample = a.naive_sample.min(jobs.len());
    let step = (jobs.len() / sample.max(1)).max(1);
    let t1 = Instant::now();
    let mut agree = true;
    let mut naive_n = 0usize;
    for (i, job) in jobs.iter().enumerate().step_by(step).take(sample) {
        let n = eng.place_naive(job, &state).map_err(|e| miette!("{e}"))?;
        let f = eng.place(job, &state).map_err(|e| miette!("{e}"))?;
        naive_n += 1;
        let same = decisions.get(i) == Some(&(n.decision.zone, n.decision.pool))
            && n.allowed_pools().eq(f.allowed_pools())
            && n.verdicts.policy == f.verdicts.policy;
        if !same {
            agree = false;
            eprintln!(
                "disagreement on {}: fast {:?} naive {:?}",
                job.name,
                decisions.get(i),
                n.decision
            );
        }
    }
    // The fast re-placement inside the loop is a cache hit; measure it and take it out.
    let t2 = Instant::now();
    for job in jobs.iter().step_by(step).take(sample) {
        std::hint::black_box(eng.place(job, &state).map_err(|e| miette!("{e}"))?);
    }
    let hit_s = t2.elapsed().as_secs_f64();
    let naive_s = (t1.elapsed().as_secs_f64() - 2.0 * hit_s).max(1e-9);

    let decisions_per_sec = jobs.len() as f64 / fast_s.max(1e-9);
    let naive_decisions_per_sec = naive_n as f64 / naive_s;
    let report = PlacementReport {
        jobs: jobs.len(),
        zones: fleet.zones.len(),
        pools: fleet.pool_count(),
        policies,
        decisions_per_sec,
        naive_decisions_per_sec,
        speedup: decisions_per_sec / naive_decisions_per_sec,
        naive_sample: naive_n,
        decisions_agree: agree,
        placed,
        refused: jobs.len() - placed,
        cedar_evaluations_fast: eng.cedar_evaluations(),
        cedar_evaluations_naive: (naive_n * fleet.zones.len()) as u64,
        policy_hash: eng.policy().hash().to_string(),
        elapsed_s: t0.elapsed().as_secs_f64(),
    };
    match a.output {
        Format::Json => print_json(&report)?,
        Format::Text => {
            println!(
                "jobs {}  zones {}  pools {}  policies {}",
                report.jobs, report.zones, report.pools, report.policies
            );
            println!(
                "placed {}  refused {}  Cedar evaluations: fast {} / naive {} (sample)",
                report.placed,
                report.refused,
                report.cedar_evaluations_fast,
                report.cedar_evaluations_naive
            );
            println!("fast:  {:>12.0} decisions/s", report.decisions_per_sec);
            println!(
                "naive: {:>12.0} decisions/s  (sample of {})",
                report.naive_decisions_per_sec, report.naive_sample
            );
            println!(
                "speedup {:.1}x; decisions agree: {}",
                report.speedup, report.decisions_agree
            );
        }
    }
    if !agree {
        return Err(miette!(
            "the fast and naive placements disagree: the reuse is unsound"
        ));
    }
    Ok(())
}
