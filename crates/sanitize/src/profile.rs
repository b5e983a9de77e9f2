//! The sanitizer profile: per table, per column, one action; declared quasi-identifiers with k;
//! seeded sampling. Loaded from YAML with errors naming file and line, then validated.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::SanitizeError;

/// Tags no profile can lift: export control, contractual obligations and trade secrets follow
/// the data whatever was removed from it (residency and retention are not tags and always carry
/// over too).
pub fn never_liftable(tag: &str) -> bool {
    tag == "export-controlled" || tag == "ip" || tag.starts_with("contractual:")
}

/// `level/tag,tag` (the profile notation) as a level and a set of tags.
#[must_use]
pub fn parse_classification(text: &str) -> (String, std::collections::BTreeSet<String>) {
    let (level, tags) = text.split_once('/').unwrap_or((text, ""));
    (
        level.trim().to_owned(),
        tags.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

/// Whether two classifications in profile notation name the same level and the same tags.
#[must_use]
pub fn same_classification(a: &str, b: &str) -> bool {
    parse_classification(a) == parse_classification(b)
}

/// A profile's approval, verified by the caller against its keyring: an approver key signed the
/// profile whose digest is `profile_digest`. The sanitizer accepts it only for a profile with
/// exactly that digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// The approver key that signed the profile.
    pub keyid: String,
    /// `sha256:` digest of the signed profile's bytes.
    pub profile_digest: String,
}

/// Name of the built-in HIPAA Safe Harbor profile for the Synthea CSV schema.
pub const HIPAA_SAFE_HARBOR: &str = "hipaa-safe-harbor";
const HIPAA_SAFE_HARBOR_YAML: &str = include_str!("../profiles/hipaa-safe-harbor.yaml");

/// What happens to one column.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// The column is not written.
    Drop,
    /// Keyed pseudonym (HMAC-SHA256, truncated, hex, prefixed `p`); the same value gives the same
    /// pseudonym in every table, so foreign keys still join.
    Pseudonymize,
    /// A date or timestamp, generalised.
    GeneralizeDate(DateMode),
    /// A ZIP code cut to its first three digits; low-population prefixes become `000`.
    Zip3,
    /// A birth date reduced to its year, or an age in years; anything indicating an age over 89
    /// becomes one group (`<=YEAR` for dates, `90+` for ages).
    AgeCap,
    /// Free text: identifiers found by the scanners are replaced by `[KIND]`.
    ScanText,
    /// A number with seeded uniform relative noise of at most this fraction (e.g. `0.05`).
    Noise(f64),
    /// Kept as is; the residual scan checks every value.
    Keep,
    /// A terminology code (SNOMED, LOINC, RxNorm...): kept; the residual scan checks that each
    /// value is a code token (letters, digits, `.`, `-`, at most 32 bytes) instead of scanning it
    /// as text.
    Code,
}

impl Action {
    /// The action's name as written in profiles.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Drop => "drop",
            Self::Pseudonymize => "pseudonymize",
            Self::GeneralizeDate(DateMode::Year) => "generalize_date:year",
            Self::GeneralizeDate(DateMode::Shift) => "generalize_date:shift",
            Self::Zip3 => "zip3",
            Self::AgeCap => "age_cap",
            Self::ScanText => "scan_text",
            Self::Noise(_) => "noise",
            Self::Keep => "keep",
            Self::Code => "code",
        }
    }
}

/// How a date is generalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DateMode {
    /// Only the year is kept.
    Year,
    /// The date is shifted by a keyed, per-subject number of days (the table's `subject`), so
    /// intervals within one subject are preserved.
    Shift,
}

/// What to do with a column (or table) the profile does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnknown {
    /// Fail the run (nothing is published).
    #[default]
    Fail,
    /// Leave it out of the output; the lower classification is then not earned.
    Drop,
}

/// Declared quasi-identifiers and the k they must reach.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KAnonymity {
    /// Every combination of the (transformed) quasi-identifiers must occur at least k times.
    pub k: u32,
    /// Columns of the table, judged after their transforms.
    pub quasi_identifiers: Vec<String>,
    /// Rows of classes smaller than k are suppressed (with every row of their subject in the
    /// other tables) when they are at most this percentage of the table; otherwise nothing is
    /// suppressed and k is not reached.
    #[serde(default)]
    pub max_suppressed_percent: f64,
}

/// Seeded sampling of subjects: a subject is kept in every table or in none.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// Fraction of subjects kept, in (0, 1].
    pub fraction: f64,
    /// Seed of the choice.
    #[serde(default)]
    pub seed: u64,
}

/// One table of the profile.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TableProfile {
    /// The column naming the data subject (patient) of each row, for per-subject date shifts,
    /// sampling and suppression; absent for tables about no subject (providers, payers).
    #[serde(default)]
    pub subject: Option<String>,
    /// Quasi-identifiers and k, if declared for this table.
    #[serde(default)]
    pub k_anonymity: Option<KAnonymity>,
    /// Cells redacted when another column of the same row has one of the listed values (e.g. an
    /// observation whose code says its value is a street address).
    #[serde(default)]
    pub redact_when: Vec<RedactWhen>,
    /// Column name to action.
    pub columns: BTreeMap<String, Action>,
}

/// A row-level redaction rule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedactWhen {
    /// The column whose value decides.
    pub column: String,
    /// The values that trigger the redaction.
    pub equals: Vec<String>,
    /// The columns written as `[REDACTED]` in such rows.
    pub redact: Vec<String>,
}

/// A sanitizer profile.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The profile's name.
    pub name: String,
    /// Classification of the input (e.g. `restricted/phi`).
    pub input_classification: String,
    /// Classification the output earns when every check passes (e.g. `confidential/deidentified`).
    pub output_classification: String,
    /// Year against which ages are computed for `age_cap`.
    pub reference_year: i32,
    /// Seed of the numeric noise.
    #[serde(default)]
    pub seed: u64,
    /// Largest shift, in days, for `generalize_date: shift`.
    #[serde(default = "default_shift")]
    pub max_shift_days: u32,
    /// Largest accepted field, in bytes.
    #[serde(default = "default_max_field")]
    pub max_field_bytes: usize,
    /// What to do with columns or tables the profile does not name.
    #[serde(default)]
    pub on_unknown: OnUnknown,
    /// Seeded sampling of subjects, if any.
    #[serde(default)]
    pub sample: Option<Sample>,
    /// Tags of the input this profile removes the grounds for (e.g. `[phi, pii]`): only these
    /// are taken off the output's classification when the lower classification is earned; every
    /// other tag carries over. `export-controlled`, `ip` and `contractual:*` can never be lifted.
    #[serde(default)]
    pub lifts: Vec<String>,
    /// Table name (the CSV file name without `.csv`) to its columns.
    pub tables: BTreeMap<String, TableProfile>,
    /// Where the profile came from (a path or `<built-in NAME>`), for messages.
    #[serde(skip)]
    pub source: String,
    /// `sha256:` digest of the profile's bytes as loaded (what an approver signs).
    #[serde(skip)]
    digest: String,
    /// The profile's bytes as loaded.
    #[serde(skip)]
    text: String,
    /// Whether this is a built-in profile (compiled into tidegate, not read from a file).
    #[serde(skip)]
    builtin: bool,
    /// Whether `--k` lowered k below what the profile says (an approval covers the profile as
    /// signed, not a weaker one).
    #[serde(skip)]
    k_lowered: bool,
}

fn default_shift() -> u32 {
    365
}

fn default_max_field() -> usize {
    1 << 20
}

impl Profile {
    /// The built-in profile of that name, or the profile file at that path.
    pub fn load(name_or_path: &str) -> Result<Self, SanitizeError> {
        if name_or_path == HIPAA_SAFE_HARBOR {
            let mut p = Self::from_yaml(
                HIPAA_SAFE_HARBOR_YAML,
                &format!("<built-in {HIPAA_SAFE_HARBOR}>"),
            )?;
            p.builtin = true;
            return Ok(p);
        }
        let path = Path::new(name_or_path);
        let text = std::fs::read_to_string(path)
            .map_err(|e| SanitizeError::io(path, "cannot read profile", e))?;
        Self::from_yaml(&text, name_or_path)
    }

    /// `sha256:` digest of the profile's bytes as loaded: what an approver signs.
    #[must_use]
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The profile's bytes as loaded.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether this is a built-in profile (compiled into tidegate, not read from a file).
    #[must_use]
    pub fn is_builtin(&self) -> bool {
        self.builtin
    }

    /// Whether `--k` lowered k below what the profile says.
    #[must_use]
    pub fn k_lowered(&self) -> bool {
        self.k_lowered
    }

    /// The built-in `hipaa-safe-harbor` profile.
    pub fn hipaa_safe_harbor() -> Result<Self, SanitizeError> {
        Self::load(HIPAA_SAFE_HARBOR)
    }

    /// Parses and validates a profile; `source` names it in messages.
    pub fn from_yaml(text: &str, source: &str) -> Result<Self, SanitizeError> {
        let mut p: Self = serde_saphyr::from_str(text).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            let full = e.to_string();
            let message = full
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid YAML")
                .trim()
                .to_string();
            SanitizeError::ProfileSyntax {
                path: source.to_string(),
                line,
                column,
                message,
            }
        })?;
        p.source = source.to_string();
        p.digest = tidegate_vocab::Digest::of(text.as_bytes()).to_string();
        p.text = text.to_string();
        p.builtin = false;
        p.validate()?;
        Ok(p)
    }

    fn invalid(&self, field: String, message: impl Into<String>) -> SanitizeError {
        SanitizeError::ProfileInvalid {
            path: self.source.clone(),
            field,
            message: message.into(),
        }
    }

    fn validate(&self) -> Result<(), SanitizeError> {
        if let Some(s) = &self.sample {
            if !(s.fraction > 0.0 && s.fraction <= 1.0) {
                return Err(self.invalid("sample.fraction".into(), "must be in (0, 1]"));
            }
        }
        for (i, t) in self.lifts.iter().enumerate() {
            if never_liftable(t) {
                return Err(self.invalid(
                    format!("lifts[{i}]"),
                    format!("`{t}` can never be lifted: export control, contractual obligations and IP carry over to every derived dataset"),
                ));
            }
            if t.trim().is_empty() {
                return Err(self.invalid(format!("lifts[{i}]"), "empty tag"));
            }
        }
        if self.max_field_bytes == 0 {
            return Err(self.invalid("max_field_bytes".into(), "must be positive"));
        }
        for (tname, t) in &self.tables {
            if let Some(s) = &t.subject {
                if !t.columns.contains_key(s) {
                    return Err(self.invalid(
                        format!("tables.{tname}.subject"),
                        format!("`{s}` is not a column of the table"),
                    ));
                }
            }
            for (cname, a) in &t.columns {
                match a {
                    Action::GeneralizeDate(DateMode::Shift) if t.subject.is_none() => {
                        return Err(self.invalid(
                            format!("tables.{tname}.columns.{cname}"),
                            "generalize_date: shift needs the table's `subject` column",
                        ));
                    }
                    Action::Noise(f) if !(f.is_finite() && *f >= 0.0) => {
                        return Err(self.invalid(
                            format!("tables.{tname}.columns.{cname}"),
                            "noise must be a finite fraction >= 0",
                        ));
                    }
                    _ => {}
                }
            }
            for (i, r) in t.redact_when.iter().enumerate() {
                for c in std::iter::once(&r.column).chain(r.redact.iter()) {
                    if !t.columns.contains_key(c) {
                        return Err(self.invalid(
                            format!("tables.{tname}.redact_when[{i}]"),
                            format!("`{c}` is not a column of the table"),
                        ));
                    }
                }
            }
            if let Some(k) = &t.k_anonymity {
                if k.k == 0 {
                    return Err(self.invalid(
                        format!("tables.{tname}.k_anonymity.k"),
                        "must be at least 1",
                    ));
                }
                if !(0.0..=100.0).contains(&k.max_suppressed_percent) {
                    return Err(self.invalid(
                        format!("tables.{tname}.k_anonymity.max_suppressed_percent"),
                        "must be in [0, 100]",
                    ));
                }
                for q in &k.quasi_identifiers {
                    match t.columns.get(q) {
                        None => {
                            return Err(self.invalid(
                                format!("tables.{tname}.k_anonymity.quasi_identifiers"),
                                format!("`{q}` is not a column of the table"),
                            ));
                        }
                        Some(Action::Drop) => {
                            return Err(self.invalid(
                                format!("tables.{tname}.k_anonymity.quasi_identifiers"),
                                format!(
                                    "`{q}` is dropped; a dropped column is no quasi-identifier"
                                ),
                            ));
                        }
                        Some(_) => {}
                    }
                }
                if k.quasi_identifiers.is_empty() {
                    return Err(self.invalid(
                        format!("tables.{tname}.k_anonymity.quasi_identifiers"),
                        "list at least one column",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Sets k on every table that declares quasi-identifiers (the `--k` override).
    pub fn set_k(&mut self, k: u32) -> Result<(), SanitizeError> {
        if k == 0 {
            return Err(self.invalid("k".into(), "must be at least 1"));
        }
        for t in self.tables.values_mut() {
            if let Some(ka) = &mut t.k_anonymity {
                if k < ka.k {
                    self.k_lowered = true;
                }
                ka.k = k;
            }
        }
        Ok(())
    }
}
