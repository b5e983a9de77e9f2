//! Policy-gated transfers. [`plan`] is the pure decision: may this dataset version (or this
//! projection of its columns) move from its home zone into that zone? It checks, and reports
//! every failure at once: the destination exists; the home zone's egress allowlist has a route
//! to it; the hard placement constraints and the Cedar policy set allow work on this data there
//! (a transfer is judged as a burst-eligible job of the owning team reading exactly this
//! version, so data goes only where such work could run); the requested columns exist; and the
//! estimated egress cost fits the budget. [`execute`] carries an allowed plan out: the projected
//! tables are verified at the source, the copy is ledgered first (bytes and digests), then
//! stored encrypted in the destination zone's store.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use tidegate_artifacts::events::ArtifactEvent;
use tidegate_artifacts::lineage::{artifact_node, Entry, LineageLog};
use tidegate_artifacts::{ArtifactKind, ArtifactStore, Digest, PutOptions};
use tidegate_model::{Fleet, Input, JobProfile, JobSpec};
use tidegate_placement::zone_failures;
use tidegate_policy::PolicyEngine;

use crate::registry::{DatasetVersion, TableFile};
use crate::DataError;

/// A column, as `table.column` (or `column` when the version has one table).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ColumnRef {
    /// Table name.
    pub table: String,
    /// Column name.
    pub column: String,
}

impl ColumnRef {
    /// Parses `table.column`, or `column` for the only table of `ds`.
    ///
    /// # Errors
    /// [`DataError::Invalid`] for an empty name, or a bare column on a multi-table version.
    pub fn parse(s: &str, ds: &DatasetVersion) -> Result<Self, DataError> {
        let bad = |m: String| DataError::Invalid {
            field: "columns".into(),
            message: m,
        };
        match s.split_once('.') {
            Some((t, c)) if !t.is_empty() && !c.is_empty() => Ok(Self {
                table: t.to_owned(),
                column: c.to_owned(),
            }),
            None if !s.is_empty() => match ds.tables.as_slice() {
                [only] => Ok(Self {
                    table: only.table.clone(),
                    column: s.to_owned(),
                }),
                _ => Err(bad(format!(
                    "{s:?}: name the table as table.column ({} has {} tables)",
                    ds.id(),
                    ds.tables.len()
                ))),
            },
            _ => Err(bad(format!("{s:?} is not table.column"))),
        }
    }
}

/// What to move.
#[derive(Debug, Clone)]
pub struct TransferRequest {
    /// Destination zone.
    pub to_zone: String,
    /// Columns to ship; empty ships every table whole.
    pub columns: Vec<ColumnRef>,
    /// Largest acceptable egress cost, in the fleet's currency.
    pub max_cost: f64,
}

/// An allowed transfer.
#[derive(Debug, Clone, Serialize)]
pub struct TransferPlan {
    /// `name@version`.
    pub dataset: String,
    /// Home zone.
    pub from_zone: String,
    /// Destination zone.
    pub to_zone: String,
    /// Table → columns to ship (in the table's column order).
    pub projection: BTreeMap<String, Vec<String>>,
    /// Estimated bytes on the wire.
    pub estimated_bytes: u64,
    /// Estimated egress cost.
    pub estimated_cost: f64,
    /// `sanitized` for a version derived through a sanitizer report, else `raw`.
    pub form: String,
    /// Hash of the policy set that allowed it.
    pub policy_hash: String,
    /// The policies that permitted it.
    pub permitted_by: Vec<String>,
}

/// A refused transfer, with every reason.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("transfer of {dataset} to {to_zone} refused:\n  - {}", reasons.join("\n  - "))]
pub struct TransferRefusal {
    /// `name@version`.
    pub dataset: String,
    /// Destination zone.
    pub to_zone: String,
    /// Why, one line each.
    pub reasons: Vec<String>,
}

/// A job of `ds`'s owner reading exactly `ds`, burst-eligible: what a transfer is judged as.
fn probe_job(ds: &DatasetVersion) -> JobSpec {
    let input = Input::Dataset(tidegate_model::DatasetRef {
        name: ds.name.clone(),
        version: ds.version.clone(),
    });
    crate::holding::probe_job(
        format!("transfer-{}", ds.name),
        ds.owner.clone(),
        vec![input],
        None,
    )
}

fn projection(
    ds: &DatasetVersion,
    columns: &[ColumnRef],
    reasons: &mut Vec<String>,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if columns.is_empty() {
        for t in &ds.tables {
            out.insert(t.table.clone(), t.columns.clone());
        }
        return out;
    }
    for c in columns {
        match ds.table(&c.table) {
            None => reasons.push(format!(
                "no table {:?} in {} (tables: {})",
                c.table,
                ds.id(),
                ds.tables
                    .iter()
                    .map(|t| t.table.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Some(t) if !t.columns.contains(&c.column) => {
                reasons.push(format!(
                    "no column {:?} in table {} of {}",
                    c.column,
                    t.table,
                    ds.id()
                ));
            }
            Some(_) => {
                let cols = out.entry(c.table.clone()).or_default();
                if !cols.contains(&c.column) {
                    cols.push(c.column.clone());
                }
            }
        }
    }
    // Keep each table's own column order.
    for (table, cols) in &mut out {
        if let Some(t) = ds.table(table) {
            cols.sort_by_key(|c| t.columns.iter().position(|x| x == c));
        }
    }
    out
}

/// Decides whether `ds` (projected to `req.columns`) may move to `req.to_zone`. `fleet` must
/// know `ds` (see [`crate::Registry::merge_into`]); `policy` is the fleet's policy set.
///
/// # Errors
/// [`TransferRefusal`] with every reason found.
pub fn plan(
    fleet: &Fleet,
    policy: &PolicyEngine,
    ds: &DatasetVersion,
    req: &TransferRequest,
) -> Result<TransferPlan, TransferRefusal> {
    let mut reasons = Vec::new();
    let refuse = |reasons: Vec<String>| TransferRefusal {
        dataset: ds.id(),
        to_zone: req.to_zone.clone(),
        reasons,
    };
    let Some(to_idx) = fleet.zones.iter().position(|z| z.name == req.to_zone) else {
        let zones: Vec<&str> = fleet.zones.iter().map(|z| z.name.as_str()).collect();
        return Err(refuse(vec![format!(
            "unknown zone {:?} (zones: {})",
            req.to_zone,
            zones.join(", ")
        )]));
    };
    let to = &fleet.zones[to_idx];
    let Some(from) = fleet.zone(&ds.home_zone) else {
        return Err(refuse(vec![format!(
            "home zone {:?} of {} is not in the fleet",
            ds.home_zone,
            ds.id()
        )]));
    };
    if from.name == to.name {
        return Err(refuse(vec![format!(
            "{} already sits in zone {}",
            ds.id(),
            to.name
        )]));
    }
    if !from.may_send_to(&to.name) {
        reasons.push(format!(
            "no egress route: zone {}'s egress allowlist [{}] does not include {}",
            from.name,
            from.egress_allowlist.join(", "),
            to.name
        ));
    }
    let mut permitted_by = Vec::new();
    match JobProfile::resolve(&probe_job(ds), fleet) {
        Err(e) => reasons.push(format!("classification cannot be resolved: {e}")),
        Ok(profile) => {
            let f = zone_failures(&profile.attrs, to);
            for c in f.constraints() {
                let name = c.name();
                {
                    reasons.push(format!(
                        "{name}: {} data ({}) may not be in zone {} (tier {:?}, ceiling {}, jurisdiction {})",
                        ds.id(),
                        profile.effective.describe(&fleet.scheme),
                        to.name,
                        to.tier,
                        fleet.scheme.level_name(to.max_classification),
                        to.jurisdiction
                    ));
                }
            }
            let facts = policy.facts(&profile.attrs, fleet.scheme.level_name(profile.attrs.level));
            match policy
                .evaluate_all(&facts)
                .into_iter()
                .find(|v| v.zone == to_idx)
            {
                Some(v) if v.allowed => {
                    permitted_by = v.permits.iter().map(|p| p.id.clone()).collect()
                }
                Some(v) => reasons.extend(v.reasons().into_iter().map(|r| format!("policy: {r}"))),
                None => reasons.push(format!("policy: no verdict for zone {} (denied)", to.name)),
            }
        }
    }
    let projection = projection(ds, &req.columns, &mut reasons);
    let estimated_bytes: u64 = projection
        .iter()
        .filter_map(|(table, cols)| ds.table(table).map(|t| (t, cols.len())))
        .map(|(t, n)| estimate(t, n))
        .sum();
    #[allow(clippy::cast_precision_loss)] // byte counts far below 2^52
    let estimated_cost = estimated_bytes as f64 / 1e9 * from.egress_price_per_gb;
    if estimated_cost > req.max_cost {
        reasons.push(format!(
            "budget: estimated egress cost {estimated_cost:.2} ({estimated_bytes} bytes at {} per GB from {}) exceeds the limit {:.2}",
            from.egress_price_per_gb, from.name, req.max_cost
        ));
    }
    if !reasons.is_empty() {
        return Err(refuse(reasons));
    }
    Ok(TransferPlan {
        dataset: ds.id(),
        from_zone: from.name.clone(),
        to_zone: to.name.clone(),
        projection,
        estimated_bytes,
        estimated_cost,
        form: if ds.report.is_some() {
            "sanitized".into()
        } else {
            "raw".into()
        },
        policy_hash: policy.hash().to_owned(),
        permitted_by,
    })
}

/// Bytes of `n` of a table's columns, pro rata.
fn estimate(t: &TableFile, n: usize) -> u64 {
    let total = t.columns.len().max(1) as u64;
    t.bytes.saturating_mul(n as u64) / total
}

/// What [`execute`] moved.
#[derive(Debug, Clone, Serialize)]
pub struct Moved {
    /// Digest of the copy's manifest in the destination store.
    pub manifest: Digest,
    /// The projected tables, as stored there.
    pub tables: Vec<TableFile>,
    /// Bytes moved.
    pub bytes: u64,
}

/// Carries out an allowed `plan` of `ds` from `src` (the home zone's store) into `dst` (the
/// destination zone's store): every table is read verified, projected, and the copy is ledgered
/// (through `src`'s evidence sink) before it is stored in `dst`.
///
/// # Errors
/// Store (tampered, shredded), table and ledger errors; nothing is stored in `dst` when the
/// ledger refuses.
pub fn execute(
    plan: &TransferPlan,
    ds: &DatasetVersion,
    src: &ArtifactStore,
    dst: &ArtifactStore,
    now: u64,
) -> Result<Moved, DataError> {
    let mut out = Vec::new();
    for (table, cols) in &plan.projection {
        let t = ds.table(table).ok_or_else(|| DataError::Invalid {
            field: "projection".into(),
            message: format!("no table {table} in {}", ds.id()),
        })?;
        let bytes = src.get(&t.digest)?;
        let projected = if cols.len() < t.columns.len() {
            tidegate_sanitize::project_table(Path::new(&t.file), &bytes, cols)?
        } else {
            bytes
        };
        out.push((
            TableFile {
                table: t.table.clone(),
                file: t.file.clone(),
                format: t.format.clone(),
                digest: Digest::of(&projected),
                bytes: projected.len() as u64,
                columns: cols.clone(),
            },
            projected,
        ));
    }
    let tables: Vec<TableFile> = out.iter().map(|(t, _)| t.clone()).collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "dataset": plan.dataset,
        "from_zone": plan.from_zone,
        "to_zone": plan.to_zone,
        "tables": tables,
    }))
    .map_err(|e| DataError::Invalid {
        field: "manifest".into(),
        message: e.to_string(),
    })?;
    let manifest_digest = Digest::of(&manifest);
    let bytes: u64 = tables.iter().map(|t| t.bytes).sum();
    src.record_event(&ArtifactEvent::DatasetCopied {
        dataset: plan.dataset.clone(),
        from_zone: plan.from_zone.clone(),
        to_zone: plan.to_zone.clone(),
        form: plan.form.clone(),
        content: manifest_digest.clone(),
        bytes,
        report: ds.report.clone(),
        at: now,
    })?;
    // The copy carries the version's classification (by names), bound into its encryption.
    let class = tidegate_artifacts::ArtifactClass {
        level: ds.classification.level.clone(),
        tags: ds.classification.tags.iter().cloned().collect(),
        residency: ds
            .classification
            .residency
            .as_ref()
            .map(|r| r.iter().cloned().collect()),
    };
    let opts = |name: String| PutOptions {
        name,
        classification: Some(class.clone()),
        ..PutOptions::default()
    };
    for (t, content) in &out {
        dst.put(
            content,
            ArtifactKind::FeatureSet,
            &opts(format!("{}/{}", plan.dataset, t.file)),
            now,
        )?;
    }
    dst.put(
        &manifest,
        ArtifactKind::FeatureSet,
        &opts(format!("{}/manifest.json", plan.dataset)),
        now,
    )?;
    LineageLog::new(src.data_dir()).append(&Entry::Edge {
        from: ds.node(),
        to: artifact_node(&manifest_digest),
        relation: "copied".into(),
        at: now,
    })?;
    Ok(Moved {
        manifest: manifest_digest,
        tables,
        bytes,
    })
}
