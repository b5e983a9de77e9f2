//! Storage tests: durability across reopen, group commit under concurrency, and tamper detection
//! (byte flip, truncation, reordering, deletion, rewriting, wrong-key checkpoints) with exact indexes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::sync::Arc;

use common::*;
use tidegate_ledger::checkpoint::NoteSigner;
use tidegate_ledger::commit::CommitFault;
use tidegate_ledger::keys::load_verifier;
use tidegate_ledger::ledger::{checkpoint_path, key_path, ledger_dir, list_checkpoints, read_log};
use tidegate_ledger::merkle::{verify_consistency, verify_inclusion};
use tidegate_ledger::segment::DamageKind;
use tidegate_ledger::verify::{verify_ledger, VerifyFailure};
use tidegate_ledger::{Checkpoint, Ledger, LedgerOptions, OpenError, SignedNote};

fn verify(data: &std::path::Path) -> Result<tidegate_ledger::verify::VerifyReport, VerifyFailure> {
    let v = load_verifier(&key_path(data)).unwrap();
    verify_ledger(&ledger_dir(data), &v)
}

#[test]
fn appends_survive_reopen_and_prove_inclusion() {
    let (_d, data) = filled(100);
    let report = verify(&data).unwrap();
    assert_eq!(report.entries, 100);
    let latest = report.latest.unwrap();
    assert_eq!(latest.size, 100);
    let l = open(&data);
    assert_eq!(l.len(), 100);
    let tree = l.tree();
    for i in 0..100 {
        let proof = tree.inclusion_proof(i, 100).unwrap();
        verify_inclusion(&tree.leaf(i).unwrap(), i, 100, &proof, &latest.root).unwrap();
    }
    let r = l.append(placed(100), 5).unwrap();
    assert_eq!(r.index, 100);
}

#[test]
fn concurrent_appends_get_unique_contiguous_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let l = Arc::new(open(dir.path()));
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let l = Arc::clone(&l);
            std::thread::spawn(move || {
                (0..300u64)
                    .map(|i| l.append(placed(t * 1000 + i), i).unwrap().index)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..2400).collect::<Vec<_>>());
    // Group commit: concurrent appends share fsyncs.
    let (batches, entries) = l.commit_stats();
    assert_eq!(entries, 2400);
    assert!(
        batches < entries,
        "{batches} fsynced batches for {entries} entries: no grouping"
    );
    l.close().unwrap();
    drop(l);
    assert_eq!(verify(dir.path()).unwrap().entries, 2400);
}

#[test]
fn byte_flip_is_detected_with_exact_index() {
    for (k, offset_in_record) in [(0usize, 30usize), (17, 2), (33, 9), (49, 40)] {
        let (_d, data) = filled(50);
        let seg = segment_file(&data);
        let mut bytes = fs::read(&seg).unwrap();
        let r = record_ranges(&bytes)[k].clone();
        bytes[r.start + offset_in_record] ^= 0x20;
        fs::write(&seg, &bytes).unwrap();
        let err = verify(&data).unwrap_err();
        assert_eq!(err.index(), Some(k as u64), "{err}");
        assert!(
            err.to_string().contains(&format!("first bad index {k}")),
            "{err}"
        );
        match Ledger::open(&data, LedgerOptions::default()) {
            Err(OpenError::Damaged(d)) => assert_eq!(d.index, k as u64),
            other => panic!("open should refuse a damaged log, got {other:?}"),
        }
    }
}

#[test]
fn truncation_is_detected_with_exact_index() {
    for mid_record in [false, true] {
        let (_d, data) = filled(50);
        let seg = segment_file(&data);
        let bytes = fs::read(&seg).unwrap();
        let r = record_ranges(&bytes)[30].clone();
        let cut = if mid_record { r.start + 7 } else { r.start };
        fs::write(&seg, &bytes[..cut]).unwrap();
        let err = verify(&data).unwrap_err();
        assert!(
            matches!(
                err,
                VerifyFailure::Truncated {
                    index: 30,
                    size: 50,
                    ..
                }
            ),
            "{err}"
        );
        // Opening must not silently accept a log shorter than what was acknowledged.
        assert!(matches!(
            Ledger::open(&data, LedgerOptions::default()),
            Err(OpenError::Checkpoint(_))
        ));
    }
}

#[test]
fn reordered_entries_are_detected_with_exact_index() {
    let (_d, data) = filled(50);
    let seg = segment_file(&data);
    let bytes = fs::read(&seg).unwrap();
    let rs = record_ranges(&bytes);
    let mut out = bytes[..rs[10].start].to_vec();
    out.extend_from_slice(&bytes[rs[11].clone()]);
    out.extend_from_slice(&bytes[rs[10].clone()]);
    out.extend_from_slice(&bytes[rs[12].start..]);
    fs::write(&seg, &out).unwrap();
    match verify(&data).unwrap_err() {
        VerifyFailure::Damaged(d) => {
            assert_eq!(d.index, 10);
            assert_eq!(d.kind, DamageKind::IndexMismatch { found: 11 });
        }
        other => panic!("{other}"),
    }
}

#[test]
fn deleted_middle_entry_is_detected_with_exact_index() {
    let (_d, data) = filled(50);
    let seg = segment_file(&data);
    let bytes = fs::read(&seg).unwrap();
    let rs = record_ranges(&bytes);
    let mut out = bytes[..rs[20].start].to_vec();
    out.extend_from_slice(&bytes[rs[21].start..]);
    fs::write(&seg, &out).unwrap();
    let err = verify(&data).unwrap_err();
    assert_eq!(err.index(), Some(20), "{err}");
}

#[test]
fn entry_whose_seq_disagrees_with_its_position_is_named() {
    let (_d, data) = filled(10);
    let seg = segment_file(&data);
    let bytes = fs::read(&seg).unwrap();
    let rs = record_ranges(&bytes);
    // A valid record at position 4 whose entry claims seq 5 (checksums recomputed).
    let entry = placed(4).into_entry(5, 1);
    let mut out = bytes[..rs[4].start].to_vec();
    out.extend_from_slice(&forge_record(4, &entry.encode().unwrap()));
    out.extend_from_slice(&bytes[rs[5].start..]);
    fs::write(&seg, &out).unwrap();
    let err = verify(&data).unwrap_err();
    assert!(
        matches!(err, VerifyFailure::BadEntry { index: 4, .. }),
        "{err}"
    );
}

#[test]
fn rewritten_history_with_valid_checksums_is_caught_by_signed_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let l = open(data);
    for i in 0..20 {
        l.append(placed(i), i).unwrap();
    }
    l.publish_checkpoint().unwrap();
    for i in 20..50 {
        l.append(placed(i), i).unwrap();
    }
    l.close().unwrap();
    drop(l);
    let seg = segment_file(data);
    let bytes = fs::read(&seg).unwrap();
    let rs = record_ranges(&bytes);
    // Replace entry 30 by a different, well-formed entry with the right seq and checksums,
    // keeping every commit record in place.
    let forged = placed(777).into_entry(30, 30);
    let mut out = bytes[..rs[30].start].to_vec();
    out.extend_from_slice(&forge_record(30, &forged.encode().unwrap()));
    out.extend_from_slice(&bytes[rs[30].end..]);
    fs::write(&seg, &out).unwrap();
    let err = verify(data).unwrap_err();
    // The commit that sealed entry 30 names it exactly.
    assert!(
        matches!(
            err,
            VerifyFailure::Commit(CommitFault::EntryDiffers { index: 30, .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("first bad index 30"), "{err}");
    // Nothing is signed over it: the ledger refuses to open for writing.
    match Ledger::open(data, LedgerOptions::default()) {
        Err(OpenError::Unsealed(e)) => assert_eq!(e.index(), Some(30), "{e}"),
        other => panic!("open must refuse a rewritten log, got {other:?}"),
    }
    // Removing the checkpoint files changes nothing: the commits are in the log itself.
    for (p, _) in list_checkpoints(&ledger_dir(data)).unwrap() {
        fs::remove_file(p).unwrap();
    }
    assert_eq!(verify(data).unwrap_err().index(), Some(30));
    assert!(Ledger::open(data, LedgerOptions::default()).is_err());
}

#[test]
fn old_checkpoint_detects_rewritten_history_through_consistency_proof() {
    let (_d, data) = filled(40);
    let old_text = fs::read_to_string(checkpoint_path(&ledger_dir(&data), 40)).unwrap();
    let old = SignedNote::parse(&old_text).unwrap().checkpoint().unwrap();
    let l = open(&data);
    for i in 40..90 {
        l.append(placed(i), i).unwrap();
    }
    let tree = l.tree();
    let proof = tree.consistency_proof(40, 90).unwrap();
    verify_consistency(40, 90, &old.root, &tree.root(), &proof).unwrap();
    l.close().unwrap();
    drop(l);
    // An operator rewrites entry 7 and re-signs fresh checkpoints with the ledger key.
    let seg = segment_file(&data);
    let bytes = fs::read(&seg).unwrap();
    let rs = record_ranges(&bytes);
    let mut out = bytes[..rs[7].start].to_vec();
    out.extend_from_slice(&forge_record(
        7,
        &placed(555).into_entry(7, 7).encode().unwrap(),
    ));
    out.extend_from_slice(&bytes[rs[8].start..]);
    fs::write(&seg, &out).unwrap();
    out.extend_from_slice(&bytes[rs[7].end..]);
    fs::write(&seg, &out).unwrap();
    for (p, _) in list_checkpoints(&ledger_dir(&data)).unwrap() {
        fs::remove_file(p).unwrap();
    }
    // The log's own commits catch the rewrite at its exact index.
    assert_eq!(verify(&data).unwrap_err().index(), Some(7));
    assert!(Ledger::open(&data, LedgerOptions::default()).is_err());
    // Someone holding the ledger key re-seals the whole rewritten history from scratch: only a
    // checkpoint kept outside the data dir can tell, through a consistency proof.
    fs::remove_dir_all(ledger_dir(&data)).unwrap();
    let l = open(&data);
    for i in 0..90u64 {
        let draft = if i == 7 { placed(555) } else { placed(i) };
        assert_eq!(l.append(draft, i).unwrap().index, i);
    }
    assert_eq!(l.len(), 90);
    let tree = l.tree();
    let proof = tree.consistency_proof(40, 90).unwrap();
    assert!(verify_consistency(40, 90, &old.root, &tree.root(), &proof).is_err());
}

#[test]
fn torn_tail_is_cut_back_to_the_last_whole_entry() {
    let (_d, data) = filled(12);
    let seg = segment_file(&data);
    let whole = fs::read(&seg).unwrap();
    // A crash in the middle of writing entry 12: half a record at the end.
    let extra = forge_record(12, &placed(12).into_entry(12, 12).encode().unwrap());
    let mut torn = whole.clone();
    torn.extend_from_slice(&extra[..extra.len() / 2]);
    fs::write(&seg, &torn).unwrap();
    let report = verify(&data).unwrap();
    assert_eq!(report.entries, 12);
    assert!(report.torn_tail.is_some());
    let l = open(&data);
    assert_eq!(l.len(), 12);
    assert_eq!(
        fs::read(&seg).unwrap(),
        whole,
        "cut back exactly to the last whole entry"
    );
    assert_eq!(l.append(placed(12), 12).unwrap().index, 12);
    l.close().unwrap();
    drop(l);
    let report = verify(&data).unwrap();
    assert_eq!((report.entries, report.torn_tail), (13, None));
}

#[test]
fn checkpoint_signed_by_the_wrong_key_is_rejected() {
    let (_d, data) = filled(10);
    let ldir = ledger_dir(&data);
    let real = load_verifier(&key_path(&data)).unwrap();
    let text = fs::read_to_string(checkpoint_path(&ldir, 10)).unwrap();
    let cp = SignedNote::parse(&text).unwrap().checkpoint().unwrap();
    // Same name, same body, another key.
    let impostor = NoteSigner::from_seed(&real.name, &[42; 32]).unwrap();
    let forged = impostor.sign_checkpoint(&Checkpoint { ..cp });
    fs::write(checkpoint_path(&ldir, 10), forged.to_text()).unwrap();
    let err = verify(&data).unwrap_err();
    assert!(matches!(err, VerifyFailure::Checkpoint { .. }), "{err}");
    assert!(err.to_string().contains("no signature by key"), "{err}");
    assert!(matches!(
        Ledger::open(&data, LedgerOptions::default()),
        Err(OpenError::Checkpoint(_))
    ));
    // And the genuine checkpoint does not verify under the impostor's key.
    fs::write(checkpoint_path(&ldir, 10), &text).unwrap();
    assert!(verify_ledger(&ldir, &impostor.verifier()).is_err());
    assert!(verify(&data).is_ok());
}

#[test]
fn segments_rotate_and_a_deleted_middle_segment_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let opts = LedgerOptions {
        segment_bytes: 4096,
        ..LedgerOptions::default()
    };
    let l = Ledger::open(data, opts.clone()).unwrap();
    for i in 0..200 {
        l.append(placed(i), i).unwrap();
    }
    l.close().unwrap();
    drop(l);
    let log = read_log(&ledger_dir(data), false).unwrap();
    assert!(log.segments.len() > 3, "{}", log.segments.len());
    assert_eq!(verify(data).unwrap().entries, 200);
    let l = Ledger::open(data, opts).unwrap();
    assert_eq!(l.len(), 200);
    l.close().unwrap();
    drop(l);
    let (victim, first, _) = log.segments[2].clone();
    fs::remove_file(victim).unwrap();
    let err = verify(data).unwrap_err();
    assert_eq!(err.index(), Some(first), "{err}");
}

#[test]
fn a_second_writer_is_refused_while_the_ledger_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    assert!(matches!(
        Ledger::open(dir.path(), LedgerOptions::default()),
        Err(OpenError::Locked(_))
    ));
    l.close().unwrap();
    drop(l);
    let again = open(dir.path());
    assert_eq!(again.len(), 0);
}
