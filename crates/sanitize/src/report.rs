//! The report of one run: per table and column what was done, k-anonymity, residual identifiers,
//! and the classification decision with its reasons. It holds counts, names and line numbers,
//! never data values.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::scan::Kind;

/// What happened to one column.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnReport {
    /// The column name.
    pub name: String,
    /// The action applied (`drop` for an unknown column dropped under `on_unknown: drop`).
    pub action: String,
    /// Whether the profile named the column.
    pub covered: bool,
    /// Identifiers redacted by `scan_text`.
    #[serde(skip_serializing_if = "is_zero")]
    pub redactions: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// k-anonymity of one table over its declared quasi-identifiers.
#[derive(Debug, Clone, Serialize)]
pub struct KReport {
    /// The configured k.
    pub k: u32,
    /// The quasi-identifier columns (judged after their transforms).
    pub quasi_identifiers: Vec<String>,
    /// Equivalence classes before suppression.
    pub classes: u64,
    /// The smallest class before suppression.
    pub smallest_class_before: u64,
    /// Rows in classes smaller than k.
    pub rows_below_k: u64,
    /// Rows suppressed to reach k (0 when suppression would exceed the allowed share).
    pub rows_suppressed: u64,
    /// The smallest class in the output (0 when the output is empty).
    pub smallest_class: u64,
    /// Whether every class in the output has at least k rows.
    pub reached: bool,
}

/// A column written as it came in (`keep` or `code`) whose content identifies people or rows.
#[derive(Debug, Clone, Serialize)]
pub struct IdentifyingColumn {
    /// The column.
    pub column: String,
    /// Its action in the profile.
    pub action: String,
    /// Why it counts as identifying (a rule, never a value).
    pub why: String,
}

/// Identifiers the residual scan found in one output column.
#[derive(Debug, Clone, Serialize)]
pub struct ResidualHit {
    /// The output column.
    pub column: String,
    /// What was found.
    pub kind: Kind,
    /// How many.
    pub count: u64,
    /// Where it was first found (at most 5): input lines for CSV, 0-based row indexes for Parquet
    /// (for `original_value`, lines and rows of the output table).
    pub lines: Vec<u64>,
}

/// One table.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    /// The table name (the file name without `.csv` or `.parquet`).
    pub table: String,
    /// The file name, kept in the output.
    pub file: String,
    /// Data rows read.
    pub rows_in: u64,
    /// Data rows written.
    pub rows_out: u64,
    /// Rows left out by subject sampling.
    pub rows_sampled_out: u64,
    /// Rows suppressed for k-anonymity in this table.
    pub rows_suppressed_k: u64,
    /// Rows left out because their subject was suppressed in another table.
    pub rows_suppressed_subject: u64,
    /// Every input column, in input order.
    pub columns: Vec<ColumnReport>,
    /// Columns of the profile that the file does not have.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub absent_columns: Vec<String>,
    /// k-anonymity, where the table declares quasi-identifiers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k_anonymity: Option<KReport>,
    /// What the residual scan found.
    pub residual: Vec<ResidualHit>,
    /// Whether the output is the input again: every column kept or coded, every row written.
    pub identical_to_input: bool,
    /// Kept or coded columns whose content identifies (by the built-in profile or distinctness).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identifying: Vec<IdentifyingColumn>,
    /// Input bytes.
    pub bytes_in: u64,
    /// Output bytes.
    pub bytes_out: u64,
}

/// The report of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The profile name.
    pub profile: String,
    /// Where the profile came from.
    pub profile_source: String,
    /// The key identifier (an HMAC of a fixed label, not the key).
    pub key_id: String,
    /// Whether the key was random and unstored.
    pub key_ephemeral: bool,
    /// `sha256:` digest of the profile's bytes.
    pub profile_digest: String,
    /// Who vouches for the profile: `built-in`, `approved` (signed by an approver key) or
    /// `unapproved`.
    pub profile_authority: String,
    /// The approver key whose signature over the profile's digest was verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// The input classification the profile is written for.
    pub declared_input_classification: String,
    /// The source's classification, when known (registry or operator).
    pub source_classification: Option<String>,
    /// Classification of the input: the source's when known, else the profile's declared one.
    pub input_classification: String,
    /// Classification of the output: the lower one only when earned.
    pub output_classification: String,
    /// The classification the profile can earn.
    pub target_classification: String,
    /// Whether the lower classification was earned.
    pub earned: bool,
    /// The tags the profile lifts once earned (every other tag carries over).
    pub lifts: Vec<String>,
    /// Why it was not earned (empty when earned).
    pub reasons: Vec<String>,
    /// Tables, in processing order.
    pub tables: Vec<TableReport>,
    /// Input files the profile does not name, left out under `on_unknown: drop`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown_tables: Vec<String>,
    /// Residual identifiers found in the whole output, by kind.
    pub residual_total: BTreeMap<Kind, u64>,
    /// Data rows read in all tables.
    pub rows_in: u64,
    /// Data rows written in all tables.
    pub rows_out: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written (tables only).
    pub bytes_out: u64,
    /// Wall time of the run, in seconds.
    pub elapsed_s: f64,
}

impl Report {
    /// Decides the classification from the checks: a profile that is built in or approved and
    /// written for the source's classification (`trust` holds what failed there), every column
    /// and table covered, no output equal to its input and no identifying column written as it
    /// came in, k reached wherever declared, and nothing found by the residual scan (shapes and
    /// original values of identifier columns).
    pub(crate) fn decide(&mut self, trust: Vec<String>, ids_overflow: bool) {
        let mut reasons = trust;
        if ids_overflow {
            reasons.push(
                "too many identifier values to check every one against the output".to_string(),
            );
        }
        if !self.unknown_tables.is_empty() {
            reasons.push(format!(
                "tables not covered by the profile were left out: {}",
                self.unknown_tables.join(", ")
            ));
        }
        for t in &self.tables {
            let unknown: Vec<&str> = t
                .columns
                .iter()
                .filter(|c| !c.covered)
                .map(|c| c.name.as_str())
                .collect();
            if !unknown.is_empty() {
                reasons.push(format!(
                    "{}: columns not covered by the profile: {}",
                    t.table,
                    unknown.join(", ")
                ));
            }
            if t.identical_to_input {
                reasons.push(format!("{}: the output is the input again (every column kept or coded, every row written)", t.table));
            }
            for c in &t.identifying {
                reasons.push(format!(
                    "{}: column {} is written as it came in ({}) but identifies: {}",
                    t.table, c.column, c.action, c.why
                ));
            }
            if let Some(k) = &t.k_anonymity {
                if !k.reached {
                    reasons.push(format!(
                        "{}: k={} not reached over [{}]: smallest class {}, {} of {} rows in classes below k exceed the allowed suppression",
                        t.table,
                        k.k,
                        k.quasi_identifiers.join(", "),
                        k.smallest_class_before,
                        k.rows_below_k,
                        t.rows_in
                    ));
                }
            }
        }
        let residual: u64 = self.residual_total.values().sum();
        if residual > 0 {
            let kinds: Vec<String> = self
                .residual_total
                .iter()
                .map(|(k, n)| format!("{n} {k:?}"))
                .collect();
            reasons.push(format!(
                "the residual scan found {residual} identifiers in the output ({})",
                kinds.join(", ")
            ));
        }
        self.earned = reasons.is_empty();
        // A profile written for another classification never earns, and the output keeps the
        // source's classification (`input_classification`).
        self.output_classification = if self.earned {
            self.target_classification.clone()
        } else {
            self.input_classification.clone()
        };
        self.reasons = reasons;
    }
}
