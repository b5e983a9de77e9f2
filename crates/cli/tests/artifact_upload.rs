//! Artifact uploads are streamed: the control plane writes a body to disk as it arrives and the
//! store encrypts it in chunks, so an upload far larger than the memory the server may use for
//! it is stored without the server's peak memory growing by its size; content of several chunks
//! reads back byte for byte, and a scanned kind is checked over its whole length.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Read;

use common::{start_control_plane, ControlPlane};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Deterministic content of `len` bytes, generated as it is read (the test holds none of it).
struct Pattern {
    at: u64,
    len: u64,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = usize::try_from((self.len - self.at).min(buf.len() as u64)).unwrap();
        for (i, b) in buf[..n].iter_mut().enumerate() {
            let x = self.at + i as u64;
            *b = (x.wrapping_mul(2_654_435_761) >> 13) as u8;
        }
        self.at += n as u64;
        Ok(n)
    }
}

fn pattern_digest(len: u64) -> String {
    let mut h = Sha256::new();
    let mut p = Pattern { at: 0, len };
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = p.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// The peak resident memory of process `pid`, in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn upload(cp: &ControlPlane, token: &str, query: &str, body: impl Read + 'static) -> (u16, Value) {
    let mut resp = common::agent_trusting(Some(&cp.ca))
        .post(format!("{}/v1/artifacts?{query}", cp.url))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/octet-stream")
        .send(ureq::SendBody::from_owned_reader(body))
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_json().unwrap_or(Value::Null))
}

#[test]
fn an_upload_far_larger_than_its_memory_bound_is_stored_without_buffering_it() {
    let dir = tempfile::tempdir().unwrap();
    // An upload a killed control plane was spooling (plaintext) is removed at the next start.
    let spool = dir.path().join("artifacts/spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::write(spool.join("upload-left"), b"PHI 123-45-6789").unwrap();
    let cp = start_control_plane(dir.path(), "127.0.0.1:0", &[], &[]);
    assert!(
        !spool.join("upload-left").exists(),
        "a spooled upload outlived a restart"
    );
    let pid = cp.proc.0.id();
    // Warm up: one small upload, so what follows measures the upload, not first use.
    let (s, b) = upload(
        &cp,
        &cp.admin,
        "kind=model&team=icu-ml&name=warm",
        Pattern { at: 0, len: 1000 },
    );
    assert_eq!(s, 201, "{b}");
    let before = peak_kib(pid);
    let len: u64 = 192 * 1024 * 1024;
    let (s, b) = upload(
        &cp,
        &cp.admin,
        "kind=model&team=icu-ml&name=big",
        Pattern { at: 0, len },
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["digest"], pattern_digest(len).as_str(), "{b}");
    assert_eq!(b["size"], len, "{b}");
    let grew = peak_kib(pid).saturating_sub(before);
    // Buffered, the body alone would be 192 MiB and its ciphertext as much again.
    assert!(
        grew < 64 * 1024,
        "the server's peak memory grew by {grew} KiB for a {len}-byte upload"
    );
    // The spool holds nothing afterwards.
    let left: Vec<_> = std::fs::read_dir(&spool)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "spooled uploads left behind: {left:?}");
}

#[test]
fn content_of_many_chunks_reads_back_and_a_scanned_kind_is_checked_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start_control_plane(dir.path(), "127.0.0.1:0", &[], &[]);
    let len = 3 * 1024 * 1024 + 17;
    let (s, b) = upload(
        &cp,
        &cp.admin,
        "kind=dataset-snapshot&team=icu-ml&name=mid",
        Pattern { at: 0, len },
    );
    assert_eq!(s, 201, "{b}");
    let digest = b["digest"].as_str().unwrap().to_owned();
    let mut resp = common::agent_trusting(Some(&cp.ca))
        .get(format!("{}/v1/artifacts/{digest}", cp.url))
        .header("Authorization", format!("Bearer {}", cp.admin))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let got = resp
        .body_mut()
        .with_config()
        .limit(16 << 20)
        .read_to_vec()
        .unwrap();
    let mut want = Vec::new();
    Pattern { at: 0, len }.read_to_end(&mut want).unwrap();
    assert!(got == want, "the content read back differs");
    // A report claimed public whose identifiers sit past the first megabytes is refused: the
    // whole upload is scanned, not its start.
    let mut report = "note\n".repeat(600_000).into_bytes();
    report.extend_from_slice(b"contact jane.doe@example.org 555-867-5309\n");
    let (s, b) = upload(
        &cp,
        &cp.admin,
        "kind=evaluation-report&team=icu-ml&classification=public",
        std::io::Cursor::new(report),
    );
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["field"], "classification", "{b}");
}
