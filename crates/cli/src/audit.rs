//! `tidegate audit ...`: verify the evidence ledger, print proofs and checkpoints, witness them.
//!
//! `verify`, `proof` and `checkpoint` take `--database postgres://...` to work on a ledger kept in
//! PostgreSQL (see `tidegate_ledger::pg`) instead of the segment files under the data dir.

use std::fs;
use std::path::{Path, PathBuf};

use miette::{miette, IntoDiagnostic as _, WrapErr as _};
use tidegate_ledger::audit::{self, AuditError};
use tidegate_ledger::keys::{self, load_verifier};
use tidegate_ledger::ledger::{checkpoint_path, ledger_dir, write_atomic, LogContents};
use tidegate_ledger::merkle::verify_inclusion;
use tidegate_ledger::pg::{PgLedgerOptions, PgLog};
use tidegate_ledger::verify::{verify_with, Depth};
use tidegate_ledger::witness::{add_checkpoint_request, add_cosignatures, Witness, WitnessError};
use tidegate_ledger::{NoteSigner, NoteVerifier, SignedNote};

/// Where tidegate keeps its state.
#[derive(Debug, Clone, clap::Args)]
pub struct DataDir {
    /// Data directory holding `ledger/`, `keys/` and `documents/`.
    /// Defaults to $TIDEGATE_DATA_DIR, else `./.tidegate`.
    #[arg(
        long,
        value_name = "DIR",
        env = "TIDEGATE_DATA_DIR",
        default_value = ".tidegate"
    )]
    pub data_dir: PathBuf,
}

/// Where the ledger's entries live when they are in PostgreSQL rather than under the data dir.
#[derive(Debug, Clone, clap::Args)]
pub struct Database {
    /// Work on the ledger in this PostgreSQL database (`postgres://...`) instead of the segment
    /// files under the data dir (the signing key still comes from `<data-dir>/keys/`).
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Schema holding the ledger tables in --database (default: the connection's search_path).
    #[arg(long, value_name = "NAME", requires = "database")]
    pub schema: Option<String>,
}

impl Database {
    fn log(&self) -> miette::Result<Option<PgLog>> {
        let Some(url) = &self.database else {
            return Ok(None);
        };
        let opts = PgLedgerOptions {
            schema: self.schema.clone(),
            ..PgLedgerOptions::default()
        };
        PgLog::connect(url, &opts)
            .map(Some)
            .map_err(|e| miette!("{e}"))
    }
}

/// Audit the evidence ledger: an append-only Merkle log of every consequential action.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCmd {
    /// Recompute everything: record checksums, entry encodings and positions, the Merkle tree,
    /// and every stored signed checkpoint. Names the first bad index and exits non-zero on any
    /// damage, truncation, reordering or rewritten history.
    Verify {
        /// Skip decoding and re-canonicalizing each entry; checksums, positions, the Merkle tree
        /// and the signed checkpoints are still fully checked (several times faster).
        #[arg(long)]
        skip_decode: bool,
        /// Verify the checkpoints against this ledger public key (held outside the data dir)
        /// instead of `<data-dir>/keys/ledger.pub`, so a replaced key file is noticed.
        #[arg(long, value_name = "PUBKEY")]
        key: Option<PathBuf>,
        #[command(flatten)]
        dir: DataDir,
        #[command(flatten)]
        db: Database,
    },
    /// Print an inclusion proof (JSON) for one entry against a signed checkpoint of the current
    /// log: the entry's exact bytes, its leaf hash, the proof hashes and the checkpoint note.
    Proof {
        /// Index of the entry (0-based, as printed by `audit verify` and in evidence bundles).
        #[arg(long, value_name = "N")]
        entry: u64,
        #[command(flatten)]
        dir: DataDir,
        #[command(flatten)]
        db: Database,
    },
    /// Print the latest signed checkpoint (C2SP tlog-checkpoint signed note). Signs one for the
    /// current size first when the newest stored checkpoint is older than the log.
    Checkpoint {
        #[command(flatten)]
        dir: DataDir,
        #[command(flatten)]
        db: Database,
    },
    /// Have the newest checkpoint co-signed by a witness, which first checks that it extends the
    /// last checkpoint of this log it co-signed (so a rewritten or cut history is refused):
    /// a witness running elsewhere (`--url`, the C2SP tlog-witness protocol, see `tidegate
    /// witness`), or a local witness key (`--key`). The co-signed checkpoint is stored with the
    /// ledger's checkpoints, and evidence bundles carry it. With --check, verify a checkpoint
    /// file instead: the witness co-signature, the log signature, and that the current log still
    /// extends it.
    #[command(group(clap::ArgGroup::new("witness").required(true).args(["key", "url"])))]
    Witness {
        /// Local witness private key file (created with mode 0600 if missing; its public key is
        /// written next to it as `.pub`). For --check, a public key file also works.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// A witness's URL (`https://host:port` or, on loopback, `http://`, as `tidegate witness`
        /// prints).
        #[arg(long, value_name = "URL", conflicts_with_all = ["state", "check"])]
        url: Option<String>,
        /// The certificate authority (PEM) the witness's `https://` certificate chains to.
        #[arg(long, env = "TIDEGATE_CA", value_name = "FILE", requires = "url")]
        ca: Option<PathBuf>,
        /// Check this checkpoint file (a note co-signed earlier) instead of co-signing.
        #[arg(long, value_name = "CHECKPOINT")]
        check: Option<PathBuf>,
        /// Where the witness remembers the last checkpoint it co-signed
        /// (default: the key file with extension `.state`).
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
        #[command(flatten)]
        dir: DataDir,
    },
}

/// Run an audit command.
///
/// # Errors
/// Any verification failure or I/O problem, as a diagnostic; the process exits non-zero.
pub fn run(cmd: AuditCmd) -> miette::Result<()> {
    match cmd {
        AuditCmd::Verify {
            skip_decode,
            key,
            dir,
            db,
        } => verify(&dir.data_dir, &db, skip_decode, key.as_deref()),
        AuditCmd::Proof { entry, dir, db } => proof(&dir.data_dir, &db, entry),
        AuditCmd::Checkpoint { dir, db } => {
            let (note, _) = current_checkpoint(&dir.data_dir, &db)?;
            print!("{}", note.to_text());
            Ok(())
        }
        AuditCmd::Witness {
            key: Some(key),
            check: Some(note),
            dir,
            ..
        } => witness_check(&dir.data_dir, &key, &note),
        AuditCmd::Witness {
            key,
            url,
            ca,
            check: None,
            state,
            dir,
        } => {
            let how = match (key, url) {
                (_, Some(url)) => Cosigner::Remote { url, ca },
                (Some(key), None) => {
                    let state = state.unwrap_or_else(|| key.with_extension("state"));
                    Cosigner::Local { key, state }
                }
                (None, None) => return Err(miette!("give --key FILE or --url URL")),
            };
            witness_sign(&dir.data_dir, &how)
        }
        AuditCmd::Witness { .. } => Err(miette!("--check needs --key (the witness's public key)")),
    }
}

fn ledger_verifier(data_dir: &Path) -> miette::Result<NoteVerifier> {
    audit::ledger_verifier(data_dir).map_err(report)
}

pub(crate) fn ledger_signer(data_dir: &Path) -> miette::Result<NoteSigner> {
    audit::ledger_signer(data_dir).map_err(report)
}

/// An audit step's error as a diagnostic.
fn report(e: AuditError) -> miette::Report {
    match e {
        AuditError::Store(source) => {
            miette::Report::from_err(source).wrap_err("storing the checkpoint")
        }
        AuditError::Key(e) => miette::Report::from_err(e),
        other => miette!("{other}"),
    }
}

fn verify(
    data_dir: &Path,
    db: &Database,
    skip_decode: bool,
    key: Option<&Path>,
) -> miette::Result<()> {
    let verifier = match key {
        Some(k) => load_verifier(k).into_diagnostic()?,
        None => ledger_verifier(data_dir)?,
    };
    let depth = if skip_decode {
        Depth::Integrity
    } else {
        Depth::Full
    };
    let result = match db.log()? {
        Some(mut log) => log.verify(&verifier, depth),
        None => verify_with(&ledger_dir(data_dir), &verifier, depth),
    };
    match result {
        Ok(r) => {
            if r.latest.is_none() {
                // Nothing signed vouches for anything: an empty ledger, or one whose history was
                // removed. Never OK (a witness or a kept checkpoint tells the two apart).
                return Err(miette!(
                    help = "a ledger with history always has a signed commit; if it had any, compare with a checkpoint you kept (`tidegate evidence verify --since`) or a witness (`tidegate audit witness --check`)",
                    "ledger verification FAILED: no signed commit, so nothing is verified ({} entries, {} checkpoint files)",
                    r.entries,
                    r.checkpoints
                ));
            }
            let covered = r.latest.as_ref().map_or(0, |cp| cp.size);
            if covered < r.entries {
                // Only the PostgreSQL ledger, which has no per-commit signatures yet, gets here.
                return Err(miette!(
                    "ledger verification FAILED: entries {covered}..{} are covered by no signed checkpoint (unverified)",
                    r.entries
                ));
            }
            println!(
                "OK: {} entries verified; {} chained commits (the newest one's signature vouches for all) and {} checkpoint files verified",
                r.entries, r.commits, r.checkpoints
            );
            if let Some(cp) = r.latest {
                println!(
                    "latest checkpoint: size {} root {}",
                    cp.size,
                    hex::encode(cp.root)
                );
            }
            let quarantine = ledger_dir(data_dir).join("quarantine");
            let aside =
                std::fs::read_dir(&quarantine).map_or(0, |d| d.filter_map(Result::ok).count());
            if aside > 0 {
                println!(
                    "note: {} holds {aside} set-aside piece(s): bytes found past the last signed commit (an interrupted write, or entries no ledger key sealed); they are not part of the ledger and were never acknowledged; inspect them",
                    quarantine.display()
                );
            }
            if let Some((file, offset)) = r.torn_tail {
                println!("note: {file} ends in an unacknowledged partial write at byte {offset}; the next open sets it aside under ledger/quarantine/");
            }
            Ok(())
        }
        Err(e) => Err(miette!("ledger verification FAILED: {e}")),
    }
}

/// The log as far as its signed commits vouch for it, with the newest commit's note; entries
/// past the newest commit are left out, with a note.
fn sealed_log(data_dir: &Path) -> miette::Result<(SignedNote, LogContents)> {
    Ok(noted(audit::sealed_log(data_dir).map_err(report)?))
}

fn noted(v: audit::Vouched) -> (SignedNote, LogContents) {
    if v.unsealed > 0 {
        eprintln!(
            "note: {} entries from index {} are sealed by no signed commit (never acknowledged, or forged); they are left out",
            v.unsealed, v.unsealed_from
        );
    }
    (v.note, v.log)
}

/// The checkpoint for the current log size, signing and storing one if needed; with the log's
/// entries and tree (from the files, or from the database).
pub(crate) fn current_checkpoint(
    data_dir: &Path,
    db: &Database,
) -> miette::Result<(SignedNote, LogContents)> {
    let signer = ledger_signer(data_dir)?;
    if let Some(mut pg) = db.log()? {
        return audit::current_checkpoint_pg(&signer, &mut pg).map_err(report);
    }
    Ok(noted(audit::current_checkpoint(data_dir).map_err(report)?))
}

fn proof(data_dir: &Path, db: &Database, entry: u64) -> miette::Result<()> {
    let (note, log) = current_checkpoint(data_dir, db)?;
    let cp = note.checkpoint().into_diagnostic()?;
    let bytes = usize::try_from(entry)
        .ok()
        .and_then(|i| log.entries.get(i))
        .ok_or_else(|| {
            miette!(
                "no entry {entry}: the ledger holds {} entries",
                log.entries.len()
            )
        })?;
    let proof = log.tree.inclusion_proof(entry, cp.size).into_diagnostic()?;
    let leaf = tidegate_ledger::merkle::leaf_hash(bytes);
    verify_inclusion(&leaf, entry, cp.size, &proof, &cp.root).into_diagnostic()?;
    let out = serde_json::json!({
        "index": entry,
        "tree_size": cp.size,
        "leaf_hash": hex::encode(leaf),
        "entry": String::from_utf8_lossy(bytes),
        "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
        "root": hex::encode(cp.root),
        "checkpoint": note.to_text(),
    });
    println!("{}", serde_json::to_string_pretty(&out).into_diagnostic()?);
    Ok(())
}

/// Who co-signs: a witness key on this machine (with its state file), or a witness service.
enum Cosigner {
    Local { key: PathBuf, state: PathBuf },
    Remote { url: String, ca: Option<PathBuf> },
}

fn witness_sign(data_dir: &Path, how: &Cosigner) -> miette::Result<()> {
    let log_key = ledger_verifier(data_dir)?;
    let (mut note, log) = sealed_log(data_dir).wrap_err("refusing to ask for a co-signature")?;
    let cp = note.checkpoint().into_diagnostic()?;
    let rewritten = |e: WitnessError| report(audit::witness_refusal(e));
    let proof_from = |old: u64| audit::witness_proof(&log, old, cp.size).map_err(report);
    let sigs = match how {
        Cosigner::Local { key, state } => {
            let key = keys::load_or_create_cosigner(key, "tidegate-witness").into_diagnostic()?;
            let current =
                tidegate_server::witness::load_state(state).map_err(|e| miette!("{e}"))?;
            let witness = Witness {
                key,
                logs: [(cp.origin.clone(), log_key)].into(),
            };
            let old = current.logs.get(&cp.origin).map_or(0, |h| h.size);
            let body = add_checkpoint_request(old, &proof_from(old)?, &note);
            let (next, sigs) = witness
                .add_checkpoint(&current, &body, crate::clock::now()?)
                .map_err(rewritten)?;
            let json = serde_json::to_vec_pretty(&next).into_diagnostic()?;
            write_atomic(state, &json)
                .map_err(|e| miette!("witness state {}: {e}", state.display()))?;
            sigs
        }
        Cosigner::Remote { url, ca } => {
            ask_witness(url, ca.as_deref(), &note, &proof_from, rewritten)?
        }
    };
    add_cosignatures(&mut note, &sigs).map_err(|e| miette!("{e}"))?;
    let text = note.to_text();
    write_atomic(
        &checkpoint_path(&ledger_dir(data_dir), cp.size),
        text.as_bytes(),
    )
    .into_diagnostic()?;
    eprintln!("co-signed checkpoint at size {}", cp.size);
    print!("{text}");
    Ok(())
}

/// The C2SP tlog-witness exchange: `old` starts at 0, and a 409 answer gives the witness's
/// size, from which the consistency proof is sent once more.
fn ask_witness(
    url: &str,
    ca: Option<&Path>,
    note: &SignedNote,
    proof_from: &dyn Fn(u64) -> miette::Result<Vec<[u8; 32]>>,
    rewritten: impl Fn(WitnessError) -> miette::Report,
) -> miette::Result<String> {
    let ca = tidegate_client::find_ca(ca, None)?;
    let agent =
        tidegate_client::agent_trusting(std::time::Duration::from_secs(30), ca.as_deref(), None)?;
    let endpoint = format!("{}/add-checkpoint", url.trim_end_matches('/'));
    let mut old = 0u64;
    for _ in 0..2 {
        let body = add_checkpoint_request(old, &proof_from(old)?, note);
        let mut resp = agent
            .post(&endpoint)
            .header("Content-Type", "text/plain")
            .send(body.as_bytes())
            .map_err(|e| miette!("witness {url}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| miette!("witness {url}: {e}"))?;
        match status {
            200 => return Ok(text),
            409 => {
                old = text.trim().parse().map_err(|_| {
                    miette!("witness {url} answered 409 without its size: {text:?}")
                })?;
            }
            422 => {
                return Err(rewritten(WitnessError::Inconsistent {
                    from: old,
                    why: format!("witness {url}: {}", text.trim()),
                }))
            }
            _ => return Err(miette!("witness {url} refused ({status}): {}", text.trim())),
        }
    }
    Err(miette!("witness {url} keeps changing its size; try again"))
}

fn witness_check(data_dir: &Path, key: &Path, note_path: &Path) -> miette::Result<()> {
    let witness = keys::load_verifier(key).into_diagnostic()?;
    let log_key = ledger_verifier(data_dir)?;
    let text = fs::read_to_string(note_path).into_diagnostic()?;
    let note = SignedNote::parse(&text).map_err(|e| miette!("{}: {e}", note_path.display()))?;
    note.verify(&witness)
        .map_err(|e| miette!("witness signature: {e}"))?;
    note.verify(&log_key)
        .map_err(|e| miette!("log signature: {e}"))?;
    let cp = note.checkpoint().into_diagnostic()?;
    let (_, log) = sealed_log(data_dir)?;
    let (n, root) = (log.tree.len(), log.tree.root());
    audit::consistent(&log, &cp, n, &root).map_err(report)?;
    println!(
        "OK: checkpoint at size {} is signed by the log and by witness {}, and the current log ({n} entries) extends it",
        cp.size, witness.name
    );
    Ok(())
}
