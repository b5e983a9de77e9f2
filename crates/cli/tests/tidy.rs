//! Tidy checks over the whole tree: every Rust source file opens with a `//!` line, and every
//! crate inherits the workspace lints.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            if !matches!(
                name.as_str(),
                "target" | ".git" | "snapshots" | "node_modules"
            ) && !name.starts_with('.')
            {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_source_file_opens_with_a_doc_line() {
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    assert!(files.len() > 10, "found only {} files", files.len());
    let bad: Vec<_> = files
        .iter()
        .filter(|p| !fs::read_to_string(p).unwrap().starts_with("//!"))
        .map(|p| p.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    assert!(
        bad.is_empty(),
        "these files do not start with a `//!` line: {bad:#?}"
    );
}

#[test]
fn every_crate_uses_workspace_lints() {
    let mut missing = Vec::new();
    for e in fs::read_dir(root().join("crates")).unwrap() {
        let manifest = e.unwrap().path().join("Cargo.toml");
        if manifest.exists() {
            let text = fs::read_to_string(&manifest).unwrap();
            if !text.contains("[lints]\nworkspace = true") {
                missing.push(manifest.display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "crates without `[lints] workspace = true`: {missing:#?}"
    );
    let root_manifest = fs::read_to_string(root().join("Cargo.toml")).unwrap();
    for lint in [
        "unwrap_used = \"deny\"",
        "expect_used = \"deny\"",
        "panic = \"deny\"",
    ] {
        assert!(
            root_manifest.contains(lint),
            "workspace lints must include {lint}"
        );
    }
}

#[test]
fn architecture_names_every_crate_and_enforcing_files_exist() {
    let arch = fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    for e in fs::read_dir(root().join("crates")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            arch.contains(&format!("crates/{name}")),
            "ARCHITECTURE.md does not mention crates/{name}"
        );
    }
    // Every invariant names a file that exists.
    let mut n = 0;
    for line in arch
        .lines()
        .filter(|l| l.trim_start().starts_with("- Invariant:"))
    {
        n += 1;
        let file = line.split('`').find(|s| s.starts_with("crates/"));
        let file = file.unwrap_or_else(|| panic!("invariant names no enforcing file: {line}"));
        assert!(
            root().join(file).exists(),
            "{file} (named by an invariant) does not exist"
        );
    }
    assert!(n >= 5, "ARCHITECTURE.md lists only {n} invariants");
}
