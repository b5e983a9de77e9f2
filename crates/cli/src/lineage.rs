//! `tidegate lineage ID [--up|--down]`: print the lineage tree of a dataset version, job,
//! artifact or deployment.

use std::path::Path;

use clap::Args;
use miette::miette;
use tidegate_artifacts::lineage::{Direction, LineageLog};

/// Arguments of `tidegate lineage`.
#[derive(Debug, Args)]
pub struct LineageArgs {
    /// A node id: `dataset:NAME@VERSION`, `job:ID`, `artifact:sha256:HEX`, `deployment:ID`;
    /// the type prefix may be left out when the rest is unambiguous (e.g. `sha256:...`).
    pub id: String,
    /// Show where it came from (inputs, jobs, datasets). The default.
    #[arg(long, conflicts_with = "down")]
    pub up: bool,
    /// Show what came from it (jobs, artifacts, deployments).
    #[arg(long)]
    pub down: bool,
}

/// Prints the tree.
///
/// # Errors
/// An unknown id or an unreadable lineage log.
pub fn run(data_dir: &Path, args: &LineageArgs) -> miette::Result<()> {
    let graph = LineageLog::new(data_dir)
        .graph()
        .map_err(|e| miette!("{e}"))?;
    let id = graph.resolve(&args.id).ok_or_else(|| {
        miette!(
            help = "ids look like dataset:claims@v3, job:job-42, artifact:sha256:<hex>",
            "{} is not in the lineage log",
            args.id
        )
    })?;
    let dir = if args.down {
        Direction::Down
    } else {
        Direction::Up
    };
    print!("{}", graph.render(&id, dir));
    Ok(())
}
