//! Job facts: the values of the Cedar `Job` entity's attributes, and their projection onto what
//! the loaded policy set can actually observe. Two jobs with equal projected facts get identical
//! verdicts for every zone, so verdicts are reused per projected fact set.
//!
//! The projection is derived from the policies themselves (their JSON form): an attribute no
//! policy reads is erased; a string attribute that policies only compare with `==` / `!=` against
//! literals keeps its value if it is one of those literals and becomes a single "other" value
//! otherwise (every comparison gives the same result either way); anything else is kept as is.
//! The analysis is conservative: a policy that uses `principal` (or `resource`) other than
//! through attribute access, names an entity literal (`Job::"job".team`), or has any form the
//! walk does not know switches projection off, so nothing a policy might read is erased.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use tidegate_model::PolicyAttrs;

/// The `Job` attributes, in a fixed order.
pub const JOB_ATTRS: [&str; 14] = [
    "team",
    "kind",
    "level",
    "level_name",
    "tags",
    "residency_restricted",
    "residency",
    "private_only",
    "required_certifications",
    "stays_in_jurisdiction",
    "origin_jurisdictions",
    "scope",
    "burst_eligible",
    "artifacts_released",
];

/// The `Zone` attributes, in a fixed order.
pub const ZONE_ATTRS: [&str; 10] = [
    "name",
    "tier",
    "scope",
    "private",
    "provider",
    "region",
    "jurisdiction",
    "certifications",
    "ceiling",
    "ceiling_name",
];

/// One attribute value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Val {
    /// A string.
    Str(String),
    /// A long.
    Long(i64),
    /// A boolean.
    Bool(bool),
    /// A set of strings (sorted).
    Set(Vec<String>),
}

/// A job's attribute values in [`JOB_ATTRS`] order (possibly projected).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobFacts(pub Vec<Val>);

impl JobFacts {
    /// The full, unprojected facts of a job.
    pub fn full(a: &PolicyAttrs, level_name: &str) -> Self {
        let set = |s: &BTreeSet<String>| Val::Set(s.iter().cloned().collect());
        Self(vec![
            Val::Str(a.team.clone()),
            Val::Str(a.kind.as_str().to_string()),
            Val::Long(i64::from(a.level)),
            Val::Str(level_name.to_string()),
            set(&a.tags),
            Val::Bool(a.residency.is_some()),
            a.residency.as_ref().map_or(Val::Set(vec![]), set),
            Val::Bool(a.private_only),
            set(&a.required_certifications),
            Val::Bool(a.stays_in_jurisdiction),
            set(&a.origin_jurisdictions),
            Val::Str(a.scope.as_label().to_string()),
            Val::Bool(a.burst_eligible),
            Val::Bool(a.artifacts_released),
        ])
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Use {
    /// Only compared for (in)equality with these literals and these zone attributes.
    Eq {
        lits: BTreeSet<String>,
        zone_attrs: BTreeSet<String>,
    },
    Raw,
}

/// How a zone attribute is used by the policies.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ZoneUse {
    /// Only compared for (in)equality with these literals and these job attributes.
    Eq {
        lits: BTreeSet<String>,
        job_attrs: BTreeSet<String>,
    },
    Raw,
}

/// How each attribute is projected, derived from a policy set.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    uses: BTreeMap<String, Use>,
    disabled: bool,
    zone_uses: BTreeMap<String, ZoneUse>,
    zone_disabled: bool,
    entity_literals: bool,
}

impl Projection {
    /// Analyses policies given in Cedar's JSON form.
    pub fn from_policies<'a>(policies: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut p = Self::default();
        for json in policies {
            if json
                .get("principal")
                .and_then(|s| s.get("op"))
                .and_then(Value::as_str)
                != Some("All")
            {
                p.disabled = true;
            }
            if json
                .get("resource")
                .and_then(|s| s.get("op"))
                .and_then(Value::as_str)
                != Some("All")
            {
                p.zone_disabled = true;
            }
            for c in json
                .get("conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(body) = c.get("body") {
                    p.walk(body);
                }
            }
        }
        p
    }

    /// No projection: every attribute kept.
    pub fn identity() -> Self {
        Self {
            uses: BTreeMap::new(),
            disabled: true,
            zone_uses: BTreeMap::new(),
            zone_disabled: true,
            entity_literals: true,
        }
    }

    fn record(&mut self, attr: &str, u: Use) {
        let e = self
            .uses
            .entry(attr.to_string())
            .or_insert_with(|| Use::Eq {
                lits: BTreeSet::new(),
                zone_attrs: BTreeSet::new(),
            });
        match (e, u) {
            (Use::Raw, _) => {}
            (e, Use::Raw) => *e = Use::Raw,
            (
                Use::Eq { lits, zone_attrs },
                Use::Eq {
                    lits: l,
                    zone_attrs: z,
                },
            ) => {
                lits.extend(l);
                zone_attrs.extend(z);
            }
        }
    }

    fn record_zone(&mut self, attr: &str, u: ZoneUse) {
        let e = self
            .zone_uses
            .entry(attr.to_string())
            .or_insert_with(|| ZoneUse::Eq {
                lits: BTreeSet::new(),
                job_attrs: BTreeSet::new(),
            });
        match (e, u) {
            (ZoneUse::Raw, _) => {}
            (e, ZoneUse::Raw) => *e = ZoneUse::Raw,
            (
                ZoneUse::Eq { lits, job_attrs },
                ZoneUse::Eq {
                    lits: l,
                    job_attrs: j,
                },
            ) => {
                lits.extend(l);
                job_attrs.extend(j);
            }
        }
    }

    /// Records an (in)equality between two operands if it is one the projection understands
    /// (`principal.A` or `resource.B` against a string literal, or against each other).
    fn record_eq(&mut self, l: &Value, r: &Value) -> bool {
        // Only a one-key `{"Value": "text"}` is a string literal.
        let lit = |v: &Value| {
            let m = v.as_object()?;
            if m.len() != 1 {
                return None;
            }
            m.get("Value").and_then(Value::as_str).map(str::to_string)
        };
        let (lp, rp) = (
            Self::var_attr(l, "principal"),
            Self::var_attr(r, "principal"),
        );
        let (lr, rr) = (Self::var_attr(l, "resource"), Self::var_attr(r, "resource"));
        let one = |s: String| BTreeSet::from([s]);
        match (lp, rp, lr, rr) {
            (Some(a), None, None, Some(b)) | (None, Some(a), Some(b), None) => {
                self.record(
                    a,
                    Use::Eq {
                        lits: BTreeSet::new(),
                        zone_attrs: one(b.to_string()),
                    },
                );
                self.record_zone(
                    b,
                    ZoneUse::Eq {
                        lits: BTreeSet::new(),
                        job_attrs: one(a.to_string()),
                    },
                );
                true
            }
            (Some(a), None, None, None) | (None, Some(a), None, None) => {
                let Some(x) = lit(if lp.is_some() { r } else { l }) else {
                    return false;
                };
                self.record(
                    a,
                    Use::Eq {
                        lits: one(x),
                        zone_attrs: BTreeSet::new(),
                    },
                );
                true
            }
            (None, None, Some(b), None) | (None, None, None, Some(b)) => {
                let Some(x) = lit(if lr.is_some() { r } else { l }) else {
                    return false;
                };
                self.record_zone(
                    b,
                    ZoneUse::Eq {
                        lits: one(x),
                        job_attrs: BTreeSet::new(),
                    },
                );
                true
            }
            _ => false,
        }
    }

    /// `A` when `v` is exactly `{".": {"left": {"Var": var}, "attr": A}}`.
    fn var_attr<'v>(v: &'v Value, var: &str) -> Option<&'v str> {
        let m = v.as_object().filter(|m| m.len() == 1)?;
        let inner = m.get(".")?;
        let left = inner.get("left")?.as_object().filter(|l| l.len() == 1)?;
        (left.get("Var").and_then(Value::as_str) == Some(var)).then_some(())?;
        inner.get("attr").and_then(Value::as_str)
    }

    /// Switches both projections off: from here on every attribute of the job and of each zone
    /// is kept as it is, and Cedar is given every zone of the fleet.
    fn give_up(&mut self) {
        self.disabled = true;
        self.zone_disabled = true;
        self.entity_literals = true;
    }

    /// Walks one expression of Cedar's JSON form (EST). Only the forms listed here are
    /// understood; anything else (an entity literal, a slot, an unknown operator or shape)
    /// switches projection off, so a policy the analysis does not fully understand can never
    /// have an attribute it reads erased or merged.
    fn walk(&mut self, v: &Value) {
        let Some(m) = v.as_object() else {
            self.give_up();
            return;
        };
        let mut entries = m.iter();
        let (Some((op, body)), None) = (entries.next(), entries.next()) else {
            self.give_up();
            return;
        };
        let field = |k: &str| body.get(k);
        match op.as_str() {
            "Value" => {
                // Literals are harmless, except entity literals: `Job::"job".team` reads the job
                // without naming `principal`, and `Zone::"x"` names a zone the projection would
                // not hand Cedar.
                if contains_entity(body) {
                    self.give_up();
                }
            }
            "Var" => match body.as_str() {
                Some("principal") => self.disabled = true,
                Some("resource") => self.zone_disabled = true,
                Some("action" | "context") => {}
                _ => self.give_up(),
            },
            "." => {
                if let Some(attr) = Self::var_attr(v, "principal") {
                    self.record(attr, Use::Raw);
                } else if let Some(attr) = Self::var_attr(v, "resource") {
                    self.record_zone(attr, ZoneUse::Raw);
                } else {
                    self.walk_field(field("left"));
                }
            }
            "has" => match (field("left"), field("attr")) {
                (Some(left), Some(Value::String(attr))) => {
                    match left.get("Var").and_then(Value::as_str) {
                        Some("principal") => self.record(attr, Use::Raw),
                        Some("resource") => self.record_zone(attr, ZoneUse::Raw),
                        _ => self.walk(left),
                    }
                }
                (Some(left), Some(Value::Array(_))) => self.walk(left),
                _ => self.give_up(),
            },
            "==" | "!=" => match (field("left"), field("right")) {
                (Some(l), Some(r)) => {
                    if !self.record_eq(l, r) {
                        self.walk(l);
                        self.walk(r);
                    }
                }
                _ => self.give_up(),
            },
            "in" | "<" | "<=" | ">" | ">=" | "&&" | "||" | "+" | "-" | "*" | "contains"
            | "containsAll" | "containsAny" | "getTag" | "hasTag" => {
                self.walk_field(field("left"));
                self.walk_field(field("right"));
            }
            "!" | "neg" | "isEmpty" => self.walk_field(field("arg")),
            "like" => self.walk_field(field("left")),
            "is" => {
                self.walk_field(field("left"));
                if let Some(e) = field("in") {
                    self.walk(e);
                }
            }
            "if-then-else" => {
                self.walk_field(field("if"));
                self.walk_field(field("then"));
                self.walk_field(field("else"));
            }
            "Set" => match body.as_array() {
                Some(xs) => xs.iter().for_each(|x| self.walk(x)),
                None => self.give_up(),
            },
            "Record" => match body.as_object() {
                Some(m) => m.values().for_each(|x| self.walk(x)),
                None => self.give_up(),
            },
            // Anything else is an extension function or method call (`ip(..)`, `decimal(..)`,
            // `isInRange(..)`), whose arguments are a list of expressions.
            _ => match body.as_array() {
                Some(args) => args.iter().for_each(|x| self.walk(x)),
                None => self.give_up(),
            },
        }
    }

    /// Walks a required operand; a missing one is a shape the analysis does not know.
    fn walk_field(&mut self, v: Option<&Value>) {
        match v {
            Some(v) => self.walk(v),
            None => self.give_up(),
        }
    }

    /// The zone attributes the policies read, directly or compared with a job attribute: two
    /// zones equal in all of them get the same verdict for any job. `None` when zones are not
    /// projected (a policy names a zone, or uses `resource` as a whole): then every attribute,
    /// and the zone's identity, count.
    pub fn zone_attrs_read(&self) -> Option<BTreeSet<String>> {
        if self.zone_disabled || self.entity_literals {
            return None;
        }
        let mut read: BTreeSet<String> = self.zone_uses.keys().cloned().collect();
        if !self.disabled {
            for u in self.uses.values() {
                if let Use::Eq { zone_attrs, .. } = u {
                    read.extend(zone_attrs.iter().cloned());
                }
            }
        }
        Some(read)
    }

    /// Whether a policy names an entity literal (`Job::"job"`, `Zone::"x"`) in a condition, so
    /// Cedar may read any entity of the fleet, not just the request's.
    pub fn names_entities(&self) -> bool {
        self.entity_literals
    }

    /// Whether zone attributes are projected (no policy names a zone entity directly).
    pub fn projects_zones(&self) -> bool {
        !self.zone_disabled
    }

    /// Projects a zone's attributes (in [`ZONE_ATTRS`] order) for a job's zone-projected facts:
    /// an attribute no policy reads is erased; one only compared with literals and job
    /// attributes keeps its value if it equals one of them and becomes a value equal to none of
    /// them otherwise. Zones with equal projections give the same verdict for these facts.
    pub fn project_zone(&self, zone: &[Val], facts: &JobFacts) -> Vec<Val> {
        if self.zone_disabled {
            return zone.to_vec();
        }
        let job_str = |name: &str| -> Option<&str> {
            let i = JOB_ATTRS.iter().position(|a| *a == name)?;
            match facts.0.get(i)? {
                Val::Str(s) => Some(s.as_str()),
                _ => None,
            }
        };
        zone.iter()
            .zip(ZONE_ATTRS)
            .map(|(v, name)| match (self.zone_uses.get(name), v) {
                (Some(ZoneUse::Raw), v) => v.clone(),
                (None, v) => match v {
                    Val::Str(_) => Val::Str(String::new()),
                    Val::Long(_) => Val::Long(0),
                    Val::Bool(_) => Val::Bool(false),
                    Val::Set(_) => Val::Set(vec![]),
                },
                (Some(ZoneUse::Eq { lits, job_attrs }), Val::Str(s)) => {
                    let jvals: Vec<&str> = job_attrs.iter().filter_map(|a| job_str(a)).collect();
                    if lits.contains(s) || jvals.contains(&s.as_str()) {
                        v.clone()
                    } else {
                        Val::Str(other_than(
                            lits.iter().map(String::as_str).chain(jvals.iter().copied()),
                        ))
                    }
                }
                (Some(ZoneUse::Eq { .. }), v) => v.clone(),
            })
            .collect()
    }

    /// Projects facts onto what the policies can observe.
    pub fn project(&self, facts: JobFacts) -> JobFacts {
        if self.disabled {
            return facts;
        }
        JobFacts(
            facts
                .0
                .into_iter()
                .zip(JOB_ATTRS)
                .map(|(v, name)| match self.uses.get(name) {
                    Some(Use::Raw) => v,
                    None => match v {
                        Val::Str(_) => Val::Str(String::new()),
                        Val::Long(_) => Val::Long(0),
                        Val::Bool(_) => Val::Bool(false),
                        Val::Set(_) => Val::Set(vec![]),
                    },
                    Some(Use::Eq { lits, zone_attrs }) if zone_attrs.is_empty() => match v {
                        Val::Str(s) if lits.contains(&s) => Val::Str(s),
                        Val::Str(_) => Val::Str(other_than(lits.iter())),
                        v => v,
                    },
                    // Compared with zone attributes: projected per zone, see `for_zone`.
                    Some(Use::Eq { .. }) => v,
                })
                .collect(),
        )
    }

    /// Projects (already projected) facts further for one zone: an attribute compared only with
    /// literals and zone attributes keeps its value if it equals one of them for this zone, and
    /// becomes a value equal to none of them otherwise. `zone_attr` gives the zone's string
    /// attributes by name.
    pub fn for_zone<'z>(
        &self,
        facts: &JobFacts,
        zone_attr: impl Fn(&str) -> Option<&'z str>,
    ) -> JobFacts {
        if self.disabled {
            return facts.clone();
        }
        JobFacts(
            facts
                .0
                .iter()
                .zip(JOB_ATTRS)
                .map(|(v, name)| match (self.uses.get(name), v) {
                    (Some(Use::Eq { lits, zone_attrs }), Val::Str(s)) if !zone_attrs.is_empty() => {
                        let zvals: Vec<&str> =
                            zone_attrs.iter().filter_map(|a| zone_attr(a)).collect();
                        if lits.contains(s) || zvals.contains(&s.as_str()) {
                            v.clone()
                        } else {
                            Val::Str(other_than(
                                lits.iter().map(String::as_str).chain(zvals.iter().copied()),
                            ))
                        }
                    }
                    _ => v.clone(),
                })
                .collect(),
        )
    }

    /// Attributes kept whole, erased, or reduced to literals (for `tidegate policy` output).
    pub fn describe(&self) -> String {
        if self.disabled {
            return "projection off (a policy uses `principal` directly)".into();
        }
        JOB_ATTRS
            .iter()
            .map(|a| match self.uses.get(*a) {
                None => format!("{a}: unused"),
                Some(Use::Raw) => format!("{a}: kept"),
                Some(Use::Eq { lits, zone_attrs }) => format!(
                    "{a}: compared with {{{}}}, otherwise one value",
                    lits.iter()
                        .map(|l| format!("{l:?}"))
                        .chain(zone_attrs.iter().map(|z| format!("resource.{z}")))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Whether a JSON literal holds an entity reference anywhere (`__entity`, or the implicit
/// `{"type", "id"}` form).
fn contains_entity(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            m.contains_key("__entity")
                || (m.contains_key("type") && m.contains_key("id"))
                || m.values().any(contains_entity)
        }
        Value::Array(xs) => xs.iter().any(contains_entity),
        _ => false,
    }
}

/// A string that is none of `taken`.
fn other_than<S: AsRef<str>>(taken: impl Iterator<Item = S> + Clone) -> String {
    let mut s = String::from("<other>");
    while taken.clone().any(|t| t.as_ref() == s) {
        s.push('~');
    }
    s
}
