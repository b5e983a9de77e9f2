//! `tidegate retention plan`: what the retention rules will delete, when, and why.

use miette::{miette, IntoDiagnostic as _};
use tidegate_ledger::bundle::format_time;
use tidegate_ledger::ledger::{ledger_dir, read_log};
use tidegate_ledger::retention::{default_rules, plan, Status};
use tidegate_ledger::Entry;

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
}

/// Run a retention command.
///
/// # Errors
/// When the ledger cannot be read or is damaged.
pub fn run(cmd: RetentionCmd) -> miette::Result<()> {
    let RetentionCmd::Plan { now_ms, dir } = cmd;
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
