//! The `tidegate` binary: parses the command line and hands each command to its module.

use clap::{Parser, Subcommand};

/// tidegate: where may this job run, what data may move, and who can prove it later.
#[derive(Debug, Parser)]
#[command(name = "tidegate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {}

fn main() -> miette::Result<()> {
    let cli = Cli::parse();
    match cli.command {}
}
