//! PostgreSQL stopped under load (`pg_ctl stop -m immediate`, a crash) and started again: requests
//! fail fast with a clear "unavailable" error naming the URL, nothing acknowledged is lost or
//! half-written, and the same store serves again once the database is back, with no restart of
//! ours. Runs its own PostgreSQL instance (initdb into a temporary directory, a free port) so
//! stopping it disturbs no other test. Needs the PostgreSQL server binaries and root (to run them
//! as the `postgres` user); skips without them, except under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod pg;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tidegate_store::{
    JobFilter, JobId, NewJob, PageRequest, PgOptions, PgStore, Store, StoreError, Timestamp,
};

fn job(key: &str) -> NewJob {
    NewJob {
        id: JobId::generate().unwrap(),
        name: "restart".into(),
        team: "ops".into(),
        spec: json!({"key": key}),
        idempotency_key: Some(key.to_string()),
        reason: None,
        at: Timestamp::now(),
    }
}

fn all_jobs(s: &dyn Store) -> Vec<tidegate_store::JobRecord> {
    let mut out = Vec::new();
    let mut page = PageRequest::first(1000);
    loop {
        let p = s.list(&JobFilter::default(), page).unwrap();
        out.extend(p.jobs);
        match p.next {
            Some(n) => {
                page = PageRequest {
                    after: Some(n),
                    limit: 1000,
                }
            }
            None => return out,
        }
    }
}

#[test]
fn postgres_crash_under_load_fails_clearly_and_recovers() {
    if pg::url().is_none() {
        return; // the same switch as the other PostgreSQL tests
    }
    let Some(inst) = tidegate_testkit::PgInstance::start_private("restart") else {
        return;
    };
    let url = inst.url();
    let opts = PgOptions {
        connect_timeout: Duration::from_secs(2),
        ..PgOptions::default()
    };
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&url, opts).unwrap());

    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, JobId)>>> = Arc::default();
    let errors: Arc<Mutex<Vec<(Duration, StoreError)>>> = Arc::default();
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let (store, stop, acked, errors) = (
                Arc::clone(&store),
                Arc::clone(&stop),
                Arc::clone(&acked),
                Arc::clone(&errors),
            );
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{t}-{i}");
                    let started = Instant::now();
                    match store.submit(job(&key)) {
                        Ok(out) => {
                            acked.lock().unwrap().push((key, out.job.id));
                            i += 1;
                        }
                        Err(e) => {
                            errors.lock().unwrap().push((started.elapsed(), e));
                            // A client retries the same key after a pause.
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(500));
    assert!(inst.crash(), "pg_ctl stop failed");
    let down_at = Instant::now();
    // While it is down, a request fails quickly and says why and where.
    let err = store.submit(job("while-down")).unwrap_err();
    assert!(
        down_at.elapsed() < Duration::from_secs(10),
        "took {:?}",
        down_at.elapsed()
    );
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains(&url), "{err}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(inst.start(), "pg_ctl start failed");
    let up_at = Instant::now();
    // The same store object serves again.
    let recovered = loop {
        match store.submit(job("after-restart")) {
            Ok(out) => break out,
            Err(e) if up_at.elapsed() < Duration::from_secs(20) => {
                assert!(e.is_unavailable(), "{e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("not recovered 20 s after the restart: {e}"),
        }
    };
    eprintln!("served again {:?} after the restart", up_at.elapsed());
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }

    let errors = errors.lock().unwrap();
    assert!(!errors.is_empty(), "the load never saw the outage");
    for (took, e) in errors.iter() {
        assert!(e.is_unavailable(), "an error other than unavailable: {e}");
        assert!(
            *took < Duration::from_secs(10),
            "a request hung for {took:?}: {e}"
        );
    }
    let jobs = all_jobs(&*store);
    let acked = acked.lock().unwrap();
    assert!(acked.len() > 10, "too little load: {}", acked.len());
    for (key, id) in acked.iter() {
        let j = jobs
            .iter()
            .find(|j| j.idempotency_key.as_deref() == Some(key.as_str()));
        assert_eq!(
            j.map(|j| &j.id),
            Some(id),
            "acknowledged job for key {key} lost"
        );
    }
    for j in &jobs {
        assert_eq!(
            store.events(&j.id).unwrap().len(),
            1,
            "job {} is half-written",
            j.id
        );
    }
    assert!(jobs.iter().any(|j| j.id == recovered.job.id));
    eprintln!(
        "{} acknowledged submits kept; {} requests failed as unavailable during the outage",
        acked.len(),
        errors.len()
    );
    drop(store);
    drop(inst);
}
