//! The safety floor end to end through placement: a fleet policy that reads the job through an
//! entity literal is honoured by `place` and by the plain re-check, and export-controlled work
//! with no input of known origin never runs outside the home jurisdiction's private zones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use tidegate_model::fleet::PolicyFile;
use tidegate_model::{load_fleet, parse_job, Fleet, JobSpec};
use tidegate_placement::{
    Constraint, Explanation, FleetState, PlacementEngine, Reason, ZoneFailures,
};
use tidegate_policy::PolicyEngine;

fn example() -> Fleet {
    load_fleet(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleet")).unwrap()
}

fn job(fleet: &Fleet, team: &str, extra_spec: &str) -> JobSpec {
    let text = format!(
        "apiVersion: tidegate.io/v1
kind: Job
metadata:
  name: j
  team: {team}
  labels:
    burst_eligible: true
spec:
  kind: train
  resources:
    gpus: 1
    expected_hours: 1
{extra_spec}"
    );
    parse_job(Path::new("job.yaml"), &text, fleet).unwrap()
}

const GENOMICS: &str = "@id(\"genomics.private\")
@reason(\"genomics work stays private\")
forbid (principal, action, resource) when { Job::\"job\".team == \"genomics\" && !resource.private };
";

#[test]
fn a_policy_reading_the_job_through_an_entity_literal_is_honoured() {
    let mut fleet = example();
    fleet.policies.push(PolicyFile {
        path: PathBuf::from("policies/genomics.cedar"),
        text: GENOMICS.into(),
    });
    let policy = PolicyEngine::load(&fleet).unwrap();
    let mut eng = PlacementEngine::new(&fleet, policy);
    let state = FleetState::idle(&fleet);
    let g = job(&fleet, "genomics", "");
    let us = fleet
        .zones
        .iter()
        .position(|z| z.name == "public-us")
        .unwrap();
    for p in [
        eng.place(&g, &state).unwrap(),
        eng.place_batch(std::slice::from_ref(&g), &state)
            .pop()
            .unwrap()
            .unwrap(),
    ] {
        for (zi, _) in p.allowed_pools() {
            assert!(
                fleet.zones[zi].tier.is_private(),
                "genomics placed in {}",
                fleet.zones[zi].name
            );
        }
        let ex = Explanation::new(&p, &g, &fleet);
        assert!(
            ex.candidates[us].reasons.iter().any(
                |r| matches!(r, Reason::Forbidden { policy, .. } if policy == "genomics.private")
            ),
            "{:?}",
            ex.candidates[us].reasons
        );
    }
    // The plain re-check refuses the public option with the policy's reason, and allows a
    // private one.
    let why = eng.recheck_plain(&g, us, 0).unwrap_err().to_string();
    assert!(why.contains("genomics.private"), "{why}");
    let onprem = fleet
        .zones
        .iter()
        .position(|z| z.name == "hospital-onprem")
        .unwrap();
    assert_eq!(eng.recheck_plain(&g, onprem, 0), Ok(()));
    // Another team may still burst.
    let other = job(&fleet, "icu-ml", "");
    assert_eq!(eng.recheck_plain(&other, us, 0), Ok(()));
    assert!(eng
        .place(&other, &state)
        .unwrap()
        .allowed_pools()
        .any(|(z, _)| z == us));
    // An index outside the fleet is refused, never allowed.
    assert!(eng.recheck_plain(&other, 99, 0).is_err());
}

const EXPORT: &str = "  classification:
    level: confidential
    tags: [export-controlled]
";

#[test]
fn export_controlled_work_with_no_known_origin_stays_in_home_private_zones() {
    let fleet = example();
    let eng = PlacementEngine::new(&fleet, PolicyEngine::load(&fleet).unwrap());
    let j = job(&fleet, "biomed-engineering", EXPORT);
    let p = eng.place_naive(&j, &FleetState::idle(&fleet)).unwrap();
    let allowed: Vec<&str> = p
        .allowed_pools()
        .map(|(z, _)| fleet.zones[z].name.as_str())
        .collect();
    assert!(!allowed.is_empty());
    for (z, _) in p.allowed_pools() {
        let zone = &fleet.zones[z];
        assert!(
            zone.tier.is_private() && zone.jurisdiction == "US",
            "placed in {}",
            zone.name
        );
    }
    let eu = fleet
        .zones
        .iter()
        .position(|z| z.name == "public-eu")
        .unwrap();
    assert!(eng.recheck_plain(&j, eu, 0).is_err());
}

#[test]
fn export_controlled_work_with_no_origin_and_no_home_runs_nowhere() {
    let mut fleet = example();
    fleet.home_jurisdiction = None;
    // Even with the baseline rule switched off, the hard constraint refuses every zone.
    fleet
        .baseline_exclude
        .push("baseline.export-control".into());
    let eng = PlacementEngine::new(&fleet, PolicyEngine::load(&fleet).unwrap());
    let j = job(&fleet, "biomed-engineering", EXPORT);
    let p = eng.place_naive(&j, &FleetState::idle(&fleet)).unwrap();
    assert_eq!(p.allowed_pools().count(), 0);
    assert!(p.zones.iter().all(|z| z.failures.has(ZoneFailures::EXPORT)));
    let ex = Explanation::new(&p, &j, &fleet);
    for c in &ex.candidates {
        assert!(
            c.reasons
                .iter()
                .any(|r| matches!(r, Reason::Constraint { constraint: Constraint::ExportControl, detail } if detail.contains("no input of known origin"))),
            "{}: {:?}",
            c.zone,
            c.reasons
        );
    }
    let eu = fleet
        .zones
        .iter()
        .position(|z| z.name == "public-eu")
        .unwrap();
    let why = eng.recheck_plain(&j, eu, 0).unwrap_err().to_string();
    assert!(why.contains("export"), "{why}");
}

#[test]
fn the_baseline_export_rule_alone_refuses_work_with_no_origin() {
    let mut fleet = example();
    fleet.home_jurisdiction = None;
    let policy = PolicyEngine::load(&fleet).unwrap();
    let j = job(&fleet, "biomed-engineering", EXPORT);
    let profile = tidegate_model::JobProfile::resolve(&j, &fleet).unwrap();
    for z in 0..fleet.zones.len() {
        let v = policy.evaluate_plain(&profile.attrs, "confidential", z);
        assert!(
            v.forbids.iter().any(|f| f.id == "baseline.export-control"),
            "{}: {v:?}",
            fleet.zones[z].name
        );
    }
}
