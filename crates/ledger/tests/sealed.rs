//! The ledger never signs tampered history: someone who can write the data directory (but does not
//! hold the ledger key) edits, appends, removes or zeroes records with valid checksums, and
//! deletes checkpoint files; every attempt is named at its exact index, no bundle or checkpoint is
//! produced over it, and nothing acknowledged is destroyed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;

use common::*;
use tidegate_ledger::commit::CommitFault;
use tidegate_ledger::evidence::{bundle_for, EvidenceError};
use tidegate_ledger::keys::load_verifier;
use tidegate_ledger::ledger::{key_path, ledger_dir, list_checkpoints};
use tidegate_ledger::verify::{verify_ledger, VerifyFailure};
use tidegate_ledger::{Ledger, LedgerOptions, OpenError, SubjectKind};

fn verify(data: &std::path::Path) -> Result<tidegate_ledger::verify::VerifyReport, VerifyFailure> {
    let v = load_verifier(&key_path(data)).unwrap();
    verify_ledger(&ledger_dir(data), &v)
}

fn checkpoint_files(data: &std::path::Path) -> Vec<u64> {
    list_checkpoints(&ledger_dir(data))
        .unwrap()
        .into_iter()
        .map(|c| c.1)
        .collect()
}

/// Replace entry `k`'s record by another well-formed entry with the same seq and recomputed
/// checksums, keeping every commit record where it was.
fn rewrite_entry(data: &std::path::Path, k: usize, job: u64) {
    let seg = segment_file(data);
    let bytes = fs::read(&seg).unwrap();
    let rs = record_ranges(&bytes);
    let mut out = bytes[..rs[k].start].to_vec();
    out.extend_from_slice(&forge_record(
        k as u64,
        &placed(job).into_entry(k as u64, 1).encode().unwrap(),
    ));
    out.extend_from_slice(&bytes[rs[k].end..]);
    fs::write(&seg, &out).unwrap();
}

#[test]
fn an_edited_entry_gets_no_bundle_and_no_new_checkpoint() {
    let (_d, data) = filled(36);
    let before = checkpoint_files(&data);
    rewrite_entry(&data, 31, 9999);
    let err = verify(&data).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyFailure::Commit(CommitFault::EntryDiffers { index: 31, .. })
        ),
        "{err}"
    );
    // Evidence is refused, naming the index; no checkpoint is signed on the way.
    let job = subject(SubjectKind::Job, "job-31");
    match bundle_for(&data, &job) {
        Err(EvidenceError::Unsealed(e)) => assert_eq!(e.index(), Some(31), "{e}"),
        other => panic!("a bundle over rewritten history: {other:?}"),
    }
    assert_eq!(checkpoint_files(&data), before, "a checkpoint was signed");
    // The writer refuses too, so no later append can be sealed over it.
    assert!(matches!(
        Ledger::open(&data, LedgerOptions::default()),
        Err(OpenError::Unsealed(_))
    ));
    assert_eq!(checkpoint_files(&data), before);
    // Deleting every checkpoint file changes nothing.
    for (p, _) in list_checkpoints(&ledger_dir(&data)).unwrap() {
        fs::remove_file(p).unwrap();
    }
    assert_eq!(verify(&data).unwrap_err().index(), Some(31));
    assert!(bundle_for(&data, &job).is_err());
}

#[test]
fn a_forged_append_is_never_vouched_for_and_is_set_aside_not_signed() {
    let (_d, data) = filled(20);
    let seg = segment_file(&data);
    let mut bytes = fs::read(&seg).unwrap();
    let sealed_len = bytes.len();
    // A CRC-valid, well-formed entry appended by someone without the ledger key.
    let forged = forge_record(20, &placed(4242).into_entry(20, 20).encode().unwrap());
    bytes.extend_from_slice(&forged);
    fs::write(&seg, &bytes).unwrap();
    let err = verify(&data).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyFailure::Unsealed {
                index: 20,
                count: 1
            }
        ),
        "{err}"
    );
    // A bundle leaves it out.
    let forged_job = subject(SubjectKind::Job, "job-4242");
    assert!(matches!(
        bundle_for(&data, &forged_job),
        Err(EvidenceError::Build(_))
    ));
    // Opening for writing sets it aside (kept for an auditor), and the next append is sealed
    // at index 20 instead.
    let l = open(&data);
    assert_eq!(l.len(), 20);
    assert_eq!(fs::read(&seg).unwrap().len(), sealed_len);
    let aside: Vec<_> = fs::read_dir(ledger_dir(&data).join("quarantine"))
        .unwrap()
        .map(|e| fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(aside, vec![forged]);
    assert_eq!(l.append(placed(20), 20).unwrap().index, 20);
    l.close().unwrap();
    drop(l);
    assert_eq!(verify(&data).unwrap().entries, 21);
    assert!(bundle_for(&data, &forged_job).is_err());
}

#[test]
fn a_removed_commit_breaks_the_chain_at_its_batch() {
    let (_d, data) = filled(12);
    let seg = segment_file(&data);
    let bytes = fs::read(&seg).unwrap();
    let cs = commit_ranges(&bytes);
    // Every append of `filled` is its own batch: commit k seals entry k.
    assert_eq!(cs.len(), 12);
    let mut out = bytes[..cs[5].start].to_vec();
    out.extend_from_slice(&bytes[cs[5].end..]);
    fs::write(&seg, &out).unwrap();
    let err = verify(&data).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyFailure::Commit(CommitFault::Chain { index: 5, .. })
        ),
        "{err}"
    );
    assert!(Ledger::open(&data, LedgerOptions::default()).is_err());
}

#[test]
fn entries_with_no_commit_are_never_ok() {
    let (_d, data) = filled(6);
    let seg = segment_file(&data);
    let bytes = fs::read(&seg).unwrap();
    // Strip every commit record (as a first-format log, or a forger, would leave it), and the
    // checkpoint files.
    let mut out = bytes[..tidegate_ledger::segment::SEGMENT_HEADER].to_vec();
    for r in record_ranges(&bytes) {
        out.extend_from_slice(&bytes[r]);
    }
    fs::write(&seg, &out).unwrap();
    for (p, _) in list_checkpoints(&ledger_dir(&data)).unwrap() {
        fs::remove_file(p).unwrap();
    }
    let err = verify(&data).unwrap_err();
    assert!(
        matches!(err, VerifyFailure::Unsealed { index: 0, count: 6 }),
        "{err}"
    );
}

#[test]
fn a_zeroed_tail_is_set_aside_with_its_bytes_never_destroyed() {
    let (_d, data) = filled(10);
    let seg = segment_file(&data);
    let bytes = fs::read(&seg).unwrap();
    let rs = record_ranges(&bytes);
    // Zero everything from entry 8 on (entries 8, 9 and their commits). The checkpoint file the
    // ledger wrote on close covers them, so this is refused as a truncation.
    let mut zeroed = bytes.clone();
    for b in &mut zeroed[rs[8].start..] {
        *b = 0;
    }
    fs::write(&seg, &zeroed).unwrap();
    assert!(matches!(
        verify(&data).unwrap_err(),
        VerifyFailure::Truncated { index: 8, .. }
    ));
    assert!(matches!(
        Ledger::open(&data, LedgerOptions::default()),
        Err(OpenError::Checkpoint(_))
    ));
    assert_eq!(
        fs::read(&seg).unwrap(),
        zeroed,
        "refused opens change nothing"
    );
    // Without a checkpoint file covering them, the zeroed bytes cannot be told from an
    // interrupted write: they are set aside (kept, byte for byte), never silently cut.
    for (p, _) in list_checkpoints(&ledger_dir(&data)).unwrap() {
        fs::remove_file(p).unwrap();
    }
    let l = open(&data);
    assert_eq!(l.len(), 8);
    drop(l);
    let aside = fs::read_dir(ledger_dir(&data).join("quarantine"))
        .unwrap()
        .map(|e| fs::read(e.unwrap().path()).unwrap())
        .collect::<Vec<_>>();
    assert_eq!(aside, vec![zeroed[rs[8].start..].to_vec()]);
}

#[test]
fn a_log_cut_short_of_a_signed_checkpoint_gets_no_bundle_and_no_checkpoint() {
    let (_d, data) = filled(12);
    let seg = segment_file(&data);
    let bytes = fs::read(&seg).unwrap();
    let rs = record_ranges(&bytes);
    // Drop the newest entry and its commit: what remains is a validly sealed log of 11.
    fs::write(&seg, &bytes[..rs[11].start]).unwrap();
    let before = checkpoint_files(&data);
    assert!(matches!(
        verify(&data).unwrap_err(),
        VerifyFailure::Truncated { index: 11, .. }
    ));
    match bundle_for(&data, &subject(SubjectKind::Job, "job-3")) {
        Err(EvidenceError::Unsealed(e)) => assert_eq!(e.index(), Some(11), "{e}"),
        other => panic!("a bundle over a log cut short: {other:?}"),
    }
    assert!(Ledger::open(&data, LedgerOptions::default()).is_err());
    assert_eq!(checkpoint_files(&data), before);
}

#[test]
fn an_altered_signature_line_on_an_older_commit_breaks_the_chain() {
    let (_d, data) = filled(8);
    let seg = segment_file(&data);
    let mut bytes = fs::read(&seg).unwrap();
    let cs = commit_ranges(&bytes);
    // The commit sealing entry 3: flip a character of its signature line and fix the checksum.
    let r = cs[3].clone();
    let payload = bytes[r.start + 16..r.end - 4].to_vec();
    let text_len = u32::from_le_bytes(payload[..4].try_into().unwrap()) as usize;
    let mut text = String::from_utf8(payload[4..4 + text_len].to_vec()).unwrap();
    let at = text.rfind(' ').unwrap() + 3;
    let c = if &text[at..=at] == "A" { "B" } else { "A" };
    text.replace_range(at..=at, c);
    let mut new_payload = (text.len() as u32).to_le_bytes().to_vec();
    new_payload.extend_from_slice(text.as_bytes());
    new_payload.extend_from_slice(&payload[4 + text_len..]);
    let mut rec = Vec::new();
    tidegate_ledger::segment::encode_commit_record(4, &new_payload, &mut rec);
    bytes.splice(r, rec);
    fs::write(&seg, &bytes).unwrap();
    let err = verify(&data).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyFailure::Commit(CommitFault::Chain { index: 4, .. })
        ),
        "{err}"
    );
}

#[test]
fn setting_aside_twice_at_the_same_offset_keeps_both() {
    let (_d, data) = filled(4);
    let seg = segment_file(&data);
    let clean = fs::read(&seg).unwrap();
    let mut kept = Vec::new();
    for n in [1u64, 2] {
        let mut bytes = clean.clone();
        let forged = forge_record(4, &placed(900 + n).into_entry(4, 4).encode().unwrap());
        bytes.extend_from_slice(&forged);
        fs::write(&seg, &bytes).unwrap();
        drop(open(&data));
        // Put back the log as it was (the writer sealed nothing new: only a close checkpoint).
        fs::write(&seg, &clean).unwrap();
        kept.push(forged);
    }
    let mut aside: Vec<Vec<u8>> = fs::read_dir(ledger_dir(&data).join("quarantine"))
        .unwrap()
        .map(|e| fs::read(e.unwrap().path()).unwrap())
        .collect();
    aside.sort();
    kept.sort();
    assert_eq!(aside, kept);
}

#[test]
fn a_damaged_commit_record_names_the_first_entry_it_sealed() {
    let (_d, data) = filled(6);
    let seg = segment_file(&data);
    let mut bytes = fs::read(&seg).unwrap();
    let cs = commit_ranges(&bytes);
    // Break the payload checksum of the commit sealing entry 3 (and, separately, the last one).
    for (k, first) in [(3usize, 3u64), (5, 5)] {
        let mut b = bytes.clone();
        let end = cs[k].end;
        b[end - 1] ^= 0xff;
        fs::write(&seg, &b).unwrap();
        let err = verify(&data).unwrap_err();
        assert_eq!(err.index(), Some(first), "{err}");
        match Ledger::open(&data, LedgerOptions::default()) {
            Err(OpenError::Damaged(d)) => assert_eq!(d.index, first),
            other => panic!("{other:?}"),
        }
    }
    fs::write(&seg, &bytes).unwrap();
    bytes.clear();
    assert!(verify(&data).is_ok());
}
