//! The state test-suite against PostgreSQL (each test in its own schema), plus PostgreSQL-only
//! checks: a down database gives a clear error quickly. Needs `TIDEGATE_TEST_POSTGRES_URL`;
//! without it the tests skip, except under `CI=true`, where they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod suite;
mod pg;

use std::time::{Duration, Instant};

use tidegate_store::{PgOptions, PgStore, Store, StoreError};

struct PgFixture {
    url: String,
    schema: String,
}

impl PgFixture {
    fn connect(&self) -> PgStore {
        PgStore::connect(
            &self.url,
            PgOptions {
                schema: Some(self.schema.clone()),
                ..PgOptions::default()
            },
        )
        .unwrap()
    }
}

impl suite::Fixture for PgFixture {
    fn open(&self) -> Box<dyn Store> {
        Box::new(self.connect())
    }
    fn schema_version(&self) -> i64 {
        self.connect().schema_version().unwrap()
    }
}

impl Drop for PgFixture {
    fn drop(&mut self) {
        if let Ok(s) = PgStore::connect(
            &self.url,
            PgOptions {
                schema: Some(self.schema.clone()),
                ..PgOptions::default()
            },
        ) {
            let _ = s.drop_schema();
        }
    }
}

fn postgres(case: &str) -> Option<PgFixture> {
    let url = pg::url()?;
    Some(PgFixture {
        url,
        schema: pg::schema_name(case),
    })
}

state_suite!(postgres);

#[test]
fn unreachable_database_fails_fast_naming_the_url_without_password() {
    // Skips with the others: the point is the error's shape, measured beside a real database.
    if pg::url().is_none() {
        return;
    }
    // A port nothing listens on.
    let url = "postgres://tidegate:hunter2@127.0.0.1:9/tidegate";
    let started = Instant::now();
    let err = PgStore::connect(
        url,
        PgOptions {
            connect_timeout: Duration::from_secs(2),
            ..PgOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.is_unavailable(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("postgres://tidegate:***@127.0.0.1:9/tidegate") && !msg.contains("hunter2"),
        "{msg}"
    );
}

#[test]
fn bad_url_is_invalid_database() {
    let err = PgStore::connect("postgres://h:notaport/db", PgOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                field: "database",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn two_replicas_share_one_scheduler_lease() {
    let Some(f) = postgres("two_replicas") else {
        return;
    };
    // Two stores = two replicas, each with its own connections.
    let (r1, r2) = (f.connect(), f.connect());
    let ttl = Duration::from_secs(5);
    let t = |ms: i64| tidegate_store::Timestamp(1_700_000_000_000 + ms);
    let l1 = r1
        .try_acquire_lease("scheduler", "replica-1", ttl, t(0))
        .unwrap()
        .unwrap();
    assert!(r2
        .try_acquire_lease("scheduler", "replica-2", ttl, t(1_000))
        .unwrap()
        .is_none());
    let l1 = r1.renew_lease(&l1, ttl, t(4_000)).unwrap().unwrap();
    assert!(r2
        .try_acquire_lease("scheduler", "replica-2", ttl, t(8_999))
        .unwrap()
        .is_none());
    // replica-1 dies (stops renewing); replica-2 takes over once the lease expires.
    let l2 = r2
        .try_acquire_lease("scheduler", "replica-2", ttl, t(9_000))
        .unwrap()
        .unwrap();
    assert_eq!(l2.epoch, l1.epoch + 1);
    assert!(
        r1.renew_lease(&l1, ttl, t(9_001)).unwrap().is_none(),
        "the old leader must learn it lost the lease"
    );
    assert_eq!(r1.lease("scheduler").unwrap().unwrap().holder, "replica-2");
}

#[test]
fn connections_are_bounded_and_callers_wait_their_turn() {
    let Some(url) = pg::url() else { return };
    let schema = pg::schema_name("bounded");
    let s = std::sync::Arc::new(
        PgStore::connect(
            &url,
            PgOptions {
                schema: Some(schema),
                max_open: 2,
                ..PgOptions::default()
            },
        )
        .unwrap(),
    );
    std::thread::scope(|scope| {
        for t in 0..12 {
            let s = s.clone();
            scope.spawn(move || {
                for i in 0..10 {
                    let job = suite::new_job(&format!("b{t}-{i}"), "ops", None);
                    s.submit(job).unwrap();
                }
            });
        }
    });
    let page = s
        .list(
            &tidegate_store::JobFilter::default(),
            tidegate_store::PageRequest::first(500),
        )
        .unwrap();
    assert_eq!(page.jobs.len(), 120);
}

#[test]
fn a_full_disk_or_exhausted_server_is_unavailable_and_any_other_failure_is_not() {
    let Some(f) = postgres("error_mapping") else {
        return;
    };
    let store = f.connect();
    let mut raw = postgres::Client::connect(&f.url, postgres::NoTls).unwrap();
    // Every insert into the jobs table fails with the SQLSTATE under test, raised by the server
    // itself, as a full disk or an exhausted server would.
    let refuse_with = |raw: &mut postgres::Client, code: &str| {
        raw.batch_execute(&format!(
            "CREATE OR REPLACE FUNCTION {s}.refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused for the test' USING ERRCODE = '{code}'; END $$ LANGUAGE plpgsql;
             DROP TRIGGER IF EXISTS refuse ON {s}.jobs;
             CREATE TRIGGER refuse BEFORE INSERT ON {s}.jobs FOR EACH ROW EXECUTE FUNCTION {s}.refuse();",
            s = f.schema
        ))
        .unwrap();
    };
    // disk_full, insufficient_resources, out_of_memory, too_many_connections, io_error.
    for (i, code) in ["53100", "53000", "53200", "53300", "58030"]
        .iter()
        .enumerate()
    {
        refuse_with(&mut raw, code);
        let err = store
            .submit(suite::new_job(&format!("j{i}"), "vision", None))
            .unwrap_err();
        assert!(err.is_unavailable(), "SQLSTATE {code}: {err}");
    }
    // A check violation is not temporary: a fault, never `unavailable`.
    refuse_with(&mut raw, "23514");
    let err = store
        .submit(suite::new_job("j-check", "vision", None))
        .unwrap_err();
    assert!(!err.is_unavailable(), "{err}");
    assert!(matches!(err, StoreError::Database { .. }), "{err}");
    // And with the trigger gone, the store works again on the same connections.
    raw.batch_execute(&format!("DROP TRIGGER refuse ON {}.jobs", f.schema))
        .unwrap();
    store
        .submit(suite::new_job("j-after", "vision", None))
        .unwrap();
}
