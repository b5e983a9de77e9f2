//! Carrying out the scheduler core's effects: store transitions, evidence entries, and launches
//! on the zone's executor.

use super::*;

impl Leader<'_> {
    pub(super) fn fail(
        &mut self,
        id: JobId,
        version: u64,
        reason: &str,
    ) -> Step<Option<JobRecord>> {
        tracing::info!(job = %id, reason, "job failed");
        let out = self.transition(
            &id,
            Transition::to(JobState::Failed, version, now_ts()).because(reason),
        );
        self.forget(&id);
        out
    }

    pub(super) fn forget(&mut self, id: &JobId) {
        if let Some(t) = self.jobs.remove(id) {
            self.by_sid.remove(&t.sid);
            self.explain.remove(&t.sid);
        }
    }

    /// A store transition that tolerates losing a race with a user (cancel): `Ok(None)` when the
    /// job moved on without us; other store errors end the round.
    pub(super) fn transition(&mut self, id: &JobId, t: Transition) -> Step<Option<JobRecord>> {
        match self.sh.store.transition(id, t) {
            Ok(rec) => {
                if let Some(tr) = self.jobs.get_mut(id) {
                    tr.version = rec.version;
                    tr.state = rec.state;
                }
                Ok(Some(rec))
            }
            Err(StoreError::VersionConflict { .. } | StoreError::IllegalTransition { .. }) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Moves a tracked job to `to` from its current state and version.
    pub(super) fn move_to(
        &mut self,
        id: &JobId,
        to: JobState,
        code: Option<&str>,
        reason: &str,
        details: serde_json::Value,
    ) -> Step<Option<JobRecord>> {
        let Some(t) = self.jobs.get(id) else {
            return Ok(None);
        };
        let mut tr = Transition::to(to, t.version, now_ts()).because(reason);
        tr.reason_code = code.map(str::to_owned);
        tr.details = details;
        self.transition(id, tr)
    }

    /// Moves a job to `queued` in `zone`'s queue (the store shows the zone, as `/v1/zones`
    /// counts it).
    pub(super) fn queue_in(
        &mut self,
        id: &JobId,
        zone: &str,
        code: &str,
        reason: &str,
        details: serde_json::Value,
    ) -> Step<Option<JobRecord>> {
        let Some(t) = self.jobs.get(id) else {
            return Ok(None);
        };
        let mut tr = Transition::queue(zone, t.version, now_ts()).because_coded(code, reason);
        if zone.is_empty() {
            tr.zone = None;
        }
        tr.details = details;
        self.transition(id, tr)
    }

    pub(super) fn apply(&mut self, effects: Vec<Effect>) -> Step<()> {
        let mut work: VecDeque<Effect> = effects.into();
        while let Some(e) = work.pop_front() {
            let more = self.apply_one(e)?;
            work.extend(more);
        }
        Ok(())
    }

    pub(super) fn job_of(&self, sid: u64) -> Option<JobId> {
        self.by_sid.get(&sid).cloned()
    }

    /// The job moved on without us (cancelled): give its capacity back.
    pub(super) fn lost_race(&mut self, id: &JobId, sid: u64) -> Vec<Effect> {
        self.forget(id);
        self.sched.cancel(sid, secs(now_ts()))
    }

    pub(super) fn names(&self, zone: usize, pool: usize) -> (String, String) {
        let z = self.fleet().zones.get(zone);
        (
            z.map_or_else(String::new, |z| z.name.clone()),
            z.and_then(|z| z.pools.get(pool))
                .map_or_else(String::new, |p| p.name.clone()),
        )
    }

    pub(super) fn apply_one(&mut self, effect: Effect) -> Step<Vec<Effect>> {
        self.fenced()?;
        match effect {
            Effect::Queued { job, zone, reason } => {
                let Some(id) = self.job_of(job) else {
                    return Ok(vec![]);
                };
                let Some(state) = self.jobs.get(&id).map(|t| t.state) else {
                    return Ok(vec![]);
                };
                if matches!(
                    state,
                    JobState::Submitted | JobState::Preempted | JobState::Admitted
                ) {
                    let mut details = self.explain.remove(&job).unwrap_or_else(|| json!({}));
                    let queue_zone = self.names(zone, 0).0;
                    if let Some(obj) = details.as_object_mut() {
                        obj.insert("queue_zone".into(), json!(queue_zone));
                    }
                    if self
                        .queue_in(
                            &id,
                            &queue_zone,
                            reason.code(),
                            &reason.to_string(),
                            details,
                        )?
                        .is_none()
                    {
                        return Ok(self.lost_race(&id, job));
                    }
                }
                Ok(vec![])
            }
            Effect::Admitted {
                job,
                zone,
                pool,
                burst,
                reason,
                cost,
                gpus,
                justification,
                ..
            } => {
                let Some(id) = self.job_of(job) else {
                    return Ok(self.sched.cancel(job, secs(now_ts())));
                };
                let Some(t) = self.jobs.get(&id) else {
                    return Ok(vec![]);
                };
                let spec = t.spec.clone();
                let state = t.state;
                if matches!(state, JobState::Running | JobState::Admitted) {
                    return Ok(vec![]); // restored at recovery: already in place
                }
                if let Err(why) = self.recheck(&spec, zone, pool) {
                    tracing::warn!(job = %id, zone, pool, %why, "policy re-check refused an admission");
                    return Ok(self
                        .sched
                        .reject_candidate(job, zone, pool, &why, secs(now_ts())));
                }
                let (zname, pname) = self.names(zone, pool);
                let gpu_type = self
                    .fleet()
                    .zones
                    .get(zone)
                    .and_then(|z| z.pools.get(pool))
                    .map_or_else(String::new, |p| p.gpu_type.clone());
                if matches!(state, JobState::Submitted | JobState::Preempted) {
                    let details = self.explain.remove(&job).unwrap_or(serde_json::Value::Null);
                    if self
                        .move_to(
                            &id,
                            JobState::Queued,
                            None,
                            "placed; capacity is free",
                            details,
                        )?
                        .is_none()
                    {
                        return Ok(self.lost_race(&id, job));
                    }
                }
                let Some(t) = self.jobs.get(&id) else {
                    return Ok(vec![]);
                };
                let mut tr = Transition::admit(&zname, &pname, t.version, now_ts());
                tr.reason = Some(match (&reason, burst) {
                    (Some(r), true) => format!("burst to public capacity: {r}"),
                    (None, true) => "burst to public capacity: ".into(),
                    (None, false) => "admitted to private capacity".into(),
                    (Some(r), false) => r.to_string(),
                });
                tr.details = json!({
                    "burst": burst,
                    "estimated_cost": cost,
                    "justification": justification,
                    "gpus": gpus,
                    "gpu_type": gpu_type,
                });
                tr.reason_code = reason.as_ref().map(|r| r.code().to_owned());
                if self.transition(&id, tr)?.is_none() {
                    return Ok(self.lost_race(&id, job));
                }
                let run = if let Some(t) = self.jobs.get_mut(&id) {
                    t.zone = Some(zone);
                    t.pool = Some(pool);
                    t.gpus = gpus;
                    t.attempt += 1;
                    launch_id(id.as_str(), t.attempt)
                } else {
                    return Ok(vec![]);
                };
                // The admission won in the store: only now is it evidence, and before the run is
                // launched. A burst's entry is written only for the admission that happens.
                let recorded = self
                    .sh
                    .evidence
                    .admitted(&id, &zname, &pname, &run)
                    .and_then(|()| {
                        if burst {
                            let just = justification.clone().unwrap_or_default();
                            self.sh.evidence.burst(&id, &zname, &pname, &just)
                        } else {
                            Ok(())
                        }
                    });
                if let Err(e) = recorded {
                    let reason = format!(
                        "the evidence ledger cannot record the admission, so it is refused: {e}"
                    );
                    let version = self.jobs.get(&id).map_or(0, |t| t.version);
                    self.fail(id.clone(), version, &reason)?;
                    return Ok(self.sched.cancel(job, secs(now_ts())));
                }
                if burst {
                    self.sh.metrics.bursts.inc();
                    self.sh.metrics.public_spend.inc_by(cost);
                }
                self.sh
                    .metrics
                    .admissions
                    .get_or_create(&vec![("zone", zname), ("burst", burst.to_string())])
                    .inc();
                self.launch(&id)
            }
            Effect::Refused { job, reason } => {
                let Some(id) = self.job_of(job) else {
                    return Ok(vec![]);
                };
                if !self.jobs.contains_key(&id) {
                    return Ok(vec![]);
                }
                self.sh.metrics.refusals.inc();
                let details = self.explain.remove(&job).unwrap_or(serde_json::Value::Null);
                self.move_to(
                    &id,
                    JobState::Failed,
                    Some(reason.code()),
                    &format!("refused: {reason}"),
                    details,
                )?;
                self.forget(&id);
                Ok(vec![])
            }
            Effect::Released {
                job,
                zone,
                pool,
                gpus,
                public,
                ..
            } => {
                let Some(id) = self.job_of(job) else {
                    return Ok(vec![]);
                };
                let (zname, pname) = self.names(zone, pool);
                self.record_run(&id, &zname, &pname, "released");
                let reason = if public {
                    "public capacity released to the provider"
                } else {
                    "private capacity freed"
                };
                self.sh.store.append_event(
                    &id,
                    EventDraft {
                        kind: "released".into(),
                        reason: Some(reason.into()),
                        reason_code: None,
                        details: json!({"zone": zname, "pool": pname, "gpus": gpus, "public": public}),
                        at: now_ts(),
                    },
                )?;
                if !self.jobs.contains_key(&id) {
                    self.by_sid.remove(&job);
                }
                Ok(vec![])
            }
            Effect::Preempted {
                job,
                zone,
                pool,
                reason,
                ..
            } => {
                let Some(id) = self.job_of(job) else {
                    return Ok(vec![]);
                };
                let (zname, pname) = self.names(zone, pool);
                self.record_run(&id, &zname, &pname, "preempted");
                self.stop_run(&id);
                self.move_to(
                    &id,
                    JobState::Preempted,
                    Some(reason.code()),
                    &format!("preempted: {reason}"),
                    json!({"zone": zname, "pool": pname}),
                )?;
                if let Some(t) = self.jobs.get_mut(&id) {
                    t.zone = None;
                    t.pool = None;
                }
                Ok(vec![])
            }
            Effect::Failover {
                job,
                from_zone,
                from_pool,
                attempt,
                reason,
                ..
            } => {
                let Some(id) = self.job_of(job) else {
                    return Ok(vec![]);
                };
                let (zname, pname) = self.names(from_zone, from_pool);
                self.record_run(&id, &zname, &pname, "failed-over");
                self.sh.store.append_event(
                    &id,
                    EventDraft {
                        kind: "failover".into(),
                        reason: Some(reason.to_string()),
                        reason_code: Some(reason.code().to_owned()),
                        details: json!({"from_zone": zname, "from_pool": pname, "attempt": attempt}),
                        at: now_ts(),
                    },
                )?;
                Ok(vec![])
            }
            Effect::Cancelled { job, .. } => {
                if let Some(id) = self.job_of(job) {
                    self.forget(&id);
                }
                self.by_sid.remove(&job);
                Ok(vec![])
            }
        }
    }

    pub(super) fn executor_for(&self, zone: Option<usize>) -> Option<Arc<dyn Executor>> {
        let z = self.fleet().zones.get(zone?)?;
        self.sh.executors.get(&z.name).cloned()
    }

    /// Records an event of the job's current run. Used where the effect is a stop or a release
    /// (the safe direction), which goes ahead even when the ledger cannot record it.
    pub(super) fn record_run(&self, id: &JobId, zone: &str, pool: &str, event: &str) {
        let attempt = self.jobs.get(id).map_or(0, |t| t.attempt);
        if let Err(e) =
            self.sh
                .evidence
                .run_event(id, zone, pool, &launch_id(id.as_str(), attempt), event)
        {
            tracing::error!(job = %id, event, error = %e, "the evidence ledger cannot record the run event");
        }
    }

    /// Stops the current run of a job (preemption, cancellation).
    pub(super) fn stop_run(&self, id: &JobId) {
        let Some(t) = self.jobs.get(id) else { return };
        if let Some(exec) = self.executor_for(t.zone) {
            if let Err(e) = exec.cancel(&launch_id(id.as_str(), t.attempt)) {
                tracing::warn!(job = %id, error = %e, "cannot stop the job's run");
            }
        }
    }

    /// Starts an admitted job on its zone's executor and records it running. A backend with no
    /// capacity sends the job on to its next allowed option.
    pub(super) fn launch(&mut self, id: &JobId) -> Step<Vec<Effect>> {
        let Some(t) = self.jobs.get(id) else {
            return Ok(vec![]);
        };
        let fleet = self.fleet();
        let (Some(zi), Some(pi)) = (t.zone, t.pool) else {
            return Ok(vec![]);
        };
        let (Some(zone), Some(pool)) = (
            fleet.zones.get(zi),
            fleet.zones.get(zi).and_then(|z| z.pools.get(pi)),
        ) else {
            return Ok(vec![]);
        };
        let (version, sid, state) = (t.version, t.sid, t.state);
        let Some(exec) = self.sh.executors.get(&zone.name).cloned() else {
            self.fail(
                id.clone(),
                version,
                &format!("zone {} has no executor", zone.name),
            )?;
            return Ok(self.sched.cancel(sid, secs(now_ts())));
        };
        let run_id = launch_id(id.as_str(), t.attempt);
        // The customer's labels at their effective values go with every launch (a Kubernetes
        // zone puts them on the Job for the cluster's admission controllers).
        let labels = match tidegate_model::JobProfile::resolve(&t.spec, fleet) {
            Ok(p) => p.effective_labels(&fleet.scheme),
            Err(e) => {
                self.fail(
                    id.clone(),
                    version,
                    &format!("its inputs no longer resolve, so it is not started: {e}"),
                )?;
                return Ok(self.sched.cancel(sid, secs(now_ts())));
            }
        };
        let launch = Launch {
            job_id: run_id.clone(),
            name: t.spec.name.clone(),
            team: t.spec.team.clone(),
            zone: zone.name.clone(),
            pool: pool.name.clone(),
            gpus: t.gpus,
            gpu_type: pool.gpu_type.clone(),
            command: t.spec.command.clone(),
            stand_in_seconds: t.spec.resources.expected_hours * 3600.0
                / self.cfg.time_scale.max(1e-9),
            time_limit_s: (t.spec.resources.expected_hours * 3600.0 * 2.0)
                .ceil()
                .max(60.0) as u64,
            env: vec![],
            labels,
        };
        if state == JobState::Admitted {
            if let Err(e) = self
                .sh
                .evidence
                .run_event(id, &zone.name, &pool.name, &run_id, "started")
            {
                self.fail(
                    id.clone(),
                    version,
                    &format!("the evidence ledger cannot record the start, so the run is not started: {e}"),
                )?;
                return Ok(self.sched.cancel(sid, secs(now_ts())));
            }
        }
        match exec.start(&launch) {
            Ok(fresh) => {
                if state == JobState::Admitted {
                    let reason = format!(
                        "started by the {} executor in {}/{}",
                        exec.kind(),
                        zone.name,
                        pool.name
                    );
                    if self
                        .move_to(
                            id,
                            JobState::Running,
                            None,
                            &reason,
                            json!({"fresh_start": fresh, "launch_id": run_id}),
                        )?
                        .is_none()
                    {
                        // Cancelled meanwhile: stop what was started.
                        let _ = exec.cancel(&run_id);
                    }
                }
                Ok(vec![])
            }
            Err(ExecError::NoCapacity { reason, .. }) => {
                // Withdraw the admission and let the scheduler try the next allowed option.
                let why = format!("no capacity in {}/{}: {reason}", zone.name, pool.name);
                if self
                    .move_to(
                        id,
                        JobState::Queued,
                        None,
                        &why,
                        json!({"no_capacity": {"zone": zone.name, "pool": pool.name}}),
                    )?
                    .is_none()
                {
                    return Ok(self.lost_race(id, sid));
                }
                if let Some(t) = self.jobs.get_mut(id) {
                    t.zone = None;
                    t.pool = None;
                }
                Ok(self.sched.no_capacity(sid, secs(now_ts())))
            }
            Err(e) => {
                self.fail(
                    id.clone(),
                    version,
                    &format!("the executor could not start it: {e}"),
                )?;
                Ok(self.sched.cancel(sid, secs(now_ts())))
            }
        }
    }
}
