//! Tidy checks over the whole tree: every Rust source file opens with a `//!` line, every crate
//! inherits the workspace lints, ARCHITECTURE.md names what exists, and the crates depend on
//! each other only as the layering table allows.

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
    // Every library documents what it exposes and exposes only what others may use.
    let mut undocumented = Vec::new();
    for e in fs::read_dir(root().join("crates")).unwrap() {
        let lib = e.unwrap().path().join("src/lib.rs");
        if lib.exists()
            && !fs::read_to_string(&lib)
                .unwrap()
                .contains("#![warn(missing_docs, unreachable_pub)]")
        {
            undocumented.push(lib.display().to_string());
        }
    }
    assert!(
        undocumented.is_empty(),
        "library crates without `#![warn(missing_docs, unreachable_pub)]`: {undocumented:#?}"
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

/// The normal (not dev) dependencies of crate `name`, by package name.
fn dependencies(name: &str) -> Vec<String> {
    let text = fs::read_to_string(root().join("crates").join(name).join("Cargo.toml")).unwrap();
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_deps = t == "[dependencies]";
            continue;
        }
        if in_deps && !t.is_empty() && !t.starts_with('#') {
            if let Some(dep) = t.split(['=', '.', ' ']).next() {
                out.push(dep.trim().to_owned());
            }
        }
    }
    out
}

/// The layering the code map describes: the pure core (vocabulary, policy, placement,
/// scheduling, identity) does no I/O of its own and never reaches the store, the server, an
/// executor, an async runtime or a database driver; the executors never reach the server.
#[test]
fn the_pure_core_never_depends_on_io_crates() {
    let io = [
        "tidegate-store",
        "tidegate-server",
        "tidegate-exec",
        "tidegate-slurm",
        "tidegate-kube",
        "tidegate-ledger",
        "tidegate-artifacts",
        "tokio",
        "rusqlite",
        "postgres",
        "reqwest",
        "ureq",
        "hyper",
        "axum",
    ];
    for pure in ["model", "policy", "placement", "sched", "identity"] {
        for dep in dependencies(pure) {
            assert!(
                !io.contains(&dep.as_str()),
                "crates/{pure} (pure core) depends on {dep}"
            );
        }
    }
    for exec in ["exec", "slurm", "kube"] {
        for dep in dependencies(exec) {
            assert!(
                !["tidegate-server", "tidegate-store", "axum"].contains(&dep.as_str()),
                "crates/{exec} (an executor) depends on {dep}"
            );
        }
    }
    // The control plane never depends on the binary.
    for c in fs::read_dir(root().join("crates")).unwrap() {
        let name = c.unwrap().file_name().to_string_lossy().into_owned();
        if name != "cli" {
            assert!(
                !dependencies(&name).iter().any(|d| d == "tidegate"),
                "crates/{name} depends on the binary"
            );
        }
    }
}

/// The layering, as one table: each workspace crate and the workspace crates its
/// `[dependencies]` may name (dev-dependencies are free). Layer by layer, as ARCHITECTURE.md's
/// code map lists them: the pure core, then the libraries beside it, the executors and stores,
/// the control plane, the command line's libraries, the binary. A crate missing from the table,
/// or an edge the table does not allow, fails
/// [`workspace_dependencies_follow_the_layering_table`].
const LAYERS: &[(&str, &[&str])] = &[
    // The shared vocabulary: a leaf every crate may use.
    ("vocab", &[]),
    // The pure core: no I/O of its own, no clock.
    ("model", &["vocab"]),
    ("policy", &["model"]),
    ("sched", &["model"]),
    ("placement", &["model", "policy", "sched", "vocab"]),
    ("identity", &[]),
    ("sim", &["model", "placement", "sched"]),
    // Libraries beside it: rendering, certificates, the sanitizer, the evidence ledger.
    ("render", &["exec", "model"]),
    ("pki", &[]),
    ("sanitize", &["vocab"]),
    ("ledger", &["vocab"]),
    // Executors: the interface and the local executor, Slurm, Kubernetes.
    ("exec", &["vocab"]),
    ("slurm", &["exec", "model"]),
    ("kube", &["exec"]),
    // Every zone's executor, built in one place from the fleet.
    (
        "backends",
        &["exec", "kube", "model", "render", "slurm", "vocab"],
    ),
    // Stores: durable state, artifacts, the data boundary; test support.
    ("store", &["vocab"]),
    ("artifacts", &["identity", "ledger", "vocab"]),
    (
        "data",
        &[
            "artifacts",
            "ledger",
            "model",
            "placement",
            "policy",
            "sanitize",
            "vocab",
        ],
    ),
    ("testkit", &["model"]),
    // The API's request and response types and their schemas: serde and utoipa only.
    ("api", &[]),
    // The control plane.
    (
        "server",
        &[
            "api",
            "artifacts",
            "backends",
            "data",
            "exec",
            "identity",
            "ledger",
            "model",
            "pki",
            "placement",
            "policy",
            "sched",
            "store",
            "vocab",
        ],
    ),
    // The command line's libraries: the API client, the benchmarks.
    ("client", &["api", "pki", "vocab"]),
    (
        "bench",
        &[
            "api",
            "client",
            "exec",
            "ledger",
            "model",
            "placement",
            "policy",
            "render",
            "sanitize",
            "server",
            "slurm",
        ],
    ),
    // The binary.
    (
        "cli",
        &[
            "api",
            "artifacts",
            "backends",
            "bench",
            "client",
            "data",
            "exec",
            "identity",
            "ledger",
            "model",
            "pki",
            "placement",
            "policy",
            "render",
            "sanitize",
            "sched",
            "server",
            "sim",
            "store",
            "vocab",
        ],
    ),
];

/// The pure core.
const PURE: [&str; 5] = ["model", "policy", "placement", "sched", "identity"];

/// What the pure core never depends on, directly or through a workspace crate it depends on.
const NOT_IN_THE_PURE_CORE: [&str; 5] = [
    "tidegate-store",
    "tidegate-server",
    "tokio",
    "rusqlite",
    "postgres",
];

/// What the API's types never depend on, directly or through a workspace crate they depend on:
/// a client of the API needs neither the server nor its runtime, web framework or databases.
const NOT_IN_THE_API: [&str; 6] = [
    "tidegate-server",
    "tidegate-store",
    "tokio",
    "axum",
    "rusqlite",
    "postgres",
];

/// The executors, which rendering never depends on (`exec` is the interface every executor
/// shares, with the launch request rendering reads).
const EXECUTORS: [&str; 2] = ["slurm", "kube"];

/// The workspace crates (directory names) under `crates/`.
fn workspace_crates() -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").exists())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// The workspace crates (directory names) crate `name`'s `[dependencies]` name.
fn workspace_dependencies(name: &str) -> Vec<String> {
    dependencies(name)
        .iter()
        .filter_map(|d| d.strip_prefix("tidegate-"))
        .map(str::to_owned)
        .collect()
}

/// `name` and every workspace crate it reaches through `[dependencies]`.
fn reached_from(name: &str) -> Vec<String> {
    let mut seen = vec![name.to_owned()];
    let mut next = 0;
    while next < seen.len() {
        for d in workspace_dependencies(&seen[next]) {
            if !seen.contains(&d) {
                seen.push(d);
            }
        }
        next += 1;
    }
    seen
}

/// Whether the layering allows `from` to depend on `to`.
fn allowed(from: &str, to: &str) -> bool {
    LAYERS
        .iter()
        .any(|(c, deps)| *c == from && deps.contains(&to))
}

#[test]
fn workspace_dependencies_follow_the_layering_table() {
    let crates = workspace_crates();
    assert!(crates.len() > 10, "found only {} crates", crates.len());
    // The table names every crate once, and only crates that exist.
    for c in &crates {
        let rows = LAYERS.iter().filter(|(n, _)| n == c).count();
        assert_eq!(
            rows, 1,
            "crates/{c} has {rows} rows in the layering table (tidy.rs `LAYERS`); give it one"
        );
    }
    for (c, deps) in LAYERS {
        for n in std::iter::once(c).chain(deps.iter()) {
            assert!(
                crates.iter().any(|k| k == n),
                "the layering table names crates/{n}, which does not exist"
            );
        }
    }
    // Every edge is one the table allows.
    let mut bad = Vec::new();
    for c in &crates {
        for d in workspace_dependencies(c) {
            if !allowed(c, &d) {
                bad.push(format!("crates/{c} -> tidegate-{d}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "dependencies the layering table (tidy.rs `LAYERS`) does not allow: {bad:#?}"
    );
    // The rules the table keeps, checked against the table itself and against the manifests.
    for pure in PURE {
        for d in reached_from(pure) {
            for dep in dependencies(&d) {
                assert!(
                    !NOT_IN_THE_PURE_CORE.contains(&dep.as_str()),
                    "crates/{pure} (pure core) reaches {dep} through crates/{d}"
                );
            }
        }
        for forbidden in NOT_IN_THE_PURE_CORE {
            if let Some(n) = forbidden.strip_prefix("tidegate-") {
                assert!(
                    !allowed(pure, n),
                    "the layering table lets crates/{pure} (pure core) depend on {forbidden}"
                );
            }
        }
    }
    for d in reached_from("api") {
        for dep in dependencies(&d) {
            assert!(
                !NOT_IN_THE_API.contains(&dep.as_str()),
                "crates/api (the API's types) reaches {dep} through crates/{d}"
            );
        }
    }
    for forbidden in NOT_IN_THE_API {
        if let Some(n) = forbidden.strip_prefix("tidegate-") {
            assert!(
                !allowed("api", n),
                "the layering table lets crates/api (the API's types) depend on {forbidden}"
            );
        }
    }
    for exec in EXECUTORS {
        assert!(
            !reached_from("render").iter().any(|d| d == exec),
            "crates/render reaches the executor crates/{exec}"
        );
        assert!(
            !allowed("render", exec),
            "the layering table lets crates/render depend on the executor crates/{exec}"
        );
    }
    assert_eq!(
        workspace_dependencies("sched"),
        ["model"],
        "crates/sched depends on the vocabulary alone"
    );
    assert!(
        LAYERS
            .iter()
            .any(|(c, deps)| *c == "sched" && deps.to_vec() == ["model"]),
        "the layering table lets crates/sched depend on more than crates/model"
    );
}

/// Every item an invariant names in parentheses after its enforcing file (`file` (`item`))
/// exists in that file: renaming or removing the function breaks the build of the docs.
#[test]
fn items_named_by_invariants_exist_in_their_files() {
    let arch = fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let mut checked = 0;
    for line in arch
        .lines()
        .filter(|l| l.trim_start().starts_with("- Invariant:"))
    {
        let mut rest = line;
        while let Some(i) = rest.find("`crates/") {
            let after = &rest[i + 1..];
            let Some(end) = after.find('`') else { break };
            let file = &after[..end];
            let tail = &after[end + 1..];
            rest = tail;
            let Some(group) = tail.strip_prefix(" (") else {
                continue;
            };
            let Some(close) = group.find(')') else {
                continue;
            };
            let text = fs::read_to_string(root().join(file))
                .unwrap_or_else(|e| panic!("{file} (named by an invariant): {e}"));
            for item in group[..close].split('`').skip(1).step_by(2) {
                let name = item.rsplit("::").next().unwrap_or(item);
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    continue;
                }
                let word = |t: &str| {
                    t.match_indices(name).any(|(at, _)| {
                        let before = t[..at].chars().next_back();
                        let after = t[at + name.len()..].chars().next();
                        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                            && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                    })
                };
                assert!(
                    word(&text),
                    "ARCHITECTURE.md names `{item}` in {file}, which has no such item:\n{line}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "only {checked} named items checked");
}

/// Where the top-level entries of a data directory are is `tidegate_vocab::DataDir`'s to say:
/// no other library spells one out (tests may; the fleet directory's `zones/` is another layout).
#[test]
fn only_the_data_dir_type_names_a_data_directory_s_entries() {
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    let mut bad = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(root()).unwrap().display().to_string();
        if rel.starts_with("crates/vocab/")
            || rel.contains("/tests/")
            || rel == "crates/model/src/load/fleet.rs"
        {
            continue;
        }
        let text = fs::read_to_string(f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (name, _) in tidegate_vocab::DataDir::ENTRIES {
            let spelled = format!(".join(\"{name}\")");
            if code.contains(&spelled) || (*name == "state.db" && code.contains("\"state.db\"")) {
                bad.push(format!("{rel}: {spelled}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "these files spell out a data directory's entry; ask tidegate_vocab::DataDir: {bad:#?}"
    );
}
