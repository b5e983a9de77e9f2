//! Trace replay beyond Philly: Pollux workloads (format told by header, run times derived from
//! the measured application profiles beside them, checked here against the raw measurements)
//! and replays under the fleet's scheduling rules.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use tidegate_model::{load_fleet_with_scheduling, Fleet, Scheduling};
use tidegate_placement::PlacementEngine;
use tidegate_policy::PolicyEngine;
use tidegate_sched::SchedConfig;
use tidegate_sim::{
    read_philly, read_trace, replay_with, scale_scheduling, scale_to_gpus, TraceError,
    POLLUX_RUN_TIMES,
};

fn example() -> (Fleet, Scheduling) {
    load_fleet_with_scheduling(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleet"))
        .unwrap()
}

fn traces() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/traces")
}

fn present(p: &Path) -> bool {
    if p.exists() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "shared trace missing in CI: {}",
        p.display()
    );
    eprintln!(
        "skipping: {} not found (shared data sits beside the clone)",
        p.display()
    );
    false
}

/// The value of `column` in the row of `file` whose `key` columns equal `want`, read raw.
fn raw_value(file: &Path, key: &[(&str, &str)], column: &str) -> Option<f64> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |n: &str| header.iter().position(|h| *h == n).unwrap();
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|f| key.iter().all(|(k, v)| f[col(k)] == *v))
        .map(|f| f[col(column)].parse().unwrap())
}

#[test]
fn pollux_workloads_get_run_times_from_the_measured_profiles() {
    let p = traces().join("pollux-workload-1.csv");
    if !present(&p) {
        return;
    }
    let jobs = read_trace(&p).unwrap();
    assert_eq!(jobs.len(), 160);
    assert_eq!(
        jobs[0].submit_s, 0.0,
        "offsets start at the first submission"
    );
    assert!(jobs.windows(2).all(|w| w[0].submit_s <= w[1].submit_s));
    assert!(
        jobs.iter().all(|j| j.measured),
        "every run time is measured"
    );
    // The first row: cifar10-0 at 107 s on 6 replicas.
    assert_eq!((jobs[0].gpus, jobs[0].class), (6, Some("cifar10")));
    // An ncf job on 1 GPU at batch 32,768, both measured exactly: 10 epochs' iterations at that
    // batch size times the step time at that local batch on one GPU, read from the raw files.
    let prof = traces().join("pollux-profiles/ncf");
    let iterations = {
        let text = std::fs::read_to_string(prof.join("validation-32768.csv")).unwrap();
        let row = text.lines().nth(10).unwrap();
        row.split(',').nth(1).unwrap().parse::<f64>().unwrap()
    };
    let step = raw_value(
        &prof.join("placements.csv"),
        &[("placement", "1"), ("local_bsz", "32768")],
        "step_time",
    )
    .unwrap();
    let ncf = jobs
        .iter()
        .find(|j| j.class == Some("ncf") && j.gpus == 1)
        .unwrap();
    assert!(
        (ncf.duration_s - iterations * step).abs() < 1e-6,
        "ncf: {} s, measured {iterations} x {step}",
        ncf.duration_s
    );
    // The same application on other replicas and batch sizes runs for other times: no table.
    let cifar: std::collections::BTreeSet<u64> = jobs
        .iter()
        .filter(|j| j.class == Some("cifar10"))
        .map(|j| j.duration_s.round() as u64)
        .collect();
    assert!(cifar.len() >= 3, "cifar10 run times: {cifar:?}");
}

#[test]
fn pollux_workloads_without_profiles_fall_back_to_the_estimates() {
    let src = traces().join("pollux-workload-1.csv");
    if !present(&src) {
        return;
    }
    let dir = tempfile_dir();
    let p = dir.join("no-profiles-beside.csv");
    std::fs::copy(&src, &p).unwrap();
    let jobs = read_trace(&p).unwrap();
    for j in &jobs {
        let app = j.class.unwrap();
        let (_, run_s, _) = POLLUX_RUN_TIMES.iter().find(|a| a.0 == app).unwrap();
        assert!(!j.measured);
        assert_eq!(j.duration_s, *run_s);
    }
}

#[test]
fn pollux_rows_with_unknown_applications_name_their_line() {
    let dir = tempfile_dir();
    let p = dir.join("w.csv");
    std::fs::write(
        &p,
        "name,time,application,num_replicas,batch_size\na-0,1,cifar10,2,128\nb-1,2,gpt5,4,64\n",
    )
    .unwrap();
    match read_trace(&p) {
        Err(TraceError::Row {
            line: 3,
            field,
            message,
            ..
        }) => {
            assert_eq!(field, "application");
            assert!(
                message.contains("gpt5") && message.contains("imagenet"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    std::fs::write(
        &p,
        "name,time,application,num_replicas,batch_size\na-0,1,cifar10,0,128\n",
    )
    .unwrap();
    assert!(matches!(
        read_trace(&p),
        Err(TraceError::Row { line: 2, .. })
    ));
    // A Philly header goes to the Philly reader.
    std::fs::write(
        &p,
        "timestamp,duration,num_gpus,gpu_time,cluster\n2017-10-09 07:01:55,66.0,1,66.0,a\n",
    )
    .unwrap();
    assert_eq!(read_trace(&p).unwrap(), read_philly(&p).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("tidegate-pollux-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn pollux_replay_with_fleet_rules_accounts_for_every_job_per_class() {
    let (base, rules) = example();
    let fleet = scale_to_gpus(&base, 64);
    let rules = scale_scheduling(&base, &rules, 64);
    for n in 1..=8 {
        let p = traces().join(format!("pollux-workload-{n}.csv"));
        if !present(&p) {
            return;
        }
        let trace = read_trace(&p).unwrap();
        let run = || {
            let mut eng = PlacementEngine::new(&fleet, PolicyEngine::load(&fleet).unwrap());
            replay_with(
                &fleet,
                &rules,
                &mut eng,
                &trace,
                SchedConfig::default(),
                7,
                |_, _| {},
            )
        };
        let r = run();
        assert_eq!(
            r.jobs_completed + r.refused + r.still_queued,
            trace.len(),
            "workload {n}: {r:#?}"
        );
        assert_eq!(r, run(), "deterministic");
        let per_class: usize = r.classes.values().map(|c| c.jobs).sum();
        assert_eq!(per_class, trace.len());
        assert!(
            r.classes
                .keys()
                .all(|c| POLLUX_RUN_TIMES.iter().any(|a| a.0 == c)),
            "{:?}",
            r.classes.keys()
        );
        let bursts: usize = r.classes.values().map(|c| c.bursts).sum();
        assert_eq!(bursts, r.bursts);
    }
}

#[test]
fn philly_prefix_under_fleet_rules_is_deterministic_and_complete() {
    let p = traces().join("philly.csv");
    if !present(&p) {
        return;
    }
    let trace: Vec<_> = read_trace(&p).unwrap().into_iter().take(8000).collect();
    let (base, rules) = example();
    let fleet = scale_to_gpus(&base, 500);
    let rules = scale_scheduling(&base, &rules, 500);
    let run = || {
        let mut eng = PlacementEngine::new(&fleet, PolicyEngine::load(&fleet).unwrap());
        replay_with(
            &fleet,
            &rules,
            &mut eng,
            &trace,
            SchedConfig::default(),
            42,
            |_, _| {},
        )
    };
    let r = run();
    assert_eq!(
        r.jobs_completed + r.refused + r.still_queued,
        trace.len(),
        "{r:#?}"
    );
    // Jobs never finish in a queue without a recorded reason.
    assert_eq!(
        r.still_queued_reasons.values().sum::<usize>(),
        r.still_queued
    );
    assert_eq!(r, run());
    // Classes come from the fleet's job_classes.
    for c in r.classes.keys() {
        assert!(rules.class(c).is_some(), "{c}");
    }
}
