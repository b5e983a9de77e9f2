//! Trace replay on the real Philly trace, and trace rows that do not parse.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use tidegate_model::{load_fleet, Fleet};
use tidegate_placement::PlacementEngine;
use tidegate_policy::PolicyEngine;
use tidegate_sched::SchedConfig;
use tidegate_sim::{read_philly, replay, scale_to_gpus, TraceError};

fn example() -> Fleet {
    load_fleet(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleet")).unwrap()
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
