//! The engine: streams each table, CSV or Parquet (read, transform, write), into a temporary
//! directory beside the output and renames it into place only when every table succeeded, so a
//! failure publishes nothing. Both formats feed one row pipeline through `table_io`: a
//! Parquet cell is turned into its text form first, and each output table keeps its input's
//! format and file name. Tables that declare quasi-identifiers are read twice (count classes, then
//! write) and go first, so rows of suppressed subjects can be left out of every other table.

use std::collections::{BTreeMap, HashMap};

use foldhash::fast::RandomState;

/// Hash sets and maps over values from the input: a fast hasher, seeded at random per run, so
/// crafted data cannot aim for collisions.
type HashSet<T> = std::collections::HashSet<T, RandomState>;
use std::fs::File;
use std::hash::BuildHasher;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use csv::ByteRecord;

use crate::profile::{
    same_classification, Action, Approval, DateMode, OnUnknown, Profile, TableProfile,
    HIPAA_SAFE_HARBOR,
};
use crate::report::{ColumnReport, IdentifyingColumn, KReport, Report, ResidualHit, TableReport};
use crate::scan::{is_code_token, Kind, Scanner};
use crate::table_io::{Format, TableReader, TableWriter};
use crate::transform::{self, Key, SplitMix};
use crate::SanitizeError;

/// File name of the report written into the output directory with the tables.
pub const REPORT_FILE: &str = "sanitize-report.json";

/// Options of one run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The pseudonymisation key.
    pub key: Key,
    /// The source's classification in profile notation (`restricted/phi`), from the registry or
    /// the operator. `None`: unknown, and then no lower classification is earned, since the
    /// profile's declared input cannot be checked against it.
    pub source_classification: Option<String>,
    /// The profile's approval, verified by the caller against its approver keys; a profile that
    /// is not built in earns a lower classification only with one matching its digest.
    pub approval: Option<Approval>,
}

impl Options {
    /// Options with `key`, no known source classification and no approval.
    #[must_use]
    pub fn new(key: Key) -> Self {
        Self {
            key,
            source_classification: None,
            approval: None,
        }
    }

    /// With the source's classification (profile notation).
    #[must_use]
    pub fn with_source(mut self, classification: impl Into<String>) -> Self {
        self.source_classification = Some(classification.into());
        self
    }

    /// With a verified approval of the profile.
    #[must_use]
    pub fn with_approval(mut self, approval: Approval) -> Self {
        self.approval = Some(approval);
        self
    }
}

/// At most this many distinct values of identifier columns are remembered for the residual
/// scan; beyond it the run cannot check them all and the lower classification is not earned.
const MAX_ID_VALUES: usize = 50_000_000;
/// Distinct identifier-like values a table may write before its output is read back for the
/// residual scan instead (each is remembered as a hash while the table is written).
const MAX_WRITTEN_VALUES: usize = 4_000_000;
/// Values of a column written in clear sampled for its distinctness.
const DISTINCT_SAMPLE: u64 = 100_000;
/// A column written as it came in is identifying when at least this share (percent) of its
/// sampled values is distinct, over at least [`DISTINCT_MIN`] values, unless every value is a
/// decimal measurement.
const DISTINCT_PERCENT: u64 = 95;
const DISTINCT_MIN: u64 = 20;

/// Why this run may or may not earn on the grounds of who vouches for the profile and what it
/// was written for (pure): a built-in profile, or one whose approval signs exactly its digest
/// (and whose k was not lowered); a declared input equal to the source's classification.
fn trust_reasons(profile: &Profile, opts: &Options, report: &mut Report) -> Vec<String> {
    let mut reasons = Vec::new();
    if profile.is_builtin() {
        report.profile_authority = "built-in".into();
    } else {
        match &opts.approval {
            Some(a) if a.profile_digest == profile.digest() => {
                report.profile_authority = "approved".into();
                report.approved_by = Some(a.keyid.clone());
                if profile.k_lowered() {
                    reasons.push(format!(
                        "--k lowered k below what approver key {} signed in profile `{}`",
                        a.keyid, profile.name
                    ));
                }
            }
            Some(a) => reasons.push(format!(
                "the approval by key {} signs profile digest {}, but profile `{}` is {}: changed since it was signed",
                a.keyid, a.profile_digest, profile.name, profile.digest()
            )),
            None => reasons.push(format!(
                "profile `{}` ({}) is neither built in nor signed by an approver key; only those earn a lower classification (tidegate sanitize sign-profile)",
                profile.name, profile.digest()
            )),
        }
    }
    match &opts.source_classification {
        None => reasons.push(format!(
            "the source's classification is unknown, so the profile's declared input `{}` cannot be checked against it (give --source-classification, or sanitize a registered version)",
            profile.input_classification
        )),
        Some(src) if !same_classification(src, &profile.input_classification) => reasons.push(format!(
            "profile `{}` is written for `{}` but the source is classified `{src}`",
            profile.name, profile.input_classification
        )),
        Some(_) => {}
    }
    reasons
}

/// Whether a raw value of an identifier column is worth looking for in the output: at least four
/// bytes, not a date, not a decimal measurement, not a short number (counts, codes, years).
fn identifier_like(v: &[u8]) -> bool {
    let v = v.trim_ascii();
    if v.len() < 4 {
        return false;
    }
    let date = v.len() >= 10
        && v.get(..4).is_some_and(|y| y.iter().all(u8::is_ascii_digit))
        && v.get(4) == Some(&b'-');
    if date {
        return false;
    }
    if v.iter()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b' '))
    {
        let digits = v.iter().filter(|b| b.is_ascii_digit()).count();
        return !v.contains(&b'.') && digits >= 9;
    }
    true
}

/// The tokens of a free-text cell the residual scan looks up one by one.
fn tokens_of(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|b| b.is_ascii_whitespace() || b",;:()[]\"'".contains(b))
}

/// A decimal number with a fractional part (`129.16`, `-0.5`): a measurement or an amount.
fn is_fraction(v: &[u8]) -> bool {
    let v = v.strip_prefix(b"-").unwrap_or(v);
    match v.iter().position(|b| *b == b'.') {
        Some(dot) => {
            let (a, b) = (
                v.get(..dot).unwrap_or_default(),
                v.get(dot + 1..).unwrap_or_default(),
            );
            !a.is_empty()
                && !b.is_empty()
                && a.iter().all(u8::is_ascii_digit)
                && b.iter().all(u8::is_ascii_digit)
        }
        None => false,
    }
}

/// Sanitizes `input` (a table file, or a directory of `*.csv` and `*.parquet` tables) into the new
/// directory `out`, which must not exist or be empty. Each table is written in its input's format
/// under its input's file name; Parquet output columns are nullable UTF-8 (see the crate
/// documentation). Returns the report, also written as `out/sanitize-report.json`.
pub fn sanitize(
    profile: &Profile,
    input: &Path,
    out: &Path,
    opts: &Options,
) -> Result<Report, SanitizeError> {
    sanitize_remembering(profile, input, out, opts, MAX_WRITTEN_VALUES)
}

/// [`sanitize`], remembering at most `written_limit` written values per table for the residual
/// scan (past it, the table's output is read back).
fn sanitize_remembering(
    profile: &Profile,
    input: &Path,
    out: &Path,
    opts: &Options,
    written_limit: usize,
) -> Result<Report, SanitizeError> {
    let started = Instant::now();
    let files = list_inputs(input)?;
    if out.exists() {
        let mut entries = std::fs::read_dir(out)
            .map_err(|e| SanitizeError::io(out, "cannot read output directory", e))?;
        if entries.next().is_some() {
            return Err(SanitizeError::OutputExists(out.to_path_buf()));
        }
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .map_err(|e| SanitizeError::io(&parent, "cannot create directory", e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".tidegate-sanitize-")
        .tempdir_in(&parent)
        .map_err(|e| SanitizeError::io(&parent, "cannot create temporary directory", e))?;

    // Tables with quasi-identifiers first: their suppressed subjects leave every other table.
    let mut ordered: Vec<(bool, PathBuf)> = files
        .into_iter()
        .map(|f| {
            let has_k = profile
                .tables
                .get(&table_name(&f))
                .is_some_and(|t| t.k_anonymity.is_some());
            (!has_k, f)
        })
        .collect();
    ordered.sort();

    let mut report = Report {
        profile: profile.name.clone(),
        profile_source: profile.source.clone(),
        key_id: opts.key.id().to_string(),
        key_ephemeral: opts.key.is_ephemeral(),
        profile_digest: profile.digest().to_owned(),
        profile_authority: "unapproved".into(),
        approved_by: None,
        declared_input_classification: profile.input_classification.clone(),
        source_classification: opts.source_classification.clone(),
        input_classification: opts
            .source_classification
            .clone()
            .unwrap_or_else(|| profile.input_classification.clone()),
        output_classification: opts
            .source_classification
            .clone()
            .unwrap_or_else(|| profile.input_classification.clone()),
        lifts: profile.lifts.clone(),
        target_classification: profile.output_classification.clone(),
        earned: false,
        reasons: Vec::new(),
        tables: Vec::new(),
        unknown_tables: Vec::new(),
        residual_total: BTreeMap::new(),
        rows_in: 0,
        rows_out: 0,
        bytes_in: 0,
        bytes_out: 0,
        elapsed_s: 0.0,
    };
    let trust = trust_reasons(profile, opts, &mut report);
    let reference = Profile::load(HIPAA_SAFE_HARBOR).ok();
    let mut run = Run {
        profile,
        key: &opts.key,
        suppressed_subjects: HashSet::default(),
        scanner: Scanner::default(),
        reference: reference.as_ref(),
        hasher: RandomState::default(),
        ids: HashSet::default(),
        ids_overflow: false,
        written: HashMap::new(),
        written_limit,
    };
    for (_, file) in &ordered {
        let name = table_name(file);
        let Some(tp) = profile.tables.get(&name) else {
            if profile.on_unknown == OnUnknown::Fail {
                return Err(SanitizeError::input(
                    file,
                    0,
                    format!("table `{name}` is not covered by profile `{}`; name it in the profile (every column) or leave the file out", profile.name),
                ));
            }
            report.unknown_tables.push(name);
            continue;
        };
        let table_started = Instant::now();
        let t = run.table(&name, tp, file, tmp.path())?;
        tracing::info!(
            table = %name,
            rows = t.rows_in,
            bytes = t.bytes_in,
            elapsed_s = table_started.elapsed().as_secs_f64(),
            "table sanitized"
        );
        report.rows_in += t.rows_in;
        report.rows_out += t.rows_out;
        report.bytes_in += t.bytes_in;
        report.bytes_out += t.bytes_out;
        for h in &t.residual {
            *report.residual_total.entry(h.kind).or_insert(0) += h.count;
        }
        report.tables.push(t);
    }
    let scan_started = Instant::now();
    run.find_original_values(&mut report, tmp.path())?;
    tracing::info!(
        identifier_values = run.ids.len(),
        elapsed_s = scan_started.elapsed().as_secs_f64(),
        "output scanned for original identifier values"
    );
    report.decide(trust, run.ids_overflow);
    report.elapsed_s = started.elapsed().as_secs_f64();
    let report_path = tmp.path().join(REPORT_FILE);
    let json = serde_json::to_vec_pretty(&report).map_err(|e| {
        SanitizeError::io(
            &report_path,
            "cannot encode report",
            std::io::Error::other(e),
        )
    })?;
    write_synced(&report_path, &json)?;

    // Publish: one rename of the whole directory.
    let staged = tmp.keep();
    if let Err(e) = std::fs::rename(&staged, out) {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(SanitizeError::io(
            out,
            "cannot move the output into place",
            e,
        ));
    }
    if let Ok(d) = File::open(&parent) {
        let _ = d.sync_all();
    }
    Ok(report)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), SanitizeError> {
    let mut f = File::create(path).map_err(|e| SanitizeError::io(path, "cannot create", e))?;
    f.write_all(bytes)
        .map_err(|e| SanitizeError::io(path, "cannot write", e))?;
    f.sync_all()
        .map_err(|e| SanitizeError::io(path, "cannot sync", e))
}

/// The table name of a table file: its name without `.csv` or `.parquet`.
pub fn table_name(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn list_inputs(input: &Path) -> Result<Vec<PathBuf>, SanitizeError> {
    let meta =
        std::fs::metadata(input).map_err(|e| SanitizeError::io(input, "cannot read input", e))?;
    if meta.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(input)
        .map_err(|e| SanitizeError::io(input, "cannot read input directory", e))?
    {
        let entry =
            entry.map_err(|e| SanitizeError::io(input, "cannot read input directory", e))?;
        let p = entry.path();
        if Format::is_table(&p) && p.is_file() {
            files.push(p);
        }
    }
    if files.is_empty() {
        return Err(SanitizeError::input(
            input,
            0,
            "no .csv or .parquet files in the input directory",
        ));
    }
    files.sort();
    // One file per table: `patients.csv` beside `patients.parquet` is ambiguous.
    let mut seen: HashMap<String, &Path> = HashMap::new();
    for f in &files {
        if let Some(other) = seen.insert(table_name(f), f) {
            let other = other
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Err(SanitizeError::input(
                f,
                0,
                format!(
                    "table `{}` is also in `{other}`; keep one file per table",
                    table_name(f)
                ),
            ));
        }
    }
    Ok(files)
}

/// Pseudonyms remembered per column.
const MEMO_LIMIT: usize = 8192;

/// A direct-mapped memory of hashes recently inserted into one set, to skip inserting them again:
/// `seen` is true only for a hash this filter was given before (so the set holds it already).
#[derive(Default)]
struct Recent {
    slots: [u64; 32],
    filled: u32,
}

impl Recent {
    /// Whether `h` was given before (and is still remembered); remembers it.
    fn seen(&mut self, h: u64) -> bool {
        let i = usize::try_from(h >> 59).unwrap_or(0) & 31;
        let bit = 1u32 << i;
        let hit = self.filled & bit != 0 && self.slots.get(i) == Some(&h);
        if !hit {
            if let Some(slot) = self.slots.get_mut(i) {
                *slot = h;
            }
            self.filled |= bit;
        }
        hit
    }
}

/// One column's compiled plan and its per-column state.
struct Col {
    name: String,
    action: Option<Action>,
    rng: SplitMix,
    last_in: Vec<u8>,
    last_out: Vec<u8>,
    has_last: bool,
    /// Pseudonyms of the column's values, up to [`MEMO_LIMIT`] of them (providers, payers and
    /// organisations repeat without being consecutive).
    memo: HashMap<Box<[u8]>, Box<[u8]>, RandomState>,
    /// Hashes recently inserted into `distinct` and into the table's written values.
    recent_distinct: Recent,
    recent_written: Recent,
    redactions: u64,
    /// Its raw values are remembered for the residual scan (dropped, pseudonymised or unknown
    /// here, or an identifier in the built-in profile).
    collect: bool,
    /// The last raw value remembered for the residual scan (runs of one subject repeat it).
    last_collected: Vec<u8>,
    /// What the residual scan looks for in its written cells: (the cell, each of its tokens).
    check: (bool, bool),
    /// The last written cell recorded for the residual scan.
    last_written: Vec<u8>,
    /// Whether every cell written so far is the input cell as it was.
    unchanged: bool,
    /// Hashes of the first sampled values of a column written in clear (not pseudonymised), for
    /// its distinctness.
    distinct: Option<HashSet<u64>>,
    sampled: u64,
    all_fraction: bool,
}

struct Run<'a> {
    profile: &'a Profile,
    key: &'a Key,
    /// Original subject values suppressed for k-anonymity: their rows leave every table.
    suppressed_subjects: HashSet<Vec<u8>>,
    scanner: Scanner,
    /// The built-in profile: which columns of the Synthea schema are identifiers.
    reference: Option<&'a Profile>,
    hasher: RandomState,
    /// Hashes of every identifier-like raw value of the identifier columns of every table.
    ids: HashSet<u64>,
    ids_overflow: bool,
    /// Per table: hashes of the identifier-like values it wrote where the residual scan looks
    /// (`None`: too many to remember; its output is read back instead).
    written: HashMap<String, Option<HashSet<u64>>>,
    written_limit: usize,
}

/// Sample decision for a subject: kept when its seeded hash falls below the fraction.
fn sampled_out(profile: &Profile, subject: Option<&[u8]>) -> bool {
    match (&profile.sample, subject) {
        (Some(s), Some(v)) if s.fraction < 1.0 => {
            #[allow(clippy::cast_precision_loss)]
            let u = (transform::seeded_hash(s.seed, v) >> 11) as f64 / (1u64 << 53) as f64;
            u >= s.fraction
        }
        _ => false,
    }
}

impl Run<'_> {
    /// Applies a column's action to one value, writing into `out`.
    fn apply(
        &mut self,
        c: &mut Col,
        v: &[u8],
        shift: i64,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let Some(action) = &c.action else {
            return Ok(());
        };
        let r: Result<(), &'static str> = match action {
            Action::Drop => Ok(()),
            Action::Keep | Action::Code => {
                out.extend_from_slice(v);
                Ok(())
            }
            Action::Pseudonymize => {
                if c.has_last && c.last_in == v {
                    out.extend_from_slice(&c.last_out);
                } else {
                    let start = out.len();
                    if let Some(p) = c.memo.get(v) {
                        out.extend_from_slice(p);
                    } else {
                        self.key.pseudonym(v, out);
                        if c.memo.len() < MEMO_LIMIT {
                            let p = out.get(start..).unwrap_or_default();
                            c.memo.insert(v.into(), p.into());
                        }
                    }
                    c.last_in.clear();
                    c.last_in.extend_from_slice(v);
                    c.last_out.clear();
                    c.last_out
                        .extend_from_slice(out.get(start..).unwrap_or_default());
                    c.has_last = true;
                }
                Ok(())
            }
            Action::GeneralizeDate(DateMode::Year) => transform::date_year(v, out),
            Action::GeneralizeDate(DateMode::Shift) => transform::date_shift(v, shift, out),
            Action::Zip3 => {
                transform::zip3(v, out);
                Ok(())
            }
            Action::AgeCap => transform::age_cap(v, self.profile.reference_year, out),
            Action::ScanText => {
                c.redactions += u64::try_from(self.scanner.redact(v, out)).unwrap_or(u64::MAX);
                Ok(())
            }
            Action::Noise(f) => transform::noise(v, *f, &mut c.rng, out),
        };
        r.map_err(|m| format!("column `{}`: {m}", c.name))
    }

    #[allow(clippy::too_many_lines)]
    fn table(
        &mut self,
        name: &str,
        tp: &TableProfile,
        path: &Path,
        tmpdir: &Path,
    ) -> Result<TableReport, SanitizeError> {
        let max_field = self.profile.max_field_bytes;
        let (mut rdr, header) = TableReader::open(path, max_field)?;
        let mut cols = Vec::with_capacity(header.len());
        let mut seen = HashSet::default();
        for (i, hname) in header.into_iter().enumerate() {
            if !seen.insert(hname.clone()) {
                return Err(rdr.header_error(
                    &hname,
                    format!("column `{hname}` appears twice in the header"),
                ));
            }
            let action = tp.columns.get(&hname).cloned();
            if action.is_none() && self.profile.on_unknown == OnUnknown::Fail {
                return Err(rdr.header_error(
                    &hname,
                    format!("column `{hname}` (column {}) is not covered by profile `{}` table `{name}`; unknown columns fail closed", i + 1, self.profile.name),
                ));
            }
            let seed =
                self.profile.seed ^ transform::seeded_hash(0, format!("{name}.{hname}").as_bytes());
            let identifier =
                |a: Option<&Action>| matches!(a, None | Some(Action::Drop | Action::Pseudonymize));
            let reference = self
                .reference
                .and_then(|r| r.tables.get(name))
                .map(|t| t.columns.get(&hname));
            let collect = identifier(action.as_ref())
                || reference.is_some_and(|a| a.is_some() && identifier(a));
            let clear = !identifier(action.as_ref());
            let check = match &action {
                None | Some(Action::Drop | Action::Pseudonymize) => (false, false),
                Some(Action::ScanText) => (true, true),
                Some(_) => (true, false),
            };
            cols.push(Col {
                name: hname,
                action,
                rng: SplitMix::new(seed),
                last_in: Vec::new(),
                last_out: Vec::new(),
                has_last: false,
                memo: HashMap::default(),
                recent_distinct: Recent::default(),
                recent_written: Recent::default(),
                redactions: 0,
                collect,
                last_collected: Vec::new(),
                check,
                last_written: Vec::new(),
                unchanged: clear,
                distinct: clear.then(HashSet::default),
                sampled: 0,
                all_fraction: true,
            });
        }
        let pos = |c: &str| cols.iter().position(|x| x.name == c);
        let subject_idx = match &tp.subject {
            Some(s) => Some(pos(s).ok_or_else(|| {
                rdr.header_error(
                    s,
                    format!(
                        "the subject column `{s}` of table `{name}` is missing from the header"
                    ),
                )
            })?),
            None => None,
        };
        let qi_idx: Vec<usize> = match &tp.k_anonymity {
            Some(k) => k
                .quasi_identifiers
                .iter()
                .map(|q| {
                    pos(q).ok_or_else(|| {
                        rdr.header_error(
                            q,
                            format!("quasi-identifier `{q}` is missing from the header"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let absent_columns: Vec<String> = tp
            .columns
            .keys()
            .filter(|c| pos(c).is_none())
            .cloned()
            .collect();
        let mut rules: Vec<(usize, Vec<Vec<u8>>, Vec<usize>)> = Vec::new();
        for r in &tp.redact_when {
            let Some(ci) = pos(&r.column) else { continue };
            let targets: Vec<usize> = r.redact.iter().filter_map(|c| pos(c)).collect();
            rules.push((
                ci,
                r.equals.iter().map(|v| v.as_bytes().to_vec()).collect(),
                targets,
            ));
        }
        let mut redact_now = vec![false; cols.len()];
        let needs_shift = cols
            .iter()
            .any(|c| c.action == Some(Action::GeneralizeDate(DateMode::Shift)));

        let mut rec = ByteRecord::new();
        let mut scratch = Vec::with_capacity(256);
        let mut keybuf = Vec::with_capacity(64);

        // Pass 1 (tables with quasi-identifiers): the size of each class.
        let mut small: HashSet<Vec<u8>> = HashSet::default();
        let mut k_report = None;
        if let Some(k) = &tp.k_anonymity {
            let mut counts: HashMap<Vec<u8>, u64, RandomState> = HashMap::default();
            let mut rows = 0u64;
            while let Some(line) = rdr.next(&mut rec)? {
                let subject = subject_idx.and_then(|i| rec.get(i));
                if sampled_out(self.profile, subject) {
                    continue;
                }
                if !self.suppressed_subjects.is_empty()
                    && subject.is_some_and(|s| self.suppressed_subjects.contains(s))
                {
                    continue;
                }
                rows += 1;
                self.qi_key(&mut cols, &qi_idx, &rec, &mut keybuf)
                    .map_err(|m| rdr.row_error(line, m))?;
                if let Some(n) = counts.get_mut(keybuf.as_slice()) {
                    *n += 1;
                } else {
                    counts.insert(keybuf.clone(), 1);
                }
            }
            let kk = u64::from(k.k);
            let below: u64 = counts.values().filter(|n| **n < kk).sum();
            let smallest_before = counts.values().copied().min().unwrap_or(0);
            #[allow(clippy::cast_precision_loss)]
            let allowed = rows > 0
                && below < rows
                && (below as f64) * 100.0 <= k.max_suppressed_percent * (rows as f64);
            let reached = below == 0 || allowed;
            if below > 0 && allowed {
                small = counts
                    .iter()
                    .filter(|(_, n)| **n < kk)
                    .map(|(key, _)| key.clone())
                    .collect();
            }
            let smallest_after = if below > 0 && allowed {
                counts
                    .values()
                    .copied()
                    .filter(|n| *n >= kk)
                    .min()
                    .unwrap_or(0)
            } else {
                smallest_before
            };
            k_report = Some(KReport {
                k: k.k,
                quasi_identifiers: k.quasi_identifiers.clone(),
                classes: u64::try_from(counts.len()).unwrap_or(u64::MAX),
                smallest_class_before: smallest_before,
                rows_below_k: below,
                rows_suppressed: if below > 0 && allowed { below } else { 0 },
                smallest_class: smallest_after,
                reached,
            });
            rdr = TableReader::open(path, max_field)?.0;
        }

        // Pass 2: transform and write.
        let file_name = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let out_path = tmpdir.join(&file_name);
        let out_columns: Vec<&str> = cols
            .iter()
            .filter(|c| !matches!(c.action, None | Some(Action::Drop)))
            .map(|c| c.name.as_str())
            .collect();
        let written_idx: Vec<usize> = cols
            .iter()
            .enumerate()
            .filter(|(_, c)| !matches!(c.action, None | Some(Action::Drop)))
            .map(|(i, _)| i)
            .collect();
        let mut written: Option<HashSet<u64>> = Some(HashSet::default());
        let mut wtr = TableWriter::create(&out_path, Format::of(path), &out_columns)?;
        let mut out_rec = ByteRecord::new();

        let mut rows_in = 0u64;
        let mut rows_out = 0u64;
        let mut sampled = 0u64;
        let mut supp_k = 0u64;
        let mut supp_subject = 0u64;
        let mut residual: HashMap<(usize, Kind), (u64, Vec<u64>)> = HashMap::new();
        let mut last_subject: Vec<u8> = Vec::new();
        let mut shift = 0i64;
        let mut have_shift = false;
        while let Some(line) = rdr.next(&mut rec)? {
            rows_in += 1;
            let subject = subject_idx.and_then(|i| rec.get(i));
            if sampled_out(self.profile, subject) {
                sampled += 1;
                continue;
            }
            if !self.suppressed_subjects.is_empty()
                && subject.is_some_and(|s| self.suppressed_subjects.contains(s))
            {
                supp_subject += 1;
                continue;
            }
            if !small.is_empty() {
                self.qi_key(&mut cols, &qi_idx, &rec, &mut keybuf)
                    .map_err(|m| rdr.row_error(line, m))?;
                if small.contains(keybuf.as_slice()) {
                    supp_k += 1;
                    if let Some(s) = subject {
                        self.suppressed_subjects.insert(s.to_vec());
                    }
                    continue;
                }
            }
            if needs_shift {
                let s = subject.unwrap_or_default();
                if !have_shift || last_subject != s {
                    shift = self.key.shift_days(s, self.profile.max_shift_days);
                    last_subject.clear();
                    last_subject.extend_from_slice(s);
                    have_shift = true;
                }
            }
            let mut any_redact = false;
            for (ci, values, targets) in &rules {
                let v = rec.get(*ci).unwrap_or_default();
                if values.iter().any(|x| x.as_slice() == v) {
                    for t in targets {
                        if let Some(slot) = redact_now.get_mut(*t) {
                            *slot = true;
                            any_redact = true;
                        }
                    }
                }
            }
            out_rec.clear();
            for (i, (c, v)) in cols.iter_mut().zip(rec.iter()).enumerate() {
                if c.collect && c.last_collected != v && identifier_like(v) {
                    if self.ids.len() < MAX_ID_VALUES {
                        self.ids.insert(self.hasher.hash_one(v));
                        c.last_collected.clear();
                        c.last_collected.extend_from_slice(v);
                    } else {
                        self.ids_overflow = true;
                    }
                }
                if let Some(d) = &mut c.distinct {
                    if !v.is_empty() && c.sampled < DISTINCT_SAMPLE {
                        c.sampled += 1;
                        let h = self.hasher.hash_one(v);
                        if !c.recent_distinct.seen(h) {
                            d.insert(h);
                        }
                        c.all_fraction &= is_fraction(v);
                    }
                }
                if any_redact && redact_now.get(i).copied().unwrap_or(false) {
                    if !matches!(c.action, None | Some(Action::Drop)) {
                        out_rec.push_field(b"[REDACTED]");
                        c.redactions += 1;
                        c.unchanged = false;
                    }
                    if let Some(slot) = redact_now.get_mut(i) {
                        *slot = false;
                    }
                    continue;
                }
                match &c.action {
                    None | Some(Action::Drop) => continue,
                    Some(Action::Keep) => {
                        out_rec.push_field(v);
                        let sc = &mut self.scanner;
                        sc.scan(v, |k, _, _| note(&mut residual, i, k, line));
                        continue;
                    }
                    Some(Action::Code) => {
                        out_rec.push_field(v);
                        if is_code_token(v) {
                            // Shapes of identifiers, except card numbers: long SNOMED ids pass Luhn
                            // by chance (a column of card numbers is caught by its distinctness).
                            let sc = &mut self.scanner;
                            sc.scan(v, |k, _, _| {
                                if k != Kind::CardNumber {
                                    note(&mut residual, i, k, line);
                                }
                            });
                        } else {
                            note(&mut residual, i, Kind::NotACode, line);
                        }
                        continue;
                    }
                    _ => {}
                }
                scratch.clear();
                self.apply(c, v, shift, &mut scratch)
                    .map_err(|m| rdr.row_error(line, m))?;
                if c.action == Some(Action::ScanText) {
                    let sc = &mut self.scanner;
                    sc.scan(&scratch, |k, _, _| note(&mut residual, i, k, line));
                }
                if c.unchanged && scratch.as_slice() != v {
                    c.unchanged = false;
                }
                out_rec.push_field(&scratch);
            }
            if let Some(w) = &mut written {
                self.note_written(&mut cols, &written_idx, &out_rec, w);
                if w.len() > self.written_limit {
                    written = None;
                }
            }
            wtr.write(&out_rec)?;
            rows_out += 1;
        }
        self.written.insert(name.to_string(), written);
        let bytes_out = wtr.finish()?;
        let bytes_in = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);

        let mut hits: Vec<ResidualHit> = residual
            .into_iter()
            .map(|((i, kind), (count, lines))| ResidualHit {
                column: cols.get(i).map(|c| c.name.clone()).unwrap_or_default(),
                kind,
                count,
                lines,
            })
            .collect();
        hits.sort_by(|a, b| (&a.column, a.kind).cmp(&(&b.column, b.kind)));
        let redactions: u64 = cols.iter().map(|c| c.redactions).sum();
        // The input again: every column written, each cell as it came in, every row.
        let identical_to_input =
            rows_out == rows_in && redactions == 0 && cols.iter().all(|c| c.unchanged);
        let reference = self.reference.and_then(|r| r.tables.get(name));
        let mut identifying = Vec::new();
        for c in &cols {
            // A column the built-in profile treats as an identifier earns only under an action
            // at least as protective as the built-in one (dropped, pseudonymised, or the same
            // generalisation; noise no weaker): `noise: 0.0` on ZIP or coordinates is no
            // de-identification, whatever it does to the cells' bytes.
            if let (Some(b), Some(a)) = (&c.action, reference.and_then(|t| t.columns.get(&c.name)))
            {
                if !matches!(a, Action::Keep | Action::Code | Action::ScanText)
                    && !protects_as_much(b, a)
                {
                    identifying.push(IdentifyingColumn {
                        column: c.name.clone(),
                        action: b.name().to_string(),
                        why: format!(
                            "the built-in {HIPAA_SAFE_HARBOR} profile treats it as an identifier ({}); {} protects it less",
                            a.name(),
                            b.name()
                        ),
                    });
                    continue;
                }
            }
            let Some(distinct) = &c.distinct else {
                continue;
            };
            // Written as it came in: kept or coded (whatever `redact_when` took out of it), or
            // scanned or noised without changing a cell. (A date, ZIP or age transform that left
            // a cell as it was found it generalised already.)
            let as_is = match c.action {
                Some(Action::Keep | Action::Code) => true,
                Some(Action::ScanText | Action::Noise(_)) => c.unchanged,
                _ => false,
            };
            if !as_is {
                continue;
            }
            if let Some(a) = reference.and_then(|t| t.columns.get(&c.name)) {
                if !matches!(a, Action::Keep | Action::Code | Action::ScanText) {
                    identifying.push(IdentifyingColumn {
                        column: c.name.clone(),
                        action: c.action.as_ref().map_or("drop", Action::name).to_string(),
                        why: format!("the built-in {HIPAA_SAFE_HARBOR} profile treats it as an identifier ({})", a.name()),
                    });
                    continue;
                }
            }
            let n = u64::try_from(distinct.len()).unwrap_or(u64::MAX);
            if c.sampled >= DISTINCT_MIN
                && n * 100 >= DISTINCT_PERCENT * c.sampled
                && !c.all_fraction
            {
                identifying.push(IdentifyingColumn {
                    column: c.name.clone(),
                    action: c.action.as_ref().map_or("drop", Action::name).to_string(),
                    why: format!(
                        "{n} of its first {} values are distinct: it identifies rows",
                        c.sampled
                    ),
                });
            }
        }
        Ok(TableReport {
            table: name.to_string(),
            file: file_name,
            rows_in,
            rows_out,
            rows_sampled_out: sampled,
            rows_suppressed_k: supp_k,
            rows_suppressed_subject: supp_subject,
            columns: cols
                .iter()
                .map(|c| ColumnReport {
                    name: c.name.clone(),
                    action: c.action.as_ref().map_or("drop", Action::name).to_string(),
                    covered: c.action.is_some(),
                    redactions: c.redactions,
                })
                .collect(),
            absent_columns,
            k_anonymity: k_report,
            residual: hits,
            identical_to_input,
            identifying,
            bytes_in,
            bytes_out,
        })
    }

    /// Remembers the identifier-like values of a written row where the residual scan looks
    /// (cells outside the pseudonymised columns, and the tokens of free-text cells).
    fn note_written(
        &self,
        cols: &mut [Col],
        written_idx: &[usize],
        out_rec: &ByteRecord,
        w: &mut HashSet<u64>,
    ) {
        for (ci, v) in written_idx.iter().zip(out_rec.iter()) {
            let Some(c) = cols.get_mut(*ci) else { continue };
            let (cell, tokens) = c.check;
            if !cell || c.last_written == v {
                continue;
            }
            c.last_written.clear();
            c.last_written.extend_from_slice(v);
            if identifier_like(v) {
                let h = self.hasher.hash_one(v);
                if !c.recent_written.seen(h) {
                    w.insert(h);
                }
            }
            if tokens {
                for t in tokens_of(v) {
                    if identifier_like(t) {
                        let h = self.hasher.hash_one(t);
                        if !c.recent_written.seen(h) {
                            w.insert(h);
                        }
                    }
                }
            }
        }
    }

    /// Whether the residual scan must read `table`'s output: it wrote a remembered value that is
    /// an original identifier value, or it wrote too many to remember.
    fn may_hold_original_values(&self, table: &str) -> bool {
        match self.written.get(table) {
            Some(Some(w)) => w.iter().any(|h| self.ids.contains(h)),
            _ => true,
        }
    }

    /// The residual scan for original values: every written cell outside the pseudonymised
    /// columns (and every token of free-text cells) is looked up among the raw values of every
    /// table's identifier columns; each match is an `original_value` hit at its output line.
    /// Only tables that [may hold one](Self::may_hold_original_values) are read back.
    fn find_original_values(
        &self,
        report: &mut Report,
        staged: &Path,
    ) -> Result<(), SanitizeError> {
        if self.ids.is_empty() {
            return Ok(());
        }
        let mut rec = ByteRecord::new();
        for t in &mut report.tables {
            let Some(tp) = self.profile.tables.get(&t.table) else {
                continue;
            };
            if !self.may_hold_original_values(&t.table) {
                continue;
            }
            let (mut rdr, header) =
                TableReader::open(&staged.join(&t.file), self.profile.max_field_bytes)?;
            // (check the cell, check its tokens) per output column.
            let plan: Vec<(bool, bool)> = header
                .iter()
                .map(|h| match tp.columns.get(h) {
                    None | Some(Action::Drop | Action::Pseudonymize) => (false, false),
                    Some(Action::ScanText) => (true, true),
                    Some(_) => (true, false),
                })
                .collect();
            if !plan.iter().any(|p| p.0) {
                continue;
            }
            let mut found: HashMap<usize, (u64, Vec<u64>)> = HashMap::new();
            while let Some(line) = rdr.next(&mut rec)? {
                for (i, (v, (cell, tokens))) in rec.iter().zip(plan.iter()).enumerate() {
                    if !cell {
                        continue;
                    }
                    let mut hit = identifier_like(v) && self.ids.contains(&self.hasher.hash_one(v));
                    if !hit && *tokens {
                        hit = tokens_of(v).any(|w| {
                            identifier_like(w) && self.ids.contains(&self.hasher.hash_one(w))
                        });
                    }
                    if hit {
                        let e = found.entry(i).or_insert_with(|| (0, Vec::new()));
                        e.0 += 1;
                        if e.1.len() < 5 {
                            e.1.push(line);
                        }
                    }
                }
            }
            for (i, (count, lines)) in found {
                let column = header.get(i).cloned().unwrap_or_default();
                t.residual.push(ResidualHit {
                    column,
                    kind: Kind::OriginalValue,
                    count,
                    lines,
                });
                *report
                    .residual_total
                    .entry(Kind::OriginalValue)
                    .or_insert(0) += count;
            }
            t.residual
                .sort_by(|a, b| (&a.column, a.kind).cmp(&(&b.column, b.kind)));
        }
        Ok(())
    }

    /// The transformed quasi-identifiers of a row, joined by 0x1f, into `keybuf`.
    fn qi_key(
        &mut self,
        cols: &mut [Col],
        qi_idx: &[usize],
        rec: &ByteRecord,
        keybuf: &mut Vec<u8>,
    ) -> Result<(), String> {
        keybuf.clear();
        for &i in qi_idx {
            let v = rec.get(i).unwrap_or_default();
            if let Some(c) = cols.get_mut(i) {
                // Noise is not deterministic per value: use the raw value as the class key.
                if matches!(c.action, Some(Action::Noise(_))) {
                    keybuf.extend_from_slice(v);
                } else {
                    self.apply(c, v, 0, keybuf)?;
                }
            }
            keybuf.push(0x1f);
        }
        Ok(())
    }
}

fn note(residual: &mut HashMap<(usize, Kind), (u64, Vec<u64>)>, col: usize, kind: Kind, line: u64) {
    let e = residual
        .entry((col, kind))
        .or_insert_with(|| (0, Vec::new()));
    e.0 += 1;
    if e.1.len() < 5 {
        e.1.push(line);
    }
}

/// Whether action `b` protects a column at least as much as `a`, the built-in profile's action
/// for it: dropping and keyed pseudonyms always do; otherwise only a generalisation of the same
/// kind (a date to a year or shifted, an age capped at 90, a ZIP cut to three digits), and noise
/// only as large.
fn protects_as_much(b: &Action, a: &Action) -> bool {
    match (b, a) {
        (Action::Drop | Action::Pseudonymize, _) => true,
        (Action::Noise(fb), Action::Noise(fa)) => fb >= fa,
        (Action::GeneralizeDate(_), Action::GeneralizeDate(_))
        | (Action::AgeCap, Action::GeneralizeDate(_) | Action::AgeCap)
        | (Action::Zip3, Action::Zip3) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_with_too_many_written_values_to_remember_is_read_back_with_the_same_hits() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in");
        std::fs::create_dir(&input).unwrap();
        std::fs::write(
            input.join("people.csv"),
            "Id,MRN\nc0ffee-17,zq40411\nbeef-0042,zq77310\n",
        )
        .unwrap();
        std::fs::write(
            input.join("a_visits.csv"),
            "PERSON,WHO,NOTE\nc0ffee-17,c0ffee-17,seen\nbeef-0042,x,ref zq77310 called\n",
        )
        .unwrap();
        let p = Profile::from_yaml(
            "name: leaky\ninput_classification: restricted/phi\noutput_classification: internal\nreference_year: 2025\ntables:\n  people:\n    columns: { Id: pseudonymize, MRN: drop }\n  a_visits:\n    columns: { PERSON: pseudonymize, WHO: keep, NOTE: scan_text }\n",
            "leaky.yaml",
        )
        .unwrap();
        let opts = Options::new(Key::from_bytes(&[7; 32]).unwrap());
        let hits = |limit: usize, out: &str| {
            let r = sanitize_remembering(&p, &input, &tmp.path().join(out), &opts, limit).unwrap();
            let t = r.tables.iter().find(|t| t.table == "a_visits").unwrap();
            t.residual
                .iter()
                .map(|h| (h.column.clone(), h.kind, h.count, h.lines.clone()))
                .collect::<Vec<_>>()
        };
        let remembered = hits(MAX_WRITTEN_VALUES, "remembered");
        let read_back = hits(0, "read-back");
        // A table past the limit must be read back, not taken as clean.
        assert_eq!(remembered.len(), 2, "{remembered:?}");
        assert_eq!(remembered, read_back);
    }
}
