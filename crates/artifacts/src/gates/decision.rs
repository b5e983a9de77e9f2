//! The promotion decision, pure: the promotion policy, what an artifact is, the statements that
//! verified and the target stage in; a [`GateDecision`] out, every missing piece of evidence
//! named. No filesystem, no clock, no store: the shell in [`crate::gates`] loads the inputs
//! (from the store and its evidence ledger) and records the outcome.
//!
//! Only statements whose DSSE envelopes verified against the signing keyring count as evidence
//! (the caller passes only those), and a security review or data approval counts only when
//! signed by a key holding the `approver` role. Whatever the policy says, stages move one step
//! at a time and experiment-lane artifacts are never released ([`decide`]).

use std::fmt;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request, RestrictedExpression,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::intoto::Statement;
use crate::signing::VerifiedStatement;
use crate::timefmt::format_rfc3339;
use crate::{ArtifactError, ArtifactKind, Digest, Lane};

/// Predicate type of a data approval (the training data may be used for this model).
pub const DATA_APPROVAL: &str = "https://tidegate.dev/attestations/data-approval/v1";
/// Predicate type of a feature pin (the feature set version is fixed).
pub const FEATURE_PIN: &str = "https://tidegate.dev/attestations/feature-pin/v1";
/// Predicate type of a model card attestation (`modelCard`: digest of the card artifact).
pub const MODEL_CARD: &str = "https://tidegate.dev/attestations/model-card/v1";
/// Predicate type of a test-set validation report (`metric`, `value`, `testSet`).
pub const VALIDATION_REPORT: &str = "https://tidegate.dev/attestations/validation-report/v1";
/// Predicate type of a security review (`reviewer`, `verdict: "approved"`).
pub const SECURITY_REVIEW: &str = "https://tidegate.dev/attestations/security-review/v1";
/// Predicate type of a leakage / memorisation check (`method`, `passed`).
pub const LEAKAGE_CHECK: &str = "https://tidegate.dev/attestations/leakage-check/v1";

/// The role a signing key needs for approvals and security reviews to count.
pub const APPROVER_ROLE: &str = "approver";

/// The default promotion policy (Cedar). Each `forbid` names the evidence it requires in its
/// `@reason` annotation; a denied promotion lists the reasons of every forbid that applied.
pub const DEFAULT_POLICY: &str = include_str!("../promotion.cedar");

/// A promotion stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Freshly produced.
    Candidate,
    /// Passed validation on the test set.
    Validated,
    /// Approved by an approver after security review.
    Approved,
    /// Served inside private zones.
    ReleasedPrivate,
    /// Served from public GPU providers.
    ReleasedPublic,
    /// Shipped to edge devices.
    ReleasedEdge,
}

impl Stage {
    /// All stages.
    pub const ALL: [Stage; 6] = [
        Stage::Candidate,
        Stage::Validated,
        Stage::Approved,
        Stage::ReleasedPrivate,
        Stage::ReleasedPublic,
        Stage::ReleasedEdge,
    ];

    /// The kebab-case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Candidate => "candidate",
            Stage::Validated => "validated",
            Stage::Approved => "approved",
            Stage::ReleasedPrivate => "released-private",
            Stage::ReleasedPublic => "released-public",
            Stage::ReleasedEdge => "released-edge",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = ArtifactError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            ArtifactError::Invalid(format!(
                "unknown stage {s:?}; one of candidate, validated, approved, released-private, released-public, released-edge"
            ))
        })
    }
}

/// What the gate knows about the artifact itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactFacts {
    /// The artifact.
    pub digest: Digest,
    /// Its kind.
    pub kind: ArtifactKind,
    /// Its lane.
    pub lane: Lane,
    /// Trained on sensitive data.
    pub sensitive: bool,
    /// Its current stage.
    pub stage: Stage,
}

/// Evidence derived from verified attestations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// A data approval signed by an approver.
    pub data_approval: bool,
    /// A feature pin naming a feature set and version.
    pub feature_pinned: bool,
    /// A model card attestation.
    pub model_card: bool,
    /// Best validation metric in basis points (0.9312 → 9312); -1 when absent.
    pub validation_bp: i64,
    /// A security review with verdict `approved`, signed by an approver.
    pub security_review: bool,
    /// A passed leakage / memorisation check.
    pub leakage_check: bool,
}

impl Evidence {
    /// Reads evidence from statements that already verified and name the artifact.
    #[must_use]
    pub fn from_statements(digest: &Digest, statements: &[VerifiedStatement]) -> Self {
        let mut ev = Evidence {
            validation_bp: -1,
            ..Evidence::default()
        };
        for v in statements.iter().filter(|v| v.statement.covers(digest)) {
            let p = &v.statement.predicate;
            let approver = v.roles.iter().any(|r| r == APPROVER_ROLE);
            let s = |k: &str| p.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
            match v.statement.predicate_type.as_str() {
                DATA_APPROVAL if approver && s("dataset").is_some() => ev.data_approval = true,
                FEATURE_PIN
                    if s("featureSet").is_some()
                        && (s("version").is_some()
                            || p.get("version").is_some_and(Value::is_number)) =>
                {
                    ev.feature_pinned = true;
                }
                MODEL_CARD if s("modelCard").is_some() => ev.model_card = true,
                VALIDATION_REPORT if s("testSet").is_some() => {
                    if let Some(x) = p
                        .get("value")
                        .and_then(Value::as_f64)
                        .filter(|x| x.is_finite())
                    {
                        // Saturating float-to-int cast; metrics are in [0, 1].
                        #[allow(clippy::cast_possible_truncation)]
                        let bp = (x * 10_000.0).floor() as i64;
                        ev.validation_bp = ev.validation_bp.max(bp);
                    }
                }
                SECURITY_REVIEW if approver && s("verdict") == Some("approved") => {
                    ev.security_review = true;
                }
                LEAKAGE_CHECK if p.get("passed").and_then(Value::as_bool) == Some(true) => {
                    ev.leakage_check = true;
                }
                _ => {}
            }
        }
        ev
    }
}

/// A parsed promotion policy and its hash (recorded with every decision).
#[derive(Debug, Clone)]
pub struct PromotionPolicy {
    set: PolicySet,
    hash: Digest,
    text: String,
}

impl PromotionPolicy {
    /// Parses Cedar policy text.
    ///
    /// # Errors
    /// [`ArtifactError::Policy`] with Cedar's parse errors.
    pub fn parse(text: &str) -> Result<Self, ArtifactError> {
        let set = PolicySet::from_str(text).map_err(|e| ArtifactError::Policy(e.to_string()))?;
        Ok(Self {
            set,
            hash: Digest::of(text.as_bytes()),
            text: text.to_owned(),
        })
    }

    /// The built-in policy.
    ///
    /// # Errors
    /// Never in practice; [`ArtifactError::Policy`] if the built-in text failed to parse.
    pub fn default_policy() -> Result<Self, ArtifactError> {
        Self::parse(DEFAULT_POLICY)
    }

    /// SHA-256 of the policy text.
    #[must_use]
    pub fn hash(&self) -> &Digest {
        &self.hash
    }

    /// The policy text.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The outcome of a gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateDecision {
    /// Allowed or not.
    pub allowed: bool,
    /// Target stage.
    pub to: Stage,
    /// Why not: each missing or failing requirement, named. Empty when allowed.
    pub reasons: Vec<String>,
    /// A short identifier for each reason, in the same order: the `@id` of the forbidding
    /// policy, or `policy-error`, `policy-request-error`, `no-permit`. Empty when allowed.
    #[serde(default)]
    pub codes: Vec<String>,
    /// The evidence the decision saw.
    pub evidence: Evidence,
    /// Hash of the policy that decided.
    pub policy_hash: Digest,
}

/// Decides a promotion. Pure: no clock, no I/O. Fails closed: any policy evaluation error
/// denies, and a deny without a named reason says no policy permitted it.
#[must_use]
pub fn decide(
    policy: &PromotionPolicy,
    facts: &ArtifactFacts,
    statements: &[VerifiedStatement],
    to: Stage,
) -> GateDecision {
    let evidence = Evidence::from_statements(&facts.digest, statements);
    let deny = |reasons: Vec<String>, codes: Vec<String>, evidence: Evidence| GateDecision {
        allowed: false,
        to,
        reasons,
        codes,
        evidence,
        policy_hash: policy.hash.clone(),
    };
    // The floor no policy can lower: stages move one step forward (released-private then opens
    // public and edge), and experiment-lane artifacts are never released.
    let mut floor: Vec<(String, String)> = Vec::new();
    if !next_stages(facts.stage).contains(&to) {
        floor.push((
            format!(
                "stage order: candidate -> validated -> approved -> released-private -> released-public | released-edge; {} -> {to} skips or reverses a stage",
                facts.stage
            ),
            "stage-order".to_owned(),
        ));
    }
    if facts.lane == Lane::Experiment
        && matches!(
            to,
            Stage::ReleasedPrivate | Stage::ReleasedPublic | Stage::ReleasedEdge
        )
    {
        floor.push((
            "experiment lane: artifacts from an experiment lane are never promoted to a release stage".to_owned(),
            "experiment-lane".to_owned(),
        ));
    }
    if !floor.is_empty() {
        let (reasons, codes) = floor.into_iter().unzip();
        return deny(reasons, codes, evidence);
    }
    let request = match cedar_request(facts, &evidence, to) {
        Ok(r) => r,
        Err(e) => {
            return deny(
                vec![format!("could not build the policy request: {e}")],
                vec!["policy-request-error".to_owned()],
                evidence,
            )
        }
    };
    let (req, entities) = request;
    let response = Authorizer::new().is_authorized(&req, &policy.set, &entities);
    let errors: Vec<String> = response
        .diagnostics()
        .errors()
        .map(|e| format!("policy error: {e}"))
        .collect();
    if !errors.is_empty() {
        let codes = vec!["policy-error".to_owned(); errors.len()];
        return deny(errors, codes, evidence);
    }
    if response.decision() == Decision::Allow {
        return GateDecision {
            allowed: true,
            to,
            reasons: Vec::new(),
            codes: Vec::new(),
            evidence,
            policy_hash: policy.hash.clone(),
        };
    }
    let mut pairs: Vec<(String, String)> = response
        .diagnostics()
        .reason()
        .map(|id| {
            let reason = policy
                .set
                .annotation(id, "reason")
                .map_or_else(|| format!("denied by policy {id}"), str::to_owned);
            let code = policy
                .set
                .annotation(id, "id")
                .map_or_else(|| id.to_string(), str::to_owned);
            (reason, code)
        })
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        pairs.push((
            format!("no policy permits promotion to {to}"),
            "no-permit".to_owned(),
        ));
    }
    let (reasons, codes) = pairs.into_iter().unzip();
    deny(reasons, codes, evidence)
}

/// Where an artifact at `from` may be promoted to.
fn next_stages(from: Stage) -> &'static [Stage] {
    match from {
        Stage::Candidate => &[Stage::Validated],
        Stage::Validated => &[Stage::Approved],
        Stage::Approved => &[Stage::ReleasedPrivate],
        Stage::ReleasedPrivate => &[Stage::ReleasedPublic, Stage::ReleasedEdge],
        Stage::ReleasedPublic | Stage::ReleasedEdge => &[],
    }
}

type CedarInput = (Request, Entities);

fn cedar_request(facts: &ArtifactFacts, ev: &Evidence, to: Stage) -> Result<CedarInput, String> {
    let resource = json!({
        "uid": {"type": "Artifact", "id": facts.digest.to_string()},
        "attrs": {
            "kind": facts.kind.as_str(),
            "lane": facts.lane.as_str(),
            "sensitive": facts.sensitive,
            "stage": facts.stage.as_str(),
            "data_approval": ev.data_approval,
            "feature_pinned": ev.feature_pinned,
            "model_card": ev.model_card,
            "validation_bp": ev.validation_bp,
            "security_review": ev.security_review,
            "leakage_check": ev.leakage_check,
        },
        "parents": [],
    });
    let entities = Entities::from_json_value(json!([resource]), None).map_err(|e| e.to_string())?;
    let principal =
        EntityUid::from_str(r#"Tidegate::"promotion-gate""#).map_err(|e| e.to_string())?;
    let action = EntityUid::from_str(r#"Action::"promote""#).map_err(|e| e.to_string())?;
    let res_uid = EntityUid::from_str(&format!("Artifact::{:?}", facts.digest.to_string()))
        .map_err(|e| e.to_string())?;
    let context = Context::from_pairs([
        (
            "to".to_owned(),
            RestrictedExpression::new_string(to.as_str().to_owned()),
        ),
        (
            "from".to_owned(),
            RestrictedExpression::new_string(facts.stage.as_str().to_owned()),
        ),
    ])
    .map_err(|e| e.to_string())?;
    let req = Request::new(principal, action, res_uid, context, None).map_err(|e| e.to_string())?;
    Ok((req, entities))
}

/// An attestation statement of `predicate_type` about `digest`, issued at `issued_at`.
///
/// # Errors
/// [`ArtifactError::Invalid`] if `fields` is not a JSON object or the time is invalid.
pub fn attestation(
    name: &str,
    digest: &Digest,
    predicate_type: &str,
    fields: Value,
    issued_at: u64,
) -> Result<Statement, ArtifactError> {
    let Value::Object(mut map) = fields else {
        return Err(ArtifactError::Invalid(
            "attestation fields must be a JSON object".to_owned(),
        ));
    };
    map.insert(
        "issuedOn".to_owned(),
        Value::String(format_rfc3339(issued_at)?),
    );
    Ok(Statement::new(
        name,
        digest,
        predicate_type,
        Value::Object(map),
    ))
}

/// One stage change (recorded in the evidence ledger as `artifact.promoted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionRecord {
    /// The artifact.
    pub digest: Digest,
    /// Previous stage.
    pub from: Stage,
    /// New stage.
    pub to: Stage,
    /// Who asked.
    pub actor: String,
    /// When (Unix seconds).
    pub at: u64,
    /// Hash of the deciding policy.
    pub policy_hash: Digest,
    /// The evidence seen.
    pub evidence: Evidence,
}

/// Whether `policy`, read from `from` (a file, or the built-in text), is the promotion policy in
/// force: the one whose hash the evidence ledger last recorded (`recorded`), or, when no change
/// was ever recorded, the built-in default.
///
/// # Errors
/// [`ArtifactError::Policy`] naming both hashes when it is not: promotions are refused until an
/// approver records the change.
pub fn check_in_force(
    policy: &PromotionPolicy,
    from: &str,
    recorded: Option<&str>,
) -> Result<(), ArtifactError> {
    let (expected, what) = match recorded {
        Some(h) => (h.to_owned(), "the one the evidence ledger last recorded"),
        None => (
            Digest::of(DEFAULT_POLICY.as_bytes()).to_string(),
            "the built-in default (no change was ever recorded)",
        ),
    };
    if policy.hash().to_string() != expected {
        return Err(ArtifactError::Policy(format!(
            "{from} ({}) is not the promotion policy in force: that is {what}, {expected}; promotions are refused until the change is recorded by an approver with `tidegate artifact set-policy FILE --key KEY_ID`",
            policy.hash()
        )));
    }
    Ok(())
}
