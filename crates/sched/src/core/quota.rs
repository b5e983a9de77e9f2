//! Team quotas: whether a team may take GPUs in a zone, reclaim of lent capacity by preemption,
//! and requeueing what was preempted or evicted.

use super::{pool_slot, slot, Candidate, Effect, JobId, Running, Scheduler, TeamState, Waiting};
use crate::reason::{PreemptReason, QueueReason};

impl Scheduler {
    /// Quota check: `Some(borrowed)` when the team may take `gpus` in the zone.
    pub(super) fn quota(&self, team: usize, zone: usize, gpus: u32) -> Option<bool> {
        if !self.quotas {
            return Some(false);
        }
        let t = self.teams.get(team)?;
        let b = *t.bucket.get(zone)?;
        let used = slot(&t.used, b);
        let nominal = slot(&t.nominal, b);
        let after = used + gpus;
        if after <= nominal {
            return Some(false);
        }
        let over = after - nominal;
        if t.limit.is_some_and(|l| over > l) {
            return None;
        }
        Some(true)
    }

    /// Frees room for a team within its nominal quota by preempting borrowed work in one pool.
    pub(super) fn reclaim(
        &mut self,
        w: &Waiting,
        c: &Candidate,
        now: f64,
        out: &mut Vec<Effect>,
    ) -> bool {
        let gpus = w.shape.gpus;
        let free = pool_slot(&self.free, c.zone, c.pool);
        let borrowed = pool_slot(&self.borrowed_in_pool, c.zone, c.pool);
        if free + borrowed < gpus {
            return false;
        }
        let over_nominal = |t: &TeamState, zone: usize| {
            let b = slot(&t.bucket, zone);
            slot(&t.used, b) > slot(&t.nominal, b)
        };
        // Newest borrowed work first (the map is ordered by admission).
        let victims: Vec<(JobId, u32)> = self
            .borrowed_jobs
            .get(c.zone)
            .and_then(|z| z.get(c.pool))
            .into_iter()
            .flat_map(|m| m.values().rev())
            .filter_map(|id| self.running.get(id).map(|r| (*id, r)))
            .filter(|(_, r)| {
                r.job.team != w.team
                    && self
                        .teams
                        .get(r.job.team)
                        .is_some_and(|t| over_nominal(t, r.zone))
            })
            .map(|(id, r)| (id, r.gpus))
            .collect();
        let mut got = free;
        let mut take = Vec::new();
        for (id, g) in victims {
            if got >= gpus {
                break;
            }
            got += g;
            take.push(id);
        }
        if got < gpus {
            return false;
        }
        let team = self
            .teams
            .get(w.team)
            .map_or_else(String::new, |t| t.name.clone());
        for id in take {
            if let Some(r) = self.unrun(id, false) {
                self.requeue_preempted(
                    r,
                    PreemptReason::Reclaimed { team: team.clone() },
                    QueueReason::Reclaimed,
                    now,
                    out,
                );
            }
        }
        true
    }

    /// A running job stopped for other work: `Preempted`, then back at the front of its home
    /// queue with all its options (`Queued`).
    pub(super) fn requeue_preempted(
        &mut self,
        r: Running,
        reason: PreemptReason,
        waits: QueueReason,
        now: f64,
        out: &mut Vec<Effect>,
    ) {
        let mut j = r.job;
        let id = j.id;
        out.push(Effect::Preempted {
            job: id,
            zone: r.zone,
            pool: r.pool,
            reason,
            at: now,
        });
        j.last_reason = Some(waits.clone());
        let home = j.home;
        if let Some(q) = self.queued_gpu_s.get_mut(home) {
            *q += f64::from(j.shape.gpus) * j.shape.expected_s;
        }
        out.push(Effect::Queued {
            job: id,
            zone: home,
            reason: waits,
        });
        if let Some(q) = self.queues.get_mut(home) {
            q.push_front(j);
        }
    }

    /// The backend stopped a running job for other work (Kueue evicted it) and nothing of it
    /// runs any more: its GPUs are free, and it goes back to the front of its home queue with
    /// all its options, to be admitted again (a new run) where and when one has room.
    pub fn evicted(&mut self, id: JobId, reason: &str, now: f64) -> Vec<Effect> {
        self.advance(now);
        let Some(r) = self.unrun(id, false) else {
            return vec![];
        };
        let mut out = Vec::new();
        self.requeue_preempted(
            r,
            PreemptReason::Evicted {
                text: reason.to_string(),
            },
            QueueReason::Evicted {
                text: reason.to_string(),
            },
            now,
            &mut out,
        );
        self.drain(now, &mut out);
        out
    }

    pub(super) fn would_reclaim(&self, c: &Candidate, gpus: u32) -> bool {
        let free = pool_slot(&self.free, c.zone, c.pool);
        let borrowed = pool_slot(&self.borrowed_in_pool, c.zone, c.pool);
        free + borrowed >= gpus
    }

    pub(super) fn quota_reason(&self, w: &Waiting, zone: usize) -> QueueReason {
        let t = self.teams.get(w.team);
        QueueReason::QuotaLimit {
            team: t.map_or_else(String::new, |t| t.name.clone()),
            limit: t.and_then(|t| t.limit),
            zone: self.zone_name(zone).to_owned(),
        }
    }
}
