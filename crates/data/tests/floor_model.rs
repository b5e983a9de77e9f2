//! A model-based test of the whole safety floor: random fleets (schemes that add to the built-in
//! one, fleet policies, datasets homed anywhere the rules allow, several teams), random jobs
//! with any labels, and a random run of submissions, clock ticks, zone-condition changes, ends
//! of runs and restarts (each restart may reclassify a dataset stricter), driven through
//! placement, the scheduler core and the re-check a restarted control plane makes. After every
//! step, an oracle written from the rules alone (not from the code under test) checks that no
//! restricted, private-only, `allowed_execution_zone`-violating, export-controlled-outside-origin
//! or residency-violating run is admitted or keeps running, and that no such data may be held in
//! a zone it may not be in: granted to a job token or transferred there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use tidegate_artifacts::Digest;
use tidegate_data::holding::{may_hold, Holding};
use tidegate_data::transfer::{plan, TransferRequest};
use tidegate_data::{ClassificationNames, DatasetVersion};
use tidegate_model::fleet::PolicyFile;
use tidegate_model::{DatasetRef, Fleet, Input, JobSpec, LevelDef, TagDef, ZoneScope};
use tidegate_placement::{candidates, FleetState, PlacementEngine};
use tidegate_policy::PolicyEngine;
use tidegate_sched::{Effect, Health, SchedConfig, Scheduler, Shape};
use tidegate_testkit::fleets::fleet_and_jobs;

const TEAMS: [&str; 3] = ["team", "genomics", "icu-ml"];
const GENOMICS: &str = "@id(\"genomics.private\")\n@reason(\"genomics stays private\")\nforbid (principal, action, resource) when { Job::\"job\".team == \"genomics\" && !resource.private };\n";

#[derive(Debug, Clone)]
enum Op {
    Submit(usize),
    Tick(u32),
    Health(usize, u8),
    Finish(usize),
    Restart(Option<usize>),
}

fn ops(jobs: usize, zones: usize) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(
        prop_oneof![
            4 => (0..jobs).prop_map(Op::Submit),
            2 => (1u32..7200).prop_map(Op::Tick),
            1 => (0..zones, 0u8..3).prop_map(|(z, h)| Op::Health(z, h)),
            2 => (0usize..8).prop_map(Op::Finish),
            1 => proptest::option::of(0usize..4).prop_map(Op::Restart),
        ],
        1..40,
    )
}

/// The whole setup: a fleet (scheme extended or not, with or without a fleet policy), jobs with
/// teams, and the run.
fn world() -> impl Strategy<Value = (Fleet, Vec<JobSpec>, Vec<Op>)> {
    (
        fleet_and_jobs(),
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(0usize..3, 12),
    )
        .prop_flat_map(|((mut fleet, mut jobs), extend, policy, teams)| {
            if extend {
                // A scheme that adds to the built-in one: a stricter level on top, a new tag.
                fleet.scheme.levels.push(LevelDef {
                    name: "secret".into(),
                    private_only: true,
                    description: String::new(),
                });
                fleet.scheme.tags.push(TagDef {
                    name: "trade-secret".into(),
                    private_only: true,
                    requires_certifications: vec![],
                    stays_in_jurisdiction: false,
                    description: String::new(),
                });
                if let Some(d) = fleet.datasets.first_mut() {
                    d.classification.level = 4;
                    d.classification.tags.insert("trade-secret".into());
                }
            }
            if policy {
                fleet.policies.push(PolicyFile {
                    path: "policies/genomics.cedar".into(),
                    text: GENOMICS.into(),
                });
            }
            for (j, t) in jobs.iter_mut().zip(teams) {
                j.team = TEAMS[t].into();
            }
            let n = (jobs.len(), fleet.zones.len());
            (Just(fleet), Just(jobs), ops(n.0, n.1))
        })
}

/// The rules, written from the issue rather than from the code: may `job` run in zone `zi`?
fn floor(fleet: &Fleet, job: &JobSpec, zi: usize) -> Result<(), String> {
    let z = &fleet.zones[zi];
    let scheme = &fleet.scheme;
    let mut level = job.labels.data_classification.unwrap_or(0);
    let mut tags: BTreeSet<String> = BTreeSet::new();
    let mut residency: Option<BTreeSet<String>> = None;
    let mut origins: BTreeSet<String> = BTreeSet::new();
    let narrow = |r: &Option<BTreeSet<String>>, residency: &mut Option<BTreeSet<String>>| {
        if let Some(r) = r {
            *residency = Some(match residency.take() {
                Some(cur) => cur.intersection(r).cloned().collect(),
                None => r.clone(),
            });
        }
    };
    for input in &job.inputs {
        let Input::Dataset(r) = input else { continue };
        let d = fleet.dataset(r).ok_or("unknown dataset")?;
        level = level.max(d.classification.level);
        tags.extend(d.classification.tags.iter().cloned());
        narrow(&d.classification.residency, &mut residency);
        if d.classification.tags.contains("export-controlled") {
            origins.insert(
                fleet
                    .zone(&d.home_zone)
                    .ok_or("unknown home")?
                    .jurisdiction
                    .clone(),
            );
        }
    }
    if let Some(c) = &job.classification {
        level = level.max(c.level);
        tags.extend(c.tags.iter().cloned());
        narrow(&c.residency, &mut residency);
    }
    let level_private = level >= 3
        || scheme
            .levels
            .iter()
            .take(usize::from(level) + 1)
            .any(|l| l.private_only);
    let tag_private = tags.iter().any(|t| {
        t == "phi" || t == "pci" || scheme.tags.iter().any(|d| &d.name == t && d.private_only)
    });
    if (level_private
        || tag_private
        || job.labels.allowed_execution_zone == Some(ZoneScope::Private))
        && !z.tier.is_private()
    {
        return Err(format!("private-only work in {} ({})", z.name, z.tier));
    }
    match &job.labels.allowed_execution_zone {
        Some(ZoneScope::Public) if z.tier != tidegate_model::Tier::Public => {
            return Err("label public".into())
        }
        Some(ZoneScope::Edge) if z.tier != tidegate_model::Tier::Edge => {
            return Err("label edge".into())
        }
        Some(ZoneScope::Zone(n)) if *n != z.name => return Err("label zone".into()),
        _ => {}
    }
    if level > z.max_classification {
        return Err(format!("level {level} above the ceiling of {}", z.name));
    }
    if residency
        .as_ref()
        .is_some_and(|r| !r.contains(&z.jurisdiction))
    {
        return Err(format!("outside residency in {}", z.name));
    }
    if tags.contains("export-controlled") {
        if origins.is_empty() {
            let home_ok =
                fleet.home_jurisdiction.as_ref() == Some(&z.jurisdiction) && z.tier.is_private();
            if !home_ok {
                return Err(format!(
                    "export-controlled work of unknown origin in {}",
                    z.name
                ));
            }
        } else if origins.iter().any(|o| *o != z.jurisdiction) {
            return Err(format!(
                "export-controlled work outside its origin in {}",
                z.name
            ));
        }
    }
    Ok(())
}

/// A dataset judged for a zone the way a job token's input is.
fn holding_floor(fleet: &Fleet, r: &DatasetRef, owner: &str, zi: usize) -> Result<(), String> {
    let probe = tidegate_data::holding::probe_job(
        "probe".into(),
        owner.into(),
        vec![Input::Dataset(r.clone())],
        None,
    );
    floor(fleet, &probe, zi)
}

fn shape(job: &JobSpec) -> Shape {
    Shape {
        gpus: job.resources.gpus,
        expected_s: job.resources.expected_hours * 3600.0,
        max_wait_s: Some(0.0),
        deadline_s: None,
        class: job.budget_class.clone(),
        team: job.team.clone(),
        justification: Some("model test".into()),
        data_level: 0,
        min_gpus: None,
    }
}

struct Run {
    job: usize,
    zone: usize,
    pool: usize,
}

fn place(
    fleet: &Fleet,
    policy: &Arc<PolicyEngine>,
    job: &JobSpec,
) -> Vec<tidegate_sched::Candidate> {
    let mut eng = PlacementEngine::with_policy(fleet, policy.clone());
    eng.place(job, &FleetState::idle(fleet))
        .map(|p| candidates(&p, fleet))
        .unwrap_or_default()
}

/// No data may be held (a job token's grant) or transferred where the rules forbid it.
fn check_holdings(fleet: &Fleet, policy: &PolicyEngine) -> Result<(), TestCaseError> {
    for d in &fleet.datasets {
        let r = DatasetRef {
            name: d.name.clone(),
            version: d.version.clone(),
        };
        let h = Holding {
            owner: d.owner.clone(),
            classification: d.classification.clone(),
            dataset: Some(r.clone()),
        };
        let version = DatasetVersion {
            name: d.name.clone(),
            version: d.version.clone(),
            owner: d.owner.clone(),
            home_zone: d.home_zone.clone(),
            classification: ClassificationNames::of(&d.classification, &fleet.scheme),
            snapshot: Digest::of(d.name.as_bytes()),
            tables: vec![],
            bytes: 0,
            derived_from: None,
            report: None,
            registered_at: 0,
        };
        for (zi, z) in fleet.zones.iter().enumerate() {
            if may_hold(fleet, policy, &h, &z.name).is_ok() {
                let floor = holding_floor(fleet, &r, &d.owner, zi);
                prop_assert!(
                    floor.is_ok(),
                    "{} may be held in {}: {:?}",
                    d.name,
                    z.name,
                    floor
                );
            }
            let req = TransferRequest {
                to_zone: z.name.clone(),
                columns: vec![],
                max_cost: f64::INFINITY,
            };
            if plan(fleet, policy, &version, &req).is_ok() {
                let floor = holding_floor(fleet, &r, &d.owner, zi);
                prop_assert!(
                    floor.is_ok(),
                    "{} may be transferred to {}: {:?}",
                    d.name,
                    z.name,
                    floor
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn no_run_and_no_grant_ever_breaks_the_floor((mut fleet, jobs, ops) in world()) {
        let mut policy = Arc::new(PolicyEngine::load(&fleet).unwrap());
        let cfg = SchedConfig { burst_queue_depth: 0, ..SchedConfig::default() };
        let mut core = Scheduler::new(&fleet, cfg.clone());
        let mut now = 0.0;
        let mut next = 1u64;
        let mut running: BTreeMap<u64, Run> = BTreeMap::new();
        let mut waiting: BTreeMap<u64, usize> = BTreeMap::new();
        check_holdings(&fleet, &policy)?;
        for op in ops {
            let mut fx = Vec::new();
            match op {
                Op::Submit(j) => {
                    let sid = next;
                    next += 1;
                    waiting.insert(sid, j);
                    fx = core.submit(sid, shape(&jobs[j]), place(&fleet, &policy, &jobs[j]), now);
                }
                Op::Tick(dt) => {
                    now += f64::from(dt);
                    fx = core.tick(now);
                }
                Op::Health(z, h) => {
                    let h = [Health::Healthy, Health::Degraded, Health::Unreachable][usize::from(h)];
                    fx = core.set_zone_health(z, h, now);
                }
                Op::Finish(k) => {
                    if let Some(sid) = running.keys().nth(k).copied() {
                        running.remove(&sid);
                        fx = core.finish(sid, now);
                    }
                }
                Op::Restart(reclassify) => {
                    // The data owner makes a dataset stricter while the control plane is down.
                    let n = fleet.datasets.len().max(1);
                    if let Some(d) = reclassify.and_then(|i| fleet.datasets.get_mut(i % n)) {
                        d.classification.level = 3;
                        d.classification.tags.insert("phi".into());
                    }
                    policy = Arc::new(PolicyEngine::load(&fleet).unwrap());
                    check_holdings(&fleet, &policy)?;
                    core = Scheduler::new(&fleet, cfg.clone());
                    let eng = PlacementEngine::with_policy(&fleet, policy.clone());
                    let before = std::mem::take(&mut running);
                    let mut withdrawn = Vec::new();
                    for (sid, run) in before {
                        let job = &jobs[run.job];
                        // What a restarted control plane does: re-check, restore or withdraw.
                        match eng.recheck_plain(job, run.zone, run.pool) {
                            Ok(()) => {
                                let floor = floor(&fleet, job, run.zone);
                                prop_assert!(floor.is_ok(), "restored a run the rules forbid: {:?}", floor);
                                let cands = place(&fleet, &policy, job);
                                let at = tidegate_sched::Candidate::new(run.zone, run.pool, fleet.zones[run.zone].tier == tidegate_model::Tier::Public, 0.0);
                                core.restore_running(sid, shape(job), cands, at, now);
                                running.insert(sid, run);
                            }
                            Err(_) => withdrawn.push((sid, run.job)),
                        }
                    }
                    let queued: Vec<(u64, usize)> = std::mem::take(&mut waiting).into_iter().collect();
                    for (sid, j) in withdrawn.into_iter().chain(queued) {
                        waiting.insert(sid, j);
                        fx.extend(core.submit(sid, shape(&jobs[j]), place(&fleet, &policy, &jobs[j]), now));
                    }
                }
            }
            let mut work: std::collections::VecDeque<Effect> = fx.into();
            while let Some(e) = work.pop_front() {
                match e {
                    Effect::Admitted { job: sid, zone, pool, .. } => {
                        let Some(j) = waiting.remove(&sid) else { continue };
                        let floor = floor(&fleet, &jobs[j], zone);
                        prop_assert!(floor.is_ok(), "admitted {} to {}: {:?}", jobs[j].name, fleet.zones[zone].name, floor);
                        running.insert(sid, Run { job: j, zone, pool });
                    }
                    Effect::Preempted { job: sid, .. } => {
                        if let Some(run) = running.remove(&sid) {
                            waiting.insert(sid, run.job);
                        }
                    }
                    Effect::Refused { job: sid, .. } | Effect::Cancelled { job: sid, .. } => {
                        waiting.remove(&sid);
                        running.remove(&sid);
                    }
                    _ => {}
                }
            }
            // Whatever happened, every run holds under the rules in force.
            for run in running.values() {
                let floor = floor(&fleet, &jobs[run.job], run.zone);
                prop_assert!(floor.is_ok(), "a run breaks the floor: {:?}", floor);
            }
        }
    }
}
