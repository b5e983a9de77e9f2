//! Durable submits per second on SQLite (and PostgreSQL with `--postgres URL`) with 1, 4 and 16
//! writers, printed as JSON lines: `cargo run --release -p tidegate-store --example bench_store`.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use tidegate_store::{bench, PgOptions, PgStore, SqliteOptions, SqliteStore, Store};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let per_thread: usize = args
        .iter()
        .position(|a| a == "--per-thread")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let pg = args
        .iter()
        .position(|a| a == "--postgres")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: no temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let store: Box<dyn Store> = match &pg {
        Some(url) => match PgStore::connect(
            url,
            PgOptions {
                schema: Some(format!("bench_{}", std::process::id())),
                ..PgOptions::default()
            },
        ) {
            Ok(s) => Box::new(s),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => match SqliteStore::open(dir.path(), SqliteOptions::default()) {
            Ok(s) => Box::new(s),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    for threads in [1, 4, 16] {
        match bench::submits(&*store, threads, per_thread, &format!("w{threads}")) {
            Ok(r) => println!("{}", serde_json::to_string(&r).unwrap_or_default()),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
