//! Scheduler core behaviour: admission, queueing, burst under pressure, release.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use tidegate_model::{load_fleet, Fleet};
use tidegate_sched::{BurstReason, Candidate, Effect, RefuseReason, SchedConfig, Scheduler, Shape};

fn example() -> Fleet {
    load_fleet(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleet")).unwrap()
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

/// hospital-onprem/h100 (32 GPUs, private) and public-us/h100-od (256 GPUs, public).
fn cands(f: &Fleet, with_public: bool) -> Vec<Candidate> {
    let mut c = vec![Candidate::new(zone(f, "hospital-onprem"), 0, false, 10.0)];
    if with_public {
        c.push(Candidate::new(zone(f, "public-us"), 0, true, 30.0));
    }
    c
}

#[test]
fn admits_privately_then_queues_then_releases_in_order() {
    let f = example();
    let mut s = Scheduler::new(&f, SchedConfig::default());
    let e = s.submit(1, shape(32), cands(&f, false), 0.0);
    assert!(
        matches!(
            e[0],
            Effect::Admitted {
                job: 1,
                burst: false,
                ..
            }
        ),
        "{e:?}"
    );
    let e = s.submit(2, shape(8), cands(&f, false), 1.0);
    assert!(matches!(e[0], Effect::Queued { job: 2, .. }), "{e:?}");
    assert_eq!(s.queue_depth(zone(&f, "hospital-onprem")), 1);
    let e = s.finish(1, 10.0);
    assert!(
        matches!(
            e[0],
            Effect::Released {
                job: 1,
                gpus: 32,
                public: false,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(matches!(e[1], Effect::Admitted { job: 2, .. }), "{e:?}");
    assert_eq!(s.queue_depth(zone(&f, "hospital-onprem")), 0);
}

#[test]
fn bursts_only_under_pressure_and_only_where_allowed() {
    let f = example();
    let cfg = SchedConfig {
        burst_queue_depth: 2,
        ..SchedConfig::default()
    };
    let mut s = Scheduler::new(&f, cfg);
    s.submit(0, shape(32), cands(&f, true), 0.0); // fills the private pool
                                                  // Queue depth 0 and 1: no pressure yet, the jobs wait.
    for j in 1..=2 {
        let e = s.submit(j, shape(4), cands(&f, true), 1.0);
        assert!(matches!(e[0], Effect::Queued { .. }), "{e:?}");
    }
    // Depth 2 reached: the next burst-eligible job spills to public capacity, with the reason.
    let e = s.submit(3, shape(4), cands(&f, true), 2.0);
    match &e[0] {
        Effect::Admitted {
            job: 3,
            burst: true,
            reason,
            ..
        } => assert!(matches!(reason, Some(BurstReason::QueueDepth { .. }))),
        other => panic!("expected a burst, got {other:?}"),
    }
    // A job with no public option (e.g. PHI) waits, however deep the queue.
    let e = s.submit(4, shape(4), cands(&f, false), 3.0);
    assert!(matches!(e[0], Effect::Queued { .. }), "{e:?}");
    // Public capacity is released as soon as the job ends.
    let e = s.finish(3, 100.0);
    assert!(
        matches!(
            e[0],
            Effect::Released {
                job: 3,
                public: true,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn sla_pressure_bursts_and_private_only_never_does() {
    let f = example();
    let mut s = Scheduler::new(&f, SchedConfig::default());
    s.submit(0, shape(32), cands(&f, true), 0.0);
    let sla = Shape {
        max_wait_s: Some(600.0),
        ..shape(4)
    };
    let e = s.submit(1, sla.clone(), cands(&f, true), 1.0);
    // 32 GPU-hours queued ahead would not matter: the queue is empty, so it waits at first...
    assert!(
        matches!(e[0], Effect::Queued { .. })
            || matches!(e[0], Effect::Admitted { burst: true, .. })
    );
    // ...and once it has waited past its SLA, a tick bursts it.
    let e = s.tick(1000.0);
    assert!(
        e.iter().any(|e| matches!(
            e,
            Effect::Admitted {
                job: 1,
                burst: true,
                ..
            }
        )),
        "{e:?}"
    );

    let mut p = Scheduler::new(
        &f,
        SchedConfig {
            allow_public: false,
            ..SchedConfig::default()
        },
    );
    p.submit(0, shape(32), cands(&f, true), 0.0);
    let e = p.submit(1, sla, cands(&f, true), 1.0);
    assert!(matches!(e[0], Effect::Queued { .. }));
    assert!(p.tick(10_000.0).is_empty());
}

#[test]
fn a_job_too_big_for_every_allowed_pool_is_refused_with_the_reason() {
    let f = example();
    let mut s = Scheduler::new(&f, SchedConfig::default());
    let e = s.submit(9, shape(500), cands(&f, true), 0.0);
    match &e[0] {
        Effect::Refused { reason, .. } => {
            assert_eq!(
                *reason,
                RefuseReason::TooLarge {
                    gpus: 500,
                    largest: 256
                }
            );
            assert_eq!(
                reason.to_string(),
                "needs 500 GPUs; the largest allowed pool has 256"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let e = s.submit(10, shape(1), vec![], 0.0);
    assert!(matches!(e[0], Effect::Refused { .. }));
}
