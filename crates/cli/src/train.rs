//! `tidegate train`: the small real training workload of the cloud-burst pattern. It
//! reads a transferred feature projection (patients and conditions tables) from a zone's store,
//! builds one row per patient (age, sex, number of other recorded conditions), and fits a
//! logistic regression predicting whether the patient has a given condition code, by full-batch
//! gradient descent with L2. A deterministic 80/20 split by patient pseudonym gives held-out
//! accuracy, log loss and AUC. The model is written as JSON.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use clap::Args;
use miette::{miette, IntoDiagnostic, WrapErr};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tidegate_artifacts::{ArtifactStore, Digest};

/// Options of `tidegate train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Root of the zone's artifact store holding the transferred features.
    #[arg(long)]
    pub store: PathBuf,
    /// Digest of the transfer's copy manifest in that store.
    #[arg(long)]
    pub manifest: String,
    /// Condition code to predict (SNOMED CT; 59621000 is essential hypertension).
    #[arg(long, default_value = "59621000")]
    pub label_code: String,
    /// Learning rate.
    #[arg(long, default_value_t = 0.5)]
    pub lr: f64,
    /// L2 penalty.
    #[arg(long, default_value_t = 0.001)]
    pub l2: f64,
    /// Gradient steps.
    #[arg(long, default_value_t = 300)]
    pub epochs: u32,
    /// Year ages are computed against.
    #[arg(long, default_value_t = 2026)]
    pub reference_year: i32,
    /// Where to write the model JSON.
    #[arg(long, default_value = "model.json")]
    pub out: PathBuf,
}

#[derive(Debug, Deserialize)]
struct CopyManifest {
    dataset: String,
    tables: Vec<TableRef>,
}

#[derive(Debug, Deserialize)]
struct TableRef {
    table: String,
    digest: Digest,
}

/// Held-out quality of a model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Metrics {
    /// Training rows.
    pub train_rows: usize,
    /// Held-out rows.
    pub test_rows: usize,
    /// Held-out accuracy at 0.5.
    pub accuracy: f64,
    /// Held-out mean log loss.
    pub log_loss: f64,
    /// Held-out area under the ROC curve.
    pub auc: f64,
    /// Share of positive labels overall.
    pub positive_rate: f64,
}

/// A fitted model.
#[derive(Debug, Clone, Serialize)]
pub struct Model {
    /// `logistic-regression`.
    pub kind: &'static str,
    /// The dataset version its features came from.
    pub dataset: String,
    /// The copy manifest it read.
    pub input_manifest: String,
    /// What it predicts.
    pub label: String,
    /// Feature names, in weight order.
    pub features: Vec<&'static str>,
    /// Weights.
    pub weights: Vec<f64>,
    /// Intercept.
    pub bias: f64,
    /// Feature scaling: (mean, standard deviation) per feature.
    pub scaling: Vec<(f64, f64)>,
    /// Hyperparameters.
    pub hyperparameters: BTreeMap<String, serde_json::Value>,
    /// Held-out quality.
    pub metrics: Metrics,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Fits a logistic regression on standardised `x` (rows of equal length) and labels `y`.
/// Returns (weights, bias, scaling). Pure and deterministic.
pub fn fit(
    x: &[Vec<f64>],
    y: &[f64],
    lr: f64,
    l2: f64,
    epochs: u32,
) -> (Vec<f64>, f64, Vec<(f64, f64)>) {
    let d = x.first().map_or(0, Vec::len);
    #[allow(clippy::cast_precision_loss)]
    let n = x.len().max(1) as f64;
    let mut scaling = Vec::with_capacity(d);
    for j in 0..d {
        let mean = x.iter().map(|r| r[j]).sum::<f64>() / n;
        let var = x.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / n;
        scaling.push((mean, var.sqrt().max(1e-9)));
    }
    let z: Vec<Vec<f64>> = x
        .iter()
        .map(|r| {
            r.iter()
                .zip(&scaling)
                .map(|(v, (m, s))| (v - m) / s)
                .collect()
        })
        .collect();
    let mut w = vec![0.0; d];
    let mut b = 0.0;
    for _ in 0..epochs {
        let mut gw = vec![0.0; d];
        let mut gb = 0.0;
        for (row, &t) in z.iter().zip(y) {
            let p = sigmoid(row.iter().zip(&w).map(|(a, c)| a * c).sum::<f64>() + b);
            let e = p - t;
            for (g, v) in gw.iter_mut().zip(row) {
                *g += e * v;
            }
            gb += e;
        }
        for (wj, gj) in w.iter_mut().zip(&gw) {
            *wj -= lr * (gj / n + l2 * *wj);
        }
        b -= lr * gb / n;
    }
    (w, b, scaling)
}

fn predict(w: &[f64], b: f64, scaling: &[(f64, f64)], row: &[f64]) -> f64 {
    sigmoid(
        row.iter()
            .zip(scaling)
            .zip(w)
            .map(|((v, (m, s)), c)| (v - m) / s * c)
            .sum::<f64>()
            + b,
    )
}

/// Area under the ROC curve (rank statistic; ties count half).
pub fn auc(scores: &[f64], labels: &[f64]) -> f64 {
    let pos: Vec<f64> = scores
        .iter()
        .zip(labels)
        .filter(|(_, l)| **l > 0.5)
        .map(|(s, _)| *s)
        .collect();
    let neg: Vec<f64> = scores
        .iter()
        .zip(labels)
        .filter(|(_, l)| **l <= 0.5)
        .map(|(s, _)| *s)
        .collect();
    if pos.is_empty() || neg.is_empty() {
        return 0.5;
    }
    let mut wins = 0.0;
    for p in &pos {
        for q in &neg {
            wins += if p > q {
                1.0
            } else if (p - q).abs() < f64::EPSILON {
                0.5
            } else {
                0.0
            };
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let pairs = (pos.len() * neg.len()) as f64;
    wins / pairs
}

fn csv_rows(bytes: &[u8], table: &str, want: &[&str]) -> miette::Result<Vec<Vec<String>>> {
    let mut r = csv::Reader::from_reader(bytes);
    let header = r
        .headers()
        .into_diagnostic()
        .wrap_err_with(|| format!("table {table}: header"))?
        .clone();
    let idx: Vec<usize> = want
        .iter()
        .map(|c| {
            header.iter().position(|h| h == *c).ok_or_else(|| {
                miette!(
                    "table {table} has no column {c} (has: {})",
                    header.iter().collect::<Vec<_>>().join(", ")
                )
            })
        })
        .collect::<miette::Result<_>>()?;
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec
            .into_diagnostic()
            .wrap_err_with(|| format!("table {table}, row {}", i + 1))?;
        out.push(
            idx.iter()
                .map(|&j| rec.get(j).unwrap_or("").to_owned())
                .collect(),
        );
    }
    Ok(out)
}

/// Held out when the first byte of SHA-256(pseudonym) falls in the last fifth.
fn held_out(id: &str) -> bool {
    Sha256::digest(id.as_bytes())[0] >= 205
}

/// Runs the training.
///
/// # Errors
/// Unreadable or tampered inputs, missing columns, an unwritable output.
pub fn run(a: &TrainArgs) -> miette::Result<()> {
    let store = ArtifactStore::open(&a.store).map_err(|e| miette!("{e}"))?;
    let manifest_digest: Digest = a.manifest.parse().map_err(|e| miette!("--manifest: {e}"))?;
    let manifest: CopyManifest =
        serde_json::from_slice(&store.get(&manifest_digest).map_err(|e| miette!("{e}"))?)
            .into_diagnostic()
            .wrap_err("copy manifest")?;
    let table = |name: &str| -> miette::Result<Vec<u8>> {
        let t = manifest
            .tables
            .iter()
            .find(|t| t.table == name)
            .ok_or_else(|| miette!("the transfer carried no {name} table"))?;
        store.get(&t.digest).map_err(|e| miette!("{e}"))
    };
    let patients = csv_rows(
        &table("patients")?,
        "patients",
        &["Id", "BIRTHDATE", "GENDER"],
    )?;
    let conditions = csv_rows(&table("conditions")?, "conditions", &["PATIENT", "CODE"])?;
    let mut label: HashMap<&str, f64> = HashMap::new();
    let mut others: HashMap<&str, f64> = HashMap::new();
    for c in &conditions {
        if c[1] == a.label_code {
            label.insert(c[0].as_str(), 1.0);
        } else {
            *others.entry(c[0].as_str()).or_default() += 1.0;
        }
    }
    let (mut xtr, mut ytr, mut xte, mut yte) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for p in &patients {
        // Safe Harbor caps ages at 90: such a birth year reads `<=YYYY`, and counts as YYYY.
        let year: i32 = p[1]
            .trim_start_matches("<=")
            .get(..4)
            .and_then(|y| y.parse().ok())
            .unwrap_or(a.reference_year);
        let row = vec![
            f64::from(a.reference_year - year),
            if p[2] == "M" { 1.0 } else { 0.0 },
            others.get(p[0].as_str()).copied().unwrap_or(0.0),
        ];
        let y = label.get(p[0].as_str()).copied().unwrap_or(0.0);
        if held_out(&p[0]) {
            xte.push(row);
            yte.push(y);
        } else {
            xtr.push(row);
            ytr.push(y);
        }
    }
    if xtr.is_empty() || xte.is_empty() {
        return Err(miette!(
            "too few patients to train and hold out ({} rows)",
            patients.len()
        ));
    }
    let (w, b, scaling) = fit(&xtr, &ytr, a.lr, a.l2, a.epochs);
    let scores: Vec<f64> = xte.iter().map(|r| predict(&w, b, &scaling, r)).collect();
    #[allow(clippy::cast_precision_loss)]
    let nte = yte.len() as f64;
    let accuracy = scores
        .iter()
        .zip(&yte)
        .filter(|(s, y)| (**s >= 0.5) == (**y > 0.5))
        .count() as f64
        / nte;
    let log_loss = -scores
        .iter()
        .zip(&yte)
        .map(|(s, y)| {
            let s = s.clamp(1e-12, 1.0 - 1e-12);
            y * s.ln() + (1.0 - y) * (1.0 - s).ln()
        })
        .sum::<f64>()
        / nte;
    #[allow(clippy::cast_precision_loss)]
    let positive_rate =
        (ytr.iter().sum::<f64>() + yte.iter().sum::<f64>()) / (ytr.len() + yte.len()) as f64;
    let model = Model {
        kind: "logistic-regression",
        dataset: manifest.dataset,
        input_manifest: manifest_digest.to_string(),
        label: format!("has condition {}", a.label_code),
        features: vec!["age_years", "sex_male", "other_conditions"],
        weights: w,
        bias: b,
        scaling,
        hyperparameters: BTreeMap::from([
            ("lr".to_owned(), serde_json::json!(a.lr)),
            ("l2".to_owned(), serde_json::json!(a.l2)),
            ("epochs".to_owned(), serde_json::json!(a.epochs)),
        ]),
        metrics: Metrics {
            train_rows: xtr.len(),
            test_rows: xte.len(),
            accuracy,
            log_loss,
            auc: auc(&scores, &yte),
            positive_rate,
        },
    };
    let json = serde_json::to_vec_pretty(&model).into_diagnostic()?;
    std::fs::write(&a.out, json)
        .into_diagnostic()
        .wrap_err_with(|| format!("writing {}", a.out.display()))?;
    println!(
        "trained logistic regression on {} patients ({} held out): accuracy {:.3}, log loss {:.3}, AUC {:.3} -> {}",
        xtr.len() + xte.len(),
        xte.len(),
        model.metrics.accuracy,
        model.metrics.log_loss,
        model.metrics.auc,
        a.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_a_separable_signal_and_scores_auc() {
        // y = 1 when the first feature is large; the second is noise.
        let x: Vec<Vec<f64>> = (0..200)
            .map(|i| vec![f64::from(i % 20), f64::from((i * 7) % 13)])
            .collect();
        let y: Vec<f64> = x
            .iter()
            .map(|r| if r[0] >= 10.0 { 1.0 } else { 0.0 })
            .collect();
        let (w, b, s) = fit(&x, &y, 0.5, 0.0, 500);
        assert!(w[0] > 1.0 && w[0].abs() > 3.0 * w[1].abs(), "{w:?}");
        let scores: Vec<f64> = x.iter().map(|r| predict(&w, b, &s, r)).collect();
        assert!(auc(&scores, &y) > 0.99);
        assert!((auc(&[0.1, 0.2], &[1.0, 0.0]) - 0.0).abs() < 1e-12);
        assert!((auc(&[0.5, 0.5], &[1.0, 0.0]) - 0.5).abs() < 1e-12);
    }
}
