//! `tidegate bench sanitize`: sanitizer throughput end to end (read, transform, write) on
//! generated Synthea-schema tables, and in the same run the peers on the same rows: Presidio's
//! structured engine and a plain pandas + HMAC script (`bench/peers/`), run with `python3`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use clap::Args;
use miette::{miette, IntoDiagnostic};
use serde::Serialize;
use tidegate_client::output::{print_json, Format};
use tidegate_sanitize::generate::{generate, GenerateSpec};
use tidegate_sanitize::{sanitize, Key, Options, Profile};

const INSTALL: &str =
    "pip install presidio-structured presidio-anonymizer presidio-analyzer pandas";

/// Arguments of `tidegate bench sanitize`.
#[derive(Debug, Args)]
pub struct BenchSanitizeArgs {
    /// Size of the generated data set, MB (10^6 bytes).
    #[arg(long, default_value_t = 1024)]
    size_mb: u64,
    /// The peers run on the first this-many MB of the same rows (they are slow; MB/s is a rate).
    #[arg(long, default_value_t = 64)]
    peer_mb: u64,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Working directory (default: a temporary directory, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Directory of the peer scripts.
    #[arg(long, default_value = "bench/peers")]
    peers: PathBuf,
    /// Python interpreter for the peers.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Skip the peers.
    #[arg(long)]
    no_peers: bool,
    /// Run only this peer (`presidio` or `pandas`; repeatable; default both).
    #[arg(long = "peer", value_parser = ["presidio", "pandas"])]
    only: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: Format,
}

#[derive(Debug, Serialize)]
struct Peer {
    name: &'static str,
    /// `ok`, `missing` (not installed) or `failed`.
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    mb_per_sec: Option<f64>,
    /// Seconds of its work (read, transform, write, fsync), timed inside the script as
    /// tidegate's is: the interpreter's start-up and imports are not in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    elapsed_s: Option<f64>,
    /// Seconds of the whole process, start-up included.
    #[serde(skip_serializing_if = "Option::is_none")]
    process_s: Option<f64>,
    /// Whether every table it wrote is byte-identical to tidegate's on the same rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    same_output: Option<bool>,
    /// Tables that differ from tidegate's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    differing_tables: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

#[derive(Debug, Serialize)]
struct BenchReport {
    size_mb: f64,
    rows: u64,
    generate_s: f64,
    elapsed_s: f64,
    mb_per_sec: f64,
    earned: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    not_earned_because: Vec<String>,
    peer_prefix_mb: f64,
    prefix_mb_per_sec: f64,
    presidio_mb_per_sec: Option<f64>,
    pandas_mb_per_sec: Option<f64>,
    ratio_vs_presidio: Option<f64>,
    ratio_vs_pandas: Option<f64>,
    peers: Vec<Peer>,
    note: String,
}

#[allow(clippy::cast_precision_loss)]
fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn timed_sanitize(
    p: &Profile,
    input: &Path,
    out: &Path,
    key: &Key,
) -> miette::Result<(tidegate_sanitize::Report, f64)> {
    let t = Instant::now();
    let r = sanitize(
        p,
        input,
        out,
        &Options::new(key.clone()).with_source(p.input_classification.clone()),
    )
    .map_err(|e| miette!("{e}"))?;
    Ok((r, t.elapsed().as_secs_f64()))
}

fn peers_dir(flag: &Path) -> PathBuf {
    if flag.join("pandas_sanitize.py").exists() {
        return flag.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/peers")
}

fn python_has(python: &str, modules: &str) -> bool {
    Command::new(python)
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The prefix the peers run on, the key file, and our output on the same prefix.
struct PeerInput<'a> {
    input: &'a Path,
    key: &'a Path,
    bytes: u64,
    ours: &'a Path,
}

fn run_peer(
    name: &'static str,
    a: &BenchSanitizeArgs,
    script: &Path,
    modules: &str,
    out: &Path,
    pi: &PeerInput<'_>,
) -> Peer {
    let PeerInput {
        input,
        key,
        bytes,
        ours,
    } = *pi;
    let mut p = Peer {
        name,
        status: "missing".into(),
        mb_per_sec: None,
        elapsed_s: None,
        process_s: None,
        same_output: None,
        differing_tables: Vec::new(),
        detail: None,
    };
    if !python_has(&a.python, modules) {
        p.detail = Some(format!(
            "{} cannot import {modules}; install with: {INSTALL}",
            a.python
        ));
        return p;
    }
    let t = Instant::now();
    let res = Command::new(&a.python)
        .arg(script)
        .arg("--in")
        .arg(input)
        .arg("--out")
        .arg(out)
        .arg("--key")
        .arg(key)
        .output();
    let secs = t.elapsed().as_secs_f64();
    match res {
        Ok(o) if o.status.success() => {
            let stdout = String::from_utf8_lossy(&o.stdout);
            let work = stdout
                .lines()
                .rev()
                .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .and_then(|v| v["elapsed_s"].as_f64());
            let Some(work) = work else {
                p.status = "failed".into();
                p.detail = Some("it printed no {\"elapsed_s\": ...} line".into());
                return p;
            };
            p.status = "ok".into();
            p.elapsed_s = Some(work);
            p.process_s = Some(secs);
            p.mb_per_sec = Some(mb(bytes) / work.max(1e-9));
            p.differing_tables = differing_tables(ours, out);
            p.same_output = Some(p.differing_tables.is_empty());
        }
        Ok(o) => {
            p.status = "failed".into();
            let err = String::from_utf8_lossy(&o.stderr);
            let tail: String = err
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            p.detail = Some(tail);
        }
        Err(e) => {
            p.status = "failed".into();
            p.detail = Some(e.to_string());
        }
    }
    p
}

/// The tables of `ours` that `theirs` lacks or holds with other bytes (and tables only
/// `theirs` has).
fn differing_tables(ours: &Path, theirs: &Path) -> Vec<String> {
    let names = |d: &Path| -> std::collections::BTreeSet<String> {
        std::fs::read_dir(d)
            .map(|it| {
                it.filter_map(Result::ok)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.ends_with(".csv"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let all: std::collections::BTreeSet<String> =
        names(ours).union(&names(theirs)).cloned().collect();
    all.into_iter()
        .filter(|f| {
            !matches!((std::fs::read(ours.join(f)), std::fs::read(theirs.join(f))), (Ok(x), Ok(y)) if x == y)
        })
        .collect()
}

/// Runs the benchmark.
#[allow(clippy::too_many_lines)]
pub fn run(a: &BenchSanitizeArgs) -> miette::Result<()> {
    let holder;
    let work = if let Some(d) = &a.dir {
        std::fs::create_dir_all(d).into_diagnostic()?;
        d.clone()
    } else {
        holder = tempfile::Builder::new()
            .prefix("tidegate-bench-sanitize-")
            .tempdir()
            .into_diagnostic()?;
        holder.path().to_path_buf()
    };
    let key_bytes = [0x5au8; 32];
    let key = Key::from_bytes(&key_bytes).map_err(|e| miette!("{e}"))?;
    let key_file = work.join("bench.key");
    std::fs::write(&key_file, hex::encode(key_bytes)).into_diagnostic()?;
    let profile = Profile::hipaa_safe_harbor().map_err(|e| miette!("{e}"))?;

    let t = Instant::now();
    let full = work.join("full");
    let stats = generate(
        &full,
        GenerateSpec {
            patients: None,
            target_bytes: Some(a.size_mb * 1_000_000),
            seed: a.seed,
        },
    )
    .map_err(|e| miette!("{e}"))?;
    let generate_s = t.elapsed().as_secs_f64();
    eprintln!(
        "generated {:.0} MB in {generate_s:.1} s; sanitizing...",
        mb(stats.bytes)
    );
    let (r, secs) = timed_sanitize(&profile, &full, &work.join("out-full"), &key)?;
    let _ = std::fs::remove_dir_all(work.join("out-full"));

    // The prefix: the generator is sequential and seeded, so a smaller target gives the first
    // rows of the same data set.
    let prefix_mb = a.peer_mb.min(a.size_mb);
    let prefix = work.join("prefix");
    let pstats = generate(
        &prefix,
        GenerateSpec {
            patients: None,
            target_bytes: Some(prefix_mb * 1_000_000),
            seed: a.seed,
        },
    )
    .map_err(|e| miette!("{e}"))?;
    let ours = work.join("out-prefix");
    let (_, psecs) = timed_sanitize(&profile, &prefix, &ours, &key)?;

    let mut peers = Vec::new();
    if !a.no_peers {
        let dir = peers_dir(&a.peers);
        for (flag, name, script, modules) in [
            (
                "presidio",
                "presidio-structured",
                "presidio_sanitize.py",
                "presidio_structured, presidio_anonymizer, pandas",
            ),
            (
                "pandas",
                "pandas+hmac",
                "pandas_sanitize.py",
                "pandas, numpy",
            ),
        ] {
            if !a.only.is_empty() && !a.only.iter().any(|o| o == flag) {
                continue;
            }
            eprintln!("running {name} on the first {:.0} MB...", mb(pstats.bytes));
            let out = work.join(format!("out-{name}"));
            let pi = PeerInput {
                input: &prefix,
                key: &key_file,
                bytes: pstats.bytes,
                ours: &ours,
            };
            peers.push(run_peer(name, a, &dir.join(script), modules, &out, &pi));
            let _ = std::fs::remove_dir_all(&out);
        }
    }
    let rate = mb(r.bytes_in) / secs;
    // The ratios compare like with like: tidegate and the peers on the same rows.
    let prefix_rate = mb(pstats.bytes) / psecs;
    let get = |n: &str| {
        peers
            .iter()
            .find(|p| p.name == n)
            .and_then(|p| p.mb_per_sec)
    };
    let (presidio, pandas) = (get("presidio-structured"), get("pandas+hmac"));
    let report = BenchReport {
        size_mb: mb(r.bytes_in),
        rows: r.rows_in,
        generate_s,
        elapsed_s: secs,
        mb_per_sec: rate,
        earned: r.earned,
        not_earned_because: r.reasons.clone(),
        peer_prefix_mb: mb(pstats.bytes),
        prefix_mb_per_sec: mb(pstats.bytes) / psecs,
        presidio_mb_per_sec: presidio,
        pandas_mb_per_sec: pandas,
        ratio_vs_presidio: presidio.map(|p| prefix_rate / p),
        ratio_vs_pandas: pandas.map(|p| prefix_rate / p),
        peers,
        note: format!(
            "MB = 10^6 bytes of input CSV. Each side timed the same way: read, transform, write and fsync \
             every table, one thread; the peers time their work inside the script (python3 start-up and \
             imports are not in it; the whole process is process_s). Ratios are on the same {:.0} MB of rows \
             ({:.1} MB/s for tidegate there); every table each peer writes must be byte-identical to tidegate's. \
             tidegate also scans every kept text cell for identifiers and computes k-anonymity; the peers do not.",
            mb(pstats.bytes),
            prefix_rate
        ),
    };
    let differing: Vec<String> = report
        .peers
        .iter()
        .filter(|p| !p.differing_tables.is_empty())
        .map(|p| format!("{}: {}", p.name, p.differing_tables.join(", ")))
        .collect();
    let refuse = || {
        Err(miette!(
            "the peers' output differs from tidegate's on the same rows ({}): the comparison is not like for like",
            differing.join("; ")
        ))
    };
    if a.output == Format::Json {
        print_json(&report)?;
        return if differing.is_empty() {
            Ok(())
        } else {
            refuse()
        };
    }
    println!(
        "sanitize {:.0} MB ({} rows) in {:.2} s: {:.1} MB/s (earned: {})",
        report.size_mb, report.rows, secs, rate, report.earned
    );
    for m in &report.not_earned_because {
        println!("  not earned: {m}");
    }
    println!(
        "  tidegate             {:>7.2} MB/s on the same {:.0} MB the peers ran on",
        prefix_rate, report.peer_prefix_mb
    );
    for p in &report.peers {
        match p.mb_per_sec {
            Some(v) => println!(
                "  {:<20} {:>7.2} MB/s on {:.0} MB ({:.1} s of work, {:.1} s with start-up)  -> tidegate is {:.1}x  (every table identical: {})",
                p.name,
                v,
                report.peer_prefix_mb,
                p.elapsed_s.unwrap_or_default(),
                p.process_s.unwrap_or_default(),
                prefix_rate / v,
                p.same_output.unwrap_or(false)
            ),
            None => println!(
                "  {:<20} {}: {}",
                p.name,
                p.status,
                p.detail.clone().unwrap_or_default()
            ),
        }
    }
    println!("{}", report.note);
    if differing.is_empty() {
        Ok(())
    } else {
        refuse()
    }
}
