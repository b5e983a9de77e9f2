//! `tidegate bench ...`: benchmarks run as commands, each measuring the naive way in the same run.
//!
//! One module a benchmark, each with its clap arguments and its `run`: [`placement`] (placement
//! decisions per second against a fair Cedar baseline), [`ledger`] (durable appends, verification
//! and proofs against fsync per append and a SQLite hash chain), [`sanitize`] (sanitizer MB/s
//! against Presidio and pandas), [`submit`] (durable API submissions per second against `sbatch`)
//! and [`slurm`] (the Slurm executor's submissions against raw `sbatch`). [`BenchCmd`] is the
//! `tidegate bench` subcommand and [`run`] dispatches it; the binary only parses and calls it.

#![warn(missing_docs, unreachable_pub)]

use clap::Subcommand;

pub mod ledger;
pub mod placement;
pub mod sanitize;
pub mod slurm;
pub mod submit;

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Placement decisions per second over a generated backlog (and over one where no two jobs
    /// share what the policies read), against placing each job as a competent Cedar user would
    /// (one entity set a job, every zone authorised), on the same threads; checks both ways
    /// decide identically.
    Placement(placement::PlacementArgs),
    /// Durable appends/s with concurrent writers (group commit), verification entries/s and proof
    /// times, next to the naive ways (fsync per append; SQLite hash chain) in the same run.
    Ledger(ledger::BenchLedgerArgs),
    /// Sanitizer MB/s end to end on generated Synthea-schema tables, next to Presidio
    /// (presidio-structured) and a plain pandas + HMAC script on the same rows.
    Sanitize(sanitize::BenchSanitizeArgs),
    /// Durable submissions/s through the HTTP API with concurrent clients (p50/p99), next to the
    /// same number of `sbatch` submissions when Slurm is installed.
    Submit(submit::BenchSubmitArgs),
    /// Submissions/s through the Slurm executor's start next to raw `sbatch --wrap true`.
    Slurm(slurm::BenchSlurmArgs),
}

/// Runs a benchmark.
pub fn run(c: &BenchCmd) -> miette::Result<()> {
    match c {
        BenchCmd::Placement(a) => placement::run(a),
        BenchCmd::Ledger(a) => ledger::run(a),
        BenchCmd::Sanitize(a) => sanitize::run(a),
        BenchCmd::Submit(a) => submit::run(a),
        BenchCmd::Slurm(a) => slurm::run(a),
    }
}
