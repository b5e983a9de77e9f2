//! Prometheus metrics (`GET /metrics`): queue depth per zone, admissions, bursts, public spend,
//! decision latency, submissions. Served as OpenMetrics text to a client that asks for it
//! (`Accept: application/openmetrics-text`), else in the Prometheus text format 0.0.4
//! ([`negotiate`]).

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
    /// Times this replica took the scheduler lease (a leader that keeps it takes it once).
    pub lease_taken: Counter,
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
        let lease_taken = Counter::default();
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
            "scheduler_leases_taken",
            "Times this replica took the scheduler lease",
            lease_taken.clone(),
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
            lease_taken,
            http_connections,
        }
    }

    /// The OpenMetrics text exposition (ends with `# EOF`).
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// The exposition in `format`.
    pub fn render_as(&self, format: Format) -> Result<String, std::fmt::Error> {
        let text = self.render()?;
        Ok(match format {
            Format::OpenMetrics => text,
            Format::Prometheus => to_prometheus_text(&text),
        })
    }
}

/// An exposition format of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    Prometheus,
}

impl Format {
    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// The format an `Accept` header asks for: OpenMetrics when it accepts
/// `application/openmetrics-text` at least as much as plain text, else the Prometheus text
/// format (also without an `Accept` header).
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Prometheus;
    };
    let (mut open, mut plain) = (0.0_f64, 0.0_f64);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        match media.as_str() {
            "application/openmetrics-text" => open = open.max(q),
            "text/plain" | "text/*" | "*/*" => plain = plain.max(q),
            _ => {}
        }
    }
    if open > 0.0 && open >= plain {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    }
}

/// OpenMetrics text as the Prometheus text format 0.0.4: no `# EOF` or `# UNIT` lines, and a
/// counter family is named as its samples are (`x_total`), as that format expects.
fn to_prometheus_text(open_metrics: &str) -> String {
    let mut counters: Vec<String> = Vec::new();
    for line in open_metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.push(name.to_owned());
            }
        }
    }
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .iter()
                .any(|c| c == name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// One label.
pub fn label(name: &'static str, value: impl Into<String>) -> Labels {
    vec![(name, value.into())]
}

#[cfg(test)]
mod tests {
    use super::{negotiate, to_prometheus_text, Format};

    #[test]
    fn accept_headers_pick_the_format() {
        assert_eq!(negotiate(None), Format::Prometheus);
        assert_eq!(negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(negotiate(Some("text/plain")), Format::Prometheus);
        assert_eq!(
            negotiate(Some("application/openmetrics-text; version=1.0.0")),
            Format::OpenMetrics
        );
        // What Prometheus sends.
        assert_eq!(
            negotiate(Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")),
            Format::OpenMetrics
        );
        assert_eq!(
            negotiate(Some("text/plain;q=0.9, application/openmetrics-text;q=0.5")),
            Format::Prometheus
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text;q=0")),
            Format::Prometheus
        );
    }

    #[test]
    fn counters_are_named_by_their_samples_and_eof_goes() {
        let om = "# HELP tidegate_bursts Bursts.\n# TYPE tidegate_bursts counter\ntidegate_bursts_total 3\n# HELP tidegate_leader Leader.\n# TYPE tidegate_leader gauge\ntidegate_leader 1\n# UNIT tidegate_x seconds\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP tidegate_bursts_total Bursts.\n# TYPE tidegate_bursts_total counter\ntidegate_bursts_total 3\n# HELP tidegate_leader Leader.\n# TYPE tidegate_leader gauge\ntidegate_leader 1\n"
        );
    }
}
