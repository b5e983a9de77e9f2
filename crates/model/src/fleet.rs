//! The fleet: zones (private on-prem, private cloud, public GPUaaS, edge), their GPU pools, the
//! datasets they hold, and the classification scheme and policies that govern them.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Classification, Origin, Scheme};

/// A zone's tier: who runs the hardware and so what it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// The organisation's own data centre.
    PrivateOnprem,
    /// Dedicated capacity in a private GPU cloud under the organisation's contract.
    PrivateCloud,
    /// Public GPU-as-a-service, shared tenancy.
    Public,
    /// Edge sites for low-latency or disconnected inference.
    Edge,
}

impl Tier {
    /// Private tiers hold raw sensitive data.
    pub fn is_private(self) -> bool {
        matches!(self, Self::PrivateOnprem | Self::PrivateCloud)
    }

    /// The tier's name as written in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PrivateOnprem => "private-onprem",
            Self::PrivateCloud => "private-cloud",
            Self::Public => "public",
            Self::Edge => "edge",
        }
    }

    /// The coarse scope a label `allowed_execution_zone` may name: private, public or edge.
    pub fn scope(self) -> &'static str {
        match self {
            Self::PrivateOnprem | Self::PrivateCloud => "private",
            Self::Public => "public",
            Self::Edge => "edge",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a pool is priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pricing {
    /// Reserved or on-demand capacity: not preempted by the provider.
    OnDemand,
    /// Spot / preemptible capacity.
    Spot,
}

/// A pool of identical GPUs in one zone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pool {
    /// Pool name, unique within its zone.
    pub name: String,
    /// GPU model, e.g. `H100`.
    pub gpu_type: String,
    /// Number of GPUs.
    pub gpus: u32,
    /// Memory per GPU, GiB.
    pub gpu_memory_gb: u32,
    /// Price per GPU-hour (the fleet's currency; amortised cost for owned hardware).
    pub price_per_gpu_hour: f64,
    /// On-demand or spot.
    pub pricing: Pricing,
    /// Probability that a spot job is preempted per hour (0 for on-demand).
    pub preemption_risk: f64,
    /// Where the pool was declared.
    #[serde(skip)]
    pub origin: Origin,
}

/// The engine a zone's work runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Backend {
    /// Processes on this machine (the embedded default).
    Local {
        /// Work directory for the zone's jobs (default: under the data dir).
        #[serde(default)]
        workdir: Option<PathBuf>,
        /// The unprivileged user the zone's jobs run as. A control plane running as root runs
        /// jobs as this user (`nobody` when unset) and never as root; one not running as root
        /// cannot switch users, so it accepts only its own name here.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_as: Option<String>,
    },
    /// A Slurm cluster.
    Slurm {
        /// Partition the zone maps to.
        partition: String,
        /// Cluster name, where several are federated.
        #[serde(default)]
        cluster: Option<String>,
        /// Account to charge (default: the job's team).
        #[serde(default)]
        account: Option<String>,
    },
    /// A Kubernetes cluster with Kueue.
    Kubernetes {
        /// kubeconfig context.
        #[serde(default)]
        context: Option<String>,
        /// Namespace for the zone's jobs.
        namespace: String,
        /// Kueue LocalQueue name.
        queue: String,
        /// Seconds a run's Job may wait suspended for Kueue to admit it. Past it the executor
        /// deletes the Job and reports no capacity, and the scheduler moves the job to its next
        /// allowed option. Default [`DEFAULT_ADMISSION_TIMEOUT_S`]; 1 to
        /// [`MAX_ADMISSION_TIMEOUT_S`].
        #[serde(default = "default_admission_timeout_s")]
        admission_timeout_s: u64,
    },
}

/// How long a Kubernetes zone's Jobs wait for Kueue admission when the zone does not say
/// (`backend.admission_timeout_s`): ten minutes.
pub const DEFAULT_ADMISSION_TIMEOUT_S: u64 = 600;

/// The longest admission wait a Kubernetes zone may declare: one day.
pub const MAX_ADMISSION_TIMEOUT_S: u64 = 86_400;

fn default_admission_timeout_s() -> u64 {
    DEFAULT_ADMISSION_TIMEOUT_S
}

impl Backend {
    /// The backend kind as written in files.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Local { .. } => "local",
            Self::Slurm { .. } => "slurm",
            Self::Kubernetes { .. } => "kubernetes",
        }
    }
}

/// Where one launch is submitted on a Slurm cluster: the zone's `backend: {kind: slurm}` as the
/// Slurm executor's configuration resolves it for that launch (a per-pool partition, the job's
/// team as account). The Slurm executor decides it and hands it to the script renderer, which
/// writes it as the script's `--partition`, `--account` and `--clusters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmPlacement {
    /// `--partition`.
    pub partition: String,
    /// `--account`, if any.
    pub account: Option<String>,
    /// `--clusters`, if any.
    pub cluster: Option<String>,
}

/// A zone: one place work can run, with one legal and network posture.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Zone {
    /// Zone name, unique in the fleet.
    pub name: String,
    /// Tier.
    pub tier: Tier,
    /// Who operates it.
    pub provider: String,
    /// Provider region or site.
    pub region: String,
    /// Legal jurisdiction (upper-case code, e.g. `EU`, `US`).
    pub jurisdiction: String,
    /// Certifications held (e.g. `hipaa-baa`, `iso27001`, `soc2`).
    pub certifications: BTreeSet<String>,
    /// Rank of the highest classification level the zone may hold.
    pub max_classification: u8,
    /// Destinations (zone names or hosts) the zone may send data to.
    pub egress_allowlist: Vec<String>,
    /// Price per GB of data moved out of this zone.
    pub egress_price_per_gb: f64,
    /// Execution backend.
    pub backend: Backend,
    /// GPU pools.
    pub pools: Vec<Pool>,
    /// Where the zone was declared.
    #[serde(skip)]
    pub origin: Origin,
}

impl Zone {
    /// Whether the zone's egress allowlist lets data go to `dest` (a zone name or host).
    pub fn may_send_to(&self, dest: &str) -> bool {
        self.egress_allowlist.iter().any(|d| d == dest || d == "*")
    }
}

/// A dataset version the fleet knows about.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dataset {
    /// Dataset name.
    pub name: String,
    /// Version (a tag or a content digest).
    pub version: String,
    /// Its classification.
    pub classification: Classification,
    /// The zone that holds it.
    pub home_zone: String,
    /// Size, GB (used for egress cost and transfer planning).
    pub size_gb: f64,
    /// Owning team.
    pub owner: String,
    /// Where it was declared.
    #[serde(skip)]
    pub origin: Origin,
}

/// `name@version`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DatasetRef {
    /// Dataset name.
    pub name: String,
    /// Version.
    pub version: String,
}

impl DatasetRef {
    /// Parses `name@version`.
    pub fn parse(s: &str) -> Option<Self> {
        let (name, version) = s.split_once('@')?;
        if name.is_empty() || version.is_empty() || version.contains('@') {
            return None;
        }
        Some(Self {
            name: name.to_string(),
            version: version.to_string(),
        })
    }
}

impl fmt::Display for DatasetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// What the fleet knows of an artifact (until the artifact store supplies it: signature and
/// promotion stage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArtifactRecord {
    /// `sha256:HEX`.
    pub digest: String,
    /// Whether its provenance signature verified.
    pub signed: bool,
    /// Its promotion stage, e.g. `released-edge`.
    pub stage: String,
    /// Where it was declared.
    #[serde(skip)]
    pub origin: Origin,
}

impl ArtifactRecord {
    /// Signed and promoted to a release stage.
    pub fn released(&self) -> bool {
        self.signed && self.stage.starts_with("released")
    }
}

/// A Cedar policy file found in the fleet directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyFile {
    /// Its path.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

/// A whole fleet, loaded from one directory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fleet {
    /// Fleet name.
    pub name: String,
    /// The directory it was loaded from.
    pub root: PathBuf,
    /// Classification scheme.
    pub scheme: Scheme,
    /// Zones.
    pub zones: Vec<Zone>,
    /// Known datasets.
    pub datasets: Vec<Dataset>,
    /// Known artifacts.
    pub artifacts: Vec<ArtifactRecord>,
    /// The fleet's own Cedar policies (the built-in baseline is added by the policy crate).
    pub policies: Vec<PolicyFile>,
    /// Baseline policy ids the fleet switches off (recorded in the policy hash).
    pub baseline_exclude: Vec<String>,
    /// The fleet's home jurisdiction (`home_jurisdiction` in fleet.yaml, upper-case), if
    /// declared: export-controlled work with no input of known origin is confined to its private
    /// zones; with none declared, such work runs nowhere.
    pub home_jurisdiction: Option<String>,
    /// SHA-256 over the fleet's files (names and contents), hex.
    pub fleet_hash: String,
}

impl Fleet {
    /// Looks a zone up by name.
    pub fn zone(&self, name: &str) -> Option<&Zone> {
        self.zones.iter().find(|z| z.name == name)
    }

    /// The zones' names, comma-separated, in fleet order (for messages naming what exists).
    pub fn zone_list(&self) -> String {
        self.zones
            .iter()
            .map(|z| z.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Looks a dataset version up.
    pub fn dataset(&self, r: &DatasetRef) -> Option<&Dataset> {
        self.datasets
            .iter()
            .find(|d| d.name == r.name && d.version == r.version)
    }

    /// Looks an artifact up by digest.
    pub fn artifact(&self, digest: &str) -> Option<&ArtifactRecord> {
        self.artifacts.iter().find(|a| a.digest == digest)
    }

    /// Total pools across zones.
    pub fn pool_count(&self) -> usize {
        self.zones.iter().map(|z| z.pools.len()).sum()
    }
}

/// The scope a label `allowed_execution_zone` names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum ZoneScope {
    /// No label: any zone policy allows.
    Any,
    /// `private`: private-onprem or private-cloud zones.
    Private,
    /// `public`.
    Public,
    /// `edge`.
    Edge,
    /// One named zone.
    Zone(String),
}

impl ZoneScope {
    /// Whether a zone is within this scope.
    pub fn admits(&self, zone: &Zone) -> bool {
        match self {
            Self::Any => true,
            Self::Private => zone.tier.is_private(),
            Self::Public => zone.tier == Tier::Public,
            Self::Edge => zone.tier == Tier::Edge,
            Self::Zone(z) => *z == zone.name,
        }
    }

    /// The label value (`any` when unset).
    pub fn as_label(&self) -> &str {
        match self {
            Self::Any => "any",
            Self::Private => "private",
            Self::Public => "public",
            Self::Edge => "edge",
            Self::Zone(z) => z,
        }
    }
}
