//! Finding the test PostgreSQL server: `TIDEGATE_TEST_POSTGRES_URL`, required under `CI=true`.
#![allow(clippy::panic, dead_code)]

/// The server's URL, or `None` (after saying how to run these tests) when none is configured.
pub fn url() -> Option<String> {
    tidegate_testkit::postgres_url()
}

/// A schema name unique to this test and process.
pub fn schema_name(case: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let short: String = case.chars().take(36).collect();
    format!("t_{short}_{}_{nanos}", std::process::id())
}
