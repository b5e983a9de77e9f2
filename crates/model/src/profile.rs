//! A job resolved against its fleet: its effective classification (the strictest of its inputs
//! and its own labels) and the small set of attributes that policy decisions depend on.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::{Classification, Fleet, Input, JobKind, JobSpec, Scheme, ZoneScope};

/// A job cannot be resolved against the fleet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// An input names a dataset version the fleet does not know.
    #[error("job `{job}`: unknown dataset version `{dataset}`")]
    UnknownDataset {
        /// The job.
        job: String,
        /// The dataset reference.
        dataset: String,
    },
}

/// The attributes a placement decision depends on, and nothing else. Two jobs with equal
/// attributes get the same policy verdict for every zone, which is what makes decision reuse
/// sound: the job's name is deliberately absent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PolicyAttrs {
    /// Owning team.
    pub team: String,
    /// Kind of work.
    pub kind: JobKind,
    /// Effective classification level rank.
    pub level: u8,
    /// Effective legal tags.
    pub tags: BTreeSet<String>,
    /// Allowed jurisdictions; `None` = unrestricted.
    pub residency: Option<BTreeSet<String>>,
    /// Data may only be processed in private zones (from level or tags, or export-controlled
    /// work held to the home jurisdiction).
    pub private_only: bool,
    /// Certifications a public zone must hold.
    pub required_certifications: BTreeSet<String>,
    /// Data must stay in the jurisdiction that holds it.
    pub stays_in_jurisdiction: bool,
    /// Jurisdictions of the zones that hold the job's input datasets, and the fleet's home
    /// jurisdiction when the job declares export-controlled data no input carries. Empty for
    /// export-controlled work means the origin is unknown: no zone passes the export constraint.
    pub origin_jurisdictions: BTreeSet<String>,
    /// `allowed_execution_zone`.
    pub scope: ZoneScope,
    /// `burst_eligible` (false when absent).
    pub burst_eligible: bool,
    /// The job has artifact inputs and every one is signed and promoted to a release stage.
    pub artifacts_released: bool,
}

/// Where a job's input data sits, for egress cost and transfer planning.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataLocation {
    /// `name@version`.
    pub dataset: String,
    /// The zone holding it.
    pub zone: String,
    /// Its size, GB.
    pub size_gb: f64,
}

/// A job resolved against a fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobProfile {
    /// The job's name.
    pub name: String,
    /// Effective classification.
    pub effective: Classification,
    /// Policy-relevant attributes.
    pub attrs: PolicyAttrs,
    /// Where the input data sits.
    pub data: Vec<DataLocation>,
    /// How the effective classification was reached, for `explain`.
    pub notes: Vec<String>,
}

impl JobProfile {
    /// The customer's job labels with their effective values, for backends to put on what they
    /// create (a Kubernetes Job and its pods) so that admission controllers there (Gatekeeper,
    /// Kyverno) can enforce them. All three are present whether or not the spec wrote them:
    /// - `data_classification`: the effective level (the strictest of the inputs, the job's own
    ///   classification and its label);
    /// - `allowed_execution_zone`: `private` when the data may only be processed in private
    ///   zones and the label names no narrower scope (absent, `public` or `edge`); otherwise the
    ///   label as written, or `any` when absent;
    /// - `burst_eligible`: the label (`false` when absent), and `false` for data that may only
    ///   be processed in private zones.
    pub fn effective_labels(&self, scheme: &Scheme) -> BTreeMap<String, String> {
        let a = &self.attrs;
        let scope = match &a.scope {
            ZoneScope::Zone(z) => z.as_str(),
            _ if a.private_only => ZoneScope::Private.as_label(),
            s => s.as_label(),
        };
        BTreeMap::from([
            (
                "data_classification".to_owned(),
                scheme.level_name(self.effective.level).to_owned(),
            ),
            ("allowed_execution_zone".to_owned(), scope.to_owned()),
            (
                "burst_eligible".to_owned(),
                (a.burst_eligible && !a.private_only).to_string(),
            ),
        ])
    }

    /// Resolves a job: effective classification = the strictest of every input dataset, the job's
    /// own `spec.classification` and its `data_classification` label. A label less strict than
    /// the data is overridden, and a note says so.
    pub fn resolve(job: &JobSpec, fleet: &Fleet) -> Result<Self, ResolveError> {
        let scheme = &fleet.scheme;
        let mut effective = Classification::default();
        let mut notes = Vec::new();
        let mut data = Vec::new();
        let mut origin_jurisdictions = BTreeSet::new();
        let mut strictest_input: Option<(String, u8)> = None;
        let mut artifacts = 0usize;
        let mut controlled_inputs = 0usize;
        let mut released = 0usize;
        for input in &job.inputs {
            match input {
                Input::Dataset(r) => {
                    let d = fleet
                        .dataset(r)
                        .ok_or_else(|| ResolveError::UnknownDataset {
                            job: job.name.clone(),
                            dataset: r.to_string(),
                        })?;
                    effective = effective.join(&d.classification, scheme);
                    if scheme.stays_in_jurisdiction(&d.classification) {
                        controlled_inputs += 1;
                    }
                    if strictest_input
                        .as_ref()
                        .is_none_or(|(_, l)| d.classification.level > *l)
                    {
                        strictest_input = Some((r.to_string(), d.classification.level));
                    }
                    if let Some(z) = fleet.zone(&d.home_zone) {
                        origin_jurisdictions.insert(z.jurisdiction.clone());
                    }
                    data.push(DataLocation {
                        dataset: r.to_string(),
                        zone: d.home_zone.clone(),
                        size_gb: d.size_gb,
                    });
                }
                Input::Artifact(digest) => {
                    artifacts += 1;
                    if fleet
                        .artifact(digest)
                        .is_some_and(crate::ArtifactRecord::released)
                    {
                        released += 1;
                    }
                }
            }
        }
        if let Some(own) = &job.classification {
            effective = effective.join(own, scheme);
        }
        if let Some(label) = job.labels.data_classification {
            let label_name = scheme.level_name(label).to_string();
            if label < effective.level {
                let (input, _) = strictest_input
                    .clone()
                    .unwrap_or_else(|| ("spec.classification".into(), effective.level));
                notes.push(format!(
                    "label data_classification={label_name} is less strict than input {input} ({}); the stricter level {} applies",
                    scheme.level_name(effective.level),
                    scheme.level_name(effective.level)
                ));
            } else if label > effective.level {
                notes.push(format!(
                    "label data_classification={label_name} is stricter than the inputs ({}); the label applies",
                    scheme.level_name(effective.level)
                ));
            }
            effective.level = effective.level.max(label);
        }
        let scope = job
            .labels
            .allowed_execution_zone
            .clone()
            .unwrap_or(ZoneScope::Any);
        let mut private_only = scheme.private_only(&effective);
        let stays_in_jurisdiction = scheme.stays_in_jurisdiction(&effective);
        if stays_in_jurisdiction && controlled_inputs == 0 {
            // The job itself declares controlled data and no input says where it is held: it is
            // taken to be held at home, in private zones; without a home its origin is unknown
            // (an empty origin set, which fails the export constraint in every zone).
            match &fleet.home_jurisdiction {
                Some(home) => {
                    origin_jurisdictions.insert(home.clone());
                    private_only = true;
                    notes.push(format!(
                        "export-controlled work with no input of known origin is held to the fleet's home jurisdiction {home}, in private zones only"
                    ));
                }
                None => {
                    origin_jurisdictions.clear();
                    notes.push(
                        "export-controlled work with no input of known origin, and fleet.yaml declares no home_jurisdiction: refused in every zone".into(),
                    );
                }
            }
        }
        if private_only && matches!(scope, ZoneScope::Public | ZoneScope::Edge) {
            notes.push(format!(
                "label allowed_execution_zone={} asks for more than the data ({}) allows; private zones only",
                scope.as_label(),
                effective.describe(scheme)
            ));
        }
        let attrs = PolicyAttrs {
            team: job.team.clone(),
            kind: job.kind,
            level: effective.level,
            tags: effective.tags.clone(),
            residency: effective.residency.clone(),
            private_only,
            required_certifications: scheme.required_certifications(&effective),
            stays_in_jurisdiction,
            origin_jurisdictions,
            scope,
            burst_eligible: job.labels.burst_eligible.unwrap_or(false),
            artifacts_released: artifacts > 0 && released == artifacts,
        };
        Ok(Self {
            name: job.name.clone(),
            effective,
            attrs,
            data,
            notes,
        })
    }
}
