//! The `tidegate` binary: parses the command line and hands each command to its module.

mod audit;
mod bench_ledger;
mod evidence;
mod retention;

use clap::{Parser, Subcommand};

/// tidegate: where may this job run, what data may move, and who can prove it later.
#[derive(Debug, Parser)]
#[command(name = "tidegate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Audit the evidence ledger: verify it, print proofs and checkpoints, witness checkpoints.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Write and verify evidence bundles about a job, dataset or model.
    #[command(subcommand)]
    Evidence(evidence::EvidenceCmd),
    /// Retention rules, legal holds and the deletion plan.
    #[command(subcommand)]
    Retention(retention::RetentionCmd),
    /// Measure components on this machine.
    #[command(subcommand)]
    Bench(BenchCmd),
}

#[derive(Debug, Subcommand)]
enum BenchCmd {
    /// Durable appends/s with concurrent writers (group commit), verification entries/s and proof
    /// times, next to the naive ways (fsync per append; SQLite hash chain) in the same run.
    Ledger(bench_ledger::BenchLedgerArgs),
}

fn main() -> miette::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Audit(cmd) => audit::run(cmd),
        Command::Evidence(cmd) => evidence::run(cmd),
        Command::Retention(cmd) => retention::run(cmd),
        Command::Bench(BenchCmd::Ledger(args)) => bench_ledger::run(&args),
    }
}
