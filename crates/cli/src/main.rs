//! The `tidegate` binary: parses the command line and hands each command to its module.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod artifact;
mod clock;
mod lineage;
mod token;

/// tidegate: where may this job run, what data may move, and who can prove it later.
#[derive(Debug, Parser)]
#[command(name = "tidegate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Content-addressed, encrypted artifacts: put, get, verify, sign, attest, promote, list.
    Artifact {
        /// Data directory (else $TIDEGATE_DATA_DIR, else ./.tidegate).
        #[arg(
            long,
            env = "TIDEGATE_DATA_DIR",
            default_value = ".tidegate",
            global = true
        )]
        data_dir: PathBuf,
        #[command(subcommand)]
        cmd: artifact::ArtifactCmd,
    },
    /// Scoped short-lived tokens: mint, inspect, attenuate, check; root key rotation.
    Token {
        /// Data directory (else $TIDEGATE_DATA_DIR, else ./.tidegate).
        #[arg(
            long,
            env = "TIDEGATE_DATA_DIR",
            default_value = ".tidegate",
            global = true
        )]
        data_dir: PathBuf,
        #[command(subcommand)]
        cmd: token::TokenCmd,
    },
    /// Print the lineage tree of a dataset version, job, artifact or deployment.
    Lineage {
        /// Data directory (else $TIDEGATE_DATA_DIR, else ./.tidegate).
        #[arg(long, env = "TIDEGATE_DATA_DIR", default_value = ".tidegate")]
        data_dir: PathBuf,
        #[command(flatten)]
        args: lineage::LineageArgs,
    },
}

fn main() -> miette::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Artifact { data_dir, cmd } => artifact::run(&data_dir, cmd),
        Command::Token { data_dir, cmd } => token::run(&data_dir, cmd),
        Command::Lineage { data_dir, args } => lineage::run(&data_dir, &args),
    }
}
