//! Finding the test PostgreSQL server: `TIDEGATE_TEST_POSTGRES_URL`, required under `CI=true`.
#![allow(clippy::panic, dead_code)]

/// The server's URL, or `None` (after saying how to run these tests) when none is configured.
pub fn url() -> Option<String> {
    match std::env::var("TIDEGATE_TEST_POSTGRES_URL") {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true but TIDEGATE_TEST_POSTGRES_URL is not set: scripts/test.sh starts PostgreSQL and sets it");
            }
            eprintln!(
                "skipping a PostgreSQL test: set TIDEGATE_TEST_POSTGRES_URL=postgres://... or run `TIDEGATE_SERVICES=1 scripts/test.sh`"
            );
            None
        }
    }
}

/// A schema name unique to this test and process.
pub fn schema_name(case: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let short: String = case.chars().take(36).collect();
    format!("t_{short}_{}_{nanos}", std::process::id())
}
