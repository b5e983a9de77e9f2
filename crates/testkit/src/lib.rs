//! Test support shared by the workspace's integration tests (a dev-dependency only): the shared
//! PostgreSQL test database, private PostgreSQL instances a test may crash and restart, and the
//! shared Synthea tables, Parquet copies of CSV tables ([`parquet`]), and random fleets, datasets
//! and jobs for property tests ([`fleets`]).
//!
//! Outside CI a missing service makes these return `None` after saying how to run the test; under
//! `CI=true` a missing service is a failure (`.ci/run` installs and starts them).

#![warn(missing_docs, unreachable_pub)]
#![allow(clippy::panic)]

pub mod fleets;
pub mod parquet;

use std::path::PathBuf;
use std::process::Command;

fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// The shared Synthea tables (`shared/data/synthea` beside the repository), if they are there;
/// under `CI=true` their absence is a failure.
pub fn synthea_dir() -> Option<PathBuf> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/synthea");
    if p.join("patients.csv").exists() {
        return Some(p);
    }
    if in_ci() {
        panic!(
            "CI=true but the shared Synthea tables are not at {}",
            p.display()
        );
    }
    eprintln!(
        "skipped: {} is not there (the shared data sits beside the repository)",
        p.display()
    );
    None
}

/// The shared test database's URL (`TIDEGATE_TEST_POSTGRES_URL`, set by `scripts/test.sh`).
pub fn postgres_url() -> Option<String> {
    match std::env::var("TIDEGATE_TEST_POSTGRES_URL") {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            if in_ci() {
                panic!("CI=true but TIDEGATE_TEST_POSTGRES_URL is not set: scripts/test.sh starts PostgreSQL and sets it");
            }
            eprintln!(
                "skipping a PostgreSQL test: set TIDEGATE_TEST_POSTGRES_URL=postgres://... or run `TIDEGATE_SERVICES=1 scripts/test.sh`"
            );
            None
        }
    }
}

fn pg_bin() -> Option<PathBuf> {
    if let Ok(b) = std::env::var("TIDEGATE_PG_BIN") {
        return Some(PathBuf::from(b));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop()
}

fn as_postgres(cmd: &str) -> bool {
    Command::new("su")
        .args(["postgres", "-c", cmd])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A PostgreSQL server of the test's own (initdb into a temporary directory, a free port), so
/// stopping or crashing it disturbs no other test. Stopped and removed on drop.
#[derive(Debug)]
pub struct PgInstance {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl PgInstance {
    /// Creates and starts one; `None` (after saying why) when the server binaries or root are
    /// missing outside CI.
    pub fn start_private(label: &str) -> Option<Self> {
        let setup = || -> Option<PgInstance> {
            let bin = pg_bin()?;
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .ok()?
                .local_addr()
                .ok()?
                .port();
            let dir = std::env::temp_dir()
                .join(format!("tidegate-pg-{label}-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).ok()?;
            let chown = Command::new("chown")
                .args(["postgres:postgres", &dir.display().to_string()])
                .status()
                .ok()?;
            if !chown.success() {
                return None;
            }
            let inst = PgInstance { bin, dir, port };
            let initdb = format!(
                "{} -D {} -A trust -U postgres >/dev/null",
                inst.bin.join("initdb").display(),
                inst.dir.display()
            );
            if !as_postgres(&initdb) {
                return None;
            }
            inst.start().then_some(inst)
        };
        match setup() {
            Some(i) => Some(i),
            None if in_ci() => {
                panic!("CI=true but a private PostgreSQL instance could not be set up (server binaries and root needed)")
            }
            None => {
                eprintln!("skipping: needs PostgreSQL server binaries (/usr/lib/postgresql/*/bin or TIDEGATE_PG_BIN) and root");
                None
            }
        }
    }

    fn pg_ctl(&self, args: &str) -> bool {
        as_postgres(&format!(
            "{} -D {} {args} >/dev/null",
            self.bin.join("pg_ctl").display(),
            self.dir.display()
        ))
    }

    /// Starts (or restarts) the server and waits until it accepts connections.
    pub fn start(&self) -> bool {
        let opts = format!(
            "-o '-p {} -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=200'",
            self.port
        );
        self.pg_ctl(&format!(
            "-l {}/log {opts} -w -t 30 start",
            self.dir.display()
        ))
    }

    /// Stops the server the hard way (`-m immediate`: a crash, recovery on next start).
    pub fn crash(&self) -> bool {
        self.pg_ctl("-m immediate -w stop")
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgInstance {
    fn drop(&mut self) {
        let _ = self.pg_ctl("-m immediate stop");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
