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

impl Default for Scheme {
    fn default() -> Self {
        let level = |name: &str, private_only: bool, description: &str| LevelDef {
            name: name.into(),
            private_only,
            description: description.into(),
        };
        let tag = |name: &str, private_only: bool, certs: &[&str], stays: bool, d: &str| TagDef {
            name: name.into(),
            private_only,
            requires_certifications: certs.iter().map(|c| (*c).to_string()).collect(),
            stays_in_jurisdiction: stays,
            description: d.into(),
        };
        Self {
            levels: vec![
                level("public", false, "may be published"),
                level("internal", false, "staff only; no legal restriction"),
                level(
                    "confidential",
                    false,
                    "business or de-identified data; contractual controls",
                ),
                level(
                    "restricted",
                    true,
                    "raw regulated data (PHI, cardholder data); private zones only",
                ),
            ],
            tags: vec![
                tag(
                    "phi",
                    true,
                    &["hipaa-baa"],
                    false,
                    "protected health information (HIPAA)",
                ),
                tag("pii", false, &["iso27001"], false, "personal data (GDPR)"),
                tag(
                    "pci",
                    true,
                    &["pci-dss"],
                    false,
                    "cardholder data (PCI DSS)",
                ),
                tag(
                    "export-controlled",
                    false,
                    &[],
                    true,
                    "export-controlled technical data (EAR/ITAR)",
                ),
                tag(
                    "ip",
                    false,
                    &["soc2"],
                    false,
                    "trade secrets and unreleased IP",
                ),
                tag(
                    "deidentified",
                    false,
                    &[],
                    false,
                    "de-identified under a passing sanitizer report",
                ),
            ],
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

impl Scheme {
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
    pub fn private_only(&self, c: &Classification) -> bool {
        self.levels
            .get(usize::from(c.level))
            .is_some_and(|l| l.private_only)
            || self
                .levels
                .iter()
                .take(usize::from(c.level))
                .any(|l| l.private_only)
            || c.tags
                .iter()
                .any(|t| self.tag(t).is_some_and(|d| d.private_only))
    }

    /// Certifications a public zone needs to receive data of this classification.
    pub fn required_certifications(&self, c: &Classification) -> BTreeSet<String> {
        c.tags
            .iter()
            .filter_map(|t| self.tag(t))
            .flat_map(|d| d.requires_certifications.iter().cloned())
            .collect()
    }

    /// Whether data of this classification must stay in the jurisdiction that holds it.
    pub fn stays_in_jurisdiction(&self, c: &Classification) -> bool {
        c.tags
            .iter()
            .any(|t| self.tag(t).is_some_and(|d| d.stays_in_jurisdiction))
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
    pub levels: Option<Vec<LevelDef>>,
    #[serde(default)]
    pub tags: Option<Vec<TagDef>>,
    #[serde(default)]
    pub retention_classes: Option<Vec<String>>,
}

impl SchemeSpec {
    pub(crate) fn into_scheme(self) -> Scheme {
        let d = Scheme::default();
        Scheme {
            levels: self.levels.unwrap_or(d.levels),
            tags: self.tags.unwrap_or(d.tags),
            retention_classes: self.retention_classes.unwrap_or(d.retention_classes),
        }
    }
}

/// Jurisdiction codes are compared case-insensitively; stored upper-case.
pub(crate) fn norm_jurisdiction(j: &str) -> String {
    j.trim().to_ascii_uppercase()
}
