//! Loading a fleet directory and job files: YAML to the model, with every error naming the file,
//! the line and the field, and every problem in a file reported, not just the first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};

use crate::classification::{norm_jurisdiction, ClassificationSpec, SchemeLines, SchemeSpec};
use crate::fleet::PolicyFile;
use crate::scheduling::{
    scope_known, Budget, Failover, FailoverAction, FailoverRule, JobClass, Scheduling, TeamQuota,
};
use crate::{
    ArtifactRecord, Backend, Classification, Dataset, DatasetRef, Fleet, Input, JobKind, JobSpec,
    Labels, LoadError, LoadErrors, Origin, Pool, Pricing, Resources, Scheme, Sla, Tier, Zone,
    ZoneScope, DEFAULT_ADMISSION_TIMEOUT_S, MAX_ADMISSION_TIMEOUT_S,
};

/// The API version job files must declare.
pub const JOB_API_VERSION: &str = "tidegate.io/v1";

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_yaml<T: de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, LoadError> {
    serde_saphyr::from_str::<T>(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        LoadError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message: plain_message(&e),
        }
    })
}

/// The parser's message without its rendered source snippet (we print file:line ourselves).
fn plain_message(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    let first = full
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid YAML");
    let first = first.trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // We print file:line:column ourselves: drop the parser's own "line N column M: " prefix
    // and " at line N column M" suffix.
    let first = match first.find(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    match first
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((pos, msg))
            if pos
                .split(' ')
                .all(|w| w == "column" || w.bytes().all(|b| b.is_ascii_digit())) =>
        {
            msg.to_string()
        }
        _ => first.to_string(),
    }
}

fn origin_of<T>(file: &Arc<Path>, s: &Spanned<T>) -> Origin {
    Origin {
        file: file.clone(),
        line: u32::try_from(s.referenced.line()).unwrap_or(u32::MAX),
    }
}

/// A label value: any YAML scalar, kept as its text (`true`, `8`, `private`).
#[derive(Debug, Clone)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// One element of a job's `spec.command`: a YAML string, or what else was written there (so the
/// error can name the element instead of failing the whole document).
#[derive(Debug, Clone)]
enum CommandArg {
    Text(String),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for CommandArg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CommandArg;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CommandArg, E> {
                Ok(CommandArg::Text(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<CommandArg, E> {
                Ok(CommandArg::Other("a boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<CommandArg, E> {
                Ok(CommandArg::Other("a number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<CommandArg, E> {
                Ok(CommandArg::Other("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<CommandArg, E> {
                Ok(CommandArg::Other("a number"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<CommandArg, E> {
                Ok(CommandArg::Other("null"))
            }
            fn visit_none<E: de::Error>(self) -> Result<CommandArg, E> {
                Ok(CommandArg::Other("null"))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<CommandArg, A::Error> {
                while a.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(CommandArg::Other("a list"))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut a: A) -> Result<CommandArg, A::Error> {
                while a.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
                Ok(CommandArg::Other("a mapping"))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// Fleet files as written.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetFile {
    name: String,
    #[serde(default)]
    home_jurisdiction: Option<Spanned<String>>,
    #[serde(default)]
    classification: SchemeSpec,
    #[serde(default)]
    baseline: BaselineSpec,
    #[serde(default)]
    teams: Vec<TeamFile>,
    #[serde(default)]
    job_classes: Vec<JobClassFile>,
    #[serde(default)]
    failover: FailoverFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetFile {
    #[serde(default)]
    money: Option<Spanned<f64>>,
    #[serde(default)]
    gpu_hours: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamFile {
    name: Spanned<String>,
    #[serde(default)]
    weight: Option<Spanned<f64>>,
    #[serde(default)]
    nominal: BTreeMap<String, Spanned<u32>>,
    #[serde(default)]
    borrowing_limit: Option<u32>,
    #[serde(default)]
    justification: Option<String>,
    #[serde(default)]
    budget: BudgetFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobClassFile {
    name: Spanned<String>,
    #[serde(default)]
    burst_queue_depth: Option<usize>,
    #[serde(default)]
    max_wait_minutes: Option<Spanned<f64>>,
    #[serde(default)]
    min_deadline_slack_minutes: Option<Spanned<f64>>,
    #[serde(default)]
    budget: BudgetFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailoverFile {
    #[serde(default)]
    on_degraded: Vec<FailoverRuleFile>,
    #[serde(default)]
    on_throttle: ThrottleFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailoverRuleFile {
    classes: Spanned<Vec<String>>,
    action: FailoverAction,
    #[serde(default)]
    to: Vec<Spanned<String>>,
    #[serde(default)]
    max_classification: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThrottleFile {
    #[serde(default)]
    shed: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BaselineSpec {
    #[serde(default)]
    exclude: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneFile {
    name: Spanned<String>,
    tier: Tier,
    provider: String,
    region: String,
    jurisdiction: String,
    #[serde(default)]
    certifications: Vec<String>,
    max_classification: Spanned<String>,
    #[serde(default)]
    egress_allowlist: Vec<Spanned<String>>,
    #[serde(default)]
    egress_price_per_gb: f64,
    backend: Backend,
    #[serde(default)]
    pools: Vec<PoolFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolFile {
    name: Spanned<String>,
    gpu_type: String,
    gpus: u32,
    gpu_memory_gb: u32,
    price_per_gpu_hour: Spanned<f64>,
    #[serde(default = "on_demand")]
    pricing: Pricing,
    #[serde(default)]
    preemption_risk: Option<Spanned<f64>>,
}

fn on_demand() -> Pricing {
    Pricing::OnDemand
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatasetsFile {
    #[serde(default)]
    datasets: Vec<DatasetFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatasetFile {
    name: Spanned<String>,
    version: String,
    classification: ClassificationSpec,
    home_zone: Spanned<String>,
    #[serde(default)]
    size_gb: f64,
    #[serde(default = "no_owner")]
    owner: Spanned<String>,
}

fn no_owner() -> Spanned<String> {
    Spanned::new(
        String::new(),
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArtifactsFile {
    #[serde(default)]
    artifacts: Vec<ArtifactFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArtifactFile {
    digest: Spanned<String>,
    #[serde(default)]
    signed: bool,
    #[serde(default = "candidate")]
    stage: String,
}

fn candidate() -> String {
    "candidate".into()
}

// ---------------------------------------------------------------------------------------------
// Job files as written.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct JobFile {
    api_version: Spanned<String>,
    kind: Spanned<String>,
    metadata: MetadataFile,
    spec: SpecFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataFile {
    name: Spanned<String>,
    team: Spanned<String>,
    #[serde(default)]
    labels: BTreeMap<String, Spanned<Scalar>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    kind: JobKind,
    #[serde(default)]
    inputs: Vec<Spanned<InputFile>>,
    #[serde(default)]
    outputs: Vec<String>,
    resources: ResourcesFile,
    #[serde(default)]
    deadline: Option<String>,
    #[serde(default)]
    sla: Option<SlaFile>,
    #[serde(default = "default_budget_class")]
    budget_class: String,
    #[serde(default)]
    code_commit: Option<String>,
    #[serde(default)]
    hyperparameters: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    justification: Option<String>,
    #[serde(default)]
    classification: Option<ClassificationSpec>,
    #[serde(default)]
    command: Vec<Spanned<CommandArg>>,
}

fn default_budget_class() -> String {
    "default".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputFile {
    #[serde(default)]
    dataset: Option<String>,
    #[serde(default)]
    artifact: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourcesFile {
    gpus: Spanned<u32>,
    #[serde(default)]
    gpu_types: Vec<String>,
    #[serde(default)]
    gpu_memory_gb: u32,
    #[serde(default)]
    memory_gb: u32,
    expected_hours: Spanned<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlaFile {
    max_wait_minutes: u32,
}

// ---------------------------------------------------------------------------------------------
// Conversion with validation.

fn classification(
    spec: &ClassificationSpec,
    scheme: &Scheme,
    origin: &Origin,
    field: &str,
    errs: &mut Vec<LoadError>,
) -> Classification {
    let mut c = Classification::default();
    if let Some(level) = &spec.level {
        match scheme.level_rank(&level.value) {
            Some(r) => c.level = r,
            None => {
                errs.push(LoadError::invalid(
                    &origin.at(level.referenced.line()),
                    format!("{field}.level"),
                    format!(
                        "unknown classification level `{}` (known: {})",
                        level.value,
                        scheme.level_names().join(", ")
                    ),
                ));
                // Fail closed: an unknown level is treated as the most sensitive one.
                c.level = u8::try_from(scheme.levels.len().saturating_sub(1)).unwrap_or(u8::MAX);
            }
        }
    }
    for tag in &spec.tags {
        if !scheme.knows_tag(&tag.value) {
            errs.push(LoadError::invalid(
                &origin.at(tag.referenced.line()),
                format!("{field}.tags"),
                format!(
                    "unknown legal tag `{}` (declare it in fleet.yaml, or use contractual:NAME)",
                    tag.value
                ),
            ));
        }
        c.tags.insert(tag.value.clone());
    }
    c.residency = spec.residency.as_ref().map(|r| {
        r.iter()
            .map(|j| norm_jurisdiction(j))
            .collect::<BTreeSet<_>>()
    });
    if let Some(ret) = &spec.retention {
        if scheme.retention_rank(&ret.value).is_none() {
            errs.push(LoadError::invalid(
                &origin.at(ret.referenced.line()),
                format!("{field}.retention"),
                format!(
                    "unknown retention class `{}` (known: {})",
                    ret.value,
                    scheme.retention_classes.join(", ")
                ),
            ));
        }
        c.retention = Some(ret.value.clone());
    }
    c
}

fn convert_zone(file: &Arc<Path>, z: ZoneFile, scheme: &Scheme, errs: &mut Vec<LoadError>) -> Zone {
    let origin = origin_of(file, &z.name);
    check_name(&z.name.value, &origin, "name", errs);
    let max = match scheme.level_rank(&z.max_classification.value) {
        Some(r) => r,
        None => {
            errs.push(LoadError::invalid(
                &origin_of(file, &z.max_classification),
                "max_classification",
                format!(
                    "unknown classification level `{}` (known: {})",
                    z.max_classification.value,
                    scheme.level_names().join(", ")
                ),
            ));
            0 // fail closed: the zone may hold only the least sensitive data
        }
    };
    if let Backend::Local {
        run_as: Some(user), ..
    } = &z.backend
    {
        if let Some(problem) = run_as_problem(user) {
            errs.push(LoadError::invalid(&origin, "backend.run_as", problem));
        }
    }
    if let Backend::Kubernetes {
        admission_timeout_s,
        ..
    } = &z.backend
    {
        if !(1..=MAX_ADMISSION_TIMEOUT_S).contains(admission_timeout_s) {
            errs.push(LoadError::invalid(
                &origin,
                "backend.admission_timeout_s",
                format!(
                    "must be between 1 and {MAX_ADMISSION_TIMEOUT_S} seconds (how long a Job may wait for Kueue to admit it before the job fails over; default {DEFAULT_ADMISSION_TIMEOUT_S}), found {admission_timeout_s}"
                ),
            ));
        }
    }
    let mut seen = BTreeSet::new();
    let mut pools = Vec::with_capacity(z.pools.len());
    for (i, p) in z.pools.into_iter().enumerate() {
        let porigin = origin_of(file, &p.name);
        check_name(&p.name.value, &porigin, &format!("pools[{i}].name"), errs);
        if !seen.insert(p.name.value.clone()) {
            errs.push(LoadError::invalid(
                &porigin,
                format!("pools[{i}].name"),
                format!(
                    "duplicate pool name `{}` in zone `{}`",
                    p.name.value, z.name.value
                ),
            ));
        }
        if p.price_per_gpu_hour.value < 0.0 || !p.price_per_gpu_hour.value.is_finite() {
            errs.push(LoadError::invalid(
                &origin_of(file, &p.price_per_gpu_hour),
                format!("pools[{i}].price_per_gpu_hour"),
                "must be a finite number >= 0",
            ));
        }
        let risk = p.preemption_risk.as_ref().map_or(0.0, |r| r.value);
        if !(0.0..=1.0).contains(&risk) {
            errs.push(LoadError::invalid(
                &p.preemption_risk
                    .as_ref()
                    .map_or(porigin.clone(), |r| origin_of(file, r)),
                format!("pools[{i}].preemption_risk"),
                "must be between 0 and 1",
            ));
        }
        pools.push(Pool {
            name: p.name.value,
            gpu_type: p.gpu_type,
            gpus: p.gpus,
            gpu_memory_gb: p.gpu_memory_gb,
            price_per_gpu_hour: p.price_per_gpu_hour.value,
            pricing: p.pricing,
            preemption_risk: if p.pricing == Pricing::Spot {
                risk
            } else {
                0.0
            },
            origin: porigin,
        });
    }
    Zone {
        name: z.name.value,
        tier: z.tier,
        provider: z.provider,
        region: z.region,
        jurisdiction: norm_jurisdiction(&z.jurisdiction),
        certifications: z
            .certifications
            .into_iter()
            .map(|c| c.to_ascii_lowercase())
            .collect(),
        max_classification: max,
        egress_allowlist: z.egress_allowlist.into_iter().map(|e| e.value).collect(),
        egress_price_per_gb: z.egress_price_per_gb,
        backend: z.backend,
        pools,
        origin,
    }
}

fn list_dir(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, LoadError> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => {
            return Err(LoadError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for entry in rd {
        let entry = entry.map_err(|source| LoadError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let p = entry.path();
        if p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ext.split('|').any(|x| x == e))
        {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Loads a fleet directory: `fleet.yaml`, `zones/*.yaml`, optional `datasets.yaml` and
/// `artifacts.yaml`, and `policies/*.cedar`. Every problem found is returned, each naming its file
/// and line. The scheduling sections of `fleet.yaml` are validated too; use
/// [`load_fleet_with_scheduling`] to get them.
pub fn load_fleet(dir: &Path) -> Result<Fleet, LoadErrors> {
    load_fleet_with_scheduling(dir).map(|(f, _)| f)
}

/// Loads a fleet directory as [`load_fleet`] does, with the scheduling rules `fleet.yaml`
/// declares (`teams:`, `job_classes:`, `failover:`; each optional).
pub fn load_fleet_with_scheduling(dir: &Path) -> Result<(Fleet, Scheduling), LoadErrors> {
    let mut errs = Vec::new();
    let mut hasher = Sha256::new();
    let mut hash_file = |rel: &str, text: &str| {
        hasher.update((rel.len() as u64).to_be_bytes());
        hasher.update(rel.as_bytes());
        hasher.update((text.len() as u64).to_be_bytes());
        hasher.update(text.as_bytes());
    };

    let fleet_path = dir.join("fleet.yaml");
    let fleet_text = read(&fleet_path)?;
    hash_file("fleet.yaml", &fleet_text);
    let fleet_file: FleetFile = parse_yaml(&fleet_path, &fleet_text)?;
    let (scheme, scheme_lines) = fleet_file.classification.into_scheme();
    check_scheme(&scheme, &scheme_lines, &fleet_path, &mut errs);
    let fleet_origin: Arc<Path> = Arc::from(fleet_path.as_path());
    let home_jurisdiction = fleet_file.home_jurisdiction.as_ref().and_then(|h| {
        let j = norm_jurisdiction(&h.value);
        if j.is_empty() {
            errs.push(LoadError::invalid(
                &origin_of(&fleet_origin, h),
                "home_jurisdiction",
                "must be a jurisdiction code, e.g. US",
            ));
            return None;
        }
        Some(j)
    });

    let mut zones: Vec<Zone> = Vec::new();
    for path in list_dir(&dir.join("zones"), "yaml|yml")? {
        let text = read(&path)?;
        hash_file(&rel_name(dir, &path), &text);
        match parse_yaml::<ZoneFile>(&path, &text) {
            Ok(z) => {
                let file: Arc<Path> = Arc::from(path.as_path());
                let zone = convert_zone(&file, z, &scheme, &mut errs);
                if let Some(prev) = zones.iter().find(|p| p.name == zone.name) {
                    errs.push(LoadError::invalid(
                        &zone.origin,
                        "name",
                        format!(
                            "duplicate zone name `{}` (first declared at {})",
                            zone.name, prev.origin
                        ),
                    ));
                    continue;
                }
                zones.push(zone);
            }
            Err(e) => errs.push(e),
        }
    }
    if zones.is_empty() && errs.is_empty() {
        errs.push(LoadError::invalid(
            &Origin::builtin(&dir.join("zones").display().to_string()),
            "zones",
            "the fleet declares no zones (expected zones/*.yaml)",
        ));
    }
    // Egress allowlist entries that look like zone names must name real zones (checked only when
    // every zone file parsed, so one broken file does not cascade into others' errors).
    let zone_names: BTreeSet<&str> = zones.iter().map(|z| z.name.as_str()).collect();
    let all_zones_parsed = !errs.iter().any(|e| matches!(e, LoadError::Syntax { .. }));
    for z in zones.iter().filter(|_| all_zones_parsed) {
        for dest in &z.egress_allowlist {
            if dest.contains('.') || dest == "*" || zone_names.contains(dest.as_str()) {
                continue;
            }
            errs.push(LoadError::invalid(
                &z.origin,
                "egress_allowlist",
                format!("`{dest}` is neither a zone of this fleet nor a host name"),
            ));
        }
    }

    let mut datasets: Vec<Dataset> = Vec::new();
    let ds_path = dir.join("datasets.yaml");
    if ds_path.exists() {
        let text = read(&ds_path)?;
        hash_file("datasets.yaml", &text);
        match parse_yaml::<DatasetsFile>(&ds_path, &text) {
            Ok(f) => {
                let file: Arc<Path> = Arc::from(ds_path.as_path());
                for (i, d) in f.datasets.into_iter().enumerate() {
                    let origin = origin_of(&file, &d.name);
                    check_name(
                        &d.name.value,
                        &origin,
                        &format!("datasets[{i}].name"),
                        &mut errs,
                    );
                    if !d.owner.value.is_empty() {
                        check_name(
                            &d.owner.value,
                            &origin_of(&file, &d.owner),
                            &format!("datasets[{i}].owner"),
                            &mut errs,
                        );
                    }
                    let c = classification(
                        &d.classification,
                        &scheme,
                        &origin,
                        &format!("datasets[{i}].classification"),
                        &mut errs,
                    );
                    match zones.iter().find(|z| z.name == d.home_zone.value) {
                        Some(z) => {
                            if let Some(why) = scheme.home_zone_problem(&c, z) {
                                errs.push(LoadError::invalid(
                                    &origin_of(&file, &d.home_zone),
                                    format!("datasets[{i}].home_zone"),
                                    why,
                                ));
                            }
                        }
                        None if all_zones_parsed => errs.push(LoadError::invalid(
                            &origin_of(&file, &d.home_zone),
                            format!("datasets[{i}].home_zone"),
                            format!(
                                "unknown zone `{}` (known: {})",
                                d.home_zone.value,
                                join(&zone_names)
                            ),
                        )),
                        None => {}
                    }
                    if datasets
                        .iter()
                        .any(|x| x.name == d.name.value && x.version == d.version)
                    {
                        errs.push(LoadError::invalid(
                            &origin,
                            format!("datasets[{i}].name"),
                            format!("duplicate dataset version `{}@{}`", d.name.value, d.version),
                        ));
                        continue;
                    }
                    datasets.push(Dataset {
                        name: d.name.value,
                        version: d.version,
                        classification: c,
                        home_zone: d.home_zone.value,
                        size_gb: d.size_gb,
                        owner: d.owner.value,
                        origin,
                    });
                }
            }
            Err(e) => errs.push(e),
        }
    }

    let mut artifacts = Vec::new();
    let art_path = dir.join("artifacts.yaml");
    if art_path.exists() {
        let text = read(&art_path)?;
        hash_file("artifacts.yaml", &text);
        match parse_yaml::<ArtifactsFile>(&art_path, &text) {
            Ok(f) => {
                let file: Arc<Path> = Arc::from(art_path.as_path());
                for (i, a) in f.artifacts.into_iter().enumerate() {
                    let origin = origin_of(&file, &a.digest);
                    if !valid_digest(&a.digest.value) {
                        errs.push(LoadError::invalid(
                            &origin,
                            format!("artifacts[{i}].digest"),
                            format!(
                                "`{}` is not a digest of the form sha256:<64 hex>",
                                a.digest.value
                            ),
                        ));
                    }
                    artifacts.push(ArtifactRecord {
                        digest: a.digest.value,
                        signed: a.signed,
                        stage: a.stage,
                        origin,
                    });
                }
            }
            Err(e) => errs.push(e),
        }
    }

    let mut policies = Vec::new();
    for path in list_dir(&dir.join("policies"), "cedar")? {
        let text = read(&path)?;
        hash_file(&rel_name(dir, &path), &text);
        policies.push(PolicyFile { path, text });
    }

    let scheduling = if all_zones_parsed {
        convert_scheduling(
            &fleet_origin,
            fleet_file.teams,
            fleet_file.job_classes,
            fleet_file.failover,
            &scheme,
            &zones,
            &mut errs,
        )
    } else {
        Scheduling::default()
    };

    if !errs.is_empty() {
        return Err(LoadErrors(errs));
    }
    Ok((
        Fleet {
            name: fleet_file.name,
            root: dir.to_path_buf(),
            scheme,
            zones,
            datasets,
            artifacts,
            policies,
            baseline_exclude: fleet_file.baseline.exclude,
            home_jurisdiction,
            fleet_hash: hex::encode(hasher.finalize()),
        },
        scheduling,
    ))
}

fn budget(file: &Arc<Path>, b: &BudgetFile, field: &str, errs: &mut Vec<LoadError>) -> Budget {
    let mut check = |v: &Option<Spanned<f64>>, name: &str| -> Option<f64> {
        let s = v.as_ref()?;
        if !(s.value >= 0.0 && s.value.is_finite()) {
            errs.push(LoadError::invalid(
                &origin_of(file, s),
                format!("{field}.{name}"),
                "must be a finite number >= 0",
            ));
        }
        Some(s.value)
    };
    Budget {
        money: check(&b.money, "money"),
        gpu_hours: check(&b.gpu_hours, "gpu_hours"),
    }
}

fn scopes_hint(zones: &[Zone]) -> String {
    let mut names = vec![
        "private",
        "private-onprem",
        "private-cloud",
        "public",
        "edge",
    ];
    names.extend(zones.iter().map(|z| z.name.as_str()));
    names.join(", ")
}

fn convert_scheduling(
    file: &Arc<Path>,
    teams: Vec<TeamFile>,
    classes: Vec<JobClassFile>,
    failover: FailoverFile,
    scheme: &Scheme,
    zones: &[Zone],
    errs: &mut Vec<LoadError>,
) -> Scheduling {
    let mut out = Scheduling::default();
    for (i, t) in teams.into_iter().enumerate() {
        let origin = origin_of(file, &t.name);
        check_name(&t.name.value, &origin, &format!("teams[{i}].name"), errs);
        if out.teams.iter().any(|x| x.name == t.name.value) {
            errs.push(LoadError::invalid(
                &origin,
                format!("teams[{i}].name"),
                format!("duplicate team `{}`", t.name.value),
            ));
            continue;
        }
        let weight = t.weight.as_ref().map_or(1.0, |w| w.value);
        if !(weight > 0.0 && weight.is_finite()) {
            let o = t
                .weight
                .as_ref()
                .map_or(origin.clone(), |w| origin_of(file, w));
            errs.push(LoadError::invalid(
                &o,
                format!("teams[{i}].weight"),
                "must be a number > 0",
            ));
        }
        for (scope, n) in &t.nominal {
            if !scope_known(scope, zones) {
                errs.push(LoadError::invalid(
                    &origin_of(file, n),
                    format!("teams[{i}].nominal.{scope}"),
                    format!(
                        "unknown scope `{scope}` (expected one of: {})",
                        scopes_hint(zones)
                    ),
                ));
            }
        }
        let b = budget(file, &t.budget, &format!("teams[{i}].budget"), errs);
        out.teams.push(TeamQuota {
            name: t.name.value,
            weight,
            nominal: t.nominal.into_iter().map(|(k, v)| (k, v.value)).collect(),
            borrowing_limit: t.borrowing_limit,
            justification: t.justification.filter(|j| !j.trim().is_empty()),
            budget: b,
            origin,
        });
    }
    for (i, c) in classes.into_iter().enumerate() {
        let origin = origin_of(file, &c.name);
        if out.classes.iter().any(|x| x.name == c.name.value) {
            errs.push(LoadError::invalid(
                &origin,
                format!("job_classes[{i}].name"),
                format!("duplicate job class `{}`", c.name.value),
            ));
            continue;
        }
        let mut minutes = |v: &Option<Spanned<f64>>, name: &str| -> Option<f64> {
            let s = v.as_ref()?;
            if !(s.value >= 0.0 && s.value.is_finite()) {
                errs.push(LoadError::invalid(
                    &origin_of(file, s),
                    format!("job_classes[{i}].{name}"),
                    "must be a finite number >= 0",
                ));
            }
            Some(s.value * 60.0)
        };
        let max_wait_s = minutes(&c.max_wait_minutes, "max_wait_minutes");
        let min_deadline_slack_s =
            minutes(&c.min_deadline_slack_minutes, "min_deadline_slack_minutes");
        let b = budget(file, &c.budget, &format!("job_classes[{i}].budget"), errs);
        out.classes.push(JobClass {
            name: c.name.value,
            burst_queue_depth: c.burst_queue_depth,
            max_wait_s,
            min_deadline_slack_s,
            budget: b,
            origin,
        });
    }
    let class_known = |name: &str, out: &Scheduling| name == "*" || out.class(name).is_some();
    let class_hint = |out: &Scheduling| {
        let mut n: Vec<&str> = out.classes.iter().map(|c| c.name.as_str()).collect();
        n.push("*");
        n.join(", ")
    };
    for (i, r) in failover.on_degraded.into_iter().enumerate() {
        let origin = origin_of(file, &r.classes);
        for c in &r.classes.value {
            if !class_known(c, &out) {
                errs.push(LoadError::invalid(
                    &origin,
                    format!("failover.on_degraded[{i}].classes"),
                    format!("unknown job class `{c}` (declared: {})", class_hint(&out)),
                ));
            }
        }
        for t in &r.to {
            if !scope_known(&t.value, zones) {
                errs.push(LoadError::invalid(
                    &origin_of(file, t),
                    format!("failover.on_degraded[{i}].to"),
                    format!(
                        "unknown scope `{}` (expected one of: {})",
                        t.value,
                        scopes_hint(zones)
                    ),
                ));
            }
        }
        if matches!(
            r.action,
            FailoverAction::FailOver | FailoverAction::Downsize
        ) && r.to.is_empty()
        {
            errs.push(LoadError::invalid(
                &origin,
                format!("failover.on_degraded[{i}].to"),
                "fail-over and downsize need at least one scope in `to`",
            ));
        }
        let max_classification =
            r.max_classification
                .as_ref()
                .map(|m| match scheme.level_rank(&m.value) {
                    Some(rank) => rank,
                    None => {
                        errs.push(LoadError::invalid(
                            &origin_of(file, m),
                            format!("failover.on_degraded[{i}].max_classification"),
                            format!(
                                "unknown classification level `{}` (known: {})",
                                m.value,
                                scheme.level_names().join(", ")
                            ),
                        ));
                        0 // fail closed: only the least sensitive data may move
                    }
                });
        out.failover.on_degraded.push(FailoverRule {
            classes: r.classes.value,
            action: r.action,
            to: r.to.into_iter().map(|t| t.value).collect(),
            max_classification,
            origin,
        });
    }
    for s in &failover.on_throttle.shed {
        if !class_known(&s.value, &out) {
            errs.push(LoadError::invalid(
                &origin_of(file, s),
                "failover.on_throttle.shed",
                format!(
                    "unknown job class `{}` (declared: {})",
                    s.value,
                    class_hint(&out)
                ),
            ));
        }
    }
    out.failover = Failover {
        throttle_shed: failover
            .on_throttle
            .shed
            .into_iter()
            .map(|s| s.value)
            .collect(),
        ..out.failover
    };
    out
}

fn check_scheme(scheme: &Scheme, lines: &SchemeLines, path: &Path, errs: &mut Vec<LoadError>) {
    let origin = Origin {
        file: Arc::from(path),
        line: 0,
    };
    // The built-in levels and tags mean what the code says: a fleet may add and tighten, never
    // loosen them.
    for p in scheme.floor_problems() {
        let field = match &p.subject {
            crate::FloorSubject::Levels | crate::FloorSubject::Level(_) => "classification.levels",
            crate::FloorSubject::Tag(_) => "classification.tags",
        };
        errs.push(LoadError::invalid(
            &origin.at(lines.of(&p.subject)),
            field,
            p.message,
        ));
    }
    // Level and tag names are ASCII: a name in another script that looks like a built-in one
    // (`phі` with a Cyrillic і) is refused, not taken as a new, weaker tag.
    let plain = |n: &str| !n.is_empty() && n.is_ascii();
    for l in scheme.levels.iter().filter(|l| !plain(&l.name)) {
        errs.push(LoadError::invalid(
            &origin.at(lines.of(&crate::FloorSubject::Level(l.name.clone()))),
            "classification.levels",
            format!(
                "level name `{}` must be ASCII (a look-alike in another script is refused)",
                l.name.escape_debug()
            ),
        ));
    }
    for t in scheme.tags.iter().filter(|t| !plain(&t.name)) {
        errs.push(LoadError::invalid(
            &origin.at(lines.of(&crate::FloorSubject::Tag(t.name.clone()))),
            "classification.tags",
            format!(
                "tag name `{}` must be ASCII (a look-alike in another script is refused)",
                t.name.escape_debug()
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    for l in &scheme.levels {
        if !seen.insert(l.name.as_str()) {
            errs.push(LoadError::invalid(
                &origin,
                "classification.levels",
                format!("duplicate level `{}`", l.name),
            ));
        }
    }
    if scheme.levels.is_empty() {
        errs.push(LoadError::invalid(
            &origin,
            "classification.levels",
            "at least one level is required",
        ));
    }
    if scheme.levels.len() > 200 {
        errs.push(LoadError::invalid(
            &origin,
            "classification.levels",
            "at most 200 levels",
        ));
    }
    let mut seen = BTreeSet::new();
    for t in &scheme.tags {
        if !seen.insert(t.name.as_str()) {
            errs.push(LoadError::invalid(
                &origin,
                "classification.tags",
                format!("duplicate tag `{}`", t.name),
            ));
        }
    }
}

fn rel_name(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

fn join(names: &BTreeSet<&str>) -> String {
    names.iter().copied().collect::<Vec<_>>().join(", ")
}

/// Whether `s` is `sha256:` followed by 64 lower-case hex digits.
pub(crate) fn valid_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Loads one job file and validates it against a fleet.
pub fn load_job(path: &Path, fleet: &Fleet) -> Result<JobSpec, LoadErrors> {
    let text = read(path)?;
    parse_job(path, &text, fleet)
}

/// Loads every `*.yaml` job file in a directory (sorted by name).
pub fn load_jobs_dir(dir: &Path, fleet: &Fleet) -> Result<Vec<JobSpec>, LoadErrors> {
    let mut jobs = Vec::new();
    let mut errs = Vec::new();
    for path in list_dir(dir, "yaml|yml")? {
        match load_job(&path, fleet) {
            Ok(j) => {
                if let Some(prev) = jobs.iter().find(|p: &&JobSpec| p.name == j.name) {
                    errs.push(LoadError::invalid(
                        &j.origin,
                        "metadata.name",
                        format!(
                            "duplicate job name `{}` (first declared at {})",
                            j.name, prev.origin
                        ),
                    ));
                } else {
                    jobs.push(j);
                }
            }
            Err(e) => errs.extend(e.0),
        }
    }
    if errs.is_empty() {
        Ok(jobs)
    } else {
        Err(LoadErrors(errs))
    }
}

/// Parses a job from text (`path` names it in errors) and validates it against a fleet.
pub fn parse_job(path: &Path, text: &str, fleet: &Fleet) -> Result<JobSpec, LoadErrors> {
    let f: JobFile = parse_yaml(path, text)?;
    let file: Arc<Path> = Arc::from(path);
    let scheme = &fleet.scheme;
    let mut errs = Vec::new();

    if f.api_version.value != JOB_API_VERSION {
        errs.push(LoadError::invalid(
            &origin_of(&file, &f.api_version),
            "apiVersion",
            format!(
                "expected `{JOB_API_VERSION}`, found `{}`",
                f.api_version.value
            ),
        ));
    }
    if f.kind.value != "Job" {
        errs.push(LoadError::invalid(
            &origin_of(&file, &f.kind),
            "kind",
            format!(
                "expected `Job`, found `{}` (the kind of work goes in spec.kind)",
                f.kind.value
            ),
        ));
    }
    let origin = origin_of(&file, &f.metadata.name);
    check_name(&f.metadata.name.value, &origin, "metadata.name", &mut errs);
    check_name(
        &f.metadata.team.value,
        &origin_of(&file, &f.metadata.team),
        "metadata.team",
        &mut errs,
    );

    let mut labels = Labels::default();
    for (key, value) in &f.metadata.labels {
        let lorigin = origin_of(&file, value);
        let v = value.value.0.trim();
        labels.all.insert(key.clone(), v.to_string());
        labels.lines.insert(key.clone(), lorigin.line);
        let field = format!("metadata.labels.{key}");
        if let Some(reserved) = reserved_look_alike(key) {
            errs.push(LoadError::invalid(
                &lorigin,
                field,
                format!("label `{key}` is not the reserved label `{reserved}`: write `{reserved}` exactly (a near miss would be ignored)"),
            ));
            continue;
        }
        match key.as_str() {
            "data_classification" => match scheme.level_rank(v) {
                Some(r) => labels.data_classification = Some(r),
                None => errs.push(LoadError::invalid(
                    &lorigin,
                    field,
                    format!(
                        "unknown classification level `{v}` (known: {})",
                        scheme.level_names().join(", ")
                    ),
                )),
            },
            "allowed_execution_zone" => {
                let scope = match v {
                    "private" => Some(ZoneScope::Private),
                    "public" => Some(ZoneScope::Public),
                    "edge" => Some(ZoneScope::Edge),
                    z if fleet.zone(z).is_some() => Some(ZoneScope::Zone(z.to_string())),
                    _ => None,
                };
                match scope {
                    Some(s) => labels.allowed_execution_zone = Some(s),
                    None => errs.push(LoadError::invalid(
                        &lorigin,
                        field,
                        format!(
                            "unknown zone `{v}` (expected private, public, edge or one of: {})",
                            fleet
                                .zones
                                .iter()
                                .map(|z| z.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )),
                }
            }
            "burst_eligible" => match v {
                "true" => labels.burst_eligible = Some(true),
                "false" => labels.burst_eligible = Some(false),
                _ => errs.push(LoadError::invalid(
                    &lorigin,
                    field,
                    format!("expected true or false, found `{v}`"),
                )),
            },
            _ => {}
        }
    }

    // Every input is named in the job's evidence entries, or the job is refused: never a silent
    // cut of what a job read.
    if f.spec.inputs.len() > MAX_INPUTS {
        let o = f
            .spec
            .inputs
            .get(MAX_INPUTS)
            .map_or_else(|| origin.clone(), |inp| origin_of(&file, inp));
        errs.push(LoadError::invalid(
            &o,
            "spec.inputs",
            format!(
                "{} inputs: a job reads at most {MAX_INPUTS} (each is named in its evidence entries); split the job or pack the inputs into one dataset version",
                f.spec.inputs.len()
            ),
        ));
    }
    let mut inputs = Vec::with_capacity(f.spec.inputs.len());
    for (i, inp) in f.spec.inputs.iter().enumerate() {
        let iorigin = origin_of(&file, inp);
        let field = format!("spec.inputs[{i}]");
        match (&inp.value.dataset, &inp.value.artifact) {
            (Some(d), None) => {
                match DatasetRef::parse(d) {
                    Some(r) => {
                        if fleet.dataset(&r).is_none() {
                            errs.push(LoadError::invalid(
                            &iorigin,
                            format!("{field}.dataset"),
                            format!("unknown dataset version `{r}` (not in the fleet's datasets.yaml)"),
                        ));
                        }
                        inputs.push(Input::Dataset(r));
                    }
                    None => errs.push(LoadError::invalid(
                        &iorigin,
                        format!("{field}.dataset"),
                        format!("expected NAME@VERSION, found `{d}`"),
                    )),
                }
            }
            (None, Some(a)) => {
                if !valid_digest(a) {
                    errs.push(LoadError::invalid(
                        &iorigin,
                        format!("{field}.artifact"),
                        format!("`{a}` is not a digest of the form sha256:<64 hex>"),
                    ));
                }
                inputs.push(Input::Artifact(a.clone()));
            }
            _ => errs.push(LoadError::invalid(
                &iorigin,
                field,
                "give exactly one of `dataset` or `artifact`",
            )),
        }
    }

    let r = &f.spec.resources;
    if r.gpus.value == 0 {
        errs.push(LoadError::invalid(
            &origin_of(&file, &r.gpus),
            "spec.resources.gpus",
            "must be at least 1",
        ));
    }
    if !(r.expected_hours.value > 0.0 && r.expected_hours.value.is_finite()) {
        errs.push(LoadError::invalid(
            &origin_of(&file, &r.expected_hours),
            "spec.resources.expected_hours",
            "must be a number > 0",
        ));
    }

    let own = f
        .spec
        .classification
        .as_ref()
        .map(|c| classification(c, scheme, &origin, "spec.classification", &mut errs));

    if let Some(d) = &f.spec.deadline {
        // A deadline that does not parse would be ignored by the scheduler: refused instead.
        if time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc3339).is_err() {
            errs.push(LoadError::invalid(
                &origin,
                "spec.deadline",
                format!("`{d}` is not an RFC 3339 time (e.g. `2026-12-31T18:00:00Z`)"),
            ));
        }
    }

    // Every element of the command is one argument, as written: anything but a string (an
    // unquoted number, a boolean, a list) is refused naming the element, never coerced.
    let mut command = Vec::with_capacity(f.spec.command.len());
    for (i, arg) in f.spec.command.iter().enumerate() {
        match &arg.value {
            CommandArg::Text(t) => command.push(t.clone()),
            CommandArg::Other(what) => errs.push(LoadError::invalid(
                &origin_of(&file, arg),
                format!("spec.command[{i}]"),
                format!("each command element must be a string; found {what} (quote it)"),
            )),
        }
    }

    if !errs.is_empty() {
        return Err(LoadErrors(errs));
    }
    Ok(JobSpec {
        name: f.metadata.name.value,
        team: f.metadata.team.value,
        kind: f.spec.kind,
        inputs,
        outputs: f.spec.outputs,
        resources: Resources {
            gpus: r.gpus.value,
            gpu_types: r.gpu_types.clone(),
            gpu_memory_gb: r.gpu_memory_gb,
            memory_gb: r.memory_gb,
            expected_hours: r.expected_hours.value,
        },
        deadline: f.spec.deadline,
        sla: f.spec.sla.map(|s| Sla {
            max_wait_minutes: s.max_wait_minutes,
        }),
        budget_class: f.spec.budget_class,
        code_commit: f.spec.code_commit,
        hyperparameters: f.spec.hyperparameters,
        justification: f.spec.justification,
        classification: own,
        command,
        labels,
        origin,
    })
}

/// The most inputs a job may name: each is a subject of its evidence entries, which name at most
/// 16 subjects (the job, a zone, and its inputs).
pub const MAX_INPUTS: usize = 14;

/// The labels tidegate reads; every other label is kept as given.
pub const RESERVED_LABELS: [&str; 3] = [
    "data_classification",
    "allowed_execution_zone",
    "burst_eligible",
];

/// The reserved label `key` is a near miss of (equal up to case, `-` / `_` / `.` separators and
/// whitespace, but not exactly it), if any. Such a label would otherwise be silently ignored.
fn reserved_look_alike(key: &str) -> Option<&'static str> {
    let squash = |s: &str| -> String {
        s.chars()
            .filter(|c| !matches!(c, '-' | '_' | '.') && !c.is_whitespace())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let k = squash(key);
    // Up to case and separators, within two edits (a plural, a dropped or swapped letter), or
    // the same shape in another script (a key that is not plain ASCII and squashes to a
    // reserved label once its non-ASCII letters are ignored).
    RESERVED_LABELS.into_iter().find(|r| {
        let rs = squash(r);
        *r != key
            && (rs == k
                || edit_distance(&rs, &k) <= 2
                || (!key.is_ascii() && edit_distance(&rs, &k) <= 3))
    })
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

/// Checks a name against the Kubernetes DNS-1123 label rules: lower-case ASCII letters, digits
/// and `-`, starting and ending with a letter or digit, at most 63 characters. Zone, pool, team
/// and dataset names all follow them, so look-alikes (other scripts, case, spaces) are refused.
/// What is wrong with a local backend's `run_as`, if anything: it must be a user name (not a
/// number, no option-like or path-like text) and never `root`, since jobs never run as root.
fn run_as_problem(user: &str) -> Option<String> {
    let ok = !user.is_empty()
        && user.len() <= 32
        && user
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !ok {
        return Some(format!(
            "`{user}` is not a user name (a letter or '_', then letters, digits, '_', '-' or '.', at most 32)"
        ));
    }
    if user == "root" {
        return Some(
            "jobs never run as root: name an unprivileged user (or leave run_as out for `nobody`)"
                .into(),
        );
    }
    None
}

/// Whether `name` is a valid zone, pool, team or dataset name: a DNS-1123 label (lower-case
/// letters, digits and `-`, starting and ending with a letter or digit, at most 63).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn check_name(name: &str, origin: &Origin, field: &str, errs: &mut Vec<LoadError>) {
    if !is_valid_name(name) {
        errs.push(LoadError::invalid(
            origin,
            field,
            format!("`{name}` is not a valid name (lower-case letters, digits and '-', at most 63, as in Kubernetes)"),
        ));
    }
}
