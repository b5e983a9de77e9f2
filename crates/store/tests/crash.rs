//! Durability under `kill -9`: a child process submits jobs with idempotency keys from several
//! threads (and queues each one), printing every acknowledged submit and transition; the parent
//! kills it with SIGKILL mid-stream, reopens the store, and checks that every acknowledged job
//! exists exactly once, every acknowledged transition is there, and nothing is half-written (every
//! job row has its `submitted` event, event numbers have no gaps, every key maps to one job).
//! Runs on SQLite always and on PostgreSQL when `TIDEGATE_TEST_POSTGRES_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod pg;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::Arc;

use serde_json::json;
use tidegate_store::{
    JobFilter, JobId, JobState, NewJob, PageRequest, PgOptions, PgStore, SqliteOptions,
    SqliteStore, Store, Timestamp, Transition,
};

const CHILD_ENV: &str = "TIDEGATE_STORE_CRASH_CHILD";
const THREADS: u64 = 8;

/// Where the child's store is: `sqlite:<dir>` or `postgres:<schema>:<url>`.
fn open(target: &str) -> Box<dyn Store> {
    if let Some(dir) = target.strip_prefix("sqlite:") {
        return Box::new(
            SqliteStore::open(std::path::Path::new(dir), SqliteOptions::default()).unwrap(),
        );
    }
    let rest = target.strip_prefix("postgres:").unwrap();
    let (schema, url) = rest.split_once(':').unwrap();
    Box::new(
        PgStore::connect(
            url,
            PgOptions {
                schema: Some(schema.to_string()),
                ..PgOptions::default()
            },
        )
        .unwrap(),
    )
}

fn request(id: JobId, round: u32, key: &str) -> NewJob {
    NewJob {
        id,
        name: format!("crash-{key}"),
        team: "durability".into(),
        spec: json!({"name": format!("crash-{key}"), "round": round, "resources": {"gpus": 1}}),
        idempotency_key: Some(key.to_string()),
        reason: None,
        at: Timestamp::now(),
    }
}

/// Child mode: only does something when started by the tests below.
#[test]
fn crash_child() {
    let Ok(target) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: u32 = std::env::var("TIDEGATE_STORE_CRASH_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let store: Arc<dyn Store> = Arc::from(open(&target));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0u64.. {
                    let key = format!("r{round}-t{t}-{i}");
                    let out = store
                        .submit(request(JobId::generate().unwrap(), round, &key))
                        .unwrap();
                    {
                        let mut o = std::io::stdout().lock();
                        writeln!(o, "ACK {key} {} END", out.job.id).unwrap();
                        o.flush().unwrap();
                    }
                    if i % 3 == 0 {
                        // A client retry: same key, same body, new id → the same job.
                        let again = store
                            .submit(request(JobId::generate().unwrap(), round, &key))
                            .unwrap();
                        assert!(again.replayed && again.job.id == out.job.id);
                    }
                    let q = store
                        .transition(
                            &out.job.id,
                            Transition::to(JobState::Queued, 1, Timestamp::now()).because("queued"),
                        )
                        .unwrap();
                    let mut o = std::io::stdout().lock();
                    writeln!(o, "QUEUED {} {} END", q.id, q.version).unwrap();
                    o.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

#[derive(Default)]
struct Acks {
    submitted: BTreeMap<String, JobId>,
    queued: BTreeSet<JobId>,
}

/// Runs the child until it has acknowledged `kill_after` submits, kills it with SIGKILL, and
/// returns everything it acknowledged (complete lines only).
fn run_and_kill(target: &str, round: u32, kill_after: usize, acks: &mut Acks) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, target)
        .env("TIDEGATE_STORE_CRASH_ROUND", round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut this_round = 0usize;
    let mut killed = false;
    while let Some(Ok(line)) = lines.next() {
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["ACK", key, id, "END"] => {
                let prev = acks
                    .submitted
                    .insert((*key).to_string(), JobId::new(*id).unwrap());
                assert!(prev.is_none(), "key {key} acknowledged twice");
                this_round += 1;
            }
            ["QUEUED", id, "2", "END"] => {
                acks.queued.insert(JobId::new(*id).unwrap());
            }
            _ => {} // test-harness chatter, or a line cut by the kill
        }
        if !killed && this_round >= kill_after {
            child.kill().unwrap(); // SIGKILL
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(
        killed,
        "the child stopped by itself after {this_round} acknowledgements: {status:?}"
    );
}

fn check(store: &dyn Store, acks: &Acks) {
    // Every job in the store, by key.
    let mut by_key: BTreeMap<String, JobId> = BTreeMap::new();
    let mut page = PageRequest::first(1000);
    let mut total = 0usize;
    loop {
        let p = store.list(&JobFilter::default(), page).unwrap();
        for job in &p.jobs {
            total += 1;
            let key = job
                .idempotency_key
                .clone()
                .expect("every crash job has a key");
            assert!(
                by_key.insert(key.clone(), job.id.clone()).is_none(),
                "two jobs for key {key}"
            );
            let events = store.events(&job.id).unwrap();
            assert!(
                !events.is_empty(),
                "job {} has no events: half-written",
                job.id
            );
            assert_eq!(events[0].kind, "submitted", "job {}", job.id);
            let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
            assert_eq!(
                seqs,
                (1..=events.len() as u64).collect::<Vec<_>>(),
                "job {} event numbers",
                job.id
            );
            let last = events.last().unwrap();
            assert_eq!(
                last.to_state,
                Some(job.state),
                "job {}: state and last event disagree",
                job.id
            );
            assert_eq!(
                job.version,
                events.len() as u64,
                "job {}: version and events disagree",
                job.id
            );
        }
        match p.next {
            Some(n) => {
                page = PageRequest {
                    after: Some(n),
                    limit: 1000,
                }
            }
            None => break,
        }
    }
    assert!(
        total >= acks.submitted.len(),
        "{total} jobs stored, {} acknowledged",
        acks.submitted.len()
    );
    for (key, id) in &acks.submitted {
        assert_eq!(
            by_key.get(key),
            Some(id),
            "acknowledged job {id} (key {key}) lost or changed"
        );
    }
    for id in &acks.queued {
        let job = store.get(id).unwrap().unwrap();
        assert_eq!(
            job.state,
            JobState::Queued,
            "acknowledged transition of {id} lost"
        );
    }
    // The keys still work after the crash: a retry returns the acknowledged job.
    for (key, id) in acks.submitted.iter().take(50) {
        let round: u32 = key[1..key.find('-').unwrap()].parse().unwrap();
        let again = store
            .submit(request(JobId::generate().unwrap(), round, key))
            .unwrap();
        assert!(again.replayed);
        assert_eq!(&again.job.id, id);
    }
}

fn kill_rounds(target: &str) {
    let mut acks = Acks::default();
    for round in 0..3 {
        run_and_kill(target, round, 150, &mut acks);
        check(&*open(target), &acks);
    }
    assert!(acks.submitted.len() >= 450);
    eprintln!(
        "{} acknowledged submits, {} acknowledged transitions survived 3 kills",
        acks.submitted.len(),
        acks.queued.len()
    );
}

#[test]
fn sqlite_kill_9_loses_no_acknowledged_submit() {
    let dir = tempfile::tempdir().unwrap();
    kill_rounds(&format!("sqlite:{}", dir.path().display()));
}

#[test]
fn postgres_kill_9_loses_no_acknowledged_submit() {
    let Some(url) = pg::url() else { return };
    let schema = pg::schema_name("crash");
    kill_rounds(&format!("postgres:{schema}:{url}"));
    let s = PgStore::connect(
        &url,
        PgOptions {
            schema: Some(schema),
            ..PgOptions::default()
        },
    )
    .unwrap();
    s.drop_schema().unwrap();
}
