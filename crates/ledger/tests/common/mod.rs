//! Shared helpers for the ledger integration tests: drafts, a ledger in a temp dir, file surgery.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};

use tidegate_ledger::ledger::{ledger_dir, read_log};
use tidegate_ledger::segment::{encode_record, RECORD_OVERHEAD, SEGMENT_HEADER};
use tidegate_ledger::{Action, Decision, Digest, EntryDraft, Ident, Ledger, LedgerOptions, Subject, SubjectKind};

pub fn id(s: &str) -> Ident {
    Ident::new(s).unwrap()
}

pub fn subject(kind: SubjectKind, s: &str) -> Subject {
    Subject::new(kind, s).unwrap()
}

/// A job.placed draft for job `job-{n}`.
pub fn placed(n: u64) -> EntryDraft {
    EntryDraft::new(
        id("scheduler"),
        Action::JobPlaced {
            decision: Decision::Allowed,
            zone: id("eu-private"),
            pool: id("a100"),
            reasons: vec![id("phi-stays-private")],
            policy_hash: Digest::of(b"policy v1"),
        },
        vec![subject(SubjectKind::Job, &format!("job-{n}"))],
    )
    .unwrap()
}

pub fn open(data: &Path) -> Ledger {
    Ledger::open(data, LedgerOptions::default()).unwrap()
}

/// A ledger with `n` entries, closed (so a final checkpoint covers them all).
pub fn filled(n: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let l = open(&data);
    for i in 0..n {
        l.append(placed(i), 1_700_000_000_000 + i).unwrap();
    }
    l.close().unwrap();
    (dir, data)
}

/// The only segment file of a small ledger.
pub fn segment_file(data: &Path) -> PathBuf {
    let log = read_log(&ledger_dir(data), false).unwrap();
    assert_eq!(log.segments.len(), 1);
    log.segments[0].0.clone()
}

/// Byte ranges of each record (whole record, header included) in a segment file.
pub fn record_ranges(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut pos = SEGMENT_HEADER;
    while pos < bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        out.push(pos..pos + RECORD_OVERHEAD + len);
        pos += RECORD_OVERHEAD + len;
    }
    out
}

/// Re-encode a record with a new index and payload (valid checksums), as a careful forger would.
pub fn forge_record(index: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_record(index, payload, &mut out);
    out
}
