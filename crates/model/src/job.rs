//! The job spec: a kubectl-like YAML document saying what a job is, what it reads and writes, what
//! it needs, and the labels the customer's design names.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{DatasetRef, Origin};

/// What kind of work a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// Training from scratch.
    Train,
    /// Fine-tuning a model.
    Finetune,
    /// A hyperparameter sweep.
    HpoSweep,
    /// Batch inference.
    BatchInfer,
    /// Online serving.
    Serve,
    /// Inference at an edge site.
    EdgeInfer,
    /// One round of federated learning.
    FlRound,
    /// Running the sanitizer.
    Sanitize,
    /// Evaluation.
    Eval,
}

impl JobKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 9] = [
        Self::Train,
        Self::Finetune,
        Self::HpoSweep,
        Self::BatchInfer,
        Self::Serve,
        Self::EdgeInfer,
        Self::FlRound,
        Self::Sanitize,
        Self::Eval,
    ];

    /// The kind's name as written in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Finetune => "finetune",
            Self::HpoSweep => "hpo-sweep",
            Self::BatchInfer => "batch-infer",
            Self::Serve => "serve",
            Self::EdgeInfer => "edge-infer",
            Self::FlRound => "fl-round",
            Self::Sanitize => "sanitize",
            Self::Eval => "eval",
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One input of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Input {
    /// A registered dataset version.
    Dataset(DatasetRef),
    /// An artifact by digest (`sha256:HEX`).
    Artifact(String),
}

/// Resources a job asks for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resources {
    /// GPUs (all in one pool).
    pub gpus: u32,
    /// Acceptable GPU types, most preferred first; empty means any.
    pub gpu_types: Vec<String>,
    /// Minimum memory per GPU, GiB (0 = no minimum).
    pub gpu_memory_gb: u32,
    /// Host memory, GiB.
    pub memory_gb: u32,
    /// Expected run time, hours.
    pub expected_hours: f64,
}

/// Service level for waiting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sla {
    /// Longest acceptable queueing time, minutes.
    pub max_wait_minutes: u32,
}

/// The labels the customer's design names, parsed; other labels are kept as given.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Labels {
    /// `data_classification=<level>`, as a rank.
    pub data_classification: Option<u8>,
    /// `allowed_execution_zone=<private|public|edge|zone-name>`.
    pub allowed_execution_zone: Option<crate::ZoneScope>,
    /// `burst_eligible=<true|false>` (absent means false).
    pub burst_eligible: Option<bool>,
    /// Every label as written.
    pub all: BTreeMap<String, String>,
    /// Line of each label.
    #[serde(skip)]
    pub lines: BTreeMap<String, u32>,
}

/// A job, as submitted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobSpec {
    /// Job name.
    pub name: String,
    /// Owning team.
    pub team: String,
    /// Kind of work.
    pub kind: JobKind,
    /// Inputs.
    pub inputs: Vec<Input>,
    /// Output names or prefixes.
    pub outputs: Vec<String>,
    /// Resources.
    pub resources: Resources,
    /// Deadline, if any (written RFC 3339 in the manifest and when serialised; refused at load
    /// when it does not parse).
    #[serde(serialize_with = "rfc3339")]
    pub deadline: Option<tidegate_vocab::Timestamp>,
    /// Waiting SLA, if any.
    pub sla: Option<Sla>,
    /// Budget class (e.g. `research`, `production`).
    pub budget_class: String,
    /// Code commit the job runs.
    pub code_commit: Option<String>,
    /// Hyperparameters.
    pub hyperparameters: BTreeMap<String, serde_json::Value>,
    /// Business justification for spending on it (recorded with every burst).
    pub justification: Option<String>,
    /// The job's own declared classification (combined with its inputs').
    pub classification: Option<crate::Classification>,
    /// Command the local executor runs (argv), if any.
    pub command: Vec<String>,
    /// Labels.
    pub labels: Labels,
    /// Where the job was declared.
    #[serde(skip)]
    pub origin: Origin,
}

/// Writes a deadline as the RFC 3339 text a manifest gives it in.
fn rfc3339<S: serde::Serializer>(
    t: &Option<tidegate_vocab::Timestamp>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        None => s.serialize_none(),
        Some(t) => {
            let text = t.to_rfc3339().map_err(serde::ser::Error::custom)?;
            s.serialize_some(&text)
        }
    }
}
