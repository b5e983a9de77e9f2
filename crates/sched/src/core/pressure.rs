//! Burst pressure: when a waiting job may spill to public capacity (queue depth, wait over its
//! SLA, deadline slack, or a forced burst), with the thresholds of its class.

use super::{ClassThresholds, Scheduler, Waiting};
use crate::reason::BurstReason;

/// Why a job may burst (formatted only when it does).
pub(super) enum Pressure {
    Forced,
    OnlyPublic,
    Depth(usize, usize),
    Sla(f64, f64),
    Slack(f64, f64),
}

impl Pressure {
    pub(super) fn reason(&self, w: &Waiting) -> Option<BurstReason> {
        match self {
            Self::Forced => w.forced.clone(),
            Self::OnlyPublic => Some(BurstReason::OnlyPublic),
            Self::Depth(p, d) => Some(BurstReason::QueueDepth {
                depth: *p,
                threshold: *d,
            }),
            Self::Sla(e, m) => Some(BurstReason::WaitOverSla {
                expected_s: *e,
                max_s: *m,
            }),
            Self::Slack(s, m) => Some(BurstReason::DeadlineSlack {
                slack_s: *s,
                min_s: *m,
            }),
        }
    }
}

impl Scheduler {
    pub(super) fn thresholds(&self, class: &str) -> Option<&ClassThresholds> {
        self.cfg.classes.get(class)
    }

    /// Why this job should spill to public capacity now, if it should.
    pub(super) fn pressure(
        &self,
        w: &Waiting,
        home: usize,
        position: usize,
        now: f64,
    ) -> Option<Pressure> {
        if w.forced.is_some() {
            return Some(Pressure::Forced);
        }
        if !w.cands.iter().any(|c| !c.public) {
            return Some(Pressure::OnlyPublic);
        }
        let th = self.thresholds(w.shape.class_name());
        let depth = th
            .and_then(|t| t.burst_queue_depth)
            .unwrap_or(self.cfg.burst_queue_depth);
        if position >= depth {
            return Some(Pressure::Depth(position, depth));
        }
        let ahead_s = self.queued_gpu_s.get(home).copied().unwrap_or(0.0)
            / f64::from(self.zone_gpus.get(home).copied().unwrap_or(1).max(1));
        let waited = now - w.submitted;
        if let Some(max) = w.shape.max_wait_s.or_else(|| th.and_then(|t| t.max_wait_s)) {
            if waited + ahead_s > max {
                return Some(Pressure::Sla(waited + ahead_s, max));
            }
        }
        if let Some(d) = w.shape.deadline_s {
            let min_slack = th.and_then(|t| t.min_deadline_slack_s).unwrap_or(0.0);
            let slack = d - now - ahead_s - w.shape.expected_s;
            if slack < min_slack {
                return Some(Pressure::Slack(slack, min_slack));
            }
        }
        None
    }
}
