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
        PgStore::connect(&self.url, PgOptions { schema: Some(self.schema.clone()), ..PgOptions::default() }).unwrap()
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
        if let Ok(s) = PgStore::connect(&self.url, PgOptions { schema: Some(self.schema.clone()), ..PgOptions::default() }) {
            let _ = s.drop_schema();
        }
    }
}

fn postgres(case: &str) -> Option<PgFixture> {
    let url = pg::url()?;
    Some(PgFixture { url, schema: pg::schema_name(case) })
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
    let err = PgStore::connect(url, PgOptions { connect_timeout: Duration::from_secs(2), ..PgOptions::default() }).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(err.is_unavailable(), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("postgres://tidegate:***@127.0.0.1:9/tidegate") && !msg.contains("hunter2"), "{msg}");
}

#[test]
fn bad_url_is_invalid_database() {
    let err = PgStore::connect("postgres://h:notaport/db", PgOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Invalid { field: "database", .. }), "{err}");
}
