//! tidegate simulator: a GPU-cluster job trace replayed through the scheduler core
//! (`tidegate-sched`) on a simulated clock, each job's allowed options from the placement engine.
//!
//! Mapping (documented in `tidegate sim --help` too): each trace row is one job submitted at its
//! timestamp (offset from the earliest), running for its duration, asking for its GPU count in one
//! pool. A seeded rule gives each job an input dataset version drawn uniformly from the fleet's
//! datasets (so the classification mix follows the fleet's data), the kind `train`, acceptance of
//! any GPU type, and `burst_eligible=true` with probability 0.7. The job's allowed options come
//! from the placement engine (policy and constraints), so a replay only ever bursts what policy
//! allows; jobs that fit nowhere they are allowed are counted as refused, with the reason.
//!
//! With the fleet's scheduling rules ([`replay_with`]), each job also gets a team drawn uniformly
//! from the fleet's `teams:` (quotas, fair share, standing justifications and budgets apply; the
//! quotas are scaled with the fleet) and, for Philly rows, a job class drawn uniformly from the
//! fleet's `job_classes:`. Without teams every job carries the justification "trace replay".
//!
//! Two trace formats are read, told apart by their header ([`read_trace`]):
//! - Philly (`timestamp,duration,num_gpus,gpu_time,cluster`): submit time, run time and GPUs as
//!   given.
//! - Pollux workloads (`name,time,application,num_replicas,batch_size`): submit offset `time`,
//!   GPUs `num_replicas`, job class = the application. The files have no duration column, so each
//!   application gets a typical run time at its requested replicas, following the size categories
//!   of the Pollux paper (Qiao et al., OSDI 2021: Small < 1 GPU-hour, Medium 1-10, Large 10-100,
//!   XLarge 100-1000): see [`POLLUX_RUN_TIMES`].

#![warn(missing_docs, unreachable_pub)]

pub mod pollux;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::Path;

use serde::Serialize;
use tidegate_model::{DatasetRef, Fleet, Input, JobKind, JobSpec, Labels, Origin, Resources};
use tidegate_placement::synth::Rng;
use tidegate_placement::{FleetState, PlacementEngine};
use tidegate_sched::{
    Candidate, Effect, QueueReason, RefuseReason, SchedConfig, Scheduler, Shape, DEFAULT_CLASS,
};

use tidegate_model::Scheduling;

/// Typical run time per Pollux application at its requested replicas, seconds, with the model,
/// data set and the paper's size category: an estimate (the workload files give no durations).
pub const POLLUX_RUN_TIMES: [(&str, f64, &str); 6] = [
    ("cifar10", 900.0, "ResNet18 on CIFAR-10, Small"),
    ("ncf", 600.0, "NeuMF on MovieLens, Small"),
    ("bert", 2700.0, "BERT fine-tuning on SQuAD, Medium"),
    ("deepspeech2", 3600.0, "DeepSpeech2 on CMU-ARCTIC, Medium"),
    ("yolov3", 9000.0, "YOLOv3 on PASCAL-VOC, Large"),
    ("imagenet", 28_800.0, "ResNet50 on ImageNet, XLarge"),
];

/// One job of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TraceJob {
    /// Submit time, seconds from the start of the trace.
    pub submit_s: f64,
    /// Run time, seconds.
    pub duration_s: f64,
    /// GPUs.
    pub gpus: u32,
    /// Job class the trace gives (the Pollux application), if any.
    pub class: Option<&'static str>,
    /// The run time comes from measured application profiles (Pollux with its profiles), not
    /// from the trace's own column or an estimate.
    pub measured: bool,
}

/// A trace that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file cannot be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A row is malformed.
    #[error("{path}:{line}: {field}: {message}")]
    Row {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// The column.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads a trace in either format, told apart by its header.
pub fn read_trace(path: &Path) -> Result<Vec<TraceJob>, TraceError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TraceError::Io {
        path: p.clone(),
        source,
    })?;
    let header = text.lines().next().unwrap_or_default();
    if header.split(',').any(|c| c.trim() == "application") {
        // The measured profiles sit beside the workloads, as the Pollux artifact ships them.
        let dir = path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("pollux-profiles");
        let profiles = if dir.is_dir() {
            Some(crate::pollux::Profiles::load(&dir)?)
        } else {
            None
        };
        parse_pollux(&p, &text, profiles.as_ref())
    } else {
        parse_philly(&p, &text)
    }
}

/// Reads a Pollux workload (`name,time,application,num_replicas,batch_size`). Run times are
/// derived from the measured application `profiles` when given ([`crate::pollux`]), and are
/// the estimates of [`POLLUX_RUN_TIMES`] otherwise. An unknown application is an error naming
/// its line.
pub fn read_pollux(
    path: &Path,
    profiles: Option<&crate::pollux::Profiles>,
) -> Result<Vec<TraceJob>, TraceError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TraceError::Io {
        path: p.clone(),
        source,
    })?;
    parse_pollux(&p, &text, profiles)
}

fn parse_pollux(
    p: &str,
    text: &str,
    profiles: Option<&crate::pollux::Profiles>,
) -> Result<Vec<TraceJob>, TraceError> {
    let row_err = |line: usize, field: &str, message: String| TraceError::Row {
        path: p.to_string(),
        line,
        field: field.into(),
        message,
    };
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, h)| h.trim()).unwrap_or_default();
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let idx = |name: &str| cols.iter().position(|c| *c == name);
    let bsz_i = idx("batch_size");
    let (Some(t_i), Some(app_i), Some(rep_i)) =
        (idx("time"), idx("application"), idx("num_replicas"))
    else {
        return Err(row_err(
            1,
            "header",
            format!("expected columns time, application, num_replicas; found `{header}`"),
        ));
    };
    let mut jobs = Vec::new();
    for (n, line) in lines {
        let line_no = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != cols.len() {
            return Err(row_err(
                line_no,
                "row",
                format!("expected {} fields, found {}", cols.len(), f.len()),
            ));
        }
        let t: f64 = f[t_i]
            .parse()
            .ok()
            .filter(|t: &f64| t.is_finite() && *t >= 0.0)
            .ok_or_else(|| {
                row_err(
                    line_no,
                    "time",
                    format!("`{}` is not a submit offset in seconds", f[t_i]),
                )
            })?;
        let (app, run_s, _) = POLLUX_RUN_TIMES
            .iter()
            .find(|(a, _, _)| *a == f[app_i])
            .copied()
            .ok_or_else(|| {
                let known: Vec<&str> = POLLUX_RUN_TIMES.iter().map(|a| a.0).collect();
                row_err(
                    line_no,
                    "application",
                    format!(
                        "unknown application `{}` (known: {})",
                        f[app_i],
                        known.join(", ")
                    ),
                )
            })?;
        let gpus: u32 = f[rep_i].parse().ok().filter(|g| *g > 0).ok_or_else(|| {
            row_err(
                line_no,
                "num_replicas",
                format!("`{}` is not a positive replica count", f[rep_i]),
            )
        })?;
        let measured = match (profiles, bsz_i) {
            (Some(pr), Some(i)) => {
                let bsz: f64 = f[i]
                    .parse()
                    .ok()
                    .filter(|b: &f64| *b > 0.0)
                    .ok_or_else(|| {
                        row_err(
                            line_no,
                            "batch_size",
                            format!("`{}` is not a positive batch size", f[i]),
                        )
                    })?;
                Some(pr.run_time(app, gpus, bsz).ok_or_else(|| {
                    row_err(
                        line_no,
                        "application",
                        format!("no measured profile for `{app}`"),
                    )
                })?)
            }
            _ => None,
        };
        jobs.push(TraceJob {
            submit_s: t,
            duration_s: measured.as_ref().map_or(run_s, |m| m.seconds),
            gpus,
            class: Some(app),
            measured: measured.is_some(),
        });
    }
    let t0 = jobs
        .iter()
        .map(|j| j.submit_s)
        .fold(f64::INFINITY, f64::min);
    for j in &mut jobs {
        j.submit_s -= if t0.is_finite() { t0 } else { 0.0 };
    }
    jobs.sort_by(|a, b| a.submit_s.total_cmp(&b.submit_s));
    Ok(jobs)
}

/// Reads a Philly-format trace (`timestamp,duration,num_gpus,gpu_time,cluster`; timestamps
/// `YYYY-MM-DD HH:MM:SS`, any order). Blank lines are skipped; any malformed row is an error
/// naming its line.
pub fn read_philly(path: &Path) -> Result<Vec<TraceJob>, TraceError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TraceError::Io {
        path: p.clone(),
        source,
    })?;
    parse_philly(&p, &text)
}

fn parse_philly(p: &str, text: &str) -> Result<Vec<TraceJob>, TraceError> {
    let row_err = |line: usize, field: &str, message: String| TraceError::Row {
        path: p.to_string(),
        line,
        field: field.into(),
        message,
    };
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, h)| h.trim()).unwrap_or_default();
    let cols: Vec<&str> = header.split(',').collect();
    let idx = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(ts_i), Some(dur_i), Some(gpu_i)) =
        (idx("timestamp"), idx("duration"), idx("num_gpus"))
    else {
        return Err(row_err(
            1,
            "header",
            format!("expected columns timestamp, duration, num_gpus; found `{header}`"),
        ));
    };
    let format = time::format_description::parse_borrowed::<2>(
        "[year]-[month]-[day] [hour]:[minute]:[second]",
    )
    .map_err(|e| row_err(1, "timestamp", format!("timestamp format: {e}")))?;
    let parse_timestamp = |s: &str| {
        time::PrimitiveDateTime::parse(s, &format)
            .ok()
            .map(|t| t.assume_utc().unix_timestamp())
    };
    let mut raw = Vec::new();
    for (n, line) in lines {
        let line_no = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != cols.len() {
            return Err(row_err(
                line_no,
                "row",
                format!("expected {} fields, found {}", cols.len(), f.len()),
            ));
        }
        let ts = parse_timestamp(f[ts_i].trim()).ok_or_else(|| {
            row_err(
                line_no,
                "timestamp",
                format!("`{}` is not YYYY-MM-DD HH:MM:SS", f[ts_i]),
            )
        })?;
        let dur: f64 = f[dur_i]
            .trim()
            .parse()
            .ok()
            .filter(|d: &f64| d.is_finite() && *d >= 0.0)
            .ok_or_else(|| {
                row_err(
                    line_no,
                    "duration",
                    format!("`{}` is not a duration in seconds", f[dur_i]),
                )
            })?;
        let gpus: u32 = f[gpu_i]
            .trim()
            .parse()
            .ok()
            .filter(|g| *g > 0)
            .ok_or_else(|| {
                row_err(
                    line_no,
                    "num_gpus",
                    format!("`{}` is not a positive GPU count", f[gpu_i]),
                )
            })?;
        raw.push((ts, dur, gpus));
    }
    let t0 = raw.iter().map(|r| r.0).min().unwrap_or(0);
    let mut jobs: Vec<TraceJob> = raw
        .into_iter()
        .map(|(ts, d, g)| TraceJob {
            submit_s: (ts - t0) as f64,
            duration_s: d,
            gpus: g,
            class: None,
            measured: false,
        })
        .collect();
    jobs.sort_by(|a, b| a.submit_s.total_cmp(&b.submit_s));
    Ok(jobs)
}

/// Scales every pool so the fleet has about `gpus` GPUs in all (never shrinking a pool below
/// one GPU), keeping the fleet's shape.
pub fn scale_to_gpus(fleet: &Fleet, gpus: u32) -> Fleet {
    let total: u64 = fleet
        .zones
        .iter()
        .flat_map(|z| z.pools.iter())
        .map(|p| u64::from(p.gpus))
        .sum();
    let factor = f64::from(gpus) / (total.max(1) as f64);
    let mut f = fleet.clone();
    for z in &mut f.zones {
        for p in &mut z.pools {
            p.gpus = ((f64::from(p.gpus) * factor).round() as u32).max(1);
        }
    }
    f
}

/// Scales team quotas (nominal GPUs and borrowing limits) by the factor [`scale_to_gpus`] applies
/// to the fleet's pools when scaling it to `gpus`; budgets stay as declared.
pub fn scale_scheduling(fleet: &Fleet, rules: &Scheduling, gpus: u32) -> Scheduling {
    let total: u64 = fleet
        .zones
        .iter()
        .flat_map(|z| z.pools.iter())
        .map(|p| u64::from(p.gpus))
        .sum();
    let factor = f64::from(gpus) / (total.max(1) as f64);
    let scale = |n: u32| (f64::from(n) * factor).round() as u32;
    let mut r = rules.clone();
    for t in &mut r.teams {
        for n in t.nominal.values_mut() {
            *n = scale(*n);
        }
        t.borrowing_limit = t.borrowing_limit.map(scale);
    }
    r
}

/// One zone's share of the replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZoneReport {
    /// Zone name.
    pub zone: String,
    /// Tier.
    pub tier: String,
    /// GPUs.
    pub gpus: u32,
    /// Busy GPU-seconds over GPU-seconds available during the replay.
    pub utilization: f64,
    /// Jobs admitted here.
    pub jobs: usize,
}

/// One job class's share of the replay.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ClassReport {
    /// Jobs of the class.
    pub jobs: usize,
    /// Completed.
    pub completed: usize,
    /// Refused or shed.
    pub refused: usize,
    /// Mean wait to first admission, seconds.
    pub mean_wait_s: f64,
    /// Bursts to public capacity.
    pub bursts: usize,
    /// Public cost.
    pub public_cost: f64,
}

/// What a replay measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    /// `hybrid` or `private-only`.
    pub mode: String,
    /// Jobs in the trace.
    pub jobs: usize,
    /// Jobs that ran to completion.
    pub jobs_completed: usize,
    /// Jobs refused (never runnable where allowed).
    pub refused: usize,
    /// Refusals by reason.
    pub refused_reasons: BTreeMap<String, usize>,
    /// Mean wait (first admission minus submission), seconds.
    pub mean_wait_s: f64,
    /// Median wait, seconds.
    pub median_wait_s: f64,
    /// 95th percentile wait, seconds.
    pub p95_wait_s: f64,
    /// Mean job completion time (finish minus submission), seconds.
    pub mean_jct_s: f64,
    /// Jobs admitted to public capacity.
    pub bursts: usize,
    /// Cost of public capacity used (expected, spot preemption risk included).
    pub public_cost: f64,
    /// Cost of everything used (private at its amortised price).
    pub total_cost: f64,
    /// Borrowed jobs preempted to give GPUs back to the team that lent them.
    pub preemptions: usize,
    /// Times a job was held because a burst would exceed a class or team budget.
    pub budget_holds: usize,
    /// Times a job was held because a burst had no business justification.
    pub justification_holds: usize,
    /// Jobs still queued when the trace ends: held for good by a budget or a missing
    /// justification (never dropped).
    pub still_queued: usize,
    /// Why those jobs are held (the reason up to its first `:`), with counts.
    pub still_queued_reasons: BTreeMap<String, usize>,
    /// Simulated span, seconds.
    pub makespan_s: f64,
    /// Per zone.
    pub zones: Vec<ZoneReport>,
    /// Per job class.
    pub classes: BTreeMap<String, ClassReport>,
}

struct Option_ {
    zone: usize,
    pool: usize,
    public: bool,
    hourly: f64,
    egress: f64,
    risk: f64,
    local: bool,
}

/// Replays `trace` through the scheduler with the fleet's policies and no scheduling rules (no
/// quotas, budgets or classes). `progress` is called with (jobs processed, total) every few
/// thousand jobs.
pub fn replay(
    fleet: &Fleet,
    engine: &mut PlacementEngine<'_>,
    trace: &[TraceJob],
    cfg: SchedConfig,
    seed: u64,
    progress: impl FnMut(usize, usize),
) -> SimReport {
    replay_with(
        fleet,
        &Scheduling::default(),
        engine,
        trace,
        cfg,
        seed,
        progress,
    )
}

#[derive(Default)]
struct Tally {
    waits: Vec<f64>,
    jct_sum: f64,
    completed: usize,
    refused: usize,
    reasons: BTreeMap<String, usize>,
    bursts: usize,
    public_cost: f64,
    total_cost: f64,
    busy: Vec<f64>,
    admitted: Vec<usize>,
    preemptions: usize,
    budget_holds: usize,
    justification_holds: usize,
    classes: BTreeMap<String, (ClassReport, f64)>,
    /// Running jobs: admission time and zone.
    started: HashMap<u64, (f64, usize)>,
    /// Jobs admitted at least once (the wait counts from the first admission).
    seen: std::collections::HashSet<u64>,
    /// Jobs waiting now, with their latest reason.
    waiting: HashMap<u64, QueueReason>,
}

/// Replays `trace` through the scheduler with the fleet's policies and scheduling rules (see the
/// module doc for how jobs get teams and classes).
pub fn replay_with(
    fleet: &Fleet,
    rules: &Scheduling,
    engine: &mut PlacementEngine<'_>,
    trace: &[TraceJob],
    cfg: SchedConfig,
    seed: u64,
    mut progress: impl FnMut(usize, usize),
) -> SimReport {
    let mode = if cfg.allow_public {
        "hybrid"
    } else {
        "private-only"
    }
    .to_string();
    let mut rng = Rng::new(seed);
    let state = FleetState::idle(fleet);
    // Allowed options per (dataset, burst_eligible, gpus): a handful of distinct placements.
    let mut options: HashMap<(usize, bool, u32), Vec<Option_>> = HashMap::new();
    let mut sched = Scheduler::with_rules(fleet, rules, cfg);
    let mut finish: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
    let zones = fleet.zones.len();
    let mut tally = Tally {
        busy: vec![0.0; zones],
        admitted: vec![0; zones],
        ..Tally::default()
    };
    let mut class_of: Vec<String> = Vec::with_capacity(trace.len());
    let mut now = 0.0f64;
    let ms = |t: f64| (t * 1000.0).round() as u64;

    let handle = |effects: Vec<Effect>,
                  now: f64,
                  finish: &mut BinaryHeap<Reverse<(u64, u64)>>,
                  tally: &mut Tally,
                  class_of: &[String]| {
        for e in effects {
            let job_of = |job: u64| usize::try_from(job).ok().and_then(|j| trace.get(j));
            let class = |job: u64| {
                usize::try_from(job)
                    .ok()
                    .and_then(|j| class_of.get(j))
                    .cloned()
                    .unwrap_or_default()
            };
            match e {
                Effect::Admitted {
                    job,
                    zone,
                    burst,
                    cost,
                    at,
                    ..
                } => {
                    let Some(t) = job_of(job) else { continue };
                    tally.waiting.remove(&job);
                    let c = tally.classes.entry(class(job)).or_default();
                    if tally.seen.insert(job) {
                        tally.waits.push(at - t.submit_s);
                        c.1 += at - t.submit_s;
                    }
                    tally.started.insert(job, (at, zone));
                    finish.push(Reverse((ms(at + t.duration_s), job)));
                    if let Some(b) = tally.busy.get_mut(zone) {
                        *b += f64::from(t.gpus) * t.duration_s;
                    }
                    if let Some(a) = tally.admitted.get_mut(zone) {
                        *a += 1;
                    }
                    tally.total_cost += cost;
                    if burst {
                        tally.bursts += 1;
                        tally.public_cost += cost;
                        c.0.bursts += 1;
                        c.0.public_cost += cost;
                    }
                }
                Effect::Refused { job, reason } => {
                    tally.waiting.remove(&job);
                    tally.refused += 1;
                    tally.classes.entry(class(job)).or_default().0.refused += 1;
                    *tally.reasons.entry(reason.to_string()).or_default() += 1;
                }
                Effect::Released { job, .. } => {
                    if let (Some(_), Some(t)) = (tally.started.remove(&job), job_of(job)) {
                        tally.completed += 1;
                        tally.classes.entry(class(job)).or_default().0.completed += 1;
                        tally.jct_sum += now - t.submit_s;
                    }
                }
                Effect::Preempted { job, .. } => {
                    tally.preemptions += 1;
                    // The unrun rest of its work is not busy time; its finish event goes stale.
                    if let (Some((at, zone)), Some(t)) = (tally.started.remove(&job), job_of(job)) {
                        if let Some(b) = tally.busy.get_mut(zone) {
                            *b -= f64::from(t.gpus) * (at + t.duration_s - now).max(0.0);
                        }
                    }
                }
                Effect::Queued { job, reason, .. } => {
                    match reason {
                        QueueReason::OverBudget { .. } => tally.budget_holds += 1,
                        QueueReason::NeedsJustification { .. } => tally.justification_holds += 1,
                        _ => {}
                    }
                    tally.waiting.insert(job, reason);
                }
                Effect::Failover { .. } | Effect::Cancelled { .. } => {}
            }
        }
    };
    // A finish event is current only if the job still runs from the admission it was pushed for.
    let current = |tally: &Tally, end: u64, job: u64| {
        tally.started.get(&job).is_some_and(|(at, _)| {
            usize::try_from(job)
                .ok()
                .and_then(|j| trace.get(j))
                .is_some_and(|t| ms(at + t.duration_s) == end)
        })
    };

    for (i, t) in trace.iter().enumerate() {
        // Finish everything that ends before this submission.
        while let Some(Reverse((end, job))) = finish.peek().copied() {
            if end > ms(t.submit_s) {
                break;
            }
            finish.pop();
            if !current(&tally, end, job) {
                continue;
            }
            now = end as f64 / 1000.0;
            let e = sched.finish(job, now);
            handle(e, now, &mut finish, &mut tally, &class_of);
        }
        now = now.max(t.submit_s);
        let ds = rng.below(fleet.datasets.len());
        let burst = rng.chance(0.7);
        let team = if rules.teams.is_empty() {
            None
        } else {
            rules.teams.get(rng.below(rules.teams.len()))
        };
        let class = match t.class {
            Some(c) => c.to_string(),
            None if !rules.classes.is_empty() => rules
                .classes
                .get(rng.below(rules.classes.len()))
                .map_or_else(String::new, |c| c.name.clone()),
            None => DEFAULT_CLASS.to_string(),
        };
        class_of.push(class.clone());
        tally.classes.entry(class.clone()).or_default().0.jobs += 1;
        let key = (ds, burst, t.gpus);
        let opts = options
            .entry(key)
            .or_insert_with(|| candidate_options(fleet, engine, &state, ds, burst, t.gpus));
        if opts.is_empty() {
            let d = fleet
                .datasets
                .get(ds)
                .map_or_else(String::new, |d| format!("{}@{}", d.name, d.version));
            let text =
                format!("policy allows no zone for a job on {d} with burst_eligible={burst}");
            handle(
                vec![Effect::Refused {
                    job: i as u64,
                    reason: RefuseReason::NotPlaced { text },
                }],
                now,
                &mut finish,
                &mut tally,
                &class_of,
            );
            continue;
        }
        let hours = t.duration_s / 3600.0;
        let cands: Vec<Candidate> = opts
            .iter()
            .map(|o| Candidate {
                zone: o.zone,
                pool: o.pool,
                public: o.public,
                cost: o.hourly * hours + o.egress,
                egress_cost: o.egress,
                data_local: o.local,
                preemption_risk: o.risk,
            })
            .collect();
        let shape = Shape {
            gpus: t.gpus,
            expected_s: t.duration_s,
            max_wait_s: Some(1800.0),
            deadline_s: None,
            class,
            team: team.map_or_else(|| "trace".to_string(), |t| t.name.clone()),
            justification: team.is_none().then(|| "trace replay".to_string()),
            data_level: fleet.datasets.get(ds).map_or(0, |d| d.classification.level),
            min_gpus: None,
        };
        let mut e = sched.tick(now);
        e.extend(sched.submit(i as u64, shape, cands, now));
        handle(e, now, &mut finish, &mut tally, &class_of);
        if i % 4096 == 0 {
            progress(i, trace.len());
        }
    }
    while let Some(Reverse((end, job))) = finish.pop() {
        if !current(&tally, end, job) {
            continue;
        }
        now = end as f64 / 1000.0;
        let e = sched.finish(job, now);
        handle(e, now, &mut finish, &mut tally, &class_of);
    }
    progress(trace.len(), trace.len());

    let mut waits = std::mem::take(&mut tally.waits);
    waits.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        waits
            .get(((waits.len() as f64 - 1.0) * p).round().max(0.0) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let mean = |xs: &[f64]| {
        if xs.is_empty() {
            0.0
        } else {
            xs.iter().sum::<f64>() / xs.len() as f64
        }
    };
    let makespan = now.max(1.0);
    let completed = tally.completed;
    let mut still_queued_reasons: BTreeMap<String, usize> = BTreeMap::new();
    for r in tally.waiting.values() {
        let r = r.to_string();
        let head = r.split(':').next().unwrap_or(&r).to_string();
        *still_queued_reasons.entry(head).or_default() += 1;
    }
    SimReport {
        mode,
        jobs: trace.len(),
        jobs_completed: completed,
        refused: tally.refused,
        refused_reasons: tally.reasons,
        mean_wait_s: mean(&waits),
        median_wait_s: pct(0.5),
        p95_wait_s: pct(0.95),
        mean_jct_s: if completed == 0 {
            0.0
        } else {
            tally.jct_sum / completed as f64
        },
        bursts: tally.bursts,
        public_cost: tally.public_cost,
        total_cost: tally.total_cost,
        preemptions: tally.preemptions,
        budget_holds: tally.budget_holds,
        justification_holds: tally.justification_holds,
        still_queued: tally.waiting.len(),
        still_queued_reasons,
        makespan_s: makespan,
        zones: fleet
            .zones
            .iter()
            .enumerate()
            .map(|(i, z)| {
                let gpus: u32 = z.pools.iter().map(|p| p.gpus).sum();
                ZoneReport {
                    zone: z.name.clone(),
                    tier: z.tier.to_string(),
                    gpus,
                    utilization: tally.busy.get(i).copied().unwrap_or(0.0)
                        / (f64::from(gpus.max(1)) * makespan),
                    jobs: tally.admitted.get(i).copied().unwrap_or(0),
                }
            })
            .collect(),
        classes: tally
            .classes
            .into_iter()
            .map(|(name, (mut c, wait_sum))| {
                let admitted = c.jobs - c.refused;
                c.mean_wait_s = if admitted == 0 {
                    0.0
                } else {
                    wait_sum / admitted as f64
                };
                (name, c)
            })
            .collect(),
    }
}

fn candidate_options(
    fleet: &Fleet,
    engine: &mut PlacementEngine<'_>,
    state: &FleetState,
    dataset: usize,
    burst: bool,
    gpus: u32,
) -> Vec<Option_> {
    let Some(d) = fleet.datasets.get(dataset) else {
        return vec![];
    };
    let labels = Labels {
        burst_eligible: Some(burst),
        ..Labels::default()
    };
    let job = JobSpec {
        name: "trace-job".into(),
        team: "trace".into(),
        kind: JobKind::Train,
        inputs: vec![Input::Dataset(DatasetRef {
            name: d.name.clone(),
            version: d.version.clone(),
        })],
        outputs: vec![],
        resources: Resources {
            gpus,
            gpu_types: vec![],
            gpu_memory_gb: 0,
            memory_gb: 0,
            expected_hours: 1.0,
        },
        deadline: None,
        sla: None,
        budget_class: "trace".into(),
        code_commit: None,
        hyperparameters: BTreeMap::new(),
        justification: None,
        classification: None,
        command: vec![],
        labels,
        origin: Origin::builtin("<trace>"),
    };
    let Ok(p) = engine.place(&job, state) else {
        return vec![];
    };
    // The synthetic job asks for one expected hour: compute cost is the hourly price.
    tidegate_placement::candidates(&p, fleet)
        .into_iter()
        .map(|c| Option_ {
            zone: c.zone,
            pool: c.pool,
            public: c.public,
            hourly: c.cost - c.egress_cost,
            egress: c.egress_cost,
            risk: c.preemption_risk,
            local: c.data_local,
        })
        .collect()
}
