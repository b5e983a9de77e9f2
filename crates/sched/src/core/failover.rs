//! Capacity failover and the failure hierarchy: zone health and throttling, what a degraded or
//! unreachable private zone means for waiting jobs, and moving a job on, one site at a time.

use std::collections::VecDeque;

use tidegate_model::scheduling::scope_covers;
use tidegate_model::FailoverAction;

use super::{Effect, Health, JobId, Scheduler, Try, Waiting};
use crate::reason::{BurstReason, FailoverReason, QueueReason, RefuseReason};

impl Scheduler {
    /// The failure-hierarchy treatment of a job whose home zone is not healthy: `Err` = shed.
    pub(super) fn apply_hierarchy(&self, w: &mut Waiting) -> Result<(), RefuseReason> {
        let home = self.zone_name(w.home).to_string();
        let class = w.shape.class_name().to_string();
        let rule = self
            .rules
            .failover
            .on_degraded
            .iter()
            .find(|r| r.covers(&class));
        let mask = |to: &[String]| -> Vec<bool> {
            self.zones
                .iter()
                .enumerate()
                .map(|(i, z)| i != w.home && to.iter().any(|s| scope_covers(s, z)))
                .collect()
        };
        let Some(rule) = rule else {
            w.hold = Some(QueueReason::DegradedWaits { home, class });
            return Ok(());
        };
        match rule.action {
            FailoverAction::Wait => {
                w.hold = Some(QueueReason::DegradedWaits { home, class });
            }
            FailoverAction::Shed => {
                return Err(RefuseReason::DegradedShed { home, class });
            }
            FailoverAction::FailOver | FailoverAction::Downsize => {
                if rule
                    .max_classification
                    .is_some_and(|m| w.shape.data_level > m)
                {
                    w.hold = Some(QueueReason::DegradedClassified { home });
                    return Ok(());
                }
                if rule.action == FailoverAction::Downsize {
                    match w.shape.min_gpus.filter(|m| *m >= 1 && *m < w.shape.gpus) {
                        Some(m) => w.shape.gpus = m,
                        None => {
                            w.hold = Some(QueueReason::DegradedCannotDownsize { home });
                            return Ok(());
                        }
                    }
                }
                w.only = Some(mask(&rule.to));
                w.forced = Some(BurstReason::Hierarchy {
                    home,
                    class,
                    downsized: rule.action == FailoverAction::Downsize,
                    to: rule.to.clone(),
                });
            }
        }
        Ok(())
    }

    pub(super) fn clear_hierarchy(w: &mut Waiting) {
        w.hold = None;
        w.only = None;
        w.forced = None;
        w.shape.gpus = w.asked_gpus;
    }

    /// A job needs public capacity and all of it is throttled.
    pub(super) fn stranded(&self, w: &Waiting) -> bool {
        !w.cands.iter().any(|c| !c.public)
            && w.cands
                .iter()
                .filter(|c| c.public)
                .all(|c| self.throttled.get(c.zone).copied().unwrap_or(true))
    }

    pub(super) fn sheds_on_throttle(&self, w: &Waiting) -> bool {
        let class = w.shape.class_name();
        self.rules
            .failover
            .throttle_shed
            .iter()
            .any(|c| c == "*" || c == class)
    }

    /// The backend reported that the job's pool has no capacity (e.g. no H200 left in the
    /// region): the admission is withdrawn and the job moves to its next allowed option in order,
    /// one site at a time.
    pub fn no_capacity(&mut self, id: JobId, now: f64) -> Vec<Effect> {
        self.advance(now);
        let Some((z, p)) = self.running.get(&id).map(|r| (r.zone, r.pool)) else {
            return vec![];
        };
        let zone = self.zone_name(z).to_string();
        let pool = self.pool_name(z, p).to_string();
        self.hop(id, FailoverReason::NoCapacity { zone, pool }, now)
    }

    /// The shell's policy re-check refused the job at `zone`/`pool`: that option is struck off
    /// the job's list. A job admitted there moves on to its next option (as for
    /// [`Scheduler::no_capacity`]); a queued job left with no option is refused.
    pub fn reject_candidate(
        &mut self,
        id: JobId,
        zone: usize,
        pool: usize,
        reason: &str,
        now: f64,
    ) -> Vec<Effect> {
        self.advance(now);
        if self
            .running
            .get(&id)
            .is_some_and(|r| r.zone == zone && r.pool == pool)
        {
            return self.hop(
                id,
                FailoverReason::PolicyRecheck {
                    text: reason.to_string(),
                },
                now,
            );
        }
        if let Some(r) = self.running.get_mut(&id) {
            r.job.excluded.push((zone, pool));
            return vec![];
        }
        for q in &mut self.queues {
            if let Some(w) = q.iter_mut().find(|w| w.id == id) {
                w.excluded.push((zone, pool));
                if w.cands
                    .iter()
                    .all(|c| w.excluded.contains(&(c.zone, c.pool)))
                {
                    self.dequeue(id);
                    return vec![Effect::Refused {
                        job: id,
                        reason: RefuseReason::RecheckRefused {
                            text: reason.to_string(),
                        },
                    }];
                }
                return vec![];
            }
        }
        vec![]
    }

    pub(super) fn hop(&mut self, id: JobId, reason: FailoverReason, now: f64) -> Vec<Effect> {
        let Some(r) = self.unrun(id, true) else {
            return vec![];
        };
        let mut out = Vec::new();
        let mut w = r.job;
        w.excluded.push((r.zone, r.pool));
        w.failovers += 1;
        out.push(Effect::Failover {
            job: id,
            from_zone: r.zone,
            from_pool: r.pool,
            attempt: w.failovers,
            reason: reason.clone(),
            at: now,
        });
        if w.cands
            .iter()
            .all(|c| w.excluded.contains(&(c.zone, c.pool)))
        {
            out.push(Effect::Refused {
                job: id,
                reason: RefuseReason::NoOptionLeft {
                    attempts: w.failovers,
                    last: reason,
                },
            });
            self.drain(now, &mut out);
            return out;
        }
        // It was admitted once, so moving on to a public option needs no fresh queue pressure.
        if w.forced.is_none() {
            w.forced = Some(BurstReason::Failover(reason.clone()));
        }
        match self.try_start(&w, 0, now, &mut out) {
            Try::Started => {}
            Try::Blocked(b) => {
                let why = b.unwrap_or(QueueReason::AwaitingFailover(reason));
                w.last_reason = Some(why.clone());
                out.push(Effect::Queued {
                    job: id,
                    zone: w.home,
                    reason: why,
                });
                if let Some(q) = self.queued_gpu_s.get_mut(w.home) {
                    *q += f64::from(w.shape.gpus) * w.shape.expected_s;
                }
                if let Some(q) = self.queues.get_mut(w.home) {
                    q.push_front(w);
                }
            }
        }
        // Its old pool is free again.
        self.drain(now, &mut out);
        out
    }

    /// Records a zone's health. While a private zone is not healthy nothing new is admitted
    /// there and its queued jobs follow the fleet's failure hierarchy (fail over, wait, shed or
    /// downsize); when it is healthy again they return to normal.
    pub fn set_zone_health(&mut self, zone: usize, health: Health, now: f64) -> Vec<Effect> {
        self.advance(now);
        let mut out = Vec::new();
        let Some(h) = self.health.get_mut(zone) else {
            return out;
        };
        *h = health;
        let private = self.zones.get(zone).is_some_and(|z| z.tier.is_private());
        let Some(mut q) = self.queues.get_mut(zone).map(std::mem::take) else {
            return out;
        };
        let mut kept = VecDeque::with_capacity(q.len());
        while let Some(mut w) = q.pop_front() {
            if w.hold.is_some() || w.only.is_some() {
                Self::clear_hierarchy(&mut w);
            }
            if health != Health::Healthy && private {
                if let Err(reason) = self.apply_hierarchy(&mut w) {
                    if let Some(g) = self.queued_gpu_s.get_mut(zone) {
                        *g = (*g - f64::from(w.asked_gpus) * w.shape.expected_s).max(0.0);
                    }
                    out.push(Effect::Refused { job: w.id, reason });
                    continue;
                }
                if let Some(hold) = w.hold.clone() {
                    if w.last_reason.as_ref() != Some(&hold) {
                        w.last_reason = Some(hold.clone());
                        out.push(Effect::Queued {
                            job: w.id,
                            zone,
                            reason: hold,
                        });
                    }
                }
            }
            kept.push_back(w);
        }
        if let Some(slot) = self.queues.get_mut(zone) {
            *slot = kept;
        }
        self.drain(now, &mut out);
        out
    }

    /// Marks a (public) zone throttled by its provider, or not. While throttled nothing new is
    /// admitted there; queued jobs that need it are shed if their class is in the fleet's
    /// `on_throttle.shed` list (batch first) and otherwise stay queued.
    pub fn set_throttled(&mut self, zone: usize, throttled: bool, now: f64) -> Vec<Effect> {
        self.advance(now);
        if let Some(t) = self.throttled.get_mut(zone) {
            *t = throttled;
        }
        self.after_throttle(now)
    }

    /// Marks every zone of a provider throttled, or not (see [`Scheduler::set_throttled`]).
    pub fn set_provider_throttled(
        &mut self,
        provider: &str,
        throttled: bool,
        now: f64,
    ) -> Vec<Effect> {
        self.advance(now);
        for (i, z) in self.zones.iter().enumerate() {
            if z.provider == provider {
                if let Some(t) = self.throttled.get_mut(i) {
                    *t = throttled;
                }
            }
        }
        self.after_throttle(now)
    }

    pub(super) fn after_throttle(&mut self, now: f64) -> Vec<Effect> {
        let mut out = Vec::new();
        for zone in 0..self.queues.len() {
            let Some(q) = self.queues.get_mut(zone).map(std::mem::take) else {
                continue;
            };
            let mut kept = VecDeque::with_capacity(q.len());
            for mut w in q {
                if self.stranded(&w) {
                    if self.sheds_on_throttle(&w) {
                        if let Some(g) = self.queued_gpu_s.get_mut(zone) {
                            *g = (*g - f64::from(w.shape.gpus) * w.shape.expected_s).max(0.0);
                        }
                        out.push(Effect::Refused {
                            job: w.id,
                            reason: RefuseReason::ThrottledShed,
                        });
                        continue;
                    }
                    let why = QueueReason::Throttled;
                    if w.last_reason.as_ref() != Some(&why) {
                        w.last_reason = Some(why.clone());
                        out.push(Effect::Queued {
                            job: w.id,
                            zone,
                            reason: why,
                        });
                    }
                }
                kept.push_back(w);
            }
            if let Some(slot) = self.queues.get_mut(zone) {
                *slot = kept;
            }
        }
        self.drain(now, &mut out);
        out
    }
}
