//! `tidegate sim`: replay a GPU-cluster trace through the scheduler core on a simulated clock.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use miette::miette;
use tidegate_client::output::{fleet_dir, print_json, Format};
use tidegate_model::{load_fleet_with_scheduling, Scheduling};
use tidegate_placement::PlacementEngine;
use tidegate_policy::PolicyEngine;
use tidegate_sched::SchedConfig;
use tidegate_sim::{read_trace, replay_with, scale_scheduling, scale_to_gpus, SimReport};

/// Mean job completion times the Pollux paper reports for its eight workloads at 1.0x load on
/// a 64-GPU cluster (Qiao et al., OSDI 2021), for reference beside a replay.
const PUBLISHED: [(&str, f64); 3] = [
    ("Pollux", 2751.0),
    ("Tiresias", 4038.0),
    ("Optimus", 5682.0),
];

/// What to compare the hybrid replay with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compare {
    /// The same trace with public capacity switched off.
    PrivateOnly,
}

/// Arguments of `tidegate sim`.
///
/// Each trace row becomes one job (submit time, duration, GPU count). A seeded rule gives every
/// job an input drawn uniformly from the fleet's dataset versions (so its classification follows
/// the fleet's data) and `burst_eligible=true` with probability 0.7; policy decides where each
/// may run. The fleet is scaled to `--gpus` GPUs keeping its shape (and, with `--rules`, its team
/// quotas). With `--rules`, each job gets a team drawn from the fleet's `teams:` and (Philly) a
/// class drawn from its `job_classes:`, so quotas with borrowing and preemption, fair share,
/// budgets and justifications apply; jobs a budget or a missing justification holds for good are
/// reported as still queued.
/// Trace formats: see `--trace` (Pollux run times per application are documented there and in
/// `tidegate_sim::POLLUX_RUN_TIMES`).
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Trace file, format told apart by its header.
    ///   Philly: timestamp,duration,num_gpus,gpu_time,cluster (used as given).
    ///   Pollux workload: name,time,application,num_replicas,batch_size. No duration column:
    ///   with the measured application profiles beside the workload (pollux-profiles/APP/),
    ///   each job's run time is derived from its application, replicas and batch size
    ///   (epochs x iterations at that batch size x step time at that placement and local
    ///   batch; see tidegate_sim::pollux). Without them, each application runs for an
    ///   estimated time after the paper's size categories (OSDI 2021; Small <1 GPU-h,
    ///   Medium 1-10, Large 10-100, XLarge 100-1000); the job class is the application:
    ///     cifar10       900 s  ResNet18 / CIFAR-10, Small
    ///     ncf           600 s  NeuMF / MovieLens, Small
    ///     bert        2,700 s  BERT fine-tuning / SQuAD, Medium
    ///     deepspeech2 3,600 s  DeepSpeech2 / CMU-ARCTIC, Medium
    ///     yolov3      9,000 s  YOLOv3 / PASCAL-VOC, Large
    ///     imagenet   28,800 s  ResNet50 / ImageNet, XLarge
    #[arg(long, verbatim_doc_comment)]
    trace: PathBuf,
    /// Apply the fleet's scheduling rules (teams, job classes, budgets, justifications).
    #[arg(long)]
    rules: bool,
    /// Fleet directory (default ./examples/fleet).
    #[arg(long, env = "TIDEGATE_FLEET")]
    fleet: Option<PathBuf>,
    /// Scale the fleet to about this many GPUs (the Philly cluster had about 2,500).
    #[arg(long, default_value_t = 2500)]
    gpus: u32,
    /// Also replay without public capacity and show both side by side.
    #[arg(long, value_enum)]
    compare: Option<Compare>,
    /// Spill to public capacity when a home queue holds this many jobs.
    #[arg(long, default_value_t = 16)]
    burst_queue_depth: usize,
    /// Seed of the job-mix rule.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output format; JSON has jobs_completed, mean_wait_s, mean_jct_s, public_cost.
    #[arg(long, value_enum, default_value_t)]
    output: Format,
}

/// Runs `tidegate sim`.
pub fn run(a: &SimArgs) -> miette::Result<()> {
    let t0 = Instant::now();
    let (base, rules) = load_fleet_with_scheduling(&fleet_dir(a.fleet.clone())?)
        .map_err(|e| miette!("fleet does not load:\n{e}"))?;
    let fleet = scale_to_gpus(&base, a.gpus);
    let rules = if a.rules {
        scale_scheduling(&base, &rules, a.gpus)
    } else {
        Scheduling::default()
    };
    let trace = read_trace(&a.trace).map_err(|e| miette!("{e}"))?;
    let pollux = trace.iter().any(|j| j.class.is_some());
    let run_times = if trace.iter().any(|j| j.measured) {
        "derived from the measured Pollux application profiles (pollux-profiles/ beside the trace)"
    } else if pollux {
        "estimated per application (no pollux-profiles/ beside the trace)"
    } else {
        "as the trace gives them"
    };
    let show = std::io::stderr().is_terminal() && a.output == Format::Text;
    let run_one = |allow_public: bool| -> miette::Result<SimReport> {
        let policy =
            PolicyEngine::load(&fleet).map_err(|e| miette!("policy set does not load:\n{e}"))?;
        let mut engine = PlacementEngine::new(&fleet, policy);
        let cfg = SchedConfig {
            allow_public,
            burst_queue_depth: a.burst_queue_depth,
            ..SchedConfig::default()
        };
        let label = if allow_public {
            "hybrid"
        } else {
            "private-only"
        };
        Ok(replay_with(
            &fleet,
            &rules,
            &mut engine,
            &trace,
            cfg,
            a.seed,
            |done, total| {
                if show {
                    let width = 30usize;
                    let filled = (done * width)
                        .checked_div(total)
                        .unwrap_or(width)
                        .min(width);
                    eprint!(
                        "\r{label:<12} [{}{}] {done}/{total}",
                        "#".repeat(filled),
                        ".".repeat(width - filled)
                    );
                    if done == total {
                        eprintln!();
                    }
                    let _ = std::io::stderr().flush();
                }
            },
        ))
    };
    let hybrid = run_one(true)?;
    let private = match a.compare {
        Some(Compare::PrivateOnly) => Some(run_one(false)?),
        None => None,
    };
    let wall_s = t0.elapsed().as_secs_f64();
    match a.output {
        Format::Json => {
            let mut v = serde_json::to_value(&hybrid).map_err(|e| miette!("{e}"))?;
            if let Some(obj) = v.as_object_mut() {
                obj.insert("wall_s".into(), wall_s.into());
                obj.insert("run_times".into(), run_times.into());
                if pollux {
                    obj.insert("published_mean_jct_s".into(), serde_json::json!(PUBLISHED));
                }
                obj.insert(
                    "fleet_gpus".into(),
                    fleet
                        .zones
                        .iter()
                        .flat_map(|z| &z.pools)
                        .map(|p| p.gpus)
                        .sum::<u32>()
                        .into(),
                );
                if let Some(p) = &private {
                    obj.insert(
                        "private_only".into(),
                        serde_json::to_value(p).map_err(|e| miette!("{e}"))?,
                    );
                }
            }
            print_json(&v)
        }
        Format::Text => {
            let rows = std::iter::once(&hybrid).chain(private.as_ref());
            println!(
                "{:<14} {:>9} {:>8} {:>11} {:>11} {:>11} {:>11} {:>8} {:>12}",
                "MODE",
                "COMPLETED",
                "REFUSED",
                "MEAN WAIT",
                "MEDIAN",
                "P95 WAIT",
                "MEAN JCT",
                "BURSTS",
                "PUBLIC COST"
            );
            for r in rows {
                println!(
                    "{:<14} {:>9} {:>8} {:>10.0}s {:>10.0}s {:>10.0}s {:>10.0}s {:>8} {:>12.2}",
                    r.mode,
                    r.jobs_completed,
                    r.refused,
                    r.mean_wait_s,
                    r.median_wait_s,
                    r.p95_wait_s,
                    r.mean_jct_s,
                    r.bursts,
                    r.public_cost
                );
            }
            for r in std::iter::once(&hybrid).chain(private.as_ref()) {
                println!(
                    "{:<14} preemptions {}  budget holds {}  justification holds {}  still queued {}",
                    r.mode, r.preemptions, r.budget_holds, r.justification_holds, r.still_queued
                );
                for (why, n) in &r.still_queued_reasons {
                    println!("  still queued ({n}): {why}");
                }
            }
            println!("\nper job class (hybrid):");
            println!(
                "  {:<14} {:>7} {:>9} {:>8} {:>11} {:>8} {:>12}",
                "CLASS", "JOBS", "COMPLETED", "REFUSED", "MEAN WAIT", "BURSTS", "PUBLIC COST"
            );
            for (name, c) in &hybrid.classes {
                println!(
                    "  {:<14} {:>7} {:>9} {:>8} {:>10.0}s {:>8} {:>12.2}",
                    name, c.jobs, c.completed, c.refused, c.mean_wait_s, c.bursts, c.public_cost
                );
            }
            println!("\nutilisation (hybrid):");
            for z in &hybrid.zones {
                println!(
                    "  {:<18} {:<15} {:>6} GPUs  {:>5.1}%  {} jobs",
                    z.zone,
                    z.tier,
                    z.gpus,
                    z.utilization * 100.0,
                    z.jobs
                );
            }
            for (why, n) in &hybrid.refused_reasons {
                println!("refused ({n}): {why}");
            }
            println!("\nrun times: {run_times}");
            if pollux {
                println!(
                    "published mean JCT on the paper's 64-GPU cluster (16 nodes of 4), same workloads: {} (tidegate here: {:.0} s on {} GPUs)",
                    PUBLISHED
                        .iter()
                        .map(|(n, s)| format!("{n} {s:.0} s"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    hybrid.mean_jct_s,
                    fleet.zones.iter().flat_map(|z| &z.pools).map(|p| p.gpus).sum::<u32>()
                );
            }
            println!("\n{} jobs replayed in {wall_s:.2} s", hybrid.jobs);
            Ok(())
        }
    }
}
