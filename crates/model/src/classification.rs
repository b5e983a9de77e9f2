//! Data classification as data: ordered levels, legal tags, residency and retention class, and the
//! rule that combines them (the strictest of everything a job touches).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// One classification level. Levels are ordered: later in the scheme means more sensitive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelDef {
    /// The level's name, e.g. `restricted`.
    pub name: String,
    /// Work touching data at this level (or above) may only run in private zones.
    #[serde(default)]
    pub private_only: bool,
    /// What the level means, for people.
    #[serde(default)]
    pub description: String,
}

/// One legal tag (phi, pii, pci, export-controlled, ip, ...). `contractual:NAME` tags are always
/// accepted without being declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagDef {
    /// The tag, e.g. `phi`.
    pub name: String,
    /// Work touching data with this tag may only run in private zones.
    #[serde(default)]
    pub private_only: bool,
    /// Certifications a public zone must hold to receive data with this tag.
    #[serde(default)]
    pub requires_certifications: Vec<String>,
    /// Data with this tag never leaves the jurisdiction of the zone that holds it.
    #[serde(default)]
    pub stays_in_jurisdiction: bool,
    /// What the tag means, for people.
    #[serde(default)]
    pub description: String,
}

/// The classification scheme of a fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scheme {
    /// Levels, least sensitive first.
    pub levels: Vec<LevelDef>,
    /// Declared legal tags.
    pub tags: Vec<TagDef>,
    /// Retention classes, shortest-lived first; combining keeps the longest-lived (strictest
    /// obligation to keep records), since deleting early is the irreversible mistake.
    pub retention_classes: Vec<String>,
}

/// The built-in levels, least sensitive first: (name, private_only, description). Their order and
/// their `private_only` are a floor no fleet can lower (see [`Scheme::floor_problems`]).
const BUILTIN_LEVELS: [(&str, bool, &str); 4] = [
    ("public", false, "may be published"),
    ("internal", false, "staff only; no legal restriction"),
    (
        "confidential",
        false,
        "business or de-identified data; contractual controls",
    ),
    (
        "restricted",
        true,
        "raw regulated data (PHI, cardholder data); private zones only",
    ),
];

/// A built-in tag: (name, private_only, required certifications, stays_in_jurisdiction,
/// description).
type BuiltinTag = (
    &'static str,
    bool,
    &'static [&'static str],
    bool,
    &'static str,
);

/// The built-in legal tags. Their consequences are a floor no fleet can lower.
const BUILTIN_TAGS: [BuiltinTag; 6] = [
    (
        "phi",
        true,
        &["hipaa-baa"],
        false,
        "protected health information (HIPAA)",
    ),
    ("pii", false, &["iso27001"], false, "personal data (GDPR)"),
    (
        "pci",
        true,
        &["pci-dss"],
        false,
        "cardholder data (PCI DSS)",
    ),
    (
        "export-controlled",
        false,
        &[],
        true,
        "export-controlled technical data (EAR/ITAR)",
    ),
    (
        "ip",
        false,
        &["soc2"],
        false,
        "trade secrets and unreleased IP",
    ),
    (
        "deidentified",
        false,
        &[],
        false,
        "de-identified under a passing sanitizer report",
    ),
];

fn builtin_tag(name: &str) -> Option<&'static BuiltinTag> {
    BUILTIN_TAGS.iter().find(|t| t.0 == name)
}

fn builtin_tag_def(t: &BuiltinTag) -> TagDef {
    TagDef {
        name: t.0.into(),
        private_only: t.1,
        requires_certifications: t.2.iter().map(|c| (*c).to_string()).collect(),
        stays_in_jurisdiction: t.3,
        description: t.4.into(),
    }
}

impl Default for Scheme {
    fn default() -> Self {
        Self {
            levels: BUILTIN_LEVELS
                .iter()
                .map(|(name, private_only, description)| LevelDef {
                    name: (*name).into(),
                    private_only: *private_only,
                    description: (*description).into(),
                })
                .collect(),
            tags: BUILTIN_TAGS.iter().map(builtin_tag_def).collect(),
            retention_classes: vec![
                "ephemeral".into(),
                "short".into(),
                "standard".into(),
                "regulated".into(),
                "legal-hold".into(),
            ],
        }
    }
}

/// What a [`FloorProblem`] is about, so a loader can point at the line that declared it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloorSubject {
    /// The list of levels as a whole (a built-in level is missing).
    Levels,
    /// One level, by name.
    Level(String),
    /// One tag, by name.
    Tag(String),
}

/// One way a scheme would weaken the built-in meaning of a level or tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloorProblem {
    /// What it is about.
    pub subject: FloorSubject,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl Scheme {
    /// Every way this scheme weakens the built-in levels and tags: a built-in level missing or
    /// out of its built-in order, `private_only` switched off on a built-in level or tag,
    /// `stays_in_jurisdiction` switched off, or a built-in tag's required certifications dropped,
    /// or a built-in tag missing. A fleet may add levels and tags and make built-in ones
    /// stricter; it may not make them looser. Empty means the floor holds.
    pub fn floor_problems(&self) -> Vec<FloorProblem> {
        let mut out = Vec::new();
        let mut prev: Option<(usize, &str)> = None;
        for (name, private_only, _) in BUILTIN_LEVELS {
            let Some(i) = self.levels.iter().position(|l| l.name == name) else {
                out.push(FloorProblem {
                    subject: FloorSubject::Levels,
                    message: format!(
                        "built-in level `{name}` is missing (a fleet may add levels, not remove built-in ones: {})",
                        BUILTIN_LEVELS.map(|l| l.0).join(" < ")
                    ),
                });
                continue;
            };
            if let Some((j, below)) = prev {
                if i < j {
                    out.push(FloorProblem {
                        subject: FloorSubject::Level(name.into()),
                        message: format!("built-in level `{name}` must stay above `{below}` (levels are listed least sensitive first)"),
                    });
                }
            }
            if prev.is_none_or(|(j, _)| i > j) {
                prev = Some((i, name));
            }
            if private_only && !self.levels.get(i).is_some_and(|l| l.private_only) {
                out.push(FloorProblem {
                    subject: FloorSubject::Level(name.into()),
                    message: format!("built-in level `{name}` is private_only; a fleet may not switch that off (write `private_only: true`)"),
                });
            }
        }
        // A look-alike of a built-in name (other case, other separators) would be a second,
        // weaker level or tag that data could be filed under instead.
        let squash = |s: &str| -> String {
            s.chars()
                .filter(|c| !matches!(c, '-' | '_' | '.') && !c.is_whitespace())
                .flat_map(char::to_lowercase)
                .collect()
        };
        for l in &self.levels {
            if let Some((b, _, _)) = BUILTIN_LEVELS
                .iter()
                .find(|b| b.0 != l.name && squash(b.0) == squash(&l.name))
            {
                out.push(FloorProblem {
                    subject: FloorSubject::Level(l.name.clone()),
                    message: format!(
                        "level `{}` looks like the built-in level `{b}`: use `{b}` exactly",
                        l.name
                    ),
                });
            }
        }
        for t in &self.tags {
            if let Some(b) = BUILTIN_TAGS
                .iter()
                .find(|b| b.0 != t.name && squash(b.0) == squash(&t.name))
            {
                out.push(FloorProblem {
                    subject: FloorSubject::Tag(t.name.clone()),
                    message: format!(
                        "tag `{}` looks like the built-in tag `{}`: use `{}` exactly",
                        t.name, b.0, b.0
                    ),
                });
            }
        }
        for b in &BUILTIN_TAGS {
            let (name, private_only, certs, stays, _) = *b;
            let Some(t) = self.tag(name) else {
                out.push(FloorProblem {
                    subject: FloorSubject::Tag(name.into()),
                    message: format!("built-in tag `{name}` is missing"),
                });
                continue;
            };
            if private_only && !t.private_only {
                out.push(FloorProblem {
                    subject: FloorSubject::Tag(name.into()),
                    message: format!("built-in tag `{name}` is private_only; a fleet may not switch that off (write `private_only: true`)"),
                });
            }
            if stays && !t.stays_in_jurisdiction {
                out.push(FloorProblem {
                    subject: FloorSubject::Tag(name.into()),
                    message: format!("built-in tag `{name}` stays in its jurisdiction; a fleet may not switch that off (write `stays_in_jurisdiction: true`)"),
                });
            }
            let missing: Vec<&str> = certs
                .iter()
                .copied()
                .filter(|c| !t.requires_certifications.iter().any(|x| x == c))
                .collect();
            if !missing.is_empty() {
                out.push(FloorProblem {
                    subject: FloorSubject::Tag(name.into()),
                    message: format!(
                        "built-in tag `{name}` requires certification {}; a fleet may add certifications, not drop them",
                        missing.join(", ")
                    ),
                });
            }
        }
        out
    }

    /// Why data of classification `c` may not be homed in zone `z`, or `None` if it may: the
    /// same floor placement keeps for work (private-only data only in private zones, never
    /// outside its residency, never above the zone's ceiling, and in a public zone only with
    /// every certification its tags require). Every registry of datasets applies this rule.
    pub fn home_zone_problem(&self, c: &Classification, z: &crate::Zone) -> Option<String> {
        let mut why = Vec::new();
        if c.level > z.max_classification {
            why.push(format!(
                "{} data is above the zone's ceiling ({})",
                self.level_name(c.level),
                self.level_name(z.max_classification)
            ));
        }
        if self.private_only(c) && !z.tier.is_private() {
            why.push(format!(
                "{} data is private-only and the zone is {}",
                c.describe(self),
                z.tier
            ));
        }
        if let Some(r) = &c.residency {
            if !r.contains(&z.jurisdiction) {
                let r: Vec<&str> = r.iter().map(String::as_str).collect();
                why.push(format!(
                    "the data's residency [{}] excludes the zone's jurisdiction {}",
                    r.join(", "),
                    z.jurisdiction
                ));
            }
        }
        if z.tier == crate::Tier::Public {
            let missing: Vec<String> = self
                .required_certifications(c)
                .difference(&z.certifications)
                .cloned()
                .collect();
            if !missing.is_empty() {
                why.push(format!(
                    "the public zone lacks certification {} that the data's tags require",
                    missing.join(", ")
                ));
            }
        }
        (!why.is_empty())
            .then(|| format!("`{}` may not hold this data: {}", z.name, why.join("; ")))
    }

    /// The rank of a level name (0 = least sensitive).
    pub fn level_rank(&self, name: &str) -> Option<u8> {
        self.levels
            .iter()
            .position(|l| l.name == name)
            .and_then(|p| u8::try_from(p).ok())
    }

    /// The name of a level rank; `"?"` if out of range.
    pub fn level_name(&self, rank: u8) -> &str {
        self.levels
            .get(usize::from(rank))
            .map_or("?", |l| l.name.as_str())
    }

    /// All level names, in order.
    pub fn level_names(&self) -> Vec<&str> {
        self.levels.iter().map(|l| l.name.as_str()).collect()
    }

    /// Whether a tag is acceptable (declared, or `contractual:NAME`).
    pub fn knows_tag(&self, tag: &str) -> bool {
        tag.strip_prefix("contractual:")
            .is_some_and(|n| !n.is_empty())
            || self.tags.iter().any(|t| t.name == tag)
    }

    fn tag(&self, tag: &str) -> Option<&TagDef> {
        self.tags.iter().find(|t| t.name == tag)
    }

    /// Whether data of this classification may only be processed in private zones.
    /// A built-in private-only level or tag counts whatever the scheme says of it.
    pub fn private_only(&self, c: &Classification) -> bool {
        let builtin_level = BUILTIN_LEVELS
            .iter()
            .filter(|l| l.1)
            .any(|l| self.level_rank(l.0).is_some_and(|r| r <= c.level));
        builtin_level
            || self
                .levels
                .iter()
                .take(usize::from(c.level) + 1)
                .any(|l| l.private_only)
            || c.tags.iter().any(|t| {
                self.tag(t).is_some_and(|d| d.private_only) || builtin_tag(t).is_some_and(|b| b.1)
            })
    }

    /// Certifications a public zone needs to receive data of this classification.
    /// A built-in tag's certifications count whatever the scheme says of it.
    pub fn required_certifications(&self, c: &Classification) -> BTreeSet<String> {
        let declared = c
            .tags
            .iter()
            .filter_map(|t| self.tag(t))
            .flat_map(|d| d.requires_certifications.iter().cloned());
        let builtin = c
            .tags
            .iter()
            .filter_map(|t| builtin_tag(t))
            .flat_map(|b| b.2.iter().map(|c| (*c).to_string()));
        declared.chain(builtin).collect()
    }

    /// Whether data of this classification must stay in the jurisdiction that holds it.
    /// A built-in tag that stays in its jurisdiction counts whatever the scheme says of it.
    pub fn stays_in_jurisdiction(&self, c: &Classification) -> bool {
        c.tags.iter().any(|t| {
            self.tag(t).is_some_and(|d| d.stays_in_jurisdiction)
                || builtin_tag(t).is_some_and(|b| b.3)
        })
    }

    /// Rank of a retention class (higher = must be kept longer).
    pub fn retention_rank(&self, class: &str) -> Option<usize> {
        self.retention_classes.iter().position(|c| c == class)
    }
}

/// The classification of a dataset, an artifact or (effectively) a job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Classification {
    /// Level rank within the scheme.
    pub level: u8,
    /// Legal tags.
    pub tags: BTreeSet<String>,
    /// Jurisdictions the data may be processed in; `None` means no residency restriction.
    pub residency: Option<BTreeSet<String>>,
    /// Retention class, if any.
    pub retention: Option<String>,
}

impl Classification {
    /// The strictest combination of two classifications: the higher level, every tag, the
    /// intersection of residencies, the longest-lived retention class.
    #[must_use]
    pub fn join(&self, other: &Self, scheme: &Scheme) -> Self {
        let residency = match (&self.residency, &other.residency) {
            (None, None) => None,
            (Some(a), None) | (None, Some(a)) => Some(a.clone()),
            (Some(a), Some(b)) => Some(a.intersection(b).cloned().collect()),
        };
        let retention = match (&self.retention, &other.retention) {
            (None, None) => None,
            (Some(a), None) | (None, Some(a)) => Some(a.clone()),
            (Some(a), Some(b)) => {
                let ra = scheme.retention_rank(a);
                let rb = scheme.retention_rank(b);
                Some(if rb > ra { b.clone() } else { a.clone() })
            }
        };
        Self {
            level: self.level.max(other.level),
            tags: self.tags.union(&other.tags).cloned().collect(),
            residency,
            retention,
        }
    }

    /// `level/tag,tag` for people, e.g. `restricted/phi,pii`.
    pub fn describe(&self, scheme: &Scheme) -> String {
        let mut s = scheme.level_name(self.level).to_string();
        if !self.tags.is_empty() {
            s.push('/');
            s.push_str(&self.tags.iter().cloned().collect::<Vec<_>>().join(","));
        }
        s
    }
}

/// A classification as written in a file: names, not ranks.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClassificationSpec {
    #[serde(default)]
    pub level: Option<serde_saphyr::Spanned<String>>,
    #[serde(default)]
    pub tags: Vec<serde_saphyr::Spanned<String>>,
    #[serde(default)]
    pub residency: Option<Vec<String>>,
    #[serde(default)]
    pub retention: Option<serde_saphyr::Spanned<String>>,
}

/// The scheme as written in `fleet.yaml` (every part optional; defaults fill the rest).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SchemeSpec {
    #[serde(default)]
    pub levels: Option<serde_saphyr::Spanned<Vec<serde_saphyr::Spanned<LevelDef>>>>,
    #[serde(default)]
    pub tags: Option<Vec<serde_saphyr::Spanned<TagDef>>>,
    #[serde(default)]
    pub retention_classes: Option<Vec<String>>,
}

/// Lines in `fleet.yaml` that declared parts of the scheme (0 = not declared there).
#[derive(Debug, Clone, Default)]
pub(crate) struct SchemeLines {
    pub levels: u64,
    pub level: Vec<(String, u64)>,
    pub tag: Vec<(String, u64)>,
}

impl SchemeLines {
    /// The line a floor problem points at.
    pub(crate) fn of(&self, s: &FloorSubject) -> u64 {
        let find = |xs: &[(String, u64)], n: &str| {
            xs.iter()
                .find(|(x, _)| x == n)
                .map_or(self.levels, |(_, l)| *l)
        };
        match s {
            FloorSubject::Levels => self.levels,
            FloorSubject::Level(n) => find(&self.level, n),
            FloorSubject::Tag(n) => self.tag.iter().find(|(x, _)| x == n).map_or(0, |(_, l)| *l),
        }
    }
}

impl SchemeSpec {
    /// The scheme, with the lines that declared it. A fleet that lists tags keeps every
    /// built-in tag it leaves out, with its built-in meaning: built-in tags cannot be removed.
    pub(crate) fn into_scheme(self) -> (Scheme, SchemeLines) {
        let d = Scheme::default();
        let mut lines = SchemeLines::default();
        let levels = match self.levels {
            Some(ls) => {
                lines.levels = ls.referenced.line();
                ls.value
                    .into_iter()
                    .map(|l| {
                        lines
                            .level
                            .push((l.value.name.clone(), l.referenced.line()));
                        l.value
                    })
                    .collect()
            }
            None => d.levels,
        };
        let tags = match self.tags {
            Some(ts) => {
                let mut tags: Vec<TagDef> = ts
                    .into_iter()
                    .map(|t| {
                        lines.tag.push((t.value.name.clone(), t.referenced.line()));
                        t.value
                    })
                    .collect();
                for b in d.tags {
                    if !tags.iter().any(|t| t.name == b.name) {
                        tags.push(b);
                    }
                }
                tags
            }
            None => d.tags,
        };
        let scheme = Scheme {
            levels,
            tags,
            retention_classes: self.retention_classes.unwrap_or(d.retention_classes),
        };
        (scheme, lines)
    }
}

/// Jurisdiction codes are compared case-insensitively; stored upper-case.
pub(crate) fn norm_jurisdiction(j: &str) -> String {
    j.trim().to_ascii_uppercase()
}
