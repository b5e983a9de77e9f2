//! The state test-suite against the SQLite backend, plus SQLite-only checks (WAL, synchronous).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod suite;

use tidegate_store::{SqliteOptions, SqliteStore, Store};

struct SqliteFixture {
    dir: tempfile::TempDir,
}

impl suite::Fixture for SqliteFixture {
    fn open(&self) -> Box<dyn Store> {
        Box::new(SqliteStore::open(self.dir.path(), SqliteOptions::default()).unwrap())
    }
    fn schema_version(&self) -> i64 {
        SqliteStore::open(self.dir.path(), SqliteOptions::default())
            .unwrap()
            .schema_version()
            .unwrap()
    }
}

fn sqlite(_case: &str) -> Option<SqliteFixture> {
    Some(SqliteFixture {
        dir: tempfile::tempdir().unwrap(),
    })
}

state_suite!(sqlite);

#[test]
fn database_is_in_wal_mode_with_full_sync() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    let c = rusqlite::Connection::open(s.path()).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(
        s.synchronous_level().unwrap(),
        2,
        "synchronous must be FULL"
    );
    assert!(s.describe().contains("state.db"));
}

#[test]
fn unusable_data_dir_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = SqliteStore::open(&file, SqliteOptions::default()).unwrap_err();
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

#[test]
fn open_picks_the_backend_from_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let s = tidegate_store::open(None, dir.path()).unwrap();
    assert!(s.describe().starts_with("sqlite"));
    let err = tidegate_store::open(Some("mysql://u:pw@h/db"), dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("database") && msg.contains("mysql://u:***@h/db") && !msg.contains("pw"),
        "{msg}"
    );
}
