//! in-toto Statement v1 with a SLSA provenance v1 predicate for training outputs.
//!
//! Specs: <https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md> and
//! <https://slsa.dev/spec/v1.0/provenance>. Materials (input dataset versions and the code
//! commit) are `resolvedDependencies`; the builder id names the zone; the job id is the
//! invocation id; hyperparameters are external parameters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::timefmt::{format_rfc3339, parse_rfc3339};
use crate::{ArtifactError, Digest};

/// `_type` of every in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// SLSA provenance v1 predicate type.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// Build type of a tidegate training or export job.
pub const BUILD_TYPE: &str = "https://tidegate.dev/buildtypes/job/v1";
/// Prefix of builder ids: one builder per zone.
pub const BUILDER_PREFIX: &str = "https://tidegate.dev/zones/";

/// One subject of a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// Human name of the artifact.
    pub name: String,
    /// Algorithm → hex digest (`{"sha256": "..."}`).
    pub digest: BTreeMap<String, String>,
}

/// An in-toto Statement v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    /// Always [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// What the statement is about.
    pub subject: Vec<Subject>,
    /// The predicate's type URI.
    pub predicate_type: String,
    /// The predicate.
    pub predicate: Value,
}

/// An input of a job: a dataset version or another artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Material {
    /// Resource name, e.g. `dataset:claims@v3` or `checkpoint:sha256:...`.
    pub uri: String,
    /// Content digest, when known.
    pub digest: Option<Digest>,
}

/// The facts a provenance statement records about how an artifact was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The job id (SLSA `invocationId`).
    pub job_id: String,
    /// The zone the job ran in (SLSA builder id suffix).
    pub zone: String,
    /// Source repository of the code.
    pub code_repo: String,
    /// Git commit of the code (hex).
    pub code_commit: String,
    /// Input dataset versions and artifacts.
    pub materials: Vec<Material>,
    /// Hyperparameters, as given to the job.
    pub hyperparameters: BTreeMap<String, Value>,
    /// Start of the job (Unix seconds).
    pub started_at: u64,
    /// End of the job, which is also the signing time (Unix seconds).
    pub finished_at: u64,
}

impl Provenance {
    /// The SLSA provenance v1 predicate for these facts.
    ///
    /// # Errors
    /// [`ArtifactError::Invalid`] for an unrepresentable time or a non-hex commit.
    pub fn to_predicate(&self) -> Result<Value, ArtifactError> {
        if self.code_commit.len() < 7 || !self.code_commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ArtifactError::Invalid(format!(
                "code commit {:?} is not a hex git commit",
                self.code_commit
            )));
        }
        if self.job_id.is_empty() || self.zone.is_empty() {
            return Err(ArtifactError::Invalid(
                "provenance needs a job id and a zone".to_owned(),
            ));
        }
        let mut deps = vec![json!({
            "uri": format!("git+{}@{}", self.code_repo, self.code_commit),
            "digest": {"gitCommit": self.code_commit},
        })];
        for m in &self.materials {
            let mut dep = json!({"uri": m.uri});
            if let Some(d) = &m.digest {
                dep["digest"] = json!({d.algorithm(): d.hex()});
            }
            deps.push(dep);
        }
        Ok(json!({
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "job": self.job_id,
                    "source": {"repository": self.code_repo, "commit": self.code_commit},
                    "hyperparameters": self.hyperparameters,
                },
                "internalParameters": {"zone": self.zone},
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": format!("{BUILDER_PREFIX}{}", self.zone)},
                "metadata": {
                    "invocationId": self.job_id,
                    "startedOn": format_rfc3339(self.started_at)?,
                    "finishedOn": format_rfc3339(self.finished_at)?,
                },
            },
        }))
    }

    /// Reads the facts back from a SLSA provenance v1 predicate written by [`Self::to_predicate`].
    ///
    /// # Errors
    /// [`ArtifactError::Signature`] naming the missing field.
    pub fn from_predicate(p: &Value) -> Result<Self, ArtifactError> {
        let s = |path: &str| -> Result<String, ArtifactError> {
            p.pointer(path)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| ArtifactError::Signature(format!("provenance lacks {path}")))
        };
        let deps = p
            .pointer("/buildDefinition/resolvedDependencies")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ArtifactError::Signature("provenance lacks resolvedDependencies".to_owned())
            })?;
        let mut materials = Vec::new();
        for dep in deps {
            if dep.pointer("/digest/gitCommit").is_some() {
                continue;
            }
            let uri = dep
                .get("uri")
                .and_then(Value::as_str)
                .ok_or_else(|| ArtifactError::Signature("dependency without uri".to_owned()))?;
            let digest = match dep.pointer("/digest/sha256").and_then(Value::as_str) {
                Some(h) => Some(crate::Digest::from_hex(h)?),
                None => None,
            };
            materials.push(Material {
                uri: uri.to_owned(),
                digest,
            });
        }
        let hyperparameters = p
            .pointer("/buildDefinition/externalParameters/hyperparameters")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        Ok(Self {
            job_id: s("/runDetails/metadata/invocationId")?,
            zone: s("/buildDefinition/internalParameters/zone")?,
            code_repo: s("/buildDefinition/externalParameters/source/repository")?,
            code_commit: s("/buildDefinition/externalParameters/source/commit")?,
            materials,
            hyperparameters,
            started_at: parse_rfc3339(&s("/runDetails/metadata/startedOn")?)?,
            finished_at: parse_rfc3339(&s("/runDetails/metadata/finishedOn")?)?,
        })
    }
}

impl Statement {
    /// A statement about one artifact.
    #[must_use]
    pub fn new(name: &str, digest: &Digest, predicate_type: &str, predicate: Value) -> Self {
        Self {
            statement_type: STATEMENT_TYPE.to_owned(),
            subject: vec![Subject {
                name: name.to_owned(),
                digest: BTreeMap::from([(digest.algorithm().to_owned(), digest.hex().to_owned())]),
            }],
            predicate_type: predicate_type.to_owned(),
            predicate,
        }
    }

    /// A SLSA provenance v1 statement for `digest`.
    ///
    /// # Errors
    /// As [`Provenance::to_predicate`].
    pub fn provenance(name: &str, digest: &Digest, p: &Provenance) -> Result<Self, ArtifactError> {
        Ok(Self::new(
            name,
            digest,
            SLSA_PROVENANCE_V1,
            p.to_predicate()?,
        ))
    }

    /// Parses and checks the statement type.
    ///
    /// # Errors
    /// [`ArtifactError::Signature`] if the JSON is not an in-toto Statement v1.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ArtifactError> {
        let st: Statement = serde_json::from_slice(bytes).map_err(|e| {
            ArtifactError::Signature(format!("payload is not an in-toto statement: {e}"))
        })?;
        if st.statement_type != STATEMENT_TYPE {
            return Err(ArtifactError::Signature(format!(
                "statement _type is {:?}, expected {STATEMENT_TYPE}",
                st.statement_type
            )));
        }
        Ok(st)
    }

    /// Whether `digest` is among the subjects.
    #[must_use]
    pub fn covers(&self, digest: &Digest) -> bool {
        self.subject
            .iter()
            .any(|s| s.digest.get(digest.algorithm()).map(String::as_str) == Some(digest.hex()))
    }

    /// The time the statement asserts it was made: `runDetails.metadata.finishedOn` for SLSA
    /// provenance, `issuedOn` for tidegate attestations. Signing keys are checked against it.
    ///
    /// # Errors
    /// [`ArtifactError::Signature`] if neither is present and valid.
    pub fn signed_at(&self) -> Result<u64, ArtifactError> {
        let text = self
            .predicate
            .pointer("/runDetails/metadata/finishedOn")
            .or_else(|| self.predicate.get("issuedOn"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ArtifactError::Signature(
                    "statement has no signing time (finishedOn or issuedOn)".to_owned(),
                )
            })?;
        parse_rfc3339(text)
    }
}
