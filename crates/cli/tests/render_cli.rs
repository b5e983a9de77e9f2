//! `tidegate render` end to end: the sbatch script, a job's Kubernetes objects, the fleet's
//! files (stable across runs), the nftables ruleset with an addresses file, and its errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tidegate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(args)
        .current_dir(root())
        .env_remove("TIDEGATE_FLEET")
        .output()
        .unwrap()
}

fn stdout_ok(args: &[&str]) -> String {
    let o = tidegate(args);
    assert!(
        o.status.success(),
        "tidegate {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for zone in std::fs::read_dir(dir).unwrap() {
        let zone = zone.unwrap().path();
        for f in std::fs::read_dir(&zone).unwrap() {
            let f = f.unwrap().path();
            out.push((
                f.strip_prefix(dir).unwrap().display().to_string(),
                std::fs::read_to_string(&f).unwrap(),
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn render_prints_sbatch_scripts_and_kubernetes_jobs() {
    let s = stdout_ok(&[
        "render",
        "--target",
        "slurm",
        "--job",
        "examples/jobs/sepsis-train.yaml",
        "--state-dir",
        "/srv/tg",
    ]);
    for want in [
        "#SBATCH --gres=gpu:h100:16",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=research",
        "#SBATCH --chdir=/srv/tg/hospital-onprem/sepsis-train",
    ] {
        assert!(s.contains(want), "{want} missing:\n{s}");
    }
    let k = stdout_ok(&[
        "render",
        "--target",
        "k8s",
        "--job",
        "examples/jobs/triage-edge.yaml",
    ]);
    assert!(
        k.contains("kind: Job")
            && k.contains("kind: ServiceAccount")
            && k.contains("kind: NetworkPolicy"),
        "{k}"
    );
    assert!(
        k.contains("kueue.x-k8s.io/queue-name: emergency-ai")
            && k.contains("allowed_execution_zone: edge"),
        "{k}"
    );
}

#[test]
fn render_writes_the_fleet_as_stable_files() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    stdout_ok(&[
        "render",
        "--fleet",
        "examples/fleet",
        "--out",
        a.path().to_str().unwrap(),
    ]);
    stdout_ok(&[
        "render",
        "--fleet",
        "examples/fleet",
        "--out",
        b.path().to_str().unwrap(),
    ]);
    let (fa, fb) = (files(a.path()), files(b.path()));
    assert_eq!(fa, fb, "two renders differ");
    assert!(fa
        .iter()
        .any(|(p, t)| p == "public-eu/10-resourceflavor-gpu-h200.yaml"
            && t.contains("kind: ResourceFlavor")));
    assert!(fa
        .iter()
        .any(|(p, _)| p == "private-cloud/30-localqueue-private-cloud-gpu.yaml"));
}

#[test]
fn render_nftables_resolves_zones_from_an_addresses_file() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = dir.path().join("addrs.yaml");
    std::fs::write(&addrs, "hospital-onprem: [10.20.0.0/16]\n").unwrap();
    let n = stdout_ok(&[
        "render",
        "--target",
        "nftables",
        "--zone",
        "public-eu",
        "--addresses",
        addrs.to_str().unwrap(),
    ]);
    assert!(
        n.contains("policy drop;") && n.contains("elements = { 10.20.0.0/16 }"),
        "{n}"
    );
    let o = tidegate(&["render", "--target", "nftables"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("needs --zone"));
    std::fs::write(&addrs, "hospital-onprem: [not-an-address]\n").unwrap();
    let o = tidegate(&[
        "render",
        "--target",
        "nftables",
        "--zone",
        "public-eu",
        "--addresses",
        addrs.to_str().unwrap(),
    ]);
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("not an IP address")
    );
}
