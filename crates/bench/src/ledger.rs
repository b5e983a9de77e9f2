//! `tidegate bench ledger`: measures the evidence ledger on this machine, next to the naive ways
//! (one fsync per append; a hash-chained SQLite table with one insert per entry), in one run.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use miette::{miette, IntoDiagnostic as _};
use sha2::{Digest as _, Sha256};
use tidegate_ledger::keys::load_verifier;
use tidegate_ledger::ledger::{key_path, ledger_dir, read_log};
use tidegate_ledger::merkle::{verify_inclusion, Hash};
use tidegate_ledger::segment::encode_record;
use tidegate_ledger::verify::{verify_with, Depth};
use tidegate_ledger::{
    Action, Decision, Digest, EntryDraft, Ident, Ledger, LedgerOptions, Subject, SubjectKind,
};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Human-readable lines.
    Text,
    /// One JSON object.
    Json,
}

/// Options for `tidegate bench ledger`.
#[derive(Debug, clap::Args)]
pub struct BenchLedgerArgs {
    /// Output format (`json` has appends_per_sec, append_p50_ms, append_p99_ms, filesystem,
    /// naive_appends_per_sec,
    /// naive_sqlite_appends_per_sec, verify_entries_per_sec (full verification: checksums, every
    /// entry proven canonical, Merkle tree, signed checkpoints), naive_verify_entries_per_sec (the
    /// same decoding and re-encoding every entry), verify_integrity_entries_per_sec (no entry
    /// check), proof_gen_us, ...).
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    /// Entries appended durably (group commit) in the main run.
    #[arg(long, default_value_t = 200_000)]
    pub entries: u64,
    /// Concurrent writer threads.
    #[arg(long, default_value_t = 8)]
    pub writers: u64,
    /// Appends each writer keeps in flight (like concurrent requests waiting on the ledger).
    #[arg(long, default_value_t = 512)]
    pub in_flight: usize,
    /// Entries for each naive baseline (fsync per append; SQLite one insert per entry).
    #[arg(long, default_value_t = 2_000)]
    pub naive_entries: u64,
    /// Directory to run in (a fresh temporary directory is made inside it; default: the system
    /// temporary directory). Put it on the disk you want measured: tmpfs and ramfs are refused
    /// (an fsync there makes nothing durable).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

fn draft(n: u64) -> miette::Result<EntryDraft> {
    let id = |s: &str| Ident::new(s).map_err(|e| miette!("{e}"));
    EntryDraft::new(
        id("scheduler")?,
        Action::JobPlaced {
            decision: Decision::Allowed,
            zone: id("eu-private")?,
            pool: id("a100-private")?,
            reasons: vec![id("policy0")?, id("phi-stays-private")?],
            policy_hash: Digest::of(b"policy set v1"),
        },
        vec![
            Subject::new(SubjectKind::Job, format!("job-{n}")).map_err(|e| miette!("{e}"))?,
            Subject::new(SubjectKind::Dataset, "synthea-patients").map_err(|e| miette!("{e}"))?,
        ],
    )
    .map_err(|e| miette!("{e}"))
}

fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// Run the benchmark and print the figures.
///
/// # Errors
/// Any I/O or ledger failure during the run.
pub fn run(args: &BenchLedgerArgs) -> miette::Result<()> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("tidegate-bench-ledger-")
        .tempdir_in(&base)
        .into_diagnostic()?;
    let data = tmp.path().to_path_buf();
    const TS: u64 = 1_763_900_000_000;

    let fs_type = filesystem_of(&data)?;
    if matches!(fs_type.as_str(), "tmpfs" | "ramfs") {
        return Err(miette!(
            "{} is on {fs_type}: an fsync there makes nothing durable, so the figures would mean nothing; pass --dir on a disk",
            base.display()
        ));
    }

    // 1. Durable appends with group commit, concurrent writers each keeping requests in flight,
    //    with the server's settings: every group commit sealed by its own signed commit record,
    //    and a checkpoint file published every 4096 entries.
    let ledger =
        Arc::new(Ledger::open(&data, LedgerOptions::default()).map_err(|e| miette!("{e}"))?);
    let writers = args.writers.max(1);
    let per_writer = args.entries / writers;
    let total = per_writer * writers;
    let start = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let l = Arc::clone(&ledger);
            let in_flight = args.in_flight.max(1);
            std::thread::spawn(move || -> miette::Result<Vec<u32>> {
                // Latency of each append: from submit until it is durable and acknowledged.
                let mut lat = Vec::with_capacity(usize::try_from(per_writer).unwrap_or(0));
                let mut pending: VecDeque<(Instant, tidegate_ledger::ledger::PendingAppend)> =
                    VecDeque::with_capacity(in_flight);
                let mut done = |at: Instant, p: tidegate_ledger::ledger::PendingAppend| {
                    p.wait().map_err(|e| miette!("{e}"))?;
                    lat.push(u32::try_from(at.elapsed().as_micros()).unwrap_or(u32::MAX));
                    Ok::<(), miette::Report>(())
                };
                for i in 0..per_writer {
                    if pending.len() >= in_flight {
                        if let Some((at, p)) = pending.pop_front() {
                            done(at, p)?;
                        }
                    }
                    let n = w * per_writer + i;
                    let d = draft(n)?;
                    pending.push_back((
                        Instant::now(),
                        l.submit(d, TS + n).map_err(|e| miette!("{e}"))?,
                    ));
                }
                for (at, p) in pending {
                    done(at, p)?;
                }
                Ok(lat)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for h in handles {
        latencies.extend(h.join().map_err(|_| miette!("writer thread panicked"))??);
    }
    let append_secs = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |q: f64| -> f64 {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        f64::from(latencies.get(i).copied().unwrap_or(0)) / 1000.0
    };
    let (p50_ms, p99_ms) = (pct(0.50), pct(0.99));
    let (batches, synced) = ledger.commit_stats();
    ledger.close().map_err(|e| miette!("{e}"))?;
    drop(ledger);
    let appends_per_sec = per_sec(total, append_secs);

    // 2. Verification, each way timed best of three, interleaved, in this run:
    //    `verify_entries_per_sec`: full verification as `tidegate audit verify` runs it (record
    //    checksums and positions, every entry proven canonical and well-formed by the zero-copy
    //    check, leaf hashes, Merkle root compared with the signed checkpoint);
    //    `naive_verify_entries_per_sec`: the same checks, each entry decoded with serde and
    //    re-encoded (the naive way);
    //    `verify_integrity_entries_per_sec`: checksums, Merkle tree and checkpoints only.
    let verifier = load_verifier(&key_path(&data)).map_err(|e| miette!("{e}"))?;
    let mut best = [f64::INFINITY; 3];
    for _ in 0..3 {
        for (k, depth) in [Depth::Full, Depth::FullDecode, Depth::Integrity]
            .into_iter()
            .enumerate()
        {
            let start = Instant::now();
            let report =
                verify_with(&ledger_dir(&data), &verifier, depth).map_err(|e| miette!("{e}"))?;
            best[k] = best[k].min(start.elapsed().as_secs_f64());
            if report.entries != total || report.latest.map(|c| c.size) != Some(total) {
                return Err(miette!(
                    "{depth:?} verification covered {} entries, expected {total}",
                    report.entries
                ));
            }
        }
    }
    let [verify_secs, naive_verify_secs, merkle_secs] = best;
    let log = read_log(&ledger_dir(&data), false).map_err(|e| miette!("{e}"))?;
    let root = log.tree.root();

    // 3. Proof generation and verification at random indexes of the full tree.
    let n = log.tree.len();
    let samples = 10_000u64;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let idx: Vec<u64> = (0..samples)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n.max(1)
        })
        .collect();
    let start = Instant::now();
    let proofs: Vec<Vec<Hash>> = idx
        .iter()
        .map(|i| log.tree.inclusion_proof(*i, n))
        .collect::<Result<_, _>>()
        .into_diagnostic()?;
    let proof_gen_us = start.elapsed().as_secs_f64() * 1e6 / samples as f64;
    let start = Instant::now();
    for (i, p) in idx.iter().zip(&proofs) {
        let leaf = log.tree.leaf(*i).ok_or_else(|| miette!("missing leaf"))?;
        verify_inclusion(&leaf, *i, n, p, &root).into_diagnostic()?;
    }
    let proof_verify_us = start.elapsed().as_secs_f64() * 1e6 / samples as f64;

    // 4. Naive: one write + fdatasync per append, same record format.
    let naive_path = data.join("naive-fsync.log");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&naive_path)
        .into_diagnostic()?;
    let mut buf = Vec::with_capacity(512);
    let start = Instant::now();
    for i in 0..args.naive_entries {
        let e = draft(i)?.into_entry(i, TS + i);
        let bytes = e.encode().map_err(|e| miette!("{e}"))?;
        buf.clear();
        encode_record(i, &bytes, &mut buf);
        f.write_all(&buf).into_diagnostic()?;
        f.sync_data().into_diagnostic()?;
    }
    let naive_appends_per_sec = per_sec(args.naive_entries, start.elapsed().as_secs_f64());

    // 5. Naive: hash-chained SQLite table, one autocommitted insert per entry (WAL, synchronous=FULL).
    let db = rusqlite::Connection::open(data.join("naive.sqlite")).into_diagnostic()?;
    db.pragma_update(None, "journal_mode", "WAL")
        .into_diagnostic()?;
    db.pragma_update(None, "synchronous", "FULL")
        .into_diagnostic()?;
    db.execute_batch("CREATE TABLE ledger (seq INTEGER PRIMARY KEY, entry BLOB NOT NULL, prev BLOB NOT NULL, hash BLOB NOT NULL)")
        .into_diagnostic()?;
    let mut prev = [0u8; 32];
    let start = Instant::now();
    {
        let mut stmt = db
            .prepare("INSERT INTO ledger (seq, entry, prev, hash) VALUES (?1, ?2, ?3, ?4)")
            .into_diagnostic()?;
        for i in 0..args.naive_entries {
            let bytes = draft(i)?
                .into_entry(i, TS + i)
                .encode()
                .map_err(|e| miette!("{e}"))?;
            let hash: [u8; 32] = Sha256::new()
                .chain_update(prev)
                .chain_update(&bytes)
                .finalize()
                .into();
            stmt.execute(rusqlite::params![
                i64::try_from(i).into_diagnostic()?,
                bytes,
                prev.to_vec(),
                hash.to_vec()
            ])
            .into_diagnostic()?;
            prev = hash;
        }
    }
    let naive_sqlite_appends_per_sec = per_sec(args.naive_entries, start.elapsed().as_secs_f64());

    let out = serde_json::json!({
        "entries": total,
        "writers": writers,
        "in_flight_per_writer": args.in_flight,
        "appends_per_sec": appends_per_sec.round(),
        "append_p50_ms": round2(p50_ms),
        "append_p99_ms": round2(p99_ms),
        "signed_commits": batches,
        "fsynced_batches": batches,
        "avg_entries_per_fsync": round2(synced as f64 / batches.max(1) as f64),
        "naive_appends_per_sec": naive_appends_per_sec.round(),
        "naive_sqlite_appends_per_sec": naive_sqlite_appends_per_sec.round(),
        "naive_entries": args.naive_entries,
        "speedup_vs_fsync_per_append": round2(appends_per_sec / naive_appends_per_sec.max(f64::MIN_POSITIVE)),
        "speedup_vs_sqlite": round2(appends_per_sec / naive_sqlite_appends_per_sec.max(f64::MIN_POSITIVE)),
        "verify_entries_per_sec": per_sec(total, verify_secs).round(),
        "verify_full_entries_per_sec": per_sec(total, verify_secs).round(),
        "naive_verify_entries_per_sec": per_sec(total, naive_verify_secs).round(),
        "verify_speedup_vs_naive": round2(naive_verify_secs / verify_secs.max(f64::MIN_POSITIVE)),
        "verify_integrity_entries_per_sec": per_sec(total, merkle_secs).round(),
        "verify_threads": std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        "proof_gen_us": round2(proof_gen_us),
        "proof_verify_us": round2(proof_verify_us),
        "tree_size": n,
        "dir": base.display().to_string(),
        "filesystem": fs_type,
    });
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&out).into_diagnostic()?),
        Output::Text => {
            println!(
                "ledger benchmark ({total} entries, {writers} writers x {} in flight, in {} on {fs_type})",
                args.in_flight,
                base.display()
            );
            println!("  durable appends (group commit):   {appends_per_sec:>12.0} /s  ({batches} fsyncs, each sealed by a signed commit, {:.1} entries each)", synced as f64 / batches.max(1) as f64);
            println!(
                "  append latency (submit to durable): p50 {p50_ms:.2} ms, p99 {p99_ms:.2} ms"
            );
            println!("  naive: fsync per append:          {naive_appends_per_sec:>12.0} /s  ({} entries)", args.naive_entries);
            println!("  naive: SQLite hash chain:         {naive_sqlite_appends_per_sec:>12.0} /s  ({} entries)", args.naive_entries);
            println!("  full verification (`audit verify`: checksums, every entry proven canonical, Merkle root vs signed checkpoint):");
            println!(
                "                                    {:>12.0} entries/s",
                per_sec(total, verify_secs)
            );
            println!("  naive: same, decoding and re-encoding every entry:");
            println!(
                "                                    {:>12.0} entries/s",
                per_sec(total, naive_verify_secs)
            );
            println!(
                "  integrity only (checksums, leaf hashes, Merkle root vs signed checkpoint):"
            );
            println!(
                "                                    {:>12.0} entries/s",
                per_sec(total, merkle_secs)
            );
            println!("  inclusion proof generation:       {proof_gen_us:>12.2} us  (tree of {n})");
            println!("  inclusion proof verification:     {proof_verify_us:>12.2} us");
        }
    }
    Ok(())
}

/// The filesystem type of the mount holding `path` (from `/proc/self/mountinfo`: the mount
/// point that is the longest prefix of the path).
fn filesystem_of(path: &std::path::Path) -> miette::Result<String> {
    let path = std::fs::canonicalize(path).into_diagnostic()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .into_diagnostic()
        .map_err(|e| e.wrap_err("reading /proc/self/mountinfo to name the filesystem"))?;
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(mount), Some(fstype)) = (fields.get(4), fields.get(sep + 1)) else {
            continue;
        };
        let mount = mount.replace("\\040", " ");
        if path.starts_with(&mount) && best.as_ref().is_none_or(|(n, _)| mount.len() >= *n) {
            best = Some((mount.len(), (*fstype).to_owned()));
        }
    }
    best.map(|b| b.1)
        .ok_or_else(|| miette!("no mount holds {}", path.display()))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
