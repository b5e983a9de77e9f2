//! Measuring durable submits: `threads` writers each submit `per_thread` jobs with idempotency
//! keys through a [`Store`]; every submit is acknowledged only once durable, so the rate is the
//! store's durable submit rate. Used by the `tidegate bench store` command and the
//! `bench_store` example.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::record::{JobId, NewJob, Timestamp};
use crate::{Store, StoreError};

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct SubmitBench {
    /// Store description.
    pub store: String,
    /// Concurrent writers.
    pub threads: usize,
    /// Acknowledged submits.
    pub submits: usize,
    /// Wall time of the run, seconds.
    pub elapsed_s: f64,
    /// Acknowledged submits per second.
    pub submits_per_sec: f64,
    /// Median submit latency, microseconds.
    pub p50_us: u64,
    /// 99th percentile submit latency, microseconds.
    pub p99_us: u64,
    /// Slowest submit, microseconds.
    pub max_us: u64,
}

/// Runs the benchmark. Job ids and keys carry `run` so that runs against one store do not collide.
pub fn submits(
    store: &dyn Store,
    threads: usize,
    per_thread: usize,
    run: &str,
) -> Result<SubmitBench, StoreError> {
    let threads = threads.max(1);
    let started = Instant::now();
    let results: Vec<Result<Vec<Duration>, StoreError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut lat = Vec::with_capacity(per_thread);
                    for i in 0..per_thread {
                        let job = NewJob {
                            id: JobId::new(format!("bench-{run}-{t}-{i}"))?,
                            name: format!("bench-{i}"),
                            team: "bench".into(),
                            spec: serde_json::json!({"name": format!("bench-{i}"), "team": "bench", "kind": "train",
                                "resources": {"gpus": 8, "gpu_type": "h100"}, "labels": {"thread": t}}),
                            idempotency_key: Some(format!("bench-{run}-{t}-{i}")),
                            reason: None,
                            at: Timestamp::now(),
                        };
                        let t0 = Instant::now();
                        store.submit(job)?;
                        lat.push(t0.elapsed());
                    }
                    Ok(lat)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(StoreError::Invalid {
                        field: "threads",
                        reason: "a benchmark thread panicked".into(),
                    })
                })
            })
            .collect()
    });
    let elapsed = started.elapsed();
    let mut lat: Vec<Duration> = Vec::new();
    for r in results {
        lat.extend(r?);
    }
    lat.sort_unstable();
    let pct = |p: f64| {
        let idx = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat.get(idx)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    };
    Ok(SubmitBench {
        store: store.describe(),
        threads,
        submits: lat.len(),
        elapsed_s: elapsed.as_secs_f64(),
        submits_per_sec: lat.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        max_us: pct(1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JobFilter, PageRequest, SqliteOptions, SqliteStore};

    #[test]
    fn counts_every_acknowledged_submit() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Invalid {
            field: "dir",
            reason: e.to_string(),
        })?;
        let s = SqliteStore::open(dir.path(), SqliteOptions::default())?;
        let r = submits(&s, 3, 20, "t")?;
        assert_eq!(r.submits, 60);
        assert!(r.p50_us <= r.p99_us && r.p99_us <= r.max_us);
        assert_eq!(
            s.list(&JobFilter::default(), PageRequest::first(100))?
                .jobs
                .len(),
            60
        );
        Ok(())
    }
}
