//! Random fleets, datasets and jobs for property tests (proptest strategies): zones of every
//! tier, jurisdiction, certification set and ceiling, pools of several GPU memory sizes;
//! datasets of every built-in level and tag, with or without residency; artifacts signed or not,
//! at every stage (so edge and serving permits are explored); the fleet's own Cedar policies,
//! any subset of a small library; jobs of several teams reading up to two datasets and maybe an
//! artifact, with any labels and GPU memory needs. Busy fleet states come from
//! `tidegate_placement::synth::busy_state` with a generated seed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use proptest::prelude::*;
use tidegate_model::fleet::PolicyFile;
use tidegate_model::{
    ArtifactRecord, Backend, Classification, Dataset, DatasetRef, Fleet, Input, JobKind, JobSpec,
    Labels, Origin, Pool, Pricing, Resources, Scheme, Tier, Zone, ZoneScope,
};

/// Zone tiers the generated fleets draw from.
pub const TIERS: [Tier; 4] = [
    Tier::PrivateOnprem,
    Tier::PrivateCloud,
    Tier::Public,
    Tier::Edge,
];
/// Jurisdictions of generated zones and data.
pub const JURIS: [&str; 3] = ["EU", "US", "UK"];
/// GPU types of generated pools and jobs.
pub const GPUS: [&str; 4] = ["H100", "A100", "H200", "L4"];
/// Legal tags of generated data.
pub const TAGS: [&str; 5] = ["phi", "pii", "pci", "export-controlled", "ip"];
/// Certifications of generated zones and data requirements.
pub const CERTS: [&str; 4] = ["hipaa-baa", "iso27001", "soc2", "pci-dss"];
/// Baseline rules a generated fleet may switch off (the hard constraints must hold anyway).
pub const EXCLUDABLE: [&str; 7] = [
    "baseline.sensitive-stays-private",
    "baseline.residency",
    "baseline.public-certifications",
    "baseline.export-control",
    "baseline.burst-requires-eligibility",
    "baseline.edge-requires-released-artifacts",
    "baseline.allowed-execution-zone",
];

/// Teams jobs belong to (`finance-risk` and `radiology-ai` are named by [`FLEET_POLICIES`]).
pub const TEAMS: [&str; 3] = ["team", "finance-risk", "radiology-ai"];
/// Artifact stages, released and not.
pub const STAGES: [&str; 4] = ["candidate", "staging", "released-edge", "released-public"];
/// GPU memory of pools and asked by jobs (0: any), GB.
pub const POOL_MEMORY: [u32; 4] = [24, 40, 80, 141];
/// GPU memory generated jobs ask for, GB (0: any).
pub const JOB_MEMORY: [u32; 4] = [0, 24, 48, 80];
/// A fleet's own policies: any subset is a fleet's `policies/`.
pub const FLEET_POLICIES: [(&str, &str); 3] = [
    (
        "finance.cedar",
        "@id(\"fleet.finance-stays-private\")\n@reason(\"finance-risk stays private\")\n\
         forbid (principal, action == Action::\"place\", resource)\n\
         when { principal.team == \"finance-risk\" && !resource.private };\n",
    ),
    (
        "serving.cedar",
        "@id(\"fleet.serving-in-us\")\n@reason(\"serving stays in US zones\")\n\
         forbid (principal, action == Action::\"place\", resource)\n\
         when { principal.kind == \"serve\" && resource.jurisdiction != \"US\" };\n",
    ),
    (
        "radiology.cedar",
        "@id(\"fleet.radiology-not-uk\")\n@reason(\"radiology teams stay out of UK zones\")\n\
         forbid (principal, action == Action::\"place\", resource)\n\
         when { principal.team like \"radio*\" && resource.jurisdiction == \"UK\" };\n",
    ),
];

/// Any subset of `xs`, in order.
pub fn subset<T: Clone + std::fmt::Debug>(xs: &'static [T]) -> impl Strategy<Value = Vec<T>> {
    proptest::sample::subsequence(xs.to_vec(), 0..=xs.len())
}

/// A zone named after `i`, of any tier, jurisdiction, ceiling and pools.
pub fn arb_zone(i: usize) -> impl Strategy<Value = Zone> {
    (
        proptest::sample::select(TIERS.to_vec()),
        proptest::sample::select(JURIS.to_vec()),
        subset(&CERTS),
        0u8..4,
        proptest::collection::vec(
            (
                proptest::sample::select(GPUS.to_vec()),
                1u32..64,
                any::<bool>(),
                proptest::sample::select(POOL_MEMORY.to_vec()),
            ),
            1..4,
        ),
        any::<bool>(),
    )
        .prop_map(move |(tier, j, certs, max, pools, open_egress)| Zone {
            name: format!("zone-{i}"),
            tier,
            provider: "p".into(),
            region: "r".into(),
            jurisdiction: j.into(),
            certifications: certs.into_iter().map(String::from).collect(),
            max_classification: max,
            egress_allowlist: if open_egress {
                vec!["*".into()]
            } else {
                vec![]
            },
            egress_price_per_gb: 0.05,
            backend: Backend::Local {
                workdir: None,
                run_as: None,
            },
            pools: pools
                .into_iter()
                .enumerate()
                .map(|(k, (g, n, spot, mem))| Pool {
                    name: format!("pool-{k}"),
                    gpu_type: g.into(),
                    gpus: n,
                    gpu_memory_gb: mem,
                    price_per_gpu_hour: 1.0 + k as f64,
                    pricing: if spot {
                        Pricing::Spot
                    } else {
                        Pricing::OnDemand
                    },
                    preemption_risk: if spot { 0.1 } else { 0.0 },
                    origin: Origin::builtin("test"),
                })
                .collect(),
            origin: Origin::builtin("test"),
        })
}

/// A fleet of generated zones, datasets, artifacts, teams and policies.
pub fn arb_fleet() -> impl Strategy<Value = Fleet> {
    (2usize..7)
        .prop_flat_map(|n| {
            let zones: Vec<_> = (0..n).map(arb_zone).collect();
            let datasets = proptest::collection::vec(
                (
                    0u8..4,
                    subset(&TAGS),
                    proptest::option::of(subset(&JURIS)),
                    0..n,
                ),
                1..5,
            );
            (
                zones,
                datasets,
                subset(&EXCLUDABLE),
                proptest::option::of(proptest::sample::select(JURIS.to_vec())),
                proptest::collection::vec(
                    (any::<bool>(), proptest::sample::select(STAGES.to_vec())),
                    0..4,
                ),
                subset(&FLEET_POLICIES),
            )
        })
        .prop_map(|(zones, datasets, exclude, home, artifacts, policies)| {
            let datasets = datasets
                .into_iter()
                .enumerate()
                .map(|(i, (level, tags, residency, home))| Dataset {
                    name: format!("ds-{i}"),
                    version: "v1".into(),
                    classification: Classification {
                        level,
                        tags: tags.into_iter().map(String::from).collect(),
                        residency: residency.map(|r| r.into_iter().map(String::from).collect()),
                        retention: None,
                    },
                    home_zone: zones[home].name.clone(),
                    size_gb: 10.0,
                    owner: "o".into(),
                    origin: Origin::builtin("test"),
                })
                .collect();
            Fleet {
                name: "random".into(),
                root: PathBuf::from("."),
                scheme: Scheme::default(),
                zones,
                datasets,
                artifacts: artifacts
                    .into_iter()
                    .enumerate()
                    .map(|(i, (signed, stage))| ArtifactRecord {
                        digest: format!(
                            "sha256:{}",
                            format!("{i:x}").repeat(64).get(..64).unwrap_or_default()
                        ),
                        signed,
                        stage: stage.into(),
                        origin: Origin::builtin("test"),
                    })
                    .collect(),
                policies: policies
                    .into_iter()
                    .map(|(file, text)| PolicyFile {
                        path: PathBuf::from(format!("policies/{file}")),
                        text: text.into(),
                    })
                    .collect(),
                baseline_exclude: exclude.into_iter().map(String::from).collect(),
                home_jurisdiction: home.map(String::from),
                fleet_hash: String::new(),
            }
        })
}

/// A job against `fleet`: any labels, inputs, resources and team.
pub fn arb_job(fleet: &Fleet) -> impl Strategy<Value = JobSpec> {
    let ds: Vec<DatasetRef> = fleet
        .datasets
        .iter()
        .map(|d| DatasetRef {
            name: d.name.clone(),
            version: d.version.clone(),
        })
        .collect();
    let zones: Vec<String> = fleet.zones.iter().map(|z| z.name.clone()).collect();
    let artifacts: Vec<String> = fleet.artifacts.iter().map(|a| a.digest.clone()).collect();
    let artifact = if artifacts.is_empty() {
        Just(None).boxed()
    } else {
        proptest::option::of(proptest::sample::select(artifacts)).boxed()
    };
    (
        proptest::sample::subsequence(ds.clone(), 0..=ds.len().min(2)),
        proptest::option::of(0u8..4),
        proptest::option::of(prop_oneof![
            Just(ZoneScope::Private),
            Just(ZoneScope::Public),
            Just(ZoneScope::Edge),
            proptest::sample::select(zones).prop_map(ZoneScope::Zone),
        ]),
        proptest::option::of(any::<bool>()),
        proptest::sample::select(JobKind::ALL.to_vec()),
        subset(&GPUS),
        1u32..80,
        proptest::option::of(subset(&TAGS)),
        (
            artifact,
            proptest::sample::select(TEAMS.to_vec()),
            proptest::sample::select(JOB_MEMORY.to_vec()),
        ),
    )
        .prop_map(
            |(inputs, level, scope, burst, kind, types, gpus, own, (artifact, team, mem))| {
                JobSpec {
                    name: "job".into(),
                    team: team.into(),
                    kind,
                    inputs: inputs
                        .into_iter()
                        .map(Input::Dataset)
                        .chain(artifact.map(Input::Artifact))
                        .collect(),
                    outputs: vec![],
                    resources: Resources {
                        gpus,
                        gpu_types: types.into_iter().map(String::from).collect(),
                        gpu_memory_gb: mem,
                        memory_gb: 0,
                        expected_hours: 2.0,
                    },
                    deadline: None,
                    sla: None,
                    budget_class: "b".into(),
                    code_commit: None,
                    hyperparameters: BTreeMap::new(),
                    justification: None,
                    classification: own.map(|tags| Classification {
                        tags: tags.into_iter().map(String::from).collect(),
                        ..Classification::default()
                    }),
                    command: vec![],
                    labels: Labels {
                        data_classification: level,
                        allowed_execution_zone: scope,
                        burst_eligible: burst,
                        all: BTreeMap::new(),
                        lines: BTreeMap::new(),
                    },
                    origin: Origin::builtin("test"),
                }
            },
        )
}

/// A fleet and jobs against it.
pub fn fleet_and_jobs() -> impl Strategy<Value = (Fleet, Vec<JobSpec>)> {
    arb_fleet().prop_flat_map(|f| {
        let jobs = proptest::collection::vec(arb_job(&f), 1..12);
        (Just(f), jobs)
    })
}
