//! `tidegate dataset register|list|show|sanitize` and `tidegate transfer`: the data boundary on a
//! data directory. Registrations, sanitized versions (with their signed report) and transfers
//! are recorded in the data directory's evidence ledger before they take effect.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use miette::miette;
use tidegate_artifacts::kms::{named_key, FileKeyManager};
use tidegate_artifacts::signing::{KeyStore, Signer};
use tidegate_artifacts::ArtifactStore;
use tidegate_client::output::{print_json, Format};
use tidegate_data::approval::approval_for;
use tidegate_data::derive::{sanitize_version, Derivation};
use tidegate_data::transfer::{execute, plan, TransferRequest};
use tidegate_data::{
    ClassificationNames, ColumnRef, DataError, DatasetVersion, RegisterSpec, Registry,
};
use tidegate_model::{load_fleet, DatasetRef, Fleet};
use tidegate_policy::PolicyEngine;
use tidegate_sanitize::{Key, Profile};

use crate::clock::now;
use crate::ledgered::Ledgered;

/// Where the data directory and fleet are.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Data directory (else $TIDEGATE_DATA_DIR, else ./.tidegate).
    #[arg(
        long,
        env = "TIDEGATE_DATA_DIR",
        default_value = ".tidegate",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Fleet directory (else $TIDEGATE_FLEET, else ./examples/fleet, else the built-in example).
    #[arg(long, env = "TIDEGATE_FLEET", global = true)]
    pub fleet: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t, global = true)]
    pub output: Format,
}

/// Dataset registry commands.
#[derive(Debug, Subcommand)]
pub enum DatasetCmd {
    /// Register a dataset version: its tables (a CSV/Parquet file or a directory of them) are
    /// stored encrypted and content-addressed, with schema, classification, owner and zone.
    ///
    /// Example: tidegate dataset register synthea@raw-2026-11 --in ../shared/data/synthea
    ///   --zone hospital-onprem --owner clinical-data --level restricted --tag phi --residency US
    Register(RegisterArgs),
    /// List registered versions.
    List,
    /// Show one version: classification, tables and columns, snapshot digest, derivation.
    Show {
        /// `name@version`.
        dataset: String,
    },
    /// Sanitize a registered version into a new version (same zone). The pseudonymisation key
    /// comes from the key manager (one per owner by default, so keys join across versions);
    /// the report is stored, signed and ledgered, and the new version is classified lower only
    /// if the report says the lower classification was earned.
    Sanitize(SanitizeVersionArgs),
}

/// `dataset register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// `name@version`.
    pub dataset: String,
    /// A table file (.csv, .parquet) or a directory of them.
    #[arg(long = "in")]
    pub input: PathBuf,
    /// Zone that holds the data.
    #[arg(long)]
    pub zone: String,
    /// Owning team.
    #[arg(long)]
    pub owner: String,
    /// Classification level (a level of the fleet's scheme, e.g. restricted).
    #[arg(long)]
    pub level: String,
    /// Legal tag (repeatable), e.g. --tag phi --tag pii.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Jurisdiction the data may be processed in (repeatable); none = unrestricted.
    #[arg(long)]
    pub residency: Vec<String>,
    /// Retention class (e.g. regulated).
    #[arg(long)]
    pub retention: Option<String>,
}

/// `dataset sanitize`.
#[derive(Debug, Args)]
pub struct SanitizeVersionArgs {
    /// The registered source, `name@version`.
    pub dataset: String,
    /// The new version, `name@version`.
    #[arg(long = "as")]
    pub target: String,
    /// Profile: a built-in name (hipaa-safe-harbor) or a YAML file.
    #[arg(long, default_value = "hipaa-safe-harbor")]
    pub profile: String,
    /// Override the profile's k for k-anonymity.
    #[arg(long)]
    pub k: Option<u32>,
    /// Name of the pseudonymisation key in the key manager (default: pseudonymisation/OWNER).
    #[arg(long)]
    pub key_name: Option<String>,
    /// The approver's signature over a profile file (default: `PROFILE.sig` when it exists). A
    /// profile file earns a lower classification only with one that verifies against an
    /// approver key of the data directory; one that does not verify refuses the run.
    #[arg(long, value_name = "FILE")]
    pub profile_signature: Option<PathBuf>,
}

/// `tidegate transfer`.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// The registered version to move, `name@version`.
    pub dataset: String,
    /// Destination zone.
    #[arg(long)]
    pub to: String,
    /// Columns to ship, `table.column`, comma separated (default: every table whole). Ship a
    /// narrow feature matrix, not source records.
    #[arg(long, value_delimiter = ',')]
    pub columns: Vec<String>,
    /// Largest acceptable egress cost (the fleet's currency).
    #[arg(long, default_value_t = 100.0)]
    pub max_cost: f64,
    /// Decide and explain, move nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where the data directory and fleet are.
    #[command(flatten)]
    pub data: DataArgs,
}

/// The sealed entries of the evidence ledger `data_dir` records into: what every registered
/// version is checked against before anything is decided on it.
pub fn ledger_entries(data_dir: &Path) -> miette::Result<Vec<Vec<u8>>> {
    ArtifactStore::open(data_dir)
        .and_then(|s| s.evidence_entries())
        .map_err(|e| miette!("{e}"))
}

/// The registered versions of `data_dir`, each as its evidence ledger recorded it.
pub fn recorded_versions(data_dir: &Path) -> miette::Result<Vec<DatasetVersion>> {
    Registry::open(data_dir)
        .list_recorded(&ledger_entries(data_dir)?)
        .map_err(|e| miette!("{e}"))
}

/// The fleet for data commands as its files say (`--fleet`, else the example fleet), without
/// the registered versions.
fn fleet_files(flag: Option<PathBuf>, data_dir: &Path) -> miette::Result<Fleet> {
    let dir = match flag {
        Some(d) => d,
        None if Path::new("examples/fleet/fleet.yaml").is_file() => PathBuf::from("examples/fleet"),
        None => crate::up::example_fleet(data_dir)?,
    };
    load_fleet(&dir).map_err(|e| miette!("the fleet in {} does not load:\n{e}", dir.display()))
}

/// The fleet for data commands, with the registered versions merged in (as the evidence ledger
/// recorded them).
pub fn fleet_with_registry(flag: Option<PathBuf>, data_dir: &Path) -> miette::Result<Fleet> {
    let mut fleet = fleet_files(flag, data_dir)?;
    Registry::open(data_dir)
        .merge_into(&mut fleet, &ledger_entries(data_dir)?)
        .map_err(|e| miette!("{e}"))?;
    Ok(fleet)
}

fn parse_ref(s: &str) -> miette::Result<DatasetRef> {
    DatasetRef::parse(s).ok_or_else(|| {
        miette!(
            help = "write name@version, e.g. synthea@raw-2026-11",
            "{s:?} is not name@version"
        )
    })
}

/// The signer new signatures use, creating a builder key on first use.
pub fn signer(store: &ArtifactStore, now: u64) -> miette::Result<Signer> {
    let keys = KeyStore::new(&store.keys_dir());
    let active = keys.active_keyid().map_err(|e| miette!("{e}"))?;
    if active.is_none() {
        let e = keys
            .create("tidegate", &["builder"], now, 365, true)
            .map_err(|e| miette!("{e}"))?;
        eprintln!(
            "created signing key {} (keys in {})",
            e.keyid,
            store.keys_dir().display()
        );
    }
    keys.active_signer(now).map_err(|e| miette!("{e}"))
}

/// The pseudonymisation key `name` from the key manager of `store`.
pub fn kms_key(store: &ArtifactStore, name: &str) -> miette::Result<Key> {
    let kms = FileKeyManager::open(&store.keys_dir()).map_err(|e| miette!("{e}"))?;
    let key = named_key(&kms, &store.keys_dir(), name)
        .map_err(|e| miette!("pseudonymisation key {name:?}: {e}"))?;
    Key::from_bytes(key.bytes()).map_err(|e| miette!("{e}"))
}

fn print_version(v: &DatasetVersion) {
    let c = &v.classification;
    println!(
        "{}  ({} in zone {}, owner {})",
        v.id(),
        describe(c),
        v.home_zone,
        v.owner
    );
    println!("  snapshot  {}  ({} bytes)", v.snapshot, v.bytes);
    if let Some(from) = &v.derived_from {
        println!(
            "  derived   from {from}{}",
            v.report
                .as_ref()
                .map(|r| format!(", sanitizer report {r}"))
                .unwrap_or_default()
        );
    }
    for t in &v.tables {
        println!(
            "  table     {} ({}, {} bytes, {} columns): {}",
            t.table,
            t.format,
            t.bytes,
            t.columns.len(),
            t.columns.join(", ")
        );
    }
}

fn describe(c: &ClassificationNames) -> String {
    let mut s = c.level.clone();
    if !c.tags.is_empty() {
        s = format!("{s}/{}", c.tags.join(","));
    }
    if let Some(r) = &c.residency {
        s = format!("{s}, residency {}", r.join(","));
    }
    s
}

/// Runs a dataset command.
///
/// # Errors
/// Any refusal, with its reason.
pub fn run(data: &DataArgs, cmd: DatasetCmd) -> miette::Result<()> {
    let registry = Registry::open(&data.data_dir);
    match cmd {
        DatasetCmd::List => {
            let all = registry
                .list_recorded(&ledger_entries(&data.data_dir)?)
                .map_err(|e| miette!("{e}"))?;
            if data.output == Format::Json {
                return print_json(&all);
            }
            if all.is_empty() {
                println!(
                    "no dataset versions registered in {} (tidegate dataset register --help)",
                    data.data_dir.display()
                );
            }
            for v in &all {
                println!(
                    "{:<28} {:<42} {:<16} {:>12} bytes  {}",
                    v.id(),
                    describe(&v.classification),
                    v.home_zone,
                    v.bytes,
                    v.snapshot
                );
            }
            Ok(())
        }
        DatasetCmd::Show { dataset } => {
            let v = registry
                .get_recorded(&parse_ref(&dataset)?, &ledger_entries(&data.data_dir)?)
                .map_err(|e| miette!("{e}"))?;
            if data.output == Format::Json {
                return print_json(&v);
            }
            print_version(&v);
            Ok(())
        }
        DatasetCmd::Register(a) => {
            let r = parse_ref(&a.dataset)?;
            // Registration checks the registry against the ledger itself (and may restore a
            // recorded version's missing row), so it starts from the fleet's files.
            let fleet = fleet_files(data.fleet.clone(), &data.data_dir)?;
            let now = now()?;
            let led = Ledgered::open(&data.data_dir, now)?;
            let store = led.home_store()?;
            let spec = RegisterSpec {
                name: r.name,
                version: r.version,
                owner: a.owner,
                home_zone: a.zone,
                classification: ClassificationNames {
                    level: a.level,
                    tags: a.tags,
                    residency: (!a.residency.is_empty()).then_some(a.residency),
                    retention: a.retention,
                },
                derived_from: None,
                report: None,
            };
            let result = registry
                .register(&store, &fleet, &spec, &a.input, now)
                .map_err(register_error);
            drop(store);
            let closed = led.close();
            let v = result?;
            closed?;
            if data.output == Format::Json {
                return print_json(&v);
            }
            println!("registered");
            print_version(&v);
            Ok(())
        }
        DatasetCmd::Sanitize(a) => sanitize_cmd(data, &registry, &a),
    }
}

/// A registration error, naming the command-line flag of the field at fault.
fn register_error(e: DataError) -> miette::Report {
    let flag = |field: &str| match field {
        "zone" => "--zone",
        "owner" => "--owner",
        "level" | "classification.level" => "--level",
        "tag" | "classification.tags" => "--tag",
        "residency" => "--residency",
        "retention" | "classification.retention" => "--retention",
        "input" => "--in",
        _ => "dataset",
    };
    match &e {
        DataError::Invalid { field, message } => miette!(
            help = "nothing was registered",
            "{}: {message}",
            flag(field)
        ),
        DataError::Downgrade { field, .. } => {
            let text = e.to_string();
            let rest = text.split_once(": ").map_or(text.as_str(), |(_, r)| r);
            miette!(help = "nothing was registered", "{}: {rest}", flag(field))
        }
        _ => miette!("{e}"),
    }
}

fn sanitize_cmd(
    data: &DataArgs,
    registry: &Registry,
    a: &SanitizeVersionArgs,
) -> miette::Result<()> {
    let source = registry
        .get_recorded(&parse_ref(&a.dataset)?, &ledger_entries(&data.data_dir)?)
        .map_err(|e| miette!("{e}"))?;
    let target = parse_ref(&a.target)?;
    let mut profile = Profile::load(&a.profile).map_err(|e| miette!("{e}"))?;
    if let Some(k) = a.k {
        profile.set_k(k).map_err(|e| miette!("{e}"))?;
    }
    let fleet = fleet_with_registry(data.fleet.clone(), &data.data_dir)?;
    let now = now()?;
    let led = Ledgered::open(&data.data_dir, now)?;
    let store = led.home_store()?;
    let key_name = a
        .key_name
        .clone()
        .unwrap_or_else(|| format!("pseudonymisation/{}", source.owner));
    let result = kms_key(&store, &key_name).and_then(|key| {
        let signer = signer(&store, now)?;
        let keyring = store.trusted_keyring().map_err(|e| miette!("{e}"))?;
        let approval = approval_for(&keyring, &profile, a.profile_signature.as_deref(), now).map_err(|e| {
            miette!(help = "re-sign the profile with `tidegate sanitize sign-profile`, or run it unsigned (it then earns nothing)", "{e}")
        })?;
        let work = tidegate_vocab::DataDir::new(&data.data_dir).scratch().join(format!("sanitize-{}", std::process::id()));
        let d = Derivation {
            registry,
            store: &store,
            fleet: &fleet,
            source: &source,
            profile: &profile,
            signer: &signer,
            approval: approval.as_ref(),
            name: &target.name,
            version: &target.version,
        };
        sanitize_version(&d, key, &work, now)
            .map_err(|e| miette!("{e}"))
    });
    drop(store);
    let closed = led.close();
    let d = result?;
    closed?;
    if data.output == Format::Json {
        return print_json(
            &serde_json::json!({ "version": d.version, "report": d.report, "report_digest": d.report_digest }),
        );
    }
    println!(
        "sanitized {} -> {} with {} (key {key_name}, id {})",
        source.id(),
        d.version.id(),
        d.report.profile,
        d.report.key_id
    );
    println!(
        "  rows {} -> {}, {} tables",
        d.report.rows_in,
        d.report.rows_out,
        d.report.tables.len()
    );
    if d.report.earned {
        println!(
            "  classification earned: {} (was {})",
            describe(&d.version.classification),
            describe(&source.classification)
        );
    } else {
        println!(
            "  classification NOT lowered: stays {}",
            describe(&d.version.classification)
        );
        for r in &d.report.reasons {
            println!("    because {r}");
        }
    }
    println!(
        "  report    {} (signed, in the evidence ledger)",
        d.report_digest
    );
    Ok(())
}

/// Runs `tidegate transfer`.
///
/// # Errors
/// A refusal (every reason), or a failure to move or record.
pub fn transfer(a: &TransferArgs) -> miette::Result<()> {
    let data = &a.data;
    let registry = Registry::open(&data.data_dir);
    let ds = registry
        .get_recorded(&parse_ref(&a.dataset)?, &ledger_entries(&data.data_dir)?)
        .map_err(|e| miette!("{e}"))?;
    let fleet = fleet_with_registry(data.fleet.clone(), &data.data_dir)?;
    let policy = PolicyEngine::load(&fleet)
        .map_err(|e| miette!("the policy set does not load, so nothing may move:\n{e}"))?;
    let columns = a
        .columns
        .iter()
        .map(|c| ColumnRef::parse(c, &ds))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| miette!("{e}"))?;
    let req = TransferRequest {
        to_zone: a.to.clone(),
        columns,
        max_cost: a.max_cost,
    };
    let p =
        plan(&fleet, &policy, &ds, &req).map_err(|r| miette!(help = "nothing was moved", "{r}"))?;
    if a.dry_run {
        if data.output == Format::Json {
            return print_json(&p);
        }
        print_plan(&p);
        println!("dry run: nothing was moved");
        return Ok(());
    }
    let now = now()?;
    let led = Ledgered::open(&data.data_dir, now)?;
    let result = led.home_store().and_then(|src| {
        let dst = led.zone_store(&p.to_zone)?;
        execute(&p, &ds, &src, &dst, now).map_err(|e| miette!("{e}"))
    });
    let closed = led.close();
    let moved = result?;
    closed?;
    if data.output == Format::Json {
        return print_json(&serde_json::json!({ "plan": p, "moved": moved }));
    }
    print_plan(&p);
    println!(
        "moved {} bytes into zone {}'s store (encrypted there under the zone's keys); copy manifest {}",
        moved.bytes, p.to_zone, moved.manifest
    );
    Ok(())
}

fn print_plan(p: &tidegate_data::TransferPlan) {
    println!(
        "transfer {} : {} -> {} allowed ({} form)",
        p.dataset, p.from_zone, p.to_zone, p.form
    );
    for (t, cols) in &p.projection {
        println!("  {t}: {}", cols.join(", "));
    }
    println!(
        "  estimated {} bytes, egress cost {:.4}",
        p.estimated_bytes, p.estimated_cost
    );
    println!(
        "  permitted by {} (policy {})",
        p.permitted_by.join(", "),
        p.policy_hash
    );
}
