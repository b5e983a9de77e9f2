//! `tidegate token ...`: mint, inspect, attenuate and check scoped short-lived tokens, and
//! manage their root keys, directly on a data directory.

use std::io::Read as _;
use std::path::Path;

use clap::Subcommand;
use miette::{miette, IntoDiagnostic};
use tidegate_identity::{
    attenuate, Action, Attenuation, IdentityError, Operation, Request, Role, RootKeyStore,
    TokenSpec, Verifier,
};

use tidegate_api::{JobTokenRequest, TokenRequest, TokenResponse};
use tidegate_server::evidence::{token_issued_entry, TokenGrant};

use crate::clock::now;

/// Token commands.
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Mint a token: a job token (--job) or an API user token (--user). Prints the token.
    Mint {
        /// Job id: mint a job token allowing exactly its inputs, output prefix and zone.
        #[arg(long, conflicts_with_all = ["user", "role", "team"], required_unless_present = "user")]
        job: Option<String>,
        /// Zone of the job; requests from other zones are refused.
        #[arg(long, requires = "job")]
        zone: Option<String>,
        /// A readable input, exactly: `dataset:NAME@VERSION` or `checkpoint:sha256:HEX`
        /// (repeatable).
        #[arg(long = "input", value_name = "RESOURCE", requires = "job")]
        inputs: Vec<String>,
        /// Writable output prefix, ending with `/` (e.g. `artifacts/job-42/`).
        #[arg(long, requires = "job")]
        output_prefix: Option<String>,
        /// User name: mint an API user token with --role and --team.
        #[arg(long, requires_all = ["role", "team"])]
        user: Option<String>,
        /// Role of the user: submitter, approver, auditor or admin.
        #[arg(long)]
        role: Option<String>,
        /// Team of the user.
        #[arg(long)]
        team: Option<String>,
        /// Lifetime in minutes (at most 720).
        #[arg(long, default_value_t = 15)]
        minutes: u32,
        /// Fleet directory (else $TIDEGATE_FLEET, else ./examples/fleet, else the built-in
        /// example): a job token is minted only if every input may be held in its zone under
        /// this fleet's hard constraints and policy (datasets registered in the data directory
        /// included).
        #[arg(long, env = "TIDEGATE_FLEET")]
        fleet: Option<std::path::PathBuf>,
    },
    /// Verify a token offline against the root keyring and print its claims as JSON.
    Inspect {
        /// The token, or `-` to read it from standard input.
        token: String,
    },
    /// Narrow a token offline by appending checks (it can never widen). Prints the new token.
    Attenuate {
        /// The token, or `-` to read it from standard input.
        token: String,
        /// Allow only reads.
        #[arg(long)]
        read_only: bool,
        /// Allow only resources starting with this prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// Allow only requests from this zone.
        #[arg(long)]
        zone: Option<String>,
        /// Expire this many minutes from now (if sooner than the token's own expiry).
        #[arg(long)]
        minutes: Option<u32>,
    },
    /// Decide one request offline: exit 0 and print `allowed`, or fail with the reason.
    Check {
        /// The token, or `-` to read it from standard input.
        token: String,
        /// Data request: read this exact resource.
        #[arg(long, conflicts_with_all = ["write", "action"], required_unless_present_any = ["write", "action"])]
        read: Option<String>,
        /// Data request: write this resource (must be under the output prefix).
        #[arg(long, conflicts_with = "action")]
        write: Option<String>,
        /// Zone of a data request.
        #[arg(long, default_value = "")]
        zone: String,
        /// API request: submit, approve, audit or administer.
        #[arg(long, requires = "team")]
        action: Option<String>,
        /// Team of an API request.
        #[arg(long)]
        team: Option<String>,
    },
    /// Root key management.
    #[command(subcommand)]
    Keys(TokenKeysCmd),
}

/// Root key commands.
#[derive(Debug, Subcommand)]
pub enum TokenKeysCmd {
    /// Create a new root key and make it active; the previous one stays valid until every
    /// token it could have minted has expired. Also creates the first key.
    Rotate {
        /// Validity of the new key in days.
        #[arg(long, default_value_t = 30)]
        days: u64,
    },
    /// Revoke a root key: every token it signed is refused from now on.
    Revoke {
        /// The key id.
        id: u32,
    },
    /// Refuse one token by its revocation id (see `token inspect`).
    RevokeToken {
        /// Hex revocation id.
        revocation_id: String,
    },
    /// Print the public root keyring (JSON) to ship to verifiers.
    Export,
}

fn read_token(arg: &str) -> miette::Result<String> {
    if arg == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).into_diagnostic()?;
        Ok(s.trim().to_owned())
    } else {
        Ok(arg.trim().to_owned())
    }
}

fn err(e: IdentityError) -> miette::Report {
    miette!("{e}")
}

/// What the holding rule reads: the fleet (with the data directory's registered datasets), its
/// policy set and the registered versions.
pub(crate) struct Holdings {
    pub fleet: tidegate_model::Fleet,
    pub policy: tidegate_policy::PolicyEngine,
    pub versions: Vec<tidegate_data::DatasetVersion>,
}

impl Holdings {
    /// Loads them; a policy set that does not load refuses (nothing is granted without one).
    pub(crate) fn load(data_dir: &Path, fleet: Option<std::path::PathBuf>) -> miette::Result<Self> {
        let fleet = crate::dataset::fleet_with_registry(fleet, data_dir)?;
        let policy = tidegate_policy::PolicyEngine::load(&fleet).map_err(|e| {
            miette!("the policy set does not load, so no data is granted to a zone:\n{e}")
        })?;
        let versions = crate::dataset::recorded_versions(data_dir)?;
        Ok(Self {
            fleet,
            policy,
            versions,
        })
    }

    /// Whether `record` may be read in `zone`.
    pub(crate) fn admit(
        &self,
        store: &tidegate_artifacts::ArtifactStore,
        record: &tidegate_artifacts::ArtifactRecord,
        zone: &str,
    ) -> Result<(), String> {
        tidegate_data::holding::admit(
            &self.fleet,
            &self.policy,
            &self.versions,
            store,
            record,
            zone,
        )
    }
}

/// A job token grants its inputs in one zone: each must be data that may be held there (the
/// floor and policy of placement, [`tidegate_data::holding`]), else nothing is minted.
fn check_inputs(
    data_dir: &Path,
    fleet: Option<std::path::PathBuf>,
    inputs: &[String],
    zone: &str,
) -> miette::Result<()> {
    let Holdings {
        fleet,
        policy,
        versions,
    } = Holdings::load(data_dir, fleet)?;
    let store = tidegate_artifacts::ArtifactStore::open(data_dir).map_err(|e| miette!("{e}"))?;
    tidegate_data::holding::check_token_inputs(&fleet, &policy, &versions, &store, inputs, zone)
        .map_err(|refused| {
            miette!(
                "no token minted: {} of its inputs may not be read in zone {zone}:\n  - {}",
                refused.len(),
                refused.join("\n  - ")
            )
        })
}

/// Runs a token command against `data_dir`.
///
/// # Errors
/// Any refusal, with its reason.
pub fn run(data_dir: &Path, cmd: TokenCmd) -> miette::Result<()> {
    let keys = RootKeyStore::new(&tidegate_vocab::DataDir::new(data_dir).keys());
    let now = now()?;
    match cmd {
        TokenCmd::Mint {
            job,
            zone,
            inputs,
            output_prefix,
            user,
            role,
            team,
            minutes,
            fleet,
        } => {
            // The issue is recorded in the data directory's ledger before the token is
            // printed; a running control plane holding that ledger mints it instead, through
            // its API, which records it the same way.
            let Some(led) = crate::ledgered::Ledgered::open_unless_held(data_dir, now)? else {
                return mint_through_server(
                    data_dir,
                    job,
                    zone,
                    inputs,
                    output_prefix,
                    user,
                    role,
                    team,
                    minutes,
                );
            };
            let spec = match (job, user) {
                (Some(job_id), None) => {
                    let zone = zone.ok_or_else(|| miette!("a job token needs --zone"))?;
                    let max = tidegate_api::MAX_JOB_TOKEN_INPUTS;
                    if inputs.len() > max {
                        return Err(miette!(
                            "--input: {} inputs; a job token names at most {max}, each recorded in its ledger entry",
                            inputs.len()
                        ));
                    }
                    check_inputs(data_dir, fleet, &inputs, &zone)?;
                    TokenSpec::Job {
                        job_id,
                        zone,
                        inputs,
                        output_prefix: output_prefix
                            .ok_or_else(|| miette!("a job token needs --output-prefix"))?,
                        ttl_minutes: minutes,
                    }
                }
                (None, Some(subject)) => TokenSpec::User {
                    subject,
                    role: Role::parse(role.as_deref().unwrap_or_default()).map_err(err)?,
                    team: team.unwrap_or_default(),
                    ttl_minutes: minutes,
                },
                _ => return Err(miette!("give either --job or --user")),
            };
            let issuer = keys.issuer().map_err(err)?;
            let ring = checked_keyring(data_dir, &keys)?;
            let token = issuer.mint(&ring, &spec, now).map_err(err)?;
            let claims = Verifier::new(ring).inspect(&token, now).map_err(err)?;
            let input_subjects = match &spec {
                TokenSpec::Job { inputs, .. } => {
                    let store = tidegate_artifacts::ArtifactStore::open(data_dir)
                        .map_err(|e| miette!("{e}"))?;
                    tidegate_server::evidence::token_input_subjects(inputs, &store)
                        .map_err(|e| miette!("no token minted: an input cannot be recorded: {e}"))?
                }
                TokenSpec::User { .. } => Vec::new(),
            };
            let grant = match &spec {
                TokenSpec::Job {
                    job_id,
                    zone,
                    inputs,
                    output_prefix,
                    ..
                } => TokenGrant::Job {
                    job: job_id,
                    zone,
                    inputs,
                    output_prefix,
                    input_subjects: &input_subjects,
                },
                TokenSpec::User { role, team, .. } => TokenGrant::User {
                    role: role.as_str(),
                    team,
                },
            };
            let (action, subjects) =
                token_issued_entry(&claims.revocation_id, claims.expires_at, &grant)
                    .map_err(|e| miette!("no token minted: its issue cannot be recorded: {e}"))?;
            led.record("operator", action, subjects)?;
            led.close()?;
            println!("{token}");
        }
        TokenCmd::Inspect { token } => {
            let token = read_token(&token)?;
            let claims = Verifier::new(checked_keyring(data_dir, &keys)?)
                .inspect(&token, now)
                .map_err(err)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&claims).into_diagnostic()?
            );
        }
        TokenCmd::Attenuate {
            token,
            read_only,
            prefix,
            zone,
            minutes,
        } => {
            let token = read_token(&token)?;
            let restriction = Attenuation {
                expires_at: minutes.map(|m| now.saturating_add(u64::from(m) * 60)),
                operation: read_only.then_some(Operation::Read),
                resource_prefix: prefix,
                zone,
            };
            println!("{}", attenuate(&token, &restriction).map_err(err)?);
        }
        TokenCmd::Check {
            token,
            read,
            write,
            zone,
            action,
            team,
        } => {
            let token = read_token(&token)?;
            let request = match (read, write, action) {
                (Some(resource), None, None) => Request::Data {
                    operation: Operation::Read,
                    resource,
                    zone,
                },
                (None, Some(resource), None) => Request::Data {
                    operation: Operation::Write,
                    resource,
                    zone,
                },
                (None, None, Some(action)) => Request::Api {
                    action: match action.as_str() {
                        "submit" => Action::Submit,
                        "approve" => Action::Approve,
                        "audit" => Action::Audit,
                        "read" => Action::Read,
                        "cancel" => Action::Cancel,
                        "observe" => Action::Observe,
                        "agent" => Action::Agent,
                        "administer" => Action::Administer,
                        other => {
                            return Err(miette!(
                                "unknown action {other:?}: submit, approve, audit, read, cancel, observe, agent, administer"
                            ))
                        }
                    },
                    team: team.unwrap_or_default(),
                },
                _ => return Err(miette!("give exactly one of --read, --write or --action")),
            };
            Verifier::new(checked_keyring(data_dir, &keys)?)
                .authorize(&token, &request, now)
                .map_err(err)?;
            println!("allowed");
        }
        TokenCmd::Keys(k) => match k {
            TokenKeysCmd::Rotate { days } => {
                // The ledger is opened first: a rotation it cannot record does not happen. A
                // keyring changed outside tidegate is refused, never laundered into the record.
                let led = crate::ledgered::Ledgered::open(data_dir, now)?;
                checked_keyring(data_dir, &keys)?;
                let key = keys.rotate(now, days).map_err(err)?;
                let recorded = keys.keyring().map_err(err).and_then(|after| {
                    let action = keyring_changed(
                        data_dir,
                        &format!("token-root-{}", key.id),
                        "token-root-rotated-in",
                        &after,
                    )?;
                    led.record("operator", action, Vec::new())
                });
                if let Err(e) = recorded {
                    // Never usable unrecorded: the new root key is revoked again.
                    let undone = keys.revoke(key.id, now).map_err(err);
                    return Err(match undone {
                        Ok(()) => {
                            e.wrap_err(format!("root key {} was revoked again at once", key.id))
                        }
                        Err(u) => e.wrap_err(format!(
                            "and root key {} could not be revoked ({u:?}): revoke it by hand",
                            key.id
                        )),
                    });
                }
                led.close()?;
                println!("root key {} active until {}", key.id, key.not_after);
            }
            TokenKeysCmd::Revoke { id } => {
                let Some(led) = crate::ledgered::Ledgered::open_unless_held(data_dir, now)? else {
                    return revoke_through_server(data_dir, &serde_json::json!({"root_key": id}));
                };
                let mut after = checked_keyring(data_dir, &keys)?;
                after.revoke(id, now).map_err(err)?;
                let action = keyring_changed(
                    data_dir,
                    &format!("token-root-{id}"),
                    "token-root-revoked",
                    &after,
                )?;
                led.record("operator", action, Vec::new())?;
                keys.revoke(id, now).map_err(err)?;
                led.close()?;
                println!("revoked root key {id}");
            }
            TokenKeysCmd::RevokeToken { revocation_id } => {
                let Some(led) = crate::ledgered::Ledgered::open_unless_held(data_dir, now)? else {
                    return revoke_through_server(
                        data_dir,
                        &serde_json::json!({"revocation_id": revocation_id}),
                    );
                };
                let mut after = checked_keyring(data_dir, &keys)?;
                after.revoke_token(&revocation_id);
                let action = keyring_changed(data_dir, &revocation_id, "token-revoked", &after)?;
                led.record("operator", action, Vec::new())?;
                keys.revoke_token(&revocation_id).map_err(err)?;
                led.close()?;
                println!("revoked token {revocation_id}");
            }
            TokenKeysCmd::Export => {
                println!("{}", keys.keyring().map_err(err)?.to_json().map_err(err)?);
            }
        },
    }
    Ok(())
}

/// `token mint` while a control plane runs on the data directory (it holds the ledger): the
/// token is minted by that control plane through its API, with the data directory's admin
/// token, and recorded there. The API gives a token at most the admin token's lifetime.
#[allow(clippy::too_many_arguments)]
fn mint_through_server(
    data_dir: &Path,
    job: Option<String>,
    zone: Option<String>,
    inputs: Vec<String>,
    output_prefix: Option<String>,
    user: Option<String>,
    role: Option<String>,
    team: Option<String>,
    minutes: u32,
) -> miette::Result<()> {
    let client = server_client(data_dir)?;
    let minted: TokenResponse = match (job, user) {
        (Some(job), None) => client.post(
            "/v1/tokens/job",
            &JobTokenRequest {
                job,
                zone: zone.ok_or_else(|| miette!("a job token needs --zone"))?,
                inputs,
                output_prefix: output_prefix
                    .ok_or_else(|| miette!("a job token needs --output-prefix"))?,
                minutes: Some(minutes),
            },
            &[],
        )?,
        (None, Some(subject)) => client.post(
            "/v1/tokens",
            &TokenRequest {
                subject,
                role: role.unwrap_or_default(),
                team: team.unwrap_or_default(),
                minutes: Some(minutes),
            },
            &[],
        )?,
        _ => return Err(miette!("give either --job or --user")),
    };
    eprintln!(
        "minted by the control plane at {} (it holds this data directory's evidence ledger and recorded the issue)",
        client.base
    );
    println!("{}", minted.token);
    Ok(())
}

/// The token keyring of `keys` (the data directory's), refused unless it is the one the data
/// directory's evidence ledger recorded last: revocations and keys change only through
/// `token keys`, which records each change, so a file edited since is not trusted. A keyring
/// the ledger never recorded (a data directory from before keyrings were recorded) is used as
/// it is.
fn checked_keyring(
    data_dir: &Path,
    keys: &RootKeyStore,
) -> miette::Result<tidegate_identity::RootKeyring> {
    let ring = keys.keyring().map_err(err)?;
    let entries = crate::ledgered::sealed_entries(data_dir)?;
    let recorded = tidegate_server::evidence::recorded_token_keyring(&entries)
        .map_err(|e| miette!("the evidence ledger cannot be read: {e}"))?;
    if let Some((index, want)) = recorded {
        let got =
            tidegate_server::evidence::token_keyring_digest(&ring).map_err(|e| miette!("{e}"))?;
        if got != want {
            return Err(miette!(
                help = "keys and revocations change only through `tidegate token keys`, which records each change; restore the keyring file",
                "the token keyring {} is not the one the evidence ledger recorded last (entry {index}): its keys or revocations were changed outside tidegate, so it is not used",
                keys.keyring_path().display()
            ));
        }
    }
    Ok(ring)
}

/// The `key.changed` action for a token keyring change, with the keyring it leaves kept as a
/// ledger document and named by digest.
fn keyring_changed(
    data_dir: &Path,
    key_id: &str,
    change: &str,
    after: &tidegate_identity::RootKeyring,
) -> miette::Result<tidegate_ledger::Action> {
    let mut action = crate::ledgered::key_changed(key_id, change)?;
    let json = after.to_json().map_err(err)?;
    let digest = tidegate_ledger::ledger::put_document(data_dir, json.as_bytes())
        .map_err(|e| miette!("keeping the token keyring as evidence: {e}"))?;
    if let tidegate_ledger::Action::KeyChanged { keyring, .. } = &mut action {
        *keyring = Some(digest);
    }
    Ok(action)
}

/// A revocation while a control plane runs on the data directory (it holds the ledger): made by
/// that control plane through its API (`POST /v1/tokens/revoke`), which records it and puts it
/// in force at once.
fn revoke_through_server(data_dir: &Path, body: &serde_json::Value) -> miette::Result<()> {
    let client = server_client(data_dir)?;
    let done: tidegate_api::RevokeResponse = client.post("/v1/tokens/revoke", body, &[])?;
    eprintln!(
        "revoked by the control plane at {} (it holds this data directory's evidence ledger and recorded it)",
        client.base
    );
    println!("revoked {}", done.revoked);
    Ok(())
}

/// The client of the control plane that holds `data_dir`'s ledger, with its admin token.
fn server_client(data_dir: &Path) -> miette::Result<tidegate_client::Client> {
    tidegate_client::Client::from_args(&tidegate_client::ClientArgs {
        server: None,
        token_file: None,
        ca: None,
        data_dir: data_dir.to_path_buf(),
    })
    .map_err(|e| {
        miette!(
            help = "stop the control plane, or make its URL and admin token readable in the data directory",
            "the evidence ledger in {} is held by a running control plane, and it cannot be reached to act there: {e}",
            data_dir.display()
        )
    })
}
