//! `tidegate artifact` through the API of a running `tidegate up`: put prints the digest, get
//! writes the verified content (also with a scoped job token), list and verify show it; other
//! commands point at the direct mode, and the direct mode is refused while the server holds the
//! ledger.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{repo, wait_for, Proc};

fn up(dir: &Path) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .current_dir(repo())
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = Proc(child);
    wait_for("tidegate up", 60, || {
        dir.join("server.url").exists() && dir.join("admin.token").exists()
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    p
}

/// `tidegate artifact ARGS` through the API of the server in `dir` (no data directory given).
fn api(dir: &Path, args: &[&str]) -> Output {
    let url = std::fs::read_to_string(dir.join("server.url")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .current_dir(dir)
        .env_remove("TIDEGATE_DATA_DIR")
        .env_remove("TIDEGATE_TOKEN")
        .env("NO_COLOR", "1")
        .arg("artifact")
        .args(args)
        .args(["--server", url.trim(), "--token-file"])
        .arg(dir.join("admin.token"))
        .arg("--ca")
        .arg(dir.join("pki/ca.pem"))
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn put_get_list_and_verify_go_through_a_running_control_plane() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _server = up(dir);
    let file = dir.join("snapshot.bin");
    std::fs::write(&file, b"rows of a de-identified snapshot").unwrap();

    let digest = ok(api(
        dir,
        &[
            "put",
            file.to_str().unwrap(),
            "--kind",
            "dataset-snapshot",
            "--label",
            "source=synthea",
        ],
    ))
    .trim()
    .to_owned();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );

    let out = dir.join("back.bin");
    ok(api(dir, &["get", &digest, "-o", out.to_str().unwrap()]));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"rows of a de-identified snapshot"
    );

    let list = ok(api(dir, &["list"]));
    assert!(
        list.contains(&digest)
            && list.contains("dataset-snapshot")
            && list.contains("candidate")
            && list.contains("snapshot.bin"),
        "{list}"
    );
    let verified = ok(api(dir, &["verify", &digest]));
    assert!(
        verified.starts_with(&format!("ok   {digest} dataset-snapshot")),
        "{verified}"
    );
    assert!(ok(api(dir, &["verify"])).contains(&digest));

    // A job reads with its scoped token (minted offline from the data directory's token keys).
    let minted = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args([
            "token",
            "mint",
            "--job",
            "eval-1",
            "--zone",
            "hospital-onprem",
            "--output-prefix",
            "runs/eval-1/",
            "--input",
        ])
        .arg(format!("dataset-snapshot:{digest}"))
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    let token = ok(minted).trim().to_owned();
    let token_file = dir.join("job.token");
    std::fs::write(&token_file, &token).unwrap();
    // The zone proves itself with its agent's token.
    let zone_token = |zone: &str| {
        let minted = Command::new(env!("CARGO_BIN_EXE_tidegate"))
            .args([
                "token",
                "mint",
                "--user",
                "agent",
                "--role",
                "agent",
                "--team",
                zone,
                "--data-dir",
            ])
            .arg(dir)
            .output()
            .unwrap();
        let file = dir.join(format!("{zone}.token"));
        std::fs::write(&file, ok(minted).trim()).unwrap();
        file
    };
    let onprem = zone_token("hospital-onprem");
    let public_eu = zone_token("public-eu");
    let by_job = dir.join("by-job.bin");
    let o = api(
        dir,
        &[
            "get",
            &digest,
            "-o",
            by_job.to_str().unwrap(),
            "--token",
            token_file.to_str().unwrap(),
            "--zone",
            "hospital-onprem",
        ],
    );
    assert!(
        !o.status.success() && text(&o).contains("--zone-token"),
        "{}",
        text(&o)
    );
    ok(api(
        dir,
        &[
            "get",
            &digest,
            "-o",
            by_job.to_str().unwrap(),
            "--token",
            token_file.to_str().unwrap(),
            "--zone",
            "hospital-onprem",
            "--zone-token",
            onprem.to_str().unwrap(),
        ],
    ));
    assert_eq!(
        std::fs::read(&by_job).unwrap(),
        b"rows of a de-identified snapshot"
    );
    let o = api(
        dir,
        &[
            "get",
            &digest,
            "-o",
            by_job.to_str().unwrap(),
            "--token",
            token_file.to_str().unwrap(),
            "--zone",
            "public-eu",
            "--zone-token",
            public_eu.to_str().unwrap(),
        ],
    );
    assert!(
        !o.status.success() && text(&o).contains("token_not_granted"),
        "{}",
        text(&o)
    );

    // Errors come back with the API's code; commands without an API say where they work.
    let o = api(dir, &["get", "sha256:abc", "-o", by_job.to_str().unwrap()]);
    assert!(
        !o.status.success() && text(&o).contains("invalid digest"),
        "{}",
        text(&o)
    );
    let o = api(dir, &["promote", &digest, "--to", "validated"]);
    assert!(
        !o.status.success()
            && text(&o).contains("promotion_refused")
            && text(&o).contains("only models and checkpoints"),
        "{}",
        text(&o)
    );
    let o = api(dir, &["shred", &digest]);
    assert!(
        !o.status.success() && text(&o).contains("--data-dir"),
        "{}",
        text(&o)
    );

    // The direct mode on the same directory cannot record while the server holds the ledger.
    let o = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args([
            "artifact",
            "put",
            file.to_str().unwrap(),
            "--kind",
            "model",
            "--data-dir",
        ])
        .arg(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        !o.status.success() && text(&o).contains("ledger"),
        "{}",
        text(&o)
    );
}
