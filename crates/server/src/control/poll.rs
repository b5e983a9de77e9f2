//! Watching what runs: executor polls, agents' runs, zone conditions, and cancellations.

use super::*;

impl Leader<'_> {
    /// Asks the executors about running jobs and records those that ended.
    pub(super) fn poll(&mut self) -> Step<()> {
        let running: Vec<(JobId, usize, u32)> = self
            .jobs
            .iter()
            .filter(|(_, t)| t.state == JobState::Running)
            .filter_map(|(id, t)| t.zone.map(|z| (id.clone(), z, t.attempt)))
            .collect();
        for (id, zone, attempt) in running {
            let Some(exec) = self.executor_for(Some(zone)) else {
                continue;
            };
            let status = match exec.poll(&launch_id(id.as_str(), attempt)) {
                Ok(s) => s,
                Err(ExecError::NoCapacity { reason, .. }) => {
                    self.withdraw_started(&id, zone, attempt, &reason)?;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(job = %id, error = %e, "cannot poll job");
                    continue;
                }
            };
            let mut details = serde_json::Value::Null;
            let (to, reason) = match status.clone() {
                // Waiting for the backend to admit it (Kueue): it keeps its place here.
                RunStatus::Running | RunStatus::Queued => continue,
                RunStatus::Exited { code: 0 } => (JobState::Succeeded, "exit code 0".to_string()),
                RunStatus::Exited {
                    code: CHECKPOINT_SYNC_BLOCKED,
                } => {
                    details = json!({ "exit_code": CHECKPOINT_SYNC_BLOCKED, "checkpoint_sync": "blocked" });
                    (
                        JobState::Failed,
                        format!(
                            "exit code {CHECKPOINT_SYNC_BLOCKED}: checkpoint sync blocked — the job could not reach its sync destination (the zone's egress rules may not allow it); the checkpoint was kept in the zone, see the job's logs"
                        ),
                    )
                }
                RunStatus::Exited { code } => (JobState::Failed, format!("exit code {code}")),
                RunStatus::Cancelled => (JobState::Cancelled, "cancelled".to_string()),
                RunStatus::TimedOut { limit_s } => {
                    details = json!({ "time_limit_s": limit_s });
                    (
                        JobState::Failed,
                        format!("time limit exceeded: stopped after {limit_s} s"),
                    )
                }
                RunStatus::Lost { reason } => (JobState::Failed, format!("lost: {reason}")),
                RunStatus::Preempted { reason } => {
                    // Nothing of it runs any more: back in its queue with all its options (the
                    // preemption is recorded, in the ledger first, as the effects are applied).
                    if let Some(sid) = self.jobs.get(&id).map(|t| t.sid) {
                        let fx = self.sched.evicted(sid, &reason, secs(now_ts()));
                        self.apply(fx)?;
                    }
                    continue;
                }
                RunStatus::Unknown => (
                    JobState::Failed,
                    "the executor has no record of the job".to_string(),
                ),
            };
            let Some((sid, pool)) = self.jobs.get(&id).map(|t| (t.sid, t.pool)) else {
                continue;
            };
            let (zname, pname) = self.names(zone, pool.unwrap_or(0));
            let event = run_outcome(&status);
            if let Err(e) = self.sh.evidence.run_event(
                &id,
                &zname,
                &pname,
                &launch_id(id.as_str(), attempt),
                &event,
            ) {
                // The end is recorded before anything is released; the next round tries again.
                tracing::error!(job = %id, error = %e, "the evidence ledger cannot record the run's end; it stays running until it can");
                continue;
            }
            self.move_to(&id, to, None, &reason, details)?;
            if let Some(t) = self.jobs.remove(&id) {
                self.explain.remove(&t.sid);
            }
            let fx = self.sched.finish(sid, secs(now_ts()));
            self.apply(fx)?;
        }
        Ok(())
    }

    /// A started run its backend gave up on for want of capacity (a Kubernetes Job Kueue did not
    /// admit within the zone's admission timeout, deleted there before this is reported): as for
    /// a start without capacity, the admission is withdrawn and the job moves to its next allowed
    /// option. The store's lifecycle has no way back from `running` to `queued`, so the job
    /// passes through `preempted` (its run was stopped, it is placed again), with the reason and
    /// `no_capacity` in the details; the run's end is in the ledger before anything moves.
    pub(super) fn withdraw_started(
        &mut self,
        id: &JobId,
        zone: usize,
        attempt: u32,
        why: &str,
    ) -> Step<()> {
        let Some((sid, pool)) = self.jobs.get(id).map(|t| (t.sid, t.pool)) else {
            return Ok(());
        };
        let (zname, pname) = self.names(zone, pool.unwrap_or(0));
        let run = launch_id(id.as_str(), attempt);
        if let Err(e) = self
            .sh
            .evidence
            .run_event(id, &zname, &pname, &run, "no-capacity")
        {
            tracing::error!(job = %id, error = %e, "the evidence ledger cannot record the run's end; it stays running until it can");
            return Ok(());
        }
        let reason = format!("no capacity in {zname}/{pname}: {why}");
        let moved = self.move_to(
            id,
            JobState::Preempted,
            None,
            &reason,
            json!({"no_capacity": {"zone": zname, "pool": pname}, "launch_id": run}),
        )?;
        if moved.is_none() {
            let fx = self.lost_race(id, sid);
            return self.apply(fx);
        }
        if let Some(t) = self.jobs.get_mut(id) {
            t.zone = None;
            t.pool = None;
        }
        let fx = self.sched.no_capacity(sid, secs(now_ts()));
        self.apply(fx)
    }

    /// Agents that stopped syncing make their zone unreachable; one that syncs again makes it
    /// healthy (only if it was this watch that marked it).
    pub(super) fn watch_agents(&self) -> Step<()> {
        if self.sh.agent_zones.is_empty() {
            return Ok(());
        }
        let now = now_ts();
        let beats = self.sh.store.heartbeats()?;
        let conds = self.sh.store.zone_conditions()?;
        let timeout = i64::try_from(self.cfg.agent_timeout.as_millis()).unwrap_or(i64::MAX);
        for zone in &self.sh.agent_zones {
            let last = beats
                .iter()
                .find(|b| &b.zone == zone)
                .map_or(self.since, |b| b.last_seen.max(self.since));
            let silent_ms = now.millis() - last.millis();
            let cond = conds.iter().find(|c| &c.zone == zone);
            let marked_by_us = cond.is_some_and(|c| {
                c.health == "unreachable"
                    && c.reason
                        .as_deref()
                        .is_some_and(|r| r.starts_with(crate::agents::SILENT))
            });
            let unreachable = cond.is_some_and(|c| c.health == "unreachable");
            if silent_ms > timeout && !unreachable {
                tracing::warn!(
                    zone,
                    silent_ms,
                    "zone agent is silent; marking the zone unreachable"
                );
                self.sh
                    .store
                    .set_zone_condition(&tidegate_store::ZoneCondition {
                        zone: zone.clone(),
                        health: "unreachable".into(),
                        throttled: cond.is_some_and(|c| c.throttled),
                        reason: Some(format!(
                            "{} for {} s",
                            crate::agents::SILENT,
                            silent_ms / 1000
                        )),
                        updated_at: now,
                    })?;
            } else if silent_ms <= timeout && marked_by_us {
                tracing::info!(zone, "zone agent is back; the zone is healthy again");
                self.sh
                    .store
                    .set_zone_condition(&tidegate_store::ZoneCondition {
                        zone: zone.clone(),
                        health: "healthy".into(),
                        throttled: cond.is_some_and(|c| c.throttled),
                        reason: Some("the zone's agent is syncing again".into()),
                        updated_at: now,
                    })?;
            }
        }
        Ok(())
    }

    /// Zone conditions set through the API (an outage, a drill, a throttling provider): each
    /// change is handed to the core, which applies the fleet's failure hierarchy.
    pub(super) fn apply_conditions(&mut self) -> Step<()> {
        let conds = self.sh.store.zone_conditions()?;
        for c in conds {
            let Some(zone) = self.zone_index(Some(&c.zone)) else {
                continue;
            };
            let health = match c.health.as_str() {
                "degraded" => Health::Degraded,
                "unreachable" => Health::Unreachable,
                _ => Health::Healthy,
            };
            let was = self
                .conditions
                .get(&zone)
                .copied()
                .unwrap_or((Health::Healthy, false));
            if was == (health, c.throttled) {
                continue;
            }
            tracing::info!(zone = %c.zone, health = %c.health, throttled = c.throttled, reason = ?c.reason, "zone condition changed");
            self.conditions.insert(zone, (health, c.throttled));
            let now = secs(now_ts());
            let mut fx = Vec::new();
            if was.0 != health {
                fx.extend(self.sched.set_zone_health(zone, health, now));
            }
            if was.1 != c.throttled {
                fx.extend(self.sched.set_throttled(zone, c.throttled, now));
            }
            self.apply(fx)?;
        }
        Ok(())
    }

    /// Jobs a user cancelled while they were admitted or running: stop them. Jobs cancelled
    /// while queued leave the scheduler core's queue (so the queue depth counts only jobs that
    /// wait): found as the tracked queued jobs the store no longer holds queued, one paging walk
    /// over the store's queue rather than one read per queued job.
    pub(super) fn check_cancelled(&mut self) -> Step<()> {
        let mut suspects: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, t)| matches!(t.state, JobState::Running | JobState::Admitted))
            .map(|(id, _)| id.clone())
            .collect();
        let mut queued: HashSet<JobId> = self
            .jobs
            .iter()
            .filter(|(_, t)| t.state == JobState::Queued)
            .map(|(id, _)| id.clone())
            .collect();
        if !queued.is_empty() {
            self.each_job_in(JobState::Queued, |rec| {
                queued.remove(&rec.id);
                Ok(())
            })?;
            suspects.extend(queued);
        }
        for id in suspects {
            let Some(rec) = self.sh.store.get(&id)? else {
                continue;
            };
            if !rec.state.is_terminal() {
                continue;
            }
            let Some(t) = self.jobs.get(&id) else {
                continue;
            };
            if t.state != JobState::Queued {
                self.stop_run(&id);
            }
            let Some(t) = self.jobs.remove(&id) else {
                continue;
            };
            self.explain.remove(&t.sid);
            let fx = self.sched.cancel(t.sid, secs(now_ts()));
            self.apply(fx)?;
        }
        Ok(())
    }
}

/// The ledger's name for how a run ended.
pub(super) fn run_outcome(status: &RunStatus) -> String {
    match status {
        RunStatus::Exited { code } if *code >= 0 => format!("exited-{code}"),
        RunStatus::Exited { code } => format!("killed-by-signal-{}", code.unsigned_abs()),
        RunStatus::Cancelled => "cancelled".into(),
        RunStatus::TimedOut { .. } => "timed-out".into(),
        RunStatus::Lost { .. } => "lost".into(),
        RunStatus::Preempted { .. } => "preempted".into(),
        RunStatus::Unknown => "unknown".into(),
        RunStatus::Running => "running".into(),
        RunStatus::Queued => "queued".into(),
    }
}
