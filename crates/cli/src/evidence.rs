//! `tidegate evidence ...`: write an evidence bundle about a job, dataset or model, and verify
//! one offline.

use std::path::{Path, PathBuf};

use miette::{miette, IntoDiagnostic as _};
use tidegate_ledger::bundle::{build_bundle, encode_bundle, summary, verify_bundle_with, Require};
use tidegate_ledger::evidence::bundle_since;
use tidegate_ledger::keys::{load_verifier, public_path};
use tidegate_ledger::ledger::{document_path, key_path, write_atomic};
use tidegate_ledger::{SignedNote, Subject, SubjectKind};

use crate::audit::{current_checkpoint, ledger_signer, DataDir, Database};

/// Evidence bundles: one file an auditor verifies offline with the ledger's public key.
#[derive(Debug, clap::Subcommand)]
pub enum EvidenceCmd {
    /// Bundle every ledger entry about a job (proven complete by the signed subject map) and the
    /// provenance of what it used (entries about its datasets, models, artifacts and tokens that
    /// concern no other job: a selection, each proven included), with inclusion proofs, the
    /// signed checkpoint, witness co-signatures and attached documents.
    Job(Target),
    /// Bundle every ledger entry about a dataset (proven complete) and its lineage neighbours
    /// (each proven included).
    Dataset(Target),
    /// Bundle every ledger entry about a model (proven complete) and its lineage neighbours
    /// (each proven included).
    Model(Target),
    /// Verify a bundle offline (no data dir, no server) and print a plain summary: where it ran
    /// and why that was allowed; what data moved, where, when and in what form; who approved
    /// what. Any changed byte fails verification, naming the entry, proof, checkpoint signature
    /// or document affected.
    Verify {
        /// The bundle file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The ledger's public key file (`<data-dir>/keys/ledger.pub`, `name+keyid+base64`).
        #[arg(long, value_name = "PUBKEY")]
        key: PathBuf,
        /// Require a co-signature by this witness (its public key file, as `tidegate witness`
        /// prints) on a checkpoint the bundle's checkpoint is proven to extend (repeatable).
        #[arg(long = "witness", value_name = "PUBKEY")]
        witnesses: Vec<PathBuf>,
        /// A checkpoint you kept earlier (`tidegate audit checkpoint` output): require the bundle
        /// to prove its checkpoint extends it, so no history before it was rewritten or cut.
        #[arg(long, value_name = "CHECKPOINT")]
        since: Option<PathBuf>,
    },
}

/// Which subject to bundle and where to write it.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The subject's identifier as recorded in the ledger: a job id (`evidence job`), a
    /// dataset version `NAME@VERSION` (`evidence dataset`), a model's digest `sha256:HEX`
    /// (`evidence model`).
    #[arg(value_name = "ID")]
    pub id: String,
    /// Where to write the bundle (JSON).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub dir: DataDir,
    /// The ledger's entries in PostgreSQL (as `tidegate up --database` keeps them).
    #[command(flatten)]
    pub db: Database,
    /// A checkpoint an auditor kept earlier: the bundle carries the proof that its checkpoint
    /// extends it (refused if the log does not).
    #[arg(long, value_name = "CHECKPOINT")]
    pub since: Option<PathBuf>,
}

/// Run an evidence command.
///
/// # Errors
/// Failures to build, write or verify a bundle; the process exits non-zero.
pub fn run(cmd: EvidenceCmd) -> miette::Result<()> {
    match cmd {
        EvidenceCmd::Job(t) => write(SubjectKind::Job, &t),
        EvidenceCmd::Dataset(t) => write(SubjectKind::Dataset, &t),
        EvidenceCmd::Model(t) => write(SubjectKind::Model, &t),
        EvidenceCmd::Verify {
            file,
            key,
            witnesses,
            since,
        } => verify(&file, &key, &witnesses, since.as_deref()),
    }
}

fn write(kind: SubjectKind, t: &Target) -> miette::Result<()> {
    let subject = Subject::new(kind, t.id.clone()).map_err(|e| miette!("{e}"))?;
    let since = t.since.as_deref().map(read_note).transpose()?;
    let bundle = if t.db.database.is_some() {
        let (note, mut log) = current_checkpoint(&t.dir.data_dir, &t.db)?;
        let verifier = ledger_signer(&t.dir.data_dir)?.verifier();
        let anchors: Vec<SignedNote> = since.into_iter().collect();
        build_bundle(
            &log.entries,
            &log.tree,
            &mut log.subjects,
            &note,
            &anchors,
            &verifier,
            &subject,
            |d| std::fs::read(document_path(&t.dir.data_dir, d)).ok(),
        )
        .map_err(|e| miette!("{e}"))?
    } else {
        bundle_since(&t.dir.data_dir, &subject, since.as_ref()).map_err(|e| miette!("{e}"))?
    };
    let bytes = encode_bundle(&bundle).map_err(|e| miette!("{e}"))?;
    write_atomic(&t.out, &bytes).into_diagnostic()?;
    println!(
        "wrote {}: {} entries, {} documents; verify offline with:\n  tidegate evidence verify {} --key {}",
        t.out.display(),
        bundle.entries.len(),
        bundle.documents.len(),
        t.out.display(),
        public_path(&key_path(&t.dir.data_dir)).display()
    );
    Ok(())
}

fn read_note(path: &Path) -> miette::Result<SignedNote> {
    let text = std::fs::read_to_string(path).map_err(|e| miette!("{}: {e}", path.display()))?;
    SignedNote::parse(&text).map_err(|e| miette!("{}: {e}", path.display()))
}

fn verify(
    file: &Path,
    key: &Path,
    witnesses: &[PathBuf],
    since: Option<&Path>,
) -> miette::Result<()> {
    let verifier = load_verifier(key).into_diagnostic()?;
    let require = Require {
        witnesses: witnesses
            .iter()
            .map(|w| load_verifier(w).into_diagnostic())
            .collect::<miette::Result<_>>()?,
        since: since.map(read_note).transpose()?,
    };
    let bytes = std::fs::read(file).into_diagnostic()?;
    match verify_bundle_with(&bytes, &verifier, &require) {
        Ok(v) => {
            print!("{}", summary(&v));
            Ok(())
        }
        Err(e) => Err(miette!(
            "evidence bundle {} FAILED verification: {e}",
            file.display()
        )),
    }
}
