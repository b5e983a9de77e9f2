//! `tidegate checkpoint archive`: a checkpoint is archived into a zone's store only where its
//! data may go (a sensitive one only in a private zone), is ledgered as `checkpoint.archived`
//! before the copy, and the copy verifies there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn tidegate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .env_remove("TIDEGATE_DATA_DIR")
        .output()
        .unwrap()
}

/// Both streams, with the diagnostic frame's line wrapping undone.
fn text(o: &Output) -> String {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    all.split_whitespace()
        .filter(|w| *w != "│")
        .collect::<Vec<_>>()
        .join(" ")
}

fn ledger_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir.join("ledger")).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            all.extend(std::fs::read(p).unwrap());
        }
    }
    all
}

#[test]
fn a_sensitive_checkpoint_is_archived_only_in_a_private_zone() {
    let tmp = tempfile::tempdir().unwrap();
    let dd = tmp.path().join("d");
    let d = dd.to_str().unwrap();
    let file = tmp.path().join("step-100.ckpt");
    std::fs::write(&file, vec![7u8; 4096]).unwrap();
    let put = tidegate(&[
        "artifact",
        "--data-dir",
        d,
        "put",
        file.to_str().unwrap(),
        "--kind",
        "checkpoint",
        "--sensitive",
    ]);
    assert!(put.status.success(), "{}", text(&put));
    let digest = String::from_utf8_lossy(&put.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap()
        .to_owned();
    // Unsigned: not archived anywhere.
    let unsigned = tidegate(&[
        "checkpoint",
        "archive",
        &digest,
        "--zone",
        "private-cloud",
        "--data-dir",
        d,
    ]);
    assert!(
        !unsigned.status.success() && text(&unsigned).contains("no signed SLSA provenance"),
        "{}",
        text(&unsigned)
    );
    for args in [
        vec![
            "artifact",
            "--data-dir",
            d,
            "key",
            "init",
            "--owner",
            "ml-platform",
        ],
        vec![
            "artifact",
            "--data-dir",
            d,
            "sign",
            &digest,
            "--job",
            "job-7",
            "--zone",
            "hospital-onprem",
            "--repo",
            "https://git.example.org/ml/train",
            "--commit",
            "4f1c2e9",
        ],
    ] {
        let o = tidegate(&args);
        assert!(o.status.success(), "{:?}: {}", args, text(&o));
    }

    let refused = tidegate(&[
        "checkpoint",
        "archive",
        &digest,
        "--zone",
        "public-us",
        "--data-dir",
        d,
    ]);
    assert!(
        !refused.status.success() && text(&refused).contains("not private: refused"),
        "{}",
        text(&refused)
    );
    assert!(
        !dd.join("zone-stores/public-us/artifacts").exists()
            || std::fs::read_dir(dd.join("zone-stores/public-us/artifacts"))
                .unwrap()
                .count()
                == 0
    );
    let bytes = ledger_bytes(&dd);
    assert!(
        !bytes.windows(19).any(|w| w == b"checkpoint.archived"),
        "a refused archive is not recorded as done"
    );

    let ok = tidegate(&[
        "checkpoint",
        "archive",
        &digest,
        "--zone",
        "private-cloud",
        "--data-dir",
        d,
    ]);
    assert!(ok.status.success(), "{}", text(&ok));
    let zone_dir = dd.join("zone-stores/private-cloud");
    let v = tidegate(&[
        "artifact",
        "--data-dir",
        zone_dir.to_str().unwrap(),
        "get",
        &digest,
        "-o",
        tmp.path().join("back").to_str().unwrap(),
    ]);
    assert!(v.status.success(), "{}", text(&v));
    assert_eq!(
        std::fs::read(tmp.path().join("back")).unwrap(),
        vec![7u8; 4096]
    );
    let bytes = ledger_bytes(&dd);
    assert!(
        bytes.windows(19).any(|w| w == b"checkpoint.archived"),
        "the archive is ledgered"
    );
    let audit = tidegate(&["audit", "verify", "--data-dir", d]);
    assert!(audit.status.success(), "{}", text(&audit));

    let missing = tidegate(&[
        "checkpoint",
        "archive",
        &digest,
        "--zone",
        "moon",
        "--data-dir",
        d,
    ]);
    assert!(
        !missing.status.success() && text(&missing).contains("unknown zone \"moon\""),
        "{}",
        text(&missing)
    );
}
