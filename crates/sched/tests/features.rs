//! Scheduler control-plane features: cost-aware choice (spot risk, egress, data locality),
//! per-class thresholds, team quotas with borrowing and reclaim, fair share, budgets and
//! justifications, capacity failover, the failure hierarchy, throttling, cancel and release.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use tidegate_model::{
    load_fleet_with_scheduling, Budget, FailoverAction, FailoverRule, Fleet, JobClass, Origin,
    Scheduling, TeamQuota,
};
use tidegate_sched::{
    BudgetLimit, BudgetOwner, BurstReason, Candidate, ClassThresholds, Effect, FailoverReason,
    Health, PreemptReason, QueueReason, RefuseReason, SchedConfig, Scheduler, Shape,
};

fn example() -> (Fleet, Scheduling) {
    load_fleet_with_scheduling(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleet"))
        .unwrap()
}

fn zone(f: &Fleet, name: &str) -> usize {
    f.zones.iter().position(|z| z.name == name).unwrap()
}

fn shape(gpus: u32) -> Shape {
    Shape {
        gpus,
        expected_s: 3600.0,
        justification: Some("clinical backlog".into()),
        ..Shape::default()
    }
}

fn of(class: &str, team: &str, gpus: u32) -> Shape {
    Shape {
        class: class.into(),
        team: team.into(),
        ..shape(gpus)
    }
}

fn onprem(f: &Fleet) -> Candidate {
    Candidate::new(zone(f, "hospital-onprem"), 0, false, 10.0)
}

fn cloud(f: &Fleet) -> Candidate {
    Candidate::new(zone(f, "private-cloud"), 0, false, 12.0)
}

fn us(f: &Fleet, cost: f64) -> Candidate {
    Candidate::new(zone(f, "public-us"), 0, true, cost)
}

type AdmittedAs = (usize, usize, bool, Option<BurstReason>, Option<String>, u32);

fn admitted(e: &[Effect], job: u64) -> Option<AdmittedAs> {
    e.iter().find_map(|e| match e {
        Effect::Admitted {
            job: j,
            zone,
            pool,
            burst,
            reason,
            justification,
            gpus,
            ..
        } if *j == job => Some((
            *zone,
            *pool,
            *burst,
            reason.clone(),
            justification.clone(),
            *gpus,
        )),
        _ => None,
    })
}

fn queued_reason(e: &[Effect], job: u64) -> Option<QueueReason> {
    e.iter().rev().find_map(|e| match e {
        Effect::Queued { job: j, reason, .. } if *j == job => Some(reason.clone()),
        _ => None,
    })
}

fn refused_reason(e: &[Effect], job: u64) -> Option<RefuseReason> {
    e.iter().find_map(|e| match e {
        Effect::Refused { job: j, reason } if *j == job => Some(reason.clone()),
        _ => None,
    })
}

fn team(name: &str, nominal: &[(&str, u32)], limit: Option<u32>) -> TeamQuota {
    TeamQuota {
        name: name.into(),
        weight: 1.0,
        nominal: nominal
            .iter()
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect(),
        borrowing_limit: limit,
        justification: None,
        budget: Budget::default(),
        origin: Origin::builtin("test"),
    }
}

// 1. Cost-aware choice.

#[test]
fn expected_cost_counts_spot_rerun_risk_and_keeps_egress() {
    let c = Candidate {
        cost: 30.0,
        egress_cost: 10.0,
        preemption_risk: 0.2,
        ..Candidate::default()
    };
    // compute 20; 5 h at 0.2/h: 20 * min(0.2 * 5 * 0.5, 2) = 10.
    assert!((c.expected_cost(5.0 * 3600.0) - 40.0).abs() < 1e-9);
    let od = Candidate {
        cost: 30.0,
        egress_cost: 10.0,
        ..Candidate::default()
    };
    assert_eq!(od.expected_cost(5.0 * 3600.0), 30.0);
}

#[test]
fn spot_wins_short_jobs_on_demand_wins_long_ones() {
    let (f, _) = example();
    let eu = zone(&f, "public-eu");
    let spot = Candidate {
        preemption_risk: 0.5,
        ..Candidate::new(zone(&f, "public-us"), 1, true, 20.0)
    };
    let od = Candidate::new(eu, 0, true, 30.0);
    let mut s = Scheduler::new(&f, SchedConfig::default());
    // Public capacity is the only place for these jobs, so they burst at once.
    let short = Shape {
        expected_s: 1800.0,
        ..shape(4)
    };
    let e = s.submit(1, short, vec![od, spot], 0.0);
    let (z, p, burst, ..) = admitted(&e, 1).unwrap();
    assert!(burst);
    assert_eq!(
        (z, p),
        (spot.zone, spot.pool),
        "short job: spot 22.5 expected beats on-demand 30"
    );
    let long = Shape {
        expected_s: 10.0 * 3600.0,
        ..shape(4)
    };
    let e = s.submit(2, long, vec![spot, od], 0.0);
    let (z, p, ..) = admitted(&e, 2).unwrap();
    assert_eq!(
        (z, p),
        (eu, 0),
        "long job: spot 60 expected loses to on-demand 30"
    );
    match &e[0] {
        Effect::Admitted { cost, .. } => assert_eq!(*cost, 30.0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn egress_and_data_locality_steer_the_choice() {
    let (f, _) = example();
    let eu = zone(&f, "public-eu");
    let usz = zone(&f, "public-us");
    let mut s = Scheduler::new(&f, SchedConfig::default());
    // Same compute price: the option that must move the inputs pays egress and loses.
    let remote = Candidate {
        egress_cost: 8.0,
        ..Candidate::new(eu, 0, true, 38.0)
    };
    let local = Candidate {
        data_local: true,
        ..Candidate::new(usz, 0, true, 30.0)
    };
    let e = s.submit(1, shape(2), vec![remote, local], 0.0);
    assert_eq!(admitted(&e, 1).unwrap().0, usz);
    // Equal cost: the zone where the data sits wins whatever the order given.
    let a = Candidate::new(eu, 0, true, 30.0);
    let b = Candidate {
        data_local: true,
        ..Candidate::new(usz, 0, true, 30.0)
    };
    let e = s.submit(2, shape(2), vec![a, b], 0.0);
    assert_eq!(admitted(&e, 2).unwrap().0, usz);
}

// 2. Thresholds per job class.

#[test]
fn burst_thresholds_differ_per_job_class() {
    let (f, _) = example();
    let mut classes = BTreeMap::new();
    classes.insert(
        "production".to_string(),
        ClassThresholds {
            burst_queue_depth: Some(1),
            ..ClassThresholds::default()
        },
    );
    let mut s = Scheduler::new(
        &f,
        SchedConfig {
            classes,
            ..SchedConfig::default()
        },
    );
    s.submit(0, shape(32), vec![onprem(&f)], 0.0);
    let e = s.submit(
        1,
        of("research", "", 4),
        vec![onprem(&f), us(&f, 30.0)],
        1.0,
    );
    assert!(queued_reason(&e, 1).is_some(), "{e:?}");
    // Depth 1 reached: production spills at once, research (default depth 16) keeps waiting.
    let e = s.submit(
        2,
        of("research", "", 4),
        vec![onprem(&f), us(&f, 30.0)],
        2.0,
    );
    assert!(queued_reason(&e, 2).is_some(), "{e:?}");
    let e = s.submit(
        3,
        of("production", "", 4),
        vec![onprem(&f), us(&f, 30.0)],
        3.0,
    );
    let (_, _, burst, reason, ..) = admitted(&e, 3).unwrap();
    assert!(
        burst && matches!(reason, Some(BurstReason::QueueDepth { threshold: 1, .. })),
        "{reason:?}"
    );
}

#[test]
fn fleet_declared_class_sla_and_deadline_slack_apply() {
    let (f, rules) = example();
    let mut s = Scheduler::with_rules(&f, &rules, SchedConfig::default());
    s.submit(0, of("", "icu-ml", 32), vec![onprem(&f)], 0.0);
    // production: max_wait 30 min; research: 240 min. Neither job names an SLA of its own.
    s.submit(
        1,
        of("production", "icu-ml", 4),
        vec![onprem(&f), us(&f, 30.0)],
        1.0,
    );
    s.submit(
        2,
        of("research", "icu-ml", 4),
        vec![onprem(&f), us(&f, 30.0)],
        1.0,
    );
    let e = s.tick(2000.0);
    assert!(admitted(&e, 1).is_some_and(|a| a.2), "{e:?}");
    assert!(admitted(&e, 2).is_none(), "{e:?}");
    // production min deadline slack 60 min: 30 min of slack bursts at once.
    let d = Shape {
        deadline_s: Some(2000.0 + 3600.0 + 1800.0),
        ..of("production", "icu-ml", 4)
    };
    let e = s.submit(3, d, vec![onprem(&f), us(&f, 30.0)], 2000.0);
    let (_, _, burst, reason, ..) = admitted(&e, 3).unwrap();
    assert!(
        burst && matches!(reason, Some(BurstReason::DeadlineSlack { .. })),
        "{reason:?}"
    );
}

// 3. Quotas, borrowing, reclaim, fair share.

#[test]
fn borrowed_capacity_is_reclaimed_by_preemption_within_borrowing_limits() {
    let (f, _) = example();
    let rules = Scheduling {
        teams: vec![
            team("a", &[("hospital-onprem", 16)], Some(16)),
            team("b", &[("hospital-onprem", 16)], Some(16)),
        ],
        ..Scheduling::default()
    };
    let mut s = Scheduler::with_rules(&f, &rules, SchedConfig::default());
    let home = zone(&f, "hospital-onprem");
    assert!(admitted(&s.submit(1, of("", "a", 16), vec![onprem(&f)], 0.0), 1).is_some());
    // Borrowing b's idle 16 GPUs is within a's borrowing limit.
    assert!(admitted(&s.submit(2, of("", "a", 16), vec![onprem(&f)], 1.0), 2).is_some());
    // 8 more would be 24 over a's quota: beyond the limit of 16, it waits with that reason.
    let e = s.submit(3, of("", "a", 8), vec![onprem(&f)], 2.0);
    assert!(
        matches!(
            queued_reason(&e, 3),
            Some(QueueReason::QuotaLimit {
                limit: Some(16),
                ..
            })
        ),
        "{e:?}"
    );
    // b wants 8 of its own quota back: the newest borrowed job of a is preempted.
    let e = s.submit(4, of("", "b", 8), vec![onprem(&f)], 3.0);
    let pre = e
        .iter()
        .position(|e| matches!(e, Effect::Preempted { job: 2, zone, pool: 0, .. } if *zone == home))
        .unwrap();
    let adm = e
        .iter()
        .position(|e| matches!(e, Effect::Admitted { job: 4, .. }))
        .unwrap();
    assert!(pre < adm, "{e:?}");
    assert!(
        !e.iter()
            .any(|e| matches!(e, Effect::Preempted { job: 1, .. })),
        "a's own-quota job is never preempted"
    );
    // The preempted job is back in its queue, not dropped.
    assert!(s.running_at(2).is_none());
    assert_eq!(s.queue_depth(home), 2);
    assert_eq!(s.free_gpus(home, 0), 8);
    // When b's job ends, the preempted job runs again first (borrowing within the limit).
    let e = s.finish(4, 10.0);
    assert!(admitted(&e, 2).is_some(), "{e:?}");
    assert!(admitted(&e, 3).is_none(), "{e:?}");
}

#[test]
fn without_borrowed_work_to_reclaim_nothing_is_preempted() {
    let (f, _) = example();
    let rules = Scheduling {
        teams: vec![
            team("a", &[("private", 32)], Some(0)),
            team("b", &[("private", 32)], Some(0)),
        ],
        ..Scheduling::default()
    };
    let mut s = Scheduler::with_rules(&f, &rules, SchedConfig::default());
    s.submit(1, of("", "a", 32), vec![onprem(&f)], 0.0);
    let e = s.submit(2, of("", "b", 8), vec![onprem(&f)], 1.0);
    assert!(!e.iter().any(|e| matches!(e, Effect::Preempted { .. })));
    assert!(queued_reason(&e, 2).is_some());
}

#[test]
fn fair_share_serves_the_team_with_less_recent_usage_first() {
    let (f, _) = example();
    let rules = Scheduling {
        teams: vec![
            team("heavy", &[("private", 1000)], None),
            team("light", &[("private", 1000)], None),
        ],
        ..Scheduling::default()
    };
    let mut s = Scheduler::with_rules(&f, &rules, SchedConfig::default());
    s.submit(1, of("", "heavy", 32), vec![onprem(&f)], 0.0);
    // heavy queues first, light second; both need the whole pool.
    s.submit(2, of("", "heavy", 32), vec![onprem(&f)], 10_000.0);
    s.submit(3, of("", "light", 32), vec![onprem(&f)], 10_001.0);
    assert!(s.team_share("heavy") > s.team_share("light"));
    let e = s.finish(1, 10_002.0);
    assert!(admitted(&e, 3).is_some(), "light goes first: {e:?}");
    assert!(admitted(&e, 2).is_none());

    // Without teams the same sequence is plain FIFO.
    let mut fifo = Scheduler::new(&f, SchedConfig::default());
    fifo.submit(1, of("", "heavy", 32), vec![onprem(&f)], 0.0);
    fifo.submit(2, of("", "heavy", 32), vec![onprem(&f)], 10_000.0);
    fifo.submit(3, of("", "light", 32), vec![onprem(&f)], 10_001.0);
    let e = fifo.finish(1, 10_002.0);
    assert!(admitted(&e, 2).is_some(), "{e:?}");
}

#[test]
fn fleet_teams_parse_and_gate_the_example() {
    let (_, rules) = example();
    let icu = rules.team("icu-ml").unwrap();
    assert_eq!(icu.weight, 2.0);
    assert_eq!(icu.nominal.get("private"), Some(&48));
    assert_eq!(icu.borrowing_limit, Some(64));
    assert!(icu.justification.is_some());
    assert_eq!(rules.class("production").unwrap().max_wait_s, Some(1800.0));
    assert_eq!(rules.failover.throttle_shed, vec!["batch".to_string()]);
    assert_eq!(
        rules.failover.on_degraded[0].action,
        FailoverAction::FailOver
    );
}

// 4. Budgets and justification.

#[test]
fn a_burst_over_budget_stays_queued_with_the_reason() {
    let (f, _) = example();
    let rules = Scheduling {
        classes: vec![JobClass {
            name: "research".into(),
            burst_queue_depth: None,
            max_wait_s: None,
            min_deadline_slack_s: None,
            budget: Budget {
                money: Some(50.0),
                gpu_hours: None,
            },
            origin: Origin::builtin("test"),
        }],
        ..Scheduling::default()
    };
    let mut s = Scheduler::with_rules(&f, &rules, SchedConfig::default());
    let e = s.submit(1, of("research", "", 4), vec![us(&f, 30.0)], 0.0);
    assert!(admitted(&e, 1).is_some_and(|a| a.2));
    let e = s.submit(2, of("research", "", 4), vec![us(&f, 30.0)], 1.0);
    let why = queued_reason(&e, 2).unwrap();
    assert!(
        matches!(
            &why,
            QueueReason::OverBudget {
                owner: BudgetOwner::Class(c),
                limit: BudgetLimit::Money(_),
            } if c == "research"
        ),
        "{why:?}"
    );
    assert_eq!(why.code(), "queue:class-budget-money");
    assert_eq!(s.class_spent("research").0, 30.0);
    // Never dropped: it is still queued after the first job ends and time passes.
    let e = s.finish(1, 5000.0);
    assert!(
        refused_reason(&e, 2).is_none() && admitted(&e, 2).is_none(),
        "{e:?}"
    );
    assert_eq!(s.queue_depth(zone(&f, "public-us")), 1);
    // Another class has its own (absent) budget.
    let e = s.submit(3, of("production", "", 4), vec![us(&f, 30.0)], 5001.0);
    assert!(admitted(&e, 3).is_some());
}

#[test]
fn team_budget_in_gpu_hours_holds_bursts() {
    let (f, _) = example();
    let mut t = team("a", &[("public", 1000)], None);
    t.budget = Budget {
        money: None,
        gpu_hours: Some(10.0),
    };
    let rules = Scheduling {
        teams: vec![t],
        ..Scheduling::default()
    };
    let mut s = Scheduler::with_rules(&f, &rules, SchedConfig::default());
    assert!(admitted(&s.submit(1, of("", "a", 8), vec![us(&f, 30.0)], 0.0), 1).is_some()); // 8 GPU-h
    let e = s.submit(2, of("", "a", 4), vec![us(&f, 30.0)], 1.0); // 12 > 10
    assert!(
        matches!(
            queued_reason(&e, 2),
            Some(QueueReason::OverBudget {
                owner: BudgetOwner::Team(_),
                limit: BudgetLimit::GpuHours(_),
            })
        ),
        "{e:?}"
    );
    assert_eq!(s.team_spent("a").1, 8.0);
}

#[test]
fn every_burst_records_a_justification_and_none_means_no_burst() {
    let (f, rules) = example();
    let mut s = Scheduler::with_rules(&f, &rules, SchedConfig::default());
    // The job's own justification.
    let e = s.submit(
        1,
        of("production", "research-it", 2),
        vec![us(&f, 30.0)],
        0.0,
    );
    assert_eq!(
        admitted(&e, 1).unwrap().4.as_deref(),
        Some("clinical backlog")
    );
    // None of its own: the team's standing one from the fleet.
    let bare = Shape {
        justification: None,
        ..of("production", "icu-ml", 2)
    };
    let e = s.submit(2, bare.clone(), vec![us(&f, 30.0)], 0.0);
    assert!(admitted(&e, 2).unwrap().4.unwrap().contains("ICU"), "{e:?}");
    // None at all (research-it has no standing one): no burst, queued with the reason.
    let e = s.submit(
        3,
        Shape {
            team: "research-it".into(),
            ..bare
        },
        vec![us(&f, 30.0)],
        0.0,
    );
    assert!(
        matches!(
            queued_reason(&e, 3),
            Some(QueueReason::NeedsJustification { .. })
        ),
        "{e:?}"
    );
    assert!(admitted(&e, 3).is_none());
    // Private admissions need none.
    let e = s.submit(
        4,
        Shape {
            justification: None,
            ..shape(2)
        },
        vec![onprem(&f)],
        0.0,
    );
    assert_eq!(admitted(&e, 4).unwrap().4, None);
}

// 5. Capacity failover.

#[test]
fn no_capacity_moves_the_job_one_site_at_a_time_and_never_runs_it_twice() {
    let (f, _) = example();
    let eu = zone(&f, "public-eu");
    let usz = zone(&f, "public-us");
    let h200 = Candidate::new(eu, 1, true, 20.0);
    let us_od = Candidate::new(usz, 0, true, 25.0);
    let eu_od = Candidate::new(eu, 0, true, 30.0);
    let mut s = Scheduler::new(&f, SchedConfig::default());
    let e = s.submit(1, shape(8), vec![eu_od, h200, us_od], 0.0);
    assert_eq!(admitted(&e, 1).map(|a| (a.0, a.1)), Some((eu, 1)));
    assert_eq!(s.free_gpus(eu, 1), 56);

    let e = s.no_capacity(1, 5.0);
    match &e[0] {
        Effect::Failover {
            job: 1,
            from_zone,
            from_pool: 1,
            attempt: 1,
            reason,
            ..
        } => {
            assert_eq!(*from_zone, eu);
            assert!(
                matches!(reason, FailoverReason::NoCapacity { pool, .. } if pool == "h200-od"),
                "{reason:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(admitted(&e, 1).map(|a| (a.0, a.1)), Some((usz, 0)));
    assert_eq!(
        s.free_gpus(eu, 1),
        64,
        "the first site is given back before the next is taken"
    );
    assert_eq!(s.running_at(1), Some((usz, 0, 8)));
    assert_eq!(s.running(), 1);

    // The shell's policy re-check refuses the next hop: on to the last option.
    let e = s.reject_candidate(1, usz, 0, "residency re-check failed", 6.0);
    assert!(matches!(e[0], Effect::Failover { attempt: 2, .. }), "{e:?}");
    assert_eq!(admitted(&e, 1).map(|a| (a.0, a.1)), Some((eu, 0)));
    assert_eq!(s.free_gpus(usz, 0), 256);

    let e = s.no_capacity(1, 7.0);
    assert!(matches!(e[0], Effect::Failover { attempt: 3, .. }), "{e:?}");
    assert!(
        matches!(
            refused_reason(&e, 1),
            Some(RefuseReason::NoOptionLeft { attempts: 3, .. })
        ),
        "{e:?}"
    );
    assert_eq!(s.running(), 0);
    assert_eq!(s.free_gpus(eu, 0), 128);
}

#[test]
fn an_evicted_job_goes_back_to_its_queue_with_every_option_and_is_admitted_again() {
    let (f, _) = example();
    let eu = zone(&f, "public-eu");
    let h200 = Candidate::new(eu, 1, true, 20.0);
    let eu_od = Candidate::new(eu, 0, true, 30.0);
    let mut s = Scheduler::new(&f, SchedConfig::default());
    let e = s.submit(1, shape(8), vec![h200, eu_od], 0.0);
    assert_eq!(admitted(&e, 1).map(|a| (a.0, a.1)), Some((eu, 1)));

    // The backend evicted it: preempted, queued, and (its GPUs free again) admitted again to
    // its cheapest option, the one it was evicted from: nothing was struck off.
    let e = s.evicted(1, "Kueue evicted it", 5.0);
    assert!(
        matches!(&e[0], Effect::Preempted { job: 1, zone, pool: 1, reason: PreemptReason::Evicted { text }, .. } if *zone == eu && text == "Kueue evicted it"),
        "{e:?}"
    );
    assert!(
        matches!(queued_reason(&e, 1), Some(QueueReason::Evicted { .. })),
        "{e:?}"
    );
    assert!(
        !e.iter()
            .any(|x| matches!(x, Effect::Failover { .. } | Effect::Refused { .. })),
        "{e:?}"
    );
    assert_eq!(admitted(&e, 1).map(|a| (a.0, a.1)), Some((eu, 1)));
    assert_eq!(s.running_at(1), Some((eu, 1, 8)));
    assert_eq!(s.running(), 1);
    // An eviction of a job that is not running changes nothing.
    assert!(s.evicted(2, "unknown", 6.0).is_empty());
}

#[test]
fn reject_candidate_on_a_queued_job_strikes_the_option() {
    let (f, _) = example();
    let mut s = Scheduler::new(&f, SchedConfig::default());
    s.submit(0, shape(32), vec![onprem(&f)], 0.0);
    s.submit(1, shape(8), vec![onprem(&f)], 1.0);
    let e = s.reject_candidate(1, zone(&f, "hospital-onprem"), 0, "policy changed", 2.0);
    assert!(matches!(
        refused_reason(&e, 1),
        Some(RefuseReason::RecheckRefused { text }) if text == "policy changed"
    ));
    assert_eq!(s.queue_depth(zone(&f, "hospital-onprem")), 0);
}

// 6. Failure hierarchy and throttling.

#[test]
fn a_degraded_private_zone_follows_the_fleet_hierarchy() {
    let (f, rules) = example();
    let home = zone(&f, "hospital-onprem");
    let pc = zone(&f, "private-cloud");
    let usz = zone(&f, "public-us");
    let mut s = Scheduler::with_rules(&f, &rules, SchedConfig::default());
    // The fillers are the same team's, so nothing is reclaimed from them.
    s.submit(100, of("", "icu-ml", 32), vec![onprem(&f)], 0.0);
    s.submit(101, of("", "icu-ml", 60), vec![cloud(&f)], 0.0);
    // Queued behind the full on-prem pool:
    let confidential = Shape {
        data_level: 2,
        ..of("production", "icu-ml", 8)
    };
    let restricted = Shape {
        data_level: 3,
        ..of("production", "icu-ml", 8)
    };
    let shrinkable = Shape {
        min_gpus: Some(4),
        ..of("research", "icu-ml", 8)
    };
    for (id, sh, c) in [
        (1, confidential, vec![onprem(&f), us(&f, 30.0)]),
        (2, restricted, vec![onprem(&f)]), // policy gave it no public option
        (3, shrinkable, vec![onprem(&f), cloud(&f)]),
        (4, of("batch", "icu-ml", 8), vec![onprem(&f)]),
        (5, of("default", "icu-ml", 8), vec![onprem(&f), cloud(&f)]),
    ] {
        let e = s.submit(id, sh, c, 1.0);
        assert!(queued_reason(&e, id).is_some(), "{id}: {e:?}");
    }
    let e = s.set_zone_health(home, Health::Degraded, 10.0);
    // production, confidential data: fails over (to public here), with the reason and justification.
    let (z, _, burst, reason, just, _) = admitted(&e, 1).unwrap();
    assert!(
        z == usz
            && burst
            && matches!(
                reason,
                Some(BurstReason::Hierarchy {
                    downsized: false,
                    ..
                })
            ),
        "{reason:?}"
    );
    assert!(just.is_some());
    // production, restricted data: waits (and never reaches public capacity).
    assert!(admitted(&e, 2).is_none());
    assert!(
        matches!(
            queued_reason(&e, 2),
            Some(QueueReason::DegradedClassified { .. })
        ),
        "{e:?}"
    );
    // research: downsized to its minimum in another private zone.
    let (z, _, burst, _, _, gpus) = admitted(&e, 3).unwrap();
    assert_eq!((z, burst, gpus), (pc, false, 4));
    // batch: shed.
    assert!(matches!(
        refused_reason(&e, 4),
        Some(RefuseReason::DegradedShed { .. })
    ));
    // everything else waits for its home zone even though private-cloud has room.
    assert!(admitted(&e, 5).is_none());
    assert!(matches!(
        queued_reason(&e, 5),
        Some(QueueReason::DegradedWaits { .. })
    ));
    // New work for the degraded zone follows the same rules.
    let e = s.submit(6, of("batch", "icu-ml", 8), vec![onprem(&f)], 11.0);
    assert!(refused_reason(&e, 6).is_some());

    // Healthy again: the waiting jobs run at home once it has room.
    s.set_zone_health(home, Health::Healthy, 20.0);
    let e = s.finish(100, 30.0);
    assert!(admitted(&e, 2).is_some_and(|a| a.0 == home), "{e:?}");
    assert!(admitted(&e, 5).is_some_and(|a| a.0 == home), "{e:?}");
}

#[test]
fn restricted_data_never_fails_over_to_public_whatever_the_hierarchy_says() {
    let (f, _) = example();
    let rules = Scheduling {
        failover: tidegate_model::Failover {
            on_degraded: vec![FailoverRule {
                classes: vec!["*".into()],
                action: FailoverAction::FailOver,
                to: vec!["public".into(), "private".into()],
                max_classification: None,
                origin: Origin::builtin("test"),
            }],
            throttle_shed: vec![],
        },
        ..Scheduling::default()
    };
    let home = zone(&f, "hospital-onprem");
    let mut s = Scheduler::with_rules(&f, &rules, SchedConfig::default());
    s.submit(100, shape(32), vec![onprem(&f)], 0.0);
    // Placement gave the PHI job on-prem only (hard constraints); public capacity is idle.
    let phi = Shape {
        data_level: 3,
        ..shape(8)
    };
    s.submit(1, phi, vec![onprem(&f)], 1.0);
    let mut all = s.set_zone_health(home, Health::Unreachable, 2.0);
    all.extend(s.tick(10_000.0));
    for e in &all {
        if let Effect::Admitted { job: 1, zone, .. } = e {
            assert!(
                f.zones[*zone].tier.is_private(),
                "restricted data admitted to {}",
                f.zones[*zone].name
            );
        }
    }
    assert!(admitted(&all, 1).is_none());
}

#[test]
fn a_throttled_provider_sheds_batch_first_and_queues_the_rest() {
    let (f, rules) = example();
    let usz = zone(&f, "public-us");
    let mut s = Scheduler::with_rules(&f, &rules, SchedConfig::default());
    // One (undeclared) team throughout, so no quota reclaim interferes.
    s.submit(100, of("", "ops", 256), vec![us(&f, 30.0)], 0.0);
    s.submit(1, of("batch", "ops", 8), vec![us(&f, 30.0)], 1.0);
    s.submit(2, of("research", "ops", 8), vec![us(&f, 30.0)], 1.0);
    s.submit(
        3,
        of("batch", "ops", 8),
        vec![onprem(&f), us(&f, 30.0)],
        1.0,
    ); // has a private home
    let e = s.set_provider_throttled("gpuaas", true, 2.0);
    assert_eq!(refused_reason(&e, 1), Some(RefuseReason::ThrottledShed));
    assert_eq!(queued_reason(&e, 2), Some(QueueReason::Throttled));
    assert!(refused_reason(&e, 3).is_none());
    // Capacity frees but the provider is throttled: nothing is admitted there.
    let e = s.finish(100, 3.0);
    assert!(admitted(&e, 2).is_none(), "{e:?}");
    let e = s.submit(4, of("batch", "ops", 8), vec![us(&f, 30.0)], 4.0);
    assert!(refused_reason(&e, 4).is_some());
    let e = s.set_throttled(usz, false, 5.0);
    let e2 = s.set_throttled(zone(&f, "public-eu"), false, 5.0);
    assert!(
        admitted(&e, 2).is_some() || admitted(&e2, 2).is_some(),
        "{e:?}"
    );
}

// 7/8. Cancel and release.

#[test]
fn cancel_removes_from_the_queue_or_releases_a_running_job() {
    let (f, _) = example();
    let home = zone(&f, "hospital-onprem");
    let mut s = Scheduler::new(&f, SchedConfig::default());
    s.submit(1, shape(32), vec![onprem(&f)], 0.0);
    s.submit(2, shape(16), vec![onprem(&f)], 1.0);
    s.submit(3, shape(16), vec![onprem(&f)], 2.0);
    let e = s.cancel(2, 3.0);
    assert_eq!(e, vec![Effect::Cancelled { job: 2, at: 3.0 }]);
    assert_eq!(s.queue_depth(home), 1);
    let e = s.cancel(1, 4.0);
    assert!(
        matches!(
            e[0],
            Effect::Released {
                job: 1,
                gpus: 32,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(matches!(e[1], Effect::Cancelled { job: 1, .. }), "{e:?}");
    assert!(
        admitted(&e, 3).is_some(),
        "freed GPUs go to the queue: {e:?}"
    );
    assert!(s.cancel(99, 5.0).is_empty());
}

#[test]
fn public_capacity_is_released_the_moment_a_job_ends_or_is_cancelled() {
    let (f, _) = example();
    let usz = zone(&f, "public-us");
    let mut s = Scheduler::new(&f, SchedConfig::default());
    s.submit(1, shape(64), vec![us(&f, 30.0)], 0.0);
    s.submit(2, shape(64), vec![us(&f, 30.0)], 0.0);
    assert_eq!(s.free_gpus(usz, 0), 128);
    let e = s.finish(1, 10.0);
    assert_eq!(
        e[0],
        Effect::Released {
            job: 1,
            zone: usz,
            pool: 0,
            gpus: 64,
            public: true,
            at: 10.0
        }
    );
    let e = s.cancel(2, 11.0);
    assert!(matches!(
        e[0],
        Effect::Released {
            job: 2,
            public: true,
            ..
        }
    ));
    assert_eq!(s.free_gpus(usz, 0), 256);
}

#[test]
fn restored_running_jobs_hold_their_gpus_without_effects() {
    let fleet = tidegate_model::load_fleet(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleet"),
    )
    .unwrap();
    let mut s = tidegate_sched::Scheduler::new(&fleet, tidegate_sched::SchedConfig::default());
    let (zone, pool) = (0, 0);
    let cap = fleet.zones[zone].pools[pool].gpus;
    let at = tidegate_sched::Candidate::new(zone, pool, false, 1.0);
    let shape = tidegate_sched::Shape {
        gpus: cap,
        expected_s: 3600.0,
        ..Default::default()
    };
    s.restore_running(7, shape.clone(), vec![at], at, 0.0);
    assert_eq!(s.running(), 1);
    // The pool is full: a new job for it queues instead of being admitted beside the restored one.
    let fx = s.submit(8, shape, vec![at], 1.0);
    assert!(
        matches!(fx.as_slice(), [tidegate_sched::Effect::Queued { .. }]),
        "{fx:?}"
    );
    // Finishing the restored job releases its GPUs and admits the waiting one.
    let fx = s.finish(7, 2.0);
    assert!(
        fx.iter()
            .any(|e| matches!(e, tidegate_sched::Effect::Admitted { job: 8, .. })),
        "{fx:?}"
    );
}
