//! `tidegate demo burst-training`: the cloud-burst training pattern end to end on one machine.
//!
//! 1. Raw Synthea-schema tables (generated, or `--synthea DIR`) are registered restricted/phi in
//!    the hospital's private zone.
//! 2. They are sanitized (minimal-features profile, signed by an approver key the demo creates
//!    in the data directory; pseudonymisation key from the key manager); the signed report earns
//!    the new version its deidentified classification, lifting only phi and pii.
//! 3. Moving the raw version to the public zone is refused, with the reasons; the sanitized
//!    version, projected to a narrow feature matrix, is transferred (ledgered, encrypted there).
//! 4. A control plane starts (in this process); baseline work on the raw data fills the private
//!    GPUs; a burst-eligible hyperparameter sweep on the sanitized version bursts to the public
//!    zone within budget with its justification and runs a real logistic regression there.
//!    The same sweep on the raw data is kept private, with the reason.
//! 5. The models are signed with the public zone's builder key, synced back to the private store
//!    through the gated import (signature checked against keys the private side trusts), the
//!    public copies are crypto-shredded and the public GPUs released.
//! 6. Lineage shows raw → sanitized → job → model, and the model's evidence bundle verifies
//!    offline.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use miette::{miette, IntoDiagnostic, WrapErr};
use serde::Serialize;
use serde_json::json;
use tidegate_api::{JobDetail, LogsView, SubmitRequest, SubmitResponse};
use tidegate_artifacts::intoto::{Material, Provenance};
use tidegate_artifacts::lineage::{Direction, JobRun, LineageLog};
use tidegate_artifacts::signing::KeyStore;
use tidegate_artifacts::{ArtifactKind, Digest, PutOptions};
use tidegate_client::output::{print_json, Format};
use tidegate_client::Client;
use tidegate_data::approval::{sign_profile, verify_profile};
use tidegate_data::derive::{sanitize_version, Derivation};
use tidegate_data::transfer::{execute, plan, TransferRequest};
use tidegate_data::{ClassificationNames, ColumnRef, RegisterSpec, Registry};
use tidegate_ledger::bundle::{encode_bundle, summary, verify_bundle};
use tidegate_ledger::evidence::bundle_for;
use tidegate_ledger::keys::{load_verifier, public_path};
use tidegate_ledger::ledger::key_path;
use tidegate_ledger::{Subject, SubjectKind};
use tidegate_policy::PolicyEngine;
use tidegate_sanitize::generate::{generate, GenerateSpec};
use tidegate_sanitize::Profile;
use tidegate_sched::SchedConfig;
use tidegate_server::control::LoopConfig;
use tidegate_server::ServerConfig;

use crate::clock::now;
use crate::dataset::{fleet_with_registry, kms_key, signer};
use crate::ledgered::{zone_store_dir, Ledgered};

/// The minimal-features profile the demo sanitizes with.
const PROFILE: &str = include_str!("../../../examples/profiles/burst-training.yaml");
const PRIVATE: &str = "hospital-onprem";
const PUBLIC: &str = "public-us";
const OWNER: &str = "clinical-data";
const RAW: &str = "synthea@raw";
const DEID: &str = "synthea@deid";
const FEATURES: [&str; 5] = [
    "patients.Id",
    "patients.BIRTHDATE",
    "patients.GENDER",
    "conditions.PATIENT",
    "conditions.CODE",
];

/// Options of `demo burst-training`.
#[derive(Debug, Args)]
pub struct BurstTrainingArgs {
    /// Data directory for the demo (state, ledger, stores); must be new or empty unless --reset.
    #[arg(long, default_value = ".tidegate-demo")]
    pub data_dir: PathBuf,
    /// Remove the data directory first.
    #[arg(long)]
    pub reset: bool,
    /// Patients to generate (k-anonymity over birth year and sex needs a few thousand).
    #[arg(long, default_value_t = 3000)]
    pub patients: u64,
    /// Use these Synthea tables (patients.csv, encounters.csv, conditions.csv) instead.
    #[arg(long)]
    pub synthea: Option<PathBuf>,
    /// Hyperparameter trials in the sweep (one job each).
    #[arg(long, default_value_t = 3)]
    pub trials: usize,
    /// Baseline jobs (8 GPUs each, raw data) that fill the private GPUs.
    #[arg(long, default_value_t = 22)]
    pub fillers: usize,
    /// Seconds to wait for the sweep to finish.
    #[arg(long, default_value_t = 240)]
    pub timeout: u64,
    /// Fleet directory (default: ./examples/fleet, else the built-in example).
    #[arg(long)]
    pub fleet: Option<PathBuf>,
    /// Output format (json: the outcome as one document, for scripts and tests).
    #[arg(long, value_enum, default_value_t)]
    pub output: Format,
}

/// What the demo found, step by step.
#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    /// Raw version registered.
    pub raw: String,
    /// Its classification.
    pub raw_classification: String,
    /// Sanitized version.
    pub deid: String,
    /// Its classification.
    pub deid_classification: String,
    /// Whether the sanitizer earned it.
    pub earned: bool,
    /// The signed sanitizer report.
    pub report: String,
    /// Why moving the raw version to the public zone was refused.
    pub raw_transfer_refused: Vec<String>,
    /// Bytes of the projected feature matrix that moved.
    pub moved_bytes: u64,
    /// The copy's manifest in the public store.
    pub copy_manifest: String,
    /// Sweep trials: job id → (zone, pool, burst justification, AUC).
    pub trials: Vec<Trial>,
    /// The same sweep on raw data: its job id, final state and zone.
    pub raw_sweep: RawSweep,
    /// Public capacity released events seen.
    pub released: usize,
    /// The best model, synced back into the private store.
    pub model: String,
    /// What the best model learned, per feature (odds ratios per unit shown).
    pub learned: Vec<Learned>,
    /// Its lineage, upstream.
    pub lineage: String,
    /// Evidence bundle path and whether it verified offline.
    pub evidence: String,
    /// Whether it verified.
    pub evidence_verified: bool,
    /// Public copies crypto-shredded after sync back.
    pub shredded: Vec<String>,
}

/// One feature of the best model: the odds ratio it gives per `per` units of the feature.
#[derive(Debug, Default, Serialize)]
pub struct Learned {
    /// The feature.
    pub feature: String,
    /// Units the odds ratio is for (10 years of age, being male, one more condition).
    pub per: f64,
    /// exp(weight per unit x per).
    pub odds_ratio: f64,
}

/// The odds ratios a logistic-regression model JSON (from `tidegate train`) gives.
fn learned(model: &serde_json::Value) -> Vec<Learned> {
    let (Some(features), Some(weights), Some(scaling)) = (
        model["features"].as_array(),
        model["weights"].as_array(),
        model["scaling"].as_array(),
    ) else {
        return Vec::new();
    };
    features
        .iter()
        .zip(weights)
        .zip(scaling)
        .filter_map(|((f, w), sc)| {
            let (f, w, sd) = (f.as_str()?, w.as_f64()?, sc.get(1)?.as_f64()?);
            let per = if f == "age_years" { 10.0 } else { 1.0 };
            Some(Learned {
                feature: f.to_owned(),
                per,
                odds_ratio: (w / sd.max(1e-12) * per).exp(),
            })
        })
        .collect()
}

/// One trial of the sweep.
#[derive(Debug, Default, Serialize)]
pub struct Trial {
    /// Job id.
    pub job: String,
    /// L2 penalty (the swept hyperparameter).
    pub l2: f64,
    /// Where it ran.
    pub zone: String,
    /// Pool.
    pub pool: String,
    /// The burst's recorded justification.
    pub justification: String,
    /// Held-out AUC.
    pub auc: f64,
    /// Model digest (signed in the public zone; the best one is synced back).
    pub model: String,
    /// Where the job writes its model.
    #[serde(skip)]
    pub out_file: PathBuf,
}

/// The raw-data sweep.
#[derive(Debug, Default, Serialize)]
pub struct RawSweep {
    /// Job id.
    pub job: String,
    /// State when the demo ended.
    pub state: String,
    /// Zone, if placed.
    pub zone: Option<String>,
    /// Why the public zone was not allowed.
    pub public_refused: Vec<String>,
}

fn step(fmt: Format, text: &str) {
    if fmt == Format::Text {
        println!("\n== {text}");
    }
}

fn say(fmt: Format, text: &str) {
    if fmt == Format::Text {
        println!("   {text}");
    }
}

/// Raw tables: the three the model needs, generated (new rows of the Synthea schema) or copied.
fn raw_tables(a: &BurstTrainingArgs, dir: &Path) -> miette::Result<()> {
    std::fs::create_dir_all(dir).into_diagnostic()?;
    let keep = ["patients.csv", "encounters.csv", "conditions.csv"];
    if let Some(src) = &a.synthea {
        for t in keep {
            std::fs::copy(src.join(t), dir.join(t))
                .into_diagnostic()
                .wrap_err_with(|| format!("copying {}", src.join(t).display()))?;
        }
        return Ok(());
    }
    let gen = dir.join("generated");
    generate(
        &gen,
        GenerateSpec {
            patients: Some(a.patients),
            target_bytes: None,
            seed: 7,
        },
    )
    .map_err(|e| miette!("{e}"))?;
    for t in keep {
        std::fs::rename(gen.join(t), dir.join(t)).into_diagnostic()?;
    }
    std::fs::remove_dir_all(&gen).into_diagnostic()
}

fn describe(c: &ClassificationNames) -> String {
    if c.tags.is_empty() {
        c.level.clone()
    } else {
        format!("{}/{}", c.level, c.tags.join(","))
    }
}

/// Runs the demo.
///
/// # Errors
/// Any step that does not hold, with what was expected.
#[allow(clippy::too_many_lines)]
pub fn run(a: &BurstTrainingArgs) -> miette::Result<()> {
    let fmt = a.output;
    let dd = a.data_dir.clone();
    if a.reset {
        let _ = std::fs::remove_dir_all(&dd);
    }
    if dd.exists() && std::fs::read_dir(&dd).into_diagnostic()?.next().is_some() {
        return Err(miette!(
            help = "pass --reset to start over, or another --data-dir",
            "{} is not empty",
            dd.display()
        ));
    }
    std::fs::create_dir_all(&dd).into_diagnostic()?;
    let dd = dd.canonicalize().into_diagnostic()?;
    let mut out = Outcome::default();
    let now0 = now()?;

    // 1-3: registry, sanitizer, transfers, with the ledger held by this command.
    step(
        fmt,
        "1. raw tables registered restricted/phi in the private zone",
    );
    let raw_dir = tidegate_vocab::DataDir::new(&dd).scratch().join("raw");
    raw_tables(a, &raw_dir)?;
    let mut fleet = fleet_with_registry(a.fleet.clone(), &dd)?;
    let registry = Registry::open(&dd);
    let led = Ledgered::open(&dd, now0)?;
    let store = led.home_store()?;
    let (raw_name, raw_version) = RAW.split_once('@').unwrap_or((RAW, "raw"));
    let raw = registry
        .register(
            &store,
            &fleet,
            &RegisterSpec {
                name: raw_name.into(),
                version: raw_version.into(),
                owner: OWNER.into(),
                home_zone: PRIVATE.into(),
                classification: ClassificationNames {
                    level: "restricted".into(),
                    tags: vec!["phi".into(), "pii".into()],
                    residency: Some(vec!["US".into()]),
                    retention: Some("regulated".into()),
                },
                derived_from: None,
                report: None,
            },
            &raw_dir,
            now0,
        )
        .map_err(|e| miette!("{e}"))?;
    std::fs::remove_dir_all(&raw_dir).into_diagnostic()?;
    out.raw = raw.id();
    out.raw_classification = describe(&raw.classification);
    say(
        fmt,
        &format!(
            "{} ({}) in {PRIVATE}: {} tables, {} bytes, snapshot {}",
            raw.id(),
            out.raw_classification,
            raw.tables.len(),
            raw.bytes,
            raw.snapshot
        ),
    );

    step(
        fmt,
        "2. sanitized; the report is signed and ledgered; the lower classification must be earned",
    );
    let profile = Profile::from_yaml(PROFILE, "<examples/profiles/burst-training.yaml>")
        .map_err(|e| miette!("{e}"))?;
    let key = kms_key(&store, &format!("pseudonymisation/{OWNER}"))?;
    let builder = signer(&store, now0)?;
    // A profile file earns only with an approver's signature over its exact bytes: the demo's
    // data owner approves it with a short-lived approver key of this data directory.
    let keys = KeyStore::new(&store.keys_dir());
    let approver_key = keys
        .create("demo-approver", &["approver"], now0, 1, false)
        .map_err(|e| miette!("{e}"))?;
    let approver = keys
        .signer(&approver_key.keyid, now0)
        .map_err(|e| miette!("{e}"))?;
    let envelope = sign_profile(&approver, &profile, now0).map_err(|e| miette!("{e}"))?;
    let ring = keys.keyring().map_err(|e| miette!("{e}"))?;
    let approval = verify_profile(&ring, &envelope, &profile, now0).map_err(|e| miette!("{e}"))?;
    say(
        fmt,
        &format!(
            "profile {} ({}) approved by {}",
            profile.name,
            profile.digest(),
            approver_key.keyid
        ),
    );
    let (deid_name, deid_version) = DEID.split_once('@').unwrap_or((DEID, "deid"));
    let d = Derivation {
        registry: &registry,
        store: &store,
        fleet: &fleet,
        source: &raw,
        profile: &profile,
        signer: &builder,
        approval: Some(&approval),
        name: deid_name,
        version: deid_version,
    };
    let derived = sanitize_version(
        &d,
        key,
        &tidegate_vocab::DataDir::new(&dd).scratch().join("sanitize"),
        now0,
    )
    .map_err(|e| miette!("{e}"))?;
    out.deid = derived.version.id();
    out.deid_classification = describe(&derived.version.classification);
    out.earned = derived.report.earned;
    out.report = derived.report_digest.to_string();
    if !derived.report.earned {
        led.close()?;
        return Err(miette!(
            "the sanitized version did not earn its lower classification: {}",
            derived.report.reasons.join("; ")
        ));
    }
    say(
        fmt,
        &format!(
            "{} -> {} ({}), report {} signed by {}",
            raw.id(),
            out.deid,
            out.deid_classification,
            out.report,
            builder.keyid()
        ),
    );

    step(
        fmt,
        "3. transfers: raw refused; the sanitized feature projection moves, encrypted, ledgered",
    );
    registry
        .merge_into(
            &mut fleet,
            &store.evidence_entries().map_err(|e| miette!("{e}"))?,
        )
        .map_err(|e| miette!("{e}"))?;
    let policy = PolicyEngine::load(&fleet).map_err(|e| miette!("{e}"))?;
    let all = TransferRequest {
        to_zone: PUBLIC.into(),
        columns: Vec::new(),
        max_cost: 100.0,
    };
    match plan(&fleet, &policy, &raw, &all) {
        Ok(_) => {
            return Err(miette!(
                "moving raw PHI to {PUBLIC} was allowed: the policy set is not the example's"
            ))
        }
        Err(r) => {
            for reason in &r.reasons {
                say(fmt, &format!("refused raw: {reason}"));
            }
            out.raw_transfer_refused = r.reasons;
        }
    }
    let cols = FEATURES
        .iter()
        .map(|c| ColumnRef::parse(c, &derived.version))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| miette!("{e}"))?;
    let p = plan(
        &fleet,
        &policy,
        &derived.version,
        &TransferRequest {
            columns: cols,
            ..all
        },
    )
    .map_err(|e| miette!("{e}"))?;
    let public_store = led.zone_store(PUBLIC)?;
    let moved =
        execute(&p, &derived.version, &store, &public_store, now0).map_err(|e| miette!("{e}"))?;
    out.moved_bytes = moved.bytes;
    out.copy_manifest = moved.manifest.to_string();
    say(
        fmt,
        &format!(
            "moved {} bytes ({} of {} sanitized bytes) into {PUBLIC}: {}",
            moved.bytes,
            FEATURES.join(", "),
            derived.version.bytes,
            moved.manifest
        ),
    );
    drop(store);
    drop(public_store);
    led.close()?;

    // 4: the control plane, in this process.
    step(
        fmt,
        "4. control plane: private GPUs fill, the sweep bursts to the public zone and trains there",
    );
    let fleet_dir = match &a.fleet {
        Some(f) => f.clone(),
        None => crate::up::example_fleet(&dd)?,
    };
    let cfg = ServerConfig {
        loop_cfg: LoopConfig {
            holder: format!("demo-{}", std::process::id()),
            lease_ttl: Duration::from_secs(15),
            tick: Duration::from_millis(200),
            sched: SchedConfig::default(),
            time_scale: 1.0,
            agent_timeout: Duration::from_secs(15),
        },
        replica: "demo".into(),
        ..ServerConfig::embedded(&dd, &fleet_dir)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .into_diagnostic()?;
    let server = rt
        .block_on(tidegate_server::start(
            cfg,
            tidegate_server::auth::system_clock(),
        ))
        .map_err(|e| miette!("the control plane did not start: {e}"))?;
    let token = std::fs::read_to_string(&server.admin_token_path).into_diagnostic()?;
    let ca = tidegate_client::find_ca(server.ca_path.as_deref(), None)?;
    let client = Client::with_agent(
        &server.url,
        token.trim(),
        tidegate_client::agent_trusting(Duration::from_secs(30), ca.as_deref(), None)?,
    );
    let result = run_jobs(a, &client, &dd, &moved.manifest, &mut out);
    rt.block_on(server.shutdown());
    drop(rt);
    let trials = result?;

    // 5-6: sync back, shred public copies, lineage, evidence — the ledger is ours again.
    step(fmt, "5. models signed in the public zone, synced back through the gated import; public copies shredded");
    sync_back(
        &dd,
        &derived.version.id(),
        &moved.manifest,
        &moved.tables,
        &trials,
        &mut out,
        fmt,
    )?;

    step(fmt, "6. lineage and evidence");
    let graph = LineageLog::new(&dd).graph().map_err(|e| miette!("{e}"))?;
    out.lineage = graph.render(&format!("artifact:{}", out.model), Direction::Up);
    if fmt == Format::Text {
        for line in out.lineage.lines() {
            println!("   {line}");
        }
    }
    let bundle_path = dd.join("model-evidence.json");
    let subject =
        Subject::new(SubjectKind::Model, out.model.clone()).map_err(|e| miette!("{e}"))?;
    let bundle = bundle_for(&dd, &subject).map_err(|e| miette!("{e}"))?;
    std::fs::write(
        &bundle_path,
        encode_bundle(&bundle).map_err(|e| miette!("{e}"))?,
    )
    .into_diagnostic()?;
    let key = public_path(&key_path(&dd));
    let verifier = load_verifier(&key).into_diagnostic()?;
    let verified = verify_bundle(&std::fs::read(&bundle_path).into_diagnostic()?, &verifier)
        .map_err(|e| miette!("the model's evidence bundle did not verify: {e}"))?;
    out.evidence = bundle_path.display().to_string();
    out.evidence_verified = true;
    if fmt == Format::Text {
        println!(
            "   evidence bundle {} verified offline with {}:",
            bundle_path.display(),
            key.display()
        );
        for line in summary(&verified).lines() {
            println!("     {line}");
        }
        println!("\nagain by hand:\n   tidegate lineage artifact:{} --up --data-dir {}\n   tidegate evidence verify {} --key {}", out.model, dd.display(), bundle_path.display(), key.display());
        Ok(())
    } else {
        print_json(&out)
    }
}

fn job_manifest(
    name: &str,
    dataset: &str,
    secs_or_cmd: &str,
    hyper: &str,
    gpu_types: &str,
    sla: bool,
) -> String {
    format!(
        "apiVersion: tidegate.io/v1
kind: Job
metadata:
  name: {name}
  team: icu-ml
  labels:
    burst_eligible: true
spec:
  kind: hpo-sweep
  inputs:
    - dataset: {dataset}
  resources:
    gpus: 8
    gpu_types: {gpu_types}
    expected_hours: 2
{sla}  budget_class: research
  code_commit: 4f1c2e9
  hyperparameters: {hyper}
  justification: hypertension-risk model selection for the quarterly release; the private queue is full
  command: {secs_or_cmd}
",
        sla = if sla { "  sla: {max_wait_minutes: 5}\n" } else { "" }
    )
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Hand the public zone's store to the user its jobs run as: the trials are that zone's
/// workloads, reading its store and writing their models to its outbox. A control plane that is
/// not root runs jobs as itself, and nothing changes.
fn stage_for_jobs(store: &Path) -> miette::Result<()> {
    let (uid, gid) = tidegate_exec::job_ids(None).map_err(|e| miette!("{e}"))?;
    fn walk(p: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
        if std::fs::symlink_metadata(p)?.is_dir() {
            for e in std::fs::read_dir(p)? {
                walk(&e?.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    if std::fs::metadata(store).into_diagnostic()?.uid() != uid {
        walk(store, uid, gid).into_diagnostic().map_err(|e| {
            e.wrap_err(format!("giving {} to the zone's job user", store.display()))
        })?;
    }
    Ok(())
}

/// Submits the baseline, the sweep and the raw sweep; waits for the sweep; returns the trials.
fn run_jobs(
    a: &BurstTrainingArgs,
    client: &Client,
    dd: &Path,
    manifest: &Digest,
    out: &mut Outcome,
) -> miette::Result<Vec<Trial>> {
    let fmt = a.output;
    let submit = |m: String, key: String| -> miette::Result<String> {
        let r: SubmitResponse = client.post(
            "/v1/jobs",
            &SubmitRequest { manifest: m },
            &[("Idempotency-Key", key.as_str())],
        )?;
        Ok(r.job.id)
    };
    let mut fillers = Vec::new();
    for i in 0..a.fillers {
        // Bounded even if the demo is interrupted: they end on their own after the timeout.
        let m = job_manifest(
            &format!("baseline-{i:02}"),
            RAW,
            &format!("[sleep, '{}']", a.timeout + 60),
            "{}",
            "[]",
            false,
        );
        fillers.push(submit(m, format!("demo-filler-{i}"))?);
    }
    // Let the baseline take the private GPUs first: until the number running stops growing.
    let started = Instant::now();
    let (mut last, mut steady) = (0, 0);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let running = fillers
            .iter()
            .filter(|id| job(client, id).is_ok_and(|d| d.job.state == "running"))
            .count();
        steady = if running == last && running > 0 {
            steady + 1
        } else {
            0
        };
        last = running;
        if steady >= 4 || started.elapsed() > Duration::from_secs(30) {
            say(
                fmt,
                &format!(
                    "{running} baseline jobs on raw data hold the private GPUs; {} wait",
                    fillers.len() - running
                ),
            );
            break;
        }
    }
    let exe = std::env::current_exe().into_diagnostic()?;
    let store = zone_store_dir(dd, PUBLIC);
    let outbox = store.join("outbox");
    std::fs::create_dir_all(&outbox).into_diagnostic()?;
    stage_for_jobs(&store)?;
    let mut trials = Vec::new();
    for i in 0..a.trials {
        let l2 = 0.01 * 10f64.powi(i32::try_from(i).unwrap_or(0));
        let out_file = outbox.join(format!("trial-{i}.json"));
        let cmd = format!(
            "[{}, train, --store, {}, --manifest, '{manifest}', --l2, '{l2}', --out, {}]",
            quote(&exe.display().to_string()),
            quote(&store.display().to_string()),
            quote(&out_file.display().to_string())
        );
        let m = job_manifest(
            &format!("htn-sweep-{i}"),
            DEID,
            &cmd,
            &format!("{{l2: {l2}}}"),
            "[H100, H200]",
            true,
        );
        trials.push(Trial {
            job: submit(m, format!("demo-trial-{i}"))?,
            l2,
            out_file,
            ..Trial::default()
        });
    }
    let raw_cmd = format!("[sh, -c, 'echo raw-data sweep; sleep {}']", a.timeout + 60);
    out.raw_sweep.job = submit(
        job_manifest(
            "htn-sweep-raw",
            RAW,
            &raw_cmd,
            "{l2: 0.01}",
            "[H100, H200]",
            true,
        ),
        "demo-raw-sweep".into(),
    )?;
    say(
        fmt,
        &format!(
            "submitted {} baseline jobs, {} sweep trials on {DEID}, and the same sweep on {RAW}",
            a.fillers, a.trials
        ),
    );

    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    let mut done = 0;
    while done < trials.len() {
        if Instant::now() > deadline {
            return Err(miette!(
                "the sweep did not finish within {} s (see `tidegate jobs --data-dir {}`)",
                a.timeout,
                dd.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
        done = 0;
        for t in &trials {
            let d = job(client, &t.job)?;
            match d.job.state.as_str() {
                "succeeded" => done += 1,
                "failed" | "cancelled" => {
                    let logs: LogsView =
                        client.get(&format!("/v1/jobs/{}/logs?tail_bytes=2000", t.job))?;
                    return Err(miette!(
                        "trial {} ended {}: {}\n{}",
                        t.job,
                        d.job.state,
                        d.job.reason.unwrap_or_default(),
                        logs.logs
                    ));
                }
                _ => {}
            }
        }
    }
    // Release events follow completion on the next scheduler tick.
    std::thread::sleep(Duration::from_millis(1200));
    for t in &mut trials {
        let d = job(client, &t.job)?;
        t.zone = d.job.zone.clone().unwrap_or_default();
        t.pool = d.job.pool.clone().unwrap_or_default();
        for e in &d.events {
            if let Some(j) = e.details.get("justification").and_then(|v| v.as_str()) {
                t.justification = j.to_owned();
            }
            if e.kind == "released"
                && e.details.get("public").and_then(serde_json::Value::as_bool) == Some(true)
            {
                out.released += 1;
            }
        }
        let logs: LogsView = client.get(&format!("/v1/jobs/{}/logs?tail_bytes=400", t.job))?;
        say(
            fmt,
            &format!(
                "{} (l2 {}) ran in {}/{}: {}",
                t.job,
                t.l2,
                t.zone,
                t.pool,
                logs.logs.trim()
            ),
        );
    }
    if let Some(t) = trials.first() {
        say(
            fmt,
            &format!("burst justification recorded: {}", t.justification),
        );
    }
    say(
        fmt,
        &format!("{} public capacity releases recorded", out.released),
    );
    let d = job(client, &out.raw_sweep.job)?;
    out.raw_sweep.state = d.job.state.clone();
    out.raw_sweep.zone = d.job.zone.clone();
    out.raw_sweep.public_refused = d
        .events
        .iter()
        .filter_map(|e| {
            e.details
                .get("refused_zones")
                .and_then(|r| r.get(PUBLIC))
                .and_then(|v| v.as_array())
                .cloned()
        })
        .next()
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    say(
        fmt,
        &format!(
            "the same sweep on raw data: {} in {}, never {PUBLIC}: {}",
            out.raw_sweep.state,
            out.raw_sweep.zone.as_deref().unwrap_or("the private queue"),
            out.raw_sweep
                .public_refused
                .first()
                .map_or("its data is private-only", String::as_str)
        ),
    );
    // The demo's own work ends with it: cancel, and wait until every run has stopped.
    let leftovers: Vec<&String> = fillers
        .iter()
        .chain(std::iter::once(&out.raw_sweep.job))
        .collect();
    for id in &leftovers {
        let _: serde_json::Value =
            client.post(&format!("/v1/jobs/{id}/cancel"), &json!({}), &[])?;
    }
    // A run has stopped when the process its local executor recorded has ended.
    let running = |id: &str| -> bool {
        std::fs::read_dir(tidegate_vocab::DataDir::new(dd).zones())
            .into_iter()
            .flatten()
            .flatten()
            .any(|z| tidegate_exec::LocalExecutor::run_is_active(&z.path(), id))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while leftovers.iter().any(|id| running(id)) {
        if Instant::now() > deadline {
            eprintln!("warning: some baseline jobs had not stopped after 30 s; they end on their own within {} s", a.timeout + 60);
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(trials)
}

fn job(client: &Client, id: &str) -> miette::Result<JobDetail> {
    client.get(&format!("/v1/jobs/{id}"))
}

/// Signs each trial's model in the public zone, imports the best into the private store, and
/// shreds the public copies (features and models).
fn sync_back(
    dd: &Path,
    dataset: &str,
    manifest: &Digest,
    tables: &[tidegate_data::TableFile],
    trials: &[Trial],
    out: &mut Outcome,
    fmt: Format,
) -> miette::Result<()> {
    let now = now()?;
    let led = Ledgered::open(dd, now)?;
    let result = (|| -> miette::Result<()> {
        let public = led.zone_store(PUBLIC)?;
        let private = led.home_store()?;
        let zone_builder = signer(&public, now)?;
        // The private side trusts the public zone's builder key, explicitly.
        let entry = KeyStore::new(&public.keys_dir())
            .keyring()
            .map_err(|e| miette!("{e}"))?
            .get(zone_builder.keyid())
            .cloned()
            .ok_or_else(|| {
                miette!(
                    "builder key {} missing from the public keyring",
                    zone_builder.keyid()
                )
            })?;
        KeyStore::new(&private.keys_dir())
            .trust(entry)
            .map_err(|e| miette!("{e}"))?;
        let mut best: Option<(f64, Digest, &Trial)> = None;
        let mut best_model = serde_json::Value::Null;
        let mut trials_out = Vec::new();
        let log = LineageLog::new(dd);
        for t in trials {
            let bytes = std::fs::read(&t.out_file)
                .into_diagnostic()
                .wrap_err_with(|| format!("model of {}", t.job))?;
            let model: serde_json::Value = serde_json::from_slice(&bytes).into_diagnostic()?;
            let auc = model["metrics"]["auc"].as_f64().unwrap_or(0.0);
            let loss = model["metrics"]["log_loss"]
                .as_f64()
                .unwrap_or(f64::INFINITY);
            let rec = public
                .put(
                    &bytes,
                    ArtifactKind::Model,
                    &PutOptions {
                        name: format!("htn-risk/{}", t.job),
                        ..PutOptions::default()
                    },
                    now,
                )
                .map_err(|e| miette!("{e}"))?;
            let mut hyper = BTreeMap::new();
            hyper.insert("l2".to_owned(), json!(t.l2));
            let prov = Provenance {
                job_id: t.job.clone(),
                zone: t.zone.clone(),
                code_repo: "https://git.example.org/icu-ml/htn-risk".into(),
                code_commit: "4f1c2e9".into(),
                materials: vec![
                    Material {
                        uri: format!("dataset:{dataset}"),
                        digest: None,
                    },
                    Material {
                        uri: format!("artifact:{manifest}"),
                        digest: Some(manifest.clone()),
                    },
                ],
                hyperparameters: hyper.clone(),
                started_at: now,
                finished_at: now,
            };
            public
                .sign_provenance(&rec.digest, &prov, &zone_builder)
                .map_err(|e| miette!("{e}"))?;
            let run = JobRun {
                job_id: t.job.clone(),
                zone: t.zone.clone(),
                code_commit: "4f1c2e9".into(),
                hyperparameters: hyper,
                inputs: vec![format!("dataset:{dataset}"), format!("artifact:{manifest}")],
                outputs: vec![rec.digest.clone()],
                started_at: now,
                finished_at: now,
            };
            log.record_job(&run).map_err(|e| miette!("{e}"))?;
            // One OpenLineage RunEvent per job, under <data-dir>/openlineage/.
            log.write_run_event(&run).map_err(|e| miette!("{e}"))?;
            say(
                fmt,
                &format!(
                    "{}: model {} (AUC {auc:.3}) signed by {}",
                    t.job,
                    rec.digest,
                    zone_builder.keyid()
                ),
            );
            trials_out.push(Trial {
                job: t.job.clone(),
                l2: t.l2,
                zone: t.zone.clone(),
                pool: t.pool.clone(),
                justification: t.justification.clone(),
                auc,
                model: rec.digest.to_string(),
                out_file: PathBuf::new(),
            });
            // The best trial: lowest held-out log loss.
            if best.as_ref().is_none_or(|(b, _, _)| loss < *b) {
                best = Some((loss, rec.digest.clone(), t));
                best_model = model;
            }
        }
        let (loss, digest, _) = best.ok_or_else(|| miette!("no trial produced a model"))?;
        let ring = KeyStore::new(&private.keys_dir())
            .keyring()
            .map_err(|e| miette!("{e}"))?;
        let rep = tidegate_artifacts::transfer::import(
            &public,
            &private,
            &ring,
            &[PUBLIC.to_owned()],
            &digest,
            now,
        )
        .map_err(|e| miette!("{e}"))?;
        say(fmt, &format!("best model {} (held-out log loss {loss:.3}) imported into the private store: built by {} in {}, signature by {}", rep.digest, rep.job_id, rep.zone, rep.keyids.join(", ")));
        out.model = rep.digest.to_string();
        out.learned = learned(&best_model);
        let show: Vec<String> = out
            .learned
            .iter()
            .map(|l| match l.feature.as_str() {
                "age_years" => format!("x{:.2} per 10 years of age", l.odds_ratio),
                "sex_male" => format!("x{:.2} for men", l.odds_ratio),
                _ => format!("x{:.2} per other recorded condition", l.odds_ratio),
            })
            .collect();
        say(fmt, &format!("what it learned: the odds of hypertension {} (the data's prevalence rises with age and is higher in men, as NHANES measured; other conditions are drawn independently of it)", show.join(", ")));
        // Nothing of the burst stays public: features and models are crypto-shredded there.
        for d in tables
            .iter()
            .map(|t| t.digest.clone())
            .chain([manifest.clone()])
            .chain(trials_out.iter().filter_map(|t| t.model.parse().ok()))
        {
            public.shred(&d).map_err(|e| miette!("{e}"))?;
            out.shredded.push(d.to_string());
        }
        std::fs::remove_dir_all(zone_store_dir(dd, PUBLIC).join("outbox")).into_diagnostic()?;
        say(
            fmt,
            &format!(
                "{} public copies crypto-shredded (features, copy manifest, models)",
                out.shredded.len()
            ),
        );
        out.trials = trials_out;
        Ok(())
    })();
    let closed = led.close();
    result.and(closed)
}
