//! Synthetic fleets and job backlogs for benchmarks and tests (seeded, deterministic).
//!
//! The generator uses its own SplitMix64 so that a seed gives the same backlog on every
//! platform and every dependency version (library RNGs do not promise a stable stream).

use std::collections::BTreeMap;

use tidegate_model::{
    Classification, Dataset, DatasetRef, Fleet, Input, JobKind, JobSpec, Labels, Origin, Pool,
    Pricing, Resources, Tier, ZoneScope,
};

use crate::{FleetState, PoolState};

/// The seeded generator synthetic backlogs are drawn from.
pub use tidegate_vocab::SplitMix as Rng;

const PUBLIC_JURISDICTIONS: [&str; 4] = ["EU", "US", "UK", "JP"];

/// Scales a fleet by `replicas`: every zone is copied `replicas` times (names suffixed `-NN`,
/// egress allowlists and dataset homes renamed within the copy, public copies spread over
/// several jurisdictions), and every pool gets a sibling (spot in public zones), so the
/// example fleet (5 zones, 10 pools) at 10 replicas has 50 zones and 200 pools.
pub fn scale_fleet(base: &Fleet, replicas: usize) -> Fleet {
    let mut f = base.clone();
    f.name = format!("{}-x{replicas}", base.name);
    f.zones.clear();
    f.datasets.clear();
    let suffix = |name: &str, r: usize| format!("{name}-{r:02}");
    for r in 0..replicas {
        for z in &base.zones {
            let mut nz = z.clone();
            nz.name = suffix(&z.name, r);
            if z.tier == Tier::Public && r > 0 {
                nz.jurisdiction = PUBLIC_JURISDICTIONS[r % PUBLIC_JURISDICTIONS.len()].to_string();
            }
            nz.egress_allowlist = z
                .egress_allowlist
                .iter()
                .map(|d| {
                    if base.zone(d).is_some() {
                        suffix(d, r)
                    } else {
                        d.clone()
                    }
                })
                .collect();
            let mut pools = Vec::with_capacity(z.pools.len() * 2);
            for p in &z.pools {
                pools.push(p.clone());
                let (pricing, risk) = if z.tier == Tier::Public {
                    (Pricing::Spot, 0.05 + 0.01 * (r % 5) as f64)
                } else {
                    (p.pricing, 0.0)
                };
                pools.push(Pool {
                    name: format!("{}-b", p.name),
                    price_per_gpu_hour: p.price_per_gpu_hour
                        * if pricing == Pricing::Spot { 0.55 } else { 1.1 },
                    pricing,
                    preemption_risk: risk,
                    ..p.clone()
                });
            }
            nz.pools = pools;
            f.zones.push(nz);
        }
        for d in &base.datasets {
            f.datasets.push(Dataset {
                home_zone: suffix(&d.home_zone, r),
                version: format!("{}-{r:02}", d.version),
                ..d.clone()
            });
        }
    }
    f
}

/// A seeded backlog of `n` jobs against `fleet`: mixed kinds, teams, inputs and labels, as a
/// regulated organisation's queue looks (most work private, some burst-eligible, some edge).
pub fn backlog(fleet: &Fleet, n: usize, seed: u64) -> Vec<JobSpec> {
    let mut rng = Rng::new(seed);
    let teams = [
        "icu-ml",
        "radiology-ai",
        "genomics",
        "research-it",
        "clinical-trials",
        "biomed-engineering",
        "emergency-ai",
        "pharmacy-ops",
        "finance-risk",
        "nlp-platform",
    ];
    let gpu_sets: [&[&str]; 5] = [
        &["H100"],
        &["H100", "A100"],
        &["H200", "H100"],
        &["A100"],
        &["L4"],
    ];
    let gpus = [1u32, 1, 2, 4, 4, 8, 8, 16, 32];
    let released: Vec<&str> = fleet
        .artifacts
        .iter()
        .filter(|a| a.released())
        .map(|a| a.digest.as_str())
        .collect();
    let any_artifact: Vec<&str> = fleet.artifacts.iter().map(|a| a.digest.as_str()).collect();
    let levels = fleet.scheme.levels.len();
    let mut jobs = Vec::with_capacity(n);
    for i in 0..n {
        let kind = *rng.pick(&JobKind::ALL).unwrap_or(&JobKind::Train);
        let mut inputs = Vec::new();
        if matches!(kind, JobKind::Serve | JobKind::EdgeInfer) {
            let pool = if rng.chance(0.8) {
                &released
            } else {
                &any_artifact
            };
            if let Some(a) = rng.pick(pool) {
                inputs.push(Input::Artifact((*a).to_string()));
            }
        } else if let Some(d) = rng.pick(&fleet.datasets) {
            inputs.push(Input::Dataset(DatasetRef {
                name: d.name.clone(),
                version: d.version.clone(),
            }));
            if rng.chance(0.15) {
                if let Some(d2) = rng.pick(&fleet.datasets) {
                    inputs.push(Input::Dataset(DatasetRef {
                        name: d2.name.clone(),
                        version: d2.version.clone(),
                    }));
                }
            }
        }
        let mut labels = Labels::default();
        if rng.chance(0.3) {
            let l = u8::try_from(rng.below(levels)).unwrap_or(0);
            labels.data_classification = Some(l);
            labels.all.insert(
                "data_classification".into(),
                fleet.scheme.level_name(l).to_string(),
            );
        }
        if rng.chance(0.2) {
            let scope = match rng.below(4) {
                0 => ZoneScope::Private,
                1 => ZoneScope::Public,
                2 => ZoneScope::Edge,
                _ => rng
                    .pick(&fleet.zones)
                    .map_or(ZoneScope::Private, |z| ZoneScope::Zone(z.name.clone())),
            };
            labels.all.insert(
                "allowed_execution_zone".into(),
                scope.as_label().to_string(),
            );
            labels.allowed_execution_zone = Some(scope);
        }
        if rng.chance(0.6) {
            let b = rng.chance(0.6);
            labels.burst_eligible = Some(b);
            labels.all.insert("burst_eligible".into(), b.to_string());
        }
        let gpu_types: Vec<String> = if kind == JobKind::EdgeInfer {
            vec!["L4".into()]
        } else {
            rng.pick(&gpu_sets)
                .map_or_else(Vec::new, |s| s.iter().map(|t| (*t).to_string()).collect())
        };
        jobs.push(JobSpec {
            name: format!("job-{i:06}"),
            team: (*rng.pick(&teams).unwrap_or(&"research-it")).to_string(),
            kind,
            inputs,
            outputs: vec![],
            resources: Resources {
                gpus: *rng.pick(&gpus).unwrap_or(&1),
                gpu_types,
                gpu_memory_gb: 0,
                memory_gb: 64,
                expected_hours: 0.25 + rng.below(48) as f64,
            },
            deadline: None,
            sla: None,
            budget_class: "research".into(),
            code_commit: None,
            hyperparameters: BTreeMap::new(),
            justification: None,
            classification: None::<Classification>,
            command: vec![],
            labels,
            origin: Origin::builtin("<synthetic>"),
        });
    }
    jobs
}

/// The worst case for reuse: [`backlog`] with every job of its own team, in a fleet given one
/// more policy that reads the team as it is (`like`), so no two jobs share the attributes the
/// policies read and no verdict can be reused between them.
pub fn distinct_backlog(fleet: &Fleet, n: usize, seed: u64) -> (Fleet, Vec<JobSpec>) {
    let mut fleet = fleet.clone();
    fleet.policies.push(tidegate_model::fleet::PolicyFile {
        path: "<synthetic>/distinct-teams.cedar".into(),
        text: "@id(\"synthetic.quarantined-teams\")\n\
               @reason(\"teams under quarantine place nowhere\")\n\
               forbid (principal, action == Action::\"place\", resource)\n\
               when { principal.team like \"quarantine-*\" };\n"
            .into(),
    });
    let mut jobs = backlog(&fleet, n, seed);
    for (i, j) in jobs.iter_mut().enumerate() {
        j.team = format!("team-{i:07}");
    }
    (fleet, jobs)
}

/// A seeded, partly busy fleet state: free GPUs and waits vary by pool.
pub fn busy_state(fleet: &Fleet, seed: u64) -> FleetState {
    let mut rng = Rng::new(seed ^ 0x5EED);
    FleetState {
        pools: fleet
            .zones
            .iter()
            .map(|z| {
                z.pools
                    .iter()
                    .map(|p| PoolState {
                        free_gpus: u32::try_from(rng.below(p.gpus as usize + 1)).unwrap_or(0),
                        expected_wait_s: rng.below(4 * 3600) as f64,
                    })
                    .collect()
            })
            .collect(),
    }
}
