//! Property tests over random fleets and jobs: the safety invariants of placement hold whatever
//! the fleet looks like, whichever baseline rules a fleet switches off, and reuse of verdicts
//! never changes a decision.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use tidegate_model::{Input, JobKind, JobProfile, Tier, ZoneScope};
use tidegate_placement::{FleetState, PlacementEngine};
use tidegate_policy::PolicyEngine;
use tidegate_testkit::fleets::fleet_and_jobs;

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn placement_invariants_hold((fleet, jobs) in fleet_and_jobs(), busy in proptest::option::of(any::<u64>())) {
        let policy = PolicyEngine::load(&fleet).unwrap();
        // An idle fleet, or one with pools partly taken and waits.
        let state = match busy {
            Some(seed) => tidegate_placement::synth::busy_state(&fleet, seed),
            None => FleetState::idle(&fleet),
        };
        let has_policy = |id: &str| fleet.policies.iter().any(|p| p.text.contains(id));
        let mut eng = PlacementEngine::new(&fleet, policy);
        let batch = eng.place_batch(&jobs, &state);
        for (job, batched) in jobs.iter().zip(batch) {
            let p = eng.place(job, &state).unwrap();
            let naive = eng.place_naive(job, &state).unwrap();
            let fair = eng.place_fair(job, &state).unwrap();
            let batched = batched.unwrap();
            // The fair baseline (one entity set per job) decides as the reference does.
            prop_assert_eq!(fair.decision, naive.decision);
            prop_assert_eq!(&fair.verdicts.policy, &naive.verdicts.policy);
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
                // Never on a pool without the GPU type, the GPU memory or the capacity.
                if !job.resources.gpu_types.is_empty() {
                    prop_assert!(job.resources.gpu_types.contains(&pool.gpu_type));
                }
                prop_assert!(pool.gpus >= job.resources.gpus);
                prop_assert!(pool.gpu_memory_gb >= job.resources.gpu_memory_gb);
                // The fleet's own policies hold as written.
                if has_policy("fleet.finance-stays-private") && job.team == "finance-risk" {
                    prop_assert!(zone.tier.is_private(), "finance-risk placed in {}", zone.name);
                }
                if has_policy("fleet.serving-in-us") && job.kind == JobKind::Serve {
                    prop_assert_eq!(&zone.jurisdiction, "US");
                }
                if has_policy("fleet.radiology-not-uk") && job.team.starts_with("radio") {
                    prop_assert_ne!(&zone.jurisdiction, "UK");
                }
                // Edge zones run only signed artifacts promoted to a release stage.
                if zone.tier == Tier::Edge
                    && !fleet.baseline_exclude.iter().any(|b| b == "baseline.edge-requires-released-artifacts")
                {
                    let arts: Vec<&str> = job.inputs.iter().filter_map(|i| match i {
                        Input::Artifact(d) => Some(d.as_str()),
                        Input::Dataset(_) => None,
                    }).collect();
                    prop_assert!(!arts.is_empty(), "{} on edge without an artifact", job.name);
                    for d in arts {
                        prop_assert!(fleet.artifacts.iter().any(|a| a.digest == d && a.released()), "{} on edge with {d}", job.name);
                    }
                }
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
