//! `tidegate artifact ...`: the content-addressed store, provenance, keys and promotion gates.
//!
//! Two modes: through the control plane's API (the default: put, get, list, verify and promote,
//! recorded in the server's evidence ledger), or directly on a data directory given with
//! `--data-dir` / `$TIDEGATE_DATA_DIR` with no server running (every command; an operator or an
//! auditor checking a store offline). Both run the same operations (`tidegate_artifacts::ops`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use miette::{miette, IntoDiagnostic, WrapErr};
use tidegate_artifacts::gates::{self, Stage};
use tidegate_artifacts::intoto::{Material, Provenance};
use tidegate_artifacts::lineage::{JobRun, LineageLog};
use tidegate_artifacts::signing::KeyStore;
use tidegate_artifacts::{ArtifactKind, ArtifactStore, Digest, Lane, PutOptions};
use tidegate_client::{query_value, Client, ClientArgs};

use crate::clock::now;
use crate::ledgered::Ledgered;

/// How to reach the control plane when no data directory is given (the API mode).
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// API mode: base URL of the control plane. Default: the URL `tidegate up` wrote to
    /// `./.tidegate/server.url`, else https://127.0.0.1:7700.
    #[arg(long, env = "TIDEGATE_URL", global = true)]
    pub server: Option<String>,
    /// API mode: file holding a user token (`$TIDEGATE_TOKEN` may hold the token itself).
    /// Default: `./.tidegate/admin.token`, written by `tidegate up`.
    #[arg(long, env = "TIDEGATE_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// API mode: the control plane's certificate authority (PEM). Default:
    /// `./.tidegate/pki/ca.pem`, written by `tidegate up`.
    #[arg(long, env = "TIDEGATE_CA", global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

/// Runs an artifact command directly on `data_dir` when one was given, else through the API.
///
/// # Errors
/// Any refusal, with its reason.
pub fn main(data_dir: Option<PathBuf>, api: &ApiArgs, cmd: ArtifactCmd) -> miette::Result<()> {
    match data_dir {
        Some(dir) => {
            if api.server.is_some() {
                return Err(miette!(
                    help = "drop --data-dir (and $TIDEGATE_DATA_DIR) to go through the API, or --server to work on the directory",
                    "both a data directory ({}) and a server were given; choose one mode",
                    dir.display()
                ));
            }
            run(&dir, cmd)
        }
        None => run_api(api, cmd),
    }
}

/// Artifact store commands.
#[derive(Debug, Subcommand)]
pub enum ArtifactCmd {
    /// Store a file as an immutable, encrypted artifact and print its digest.
    Put {
        /// The file to store.
        file: PathBuf,
        /// Kind: dataset-snapshot, feature-set, checkpoint, model, container-image-ref,
        /// model-card, evaluation-report, sanitizer-report.
        #[arg(long)]
        kind: String,
        /// Human name (defaults to the file name).
        #[arg(long)]
        name: Option<String>,
        /// Lane: production (default) or experiment. Experiment artifacts are never released.
        #[arg(long, default_value = "production")]
        lane: String,
        /// Mark as derived from sensitive data (restricted, PHI): a leakage check is then
        /// required before approval.
        #[arg(long)]
        sensitive: bool,
        /// A label KEY=VALUE (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Its data classification, `LEVEL` or `LEVEL/TAG,TAG` (e.g. `restricted/phi`). An
        /// artifact stored without one is judged as the most sensitive data the fleet knows.
        #[arg(long, value_name = "LEVEL[/TAGS]")]
        classification: Option<String>,
        /// The job that produced it (through the API): it inherits that job's effective
        /// classification, and a declared one can only make it stricter. Checkpoints need it.
        #[arg(long, env = "TIDEGATE_JOB_ID")]
        job: Option<String>,
    },
    /// Write the verified content of an artifact to a file. Checkpoints and models must also
    /// carry valid signed provenance.
    Get {
        /// The artifact digest, `sha256:<hex>`.
        digest: String,
        /// Where to write the content.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// A scoped job token (a file holding it, or the token itself) that must grant reading
        /// `<kind>:<digest>` from `--zone`; checked offline (by the server, or against the data
        /// directory's token keyring), and its use or refusal recorded.
        #[arg(long, requires = "zone", value_name = "FILE")]
        token: Option<String>,
        /// Zone the read comes from (with --token).
        #[arg(long)]
        zone: Option<String>,
        /// Through the API: the zone's identity, its agent's token (a file holding it, or the
        /// token itself). The control plane takes the zone from it, never from --zone alone.
        #[arg(
            long,
            env = "TIDEGATE_ZONE_TOKEN_FILE",
            value_name = "FILE",
            requires = "token"
        )]
        zone_token: Option<String>,
    },
    /// Verify content integrity and every attached signature; without a digest, verify all.
    Verify {
        /// The artifact digest, `sha256:<hex>`; omit to verify every artifact.
        digest: Option<String>,
    },
    /// List stored artifacts with kind, stage, lane and size.
    List,
    /// Sign SLSA provenance (DSSE + in-toto v1) for an artifact with the active key, and
    /// record the job in lineage with an OpenLineage RunEvent. Direct mode
    /// only (`--data-dir`).
    Sign {
        /// The artifact digest.
        digest: String,
        /// The job that produced it.
        #[arg(long)]
        job: String,
        /// The zone the job ran in.
        #[arg(long)]
        zone: String,
        /// Source repository URL of the code.
        #[arg(long)]
        repo: String,
        /// Git commit of the code (hex).
        #[arg(long)]
        commit: String,
        /// An input: `dataset:NAME@VERSION` or an artifact digest (repeatable).
        #[arg(long = "input", value_name = "RESOURCE")]
        inputs: Vec<String>,
        /// A hyperparameter KEY=VALUE; VALUE is parsed as JSON when it can be (repeatable).
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Job start, Unix seconds (defaults to now).
        #[arg(long)]
        started_at: Option<u64>,
    },
    /// Sign an attestation about an artifact (evidence for promotion gates). Direct mode
    /// only (`--data-dir`).
    Attest {
        /// The artifact digest.
        digest: String,
        /// data-approval, feature-pin, model-card, validation-report, security-review or
        /// leakage-check.
        #[arg(long = "type")]
        kind: String,
        /// A predicate field KEY=VALUE; VALUE is parsed as JSON when it can be (repeatable).
        /// data-approval: dataset; feature-pin: featureSet, version; model-card: modelCard;
        /// validation-report: metric, value, testSet; security-review: reviewer, verdict;
        /// leakage-check: method, passed.
        #[arg(long = "field", value_name = "KEY=VALUE")]
        fields: Vec<String>,
        /// Signing key id (defaults to the active key). Data approvals and security reviews
        /// count only when signed by a key with the approver role.
        #[arg(long)]
        key: Option<String>,
    },
    /// Promote an artifact to the next stage if the Cedar gate policy allows it; a refusal
    /// names each missing piece of evidence.
    Promote {
        /// The artifact digest.
        digest: String,
        /// Target stage: validated, approved, released-private, released-public, released-edge.
        #[arg(long)]
        to: String,
        /// Who asks for the promotion (recorded). Direct mode: default `cli`. Through the API:
        /// default the token's user; only an administrator may name someone else.
        #[arg(long)]
        actor: Option<String>,
    },
    /// Sync back: import an artifact from another zone's data directory (a public burst zone)
    /// only if it is intact, its provenance is signed by a key this store trusts, and it was
    /// built in an allowed zone. Direct mode
    /// only (`--data-dir`).
    Import {
        /// The artifact digest.
        digest: String,
        /// The source data directory.
        #[arg(long = "from")]
        from: PathBuf,
        /// A zone artifacts may come from (repeatable; at least one).
        #[arg(long = "zone", required = true)]
        zones: Vec<String>,
    },
    /// Record a deployment of a released artifact in lineage. Refused unless the artifact
    /// verifies and is in a release stage. Direct mode
    /// only (`--data-dir`).
    Deploy {
        /// The artifact digest.
        digest: String,
        /// Deployment name (e.g. `fraud-eu-prod`).
        #[arg(long = "as", value_name = "NAME")]
        name: String,
        /// The edge site (an edge zone) it is deployed to: requires the `released-edge` stage
        /// and is recorded in the evidence ledger (`artifact.deployed_edge`) before lineage.
        #[arg(long, value_name = "ZONE")]
        edge_site: Option<String>,
    },
    /// Crypto-shred an artifact: destroy its data key and blob. Irreversible. Direct mode
    /// only (`--data-dir`).
    Shred {
        /// The artifact digest.
        digest: String,
    },
    /// Signing key management. Direct mode
    /// only (`--data-dir`).
    #[command(subcommand)]
    Key(KeyCmd),
    /// Write the built-in promotion policy to `<data-dir>/policies/promotion.cedar` to edit. Direct mode
    /// only (`--data-dir`).
    InitPolicy,
    /// Make FILE the promotion policy. Only an approver may: the change is recorded in the
    /// evidence ledger (with the policy text) before it takes effect, and promotions are refused
    /// while `<data-dir>/policies/promotion.cedar` is anything but the policy last recorded.
    /// Direct mode only (`--data-dir`).
    SetPolicy {
        /// The Cedar policy file.
        file: PathBuf,
        /// An approver's signing key id (its private key must be in this data directory and
        /// valid now); recorded as who changed the policy.
        #[arg(long, value_name = "KEY_ID")]
        key: String,
    },
}

/// Signing key commands.
#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Create the first builder signing key and make it active.
    Init {
        /// Who holds the key (e.g. `zone:onprem-a`).
        #[arg(long, default_value = "local-builder")]
        owner: String,
        /// Validity in days.
        #[arg(long, default_value_t = 90)]
        days: u64,
    },
    /// Create a new active builder key and retire the old one now; existing signatures stay
    /// verifiable.
    Rotate {
        /// Who holds the new key.
        #[arg(long, default_value = "local-builder")]
        owner: String,
        /// Validity in days.
        #[arg(long, default_value_t = 90)]
        days: u64,
    },
    /// Create a key with the approver role (for data approvals and security reviews).
    AddApprover {
        /// The approver's name.
        #[arg(long)]
        owner: String,
        /// Validity in days.
        #[arg(long, default_value_t = 90)]
        days: u64,
    },
    /// Trust a public key from another data directory's keyring (e.g. a burst zone's builder).
    Trust {
        /// The key id (`ed25519:...`).
        keyid: String,
        /// The data directory whose keyring holds the key.
        #[arg(long = "from")]
        from: PathBuf,
    },
    /// Revoke a key: nothing it signed verifies any more.
    Revoke {
        /// The key id (`ed25519:...`).
        keyid: String,
    },
    /// List keys with roles, windows and revocation.
    List,
}

fn parse_digest(s: &str) -> miette::Result<Digest> {
    s.parse::<Digest>().map_err(|e| {
        miette!(
            help =
                "digests look like sha256:<64 hex digits>, as printed by `tidegate artifact put`",
            "{e}"
        )
    })
}

/// A `--token` value: the contents of the file it names, else the token itself.
fn read_token_arg(arg: &str) -> miette::Result<String> {
    let path = Path::new(arg);
    let text = if path.is_file() {
        std::fs::read_to_string(path)
            .into_diagnostic()
            .wrap_err_with(|| format!("reading the token in {}", path.display()))?
    } else {
        arg.to_owned()
    };
    let token = text.trim().to_owned();
    if token.is_empty() {
        return Err(miette!("the job token given with --token is empty"));
    }
    Ok(token)
}

fn kv_pairs(items: &[String]) -> miette::Result<BTreeMap<String, serde_json::Value>> {
    items
        .iter()
        .map(|item| {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| miette!("expected KEY=VALUE, got {item:?}"))?;
            let value =
                serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_owned()));
            Ok((k.to_owned(), value))
        })
        .collect()
}

fn attestation_type(kind: &str) -> miette::Result<&'static str> {
    Ok(match kind {
        "data-approval" => gates::DATA_APPROVAL,
        "feature-pin" => gates::FEATURE_PIN,
        "model-card" => gates::MODEL_CARD,
        "validation-report" => gates::VALIDATION_REPORT,
        "security-review" => gates::SECURITY_REVIEW,
        "leakage-check" => gates::LEAKAGE_CHECK,
        other => {
            return Err(miette!(
                help = "one of data-approval, feature-pin, model-card, validation-report, security-review, leakage-check",
                "unknown attestation type {other:?}"
            ))
        }
    })
}

/// One `verify` line for an artifact that verified (direct or through the API).
fn print_verified(
    d: &impl std::fmt::Display,
    kind: &str,
    statements: usize,
    signers: &[impl AsRef<str>],
) {
    let keys = signers
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(" ");
    let keys = if keys.is_empty() {
        String::new()
    } else {
        format!(", keys {keys}")
    };
    println!("ok   {d} {kind} ({statements} signed statements{keys})");
}

/// Fails `verify` when any artifact did not verify.
fn verification_summary(failures: usize, total: usize) -> miette::Result<()> {
    if failures > 0 {
        return Err(miette!(
            "{failures} of {total} artifacts failed verification"
        ));
    }
    Ok(())
}

fn err(e: tidegate_artifacts::ArtifactError) -> miette::Report {
    miette!("{e}")
}

/// Whether `cmd` changes the store or reads with a token, and so records evidence.
fn records_evidence(cmd: &ArtifactCmd) -> bool {
    matches!(
        cmd,
        ArtifactCmd::Put { .. }
            | ArtifactCmd::Get { token: Some(_), .. }
            | ArtifactCmd::Sign { .. }
            | ArtifactCmd::Attest { .. }
            | ArtifactCmd::Promote { .. }
            | ArtifactCmd::Import { .. }
            | ArtifactCmd::Shred { .. }
            | ArtifactCmd::SetPolicy { .. }
            | ArtifactCmd::Deploy {
                edge_site: Some(_),
                ..
            }
    )
}

/// Runs an artifact command against `data_dir`. Commands that record evidence open the
/// evidence ledger (`<data-dir>/ledger/`, created on first use) once, append each event before
/// its effect, and publish a signed checkpoint at the end; if the ledger cannot be opened or
/// refuses an entry, the command is refused.
///
/// # Errors
/// Any refusal, with its reason.
pub fn run(data_dir: &Path, cmd: ArtifactCmd) -> miette::Result<()> {
    let now = now()?;
    if !records_evidence(&cmd) {
        return run_on(
            data_dir,
            &ArtifactStore::open(data_dir).map_err(err)?,
            cmd,
            now,
        );
    }
    let led = Ledgered::open(data_dir, now)?;
    let result = led
        .home_store()
        .and_then(|store| run_on(data_dir, &store, cmd, now));
    let closed = led.close();
    result.and(closed)
}

/// The content of `artifact put FILE` and its name: `--name`, else the file's name.
fn read_put_input(file: &Path, name: Option<String>) -> miette::Result<(Vec<u8>, String)> {
    let content = std::fs::read(file)
        .into_diagnostic()
        .wrap_err_with(|| format!("reading {}", file.display()))?;
    Ok((content, put_name(file, name)))
}

/// The name an artifact put from `file` gets: `--name`, else the file's name.
fn put_name(file: &Path, name: Option<String>) -> String {
    name.unwrap_or_else(|| {
        file.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    })
}

/// `LEVEL` or `LEVEL/TAG,TAG`, checked against the fleet's scheme (`--fleet`/$TIDEGATE_FLEET,
/// else the example fleet).
fn parse_class(
    data_dir: &Path,
    text: &str,
    kind: ArtifactKind,
    content: &[u8],
) -> miette::Result<tidegate_artifacts::ArtifactClass> {
    let fleet = crate::dataset::fleet_with_registry(None, data_dir)?;
    let c = tidegate_data::holding::parse_classification(text, &fleet.scheme)
        .map_err(|e| miette!("--classification: {e}"))?;
    tidegate_data::holding::check_claim(kind, Some(&c), &fleet.scheme, content)
        .map_err(|e| miette!("--classification: {e}"))?;
    Ok(tidegate_data::holding::class_of(&c, &fleet.scheme))
}

fn run_on(
    data_dir: &Path,
    store: &ArtifactStore,
    cmd: ArtifactCmd,
    now: u64,
) -> miette::Result<()> {
    let keys = KeyStore::new(&store.keys_dir());
    match cmd {
        ArtifactCmd::Put {
            file,
            kind,
            name,
            lane,
            sensitive,
            labels,
            classification,
            job,
        } => {
            if job.is_some() {
                return Err(miette!(
                    help = "store it through the API (without --data-dir), where the job's record gives its classification",
                    "--job needs the control plane: directly on a data directory there is no job to inherit a classification from"
                ));
            }
            let kind: ArtifactKind = kind.parse().map_err(err)?;
            let lane: Lane = lane.parse().map_err(err)?;
            let (content, name) = read_put_input(&file, name)?;
            let classification = classification
                .as_deref()
                .map(|c| parse_class(data_dir, c, kind, &content))
                .transpose()?;
            let labels = kv_pairs(&labels)?
                .into_iter()
                .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect();
            let rec = store
                .put(
                    &content,
                    kind,
                    &PutOptions {
                        name,
                        lane,
                        sensitive,
                        labels,
                        classification,
                    },
                    now,
                )
                .map_err(err)?;
            println!("{}", rec.digest);
        }
        ArtifactCmd::Get {
            digest,
            output,
            token,
            zone,
            zone_token: _,
        } => {
            let digest = parse_digest(&digest)?;
            let token = token.map(|t| read_token_arg(&t)).transpose()?;
            let (record, content) = match token {
                Some(token) => tidegate_artifacts::ops::read_with_job_token(
                    store,
                    &tidegate_artifacts::ops::token_verifier(&store.keys_dir()).map_err(err)?,
                    &|r: &tidegate_artifacts::ArtifactRecord, z: &str| {
                        crate::token::Holdings::load(store.data_dir(), None)
                            .map_err(|e| format!("{e}"))?
                            .admit(store, r, z)
                    },
                    &token,
                    &digest,
                    zone.as_deref().unwrap_or_default(),
                    now,
                )
                .map_err(err)?,
                None => tidegate_artifacts::ops::read_verified(store, &digest, now).map_err(err)?,
            };
            std::fs::write(&output, &content)
                .into_diagnostic()
                .wrap_err_with(|| format!("writing {}", output.display()))?;
            eprintln!(
                "wrote {} bytes of verified {} {} to {}",
                content.len(),
                record.kind,
                digest,
                output.display()
            );
        }
        ArtifactCmd::Verify { digest } => {
            let ring = store.trusted_keyring().map_err(err)?;
            let targets = match digest {
                Some(d) => vec![parse_digest(&d)?],
                None => store
                    .list()
                    .map_err(err)?
                    .into_iter()
                    .map(|r| r.digest)
                    .collect(),
            };
            let mut failures = 0usize;
            for d in &targets {
                match store.verify(d, &ring, now) {
                    Ok(report) => {
                        let signers: Vec<String> = report
                            .statements
                            .iter()
                            .flat_map(|s| s.keyids.clone())
                            .collect();
                        print_verified(
                            d,
                            &report.record.kind.to_string(),
                            report.statements.len(),
                            &signers,
                        );
                    }
                    Err(e) => {
                        failures += 1;
                        println!("FAIL {d}: {e}");
                    }
                }
            }
            verification_summary(failures, targets.len())?;
        }
        ArtifactCmd::List => {
            for (r, stage) in tidegate_artifacts::ops::list_with_stages(store).map_err(err)? {
                println!(
                    "{}  {:<20} {:<16} {:<10} {:>10}  {}",
                    r.digest,
                    r.kind.as_str(),
                    stage.as_str(),
                    r.lane.as_str(),
                    r.size,
                    r.name
                );
            }
        }
        ArtifactCmd::Sign {
            digest,
            job,
            zone,
            repo,
            commit,
            inputs,
            params,
            started_at,
        } => {
            let digest = parse_digest(&digest)?;
            let signer = keys.active_signer(now).map_err(err)?;
            let materials = inputs
                .iter()
                .map(|i| match i.parse::<Digest>() {
                    Ok(d) => Material {
                        uri: format!("artifact:{d}"),
                        digest: Some(d),
                    },
                    Err(_) => Material {
                        uri: i.clone(),
                        digest: None,
                    },
                })
                .collect::<Vec<_>>();
            let hyperparameters = kv_pairs(&params)?;
            let prov = Provenance {
                job_id: job.clone(),
                zone: zone.clone(),
                code_repo: repo,
                code_commit: commit.clone(),
                materials: materials.clone(),
                hyperparameters: hyperparameters.clone(),
                started_at: started_at.unwrap_or(now),
                finished_at: now,
            };
            store
                .sign_provenance(&digest, &prov, &signer)
                .map_err(err)?;
            let log = LineageLog::new(data_dir);
            let run = JobRun {
                job_id: job,
                zone,
                code_commit: commit,
                hyperparameters,
                inputs: materials.into_iter().map(|m| m.uri).collect(),
                outputs: vec![digest.clone()],
                started_at: prov.started_at,
                finished_at: now,
            };
            log.record_job(&run).map_err(err)?;
            let (path, _) = log.write_run_event(&run).map_err(err)?;
            println!("signed provenance for {digest} with {}", signer.keyid());
            println!("openlineage event: {}", path.display());
        }
        ArtifactCmd::Attest {
            digest,
            kind,
            fields,
            key,
        } => {
            let digest = parse_digest(&digest)?;
            let predicate_type = attestation_type(&kind)?;
            let signer = match key {
                Some(k) => keys.signer(&k, now).map_err(err)?,
                None => keys.active_signer(now).map_err(err)?,
            };
            let fields = serde_json::Value::Object(kv_pairs(&fields)?.into_iter().collect());
            gates::attest(store, &signer, &digest, predicate_type, fields, now).map_err(err)?;
            println!("attested {kind} for {digest} with {}", signer.keyid());
        }
        ArtifactCmd::Promote { digest, to, actor } => {
            let digest = parse_digest(&digest)?;
            let to: Stage = to.parse().map_err(err)?;
            let actor = actor.unwrap_or_else(|| "cli".to_owned());
            let rec =
                tidegate_artifacts::ops::promote(store, &digest, to, &actor, now).map_err(err)?;
            println!(
                "promoted {digest}: {} -> {} (policy {})",
                rec.from, rec.to, rec.policy_hash
            );
        }
        ArtifactCmd::Import {
            digest,
            from,
            zones,
        } => {
            let digest = parse_digest(&digest)?;
            let source = ArtifactStore::open(&from).map_err(err)?;
            let ring = store.trusted_keyring().map_err(err)?;
            let rep =
                tidegate_artifacts::transfer::import(&source, store, &ring, &zones, &digest, now)
                    .map_err(err)?;
            println!(
                "imported {} built by job {} in zone {} (signed by {})",
                rep.digest,
                rep.job_id,
                rep.zone,
                rep.keyids.join(", ")
            );
        }
        ArtifactCmd::Deploy {
            digest,
            name,
            edge_site,
        } => {
            let digest = parse_digest(&digest)?;
            store
                .verify(&digest, &store.trusted_keyring().map_err(err)?, now)
                .map_err(err)?;
            let stage = gates::current_stage(store, &digest).map_err(err)?;
            if !matches!(
                stage,
                Stage::ReleasedPrivate | Stage::ReleasedPublic | Stage::ReleasedEdge
            ) {
                return Err(miette!(
                    help = "promote it through the gates first (tidegate artifact promote)",
                    "{digest} is {stage}, not in a release stage; refusing to deploy"
                ));
            }
            if let Some(site) = &edge_site {
                if stage != Stage::ReleasedEdge {
                    return Err(miette!(
                        help = "promote it to released-edge first (tidegate artifact promote --to released-edge)",
                        "{digest} is {stage}; only released-edge artifacts go to edge sites"
                    ));
                }
                store
                    .record_event(&tidegate_artifacts::events::ArtifactEvent::DeployedEdge {
                        digest: digest.clone(),
                        site: site.clone(),
                        at: now,
                    })
                    .map_err(err)?;
            }
            if edge_site.is_none() {
                // A serving deployment is a point of action too: evidence before it is recorded.
                let artifact = digest.clone();
                let deployment = tidegate_ledger::Ident::new(&name).map_err(|e| {
                    miette!("--name {name:?} cannot be recorded as a deployment name: {e}")
                })?;
                let subject = tidegate_ledger::Subject::new(
                    tidegate_ledger::SubjectKind::Model,
                    digest.to_string(),
                )
                .map_err(|e| miette!("{e}"))?;
                crate::ledgered::record_one(
                    data_dir,
                    now,
                    "operator",
                    tidegate_ledger::Action::ArtifactDeployed {
                        artifact,
                        deployment,
                    },
                    vec![subject],
                )?;
            }
            LineageLog::new(data_dir)
                .record_deployment(&digest, &name, now)
                .map_err(err)?;
            println!("deployment {name} of {digest} ({stage}) recorded");
        }
        ArtifactCmd::Shred { digest } => {
            let digest = parse_digest(&digest)?;
            // A legal hold in the ledger stops the destruction, naming the hold.
            if let Some(h) = crate::retention::held(data_dir, &digest.to_string())?.first() {
                return Err(miette!(
                    help = "an approver releases it with `tidegate retention release`",
                    "{digest} is under legal hold (order {}, set by {} at ledger entry {}): refusing to shred",
                    h.order,
                    h.by,
                    h.index
                ));
            }
            store.shred(&digest).map_err(err)?;
            println!("crypto-shredded {digest}: data key destroyed");
        }
        ArtifactCmd::InitPolicy => {
            let path = gates::write_default_policy(store).map_err(err)?;
            println!("{}", path.display());
        }
        ArtifactCmd::SetPolicy { file, key } => {
            crate::sanitize::approver_signer(
                data_dir,
                &key,
                now,
                "only an approver changes the promotion policy",
            )?;
            let text =
                std::fs::read_to_string(&file).map_err(|e| miette!("{}: {e}", file.display()))?;
            let policy = gates::set_policy(store, &text, &key, now)
                .map_err(|e| miette!("{}: {e}", file.display()))?;
            println!(
                "promotion policy is now {} ({}), recorded in the evidence ledger by {key}",
                file.display(),
                policy.hash()
            );
        }
        ArtifactCmd::Key(k) => run_key(&keys, data_dir, k, now)?,
    }
    Ok(())
}

/// Records a key change, with the keyring it leaves (`after`, kept as a ledger document): the
/// ledger is already open (so a change is never made when it cannot be recorded); a key created
/// by the change is revoked again if its entry still fails.
fn record_key(
    led: &crate::ledgered::Ledgered,
    keys: &KeyStore,
    now: u64,
    key_id: &str,
    change: &str,
    after: &tidegate_artifacts::signing::Keyring,
    created: bool,
) -> miette::Result<()> {
    let mut action = crate::ledgered::key_changed(key_id, change)?;
    let json = after.to_compact_json().map_err(err)?;
    let digest = tidegate_ledger::ledger::put_document(led.data_dir(), &json)
        .map_err(|e| miette!("keeping the keyring as evidence: {e}"))?;
    if let tidegate_ledger::Action::KeyChanged { keyring, .. } = &mut action {
        *keyring = Some(digest);
    }
    if let Err(e) = led.record("operator", action, Vec::new()) {
        if !created {
            return Err(e);
        }
        let undone = keys.revoke(key_id, now).map_err(err);
        return Err(match undone {
            Ok(()) => e.wrap_err(format!("key {key_id} was revoked again at once")),
            Err(u) => e.wrap_err(format!(
                "and key {key_id} could not be revoked ({u}): revoke it by hand"
            )),
        });
    }
    Ok(())
}

fn run_key(keys: &KeyStore, data_dir: &Path, cmd: KeyCmd, now: u64) -> miette::Result<()> {
    if matches!(cmd, KeyCmd::List) {
        return list_keys(keys, now);
    }
    // Every change is evidence: the ledger is opened first, so nothing changes if it cannot be.
    let led = crate::ledgered::Ledgered::open(data_dir, now)?;
    // And it starts from the keyring the ledger last recorded: a change made on top of a file
    // edited outside tidegate would record the edit as if it were the command's.
    if let Err(e) = led
        .home_store()
        .and_then(|s| s.trusted_keyring().map_err(err))
    {
        let _ = led.close();
        return Err(e.wrap_err("refusing to change keys"));
    }
    let out = change_key(&led, keys, cmd, now);
    let closed = led.close();
    out.and(closed)
}

fn change_key(
    led: &crate::ledgered::Ledgered,
    keys: &KeyStore,
    cmd: KeyCmd,
    now: u64,
) -> miette::Result<()> {
    match cmd {
        KeyCmd::Init { owner, days } => {
            if keys.active_keyid().map_err(err)?.is_some() {
                return Err(miette!(
                    help = "use `tidegate artifact key rotate` to replace it",
                    "an active signing key already exists"
                ));
            }
            let e = keys
                .create(&owner, &["builder"], now, days, true)
                .map_err(err)?;
            let after = keys.keyring().map_err(err)?;
            record_key(led, keys, now, &e.keyid, "created-builder", &after, true)?;
            println!("{}", e.keyid);
        }
        KeyCmd::Rotate { owner, days } => {
            let e = keys.rotate(&owner, now, days).map_err(err)?;
            let after = keys.keyring().map_err(err)?;
            record_key(led, keys, now, &e.keyid, "rotated-in", &after, true)?;
            println!("{}", e.keyid);
        }
        KeyCmd::AddApprover { owner, days } => {
            let e = keys
                .create(&owner, &["approver"], now, days, false)
                .map_err(err)?;
            let after = keys.keyring().map_err(err)?;
            record_key(led, keys, now, &e.keyid, "created-approver", &after, true)?;
            println!("{}", e.keyid);
        }
        KeyCmd::Trust { keyid, from } => {
            // The key and its roles only as the other store's own ledger recorded them: its
            // keyring file must be the one its sealed ledger last recorded.
            let other = ArtifactStore::open(&from)
                .and_then(|s| s.recorded_keyring())
                .map_err(err)
                .wrap_err_with(|| format!("refusing to trust {keyid} from {}", from.display()))?;
            let entry = other.get(&keyid).cloned().ok_or_else(|| {
                miette!(
                    "{keyid} is not in the keyring the evidence ledger of {} recorded",
                    from.display()
                )
            })?;
            let mut after = keys.keyring().map_err(err)?;
            after.add(entry.clone()).map_err(err)?;
            record_key(led, keys, now, &keyid, "trusted", &after, false)?;
            keys.trust(entry).map_err(err)?;
            println!("trusted {keyid}");
        }
        KeyCmd::Revoke { keyid } => {
            let mut after = keys.keyring().map_err(err)?;
            after.revoke(&keyid, now).map_err(err)?;
            record_key(led, keys, now, &keyid, "revoked", &after, false)?;
            keys.revoke(&keyid, now).map_err(err)?;
            println!("revoked {keyid}");
        }
        KeyCmd::List => list_keys(keys, now)?,
    }
    Ok(())
}

fn list_keys(keys: &KeyStore, now: u64) -> miette::Result<()> {
    let active = keys.active_keyid().map_err(err)?;
    for k in keys.keyring().map_err(err)?.keys {
        let state = if k.revoked_at.is_some() {
            "revoked"
        } else if now >= k.not_after {
            "retired"
        } else if active.as_deref() == Some(k.keyid.as_str()) {
            "active"
        } else {
            "valid"
        };
        println!(
            "{}  {:<8} {:<20} roles={} valid {}..{}",
            k.keyid,
            state,
            k.owner,
            k.roles.join(","),
            k.not_before,
            k.not_after
        );
    }
    Ok(())
}

/// The most content `get` accepts from the server (the server's own limit on what it stores).
const MAX_GET_BYTES: u64 = 1 << 30;

fn api_client(api: &ApiArgs) -> miette::Result<Client> {
    Client::from_args(&ClientArgs {
        server: api.server.clone(),
        token_file: api.token_file.clone(),
        data_dir: PathBuf::from(".tidegate"),
        ca: api.ca.clone(),
    })
}

fn digest_path(digest: &Digest) -> String {
    format!("/v1/artifacts/{}", query_value(&digest.to_string()))
}

fn json_str<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
}

/// Runs `cmd` through the API of a running control plane: the server stores, reads, verifies and
/// promotes in its own data directory and records every event in its evidence ledger.
fn run_api(api: &ApiArgs, cmd: ArtifactCmd) -> miette::Result<()> {
    let name = match &cmd {
        ArtifactCmd::Put { .. }
        | ArtifactCmd::Get { .. }
        | ArtifactCmd::Verify { .. }
        | ArtifactCmd::List
        | ArtifactCmd::Promote { .. } => None,
        ArtifactCmd::Sign { .. } => Some("sign"),
        ArtifactCmd::Attest { .. } => Some("attest"),
        ArtifactCmd::Import { .. } => Some("import"),
        ArtifactCmd::Deploy { .. } => Some("deploy"),
        ArtifactCmd::Shred { .. } => Some("shred"),
        ArtifactCmd::Key(_) => Some("key"),
        ArtifactCmd::InitPolicy => Some("init-policy"),
        ArtifactCmd::SetPolicy { .. } => Some("set-policy"),
    };
    if let Some(name) = name {
        return Err(miette!(
            help = "run it directly on the data directory with --data-dir DIR while no server uses it (put, get, list, verify and promote also work through the API)",
            "`tidegate artifact {name}` works only directly on a data directory"
        ));
    }
    let client = api_client(api)?;
    match cmd {
        ArtifactCmd::Put {
            file,
            kind,
            name,
            lane,
            sensitive,
            labels,
            classification,
            job,
        } => {
            // Streamed from the file: neither side holds the whole content in memory.
            let content = std::fs::File::open(&file)
                .into_diagnostic()
                .wrap_err_with(|| format!("reading {}", file.display()))?;
            let name = put_name(&file, name);
            let mut query = format!(
                "?kind={}&lane={}&name={}",
                query_value(&kind),
                query_value(&lane),
                query_value(&name)
            );
            if sensitive {
                query.push_str("&sensitive=true");
            }
            for label in &labels {
                query.push_str(&format!("&label={}", query_value(label)));
            }
            if let Some(c) = &classification {
                query.push_str(&format!("&classification={}", query_value(c)));
            }
            if let Some(j) = &job {
                query.push_str(&format!("&job={}", query_value(j)));
            }
            let rec: serde_json::Value =
                client.post_file(&format!("/v1/artifacts{query}"), &content)?;
            println!("{}", json_str(&rec, "digest"));
        }
        ArtifactCmd::Get {
            digest,
            output,
            token,
            zone,
            zone_token,
        } => {
            let digest = parse_digest(&digest)?;
            let zone_token = match (&token, zone_token) {
                (Some(_), Some(z)) => Some(read_token_arg(&z)?),
                (Some(_), None) => {
                    return Err(miette!(
                        help = "pass the zone agent's token with --zone-token FILE (or $TIDEGATE_ZONE_TOKEN_FILE)",
                        "a read with a job token through the API comes from inside a zone, and the zone must prove itself"
                    ))
                }
                (None, _) => None,
            };
            let token = token.map(|t| read_token_arg(&t)).transpose()?;
            let path = match &zone {
                Some(z) if token.is_some() => {
                    format!("{}?zone={}", digest_path(&digest), query_value(z))
                }
                _ => digest_path(&digest),
            };
            let content = client.get_bytes(
                &path,
                token.as_deref(),
                zone_token.as_deref(),
                MAX_GET_BYTES,
            )?;
            std::fs::write(&output, &content)
                .into_diagnostic()
                .wrap_err_with(|| format!("writing {}", output.display()))?;
            eprintln!(
                "wrote {} bytes of verified {digest} to {}",
                content.len(),
                output.display()
            );
        }
        ArtifactCmd::Verify { digest } => {
            let targets = match digest {
                Some(d) => vec![parse_digest(&d)?],
                None => {
                    let list: serde_json::Value = client.get("/v1/artifacts")?;
                    list.get("artifacts")
                        .and_then(serde_json::Value::as_array)
                        .map(|a| {
                            a.iter()
                                .map(|r| parse_digest(json_str(r, "digest")))
                                .collect::<Result<Vec<_>, _>>()
                        })
                        .transpose()?
                        .unwrap_or_default()
                }
            };
            let mut failures = 0usize;
            for d in &targets {
                match client.get::<serde_json::Value>(&format!("{}/verify", digest_path(d))) {
                    Ok(report) => {
                        let statements = report
                            .get("statements")
                            .and_then(serde_json::Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        let signers: Vec<&str> = statements
                            .iter()
                            .filter_map(|s| s.get("keyids").and_then(serde_json::Value::as_array))
                            .flatten()
                            .filter_map(serde_json::Value::as_str)
                            .collect();
                        let kind = report
                            .get("artifact")
                            .map(|a| json_str(a, "kind"))
                            .unwrap_or_default();
                        print_verified(d, kind, statements.len(), &signers);
                    }
                    Err(e) => {
                        failures += 1;
                        println!("FAIL {d}: {e}");
                    }
                }
            }
            verification_summary(failures, targets.len())?;
        }
        ArtifactCmd::List => {
            let list: serde_json::Value = client.get("/v1/artifacts")?;
            for r in list
                .get("artifacts")
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten()
            {
                println!(
                    "{}  {:<20} {:<16} {:<10} {:>10}  {}",
                    json_str(r, "digest"),
                    json_str(r, "kind"),
                    json_str(r, "stage"),
                    json_str(r, "lane"),
                    r.get("size")
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or_default(),
                    json_str(r, "name")
                );
            }
        }
        ArtifactCmd::Promote { digest, to, actor } => {
            let digest = parse_digest(&digest)?;
            let body = serde_json::json!({ "to": to, "actor": actor });
            let rec: serde_json::Value =
                client.post(&format!("{}/promote", digest_path(&digest)), &body, &[])?;
            println!(
                "promoted {digest}: {} -> {} (policy {})",
                json_str(&rec, "from"),
                json_str(&rec, "stage"),
                json_str(&rec, "policy_hash")
            );
        }
        // Refused above.
        ArtifactCmd::Sign { .. }
        | ArtifactCmd::Attest { .. }
        | ArtifactCmd::Import { .. }
        | ArtifactCmd::Deploy { .. }
        | ArtifactCmd::Shred { .. }
        | ArtifactCmd::Key(_)
        | ArtifactCmd::InitPolicy
        | ArtifactCmd::SetPolicy { .. } => {}
    }
    Ok(())
}
