//! The dataset registry: each version is a content-addressed snapshot (every table file stored
//! encrypted in the artifact store, plus a manifest naming them by digest) with its schema,
//! classification, owner and home zone. The registry file `<data-dir>/datasets/registry.jsonl`
//! is append-only and fsynced; a version is ledgered (through the store's evidence sink) before
//! it is appended, and versions are immutable.
//!
//! Content has one classification: the strictest of every registration holding any of its
//! bytes (the same manifest or any same table file). Registering known content below that is
//! refused, naming the earlier registration; placement sees every version at its content's
//! strictest classification. A derived version is below its source only with a stored
//! sanitizer report that says the lower classification was earned. A version's home zone must
//! be allowed to hold it ([`Scheme::home_zone_problem`](tidegate_model::Scheme::home_zone_problem):
//! private tier for private-only data, inside its residency, under the zone's ceiling, with the
//! certifications its tags need in a public zone).
//!
//! The registry file is a copy, not the authority: every decision reads a version only as the
//! evidence ledger recorded it. [`Registry::list_recorded`] checks every row against the first
//! `dataset.registered` entry for its version ([`recorded_registrations`], pure over the
//! ledger's sealed entries) and refuses, naming the version and the field, a row the ledger
//! does not have, a row that says anything else, and a recorded version whose row is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tidegate_artifacts::atomic::{append_line, read_lines};
use tidegate_artifacts::events::ArtifactEvent;
use tidegate_artifacts::{ArtifactKind, ArtifactStore, Digest, PutOptions};
use tidegate_model::{Classification, Dataset, DatasetRef, Fleet, Origin, Scheme};

use crate::DataError;

/// A classification by names, as people write it (`restricted`, `[phi]`, `[US]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassificationNames {
    /// Level name.
    pub level: String,
    /// Legal tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Jurisdictions it may be processed in; absent = unrestricted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residency: Option<Vec<String>>,
    /// Retention class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
}

impl ClassificationNames {
    /// Ranks and validates the names against `scheme`.
    ///
    /// # Errors
    /// [`DataError::Invalid`] naming the field with an unknown level, tag or retention class.
    pub fn resolve(&self, scheme: &Scheme) -> Result<Classification, DataError> {
        let level = scheme
            .level_rank(&self.level)
            .ok_or_else(|| DataError::Invalid {
                field: "classification.level".into(),
                message: format!(
                    "unknown level {:?} (known: {})",
                    self.level,
                    scheme.level_names().join(", ")
                ),
            })?;
        for t in &self.tags {
            if !scheme.knows_tag(t) {
                return Err(DataError::Invalid {
                    field: "classification.tags".into(),
                    message: format!("unknown tag {t:?}"),
                });
            }
        }
        if let Some(r) = &self.retention {
            if scheme.retention_rank(r).is_none() {
                return Err(DataError::Invalid {
                    field: "classification.retention".into(),
                    message: format!("unknown retention class {r:?}"),
                });
            }
        }
        Ok(Classification {
            level,
            tags: self.tags.iter().cloned().collect(),
            residency: self
                .residency
                .as_ref()
                .map(|r| r.iter().cloned().collect::<BTreeSet<_>>()),
            retention: self.retention.clone(),
        })
    }

    /// `level/tag,tag` with `, residency X,Y` and `, retention R` when set.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut s = self.level.clone();
        if !self.tags.is_empty() {
            s = format!("{s}/{}", self.tags.join(","));
        }
        if let Some(r) = &self.residency {
            s = format!("{s}, residency {}", r.join(","));
        }
        if let Some(r) = &self.retention {
            s = format!("{s}, retention {r}");
        }
        s
    }

    /// Names for a ranked classification.
    #[must_use]
    pub fn of(c: &Classification, scheme: &Scheme) -> Self {
        Self {
            level: scheme.level_name(c.level).to_owned(),
            tags: c.tags.iter().cloned().collect(),
            residency: c.residency.as_ref().map(|r| r.iter().cloned().collect()),
            retention: c.retention.clone(),
        }
    }
}

/// One table file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFile {
    /// Table name (the file stem).
    pub table: String,
    /// File name in the snapshot.
    pub file: String,
    /// `csv` or `parquet`.
    pub format: String,
    /// Digest of the file's bytes (an artifact in the store).
    pub digest: Digest,
    /// Size, bytes.
    pub bytes: u64,
    /// Column names (the schema), in file order.
    pub columns: Vec<String>,
}

/// The snapshot manifest: what a version's digest addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Manifest {
    dataset: String,
    tables: Vec<TableFile>,
}

/// A registered dataset version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetVersion {
    /// Dataset name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Owning team.
    pub owner: String,
    /// Zone that holds it.
    pub home_zone: String,
    /// Classification.
    pub classification: ClassificationNames,
    /// Digest of the snapshot manifest.
    pub snapshot: Digest,
    /// Its tables.
    pub tables: Vec<TableFile>,
    /// Total bytes.
    pub bytes: u64,
    /// The version it was derived from (`name@version`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived_from: Option<String>,
    /// The sanitizer report (artifact digest) behind a derived version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Digest>,
    /// When it was registered (Unix seconds).
    pub registered_at: u64,
}

impl DatasetVersion {
    /// `name@version`.
    #[must_use]
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// The lineage node id (`dataset:name@version`).
    #[must_use]
    pub fn node(&self) -> String {
        format!("dataset:{}", self.id())
    }

    /// The table called `table`.
    #[must_use]
    pub fn table(&self, table: &str) -> Option<&TableFile> {
        self.tables.iter().find(|t| t.table == table)
    }

    /// The fleet's view of this version (for placement): classification ranked by `scheme`.
    ///
    /// # Errors
    /// As [`ClassificationNames::resolve`].
    pub fn to_fleet_dataset(&self, scheme: &Scheme) -> Result<Dataset, DataError> {
        #[allow(clippy::cast_precision_loss)] // sizes far below 2^52 bytes
        let size_gb = self.bytes as f64 / 1e9;
        Ok(Dataset {
            name: self.name.clone(),
            version: self.version.clone(),
            classification: self.classification.resolve(scheme)?,
            home_zone: self.home_zone.clone(),
            size_gb,
            owner: self.owner.clone(),
            origin: Origin::builtin("<dataset registry>"),
        })
    }
}

/// What to register.
#[derive(Debug, Clone)]
pub struct RegisterSpec {
    /// Dataset name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Owning team.
    pub owner: String,
    /// Zone that holds it.
    pub home_zone: String,
    /// Classification.
    pub classification: ClassificationNames,
    /// Derived from (`name@version`).
    pub derived_from: Option<String>,
    /// Sanitizer report behind it.
    pub report: Option<Digest>,
}

/// What `new` lacks to be at least as strict as `old`: the field and why (`None` when it is).
/// Pure.
#[must_use]
pub fn weaker_than(
    new: &Classification,
    old: &Classification,
    scheme: &Scheme,
) -> Option<(&'static str, String)> {
    if new.level < old.level {
        return Some((
            "level",
            format!(
                "level {} is below {}",
                scheme.level_name(new.level),
                scheme.level_name(old.level)
            ),
        ));
    }
    let missing: Vec<&str> = old.tags.difference(&new.tags).map(String::as_str).collect();
    if !missing.is_empty() {
        return Some(("tag", format!("without the tags {}", missing.join(", "))));
    }
    if let Some(r) = &old.residency {
        let wider = match &new.residency {
            None => true,
            Some(n) => !n.is_subset(r),
        };
        if wider {
            let list: Vec<&str> = r.iter().map(String::as_str).collect();
            return Some((
                "residency",
                format!("a residency wider than [{}]", list.join(", ")),
            ));
        }
    }
    if let Some(r) = &old.retention {
        let shorter = match &new.retention {
            None => true,
            Some(n) => scheme.retention_rank(n) < scheme.retention_rank(r),
        };
        if shorter {
            return Some(("retention", format!("a retention shorter than {r}")));
        }
    }
    None
}

/// Whether two versions share content: the same manifest or any same table file.
fn shares_content(a: &DatasetVersion, snapshot: &Digest, tables: &[TableFile]) -> bool {
    a.snapshot == *snapshot
        || a.tables
            .iter()
            .any(|t| tables.iter().any(|n| n.digest == t.digest))
}

/// Each version's classification joined with every version sharing content with it, to a fixed
/// point (content linked through any chain of shared files has one classification).
fn strictest_by_content(
    versions: &[DatasetVersion],
    scheme: &Scheme,
) -> Result<Vec<Classification>, DataError> {
    let mut classes = versions
        .iter()
        .map(|v| v.classification.resolve(scheme))
        .collect::<Result<Vec<_>, _>>()?;
    loop {
        let mut changed = false;
        for i in 0..versions.len() {
            for j in 0..versions.len() {
                let (Some(a), Some(b)) = (versions.get(i), versions.get(j)) else {
                    continue;
                };
                if i == j || !shares_content(a, &b.snapshot, &b.tables) {
                    continue;
                }
                let (Some(ci), Some(cj)) = (classes.get(i), classes.get(j)) else {
                    continue;
                };
                let joined = ci.join(cj, scheme);
                if joined != *ci {
                    if let Some(slot) = classes.get_mut(i) {
                        *slot = joined;
                    }
                    changed = true;
                }
            }
        }
        if !changed {
            return Ok(classes);
        }
    }
}

/// What the evidence ledger recorded when a version was registered: its first
/// `dataset.registered` entry (a later one for the same version changes nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRegistration {
    /// Index of the entry in the ledger.
    pub index: usize,
    /// The entry's time (Unix milliseconds).
    pub ts_ms: u64,
    /// Digest of the snapshot manifest.
    pub snapshot: String,
    /// Classification level.
    pub level: String,
    /// Home zone.
    pub zone: String,
    /// Sanitizer report, when derived.
    pub report: Option<String>,
    /// Owning team (absent in entries written before the full registration was recorded).
    pub owner: Option<String>,
    /// Legal tags (absent with `owner`).
    pub tags: Option<Vec<String>>,
    /// Residency (absent = unrestricted, when `owner` is recorded).
    pub residency: Option<Vec<String>>,
    /// Retention class.
    pub retention: Option<String>,
    /// The version it was derived from.
    pub derived_from: Option<String>,
}

/// The first `dataset.registered` entry of every version in `entries` (canonical bytes, by
/// index, as the ledger sealed them), by `name@version`. Pure.
///
/// # Errors
/// [`DataError::Evidence`] naming the index of a `dataset.registered` entry that does not decode.
pub fn recorded_registrations(
    entries: &[Vec<u8>],
) -> Result<BTreeMap<String, RecordedRegistration>, DataError> {
    const MARK: &[u8] = b"\"type\":\"dataset.registered\"";
    let mut out = BTreeMap::new();
    for (index, bytes) in entries.iter().enumerate() {
        if !bytes.windows(MARK.len()).any(|w| w == MARK) {
            continue;
        }
        let e = tidegate_ledger::Entry::decode(bytes).map_err(|e| DataError::Evidence {
            index,
            message: format!("does not decode: {e}"),
        })?;
        let tidegate_ledger::Action::DatasetRegistered {
            version,
            snapshot,
            level,
            zone,
            report,
            owner,
            tags,
            residency,
            retention,
            derived_from,
        } = e.action
        else {
            continue;
        };
        let names = |v: Vec<tidegate_ledger::Ident>| {
            v.iter().map(|i| i.as_str().to_owned()).collect::<Vec<_>>()
        };
        out.entry(version.as_str().to_owned())
            .or_insert_with(|| RecordedRegistration {
                index,
                ts_ms: e.ts_ms,
                snapshot: snapshot.to_string(),
                level: level.as_str().to_owned(),
                zone: zone.as_str().to_owned(),
                report: report.map(|r| r.to_string()),
                owner: owner.map(|o| o.as_str().to_owned()),
                tags: tags.map(names),
                residency: residency.map(names),
                retention: retention.map(|r| r.as_str().to_owned()),
                derived_from: derived_from.map(|d| d.as_str().to_owned()),
            });
    }
    Ok(out)
}

/// The snapshot digest of `id`'s manifest over `tables` (what a version's `snapshot` names).
fn manifest_digest(id: &str, tables: &[TableFile]) -> Result<Digest, DataError> {
    let manifest = Manifest {
        dataset: id.to_owned(),
        tables: tables.to_vec(),
    };
    serde_json::to_vec(&manifest)
        .map(|b| Digest::of(&b))
        .map_err(|e| DataError::Invalid {
            field: "manifest".into(),
            message: e.to_string(),
        })
}

fn sorted(v: &[String]) -> Vec<&str> {
    let mut v: Vec<&str> = v.iter().map(String::as_str).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Checks that `row` says exactly what the ledger recorded for its version (`rec`): snapshot,
/// level, tags, residency, retention, owner, home zone, report, source, and that its tables and
/// size are the ones its snapshot digest names (its `registered_at` is replaced by the entry's
/// time where rows are read, [`Registry::list_recorded`]). Pure.
///
/// # Errors
/// [`DataError::Unrecorded`] naming the version and the first field that differs or that the
/// ledger does not hold.
pub fn check_recorded(
    row: &DatasetVersion,
    rec: Option<&RecordedRegistration>,
) -> Result<(), DataError> {
    let id = row.id();
    let unrecorded = |field: &str, message: String| DataError::Unrecorded {
        dataset: id.clone(),
        field: field.to_owned(),
        message,
    };
    let Some(rec) = rec else {
        return Err(unrecorded(
            "registration",
            "the evidence ledger holds no dataset.registered entry for it: the row was written outside tidegate".into(),
        ));
    };
    let at = rec.index;
    let differs = |field: &str, row: String, ledger: String| {
        unrecorded(
            field,
            format!(
                "the registry row says {row:?} but the evidence ledger recorded {ledger:?} (entry {at})"
            ),
        )
    };
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let list = |v: &Option<Vec<String>>| {
        v.as_ref()
            .map_or_else(|| "unrestricted".to_owned(), |v| sorted(v).join(","))
    };
    let (Some(owner), Some(tags)) = (&rec.owner, &rec.tags) else {
        return Err(unrecorded(
            "owner",
            format!(
                "its dataset.registered entry (entry {at}) was written before owners and full classifications were recorded, so the row's owner, tags, residency and retention are vouched for by nothing: register the data again as a new version"
            ),
        ));
    };
    if row.snapshot.to_string() != rec.snapshot {
        return Err(differs(
            "snapshot",
            row.snapshot.to_string(),
            rec.snapshot.clone(),
        ));
    }
    for (field, r, l) in [
        (
            "classification.level",
            row.classification.level.clone(),
            rec.level.clone(),
        ),
        ("zone", row.home_zone.clone(), rec.zone.clone()),
        (
            "report",
            row.report
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            opt(&rec.report),
        ),
        (
            "derived_from",
            opt(&row.derived_from),
            opt(&rec.derived_from),
        ),
    ] {
        if r != l {
            return Err(differs(field, r, l));
        }
    }
    let row_tags = sorted(&row.classification.tags).join(",");
    let rec_tags = sorted(tags).join(",");
    for (field, r, l) in [
        ("owner", row.owner.clone(), owner.clone()),
        ("classification.tags", row_tags, rec_tags),
        (
            "classification.residency",
            list(&row.classification.residency),
            list(&rec.residency),
        ),
        (
            "classification.retention",
            opt(&row.classification.retention),
            opt(&rec.retention),
        ),
    ] {
        if r != l {
            return Err(differs(field, r, l));
        }
    }
    // The tables and size are what the recorded snapshot digest names.
    if manifest_digest(&id, &row.tables)?.to_string() != rec.snapshot {
        return Err(unrecorded(
            "tables",
            format!(
                "the registry row's tables are not the ones its recorded snapshot {} names (entry {at})",
                rec.snapshot
            ),
        ));
    }
    let bytes: u64 = row.tables.iter().map(|t| t.bytes).sum();
    if row.bytes != bytes {
        return Err(differs("bytes", row.bytes.to_string(), bytes.to_string()));
    }
    Ok(())
}

/// The registry of one data directory.
#[derive(Debug, Clone)]
pub struct Registry {
    path: PathBuf,
}

/// Version `r` among `all`, or [`DataError::NotFound`] listing the known ones.
fn find(all: &[DatasetVersion], r: &DatasetRef) -> Result<DatasetVersion, DataError> {
    if let Some(v) = all
        .iter()
        .find(|d| d.name == r.name && d.version == r.version)
    {
        return Ok(v.clone());
    }
    let known: Vec<String> = all.iter().map(DatasetVersion::id).collect();
    Err(DataError::NotFound {
        dataset: r.to_string(),
        known: if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        },
    })
}

fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
}

/// The table files of `input` (a file, or a directory's `*.csv` and `*.parquet`), sorted.
fn table_files(input: &Path) -> Result<Vec<PathBuf>, DataError> {
    let meta = std::fs::metadata(input).map_err(|e| DataError::io(input, e))?;
    if meta.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(input).map_err(|e| DataError::io(input, e))? {
        let p = entry.map_err(|e| DataError::io(input, e))?.path();
        if p.extension().is_some_and(|x| x == "csv" || x == "parquet") {
            out.push(p);
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(DataError::Invalid {
            field: "input".into(),
            message: format!("{} holds no .csv or .parquet table", input.display()),
        });
    }
    Ok(out)
}

/// Column names of a table file: the CSV header, or the Parquet schema's fields.
fn columns(path: &Path, bytes: &[u8]) -> Result<Vec<String>, DataError> {
    let cols = tidegate_sanitize::table_columns(path, bytes)?;
    if cols.is_empty() || cols.iter().all(String::is_empty) {
        return Err(DataError::Table {
            path: path.to_path_buf(),
            message: "line 1: empty header".into(),
        });
    }
    Ok(cols)
}

/// Whether `report` is a stored `sanitizer-report` artifact that says it earned the lower
/// classification, at the level `level` being registered.
fn report_says_earned(store: &ArtifactStore, report: &Digest, level: &str) -> bool {
    let is_report = store
        .record(report)
        .is_ok_and(|r| r.kind == ArtifactKind::SanitizerReport);
    let json = || {
        store
            .get(report)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    };
    is_report
        && json().is_some_and(|v| {
            let earned = v.get("earned") == Some(&serde_json::Value::Bool(true));
            let to = v
                .get("output_classification")
                .and_then(serde_json::Value::as_str)
                .map(|c| tidegate_sanitize::profile::parse_classification(c).0);
            earned && to.as_deref() == Some(level)
        })
}

impl Registry {
    /// The registry of the data directory `data_dir`.
    #[must_use]
    pub fn open(data_dir: &Path) -> Self {
        Self {
            path: tidegate_vocab::DataDir::new(data_dir)
                .datasets()
                .join("registry.jsonl"),
        }
    }

    /// Every row of the registry file as written, oldest first: unchecked, so no decision
    /// reads it ([`Self::list_recorded`] does).
    fn rows(&self) -> Result<Vec<DatasetVersion>, DataError> {
        let lines = read_lines(&self.path)?;
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| DataError::Registry {
                    path: self.path.clone(),
                    line: i + 1,
                    message: e.to_string(),
                })
            })
            .collect()
    }

    /// Every registered version, oldest first, each exactly as the evidence ledger recorded it
    /// in `entries` (the sealed entries of the ledger this data directory records into, e.g.
    /// [`ArtifactStore::evidence_entries`]): every row is checked against the first
    /// `dataset.registered` entry for its version ([`check_recorded`]), and every recorded
    /// version must have its row. One version appears once.
    ///
    /// # Errors
    /// I/O errors, [`DataError::Registry`] naming a damaged line, [`DataError::Unrecorded`]
    /// naming the version and the field of a row that is not what the ledger recorded (or a
    /// recorded version with no row).
    pub fn list_recorded(&self, entries: &[Vec<u8>]) -> Result<Vec<DatasetVersion>, DataError> {
        self.checked(entries, None)
    }

    /// [`Self::list_recorded`], where `pending` (a version being registered again after its
    /// entry was recorded and its row was not written) may lack its row.
    fn checked(
        &self,
        entries: &[Vec<u8>],
        pending: Option<&str>,
    ) -> Result<Vec<DatasetVersion>, DataError> {
        let recorded = recorded_registrations(entries)?;
        let mut out: Vec<DatasetVersion> = Vec::new();
        for mut row in self.rows()? {
            let rec = recorded.get(&row.id());
            check_recorded(&row, rec)?;
            // When it was registered is the ledger's time, never the file's.
            if let Some(rec) = rec {
                row.registered_at = rec.ts_ms / 1000;
            }
            if !out.iter().any(|v| v.id() == row.id()) {
                out.push(row);
            }
        }
        for (id, rec) in &recorded {
            if Some(id.as_str()) != pending && !out.iter().any(|v| v.id() == *id) {
                return Err(DataError::Unrecorded {
                    dataset: id.clone(),
                    field: "registration".into(),
                    message: format!(
                        "the evidence ledger recorded its registration (entry {}) but {} has no row for it: register the same data again to restore it",
                        rec.index,
                        self.path.display()
                    ),
                });
            }
        }
        Ok(out)
    }

    /// One version, as the ledger recorded it ([`Self::list_recorded`]).
    ///
    /// # Errors
    /// As [`Self::list_recorded`]; [`DataError::NotFound`] listing the known versions.
    pub fn get_recorded(
        &self,
        r: &DatasetRef,
        entries: &[Vec<u8>],
    ) -> Result<DatasetVersion, DataError> {
        let all = self.list_recorded(entries)?;
        find(&all, r)
    }

    /// Adds every registered version, as the ledger recorded it in `entries`, to `fleet` (a
    /// version the fleet already declares keeps the fleet's entry, joined with the recorded
    /// classification), so that placement knows their classification and home.
    ///
    /// # Errors
    /// As [`Self::list_recorded`]; a registered classification the fleet's scheme does not know.
    pub fn merge_into(&self, fleet: &mut Fleet, entries: &[Vec<u8>]) -> Result<usize, DataError> {
        let mut added = 0;
        let all = self.list_recorded(entries)?;
        let strictest = strictest_by_content(&all, &fleet.scheme)?;
        for (v, c) in all.iter().zip(strictest) {
            // A fleet file naming the same version never loosens what was registered: the
            // stricter of the two holds.
            if let Some(d) = fleet
                .datasets
                .iter_mut()
                .find(|d| d.name == v.name && d.version == v.version)
            {
                d.classification = d.classification.join(&c, &fleet.scheme);
                continue;
            }
            let mut d = v.to_fleet_dataset(&fleet.scheme)?;
            // The content's classification, not only this registration's.
            d.classification = c;
            fleet.datasets.push(d);
            added += 1;
        }
        Ok(added)
    }

    /// The classification `v`'s content has: the strictest of every registration sharing any of
    /// its bytes, as the ledger recorded them in `entries`.
    ///
    /// # Errors
    /// As [`Self::list_recorded`]; a registered classification `scheme` does not know.
    pub fn content_classification(
        &self,
        v: &DatasetVersion,
        scheme: &Scheme,
        entries: &[Vec<u8>],
    ) -> Result<Classification, DataError> {
        let all = self.list_recorded(entries)?;
        let strictest = strictest_by_content(&all, scheme)?;
        Ok(all
            .iter()
            .zip(strictest)
            .find(|(x, _)| x.name == v.name && x.version == v.version)
            .map_or(v.classification.resolve(scheme)?, |(_, c)| c))
    }

    /// Registers the table files under `input` as version `spec.name@spec.version`: each file
    /// is stored in `store` (encrypted, content-addressed), then the manifest; the registration
    /// is ledgered through the store's evidence sink, then appended here. Registering the same
    /// content again returns the existing version; other content under a registered version is
    /// refused; content already registered (any same table file) below its strictest
    /// classification is refused; a home zone that may not hold the data is refused; a derived
    /// version below its source needs a stored sanitizer report that says it was earned.
    ///
    /// # Errors
    /// Invalid names or classification, a home zone that may not hold it (field `zone`),
    /// unreadable or headerless tables, store or ledger refusals, [`DataError::Conflict`],
    /// [`DataError::Downgrade`].
    pub fn register(
        &self,
        store: &ArtifactStore,
        fleet: &Fleet,
        spec: &RegisterSpec,
        input: &Path,
        now: u64,
    ) -> Result<DatasetVersion, DataError> {
        for (field, v) in [
            ("name", &spec.name),
            ("version", &spec.version),
            ("owner", &spec.owner),
        ] {
            if !name_ok(v) {
                return Err(DataError::Invalid {
                    field: field.into(),
                    message: format!(
                        "{v:?}: use 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit"
                    ),
                });
            }
        }
        let Some(zone) = fleet.zone(&spec.home_zone) else {
            return Err(DataError::Invalid {
                field: "zone".into(),
                message: format!(
                    "unknown zone {:?} (zones: {})",
                    spec.home_zone,
                    fleet.zone_list()
                ),
            });
        };
        let classification = spec.classification.resolve(&fleet.scheme)?;
        // The same rule as a home zone in datasets.yaml (`Scheme::home_zone_problem`).
        if let Some(why) = fleet.scheme.home_zone_problem(&classification, zone) {
            return Err(DataError::Invalid {
                field: "zone".into(),
                message: why,
            });
        }
        let sensitive = fleet.scheme.private_only(&classification);
        let id = format!("{}@{}", spec.name, spec.version);
        let files = table_files(input)?;
        // Read and check every table before storing anything.
        let mut tables = Vec::new();
        let mut contents = Vec::new();
        for f in &files {
            let bytes = std::fs::read(f).map_err(|e| DataError::io(f, e))?;
            let cols = columns(f, &bytes)?;
            let file = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let table = f
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let format = if file.ends_with(".parquet") {
                "parquet"
            } else {
                "csv"
            };
            tables.push(TableFile {
                table,
                file,
                format: format.into(),
                digest: Digest::of(&bytes),
                bytes: bytes.len() as u64,
                columns: cols,
            });
            contents.push(bytes);
        }
        let manifest = Manifest {
            dataset: id.clone(),
            tables: tables.clone(),
        };
        let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| DataError::Invalid {
            field: "manifest".into(),
            message: e.to_string(),
        })?;
        let snapshot = Digest::of(&manifest_bytes);
        // What the ledger recorded decides, never the file alone: a version recorded without
        // its row (the row's append did not happen) may be registered again, as recorded.
        let entries = store.evidence_entries()?;
        let all = self.checked(&entries, Some(&id))?;
        let recorded = recorded_registrations(&entries)?.remove(&id);
        if let Ok(existing) = find(
            &all,
            &DatasetRef {
                name: spec.name.clone(),
                version: spec.version.clone(),
            },
        ) {
            if existing.snapshot == snapshot {
                return Ok(existing);
            }
            return Err(DataError::Conflict {
                dataset: id,
                existing: existing.snapshot.to_string(),
            });
        }
        if let Some(rec) = &recorded {
            if rec.snapshot != snapshot.to_string() {
                return Err(DataError::Conflict {
                    dataset: id,
                    existing: rec.snapshot.clone(),
                });
            }
        }
        self.check_not_lower(
            store,
            fleet,
            spec,
            &all,
            &id,
            &classification,
            &snapshot,
            &tables,
        )?;
        // Claimed below a private-only level, a table must not hold direct identifiers:
        // the same raw rows with one byte changed are still raw rows.
        if !sensitive {
            for (f, table) in files.iter().zip(&tables) {
                // The unambiguous shapes only: SSNs, e-mail addresses, phone numbers (a long
                // terminology code can pass a card-number check by chance).
                use tidegate_sanitize::scan::Kind;
                let found: Vec<_> = tidegate_sanitize::identifier_census(f)
                    .map_err(|e| DataError::Invalid {
                        field: "in".into(),
                        message: e.to_string(),
                    })?
                    .into_iter()
                    .filter(|(_, k, _)| matches!(k, Kind::Ssn | Kind::Email | Kind::Phone))
                    .collect();
                // An identifier column by its name, whatever its values look like (the columns
                // were read with the table above).
                let named: Vec<String> = table
                    .columns
                    .iter()
                    .filter(|c| crate::holding::identifier_column(c))
                    .cloned()
                    .collect();
                if !named.is_empty() {
                    return Err(DataError::Invalid {
                        field: "level".into(),
                        message: format!(
                            "{} has identifier columns ({}): such data is registered only at a private-only classification (e.g. restricted with phi or pii), or sanitized first",
                            f.display(),
                            named.join(", ")
                        ),
                    });
                }
                if !found.is_empty() {
                    let what: Vec<String> = found
                        .iter()
                        .map(|(c, k, n)| format!("{n} {k:?} in column {c}"))
                        .collect();
                    return Err(DataError::Invalid {
                    field: "level".into(),
                    message: format!(
                        "{} holds direct identifiers ({}): such data is registered only at a private-only classification (e.g. restricted with phi or pii), or sanitized first",
                        f.display(),
                        what.join(", ")
                    ),
                });
                }
            }
        }

        let class = crate::holding::class_of(&classification, &fleet.scheme);
        let opts = |name: String| PutOptions {
            name,
            sensitive,
            classification: Some(class.clone()),
            ..PutOptions::default()
        };
        for (t, bytes) in tables.iter().zip(&contents) {
            store.put(
                bytes,
                ArtifactKind::DatasetSnapshot,
                &opts(format!("{id}/{}", t.file)),
                now,
            )?;
        }
        store.put(
            &manifest_bytes,
            ArtifactKind::DatasetSnapshot,
            &opts(format!("{id}/manifest.json")),
            now,
        )?;
        let version = DatasetVersion {
            name: spec.name.clone(),
            version: spec.version.clone(),
            owner: spec.owner.clone(),
            home_zone: spec.home_zone.clone(),
            classification: ClassificationNames::of(&classification, &fleet.scheme),
            snapshot: snapshot.clone(),
            bytes: tables.iter().map(|t| t.bytes).sum(),
            tables,
            derived_from: spec.derived_from.clone(),
            report: spec.report.clone(),
            registered_at: now,
        };
        // Registered again after its row was lost: the first entry stands, so the row must say
        // what it recorded (its time included).
        let version = match &recorded {
            Some(rec) => {
                let version = DatasetVersion {
                    registered_at: rec.ts_ms / 1000,
                    ..version
                };
                check_recorded(&version, Some(rec))?;
                version
            }
            None => version,
        };
        store.record_event(&ArtifactEvent::DatasetRegistered {
            dataset: id,
            snapshot,
            level: version.classification.level.clone(),
            zone: version.home_zone.clone(),
            report: version.report.clone(),
            derived_from: version.derived_from.clone(),
            owner: version.owner.clone(),
            tags: version.classification.tags.clone(),
            residency: version.classification.residency.clone(),
            retention: version.classification.retention.clone(),
            at: now,
        })?;
        let line = serde_json::to_string(&version).map_err(|e| DataError::Invalid {
            field: "registry".into(),
            message: e.to_string(),
        })?;
        append_line(&self.path, &line)?;
        Ok(version)
    }

    /// Refuses `classification` for content already registered stricter (the strictest of every
    /// registration sharing a file with it), and for a derived version below its source without
    /// a stored sanitizer report saying the lower classification was earned.
    #[allow(clippy::too_many_arguments)]
    fn check_not_lower(
        &self,
        store: &ArtifactStore,
        fleet: &Fleet,
        spec: &RegisterSpec,
        all: &[DatasetVersion],
        id: &str,
        classification: &Classification,
        snapshot: &Digest,
        tables: &[TableFile],
    ) -> Result<(), DataError> {
        let scheme = &fleet.scheme;
        let strictest = strictest_by_content(all, scheme)?;
        for (v, c) in all.iter().zip(&strictest) {
            if !shares_content(v, snapshot, tables) {
                continue;
            }
            if let Some((field, why)) = weaker_than(classification, c, scheme) {
                return Err(DataError::Downgrade {
                    field: field.into(),
                    dataset: id.to_owned(),
                    earlier: v.id(),
                    why,
                    required: ClassificationNames::of(c, scheme).describe(),
                });
            }
        }
        let Some(from) = &spec.derived_from else {
            return Ok(());
        };
        let Some((src, c)) = all.iter().zip(&strictest).find(|(v, _)| v.id() == *from) else {
            return Err(DataError::Invalid {
                field: "derived_from".into(),
                message: format!("{from} is not registered"),
            });
        };
        let Some((field, why)) = weaker_than(classification, c, scheme) else {
            return Ok(());
        };
        if let Some(report) = &spec.report {
            if report_says_earned(store, report, &spec.classification.level) {
                return Ok(());
            }
        }
        Err(DataError::Downgrade {
            field: field.into(),
            dataset: id.to_owned(),
            earlier: src.id(),
            why: format!(
                "{why}, and no stored sanitizer report says the lower classification was earned"
            ),
            required: ClassificationNames::of(c, scheme).describe(),
        })
    }

    /// Writes version `v`'s tables from `store` into `dir` (verified against their digests).
    ///
    /// # Errors
    /// Store errors (a tampered or shredded table is refused), I/O errors.
    pub fn materialise(
        &self,
        store: &ArtifactStore,
        v: &DatasetVersion,
        dir: &Path,
    ) -> Result<(), DataError> {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        for t in &v.tables {
            let bytes = store.get(&t.digest)?;
            let path = dir.join(&t.file);
            std::fs::write(&path, bytes).map_err(|e| DataError::io(&path, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use tidegate_ledger::{Action, EntryDraft, Ident, Subject, SubjectKind};

    fn id(s: &str) -> Ident {
        Ident::new(s).unwrap()
    }

    fn version() -> DatasetVersion {
        let tables = vec![TableFile {
            table: "t".into(),
            file: "t.csv".into(),
            format: "csv".into(),
            digest: Digest::of(b"mrn,dx\n"),
            bytes: 7,
            columns: vec!["mrn".into(), "dx".into()],
        }];
        DatasetVersion {
            name: "phi-y".into(),
            version: "v1".into(),
            owner: "clinical-data".into(),
            home_zone: "hospital-onprem".into(),
            classification: ClassificationNames {
                level: "restricted".into(),
                tags: vec!["phi".into()],
                residency: Some(vec!["US".into()]),
                retention: None,
            },
            snapshot: manifest_digest("phi-y@v1", &tables).unwrap(),
            tables,
            bytes: 7,
            derived_from: None,
            report: None,
            registered_at: 5,
        }
    }

    fn entry(seq: u64, v: &DatasetVersion, level: &str, owner: Option<&str>) -> Vec<u8> {
        EntryDraft::new(
            id("tidegate-artifacts"),
            Action::DatasetRegistered {
                version: id(&v.id()),
                snapshot: v.snapshot.clone(),
                level: id(level),
                zone: id(&v.home_zone),
                report: None,
                owner: owner.map(id),
                tags: owner.map(|_| vec![id("phi")]),
                residency: owner.map(|_| vec![id("US")]),
                retention: None,
                derived_from: None,
            },
            vec![Subject::new(SubjectKind::Dataset, v.id()).unwrap()],
        )
        .unwrap()
        .into_entry(seq, 5_000)
        .encode()
        .unwrap()
    }

    fn field_of(e: DataError) -> String {
        match e {
            DataError::Unrecorded { field, dataset, .. } => {
                assert_eq!(dataset, "phi-y@v1");
                field
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_row_is_only_what_the_first_entry_for_its_version_recorded() {
        let v = version();
        // The first entry stands: a later one recording it public changes nothing.
        let entries = vec![
            entry(0, &v, "restricted", Some("clinical-data")),
            entry(1, &v, "public", Some("clinical-data")),
        ];
        let rec = recorded_registrations(&entries).unwrap();
        let r = rec.get("phi-y@v1").unwrap();
        assert_eq!((r.index, r.level.as_str()), (0, "restricted"));
        check_recorded(&v, Some(r)).unwrap();

        let mut edited = v.clone();
        edited.classification.level = "public".into();
        assert_eq!(
            field_of(check_recorded(&edited, Some(r)).unwrap_err()),
            "classification.level"
        );
        let mut edited = v.clone();
        edited.classification.tags.clear();
        assert_eq!(
            field_of(check_recorded(&edited, Some(r)).unwrap_err()),
            "classification.tags"
        );
        let mut edited = v.clone();
        edited.classification.residency = None;
        assert_eq!(
            field_of(check_recorded(&edited, Some(r)).unwrap_err()),
            "classification.residency"
        );
        let mut edited = v.clone();
        edited.owner = "public-web".into();
        assert_eq!(
            field_of(check_recorded(&edited, Some(r)).unwrap_err()),
            "owner"
        );
        // Tables that are not the ones the recorded snapshot names.
        let mut edited = v.clone();
        edited.tables[0].columns.pop();
        assert_eq!(
            field_of(check_recorded(&edited, Some(r)).unwrap_err()),
            "tables"
        );
        let mut edited = v.clone();
        edited.bytes = 1;
        assert_eq!(
            field_of(check_recorded(&edited, Some(r)).unwrap_err()),
            "bytes"
        );
        // Unrecorded, or recorded before owners and tags were: refused.
        assert_eq!(
            field_of(check_recorded(&v, None).unwrap_err()),
            "registration"
        );
        let old = recorded_registrations(&[entry(0, &v, "restricted", None)]).unwrap();
        assert_eq!(
            field_of(check_recorded(&v, old.get("phi-y@v1")).unwrap_err()),
            "owner"
        );
    }
}
