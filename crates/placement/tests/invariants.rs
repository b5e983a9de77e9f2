//! Property tests over random fleets and jobs: the safety invariants of placement hold whatever
//! the fleet looks like, whichever baseline rules a fleet switches off, and reuse of verdicts
//! never changes a decision.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use proptest::prelude::*;
use tidegate_model::{
    Backend, Classification, Dataset, DatasetRef, Fleet, Input, JobKind, JobProfile, JobSpec,
    Labels, Origin, Pool, Pricing, Resources, Scheme, Tier, Zone, ZoneScope,
};
use tidegate_placement::{FleetState, PlacementEngine};
use tidegate_policy::PolicyEngine;

const TIERS: [Tier; 4] = [
    Tier::PrivateOnprem,
    Tier::PrivateCloud,
    Tier::Public,
    Tier::Edge,
];
const JURIS: [&str; 3] = ["EU", "US", "UK"];
const GPUS: [&str; 4] = ["H100", "A100", "H200", "L4"];
const TAGS: [&str; 5] = ["phi", "pii", "pci", "export-controlled", "ip"];
const CERTS: [&str; 4] = ["hipaa-baa", "iso27001", "soc2", "pci-dss"];
const EXCLUDABLE: [&str; 7] = [
    "baseline.sensitive-stays-private",
    "baseline.residency",
    "baseline.public-certifications",
    "baseline.export-control",
    "baseline.burst-requires-eligibility",
    "baseline.edge-requires-released-artifacts",
    "baseline.allowed-execution-zone",
];

fn subset<T: Clone + std::fmt::Debug>(xs: &'static [T]) -> impl Strategy<Value = Vec<T>> {
    proptest::sample::subsequence(xs.to_vec(), 0..=xs.len())
}

fn arb_zone(i: usize) -> impl Strategy<Value = Zone> {
    (
        proptest::sample::select(TIERS.to_vec()),
        proptest::sample::select(JURIS.to_vec()),
        subset(&CERTS),
        0u8..4,
        proptest::collection::vec(
            (
                proptest::sample::select(GPUS.to_vec()),
                1u32..64,
                any::<bool>(),
            ),
            1..4,
        ),
        any::<bool>(),
    )
        .prop_map(move |(tier, j, certs, max, pools, open_egress)| Zone {
            name: format!("zone-{i}"),
            tier,
            provider: "p".into(),
            region: "r".into(),
            jurisdiction: j.into(),
            certifications: certs.into_iter().map(String::from).collect(),
            max_classification: max,
            egress_allowlist: if open_egress {
                vec!["*".into()]
            } else {
                vec![]
            },
            egress_price_per_gb: 0.05,
            backend: Backend::Local { workdir: None },
            pools: pools
                .into_iter()
                .enumerate()
                .map(|(k, (g, n, spot))| Pool {
                    name: format!("pool-{k}"),
                    gpu_type: g.into(),
                    gpus: n,
                    gpu_memory_gb: 80,
                    price_per_gpu_hour: 1.0 + k as f64,
                    pricing: if spot {
                        Pricing::Spot
                    } else {
                        Pricing::OnDemand
                    },
                    preemption_risk: if spot { 0.1 } else { 0.0 },
                    origin: Origin::builtin("test"),
                })
                .collect(),
            origin: Origin::builtin("test"),
        })
}

fn arb_fleet() -> impl Strategy<Value = Fleet> {
    (2usize..7)
        .prop_flat_map(|n| {
            let zones: Vec<_> = (0..n).map(arb_zone).collect();
            let datasets = proptest::collection::vec(
                (
                    0u8..4,
                    subset(&TAGS),
                    proptest::option::of(subset(&JURIS)),
                    0..n,
                ),
                1..5,
            );
            (
                zones,
                datasets,
                subset(&EXCLUDABLE),
                proptest::option::of(proptest::sample::select(JURIS.to_vec())),
            )
        })
        .prop_map(|(zones, datasets, exclude, home)| {
            let datasets = datasets
                .into_iter()
                .enumerate()
                .map(|(i, (level, tags, residency, home))| Dataset {
                    name: format!("ds-{i}"),
                    version: "v1".into(),
                    classification: Classification {
                        level,
                        tags: tags.into_iter().map(String::from).collect(),
                        residency: residency.map(|r| r.into_iter().map(String::from).collect()),
                        retention: None,
                    },
                    home_zone: zones[home].name.clone(),
                    size_gb: 10.0,
                    owner: "o".into(),
                    origin: Origin::builtin("test"),
                })
                .collect();
            Fleet {
                name: "random".into(),
                root: PathBuf::from("."),
                scheme: Scheme::default(),
                zones,
                datasets,
                artifacts: vec![],
                policies: vec![],
                baseline_exclude: exclude.into_iter().map(String::from).collect(),
                home_jurisdiction: home.map(String::from),
                fleet_hash: String::new(),
            }
        })
}

fn arb_job(fleet: &Fleet) -> impl Strategy<Value = JobSpec> {
    let ds: Vec<DatasetRef> = fleet
        .datasets
        .iter()
        .map(|d| DatasetRef {
            name: d.name.clone(),
            version: d.version.clone(),
        })
        .collect();
    let zones: Vec<String> = fleet.zones.iter().map(|z| z.name.clone()).collect();
    (
        proptest::sample::subsequence(ds.clone(), 0..=ds.len().min(2)),
        proptest::option::of(0u8..4),
        proptest::option::of(prop_oneof![
            Just(ZoneScope::Private),
            Just(ZoneScope::Public),
            Just(ZoneScope::Edge),
            proptest::sample::select(zones).prop_map(ZoneScope::Zone),
        ]),
        proptest::option::of(any::<bool>()),
        proptest::sample::select(JobKind::ALL.to_vec()),
        subset(&GPUS),
        1u32..80,
        proptest::option::of(subset(&TAGS)),
    )
        .prop_map(
            |(inputs, level, scope, burst, kind, types, gpus, own)| JobSpec {
                name: "job".into(),
                team: "team".into(),
                kind,
                inputs: inputs.into_iter().map(Input::Dataset).collect(),
                outputs: vec![],
                resources: Resources {
                    gpus,
                    gpu_types: types.into_iter().map(String::from).collect(),
                    gpu_memory_gb: 0,
                    memory_gb: 0,
                    expected_hours: 2.0,
                },
                deadline: None,
                sla: None,
                budget_class: "b".into(),
                code_commit: None,
                hyperparameters: BTreeMap::new(),
                justification: None,
                classification: own.map(|tags| Classification {
                    tags: tags.into_iter().map(String::from).collect(),
                    ..Classification::default()
                }),
                command: vec![],
                labels: Labels {
                    data_classification: level,
                    allowed_execution_zone: scope,
                    burst_eligible: burst,
                    all: BTreeMap::new(),
                    lines: BTreeMap::new(),
                },
                origin: Origin::builtin("test"),
            },
        )
}

fn fleet_and_jobs() -> impl Strategy<Value = (Fleet, Vec<JobSpec>)> {
    arb_fleet().prop_flat_map(|f| {
        let jobs = proptest::collection::vec(arb_job(&f), 1..12);
        (Just(f), jobs)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn placement_invariants_hold((fleet, jobs) in fleet_and_jobs()) {
        let policy = PolicyEngine::load(&fleet).unwrap();
        let state = FleetState::idle(&fleet);
        let mut eng = PlacementEngine::new(&fleet, policy);
        let batch = eng.place_batch(&jobs, &state);
        for (job, batched) in jobs.iter().zip(batch) {
            let p = eng.place(job, &state).unwrap();
            let naive = eng.place_naive(job, &state).unwrap();
            let batched = batched.unwrap();
            // Reuse (per job, per batch) never changes a decision or an allowed option.
            prop_assert_eq!(p.decision, naive.decision);
            prop_assert_eq!(p.decision, batched.decision);
            prop_assert_eq!(p.allowed_pools().collect::<Vec<_>>(), naive.allowed_pools().collect::<Vec<_>>());

            let profile = JobProfile::resolve(job, &fleet).unwrap();
            let restricted = fleet.scheme.levels[profile.effective.level as usize].private_only;
            let phi = profile.effective.tags.contains("phi");
            let private_label = job.labels.allowed_execution_zone == Some(ZoneScope::Private);
            let export = profile.effective.tags.contains("export-controlled");
            for (zi, pi) in p.allowed_pools() {
                let zone = &fleet.zones[zi];
                let pool = &zone.pools[pi];
                // Restricted data, PHI, or allowed_execution_zone=private: never public or edge,
                // even with the matching baseline rules switched off.
                if restricted || phi || private_label {
                    prop_assert!(zone.tier.is_private(), "{} placed in {} ({})", job.name, zone.name, zone.tier);
                }
                // Export-controlled data never leaves its jurisdiction.
                if export {
                    for d in &profile.data {
                        let home = fleet.zone(&d.zone).unwrap();
                        prop_assert_eq!(&home.jurisdiction, &zone.jurisdiction);
                    }
                    // With no export-controlled input to tell the origin: only the home
                    // jurisdiction's private zones, and nowhere without a home.
                    let controlled_input = job.inputs.iter().any(|i| match i {
                        Input::Dataset(r) => fleet.dataset(r).is_some_and(|d| d.classification.tags.contains("export-controlled")),
                        Input::Artifact(_) => false,
                    });
                    if !controlled_input {
                        prop_assert!(zone.tier.is_private(), "{} placed in {}", job.name, zone.name);
                        prop_assert_eq!(Some(&zone.jurisdiction), fleet.home_jurisdiction.as_ref());
                    }
                }
                // Never on a pool without the GPU type or the capacity.
                if !job.resources.gpu_types.is_empty() {
                    prop_assert!(job.resources.gpu_types.contains(&pool.gpu_type));
                }
                prop_assert!(pool.gpus >= job.resources.gpus);
                // Never above the zone's ceiling, never outside residency.
                prop_assert!(profile.effective.level <= zone.max_classification);
                if let Some(r) = &profile.effective.residency {
                    prop_assert!(r.contains(&zone.jurisdiction));
                }
            }
            // The plain admission re-check agrees with placement on every option.
            for pc in &p.pools {
                let re = eng.recheck_plain(job, pc.zone, pc.pool);
                prop_assert_eq!(re.is_ok(), pc.allowed, "{:?} at {}/{}", re, pc.zone, pc.pool);
            }
            // A decision is one of the allowed options.
            if let (Some(z), Some(pl)) = (p.decision.zone, p.decision.pool) {
                prop_assert!(p.allowed_pools().any(|x| x == (z, pl)));
            } else {
                prop_assert_eq!(p.allowed_pools().count(), 0);
            }
        }
    }
}

#[test]
fn same_inputs_same_placement() {
    let fleet = tidegate_model::load_fleet(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleet"),
    )
    .unwrap();
    let jobs = tidegate_placement::synth::backlog(&fleet, 300, 7);
    let state = tidegate_placement::synth::busy_state(&fleet, 7);
    let run = || {
        let mut eng = PlacementEngine::new(&fleet, PolicyEngine::load(&fleet).unwrap());
        jobs.iter()
            .map(|j| eng.place(j, &state).unwrap().decision)
            .collect::<Vec<_>>()
    };
    let a = run();
    assert_eq!(a, run());
    assert!(a.iter().any(|d| d.zone.is_some()) && a.iter().any(|d| d.zone.is_none()));
}
