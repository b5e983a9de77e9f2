//! Trace replay: a GPU-cluster job trace driven through the scheduler core on a simulated clock.
//!
//! Mapping (documented in `tidegate sim --help` too): each trace row is one job submitted at its
//! timestamp (offset from the earliest), running for its duration, asking for its GPU count in one
//! pool. A seeded rule gives each job an input dataset version drawn uniformly from the fleet's
//! datasets (so the classification mix follows the fleet's data), the kind `train`, acceptance of
//! any GPU type, and `burst_eligible=true` with probability 0.7. The job's allowed options come
//! from the placement engine (policy and constraints), so a replay only ever bursts what policy
//! allows; jobs that fit nowhere they are allowed are counted as refused, with the reason.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::Path;

use serde::Serialize;
use tidegate_model::{DatasetRef, Fleet, Input, JobKind, JobSpec, Labels, Origin, Resources};
use tidegate_placement::synth::Rng;
use tidegate_placement::{FleetState, PlacementEngine};

use crate::{Candidate, Effect, SchedConfig, Scheduler, Shape};

/// One job of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TraceJob {
    /// Submit time, seconds from the start of the trace.
    pub submit_s: f64,
    /// Run time, seconds.
    pub duration_s: f64,
    /// GPUs.
    pub gpus: u32,
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

/// Reads a Philly-format trace (`timestamp,duration,num_gpus,gpu_time,cluster`; timestamps
/// `YYYY-MM-DD HH:MM:SS`, any order). Blank lines are skipped; any malformed row is an error
/// naming its line.
pub fn read_philly(path: &Path) -> Result<Vec<TraceJob>, TraceError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TraceError::Io { path: p.clone(), source })?;
    let row_err = |line: usize, field: &str, message: String| TraceError::Row { path: p.clone(), line, field: field.into(), message };
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, h)| h.trim()).unwrap_or_default();
    let cols: Vec<&str> = header.split(',').collect();
    let idx = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(ts_i), Some(dur_i), Some(gpu_i)) = (idx("timestamp"), idx("duration"), idx("num_gpus")) else {
        return Err(row_err(1, "header", format!("expected columns timestamp, duration, num_gpus; found `{header}`")));
    };
    let format = time::format_description::parse_borrowed::<2>("[year]-[month]-[day] [hour]:[minute]:[second]")
        .map_err(|e| row_err(1, "timestamp", format!("timestamp format: {e}")))?;
    let parse_timestamp = |s: &str| {
        time::PrimitiveDateTime::parse(s, &format).ok().map(|t| t.assume_utc().unix_timestamp())
    };
    let mut raw = Vec::new();
    for (n, line) in lines {
        let line_no = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != cols.len() {
            return Err(row_err(line_no, "row", format!("expected {} fields, found {}", cols.len(), f.len())));
        }
        let ts = parse_timestamp(f[ts_i].trim())
            .ok_or_else(|| row_err(line_no, "timestamp", format!("`{}` is not YYYY-MM-DD HH:MM:SS", f[ts_i])))?;
        let dur: f64 = f[dur_i]
            .trim()
            .parse()
            .ok()
            .filter(|d: &f64| d.is_finite() && *d >= 0.0)
            .ok_or_else(|| row_err(line_no, "duration", format!("`{}` is not a duration in seconds", f[dur_i])))?;
        let gpus: u32 = f[gpu_i]
            .trim()
            .parse()
            .ok()
            .filter(|g| *g > 0)
            .ok_or_else(|| row_err(line_no, "num_gpus", format!("`{}` is not a positive GPU count", f[gpu_i])))?;
        raw.push((ts, dur, gpus));
    }
    let t0 = raw.iter().map(|r| r.0).min().unwrap_or(0);
    let mut jobs: Vec<TraceJob> =
        raw.into_iter().map(|(ts, d, g)| TraceJob { submit_s: (ts - t0) as f64, duration_s: d, gpus: g }).collect();
    jobs.sort_by(|a, b| a.submit_s.total_cmp(&b.submit_s));
    Ok(jobs)
}

/// Scales every pool so the fleet has about `gpus` GPUs in all (never shrinking a pool below
/// one GPU), keeping the fleet's shape.
pub fn scale_to_gpus(fleet: &Fleet, gpus: u32) -> Fleet {
    let total: u64 = fleet.zones.iter().flat_map(|z| z.pools.iter()).map(|p| u64::from(p.gpus)).sum();
    let factor = f64::from(gpus) / (total.max(1) as f64);
    let mut f = fleet.clone();
    for z in &mut f.zones {
        for p in &mut z.pools {
            p.gpus = ((f64::from(p.gpus) * factor).round() as u32).max(1);
        }
    }
    f
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
    /// Mean wait (admission minus submission), seconds.
    pub mean_wait_s: f64,
    /// Median wait, seconds.
    pub median_wait_s: f64,
    /// 95th percentile wait, seconds.
    pub p95_wait_s: f64,
    /// Mean job completion time (finish minus submission), seconds.
    pub mean_jct_s: f64,
    /// Jobs admitted to public capacity.
    pub bursts: usize,
    /// Cost of public capacity used.
    pub public_cost: f64,
    /// Cost of everything used (private at its amortised price).
    pub total_cost: f64,
    /// Simulated span, seconds.
    pub makespan_s: f64,
    /// Per zone.
    pub zones: Vec<ZoneReport>,
}

struct Option_ {
    zone: usize,
    pool: usize,
    public: bool,
    hourly: f64,
    egress: f64,
}

/// Replays `trace` through the scheduler with the fleet's policies. `progress` is called with
/// (jobs processed, total) every few thousand jobs.
pub fn replay(
    fleet: &Fleet,
    engine: &mut PlacementEngine<'_>,
    trace: &[TraceJob],
    cfg: SchedConfig,
    seed: u64,
    mut progress: impl FnMut(usize, usize),
) -> SimReport {
    let mode = if cfg.allow_public { "hybrid" } else { "private-only" }.to_string();
    let mut rng = Rng::new(seed);
    let state = FleetState::idle(fleet);
    // Allowed options per (dataset, burst_eligible, gpus): a handful of distinct placements.
    let mut options: HashMap<(usize, bool, u32), Vec<Option_>> = HashMap::new();
    let mut sched = Scheduler::new(fleet, cfg);
    let mut finish: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
    let mut started: HashMap<u64, (f64, usize)> = HashMap::new();
    let mut waits = Vec::with_capacity(trace.len());
    let mut jct_sum = 0.0;
    let mut completed = 0usize;
    let mut refused = 0usize;
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut bursts = 0usize;
    let mut public_cost = 0.0;
    let mut total_cost = 0.0;
    let zones = fleet.zones.len();
    let mut busy = vec![0.0f64; zones];
    let mut admitted = vec![0usize; zones];
    let mut now = 0.0f64;
    let ms = |t: f64| (t * 1000.0).round() as u64;

    let mut handle = |effects: Vec<Effect>,
                      now: f64,
                      finish: &mut BinaryHeap<Reverse<(u64, u64)>>,
                      started: &mut HashMap<u64, (f64, usize)>| {
        for e in effects {
            match e {
                Effect::Admitted { job, zone, burst, cost, at, .. } => {
                    let Some(t) = usize::try_from(job).ok().and_then(|j| trace.get(j)) else { continue };
                    waits.push(at - t.submit_s);
                    started.insert(job, (at, zone));
                    finish.push(Reverse((ms(at + t.duration_s), job)));
                    if let Some(b) = busy.get_mut(zone) {
                        *b += f64::from(t.gpus) * t.duration_s;
                    }
                    if let Some(a) = admitted.get_mut(zone) {
                        *a += 1;
                    }
                    total_cost += cost;
                    if burst {
                        bursts += 1;
                        public_cost += cost;
                    }
                }
                Effect::Refused { reason, .. } => {
                    refused += 1;
                    *reasons.entry(reason).or_default() += 1;
                }
                Effect::Released { job, .. } => {
                    if let (Some((_, _)), Some(t)) = (started.remove(&job), usize::try_from(job).ok().and_then(|j| trace.get(j))) {
                        completed += 1;
                        jct_sum += now - t.submit_s;
                    }
                }
                Effect::Queued { .. } => {}
            }
        }
    };

    for (i, t) in trace.iter().enumerate() {
        // Finish everything that ends before this submission.
        while let Some(Reverse((end, job))) = finish.peek().copied() {
            if end > ms(t.submit_s) {
                break;
            }
            finish.pop();
            now = end as f64 / 1000.0;
            let e = sched.finish(job, now);
            handle(e, now, &mut finish, &mut started);
        }
        now = now.max(t.submit_s);
        let ds = rng.below(fleet.datasets.len());
        let burst = rng.chance(0.7);
        let key = (ds, burst, t.gpus);
        let opts = options.entry(key).or_insert_with(|| candidate_options(fleet, engine, &state, ds, burst, t.gpus));
        if opts.is_empty() {
            let d = fleet.datasets.get(ds).map_or_else(String::new, |d| format!("{}@{}", d.name, d.version));
            let reason = format!("policy allows no zone for a job on {d} with burst_eligible={burst}");
            handle(vec![Effect::Refused { job: i as u64, reason }], now, &mut finish, &mut started);
            continue;
        }
        let hours = t.duration_s / 3600.0;
        let cands: Vec<Candidate> = opts
            .iter()
            .map(|o| Candidate { zone: o.zone, pool: o.pool, public: o.public, cost: o.hourly * hours + o.egress })
            .collect();
        let shape = Shape { gpus: t.gpus, expected_s: t.duration_s, max_wait_s: Some(1800.0), deadline_s: None };
        let mut e = sched.tick(now);
        e.extend(sched.submit(i as u64, shape, cands, now));
        handle(e, now, &mut finish, &mut started);
        if i % 4096 == 0 {
            progress(i, trace.len());
        }
    }
    while let Some(Reverse((end, job))) = finish.pop() {
        now = end as f64 / 1000.0;
        let e = sched.finish(job, now);
        handle(e, now, &mut finish, &mut started);
    }
    progress(trace.len(), trace.len());

    waits.sort_by(f64::total_cmp);
    let pct = |p: f64| waits.get(((waits.len() as f64 - 1.0) * p).round().max(0.0) as usize).copied().unwrap_or(0.0);
    let mean = |xs: &[f64]| if xs.is_empty() { 0.0 } else { xs.iter().sum::<f64>() / xs.len() as f64 };
    let makespan = now.max(1.0);
    SimReport {
        mode,
        jobs: trace.len(),
        jobs_completed: completed,
        refused,
        refused_reasons: reasons,
        mean_wait_s: mean(&waits),
        median_wait_s: pct(0.5),
        p95_wait_s: pct(0.95),
        mean_jct_s: if completed == 0 { 0.0 } else { jct_sum / completed as f64 },
        bursts,
        public_cost,
        total_cost,
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
                    utilization: busy.get(i).copied().unwrap_or(0.0) / (f64::from(gpus.max(1)) * makespan),
                    jobs: admitted.get(i).copied().unwrap_or(0),
                }
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
    let Some(d) = fleet.datasets.get(dataset) else { return vec![] };
    let labels = Labels { burst_eligible: Some(burst), ..Labels::default() };
    let job = JobSpec {
        name: "trace-job".into(),
        team: "trace".into(),
        kind: JobKind::Train,
        inputs: vec![Input::Dataset(DatasetRef { name: d.name.clone(), version: d.version.clone() })],
        outputs: vec![],
        resources: Resources { gpus, gpu_types: vec![], gpu_memory_gb: 0, memory_gb: 0, expected_hours: 1.0 },
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
    let Ok(p) = engine.place(&job, state) else { return vec![] };
    p.pools
        .iter()
        .filter(|pc| pc.allowed)
        .filter_map(|pc| {
            let zone = fleet.zones.get(pc.zone)?;
            Some(Option_ {
                zone: pc.zone,
                pool: pc.pool,
                public: zone.tier == tidegate_model::Tier::Public,
                hourly: pc.compute_cost + pc.preemption_cost,
                egress: p.zones.get(pc.zone).map_or(0.0, |z| z.egress_cost),
            })
        })
        .collect()
}
