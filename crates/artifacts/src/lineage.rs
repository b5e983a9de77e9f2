//! Lineage: dataset versions → jobs → artifacts → deployments, with code commit and
//! hyperparameters, kept in an append-only JSON-lines file; tree rendering up or down; and one
//! OpenLineage RunEvent per job.
//!
//! Node ids carry their type: `dataset:NAME@VERSION`, `job:ID`, `artifact:sha256:HEX`,
//! `deployment:ID`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::atomic::{append_line, read_lines, write_atomic};
use crate::timefmt::format_rfc3339;
use crate::{ArtifactError, Digest};

/// OpenLineage spec version the events follow.
pub const OPENLINEAGE_SCHEMA_URL: &str =
    "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
/// Producer URI written into OpenLineage events.
pub const PRODUCER: &str = "https://github.com/tidegate/tidegate/tree/v0.1.0/crates/artifacts";

/// One line of the lineage log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    /// Attributes of a node (later entries add to earlier ones).
    Node {
        /// Node id.
        id: String,
        /// Attributes (code commit, hyperparameters, zone, kind...).
        attrs: BTreeMap<String, Value>,
    },
    /// A directed edge from an upstream node to a downstream node.
    Edge {
        /// Upstream node.
        from: String,
        /// Downstream node.
        to: String,
        /// `input`, `produced`, `deployed`, `derived`.
        relation: String,
        /// When it was recorded (Unix seconds).
        at: u64,
    },
}

/// A job run, as recorded into lineage and OpenLineage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRun {
    /// Job id.
    pub job_id: String,
    /// Zone it ran in.
    pub zone: String,
    /// Git commit of the code.
    pub code_commit: String,
    /// Hyperparameters.
    pub hyperparameters: BTreeMap<String, Value>,
    /// Inputs: node ids (`dataset:claims@v3`, `artifact:sha256:...`).
    pub inputs: Vec<String>,
    /// Produced artifacts.
    pub outputs: Vec<Digest>,
    /// Start (Unix seconds).
    pub started_at: u64,
    /// End (Unix seconds).
    pub finished_at: u64,
}

/// The append-only lineage log of a data directory (`artifacts/lineage.jsonl`).
#[derive(Debug, Clone)]
pub struct LineageLog {
    path: PathBuf,
    events_dir: PathBuf,
}

/// The node id of an artifact.
#[must_use]
pub fn artifact_node(d: &Digest) -> String {
    format!("artifact:{d}")
}

impl LineageLog {
    /// The log in `data_dir`.
    #[must_use]
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: tidegate_vocab::DataDir::new(data_dir)
                .artifacts()
                .join("lineage.jsonl"),
            events_dir: data_dir.join("openlineage"),
        }
    }

    /// Appends one entry.
    ///
    /// # Errors
    /// I/O errors, or [`ArtifactError::Invalid`] for an id without a known type prefix.
    pub fn append(&self, entry: &Entry) -> Result<(), ArtifactError> {
        match entry {
            Entry::Node { id, .. } => check_id(id)?,
            Entry::Edge { from, to, .. } => {
                check_id(from)?;
                check_id(to)?;
            }
        }
        let line =
            serde_json::to_string(entry).map_err(|e| ArtifactError::Invalid(e.to_string()))?;
        append_line(&self.path, &line)
    }

    /// Every entry, in order.
    ///
    /// # Errors
    /// I/O errors or [`ArtifactError::Invalid`] for a corrupt line (with its number).
    pub fn entries(&self) -> Result<Vec<Entry>, ArtifactError> {
        read_lines(&self.path)?
            .iter()
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| {
                    ArtifactError::Invalid(format!("{}:{}: {e}", self.path.display(), i + 1))
                })
            })
            .collect()
    }

    /// Records a job run: the job node with its code commit, zone and hyperparameters, an
    /// `input` edge per input and a `produced` edge per output.
    ///
    /// # Errors
    /// I/O errors or invalid ids.
    pub fn record_job(&self, run: &JobRun) -> Result<(), ArtifactError> {
        let job = format!("job:{}", run.job_id);
        let mut attrs = BTreeMap::new();
        attrs.insert(
            "code_commit".to_owned(),
            Value::String(run.code_commit.clone()),
        );
        attrs.insert("zone".to_owned(), Value::String(run.zone.clone()));
        attrs.insert("hyperparameters".to_owned(), json!(run.hyperparameters));
        self.append(&Entry::Node {
            id: job.clone(),
            attrs,
        })?;
        for input in &run.inputs {
            self.append(&Entry::Edge {
                from: input.clone(),
                to: job.clone(),
                relation: "input".to_owned(),
                at: run.started_at,
            })?;
        }
        for out in &run.outputs {
            self.append(&Entry::Edge {
                from: job.clone(),
                to: artifact_node(out),
                relation: "produced".to_owned(),
                at: run.finished_at,
            })?;
        }
        Ok(())
    }

    /// Records that `artifact` is deployed as `deployment`.
    ///
    /// # Errors
    /// I/O errors or invalid ids.
    pub fn record_deployment(
        &self,
        artifact: &Digest,
        deployment: &str,
        at: u64,
    ) -> Result<(), ArtifactError> {
        self.append(&Entry::Edge {
            from: artifact_node(artifact),
            to: format!("deployment:{deployment}"),
            relation: "deployed".to_owned(),
            at,
        })
    }

    /// Writes the OpenLineage RunEvent (`COMPLETE`) of `run` to
    /// `<data-dir>/openlineage/<job>.<runId>.json` and returns its path and the event.
    ///
    /// # Errors
    /// I/O errors or an invalid time.
    pub fn write_run_event(&self, run: &JobRun) -> Result<(PathBuf, Value), ArtifactError> {
        let event = run_event(run, &random_uuid_v4())?;
        let run_id = event
            .pointer("/run/runId")
            .and_then(Value::as_str)
            .unwrap_or("run")
            .to_owned();
        let safe_job: String = run
            .job_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = self.events_dir.join(format!("{safe_job}.{run_id}.json"));
        let bytes =
            serde_json::to_vec_pretty(&event).map_err(|e| ArtifactError::Invalid(e.to_string()))?;
        write_atomic(&path, &bytes)?;
        Ok((path, event))
    }

    /// The graph of everything logged so far.
    ///
    /// # Errors
    /// As [`Self::entries`].
    pub fn graph(&self) -> Result<Graph, ArtifactError> {
        Ok(Graph::from_entries(&self.entries()?))
    }
}

fn check_id(id: &str) -> Result<(), ArtifactError> {
    let ok = ["dataset:", "job:", "artifact:", "deployment:"]
        .iter()
        .any(|p| id.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
    if ok {
        Ok(())
    } else {
        Err(ArtifactError::Invalid(format!(
            "lineage id {id:?} must start with dataset:, job:, artifact: or deployment:"
        )))
    }
}

/// An OpenLineage RunEvent for a completed job run with the given run id (a UUID).
///
/// # Errors
/// [`ArtifactError::Invalid`] for an unrepresentable time.
pub fn run_event(run: &JobRun, run_id: &str) -> Result<Value, ArtifactError> {
    let dataset = |id: &str| json!({"namespace": "tidegate", "name": id});
    Ok(json!({
        "eventType": "COMPLETE",
        "eventTime": format_rfc3339(run.finished_at)?,
        "run": {
            "runId": run_id,
            "facets": {
                "tidegate_job": {
                    "_producer": PRODUCER,
                    "_schemaURL": "https://tidegate.dev/spec/facets/1-0-0/TidegateJobRunFacet.json",
                    "zone": run.zone,
                    "codeCommit": run.code_commit,
                    "hyperparameters": run.hyperparameters,
                    "startedAt": format_rfc3339(run.started_at)?,
                }
            }
        },
        "job": {"namespace": format!("tidegate://{}", run.zone), "name": run.job_id},
        "inputs": run.inputs.iter().map(|i| dataset(i)).collect::<Vec<_>>(),
        "outputs": run.outputs.iter().map(|o| dataset(&artifact_node(o))).collect::<Vec<_>>(),
        "producer": PRODUCER,
        "schemaURL": OPENLINEAGE_SCHEMA_URL,
    }))
}

/// A random RFC 4122 version 4 UUID.
#[must_use]
pub fn random_uuid_v4() -> String {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Direction of a traversal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Towards inputs (what this came from).
    Up,
    /// Towards outputs (what came from this).
    Down,
}

/// The lineage graph.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    attrs: BTreeMap<String, BTreeMap<String, Value>>,
    up: BTreeMap<String, BTreeSet<String>>,
    down: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    /// Builds the graph from log entries.
    #[must_use]
    pub fn from_entries(entries: &[Entry]) -> Self {
        let mut g = Graph::default();
        for e in entries {
            match e {
                Entry::Node { id, attrs } => {
                    g.attrs.entry(id.clone()).or_default().extend(attrs.clone());
                }
                Entry::Edge { from, to, .. } => {
                    g.down.entry(from.clone()).or_default().insert(to.clone());
                    g.up.entry(to.clone()).or_default().insert(from.clone());
                }
            }
        }
        g
    }

    /// Whether `id` appears in the graph.
    #[must_use]
    pub fn contains(&self, id: &str) -> bool {
        self.attrs.contains_key(id) || self.up.contains_key(id) || self.down.contains_key(id)
    }

    /// Resolves a user-given id: exact, or with one of the type prefixes added
    /// (`sha256:...` → `artifact:sha256:...`, `job-42` → `job:job-42`).
    #[must_use]
    pub fn resolve(&self, id: &str) -> Option<String> {
        if self.contains(id) {
            return Some(id.to_owned());
        }
        ["artifact:", "job:", "dataset:", "deployment:"]
            .iter()
            .map(|p| format!("{p}{id}"))
            .find(|cand| self.contains(cand))
    }

    /// Neighbours of `id` in `dir`.
    #[must_use]
    pub fn neighbours(&self, id: &str, dir: Direction) -> Vec<String> {
        let map = match dir {
            Direction::Up => &self.up,
            Direction::Down => &self.down,
        };
        map.get(id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn label(&self, id: &str) -> String {
        let Some(attrs) = self.attrs.get(id) else {
            return id.to_owned();
        };
        let mut parts = Vec::new();
        if let Some(c) = attrs.get("code_commit").and_then(Value::as_str) {
            parts.push(format!("commit {}", c.get(..12).unwrap_or(c)));
        }
        if let Some(z) = attrs.get("zone").and_then(Value::as_str) {
            parts.push(format!("zone {z}"));
        }
        if let Some(Value::Object(h)) = attrs.get("hyperparameters") {
            for (k, v) in h {
                parts.push(format!("{k}={v}"));
            }
        }
        if parts.is_empty() {
            id.to_owned()
        } else {
            format!("{id} [{}]", parts.join(", "))
        }
    }

    /// Renders the tree from `id` in `dir` as indented text. Nodes already shown are marked
    /// `(seen)` instead of being expanded again, so shared ancestry and cycles stay finite.
    #[must_use]
    pub fn render(&self, id: &str, dir: Direction) -> String {
        let mut out = self.label(id);
        out.push('\n');
        let mut seen = BTreeSet::from([id.to_owned()]);
        self.render_children(id, dir, "", &mut seen, &mut out);
        out
    }

    fn render_children(
        &self,
        id: &str,
        dir: Direction,
        prefix: &str,
        seen: &mut BTreeSet<String>,
        out: &mut String,
    ) {
        let kids = self.neighbours(id, dir);
        for (i, kid) in kids.iter().enumerate() {
            let last = i + 1 == kids.len();
            let (branch, indent) = if last {
                ("└── ", "    ")
            } else {
                ("├── ", "│   ")
            };
            if seen.insert(kid.clone()) {
                out.push_str(&format!("{prefix}{branch}{}\n", self.label(kid)));
                self.render_children(kid, dir, &format!("{prefix}{indent}"), seen, out);
            } else {
                out.push_str(&format!("{prefix}{branch}{kid} (seen)\n"));
            }
        }
    }
}
