//! Fleet files as written (`fleet.yaml`, `zones/*.yaml`, datasets, artifacts) and their conversion: every
//! problem of a file reported, each with its file, line and field.

use super::job::run_as_problem;
use super::scheduling::convert_scheduling;
use super::*;

// ---------------------------------------------------------------------------------------------
// Fleet files as written.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FleetFile {
    pub(super) name: String,
    #[serde(default)]
    pub(super) home_jurisdiction: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) classification: SchemeSpec,
    #[serde(default)]
    pub(super) baseline: BaselineSpec,
    #[serde(default)]
    pub(super) teams: Vec<TeamFile>,
    #[serde(default)]
    pub(super) job_classes: Vec<JobClassFile>,
    #[serde(default)]
    pub(super) failover: FailoverFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BudgetFile {
    #[serde(default)]
    pub(super) money: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) gpu_hours: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TeamFile {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) weight: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) nominal: BTreeMap<String, Spanned<u32>>,
    #[serde(default)]
    pub(super) borrowing_limit: Option<u32>,
    #[serde(default)]
    pub(super) justification: Option<String>,
    #[serde(default)]
    pub(super) budget: BudgetFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JobClassFile {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) burst_queue_depth: Option<usize>,
    #[serde(default)]
    pub(super) max_wait_minutes: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) min_deadline_slack_minutes: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) budget: BudgetFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FailoverFile {
    #[serde(default)]
    pub(super) on_degraded: Vec<FailoverRuleFile>,
    #[serde(default)]
    pub(super) on_throttle: ThrottleFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FailoverRuleFile {
    pub(super) classes: Spanned<Vec<String>>,
    pub(super) action: FailoverAction,
    #[serde(default)]
    pub(super) to: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) max_classification: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ThrottleFile {
    #[serde(default)]
    pub(super) shed: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BaselineSpec {
    #[serde(default)]
    pub(super) exclude: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ZoneFile {
    pub(super) name: Spanned<String>,
    pub(super) tier: Tier,
    pub(super) provider: String,
    pub(super) region: String,
    pub(super) jurisdiction: String,
    #[serde(default)]
    pub(super) certifications: Vec<String>,
    pub(super) max_classification: Spanned<String>,
    #[serde(default)]
    pub(super) egress_allowlist: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) egress_price_per_gb: f64,
    pub(super) backend: Backend,
    #[serde(default)]
    pub(super) pools: Vec<PoolFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PoolFile {
    pub(super) name: Spanned<String>,
    pub(super) gpu_type: String,
    pub(super) gpus: u32,
    pub(super) gpu_memory_gb: u32,
    pub(super) price_per_gpu_hour: Spanned<f64>,
    #[serde(default = "on_demand")]
    pub(super) pricing: Pricing,
    #[serde(default)]
    pub(super) preemption_risk: Option<Spanned<f64>>,
}

pub(super) fn on_demand() -> Pricing {
    Pricing::OnDemand
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DatasetsFile {
    #[serde(default)]
    pub(super) datasets: Vec<DatasetFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DatasetFile {
    pub(super) name: Spanned<String>,
    pub(super) version: String,
    pub(super) classification: ClassificationSpec,
    pub(super) home_zone: Spanned<String>,
    #[serde(default)]
    pub(super) size_gb: f64,
    #[serde(default = "no_owner")]
    pub(super) owner: Spanned<String>,
}

pub(super) fn no_owner() -> Spanned<String> {
    Spanned::new(
        String::new(),
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ArtifactsFile {
    #[serde(default)]
    pub(super) artifacts: Vec<ArtifactFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ArtifactFile {
    pub(super) digest: Spanned<String>,
    #[serde(default)]
    pub(super) signed: bool,
    #[serde(default = "candidate")]
    pub(super) stage: String,
}

pub(super) fn candidate() -> String {
    "candidate".into()
}

pub(super) fn convert_zone(
    file: &Arc<Path>,
    z: ZoneFile,
    scheme: &Scheme,
    errs: &mut Vec<LoadError>,
) -> Zone {
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

pub(super) fn check_scheme(
    scheme: &Scheme,
    lines: &SchemeLines,
    path: &Path,
    errs: &mut Vec<LoadError>,
) {
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
