//! Measured run times of Pollux workload jobs, from the application profiles the Pollux
//! artifact ships (`pollux-profiles/APP/`: `placements.csv`, `scalability.csv`,
//! `validation-BSZ.csv`), derived for a job's application, replicas and batch size:
//!
//! - each application trains for a fixed number of epochs ([`EPOCHS`]);
//! - the iterations that takes at the job's total batch size come from the validation files
//!   (cumulative `iteration` at the last epoch), interpolated in log batch size between the
//!   measured sizes (clamped outside them);
//! - each iteration's time comes from `placements.csv` at the job's placement (replicas packed
//!   onto nodes of [`GPUS_PER_NODE`] GPUs, digits = GPUs per node, ascending) or, beyond four
//!   nodes, `scalability.csv` at its node and replica count, interpolated linearly in the local
//!   batch size (total / replicas); a local batch above the largest measured one (for yolov3,
//!   above 8) is split into accumulation steps, each costing one step.
//!
//! The run time is iterations x iteration time: the job on its requested replicas, fixed, as a
//! scheduler that does not adapt batch sizes or allocations runs it.

use std::collections::BTreeMap;
use std::path::Path;

use crate::TraceError;

/// Epochs each application trains for.
pub const EPOCHS: [(&str, u32); 6] = [
    ("bert", 2),
    ("cifar10", 100),
    ("ncf", 10),
    ("imagenet", 90),
    ("deepspeech2", 80),
    ("yolov3", 50),
];

/// GPUs per node of the Pollux paper's cluster (16 nodes of 4 GPUs).
pub const GPUS_PER_NODE: u32 = 4;

/// The largest local batch an application takes in one step when its profile says less than
/// its measurements (yolov3's is capped at 8).
const LOCAL_CAP: [(&str, f64); 1] = [("yolov3", 8.0)];

/// One application's measured profile.
#[derive(Debug, Clone, Default)]
struct App {
    /// Step time by placement: (local batch, seconds), sorted by local batch.
    placements: BTreeMap<String, Vec<(f64, f64)>>,
    /// Step time by (nodes, replicas): (local batch, seconds), sorted.
    scalability: BTreeMap<(u32, u32), Vec<(f64, f64)>>,
    /// Iterations to the last epoch by total batch size: (ln batch, iterations), sorted.
    iterations: Vec<(f64, f64)>,
}

/// The measured profiles of every application.
#[derive(Debug, Clone, Default)]
pub struct Profiles {
    apps: BTreeMap<String, App>,
}

/// How a run time was derived.
#[derive(Debug, Clone, PartialEq)]
pub struct RunTime {
    /// Seconds.
    pub seconds: f64,
    /// Iterations to the last epoch at the batch size.
    pub iterations: f64,
    /// Seconds per iteration (accumulation steps included).
    pub iteration_s: f64,
    /// Accumulation steps per iteration.
    pub accumulation: u32,
    /// The placement (`placements.csv`) or `nodes x replicas` (`scalability.csv`) used.
    pub measured_at: String,
}

/// A CSV file's rows: 1-based line, fields.
type Rows = Vec<(usize, Vec<String>)>;

fn parse_rows(path: &Path) -> Result<(Vec<String>, Rows), TraceError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TraceError::Io {
        path: p.clone(),
        source,
    })?;
    let mut lines = text.lines().enumerate();
    let header: Vec<String> = lines
        .next()
        .map(|(_, h)| h.split(',').map(|c| c.trim().to_owned()).collect())
        .unwrap_or_default();
    let rows = lines
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| (n + 1, l.split(',').map(|c| c.trim().to_owned()).collect()))
        .collect();
    Ok((header, rows))
}

/// Reads numeric columns `want` of every row of a CSV profile.
fn columns(path: &Path, want: &[&str]) -> Result<Rows, TraceError> {
    let (header, rows) = parse_rows(path)?;
    let p = path.display().to_string();
    let idx: Vec<usize> = want
        .iter()
        .map(|w| {
            header
                .iter()
                .position(|h| h == w)
                .ok_or_else(|| TraceError::Row {
                    path: p.clone(),
                    line: 1,
                    field: (*w).to_owned(),
                    message: format!("no column `{w}` (header: {})", header.join(",")),
                })
        })
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(line, f)| {
            let picked = idx
                .iter()
                .map(|&i| {
                    f.get(i).cloned().ok_or_else(|| TraceError::Row {
                        path: p.clone(),
                        line,
                        field: header.get(i).cloned().unwrap_or_default(),
                        message: format!("expected {} fields, found {}", header.len(), f.len()),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((line, picked))
        })
        .collect()
}

fn number(path: &Path, line: usize, field: &str, v: &str) -> Result<f64, TraceError> {
    v.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 0.0)
        .ok_or_else(|| TraceError::Row {
            path: path.display().to_string(),
            line,
            field: field.to_owned(),
            message: format!("`{v}` is not a non-negative number"),
        })
}

fn sorted(mut v: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// Linear interpolation in sorted points, clamped to the ends.
fn interpolate(points: &[(f64, f64)], x: f64) -> Option<f64> {
    let first = points.first()?;
    let last = points.last()?;
    if x <= first.0 {
        return Some(first.1);
    }
    if x >= last.0 {
        return Some(last.1);
    }
    points.windows(2).find_map(|w| match w {
        [(a, fa), (b, fb)] if *a <= x && x <= *b => Some(if b > a {
            fa + (fb - fa) * (x - a) / (b - a)
        } else {
            *fa
        }),
        _ => None,
    })
}

/// The placement of `replicas` packed onto nodes of [`GPUS_PER_NODE`] GPUs: GPUs per node,
/// ascending (`6` -> `24`).
pub fn packed_placement(replicas: u32) -> String {
    let (full, rest) = (replicas / GPUS_PER_NODE, replicas % GPUS_PER_NODE);
    let mut digits: Vec<u32> = std::iter::repeat_n(GPUS_PER_NODE, full as usize).collect();
    if rest > 0 {
        digits.push(rest);
    }
    digits.sort_unstable();
    digits.iter().map(u32::to_string).collect()
}

impl Profiles {
    /// Loads every application of [`EPOCHS`] from `dir/APP/`. An application whose directory is
    /// missing is an error naming it.
    pub fn load(dir: &Path) -> Result<Self, TraceError> {
        let mut apps = BTreeMap::new();
        for (name, epochs) in EPOCHS {
            let d = dir.join(name);
            let mut app = App::default();
            let pl = d.join("placements.csv");
            for (line, f) in columns(&pl, &["placement", "local_bsz", "step_time"])? {
                let (Some(placement), Some(b), Some(t)) = (f.first(), f.get(1), f.get(2)) else {
                    continue;
                };
                let point = (
                    number(&pl, line, "local_bsz", b)?,
                    number(&pl, line, "step_time", t)?,
                );
                app.placements
                    .entry(placement.clone())
                    .or_insert_with(Vec::new)
                    .push(point);
            }
            let sc = d.join("scalability.csv");
            for (line, f) in columns(
                &sc,
                &["num_nodes", "num_replicas", "local_bsz", "step_time"],
            )? {
                let (Some(n), Some(r), Some(b), Some(t)) =
                    (f.first(), f.get(1), f.get(2), f.get(3))
                else {
                    continue;
                };
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let key = (
                    number(&sc, line, "num_nodes", n)? as u32,
                    number(&sc, line, "num_replicas", r)? as u32,
                );
                let point = (
                    number(&sc, line, "local_bsz", b)?,
                    number(&sc, line, "step_time", t)?,
                );
                app.scalability
                    .entry(key)
                    .or_insert_with(Vec::new)
                    .push(point);
            }
            let entries = std::fs::read_dir(&d).map_err(|source| TraceError::Io {
                path: d.display().to_string(),
                source,
            })?;
            for e in entries.filter_map(Result::ok) {
                let file = e.file_name().to_string_lossy().into_owned();
                let Some(bsz) = file
                    .strip_prefix("validation-")
                    .and_then(|s| s.strip_suffix(".csv"))
                    .and_then(|s| s.parse::<f64>().ok())
                    .filter(|b| *b > 0.0)
                else {
                    continue;
                };
                let path = e.path();
                let rows = columns(&path, &["iteration"])?;
                // The cumulative iterations at the last epoch trained (or the last measured).
                let at = rows.get((epochs as usize).min(rows.len()).saturating_sub(1));
                if let Some((line, f)) = at {
                    let it = number(
                        &path,
                        *line,
                        "iteration",
                        f.first().map_or("", String::as_str),
                    )?;
                    app.iterations.push((bsz.ln(), it));
                }
            }
            for v in app.placements.values_mut() {
                *v = sorted(std::mem::take(v));
            }
            for v in app.scalability.values_mut() {
                *v = sorted(std::mem::take(v));
            }
            app.iterations = sorted(app.iterations);
            if app.placements.is_empty() || app.iterations.is_empty() {
                return Err(TraceError::Row {
                    path: d.display().to_string(),
                    line: 1,
                    field: "profile".into(),
                    message: format!("no placements or validation measurements for {name}"),
                });
            }
            apps.insert(name.to_owned(), app);
        }
        Ok(Self { apps })
    }

    /// The run time of `app` on `replicas` GPUs at total batch size `batch_size`; `None` for an
    /// application without a profile.
    pub fn run_time(&self, app: &str, replicas: u32, batch_size: f64) -> Option<RunTime> {
        let a = self.apps.get(app)?;
        let replicas = replicas.max(1);
        let key = packed_placement(replicas);
        let nodes = replicas.div_ceil(GPUS_PER_NODE);
        let (steps, measured_at) = match a.placements.get(&key) {
            Some(s) => (s, key),
            None => {
                // Beyond the placements measured: the scalability rows at this node and replica
                // count, or the nearest replica count measured.
                let (k, s) = a
                    .scalability
                    .get_key_value(&(nodes, replicas))
                    .or_else(|| {
                        a.scalability
                            .iter()
                            .min_by_key(|((_, r), _)| r.abs_diff(replicas))
                    })?;
                (s, format!("{} nodes x {} replicas", k.0, k.1))
            }
        };
        let measured_max = steps.last().map_or(1.0, |p| p.0);
        let cap = LOCAL_CAP
            .iter()
            .find(|(n, _)| *n == app)
            .map_or(measured_max, |(_, c)| c.min(measured_max));
        let local = batch_size / f64::from(replicas);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let accumulation = ((local / cap.max(1e-9)) - 1e-9).ceil().max(1.0) as u32;
        let step = interpolate(steps, local / f64::from(accumulation))?;
        let iteration_s = step * f64::from(accumulation);
        let iterations = interpolate(&a.iterations, batch_size.max(1.0).ln())?;
        Some(RunTime {
            seconds: iterations * iteration_s,
            iterations,
            iteration_s,
            accumulation,
            measured_at,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn replicas_are_packed_onto_four_gpu_nodes() {
        assert_eq!(packed_placement(1), "1");
        assert_eq!(packed_placement(4), "4");
        assert_eq!(packed_placement(6), "24");
        assert_eq!(packed_placement(16), "4444");
    }

    #[test]
    fn interpolation_is_linear_and_clamped() {
        let p = [(1.0, 10.0), (3.0, 30.0)];
        assert_eq!(interpolate(&p, 2.0), Some(20.0));
        assert_eq!(interpolate(&p, 0.0), Some(10.0));
        assert_eq!(interpolate(&p, 9.0), Some(30.0));
        assert_eq!(interpolate(&[], 1.0), None);
    }
}
