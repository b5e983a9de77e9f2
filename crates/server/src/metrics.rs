//! Prometheus metrics (`GET /metrics`): queue depth per zone, admissions, bursts, public spend,
//! decision latency, submissions.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The control plane's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Jobs waiting per zone.
    pub queue_depth: Family<Labels, Gauge>,
    /// Jobs running per zone.
    pub running: Family<Labels, Gauge>,
    /// Admissions per zone and whether they were bursts.
    pub admissions: Family<Labels, Counter>,
    /// Bursts to public capacity.
    pub bursts: Counter,
    /// Jobs refused (no allowed place).
    pub refusals: Counter,
    /// Estimated public spend admitted, in the fleet's currency.
    pub public_spend: Counter<f64, AtomicU64>,
    /// Time to place and schedule one job, seconds.
    pub decision_latency: Histogram,
    /// Submissions accepted (new and replayed).
    pub submissions: Family<Labels, Counter>,
    /// 1 while this replica holds the scheduler lease.
    pub leader: Gauge,
    /// HTTP connections being served.
    pub http_connections: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tidegate");
        let queue_depth = Family::<Labels, Gauge>::default();
        let running = Family::<Labels, Gauge>::default();
        let admissions = Family::<Labels, Counter>::default();
        let bursts = Counter::default();
        let refusals = Counter::default();
        let public_spend = Counter::<f64, AtomicU64>::default();
        let decision_latency = Histogram::new(exponential_buckets(0.000_01, 4.0, 10));
        let submissions = Family::<Labels, Counter>::default();
        let leader = Gauge::default();
        let http_connections = Gauge::default();
        registry.register(
            "queue_depth",
            "Jobs waiting in each zone's queue",
            queue_depth.clone(),
        );
        registry.register("running_jobs", "Jobs running in each zone", running.clone());
        registry.register(
            "admissions",
            "Jobs admitted, by zone and burst",
            admissions.clone(),
        );
        registry.register("bursts", "Jobs admitted to public capacity", bursts.clone());
        registry.register(
            "refusals",
            "Jobs refused: no allowed zone can ever run them",
            refusals.clone(),
        );
        registry.register(
            "public_spend",
            "Estimated cost of work admitted to public capacity",
            public_spend.clone(),
        );
        registry.register(
            "decision_latency_seconds",
            "Time to place and schedule one submitted job",
            decision_latency.clone(),
        );
        registry.register(
            "submissions",
            "Submissions accepted, by outcome",
            submissions.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica runs the scheduler loop",
            leader.clone(),
        );
        registry.register(
            "http_connections",
            "HTTP connections being served (at most the configured bound)",
            http_connections.clone(),
        );
        Self {
            registry,
            queue_depth,
            running,
            admissions,
            bursts,
            refusals,
            public_spend,
            decision_latency,
            submissions,
            leader,
            http_connections,
        }
    }

    /// The text exposition.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// One label.
pub fn label(name: &'static str, value: impl Into<String>) -> Labels {
    vec![(name, value.into())]
}
