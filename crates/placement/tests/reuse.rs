//! Reuse of verdicts against the fair baseline: whatever the backlog, the engine decides as
//! placing every job from scratch does, with its caches full, starting over, or of no use (no two
//! jobs alike), and its caches stay within their bound.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use tidegate_model::load_fleet;
use tidegate_placement::{synth, PlacementEngine};
use tidegate_policy::PolicyEngine;

#[test]
fn every_decision_matches_the_fair_baseline_with_bounded_caches_and_a_backlog_of_strangers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleet");
    let fleet = synth::scale_fleet(&load_fleet(&root).unwrap(), 2);
    let state = synth::busy_state(&fleet, 7);
    let (distinct_fleet, distinct) = synth::distinct_backlog(&fleet, 600, 7);
    let same_fleet_jobs = synth::backlog(&fleet, 600, 7);
    for (fleet, jobs, limit) in [
        (&fleet, &same_fleet_jobs, 1 << 15),
        (&fleet, &same_fleet_jobs, 64),
        (&distinct_fleet, &distinct, 64),
    ] {
        let mut eng = PlacementEngine::new(fleet, PolicyEngine::load(fleet).unwrap());
        eng.set_cache_limit(limit);
        let mut reused = Vec::new();
        for batch in jobs.chunks(50) {
            reused.extend(eng.place_batch(batch, &state));
            assert!(
                eng.cached_attribute_sets() <= limit.max(50),
                "{} attribute sets kept, bound {limit}",
                eng.cached_attribute_sets()
            );
        }
        let fair = eng.place_fair_batch(jobs, &state);
        assert_eq!(reused.len(), fair.len());
        for (job, (r, f)) in jobs.iter().zip(reused.iter().zip(&fair)) {
            let (r, f) = (r.as_ref().unwrap(), f.as_ref().unwrap());
            assert_eq!(r.decision, f.decision, "{} (limit {limit})", job.name);
            assert_eq!(
                r.verdicts.policy, f.verdicts.policy,
                "{} (limit {limit})",
                job.name
            );
            assert_eq!(
                r.allowed_pools().collect::<Vec<_>>(),
                f.allowed_pools().collect::<Vec<_>>(),
                "{}",
                job.name
            );
        }
        // Some job is placed and some refused, so the comparison covers both.
        assert!(reused
            .iter()
            .any(|p| p.as_ref().unwrap().decision.zone.is_some()));
        assert!(reused
            .iter()
            .any(|p| p.as_ref().unwrap().decision.zone.is_none()));
    }
    // The strangers' backlog shares nothing the policies read.
    let mut seen = std::collections::HashSet::new();
    for j in &distinct {
        let p = tidegate_model::JobProfile::resolve(j, &distinct_fleet).unwrap();
        assert!(seen.insert(p.attrs), "{} shares its attributes", j.name);
    }
}
