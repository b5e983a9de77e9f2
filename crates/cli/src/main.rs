//! The `tidegate` binary: parses the command line and hands each command to its module.

mod agent;
mod artifact;
mod audit;
mod cert;
mod checkpoint;
mod clock;
mod dataset;
mod demo;
mod demo_training;
mod evidence;
mod fleet_cmds;
mod jobs;
mod ledgered;
mod lineage;
mod record;
mod render;
mod retention;
mod sanitize;
mod sim;
mod token;
mod train;
mod up;
mod witness;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// tidegate: the control plane for regulated AI on private, public and edge GPUs.
///
/// For every job, dataset and model it answers: where may this job run, what data may move,
/// and who can prove it later.
///
/// Start the control plane with `tidegate up` and watch it work with `tidegate demo burst`.
/// Without a server: `tidegate check` validates a fleet directory, `tidegate explain --job FILE`
/// shows where one job may run and why, and `tidegate plan --jobs DIR` plans a whole rollout.
#[derive(Debug, Parser)]
#[command(
    name = "tidegate",
    version,
    about,
    long_about,
    propagate_version = true
)]
struct Cli {
    /// Log filter (also RUST_LOG), e.g. `info` or `tidegate_policy=debug`.
    #[arg(long, global = true, env = "TIDEGATE_LOG", default_value = "warn")]
    log: String,
    /// Log format on standard error: `text` for people, `json` (one object per line, with every
    /// field) for log pipelines.
    #[arg(long, global = true, env = "TIDEGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the control plane (API, scheduler, executors, evidence ledger) on this machine.
    Up(up::UpArgs),
    /// Submit job manifests to the control plane.
    Submit(jobs::SubmitArgs),
    /// List jobs known to the control plane.
    Jobs(jobs::JobsArgs),
    /// Show one job: state, placement explanation and events.
    Job(jobs::JobArgs),
    /// Cancel a job.
    Cancel(jobs::CancelArgs),
    /// Print the end of a job's output.
    Logs(jobs::LogsArgs),
    /// Zones: load and condition; set a zone degraded, unreachable or throttled (drills, outages).
    #[command(subcommand)]
    Zone(jobs::ZoneCmd),
    /// The fleet in force on a running control plane: `fleet apply DIR` changes it live.
    #[command(subcommand)]
    Fleet(jobs::FleetCmd),
    /// Run a zone's work as an agent inside the zone (outbound connections only).
    Agent(agent::AgentArgs),
    /// Demonstrations against a running control plane.
    #[command(subcommand)]
    Demo(demo::DemoCmd),
    /// Validate a fleet directory, its policies and example jobs; every error names file and line.
    Check(fleet_cmds::CheckArgs),
    /// Explain where one job may run: per zone and pool, allowed or not, and why.
    Explain(fleet_cmds::ExplainArgs),
    /// Plan a rollout: for a directory of jobs, which zones each may use and what data would move.
    Plan(fleet_cmds::PlanArgs),
    /// Inspect the policy set: the generated Cedar schema, the baseline, the policy hash.
    #[command(subcommand)]
    Policy(fleet_cmds::PolicyCmd),
    /// Audit the evidence ledger: verify it, print proofs and checkpoints, witness checkpoints.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Workload certificates from the control plane's certificate authority, issued offline.
    #[command(subcommand)]
    Cert(cert::CertCmd),
    /// Write and verify evidence bundles about a job, dataset or model.
    #[command(subcommand)]
    Evidence(evidence::EvidenceCmd),
    /// Run a witness (C2SP tlog-witness over HTTP) that co-signs ledger checkpoints only when
    /// each extends the last one it co-signed.
    ///
    /// Run it where the control plane's operators cannot write (another zone, or the auditor's
    /// own machine): its key and its state file are what make a cut or rewritten history
    /// detectable, even by someone holding the control plane's data directory and ledger key.
    /// Control planes ask it with `tidegate audit witness --url URL` (the co-signed checkpoint is
    /// stored with the ledger's, and evidence bundles carry it); auditors then require it with
    /// `tidegate evidence verify BUNDLE --key LEDGER.pub --witness WITNESS.pub`. Checkpoints are
    /// public, signed data, but the hop between zones is still authenticated: it serves HTTPS
    /// with `--tls-cert`/`--tls-key` (e.g. from `tidegate cert server`), plain HTTP only on a
    /// loopback address.
    Witness(witness::WitnessArgs),
    /// Retention rules, legal holds and the deletion plan.
    #[command(subcommand)]
    Retention(retention::RetentionCmd),
    /// Content-addressed, encrypted artifacts: put, get, verify, sign, attest, promote, list.
    ///
    /// Two modes.
    ///
    /// Through the API (the default, when no data directory is given): put, get, list, verify
    /// and promote go to a running control plane (`tidegate up`), found with `--server` and
    /// `--token-file` (else `./.tidegate/server.url` and `./.tidegate/admin.token`). The server
    /// records each event in its evidence ledger before the effect; a job reads with `get
    /// --token FILE --zone ZONE`.
    ///
    /// Directly on a data directory (`--data-dir DIR` or $TIDEGATE_DATA_DIR), with no server
    /// running: every command, so an operator or an auditor can check a store offline. Every
    /// command that changes the store (put, sign, attest, promote, import, shred) or reads with a
    /// token (get --token) first records its event in the evidence ledger under
    /// `<data-dir>/ledger/` (created on first use; see `tidegate audit` and `tidegate evidence`),
    /// and also in `<data-dir>/artifacts/events.jsonl`. If the ledger cannot record (for example
    /// a running server holds it), the command is refused and nothing changes.
    Artifact {
        /// Work directly on this data directory, with no server (else $TIDEGATE_DATA_DIR; when
        /// neither is given, the command goes through the API).
        #[arg(long, env = "TIDEGATE_DATA_DIR", global = true)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        api: artifact::ApiArgs,
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
    /// Sanitize tables with a profile (drop, pseudonymise, generalise, scan); publishes the output
    /// atomically with a report saying whether a lower classification was earned.
    Sanitize(sanitize::SanitizeArgs),
    /// Dataset versions: register (content-addressed, classified, in a zone), list, show, and
    /// sanitize into a new version that is classified lower only when its checks pass.
    Dataset {
        #[command(flatten)]
        data: dataset::DataArgs,
        #[command(subcommand)]
        cmd: dataset::DatasetCmd,
    },
    /// Move a registered dataset version (or a narrow projection of its columns) into another
    /// zone, if policy, the egress route and the budget allow; refused transfers say why.
    Transfer(dataset::TransferArgs),
    /// The example training workload (logistic regression on transferred features) that
    /// `tidegate demo burst-training` runs as a job in the zone it bursts to.
    Train(train::TrainArgs),
    /// Job-side checkpoint steps: push a checkpoint out of its zone (kept, with exit code 75,
    /// when the zone's egress rules or an outage keep it from the destination).
    #[command(subcommand)]
    Checkpoint(checkpoint::CheckpointCmd),
    /// Replay a GPU-cluster job trace through the scheduler core on a simulated clock.
    Sim(sim::SimArgs),
    /// Benchmarks (commands, not tests): measured against the naive way in the same run.
    #[command(subcommand)]
    Bench(tidegate_bench::BenchCmd),
    /// Render a job or the fleet for Kubernetes/Kueue, Slurm (sbatch) or nftables.
    Render(render::RenderArgs),
}

fn main() -> miette::Result<()> {
    let cli = Cli::parse();
    // A command whose output is piped into `head` ends quietly when the reader goes away, as
    // other Unix tools do. Long-running services keep ignoring SIGPIPE (a closed socket or
    // pipe is an error they handle, never a reason to die).
    if !matches!(
        cli.command,
        Command::Up(_) | Command::Agent(_) | Command::Witness(_)
    ) {
        sigpipe::reset();
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cli.log))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    match cli.log_format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }
    match cli.command {
        Command::Up(a) => up::run(&a),
        Command::Submit(a) => jobs::submit(&a),
        Command::Jobs(a) => jobs::list(&a),
        Command::Job(a) => jobs::show(&a),
        Command::Cancel(a) => jobs::cancel(&a),
        Command::Logs(a) => jobs::logs(&a),
        Command::Zone(c) => jobs::zone(&c),
        Command::Fleet(c) => jobs::fleet(&c),
        Command::Agent(a) => agent::run(&a),
        Command::Demo(c) => demo::run(&c),
        Command::Check(a) => fleet_cmds::check(&a),
        Command::Explain(a) => fleet_cmds::explain(&a),
        Command::Plan(a) => fleet_cmds::plan(&a),
        Command::Policy(c) => fleet_cmds::policy(&c),
        Command::Audit(c) => audit::run(c),
        Command::Cert(c) => cert::run(&c),
        Command::Evidence(c) => evidence::run(c),
        Command::Witness(a) => witness::run(&a),
        Command::Retention(c) => retention::run(c),
        Command::Artifact { data_dir, api, cmd } => artifact::main(data_dir, &api, cmd),
        Command::Token { data_dir, cmd } => token::run(&data_dir, cmd),
        Command::Lineage { data_dir, args } => lineage::run(&data_dir, &args),
        Command::Sanitize(a) => sanitize::run(&a),
        Command::Dataset { data, cmd } => dataset::run(&data, cmd),
        Command::Transfer(a) => dataset::transfer(&a),
        Command::Train(a) => train::run(&a),
        Command::Checkpoint(c) => match checkpoint::run(&c)? {
            0 => Ok(()),
            code => std::process::exit(code),
        },
        Command::Sim(a) => sim::run(&a),
        Command::Bench(c) => tidegate_bench::run(&c),
        Command::Render(a) => render::run(&a),
    }
}
