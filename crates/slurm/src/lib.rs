//! tidegate's Slurm backend: [`SlurmExecutor`] implements [`tidegate_exec::Executor`] with the
//! Slurm command-line tools (`sbatch --parsable`, `squeue`, `scontrol show job`, `sacct -c`,
//! `scancel`), blocking `std::process` calls with a time limit each and no async runtime.
//!
//! - [`Renderer`]: how a launch becomes an sbatch script is not decided here: the executor is
//!   given a renderer (`tidegate_render::slurm::script`, which `tidegate render --target slurm`
//!   prints with), hands it the launch, its placement and the job's directory, and submits the
//!   text it returns.
//! - [`status`]: parsing Slurm's answers and mapping its job states to a run status.
//! - [`runner`]: the [`Runner`] trait all commands go through, so tests can use fake programs.
//! - [`SlurmExecutor`] and [`SlurmConfig`]: submission, idempotent start per tidegate job id
//!   (the Slurm id is recorded in a state file; an interrupted submission is found again by its
//!   `--comment`), tracking, cancel, logs.
//!
//! Slurm does not need slurmdbd for any of it: finished jobs are read from `scontrol` while
//! slurmctld keeps them and from the jobcomp record (`sacct -c`) after.

#![warn(missing_docs, unreachable_pub)]

mod executor;
pub mod runner;
pub mod status;

pub use executor::{comment, is_capacity_error, Renderer, SlurmConfig, SlurmExecutor};
pub use runner::{CmdOutput, Runner, SystemRunner};
