//! Fail-closed tests on real filesystems: a size-limited tmpfs (disk full) and a read-only mount.
//! When an entry cannot be written the action it records is refused, and nothing acknowledged
//! is lost. Mounting needs root (or CAP_SYS_ADMIN); without it these tests print how to run them
//! and pass, except under `CI=true`, where they must run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use tidegate_ledger::keys::load_verifier;
use tidegate_ledger::ledger::{key_path, ledger_dir};
use tidegate_ledger::verify::verify_ledger;
use tidegate_ledger::{AppendError, Ledger, LedgerOptions, OpenError};

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The tests here spawn `mount`; a child between fork and exec briefly holds copies of every
/// descriptor, the ledger's `LOCK` among them. Running them one at a time keeps one test's
/// spawns from holding the other's lock while it reopens its ledger.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn mount_tmpfs(at: &Path, size: &str) -> Option<Mount> {
    std::fs::create_dir_all(at).unwrap();
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(Mount(at.to_owned())),
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                Err(e) => e.to_string(),
            };
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true requires the fail-closed filesystem tests to run, but mounting a tmpfs failed: {why}"
            );
            eprintln!(
                "SKIPPED: cannot mount a size-limited tmpfs ({why}). Run as root (or in a container with \
                 CAP_SYS_ADMIN), e.g. `sudo -E cargo test -p tidegate-ledger --test fail_closed`."
            );
            None
        }
    }
}

fn remount(at: &Path, mode: &str) {
    let st = Command::new("mount")
        .args(["-o", &format!("remount,{mode}")])
        .arg(at)
        .status()
        .unwrap();
    assert!(st.success(), "remount {mode} failed");
}

#[test]
fn full_disk_refuses_the_action_and_loses_nothing_acknowledged() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let Some(m) = mount_tmpfs(&tmp.path().join("mnt"), "192k") else {
        return;
    };
    let data = m.0.clone();
    let opts = LedgerOptions {
        checkpoint_every: None,
        ..LedgerOptions::default()
    };
    let l = Ledger::open(&data, opts.clone()).unwrap();
    let mut effects = 0u64;
    let mut acked = 0u64;
    let err = loop {
        match l.record_then(placed(acked), acked, |_| effects += 1) {
            Ok(()) => acked += 1,
            Err(e) => break e,
        }
        assert!(acked < 1_000_000, "a 192k filesystem never filled up");
    };
    assert!(acked > 100, "only {acked} entries fit");
    assert!(
        matches!(
            err,
            AppendError::Io {
                kind: std::io::ErrorKind::StorageFull,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        effects, acked,
        "an action ran without its entry being durable"
    );
    // The ledger stays stopped: later actions are refused too.
    let again = l.record_then(placed(0), 0, |_| effects += 1).unwrap_err();
    assert!(matches!(again, AppendError::Stopped(_)), "{again}");
    assert_eq!(effects, acked);
    drop(l);
    // Everything acknowledged is there and the log verifies (no half-written batch left behind).
    let l = Ledger::open(&data, opts).unwrap();
    assert_eq!(l.len(), acked);
    drop(l);
    let report = verify_ledger(
        &ledger_dir(&data),
        &load_verifier(&key_path(&data)).unwrap(),
    )
    .unwrap();
    assert_eq!(report.entries, acked);
}

#[test]
fn read_only_ledger_directory_refuses_to_record() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let Some(m) = mount_tmpfs(&tmp.path().join("mnt"), "4m") else {
        return;
    };
    let data = m.0.clone();
    let l = open(&data);
    for i in 0..25 {
        l.append(placed(i), i).unwrap();
    }
    l.close().unwrap();
    drop(l);
    remount(&data, "ro");
    // Root ignores permission bits, so a read-only mount is the honest test of "cannot write".
    match Ledger::open(&data, LedgerOptions::default()) {
        Err(OpenError::Io { source, .. }) => {
            assert_eq!(
                source.kind(),
                std::io::ErrorKind::ReadOnlyFilesystem,
                "{source}"
            );
        }
        other => panic!("a read-only ledger must refuse to open for recording, got {other:?}"),
    }
    // Still verifiable while read-only; nothing was lost.
    let report = verify_ledger(
        &ledger_dir(&data),
        &load_verifier(&key_path(&data)).unwrap(),
    )
    .unwrap();
    assert_eq!(report.entries, 25);
    remount(&data, "rw");
    let l = open(&data);
    assert_eq!(l.len(), 25);
    assert_eq!(l.append(placed(25), 25).unwrap().index, 25);
}
