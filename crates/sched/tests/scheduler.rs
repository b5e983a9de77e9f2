//! Scheduler core behaviour (admission, queueing, burst under pressure, release) and trace replay
//! on the real Philly trace.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use tidegate_model::{load_fleet, Fleet};
use tidegate_placement::PlacementEngine;
use tidegate_policy::PolicyEngine;
use tidegate_sched::sim::{read_philly, replay, scale_to_gpus, TraceError};
use tidegate_sched::{Candidate, Effect, SchedConfig, Scheduler, Shape};

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
        } => assert!(reason.contains("queue depth")),
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
            assert!(reason.contains("500") && reason.contains("256"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let e = s.submit(10, shape(1), vec![], 0.0);
    assert!(matches!(e[0], Effect::Refused { .. }));
}

fn philly() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/traces/philly.csv")
}

#[test]
fn malformed_trace_rows_name_their_line() {
    let dir = std::env::temp_dir().join(format!("tidegate-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("t.csv");
    std::fs::write(&p, "timestamp,duration,num_gpus,gpu_time,cluster\n2017-10-09 07:01:55,66.0,1,66.0,a\n2017-10-09 07:01:55,abc,1,66.0,a\n").unwrap();
    match read_philly(&p) {
        Err(TraceError::Row { line, field, .. }) => {
            assert_eq!(line, 3);
            assert_eq!(field, "duration");
        }
        other => panic!("expected a row error, got {other:?}"),
    }
    std::fs::write(
        &p,
        "timestamp,duration,num_gpus,gpu_time,cluster\n2017-13-09 07:01:55,66.0,1,66.0,a\n",
    )
    .unwrap();
    assert!(matches!(
        read_philly(&p),
        Err(TraceError::Row { line: 2, .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn philly_replay_accounts_for_every_job_and_hybrid_waits_less() {
    let path = philly();
    if !path.exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the shared Philly trace is missing in CI: {}",
            path.display()
        );
        eprintln!(
            "skipping: {} not found (shared data sits beside the clone)",
            path.display()
        );
        return;
    }
    let trace = read_philly(&path).unwrap();
    assert_eq!(trace.len(), 82_247);
    let fleet = scale_to_gpus(&example(), 2500);
    let run = |allow_public| {
        let mut eng = PlacementEngine::new(&fleet, PolicyEngine::load(&fleet).unwrap());
        replay(
            &fleet,
            &mut eng,
            &trace,
            SchedConfig {
                allow_public,
                ..SchedConfig::default()
            },
            42,
            |_, _| {},
        )
    };
    let hybrid = run(true);
    assert_eq!(hybrid.jobs_completed + hybrid.refused, trace.len());
    assert!(hybrid.bursts > 0 && hybrid.public_cost > 0.0);
    let again = run(true);
    assert_eq!(hybrid, again, "the replay is deterministic");
    let private = run(false);
    assert_eq!(private.bursts, 0);
    assert_eq!(private.public_cost, 0.0);
    assert!(hybrid.mean_wait_s < private.mean_wait_s);
    // Public zones only ever ran jobs that policy allows there: in private-only mode they ran none.
    for z in private.zones.iter().filter(|z| z.tier == "public") {
        assert_eq!(z.jobs, 0);
    }
}
