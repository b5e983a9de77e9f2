//! Artifacts (`/v1/artifacts`): an artifact as the API shows it, a list, a verification, a
//! promotion, and the query parameters of storing, listing and reading.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Largest artifact accepted through the API, bytes (the content is held in memory while it is
/// hashed and encrypted; larger objects go in directly with `tidegate artifact put --data-dir`).
pub const MAX_ARTIFACT_BYTES: usize = 256 * 1024 * 1024;

/// The label naming the team an artifact was stored for.
pub const TEAM_LABEL: &str = "team";

/// An artifact as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ArtifactView {
    /// Content digest, `sha256:<hex>`.
    pub digest: String,
    /// `dataset-snapshot`, `feature-set`, `checkpoint`, `model`, `container-image-ref`,
    /// `model-card`, `evaluation-report` or `sanitizer-report`.
    pub kind: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Human name.
    pub name: String,
    /// `production` or `experiment`.
    pub lane: String,
    /// Derived from sensitive data (a leakage check is then required before approval).
    pub sensitive: bool,
    /// The team it was stored for (absent when stored directly on the data directory).
    pub team: Option<String>,
    /// Labels (the team label included).
    pub labels: BTreeMap<String, String>,
    /// Promotion stage: `candidate`, `validated`, `approved`, `released-private`,
    /// `released-public` or `released-edge`.
    pub stage: String,
    /// When it was stored, Unix seconds.
    pub created_at: u64,
    /// Its classification (`LEVEL` or `LEVEL/TAG,TAG`); absent when unclassified (judged as
    /// the most sensitive data the fleet knows).
    pub classification: Option<String>,
}

/// Stored artifacts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ArtifactList {
    /// In storage order (oldest first).
    pub artifacts: Vec<ArtifactView>,
}

/// One verified statement attached to an artifact.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatementView {
    /// The in-toto predicate type (SLSA provenance, or a tidegate attestation).
    pub predicate_type: String,
    /// Key ids of the signatures that verified.
    pub keyids: Vec<String>,
    /// Owners of those keys.
    pub owners: Vec<String>,
    /// Union of their roles (`builder`, `approver`).
    pub roles: Vec<String>,
    /// When it was signed, Unix seconds.
    pub signed_at: u64,
}

/// A successful verification: the content hashes to its digest and decrypts, and every attached
/// signature verifies against the data directory's keyring.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerifyView {
    /// The artifact.
    pub artifact: ArtifactView,
    /// Always true (a failure is an error naming what is tampered or unsigned).
    pub verified: bool,
    /// Every attached statement, verified.
    pub statements: Vec<StatementView>,
    /// The predicate of the signed SLSA provenance, when one is attached (required for models
    /// and checkpoints).
    #[schema(value_type = Option<Object>)]
    pub provenance: Option<serde_json::Value>,
}

/// A promotion through the Cedar gates.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// Target stage: `validated`, `approved`, `released-private`, `released-public` or
    /// `released-edge`.
    #[schema(pattern = "^(validated|approved|released-private|released-public|released-edge)$")]
    pub to: String,
    /// Who asks, as recorded (default: the caller; only an administrator may name someone
    /// else): an identifier of the evidence ledger (1 to 128 characters from
    /// `A-Z a-z 0-9 . _ : @ / + -`, starting with a letter or digit).
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$")]
    pub actor: Option<String>,
}

/// A promotion that the gates allowed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PromoteResponse {
    /// The artifact.
    pub digest: String,
    /// The stage before.
    pub from: String,
    /// The new stage.
    pub stage: String,
    /// Who asked.
    pub actor: String,
    /// Hash of the promotion policy that decided.
    pub policy_hash: String,
}

/// How to store an artifact (query parameters; the body is the content).
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PutQuery {
    /// Kind (required): `dataset-snapshot`, `feature-set`, `checkpoint`, `model`,
    /// `container-image-ref`, `model-card`, `evaluation-report`, `sanitizer-report`.
    #[param(
        pattern = "^(dataset-snapshot|feature-set|checkpoint|model|container-image-ref|model-card|evaluation-report|sanitizer-report)$"
    )]
    pub kind: String,
    /// `production` (default) or `experiment`; experiment artifacts are never released.
    #[param(pattern = "^(production|experiment)$")]
    pub lane: Option<String>,
    /// Human name (default: empty).
    pub name: Option<String>,
    /// Derived from sensitive data (restricted, PHI): a leakage check is then required.
    pub sensitive: Option<bool>,
    /// The team it is stored for (default: the caller's; lower-case letters, digits and '-', at
    /// most 63).
    #[param(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub team: Option<String>,
    /// The job that produced it (a job of the team): the artifact inherits that job's effective
    /// classification, whatever else is declared. Required for checkpoints.
    #[param(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub job: Option<String>,
    /// Its classification as `LEVEL` or `LEVEL/TAG,TAG` (joined with the job's when `job` is
    /// given: the stricter wins). Without either, the artifact is unclassified and judged as the
    /// most sensitive data the fleet knows.
    pub classification: Option<String>,
}

/// Which artifacts to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListArtifactsQuery {
    /// Only this team's artifacts (default: the caller's team; an admin sees every artifact).
    #[param(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub team: Option<String>,
}

/// How content is read.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GetArtifactQuery {
    /// The zone a job reads from. When present, the bearer token is a scoped job token that must
    /// grant reading `<kind>:<digest>` from this zone (checked offline; the use is recorded).
    pub zone: Option<String>,
}
