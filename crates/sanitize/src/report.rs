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

/// Identifiers the residual scan found in one output column.
#[derive(Debug, Clone, Serialize)]
pub struct ResidualHit {
    /// The output column.
    pub column: String,
    /// What was found.
    pub kind: Kind,
    /// How many.
    pub count: u64,
    /// Where it was first found (at most 5): input lines for CSV, 0-based row indexes for Parquet.
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
    /// Classification of the input.
    pub input_classification: String,
    /// Classification of the output: the lower one only when earned.
    pub output_classification: String,
    /// The classification the profile can earn.
    pub target_classification: String,
    /// Whether the lower classification was earned.
    pub earned: bool,
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
    /// Decides the classification from the checks: every column and table covered, k reached
    /// wherever declared, and nothing found by the residual scan.
    pub(crate) fn decide(&mut self) {
        let mut reasons = Vec::new();
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
        self.output_classification = if self.earned {
            self.target_classification.clone()
        } else {
            self.input_classification.clone()
        };
        self.reasons = reasons;
    }
}
