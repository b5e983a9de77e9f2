//! `tidegate sanitize`: runs a sanitizer profile over CSV or Parquet tables and publishes the
//! output atomically with its report, which is stored as a signed artifact and ledgered;
//! `tidegate sanitize generate` writes Synthea-schema test data; `tidegate sanitize
//! sign-profile` signs a profile file with an approver key (the only way a profile file earns a
//! lower classification).
//!
//! Without a registered source, the run earns a lower classification only when the operator
//! states the source's classification (`--source-classification`) and it equals the profile's
//! declared input; without it the output keeps the profile's declared input classification.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use miette::miette;
use tidegate_artifacts::atomic::write_atomic;
use tidegate_artifacts::signing::KeyStore;
use tidegate_artifacts::{ArtifactStore, Digest};
use tidegate_client::output::{print_json, Format};
use tidegate_data::approval::{approval_for, sign_profile, signature_path};
use tidegate_data::derive::{record_report, ReportSubject};
use tidegate_sanitize::generate::{generate, GenerateSpec};
use tidegate_sanitize::{sanitize, Key, Options, Profile, Report};

use crate::ledgered::Ledgered;

/// Arguments of `tidegate sanitize`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SanitizeArgs {
    #[command(subcommand)]
    cmd: Option<SanitizeCmd>,
    /// Profile: `hipaa-safe-harbor` (built in) or a profile YAML file.
    #[arg(long)]
    profile: Option<String>,
    /// Input: a table file (.csv or .parquet) or a directory of them (file name = table name);
    /// each output table keeps its input's format and file name.
    #[arg(long = "in")]
    input: Option<PathBuf>,
    /// Output directory (must not exist or be empty); written atomically with `sanitize-report.json`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Pseudonymisation key file (64 hex characters, or at least 16 raw bytes). Without it a random
    /// key is used and not stored: pseudonyms cannot be reproduced.
    #[arg(long, conflicts_with = "key_name")]
    key: Option<PathBuf>,
    /// Or: the name of a pseudonymisation key held by the key manager of --data-dir (created on
    /// first use, e.g. `pseudonymisation/clinical-data`), so pseudonyms agree across runs.
    #[arg(long)]
    key_name: Option<String>,
    /// Data directory: its evidence ledger records the run (the report, stored as a signed
    /// `sanitizer-report` artifact), its key manager holds --key-name.
    #[arg(long, env = "TIDEGATE_DATA_DIR", default_value = ".tidegate")]
    data_dir: PathBuf,
    /// Override k on every table that declares quasi-identifiers (lowering it voids a profile
    /// file's approval).
    #[arg(long)]
    k: Option<u32>,
    /// The input's classification (`level/tag,tag`, e.g. `restricted/phi`). A lower
    /// classification is earned only when it equals the profile's declared input; without it
    /// nothing is earned. (`dataset sanitize` takes it from the registry.)
    #[arg(long, value_name = "LEVEL/TAGS")]
    source_classification: Option<String>,
    /// The approver's signature over the profile file (default: `PROFILE.sig` when it exists).
    /// A profile file earns a lower classification only with one that verifies against an
    /// approver key of --data-dir's keyring; one that does not verify refuses the run.
    #[arg(long, value_name = "FILE")]
    profile_signature: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: Format,
}

/// Subcommands of `tidegate sanitize`.
#[derive(Debug, Subcommand)]
pub enum SanitizeCmd {
    /// Generate Synthea-schema tables (patients, encounters, conditions, observations,
    /// organizations, providers, payers) with new synthetic rows.
    Generate(GenerateArgs),
    /// Sign a profile file with an approver key of the data directory (`tidegate artifact key
    /// add-approver`): writes a DSSE envelope over the profile's exact bytes to `PROFILE.sig`.
    /// Any later change to the file voids it.
    SignProfile(SignProfileArgs),
}

/// Arguments of `tidegate sanitize sign-profile`.
#[derive(Debug, Args)]
pub struct SignProfileArgs {
    /// The profile YAML file.
    profile: PathBuf,
    /// The approver key id (`ed25519:...`), held in --data-dir's keyring with the approver role.
    #[arg(long)]
    key: String,
    /// Where to write the signature (default: `PROFILE.sig`).
    #[arg(long = "out")]
    out: Option<PathBuf>,
    /// Data directory whose keys sign.
    #[arg(long, env = "TIDEGATE_DATA_DIR", default_value = ".tidegate")]
    data_dir: PathBuf,
}

/// The signer of approver key `key_id` in `data_dir`'s keyring: the key must be there, hold the
/// approver role and be valid `now` (its private key present). `why` ends the role refusal.
///
/// # Errors
/// A refusal naming `--key`.
pub(crate) fn approver_signer(
    data_dir: &Path,
    key_id: &str,
    now: u64,
    why: &str,
) -> miette::Result<tidegate_artifacts::signing::Signer> {
    let keys = KeyStore::new(&tidegate_vocab::DataDir::new(data_dir).keys());
    // The keyring the ledger last recorded: a role written into the file grants nothing.
    let entry = tidegate_artifacts::ArtifactStore::open(data_dir)
        .and_then(|s| s.trusted_keyring())
        .map_err(|e| miette!("{e}"))?
        .get(key_id)
        .cloned()
        .ok_or_else(|| {
            miette!(
                help = "create one with `tidegate artifact key add-approver --owner NAME`",
                "--key: {key_id} is not in the keyring of {}",
                data_dir.display()
            )
        })?;
    if !entry
        .roles
        .iter()
        .any(|r| r == tidegate_data::approval::APPROVER_ROLE)
    {
        return Err(miette!(
            "--key: {key_id} has roles [{}], not approver; {why}",
            entry.roles.join(", ")
        ));
    }
    keys.signer(key_id, now).map_err(|e| miette!("--key: {e}"))
}

fn sign_profile_cmd(a: &SignProfileArgs) -> miette::Result<()> {
    let p = Profile::load(&a.profile.display().to_string()).map_err(|e| miette!("{e}"))?;
    let now = crate::clock::now()?;
    let signer = approver_signer(
        &a.data_dir,
        &a.key,
        now,
        "only an approver's signature lets a profile earn",
    )?;
    let envelope = sign_profile(&signer, &p, now).map_err(|e| miette!("{e}"))?;
    let out = a.out.clone().unwrap_or_else(|| signature_path(&a.profile));
    let json = envelope.to_json().map_err(|e| miette!("{e}"))?;
    write_atomic(&out, &json).map_err(|e| miette!("{}: {e}", out.display()))?;
    println!(
        "signed {} ({}) with approver key {}: {}",
        a.profile.display(),
        p.digest(),
        a.key,
        out.display()
    );
    Ok(())
}

/// Arguments of `tidegate sanitize generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Patients to generate (each with 15-55 encounters, their conditions and observations).
    #[arg(long, required_unless_present = "size_mb")]
    rows: Option<u64>,
    /// Or: generate until the tables hold this many MB (10^6 bytes).
    #[arg(long)]
    size_mb: Option<u64>,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// Runs `tidegate sanitize`.
pub fn run(a: &SanitizeArgs) -> miette::Result<()> {
    if let Some(SanitizeCmd::Generate(g)) = &a.cmd {
        let started = std::time::Instant::now();
        let s = generate(
            &g.out,
            GenerateSpec {
                patients: g.rows,
                target_bytes: g.size_mb.map(|m| m * 1_000_000),
                seed: g.seed,
            },
        )
        .map_err(|e| miette!("{e}"))?;
        eprintln!(
            "wrote {} patients, {} encounters, {} conditions, {} observations ({:.1} MB) to {} in {:.1} s",
            s.patients,
            s.encounters,
            s.conditions,
            s.observations,
            mb(s.bytes),
            g.out.display(),
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    if let Some(SanitizeCmd::SignProfile(s)) = &a.cmd {
        return sign_profile_cmd(s);
    }
    let (Some(profile), Some(input), Some(out)) = (&a.profile, &a.input, &a.out) else {
        return Err(miette!(
            help = "tidegate sanitize --profile hipaa-safe-harbor --in DIR --out DIR [--key FILE]",
            "--profile, --in and --out are required"
        ));
    };
    let mut p = Profile::load(profile).map_err(|e| miette!("{e}"))?;
    if let Some(k) = a.k {
        p.set_k(k).map_err(|e| miette!("{e}"))?;
    }
    // Every run's report is signed and ledgered: the ledger is opened first, so a run that could
    // not be recorded does not start.
    let now = crate::clock::now()?;
    let led = Ledgered::open(&a.data_dir, now)?;
    let result = led
        .home_store()
        .and_then(|store| run_recorded(a, &p, input, out, &store, now));
    let closed = led.close();
    let (r, digest) = match (result, closed) {
        (Ok(done), Ok(())) => done,
        (Err(e), _) => return Err(e),
        (Ok(_), Err(e)) => {
            let _ = std::fs::remove_dir_all(out);
            return Err(miette!("{e}; the output was withdrawn"));
        }
    };
    if a.output == Format::Json {
        return print_json(&r);
    }
    for t in &r.tables {
        let residual: u64 = t.residual.iter().map(|h| h.count).sum();
        println!(
            "{:<22} {:>9} rows in {:>9} out  {:>2} columns kept of {:>2}  residual {residual}{}",
            t.file,
            t.rows_in,
            t.rows_out,
            t.columns.iter().filter(|c| c.action != "drop").count(),
            t.columns.len(),
            t.k_anonymity
                .as_ref()
                .map(|k| format!(
                    "  k={} smallest class {} suppressed {}",
                    k.k, k.smallest_class, k.rows_suppressed
                ))
                .unwrap_or_default()
        );
    }
    if r.key_ephemeral {
        println!("key: random and not stored (pass --key FILE for reproducible pseudonyms)");
    }
    println!(
        "{} rows, {:.1} MB in {:.2} s; classification {} -> {}",
        r.rows_in,
        mb(r.bytes_in),
        r.elapsed_s,
        r.input_classification,
        r.output_classification
    );
    println!(
        "profile {} {}{}",
        r.profile_digest,
        r.profile_authority,
        r.approved_by
            .as_ref()
            .map(|k| format!(" by {k}"))
            .unwrap_or_default()
    );
    if r.earned {
        println!(
            "lower classification earned: every column covered, k reached, residual scan clean"
        );
    } else {
        println!("lower classification NOT earned:");
        for m in &r.reasons {
            println!("  - {m}");
        }
    }
    println!(
        "report: {} (signed sanitizer-report artifact {digest} in {}, ledgered)",
        out.join(tidegate_sanitize::engine::REPORT_FILE).display(),
        a.data_dir.display()
    );
    Ok(())
}

/// Sanitizes `input` into `out` with the key the arguments name, then stores, signs and ledgers
/// the report through `store`; when the report cannot be recorded the output is withdrawn.
fn run_recorded(
    a: &SanitizeArgs,
    p: &Profile,
    input: &Path,
    out: &Path,
    store: &ArtifactStore,
    now: u64,
) -> miette::Result<(Report, Digest)> {
    let key = match (&a.key, &a.key_name) {
        (Some(f), _) => Key::from_file(f).map_err(|e| miette!("{e}"))?,
        (None, Some(name)) => crate::dataset::kms_key(store, name)?,
        (None, None) => Key::ephemeral().map_err(|e| miette!("{e}"))?,
    };
    let signer = crate::dataset::signer(store, now)?;
    let keyring = store.trusted_keyring().map_err(|e| miette!("{e}"))?;
    let approval = approval_for(&keyring, p, a.profile_signature.as_deref(), now).map_err(|e| {
        miette!(help = "re-sign the profile with `tidegate sanitize sign-profile`, or run it unsigned (it then earns nothing)", "{e}")
    })?;
    let mut opts = Options::new(key);
    if let Some(c) = &a.source_classification {
        opts = opts.with_source(c.clone());
    }
    if let Some(v) = &approval {
        opts = opts.with_approval(v.approval.clone());
    }
    let r = sanitize(p, input, out, &opts).map_err(|e| miette!("{e}"))?;
    let report_path = out.join(tidegate_sanitize::engine::REPORT_FILE);
    let subject = ReportSubject {
        source: input.display().to_string(),
        source_snapshot: None,
        output: out.display().to_string(),
    };
    let recorded = std::fs::read(&report_path)
        .map_err(|e| miette!("{}: {e}", report_path.display()))
        .and_then(|bytes| {
            record_report(store, &signer, &r, &bytes, &subject, approval.as_ref(), now)
                .map_err(|e| miette!("{e}"))
        });
    match recorded {
        Ok(digest) => Ok((r, digest)),
        Err(e) => {
            let _ = std::fs::remove_dir_all(out);
            Err(miette!(
                help = "a sanitizer run counts only with its report signed and ledgered",
                "{e}; the output was withdrawn"
            ))
        }
    }
}

#[allow(clippy::cast_precision_loss)]
fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}
