//! `tidegate retention plan`: what the retention rules will delete, when, and why.

use std::path::{Path, PathBuf};

use miette::{miette, IntoDiagnostic as _};
use tidegate_ledger::bundle::format_time;
use tidegate_ledger::keys::{load_verifier, public_path};
use tidegate_ledger::ledger::{key_path, ledger_dir, put_document, read_log, read_sealed};
use tidegate_ledger::retention::{default_rules, holds_on, plan, Hold, Status};
use tidegate_ledger::{
    Action, Entry, EntryDraft, Ident, Ledger, LedgerOptions, Subject, SubjectKind,
};

use crate::audit::DataDir;

/// Retention: rules per object kind, legal holds, tombstones.
#[derive(Debug, clap::Subcommand)]
pub enum RetentionCmd {
    /// Show every object under retention (from the ledger): its kind, when it was recorded, when
    /// its rule deletes it and why, and whether it is due, held by a legal hold, or already
    /// deleted (with the index of its tombstone entry). Ends with the rules and their
    /// justifications.
    Plan {
        /// Evaluate the plan as of this time (unix milliseconds) instead of now.
        #[arg(long, value_name = "MS")]
        now_ms: Option<u64>,
        #[command(flatten)]
        dir: DataDir,
    },
    /// Place a legal hold on stored bytes (`artifact:sha256:...`, `model:sha256:...`,
    /// `checkpoint:sha256:...`; a job or a dataset name holds no bytes and is refused): while it stands, `tidegate artifact shred`
    /// refuses to destroy the subject's data and `retention plan` shows it held. Signed for by an
    /// approver key in the data directory's keyring; the hold and its order document are in the
    /// evidence ledger before it takes effect.
    Hold(HoldArgs),
    /// Release a legal hold (approver key; ledgered before it takes effect).
    Release(HoldArgs),
}

/// Arguments of `retention hold` and `retention release`.
#[derive(Debug, clap::Args)]
pub struct HoldArgs {
    /// What the hold covers, as `KIND:ID` (kinds: job, dataset, model, artifact, checkpoint).
    #[arg(long, value_name = "KIND:ID")]
    pub subject: String,
    /// The order (court order, counsel's instruction): a file kept as a ledger document.
    #[arg(long, value_name = "FILE")]
    pub order: PathBuf,
    /// The approver key id (`ed25519:...`) from the keyring, with the approver role.
    #[arg(long, value_name = "KEY_ID")]
    pub key: String,
    #[command(flatten)]
    pub dir: DataDir,
}

/// The subject of a hold: a stored artifact by its exact digest. A hold that names anything else
/// (a dataset or job name, a digest in another spelling, one not stored here) would be accepted
/// and protect nothing, so it is refused.
fn parse_subject(s: &str, data_dir: &Path) -> miette::Result<Subject> {
    let (kind, id) = s
        .split_once(':')
        .ok_or_else(|| miette!("--subject: {s:?} is not KIND:sha256:HEX"))?;
    let kind = match kind {
        "model" => SubjectKind::Model,
        "artifact" => SubjectKind::Artifact,
        "checkpoint" => SubjectKind::Checkpoint,
        "dataset" | "job" => {
            return Err(miette!(
                help = "hold each of its stored snapshots or outputs: `--subject artifact:sha256:...` (see `tidegate artifact list`)",
                "--subject: a {kind} hold would protect no stored bytes; holds name stored artifacts by digest"
            ))
        }
        other => {
            return Err(miette!(
                "--subject: kind {other:?} cannot be held (model, artifact, checkpoint)"
            ))
        }
    };
    let canonical = id.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if !canonical {
        return Err(miette!(
            "--subject: {id:?} is not a digest as tidegate writes it (`sha256:` and 64 lower-case hex digits)"
        ));
    }
    let digest: tidegate_artifacts::Digest = id.parse().map_err(|e| miette!("--subject: {e}"))?;
    let store = tidegate_artifacts::ArtifactStore::open(data_dir).map_err(|e| miette!("{e}"))?;
    if store.record(&digest).is_err() {
        return Err(miette!(
            "--subject: {id} is not stored in {}; a hold on it would protect nothing",
            data_dir.display()
        ));
    }
    Subject::new(kind, id).map_err(|e| miette!("--subject: {e}"))
}

fn hold(a: &HoldArgs, set: bool) -> miette::Result<()> {
    let subject = parse_subject(&a.subject, &a.dir.data_dir)?;
    let order =
        std::fs::read(&a.order).map_err(|e| miette!("--order {}: {e}", a.order.display()))?;
    if order.iter().all(u8::is_ascii_whitespace) {
        return Err(miette!("--order {}: the order is empty", a.order.display()));
    }
    let now = crate::clock::now()?;
    let data = &a.dir.data_dir;
    // The private key must be here and valid now: holding the id alone signs for nothing.
    crate::sanitize::approver_signer(
        data,
        &a.key,
        now,
        "only an approver sets or releases a legal hold",
    )?;
    let actor = Ident::new(&a.key).map_err(|e| miette!("--key: {e}"))?;
    let ledger = Ledger::open(data, LedgerOptions::default()).map_err(|e| miette!("{e}"))?;
    let active = held(data, subject.id.as_str())?;
    if set
        && active
            .iter()
            .any(|h| h.order == tidegate_ledger::Digest::of(&order))
    {
        return Err(miette!(
            "{} is already held under this order (entry {})",
            a.subject,
            active[0].index
        ));
    }
    if !set && active.is_empty() {
        return Err(miette!("{} is under no legal hold", a.subject));
    }
    // A release cites its own order: the hold's order never releases it.
    if !set
        && active
            .iter()
            .any(|h| h.order == tidegate_ledger::Digest::of(&order))
    {
        return Err(miette!(
            "--order: that is the order that placed the hold; a release needs its own order (e.g. the court's release)"
        ));
    }
    let doc = put_document(data, &order).into_diagnostic()?;
    let action = if set {
        Action::RetentionHoldSet { order: doc.clone() }
    } else {
        Action::RetentionHoldReleased { order: doc.clone() }
    };
    let draft = EntryDraft::new(actor, action, vec![subject]).map_err(|e| miette!("{e}"))?;
    let r = ledger
        .append(draft, now * 1000)
        .map_err(|e| miette!("the hold was not recorded, so it is not in effect: {e}"))?;
    ledger.close().map_err(|e| miette!("{e}"))?;
    println!(
        "legal hold {} on {} by {} (order {doc}, ledger entry {})",
        if set { "placed" } else { "released" },
        a.subject,
        a.key,
        r.index
    );
    Ok(())
}

/// The legal holds in force on subjects whose id is `id`, from the data directory's ledger as
/// its signed commits vouch for it.
///
/// # Errors
/// When the ledger cannot be read or does not match what it signed.
pub fn held(data: &Path, id: &str) -> miette::Result<Vec<Hold>> {
    let verifier = load_verifier(&public_path(&key_path(data))).map_err(|e| miette!("{e}"))?;
    let sealed = read_sealed(&ledger_dir(data), &verifier, true)
        .map_err(|e| miette!("the ledger does not match what it signed ({e}); holds cannot be checked, so nothing is destroyed"))?;
    let entries = sealed
        .log
        .entries
        .iter()
        .enumerate()
        .map(|(i, b)| Entry::decode(b).map_err(|e| miette!("entry {i}: {e}")))
        .collect::<miette::Result<Vec<_>>>()?;
    Ok(holds_on(&entries, id))
}

/// Run a retention command.
///
/// # Errors
/// When the ledger cannot be read or is damaged.
pub fn run(cmd: RetentionCmd) -> miette::Result<()> {
    let (now_ms, dir) = match cmd {
        RetentionCmd::Plan { now_ms, dir } => (now_ms, dir),
        RetentionCmd::Hold(a) => return hold(&a, true),
        RetentionCmd::Release(a) => return hold(&a, false),
    };
    let now = match now_ms {
        Some(n) => n,
        None => {
            let d = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .into_diagnostic()?;
            u64::try_from(d.as_millis()).into_diagnostic()?
        }
    };
    let log = read_log(&ledger_dir(&dir.data_dir), true).into_diagnostic()?;
    if let Some(d) = log.damage {
        return Err(miette!(
            "ledger is damaged at {d}; run `tidegate audit verify`"
        ));
    }
    let entries = log
        .entries
        .iter()
        .enumerate()
        .map(|(i, b)| Entry::decode(b).map_err(|e| miette!("entry {i}: {e}")))
        .collect::<miette::Result<Vec<_>>>()?;
    let rules = default_rules();
    let items = plan(&entries, &rules, now);
    println!(
        "retention plan as of {} ({} objects)",
        format_time(now),
        items.len()
    );
    for p in &items {
        let status = match p.status {
            Status::Deleted { tombstone } => format!("deleted (tombstone entry {tombstone})"),
            Status::Held => "DUE BUT HELD (legal hold)".to_owned(),
            Status::Due => "DUE NOW".to_owned(),
            Status::Scheduled => "scheduled".to_owned(),
        };
        let subjects = p
            .subjects
            .iter()
            .map(|s| format!("{} {}", s.kind.as_str(), s.id))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "  {}  {:<16} delete at {}  rule {:<21} {status}  [{}; recorded at entry {}]",
            p.object,
            p.kind.as_str(),
            format_time(p.due_ms),
            p.rule,
            subjects,
            p.index
        );
    }
    println!("\nrules:");
    for r in &rules {
        println!(
            "  {:<21} {:<16} keep {:>4} days: {}",
            r.id,
            r.kind.as_str(),
            r.keep_days,
            r.justification
        );
    }
    Ok(())
}
