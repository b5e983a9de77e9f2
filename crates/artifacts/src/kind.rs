//! Artifact kinds and lanes (production work versus experiments).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ArtifactError;

/// What an artifact is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactKind {
    /// A frozen snapshot of a dataset version.
    DatasetSnapshot,
    /// A computed feature set.
    FeatureSet,
    /// A training checkpoint.
    Checkpoint,
    /// A trained model.
    Model,
    /// A reference to a container image (the content is the reference, e.g. `repo@sha256:...`).
    ContainerImageRef,
    /// A model card.
    ModelCard,
    /// An evaluation report.
    EvaluationReport,
    /// A sanitizer report.
    SanitizerReport,
    /// A sanitizer profile, kept with the approver signatures that let it earn a lower
    /// classification.
    SanitizerProfile,
}

impl ArtifactKind {
    /// All kinds, in display order.
    pub const ALL: [ArtifactKind; 9] = [
        ArtifactKind::DatasetSnapshot,
        ArtifactKind::FeatureSet,
        ArtifactKind::Checkpoint,
        ArtifactKind::Model,
        ArtifactKind::ContainerImageRef,
        ArtifactKind::ModelCard,
        ArtifactKind::EvaluationReport,
        ArtifactKind::SanitizerReport,
        ArtifactKind::SanitizerProfile,
    ];

    /// The kebab-case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::DatasetSnapshot => "dataset-snapshot",
            ArtifactKind::FeatureSet => "feature-set",
            ArtifactKind::Checkpoint => "checkpoint",
            ArtifactKind::Model => "model",
            ArtifactKind::ContainerImageRef => "container-image-ref",
            ArtifactKind::ModelCard => "model-card",
            ArtifactKind::EvaluationReport => "evaluation-report",
            ArtifactKind::SanitizerReport => "sanitizer-report",
            ArtifactKind::SanitizerProfile => "sanitizer-profile",
        }
    }

    /// Kinds that must carry signed provenance (checkpoints and models).
    #[must_use]
    pub fn requires_provenance(self) -> bool {
        matches!(self, ArtifactKind::Checkpoint | ArtifactKind::Model)
    }
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ArtifactKind {
    type Err = ArtifactError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ArtifactKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = ArtifactKind::ALL.iter().map(|k| k.as_str()).collect();
                ArtifactError::Invalid(format!(
                    "unknown artifact kind {s:?}; one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// Which lane produced an artifact. Experiment artifacts never reach a release stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lane {
    /// Production work: may be promoted through every stage.
    #[default]
    Production,
    /// Experimental work: kept apart, never released.
    Experiment,
}

impl Lane {
    /// The kebab-case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Production => "production",
            Lane::Experiment => "experiment",
        }
    }
}

impl FromStr for Lane {
    type Err = ArtifactError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "production" => Ok(Lane::Production),
            "experiment" => Ok(Lane::Experiment),
            other => Err(ArtifactError::Invalid(format!(
                "unknown lane {other:?}; one of production, experiment"
            ))),
        }
    }
}
