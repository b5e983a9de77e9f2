//! The ledger in PostgreSQL: appends and proofs, tampering named by index, one writer, signed
//! checkpoints, and nothing acknowledged lost when a transaction dies. Runs against
//! `TIDEGATE_TEST_POSTGRES_URL` (required under CI, skipped elsewhere), one schema per test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::placed;
use tidegate_ledger::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use tidegate_ledger::pg::{PgLedger, PgLedgerOptions, PgLog};
use tidegate_ledger::verify::{Depth, VerifyFailure};
use tidegate_ledger::{AppendError, NoteSigner, OpenError};

fn schema_name(case: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("tl_{case}_{}_{nanos}", std::process::id())
}

fn signer() -> NoteSigner {
    NoteSigner::from_seed("tidegate-ledger-test", &[7; 32]).unwrap()
}

fn opts(schema: &str) -> PgLedgerOptions {
    PgLedgerOptions {
        schema: Some(schema.to_owned()),
        checkpoint_every: None,
        ..PgLedgerOptions::default()
    }
}

fn sql(url: &str, schema: &str, statement: &str) -> u64 {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    c.batch_execute(&format!("SET search_path TO {schema}"))
        .unwrap();
    c.execute(statement, &[]).unwrap()
}

/// A ledger with `n` entries and a checkpoint at every size in `checkpoints` and at `n`.
fn filled(url: &str, schema: &str, n: u64, checkpoints: &[u64]) {
    let l = PgLedger::open(url, signer(), opts(schema)).unwrap();
    for i in 0..n {
        if checkpoints.contains(&i) {
            l.publish_checkpoint().unwrap();
        }
        assert_eq!(l.append(placed(i), 1_700_000_000_000 + i).unwrap().index, i);
    }
    l.close().unwrap();
}

#[test]
fn pg_append_and_proofs_round_trip() {
    let Some(url) = tidegate_testkit::postgres_url() else {
        return;
    };
    let schema = schema_name("roundtrip");
    filled(&url, &schema, 50, &[20]);
    let mut log = PgLog::connect(&url, &opts(&schema)).unwrap();
    let report = log.verify(&signer().verifier(), Depth::Full).unwrap();
    // Every batch (here: every append) commits with its own signed checkpoint.
    assert_eq!((report.entries, report.checkpoints), (50, 50));
    let contents = log.read().unwrap();
    let latest = report.latest.unwrap();
    assert_eq!((latest.size, latest.root), (50, contents.tree.root()));
    // The stored bytes are the canonical entries the file ledger would hold.
    let direct = placed(7).into_entry(7, 1_700_000_000_007).encode().unwrap();
    assert_eq!(contents.entries[7], direct);
    let proof = contents.tree.inclusion_proof(7, 50).unwrap();
    verify_inclusion(&leaf_hash(&direct), 7, 50, &proof, &latest.root).unwrap();
    let cps = log.checkpoints().unwrap();
    assert_eq!(
        cps.iter().map(|c| c.0).collect::<Vec<_>>(),
        (1..=50).collect::<Vec<_>>()
    );
    let old_root = contents.tree.root_at(20).unwrap();
    let consistency = contents.tree.consistency_proof(20, 50).unwrap();
    verify_consistency(20, 50, &old_root, &latest.root, &consistency).unwrap();
    // Reopening continues the log; concurrent appends are grouped into few transactions.
    let l = std::sync::Arc::new(PgLedger::open(&url, signer(), opts(&schema)).unwrap());
    assert_eq!(l.len(), 50);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let l = std::sync::Arc::clone(&l);
            std::thread::spawn(move || {
                let pending: Vec<_> = (0..50)
                    .map(|i| l.submit(placed(1000 * t + i), 5).unwrap())
                    .collect();
                pending
                    .into_iter()
                    .map(|p| p.wait().unwrap().index)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut got: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (50..250).collect::<Vec<_>>());
    let (batches, entries) = l.commit_stats();
    assert_eq!(entries, 200);
    assert!(batches < 200, "{batches} transactions for 200 entries");
    l.close().unwrap();
    assert_eq!(
        log.verify(&signer().verifier(), Depth::Full)
            .unwrap()
            .entries,
        250
    );
}

#[test]
fn pg_tampered_row_is_named_by_index() {
    let Some(url) = tidegate_testkit::postgres_url() else {
        return;
    };
    let schema = schema_name("tamper");
    filled(&url, &schema, 40, &[]);
    let verifier = signer().verifier();
    // A plausible rewrite of one entry's bytes (still canonical, still an entry).
    let n = sql(
        &url,
        &schema,
        "UPDATE ledger_entries SET entry = convert_to(replace(convert_from(entry, 'UTF8'), 'job-12', 'job-99'), 'UTF8') WHERE idx = 12",
    );
    assert_eq!(n, 1);
    let err = PgLog::connect(&url, &opts(&schema))
        .unwrap()
        .verify(&verifier, Depth::Full)
        .unwrap_err();
    assert_eq!(err.index(), Some(12), "{err}");
    assert!(err.to_string().contains("first bad index 12"), "{err}");
    // Rewriting the recorded leaf too: the signed root still catches it.
    sql(
        &url,
        &schema,
        "UPDATE ledger_entries SET leaf = sha256('\\x00'::bytea || entry) WHERE idx = 12",
    );
    let err = PgLog::connect(&url, &opts(&schema))
        .unwrap()
        .verify(&verifier, Depth::Full)
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyFailure::Rewritten {
                from: 12,
                to: 13,
                ..
            }
        ),
        "{err}"
    );
    // Bytes that are not an entry at all, at a lower index.
    sql(&url, &schema, "UPDATE ledger_entries SET entry = '\\x7b7d'::bytea, leaf = sha256('\\x007b7d'::bytea) WHERE idx = 5");
    let err = PgLog::connect(&url, &opts(&schema))
        .unwrap()
        .verify(&verifier, Depth::Full)
        .unwrap_err();
    assert_eq!(err.index(), Some(5), "{err}");
    // A deleted row.
    sql(&url, &schema, "DELETE FROM ledger_entries WHERE idx = 3");
    let err = PgLog::connect(&url, &opts(&schema))
        .unwrap()
        .verify(&verifier, Depth::Integrity)
        .unwrap_err();
    assert_eq!(err.index(), Some(3), "{err}");
    // A damaged log is not opened for writing.
    assert!(matches!(
        PgLedger::open(&url, signer(), opts(&schema)),
        Err(OpenError::Database(_))
    ));
}

#[test]
fn pg_two_writers_cannot_fork_the_log() {
    let Some(url) = tidegate_testkit::postgres_url() else {
        return;
    };
    let schema = schema_name("writers");
    let a = PgLedger::open(&url, signer(), opts(&schema)).unwrap();
    a.append(placed(0), 1).unwrap();
    // A second writer is refused clearly.
    match PgLedger::open(&url, signer(), opts(&schema)) {
        Err(OpenError::DatabaseLocked(msg)) => assert!(msg.contains(&schema), "{msg}"),
        other => panic!("second writer: {other:?}"),
    }
    // ... or waits for the first to let go, then continues the same log.
    let waiting = {
        let (url, schema) = (url.clone(), schema.clone());
        std::thread::spawn(move || {
            let o = PgLedgerOptions {
                lock_wait: Duration::from_secs(20),
                ..opts(&schema)
            };
            let b = PgLedger::open(&url, signer(), o).unwrap();
            let r = b.append(placed(100), 2).unwrap();
            b.close().unwrap();
            r.index
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    for i in 1..10 {
        a.append(placed(i), 1).unwrap();
    }
    a.close().unwrap();
    drop(a);
    assert_eq!(waiting.join().unwrap(), 10);
    // A row slipped in behind the writer's back (a writer that bypassed the lock) is not
    // overwritten or interleaved: the writer refuses to append after it and stops.
    let c = PgLedger::open(&url, signer(), opts(&schema)).unwrap();
    let rogue = placed(666).into_entry(11, 3).encode().unwrap();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .batch_execute(&format!("SET search_path TO {schema}"))
        .unwrap();
    client
        .execute(
            "INSERT INTO ledger_entries (idx, entry, leaf) VALUES (11, $1, $2)",
            &[&rogue, &leaf_hash(&rogue).to_vec()],
        )
        .unwrap();
    let err = c.append(placed(11), 3).unwrap_err();
    assert!(
        matches!(&err, AppendError::Database(m) if m.contains("another writer")),
        "{err}"
    );
    assert!(matches!(
        c.append(placed(12), 3),
        Err(AppendError::Stopped(_))
    ));
    drop(c);
    client
        .execute("DELETE FROM ledger_entries WHERE idx = 11", &[])
        .unwrap();
    let report = PgLog::connect(&url, &opts(&schema))
        .unwrap()
        .verify(&signer().verifier(), Depth::Full)
        .unwrap();
    assert_eq!(report.entries, 11);
}

#[test]
fn pg_checkpoint_signed_by_the_wrong_key_is_refused() {
    let Some(url) = tidegate_testkit::postgres_url() else {
        return;
    };
    let schema = schema_name("wrongkey");
    filled(&url, &schema, 10, &[]);
    let real = signer();
    let impostor = NoteSigner::from_seed(real.name(), &[42; 32]).unwrap();
    // Opening with the wrong key: the newest stored checkpoint does not verify.
    assert!(matches!(
        PgLedger::open(&url, impostor.clone(), opts(&schema)),
        Err(OpenError::Checkpoint(_))
    ));
    // A note for the true root, signed by another key, slipped into the table.
    let mut log = PgLog::connect(&url, &opts(&schema)).unwrap();
    let tree = log.read().unwrap().tree;
    let cp = tidegate_ledger::Checkpoint {
        origin: real.name().to_owned(),
        size: 5,
        root: tree.root_at(5).unwrap(),
        batch: None,
        subjects: None,
    };
    let forged = impostor.sign_checkpoint(&cp).to_text();
    sql(
        &url,
        &schema,
        &format!(
            "UPDATE ledger_checkpoints SET note = '{}' WHERE size = 5",
            forged.replace('\'', "''")
        ),
    );
    let err = log.verify(&real.verifier(), Depth::Full).unwrap_err();
    assert!(
        matches!(&err, VerifyFailure::Checkpoint { file, .. } if file.contains("size 5")),
        "{err}"
    );
}

#[test]
fn pg_dead_transaction_loses_nothing_acknowledged() {
    let Some(url) = tidegate_testkit::postgres_url() else {
        return;
    };
    let schema = schema_name("crash");
    let l = PgLedger::open(&url, signer(), opts(&schema)).unwrap();
    let acked: Vec<u64> = (0..20)
        .map(|i| l.append(placed(i), 9).unwrap().index)
        .collect();
    assert_eq!(acked, (0..20).collect::<Vec<_>>());
    // The connection dies under the writer (server restart, network cut, failover).
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let pid = l.backend_pid();
    assert!(admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap()
        .get::<_, bool>(0));
    std::thread::sleep(Duration::from_millis(200));
    // The batch in flight is refused (fail closed), and so is everything after, until reopened.
    let pending: Vec<_> = (20..30).map(|i| l.submit(placed(i), 9)).collect();
    for p in pending {
        assert!(p
            .and_then(tidegate_ledger::ledger::PendingAppend::wait)
            .is_err());
    }
    assert!(l.stopped().is_some());
    assert!(matches!(
        l.append(placed(31), 9),
        Err(AppendError::Stopped(_))
    ));
    drop(l);
    // Every acknowledged entry is there, nothing half-written; the writer lock went with the
    // session, so a new writer opens and continues.
    let l = PgLedger::open(&url, signer(), opts(&schema)).unwrap();
    assert_eq!(l.len(), 20);
    assert_eq!(l.append(placed(20), 9).unwrap().index, 20);
    l.close().unwrap();
    let report = PgLog::connect(&url, &opts(&schema))
        .unwrap()
        .verify(&signer().verifier(), Depth::Full)
        .unwrap();
    assert_eq!(report.entries, 21);
}

#[test]
fn pg_unreachable_database_is_a_clear_error() {
    let o = PgLedgerOptions {
        connect_timeout: Duration::from_secs(2),
        ..PgLedgerOptions::default()
    };
    let err =
        PgLedger::open("postgres://tidegate:secret@127.0.0.1:1/none", signer(), o).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("cannot connect") && !msg.contains("secret"),
        "{msg}"
    );
}
