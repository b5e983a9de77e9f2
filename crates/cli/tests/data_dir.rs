//! The data directory is the control plane's alone: once `tidegate up` runs, its state, ledger,
//! documents, keys, artifacts and registrations are owner-only, and a job (run as the zone's
//! unprivileged user when the control plane is root) can read none of them, while its own work
//! directory under the work root stays reachable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt as _;

use common::{start_control_plane, wait_for};
use serde_json::{json, Value};

#[test]
fn nothing_in_the_data_directory_but_the_work_root_is_open_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cp");
    let cp = start_control_plane(&data, "127.0.0.1:0", &[], &[]);
    for name in [
        "state.db",
        "ledger",
        "documents",
        "keys",
        "pki",
        "admin.token",
    ] {
        let mode = std::fs::metadata(data.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode & 0o077, 0, "{name} is open to others: {mode:o}");
    }
    if effective_uid() != 0 {
        eprintln!(
            "jobs run as the control plane's own user unless it is root: the read is not tried"
        );
        return;
    }
    // A job tries to read the store and the ledger.
    let command = format!(
        "cat {d}/state.db >/dev/null && echo READ-STATE; ls {d}/ledger && echo READ-LEDGER; echo done",
        d = data.display()
    );
    let manifest = common::train_job("snoop", &command);
    let (s, b) = cp.call(
        "POST",
        &format!("{}/v1/jobs", cp.url),
        &cp.admin,
        Some(json!({ "manifest": manifest })),
    );
    assert_eq!(s, 201, "{b}");
    let id = b["job"]["id"].as_str().unwrap().to_owned();
    let mut logs = Value::Null;
    wait_for("the job to end", 60, || {
        let (_, d) = cp.call("GET", &format!("{}/v1/jobs/{id}", cp.url), &cp.admin, None);
        let ended = ["succeeded", "failed"].contains(&d["job"]["state"].as_str().unwrap_or(""));
        if ended {
            logs = cp
                .call(
                    "GET",
                    &format!("{}/v1/jobs/{id}/logs", cp.url),
                    &cp.admin,
                    None,
                )
                .1;
        }
        ended
    });
    let text = logs.to_string();
    assert!(
        text.contains("done"),
        "the job did not run to its end: {text}"
    );
    assert!(
        !text.contains("READ-STATE") && !text.contains("READ-LEDGER"),
        "a job read the data directory: {text}"
    );
}

fn effective_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}
