//! The policy engine: loads and validates the policy set, evaluates (job attributes, zone) pairs
//! with Cedar, and reports which policies decided. Fail closed everywhere: a policy that does not
//! load stops the engine from being built, and an evaluation error denies.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy,
    PolicyId, PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use miette::Diagnostic;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tidegate_model::{Fleet, PolicyAttrs, Zone};

use crate::error::{line_col, PolicyError, PolicyErrors};
use crate::facts::{JobFacts, Projection, Val, JOB_ATTRS, ZONE_ATTRS};
use crate::schema::schema_text;

/// The built-in baseline policy text.
pub const BASELINE_TEXT: &str = include_str!("baseline.cedar");
const BASELINE_FILE: &str = "<baseline>";

/// A policy that took part in a decision.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PolicyRef {
    /// The policy id (its `@id` annotation, or `FILE#N`).
    pub id: String,
    /// Its `@reason` annotation, or empty.
    pub reason: String,
}

/// The verdict for one (job, zone) pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneVerdict {
    /// The zone (index into the fleet's zones).
    pub zone: usize,
    /// Cedar allowed it.
    pub allowed: bool,
    /// Permit policies that applied.
    pub permits: Vec<PolicyRef>,
    /// Forbid policies that applied.
    pub forbids: Vec<PolicyRef>,
    /// Evaluation errors (each one denies).
    pub errors: Vec<String>,
}

impl ZoneVerdict {
    /// Denied in `zone` because evaluation could not be done (fail closed).
    pub fn denied(zone: usize, error: String) -> Self {
        Self {
            zone,
            allowed: false,
            permits: vec![],
            forbids: vec![],
            errors: vec![error],
        }
    }

    /// Human-readable reasons: every forbid, every error, or the permits, or default deny.
    pub fn reasons(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in &self.forbids {
            out.push(format!("forbidden by {}: {}", f.id, f.reason));
        }
        for e in &self.errors {
            out.push(format!("denied: policy evaluation error: {e}"));
        }
        if self.forbids.is_empty() && self.errors.is_empty() {
            if self.permits.is_empty() {
                out.push("denied: no policy permits it (default deny)".into());
            } else {
                for p in &self.permits {
                    out.push(format!("permitted by {}: {}", p.id, p.reason));
                }
            }
        }
        out
    }
}

struct Meta {
    reason: String,
    is_forbid: bool,
}

/// A loaded, validated policy set bound to one fleet's zones.
pub struct PolicyEngine {
    schema: Schema,
    set: PolicySet,
    meta: HashMap<PolicyId, Meta>,
    zone_uids: Vec<EntityUid>,
    zone_entities: Vec<Entity>,
    zone_vals: Vec<Vec<Val>>,
    proj_zone_uid: EntityUid,
    /// One projected zone's id per zone index, for stores holding several projected zones.
    proj_zone_uids: Vec<EntityUid>,
    /// Per zone, the first zone equal to it in every attribute the policies read (itself when
    /// none is): zones of one class get the same verdict for any job.
    zone_class: Vec<usize>,
    action: EntityUid,
    job_uid: EntityUid,
    projection: Projection,
    authorizer: Authorizer,
    hash: String,
    document: Vec<u8>,
    schema_src: String,
    texts: BTreeMap<String, String>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("hash", &self.hash)
            .field("policies", &self.meta.len())
            .finish()
    }
}

fn internal(e: impl std::fmt::Display) -> PolicyErrors {
    PolicyErrors(vec![PolicyError::Internal(e.to_string())])
}

fn uid(ty: &str, id: &str) -> Result<EntityUid, PolicyErrors> {
    let t = EntityTypeName::from_str(ty).map_err(internal)?;
    Ok(EntityUid::from_type_name_and_id(t, EntityId::new(id)))
}

fn first_offset(d: &dyn Diagnostic) -> Option<usize> {
    d.labels().and_then(|mut l| l.next()).map(|l| l.offset())
}

fn set_of<'a>(items: impl IntoIterator<Item = &'a String>) -> RestrictedExpression {
    RestrictedExpression::new_set(
        items
            .into_iter()
            .map(|s| RestrictedExpression::new_string(s.clone())),
    )
}

impl PolicyEngine {
    /// Builds the engine for a fleet: schema from the model, the baseline (less any excluded
    /// ids), and the fleet's policy files. Any parse, validation or id error fails the whole load.
    pub fn load(fleet: &Fleet) -> Result<Self, PolicyErrors> {
        // The built-in levels and tags are the floor under every policy: a scheme that weakens
        // them is refused here too, however the fleet was built.
        let floor: Vec<PolicyError> = fleet
            .scheme
            .floor_problems()
            .into_iter()
            .map(|p| PolicyError::WeakScheme(p.message))
            .collect();
        if !floor.is_empty() {
            return Err(PolicyErrors(floor));
        }
        let schema_src = schema_text(&fleet.scheme);
        let (schema, _warnings) = Schema::from_cedarschema_str(&schema_src).map_err(internal)?;
        let mut errs = Vec::new();
        let mut set = PolicySet::new();
        let mut meta = HashMap::new();
        let mut first_seen: HashMap<String, String> = HashMap::new();
        let mut texts = BTreeMap::new();

        let baseline = parse_file(Path::new(BASELINE_FILE), BASELINE_TEXT)?;
        let baseline_ids: HashSet<String> = baseline.iter().map(|(id, _, _)| id.clone()).collect();
        for ex in &fleet.baseline_exclude {
            if !baseline_ids.contains(ex) {
                errs.push(PolicyError::UnknownExclude(ex.clone()));
            }
        }
        let mut files: Vec<(PathBuf, &str, Vec<Parsed>)> = Vec::new();
        let kept: Vec<_> = baseline
            .into_iter()
            .filter(|(id, _, _)| !fleet.baseline_exclude.contains(id))
            .collect();
        files.push((PathBuf::from(BASELINE_FILE), BASELINE_TEXT, kept));
        for pf in &fleet.policies {
            match parse_file(&pf.path, &pf.text) {
                Ok(p) => files.push((pf.path.clone(), pf.text.as_str(), p)),
                Err(e) => errs.extend(e.0),
            }
        }

        let validator = Validator::new(schema.clone());
        for (path, text, policies) in files {
            let mut file_set = PolicySet::new();
            for (id, policy, line) in policies {
                let at = format!("{}:{line}", path.display());
                if let Some(first) = first_seen.get(&id) {
                    errs.push(PolicyError::DuplicateId {
                        path: path.clone(),
                        line,
                        id,
                        first: first.clone(),
                    });
                    continue;
                }
                first_seen.insert(id.clone(), at);
                let reason = policy.annotation("reason").unwrap_or_default().to_string();
                let is_forbid = policy.effect() == cedar_policy::Effect::Forbid;
                meta.insert(policy.id().clone(), Meta { reason, is_forbid });
                if let Err(e) = file_set.add(policy.clone()) {
                    errs.push(PolicyError::Internal(e.to_string()));
                }
                if let Err(e) = set.add(policy) {
                    errs.push(PolicyError::Internal(e.to_string()));
                }
            }
            let result = validator.validate(&file_set, ValidationMode::Strict);
            for e in result.validation_errors() {
                let (line, column) = first_offset(e).map_or((0, 0), |o| line_col(text, o));
                errs.push(PolicyError::Schema {
                    path: path.clone(),
                    line,
                    column,
                    policy: e.policy_id().to_string(),
                    message: e.to_string(),
                });
            }
            texts.insert(path.display().to_string(), text.to_string());
        }
        if !errs.is_empty() {
            return Err(PolicyErrors(errs));
        }

        let mut zone_uids = Vec::with_capacity(fleet.zones.len());
        let mut zone_entities = Vec::with_capacity(fleet.zones.len());
        for z in &fleet.zones {
            let u = uid("Zone", &z.name)?;
            zone_entities.push(zone_entity(u.clone(), z, fleet)?);
            zone_uids.push(u);
        }
        // Validate the zone entities against the schema once.
        Entities::from_entities(zone_entities.clone(), Some(&schema)).map_err(internal)?;
        let zone_vals: Vec<Vec<Val>> = fleet.zones.iter().map(|z| zone_vals(z, fleet)).collect();

        let mut jsons = Vec::new();
        for p in set.policies() {
            match p.to_json() {
                Ok(j) => jsons.push(j),
                Err(e) => return Err(internal(e)),
            }
        }
        let projection = Projection::from_policies(jsons.iter());

        // The hash covers the schema, the whole classification scheme (every level and tag with
        // its consequences, which the hard constraints read), the home jurisdiction and every
        // policy in force, in id order: it is the SHA-256 of the policy document, which evidence bundles carry.
        let mut by_id: Vec<(String, String)> = set
            .policies()
            .map(|p| (p.id().to_string(), p.to_string()))
            .collect();
        by_id.sort();
        let scheme_json = serde_json::to_string(&fleet.scheme).map_err(internal)?;
        let mut document = schema_src.clone().into_bytes();
        document.push(0);
        document.extend_from_slice(b"classification-scheme");
        document.push(0);
        document.extend_from_slice(scheme_json.as_bytes());
        // The home jurisdiction decides where export-controlled work of unknown origin may run.
        document.push(0);
        document.extend_from_slice(b"home-jurisdiction");
        document.push(0);
        document.extend_from_slice(fleet.home_jurisdiction.as_deref().unwrap_or("").as_bytes());
        for (id, text) in &by_id {
            document.push(0);
            document.extend_from_slice(id.as_bytes());
            document.push(0);
            document.extend_from_slice(text.as_bytes());
        }
        let hash = hex::encode(Sha256::digest(&document));
        let zone_class = zone_classes(&zone_vals, projection.zone_attrs_read().as_ref());
        let proj_zone_uids = (0..zone_uids.len())
            .map(|z| uid("Zone", &format!("zone-{z}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            schema,
            set,
            meta,
            zone_uids,
            zone_entities,
            zone_vals,
            proj_zone_uid: uid("Zone", "zone")?,
            proj_zone_uids,
            zone_class,
            action: uid("Action", "place")?,
            projection,
            authorizer: Authorizer::new(),
            job_uid: uid("Job", "job")?,
            hash,
            document,
            schema_src,
            texts,
        })
    }

    /// SHA-256 (hex) of the schema and every policy in force.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The policy document whose SHA-256 is [`hash`](Self::hash): the schema, then
    /// `NUL classification-scheme NUL` and the fleet's classification scheme as JSON, then
    /// `NUL home-jurisdiction NUL` and the fleet's home jurisdiction (empty when none), then every
    /// policy in id order, each as `NUL id NUL text`. Evidence bundles carry it so an auditor can read
    /// exactly the rules that decided.
    pub fn document(&self) -> &[u8] {
        &self.document
    }

    /// The Cedar schema text.
    pub fn schema(&self) -> &str {
        &self.schema_src
    }

    /// Policy texts by file (`<baseline>` for the built-in set), for evidence.
    pub fn texts(&self) -> &BTreeMap<String, String> {
        &self.texts
    }

    /// Number of policies in force.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// Whether no policy is in force (then everything is denied).
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// The facts a decision for `a` depends on, projected onto what the policy set observes.
    /// Equal facts give equal verdicts; use them as the reuse key.
    pub fn facts(&self, a: &PolicyAttrs, level_name: &str) -> JobFacts {
        self.projection.project(JobFacts::full(a, level_name))
    }

    /// How the policy set's attribute use projects job facts, for people.
    pub fn projection(&self) -> String {
        self.projection.describe()
    }

    fn job_entity(&self, facts: &JobFacts) -> Result<Entity, String> {
        vals_entity(self.job_uid.clone(), &JOB_ATTRS, &facts.0)
    }

    fn authorize(&self, zone: usize, resource: &EntityUid, entities: &Entities) -> ZoneVerdict {
        let deny = |msg: String| ZoneVerdict::denied(zone, msg);
        let request = match Request::new(
            self.job_uid.clone(),
            self.action.clone(),
            resource.clone(),
            Context::empty(),
            // The request is built from the schema's own entity types and action; the entities
            // were validated against the schema when they were built.
            None,
        ) {
            Ok(r) => r,
            Err(e) => return deny(e.to_string()),
        };
        let response = self.authorizer.is_authorized(&request, &self.set, entities);
        let mut v = ZoneVerdict {
            zone,
            allowed: false,
            permits: vec![],
            forbids: vec![],
            errors: vec![],
        };
        let mut ids: Vec<&PolicyId> = response.diagnostics().reason().collect();
        ids.sort_by_key(|id| id.to_string());
        for id in ids {
            let m = self.meta.get(id);
            let r = PolicyRef {
                id: id.to_string(),
                reason: m.map(|m| m.reason.clone()).unwrap_or_default(),
            };
            if m.is_some_and(|m| m.is_forbid) {
                v.forbids.push(r);
            } else {
                v.permits.push(r);
            }
        }
        v.errors = response
            .diagnostics()
            .errors()
            .map(ToString::to_string)
            .collect();
        // Fail closed: a policy that errors might have been a forbid.
        v.allowed = response.decision() == Decision::Allow && v.errors.is_empty();
        v
    }

    /// Evaluates a job's facts against every zone of the fleet.
    pub fn evaluate_all(&self, facts: &JobFacts) -> Vec<ZoneVerdict> {
        (0..self.zone_uids.len())
            .map(|z| self.evaluate_zone(&self.zone_facts(facts, z), z))
            .collect()
    }

    /// Number of zones.
    pub fn zones(&self) -> usize {
        self.zone_uids.len()
    }

    /// The zone whose verdicts zone `zone` shares for every job: the first zone equal to it in
    /// every attribute the policies read (itself when there is none).
    pub fn zone_class(&self, zone: usize) -> usize {
        self.zone_class.get(zone).copied().unwrap_or(zone)
    }

    /// Facts projected for one zone: equal zone facts give equal verdicts in that zone.
    pub fn zone_facts(&self, facts: &JobFacts, zone: usize) -> JobFacts {
        let vals = self.zone_vals.get(zone);
        self.projection.for_zone(facts, |name| {
            let i = ZONE_ATTRS.iter().position(|a| *a == name)?;
            match vals?.get(i)? {
                Val::Str(s) => Some(s.as_str()),
                _ => None,
            }
        })
    }

    /// The zone's attributes projected for (zone-projected) job facts: zones with equal keys
    /// give equal verdicts for those facts.
    pub fn zone_key(&self, zone_facts: &JobFacts, zone: usize) -> Vec<Val> {
        self.zone_vals
            .get(zone)
            .map_or_else(Vec::new, |v| self.projection.project_zone(v, zone_facts))
    }

    /// Evaluates (zone-projected) facts in one zone.
    pub fn evaluate_zone(&self, zone_facts: &JobFacts, zone: usize) -> ZoneVerdict {
        let key = self.zone_key(zone_facts, zone);
        self.evaluate_keyed(&key, zone_facts, zone)
    }

    /// Evaluates (zone-projected) facts against a projected zone (from [`zone_key`](Self::zone_key));
    /// the verdict is reported for zone index `zone`.
    pub fn evaluate_keyed(&self, key: &[Val], zone_facts: &JobFacts, zone: usize) -> ZoneVerdict {
        let deny = |e: String| ZoneVerdict::denied(zone, e);
        let job = match self.job_entity(zone_facts) {
            Ok(j) => j,
            Err(e) => return deny(e),
        };
        let (resource, entities) = if self.projection.projects_zones() {
            match vals_entity(self.proj_zone_uid.clone(), &ZONE_ATTRS, key) {
                Ok(z) => (
                    self.proj_zone_uid.clone(),
                    Entities::from_entities([job, z], None).map_err(|e| e.to_string()),
                ),
                Err(e) => return deny(e),
            }
        } else {
            // Zones are not projected: Cedar sees every zone as it is, as in plain evaluation.
            match self.zone_uids.get(zone) {
                Some(u) => (u.clone(), self.world(job, zone, None)),
                None => return deny(format!("no zone with index {zone}")),
            }
        };
        match entities {
            // Both entities are built by this engine from schema-typed values.
            Ok(e) => self.authorize(zone, &resource, &e),
            Err(e) => deny(e),
        }
    }

    /// Evaluates (zone-projected) facts against several zones at once, each with its projected
    /// key (from [`zone_key`](Self::zone_key)): one job entity and one entity store for all of
    /// them, so a batch of new facts costs what placing a job without reuse costs, not one store
    /// per zone. Same verdicts as [`evaluate_keyed`](Self::evaluate_keyed) zone by zone.
    pub fn evaluate_group(
        &self,
        zone_facts: &JobFacts,
        zones: &[(usize, &[Val])],
    ) -> Vec<ZoneVerdict> {
        let deny_all = |e: String| {
            zones
                .iter()
                .map(|&(zone, _)| ZoneVerdict::denied(zone, e.clone()))
                .collect()
        };
        let job = match self.job_entity(zone_facts) {
            Ok(j) => j,
            Err(e) => return deny_all(e),
        };
        let (resources, store): (Vec<Option<EntityUid>>, Vec<Entity>) =
            if self.projection.projects_zones() {
                let mut resources = Vec::with_capacity(zones.len());
                let mut store = Vec::with_capacity(zones.len());
                for &(zone, key) in zones {
                    let Some(u) = self.proj_zone_uids.get(zone) else {
                        resources.push(None);
                        continue;
                    };
                    match vals_entity(u.clone(), &ZONE_ATTRS, key) {
                        Ok(z) => {
                            resources.push(Some(u.clone()));
                            store.push(z);
                        }
                        Err(e) => return deny_all(e),
                    }
                }
                (resources, store)
            } else {
                // Zones are not projected: Cedar sees every zone as it is, as in plain evaluation.
                let resources = zones
                    .iter()
                    .map(|&(z, _)| self.zone_uids.get(z).cloned())
                    .collect();
                let store = if self.projection.names_entities() {
                    self.zone_entities.clone()
                } else {
                    zones
                        .iter()
                        .filter_map(|&(z, _)| self.zone_entities.get(z).cloned())
                        .collect()
                };
                (resources, store)
            };
        let entities = match Entities::from_entities(std::iter::once(job).chain(store), None) {
            Ok(e) => e,
            Err(e) => return deny_all(e.to_string()),
        };
        zones
            .iter()
            .zip(resources)
            .map(|(&(zone, _), r)| match r {
                // Built by this engine from schema-typed values.
                Some(r) => self.authorize(zone, &r, &entities),
                None => ZoneVerdict::denied(zone, format!("no zone with index {zone}")),
            })
            .collect()
    }

    /// The entity store of plain evaluation: the job and every zone of the fleet as they are
    /// (validated against the schema when `schema` is given). Only an entity literal in a
    /// policy can reach a zone other than the request's, so without one the store holds just
    /// that zone, which gives the same answers.
    fn world(&self, job: Entity, zone: usize, schema: Option<&Schema>) -> Result<Entities, String> {
        let zones: Vec<Entity> = if self.projection.names_entities() {
            self.zone_entities.clone()
        } else {
            self.zone_entities.get(zone).cloned().into_iter().collect()
        };
        Entities::from_entities(std::iter::once(job).chain(zones), schema)
            .map_err(|e| e.to_string())
    }

    /// Plain Cedar evaluation of one (job, zone) pair: the job's full attributes, every zone as
    /// it is, no projection and no cache. It is the reference the reused verdicts are checked
    /// against, and what an admission-time re-check must use.
    pub fn evaluate_plain(&self, a: &PolicyAttrs, level_name: &str, zone: usize) -> ZoneVerdict {
        let entities = self
            .job_entity(&JobFacts::full(a, level_name))
            .and_then(|job| self.world(job, zone, Some(&self.schema)));
        match (entities, self.zone_uids.get(zone)) {
            (Ok(e), Some(u)) => self.authorize(zone, u, &e),
            (Err(e), _) => ZoneVerdict::denied(zone, e),
            (_, None) => ZoneVerdict::denied(zone, format!("no zone with index {zone}")),
        }
    }

    /// The way a competent Cedar user places a job, for comparison: one entity set per job (the
    /// job with its full attributes and every zone, built from schema-typed values like the
    /// reused path's, so neither side re-validates), and every zone authorised against it. No
    /// projection and nothing kept between jobs.
    pub fn evaluate_job_fair(&self, a: &PolicyAttrs, level_name: &str) -> Vec<ZoneVerdict> {
        let entities = self
            .job_entity(&JobFacts::full(a, level_name))
            .and_then(|job| {
                Entities::from_entities(
                    std::iter::once(job).chain(self.zone_entities.iter().cloned()),
                    None,
                )
                .map_err(|e| e.to_string())
            });
        self.zone_uids
            .iter()
            .enumerate()
            .map(|(zone, u)| match &entities {
                Ok(e) => self.authorize(zone, u, e),
                Err(e) => ZoneVerdict::denied(zone, e.clone()),
            })
            .collect()
    }

    /// The naive way, for comparison: one authorization for one (job, zone) pair, building the
    /// entity store from scratch and reusing nothing (the same as
    /// [`evaluate_plain`](Self::evaluate_plain)).
    pub fn evaluate_one_naive(
        &self,
        a: &PolicyAttrs,
        level_name: &str,
        zone: usize,
    ) -> ZoneVerdict {
        self.evaluate_plain(a, level_name, zone)
    }
}

/// Per zone, the first zone with the same values of the attributes in `read` (every attribute,
/// so only the zone itself, when `read` is `None`).
fn zone_classes(zone_vals: &[Vec<Val>], read: Option<&BTreeSet<String>>) -> Vec<usize> {
    let Some(read) = read else {
        return (0..zone_vals.len()).collect();
    };
    let mut first: HashMap<Vec<&Val>, usize> = HashMap::new();
    zone_vals
        .iter()
        .enumerate()
        .map(|(z, vals)| {
            let sig: Vec<&Val> = vals
                .iter()
                .zip(ZONE_ATTRS)
                .filter(|(_, name)| read.contains(*name))
                .map(|(v, _)| v)
                .collect();
            *first.entry(sig).or_insert(z)
        })
        .collect()
}

/// An entity with the given attribute names and values.
fn vals_entity(u: EntityUid, names: &[&str], vals: &[Val]) -> Result<Entity, String> {
    let mut attrs = HashMap::with_capacity(names.len());
    for (name, v) in names.iter().zip(vals) {
        let e = match v {
            Val::Str(s) => RestrictedExpression::new_string(s.clone()),
            Val::Long(n) => RestrictedExpression::new_long(*n),
            Val::Bool(b) => RestrictedExpression::new_bool(*b),
            Val::Set(xs) => set_of(xs),
        };
        attrs.insert((*name).to_string(), e);
    }
    Entity::new(u, attrs, HashSet::new()).map_err(|e| e.to_string())
}

/// A zone's attribute values in [`ZONE_ATTRS`] order.
fn zone_vals(z: &Zone, fleet: &Fleet) -> Vec<Val> {
    vec![
        Val::Str(z.name.clone()),
        Val::Str(z.tier.as_str().to_string()),
        Val::Str(z.tier.scope().to_string()),
        Val::Bool(z.tier.is_private()),
        Val::Str(z.provider.clone()),
        Val::Str(z.region.clone()),
        Val::Str(z.jurisdiction.clone()),
        Val::Set(z.certifications.iter().cloned().collect()),
        Val::Long(i64::from(z.max_classification)),
        Val::Str(fleet.scheme.level_name(z.max_classification).to_string()),
    ]
}

fn zone_entity(u: EntityUid, z: &Zone, fleet: &Fleet) -> Result<Entity, PolicyErrors> {
    vals_entity(u, &ZONE_ATTRS, &zone_vals(z, fleet)).map_err(internal)
}

/// A parsed policy: its id, the policy renamed to it, and its 1-based line.
type Parsed = (String, Policy, usize);

/// Parses one Cedar file into (id, policy, line) triples; ids come from `@id` or `FILE#N`.
fn parse_file(path: &Path, text: &str) -> Result<Vec<Parsed>, PolicyErrors> {
    let parsed = PolicySet::from_str(text).map_err(|e| {
        let (line, column) = first_offset(&e).map_or((0, 0), |o| line_col(text, o));
        let message = e.to_string();
        PolicyErrors(vec![PolicyError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }])
    })?;
    let stem = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut out = Vec::new();
    let mut policies: Vec<&Policy> = parsed.policies().collect();
    // Keep file order: Cedar names unannotated policies policy0, policy1, ... in order.
    policies.sort_by_key(|p| {
        p.id()
            .to_string()
            .trim_start_matches("policy")
            .parse::<usize>()
            .unwrap_or(usize::MAX)
    });
    let starts = effect_offsets(text);
    for (n, p) in policies.into_iter().enumerate() {
        let id = p
            .annotation("id")
            .map_or_else(|| format!("{stem}#{n}"), str::to_string);
        let line = starts.get(n).map_or(0, |o| line_col(text, *o).0);
        out.push((id.clone(), p.new_id(PolicyId::new(id)), line));
    }
    Ok(out)
}

/// Byte offsets of each policy's effect keyword (`permit` / `forbid` followed by `(`), in order,
/// skipping comments and string literals. Cedar's API does not expose policy locations, and
/// errors must name the line.
fn effect_offsets(text: &str) -> Vec<usize> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &text[start..i];
                if word == "permit" || word == "forbid" {
                    let rest = text[i..].trim_start();
                    if rest.starts_with('(') {
                        out.push(start);
                    }
                }
            }
            _ => i += 1,
        }
    }
    out
}
