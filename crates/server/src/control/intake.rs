//! A scheduling round, and intake: each submitted job is placed under the policy in force, its
//! placement ledgered, and handed to the scheduler core.

use super::*;

impl Leader<'_> {
    /// One round: take new submissions, notice ended and cancelled jobs, re-examine queues.
    pub(super) fn round(&mut self) -> Step<()> {
        let round_started = Instant::now();
        let mut taken_in = 0usize;
        let now = now_ts();
        // Zone conditions first, every round: nothing this round admits may precede a condition
        // (an outage, a drill) stored before it began.
        self.apply_conditions()?;
        loop {
            let page = self.sh.store.list(
                &JobFilter {
                    state: Some(JobState::Submitted),
                    ..JobFilter::default()
                },
                PageRequest {
                    after: None,
                    limit: 256,
                },
            )?;
            let fresh: Vec<JobRecord> = page
                .jobs
                .into_iter()
                .filter(|r| !self.jobs.contains_key(&r.id))
                .collect();
            if fresh.is_empty() {
                break;
            }
            // Read after the page: a condition stored before any of these jobs was submitted
            // is in force before they are placed.
            self.apply_conditions()?;
            for rec in fresh {
                self.fenced()?;
                self.intake(rec, now)?;
                taken_in += 1;
            }
        }
        let intake_s = round_started.elapsed().as_secs_f64();
        self.poll()?;
        let poll_s = round_started.elapsed().as_secs_f64() - intake_s;
        if self.last_cancel_check.elapsed() >= Duration::from_millis(500) {
            self.check_cancelled()?;
            self.watch_agents()?;
            self.last_cancel_check = Instant::now();
        }
        let effects = self.sched.tick(secs(now_ts()));
        self.apply(effects)?;
        self.update_gauges();
        tracing::debug!(
            taken_in,
            intake_s,
            poll_s,
            round_s = round_started.elapsed().as_secs_f64(),
            "scheduling round"
        );
        Ok(())
    }

    pub(super) fn update_gauges(&self) {
        let mut running: HashMap<usize, i64> = HashMap::new();
        for t in self.jobs.values() {
            if matches!(t.state, JobState::Running | JobState::Admitted) {
                if let Some(z) = t.zone {
                    *running.entry(z).or_default() += 1;
                }
            }
        }
        for (i, z) in self.fleet().zones.iter().enumerate() {
            let depth = i64::try_from(self.sched.queue_depth(i)).unwrap_or(i64::MAX);
            self.sh
                .metrics
                .queue_depth
                .get_or_create(&label("zone", z.name.clone()))
                .set(depth);
            self.sh
                .metrics
                .running
                .get_or_create(&label("zone", z.name.clone()))
                .set(running.get(&i).copied().unwrap_or(0));
        }
    }

    /// Places one job and hands it to the scheduler core.
    pub(super) fn intake(&mut self, rec: JobRecord, now: Timestamp) -> Step<()> {
        let started = Instant::now();
        let spec = match self.parse(&rec) {
            Ok(s) => s,
            Err(e) => {
                return self
                    .fail(
                        rec.id,
                        rec.version,
                        &format!("the manifest does not load: {e}"),
                    )
                    .map(|_| ())
            }
        };
        let placement = match self.engine.place(&spec, &self.idle) {
            Ok(p) => p,
            Err(e) => {
                return self
                    .fail(rec.id, rec.version, &format!("cannot place: {e}"))
                    .map(|_| ())
            }
        };
        let cands = self.candidates(&placement);
        let ex = tidegate_placement::Explanation::new(&placement, &spec, self.fleet());
        let explanation = summarize(&ex);
        if let Err(e) = self
            .sh
            .evidence
            .placed(&rec.id, &spec, &placement, self.fleet())
        {
            return self
                .fail(
                    rec.id,
                    rec.version,
                    &format!(
                        "the evidence ledger cannot record the placement, so it is refused: {e}"
                    ),
                )
                .map(|_| ());
        }
        if cands.is_empty() {
            self.sh.metrics.refusals.inc();
            let mut tr = Transition::to(JobState::Failed, rec.version, now)
                .because(&format!("refused: {}", why_nowhere(&ex)));
            tr.details = explanation;
            self.transition(&rec.id, tr)?;
            return Ok(());
        }
        let sid = self.alloc(&rec.id);
        let shape = shape_of(&spec, placement.profile.attrs.level);
        let attempt = if rec.state == JobState::Submitted {
            0
        } else {
            admissions(&self.sh.store.events(&rec.id)?)
        };
        self.explain.insert(sid, explanation);
        self.jobs.insert(
            rec.id.clone(),
            Tracked::of(sid, &rec, spec, None, shape.gpus, attempt),
        );
        let effects = self.sched.submit(sid, shape, cands, secs(now));
        self.sh
            .metrics
            .decision_latency
            .observe(started.elapsed().as_secs_f64());
        self.apply(effects)
    }

    pub(super) fn candidates(&self, p: &Placement) -> Vec<Candidate> {
        tidegate_placement::candidates(p, self.fleet())
    }

    /// Whether policy still allows the job at (zone, pool): placement is evaluated again (from
    /// its caches) before every admission, so a hop never lands where the rules say no.
    pub(super) fn recheck(
        &mut self,
        spec: &JobSpec,
        zone: usize,
        pool: usize,
    ) -> Result<(), String> {
        // Public and edge capacity is judged by a plain Cedar evaluation, never a reused verdict.
        if self
            .fleet()
            .zones
            .get(zone)
            .is_none_or(|z| !z.tier.is_private())
        {
            return self
                .engine
                .recheck_plain(spec, zone, pool)
                .map_err(|w| w.message);
        }
        match self.engine.place(spec, &self.idle) {
            Ok(p)
                if p.pools
                    .iter()
                    .any(|pc| pc.allowed && pc.zone == zone && pc.pool == pool) =>
            {
                Ok(())
            }
            Ok(p) => {
                let ex = tidegate_placement::Explanation::new(&p, spec, self.fleet());
                let why = ex
                    .candidates
                    .get(zone)
                    .and_then(|c| c.reasons.iter().find(|r| r.is_refusal()))
                    .map_or_else(
                        || "the pool is no longer allowed".to_string(),
                        ToString::to_string,
                    );
                Err(why)
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A compact explanation stored with the job's first transition: the decision, allowed places,
/// and why every other zone was refused (sentences, and their codes).
pub(super) fn summarize(ex: &tidegate_placement::Explanation) -> serde_json::Value {
    let allowed: Vec<String> = ex
        .candidates
        .iter()
        .flat_map(|c| {
            c.pools
                .iter()
                .filter(|p| p.allowed)
                .map(move |p| format!("{}/{}", c.zone, p.pool))
        })
        .collect();
    let mut refused: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut codes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in ex.candidates.iter().filter(|c| !c.allowed) {
        let (cs, texts) = c
            .refusal_sentences()
            .into_iter()
            .map(|(code, text)| (code.to_string(), text))
            .unzip();
        codes.insert(c.zone.clone(), cs);
        refused.insert(c.zone.clone(), texts);
    }
    json!({
        "policy_hash": ex.policy_hash,
        "effective_classification": ex.effective_classification,
        "notes": ex.notes,
        "best": ex.decision,
        "allowed": allowed,
        "refused_zones": refused,
        "refused_codes": codes,
    })
}
/// Why a job may run nowhere: the first refusal of each zone.
pub(super) fn why_nowhere(ex: &tidegate_placement::Explanation) -> String {
    let parts: Vec<String> = ex
        .candidates
        .iter()
        .filter_map(|c| Some(format!("{}: {}", c.zone, c.first_refusal()?)))
        .collect();
    if parts.is_empty() {
        "no zone and pool is allowed for this job".into()
    } else {
        format!("no zone and pool may run it — {}", parts.join("; "))
    }
}
