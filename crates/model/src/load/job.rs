//! Job files as written, and their conversion into a [`JobSpec`] checked against a fleet.

use super::*;

/// The API version job files must declare.
pub(super) const JOB_API_VERSION: &str = "tidegate.io/v1";
// ---------------------------------------------------------------------------------------------
// Job files as written.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct JobFile {
    pub(super) api_version: Spanned<String>,
    pub(super) kind: Spanned<String>,
    pub(super) metadata: MetadataFile,
    pub(super) spec: SpecFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetadataFile {
    pub(super) name: Spanned<String>,
    pub(super) team: Spanned<String>,
    #[serde(default)]
    pub(super) labels: BTreeMap<String, Spanned<Scalar>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SpecFile {
    pub(super) kind: JobKind,
    #[serde(default)]
    pub(super) inputs: Vec<Spanned<InputFile>>,
    #[serde(default)]
    pub(super) outputs: Vec<String>,
    pub(super) resources: ResourcesFile,
    #[serde(default)]
    pub(super) deadline: Option<String>,
    #[serde(default)]
    pub(super) sla: Option<SlaFile>,
    #[serde(default = "default_budget_class")]
    pub(super) budget_class: String,
    #[serde(default)]
    pub(super) code_commit: Option<String>,
    #[serde(default)]
    pub(super) hyperparameters: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub(super) justification: Option<String>,
    #[serde(default)]
    pub(super) classification: Option<ClassificationSpec>,
    #[serde(default)]
    pub(super) command: Vec<Spanned<CommandArg>>,
}

pub(super) fn default_budget_class() -> String {
    "default".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InputFile {
    #[serde(default)]
    pub(super) dataset: Option<String>,
    #[serde(default)]
    pub(super) artifact: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResourcesFile {
    pub(super) gpus: Spanned<u32>,
    #[serde(default)]
    pub(super) gpu_types: Vec<String>,
    #[serde(default)]
    pub(super) gpu_memory_gb: u32,
    #[serde(default)]
    pub(super) memory_gb: u32,
    pub(super) expected_hours: Spanned<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SlaFile {
    pub(super) max_wait_minutes: u32,
}

// ---------------------------------------------------------------------------------------------
// Conversion with validation.
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
                            fleet.zone_list()
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

    // A deadline that does not parse would be ignored by the scheduler: refused instead.
    let deadline = f.spec.deadline.as_deref().and_then(|d| {
        tidegate_vocab::Timestamp::parse_rfc3339(d)
            .map_err(|_| {
                errs.push(LoadError::invalid(
                    &origin,
                    "spec.deadline",
                    format!("`{d}` is not an RFC 3339 time (e.g. `2026-12-31T18:00:00Z`)"),
                ));
            })
            .ok()
    });

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
        deadline,
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
pub(super) fn reserved_look_alike(key: &str) -> Option<&'static str> {
    let squash = |s: &str| -> String {
        s.chars()
            .filter(|c| !matches!(c, '-' | '_' | '.') && !c.is_whitespace())
            .flat_map(char::to_lowercase)
            .collect()
    };
    if RESERVED_LABELS.contains(&key) {
        return None;
    }
    let k = squash(key);
    let kn = k.chars().count();
    // Up to case and separators, within two edits (a plural, a dropped or swapped letter), or
    // the same shape in another script (a key that is not plain ASCII and squashes to a
    // reserved label once its non-ASCII letters are ignored). Lengths further apart than the
    // edits allowed cannot be within them.
    let most = if key.is_ascii() { 2 } else { 3 };
    RESERVED_LABELS.into_iter().find(|r| {
        let rs = squash(r);
        rs == k || (rs.chars().count().abs_diff(kn) <= most && edit_distance(&rs, &k) <= most)
    })
}

/// Levenshtein distance over characters.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
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
pub(super) fn run_as_problem(user: &str) -> Option<String> {
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
