//! Recovery: a new leader rebuilds the scheduler from the store, stops orphaned runs, and
//! judges restored runs again under the rules in force.

use super::*;

impl Leader<'_> {
    /// Rebuilds the scheduler from the store: running work first (it holds capacity), then the
    /// queues in submission order.
    pub(super) fn recover(&mut self) -> Step<usize> {
        let mut active = Vec::new();
        for state in [
            JobState::Running,
            JobState::Admitted,
            JobState::Queued,
            JobState::Preempted,
        ] {
            self.each_job_in(state, |rec| {
                active.push(rec);
                Ok(())
            })?;
        }
        let n = active.len();
        let now = now_ts();
        // Conditions first, so recovered queues meet the zones as they are.
        self.apply_conditions()?;
        for rec in active {
            match rec.state {
                JobState::Running | JobState::Admitted => self.restore_running(&rec, now)?,
                _ => self.intake(rec, now)?,
            }
        }
        self.stop_orphans()?;
        Ok(n)
    }

    /// A cancel (or a failure) is durable intent: a run whose job is cancelled or failed but
    /// whose executor still reports it running (a crash between the acknowledgement and the
    /// stop) is stopped now.
    pub(super) fn stop_orphans(&self) -> Step<()> {
        for state in [JobState::Cancelled, JobState::Failed] {
            self.each_job_in(state, |rec| {
                let Some(exec) = rec.zone.as_deref().and_then(|z| self.sh.executors.get(z)) else {
                    return Ok(());
                };
                let run = launch_id(
                    rec.id.as_str(),
                    admissions(&self.sh.store.events(&rec.id)?).max(1),
                );
                if matches!(exec.poll(&run), Ok(RunStatus::Running | RunStatus::Queued)) {
                    tracing::warn!(job = %rec.id, run, state = rec.state.as_str(), "stopping a run whose job already ended");
                    if let Err(e) = exec.cancel(&run) {
                        tracing::warn!(job = %rec.id, run, error = %e, "cannot stop the run of an ended job");
                    }
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Calls `f` with every job the store holds in `state`, a page at a time.
    pub(super) fn each_job_in(
        &self,
        state: JobState,
        mut f: impl FnMut(JobRecord) -> Step<()>,
    ) -> Step<()> {
        let mut after = None;
        loop {
            let page = self.sh.store.list(
                &JobFilter {
                    state: Some(state),
                    ..JobFilter::default()
                },
                PageRequest { after, limit: 500 },
            )?;
            for rec in page.jobs {
                f(rec)?;
            }
            match page.next {
                Some(n) => after = Some(n),
                None => return Ok(()),
            }
        }
    }

    pub(super) fn restore_running(&mut self, rec: &JobRecord, now: Timestamp) -> Step<()> {
        let spec = match self.parse(rec) {
            Ok(s) => s,
            Err(e) => {
                return self
                    .fail(
                        rec.id.clone(),
                        rec.version,
                        &format!("its manifest no longer loads: {e}"),
                    )
                    .map(|_| ())
            }
        };
        let zone = self.zone_index(rec.zone.as_deref());
        let pool = zone.and_then(|z| self.pool_index(z, rec.pool.as_deref()));
        let (Some(zone), Some(pool)) = (zone, pool) else {
            return self
                .fail(
                    rec.id.clone(),
                    rec.version,
                    "its zone or pool is no longer in the fleet",
                )
                .map(|_| ());
        };
        // The run was placed under the fleet, datasets and policy of its day: judge it again
        // under today's before it holds capacity or is started (data may have been reclassified,
        // a policy changed). One that no longer holds is withdrawn and placed afresh.
        if let Err(w) = self.engine.recheck_plain(&spec, zone, pool) {
            return self.withdraw(rec, zone, pool, &w, now);
        }
        let (cands, level) = match self.engine.place(&spec, &self.idle) {
            Ok(p) => (self.candidates(&p), p.profile.attrs.level),
            Err(_) => (Vec::new(), 0),
        };
        let public = self
            .fleet()
            .zones
            .get(zone)
            .is_some_and(|z| z.tier == Tier::Public);
        let at = cands
            .iter()
            .find(|c| c.zone == zone && c.pool == pool)
            .copied()
            .unwrap_or_else(|| Candidate::new(zone, pool, public, 0.0));
        let attempt = admissions(&self.sh.store.events(&rec.id)?).max(1);
        let sid = self.alloc(&rec.id);
        let shape = shape_of(&spec, level);
        let gpus = shape.gpus;
        self.sched.restore_running(sid, shape, cands, at, secs(now));
        self.jobs.insert(
            rec.id.clone(),
            Tracked::of(sid, rec, spec, Some((zone, pool)), gpus, attempt),
        );
        if rec.state == JobState::Admitted {
            let fx = self.launch(&rec.id)?;
            self.apply(fx)?;
        }
        Ok(())
    }

    /// A run whose placement no longer holds: the withdrawal is ledgered (`job.revoked`, naming
    /// the rules), the run is stopped — an agent's pending run is then never handed out — and
    /// the job is placed again under the rules in force (or refused with every reason).
    pub(super) fn withdraw(
        &mut self,
        rec: &JobRecord,
        zone: usize,
        pool: usize,
        w: &Withdrawn,
        now: Timestamp,
    ) -> Step<()> {
        let attempt = admissions(&self.sh.store.events(&rec.id)?).max(1);
        let run = launch_id(rec.id.as_str(), attempt);
        let (zname, pname) = self.names(zone, pool);
        tracing::warn!(job = %rec.id, run, zone = %zname, pool = %pname, reason = %w, "placement withdrawn at restore");
        let recorded = self
            .sh
            .evidence
            .revoked(&rec.id, &zname, &pname, &run, &w.codes());
        // Stopping is the safe direction: it happens whatever the ledger says.
        if let Some(exec) = self.executor_for(Some(zone)) {
            if let Err(e) = exec.cancel(&run) {
                tracing::warn!(job = %rec.id, run, error = %e, "cannot stop the withdrawn run");
            }
        }
        if let Err(e) = recorded {
            let reason = format!("placement withdrawn ({}), and the evidence ledger cannot record it, so the job is stopped: {e}", w.message);
            return self.fail(rec.id.clone(), rec.version, &reason).map(|_| ());
        }
        let mut tr = Transition::to(JobState::Preempted, rec.version, now)
            .because(&format!("placement withdrawn: {}", w.message));
        tr.details = json!({"zone": zname, "pool": pname, "run": run, "reasons": w.reasons, "withdrawn": true});
        match self.transition(&rec.id, tr)? {
            Some(after) => self.intake(after, now),
            None => Ok(()),
        }
    }
}
