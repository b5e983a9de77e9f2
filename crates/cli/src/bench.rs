//! `tidegate bench ...`: benchmarks run as commands.

use clap::Subcommand;

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCmd {}

/// Runs a benchmark.
pub fn run(c: &BenchCmd) -> miette::Result<()> {
    match *c {}
}
