//! Crash test: a child process appends from several threads and reports each acknowledged entry
//! on stdout; the parent kills it with SIGKILL mid-stream, reopens the ledger and checks that
//! every acknowledged entry is present, at its index, with its content, and that the log verifies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::*;
use tidegate_ledger::keys::load_verifier;
use tidegate_ledger::ledger::{key_path, ledger_dir, read_log};
use tidegate_ledger::verify::verify_ledger;
use tidegate_ledger::{Entry, Ledger, LedgerOptions};

const CHILD_ENV: &str = "TIDEGATE_LEDGER_CRASH_CHILD";

/// Child mode: only does something when started by `kill_9_loses_no_acknowledged_entry`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let opts = LedgerOptions {
        checkpoint_every: Some(500),
        ..LedgerOptions::default()
    };
    let l = Arc::new(Ledger::open(Path::new(&dir), opts).unwrap());
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            let l = Arc::clone(&l);
            std::thread::spawn(move || {
                for i in 0u64.. {
                    let n = t * 1_000_000 + i;
                    let r = l.append(placed(n), n).unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {} job-{n}", r.index).unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

fn run_child_and_kill(dir: &Path, acks_before_kill: usize) -> Vec<(u64, String)> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut acks = Vec::new();
    while acks.len() < acks_before_kill {
        let Some(line) = lines.next() else { break };
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (idx, job) = rest.split_once(' ').unwrap();
            acks.push((idx.parse().unwrap(), job.to_owned()));
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Acknowledgements already in the pipe were acknowledged before the kill: they count too.
    for line in lines {
        let Ok(line) = line else { break };
        if let Some(rest) = line.strip_prefix("ACK ") {
            if let Some((idx, job)) = rest.split_once(' ') {
                if let Ok(idx) = idx.parse() {
                    acks.push((idx, job.to_owned()));
                }
            }
        }
    }
    acks
}

#[test]
fn kill_9_loses_no_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut total_acked = 0;
    for (round, kill_after) in [1500usize, 40, 4000].into_iter().enumerate() {
        let acks = run_child_and_kill(dir.path(), kill_after);
        assert!(
            acks.len() >= kill_after.min(1),
            "round {round}: child produced no acknowledgements"
        );
        // Reopen: torn tail (if any) is cut, every acknowledged entry must be there.
        let l = Ledger::open(dir.path(), LedgerOptions::default()).unwrap();
        let log = read_log(&ledger_dir(dir.path()), true).unwrap();
        assert!(log.damage.is_none());
        for (idx, job) in &acks {
            let bytes = log
                .entries
                .get(*idx as usize)
                .unwrap_or_else(|| panic!("round {round}: acknowledged entry {idx} lost"));
            let e = Entry::decode(bytes).unwrap();
            assert_eq!(e.seq, *idx);
            assert!(e.mentions(job), "round {round}: entry {idx} is not {job}");
        }
        total_acked += acks.len();
        l.close().unwrap();
        drop(l);
        let report = verify_ledger(
            &ledger_dir(dir.path()),
            &load_verifier(&key_path(dir.path())).unwrap(),
        )
        .unwrap();
        assert!(report.entries as usize >= total_acked);
    }
}
