//! Leading: the lease keeper thread, and the loop that runs scheduling rounds while this
//! replica holds the `scheduler` lease and starts over from the store when it does not.

use super::*;

/// The scheduler lease, kept by a thread of its own: renewed every third of its time to live
/// however long a round takes, and considered lost (by [`LeaseKeeper::epoch`]) as soon as it
/// might have expired, so a round that outlives it applies nothing more.
#[derive(Debug, Default)]
pub(super) struct LeaseKeeper {
    held: Mutex<Option<(Lease, Instant)>>,
}

impl LeaseKeeper {
    /// The epoch of the lease while it is surely still held (renewed less than its time to live,
    /// less a margin, ago); `None` otherwise.
    pub(super) fn epoch(&self, ttl: Duration) -> Option<u64> {
        let held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        held.as_ref()
            .filter(|(_, at)| at.elapsed() < ttl.saturating_sub(ttl / 6))
            .map(|(l, _)| l.epoch)
    }

    /// Take, keep or notice the loss of the lease until `shared.shutdown`; give it back then.
    fn run(&self, shared: &Shared, cfg: &LoopConfig) {
        let poll = (cfg.lease_ttl / 6).clamp(Duration::from_millis(20), Duration::from_millis(500));
        while !shared.shutdown.load(Ordering::SeqCst) {
            let current = self
                .held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let next = match current {
                Some((l, at)) if at.elapsed() < cfg.lease_ttl / 3 => Some((l, at)),
                Some((l, _)) => {
                    let asked = Instant::now();
                    match shared.store.renew_lease(&l, cfg.lease_ttl, now_ts()) {
                        Ok(Some(l)) => Some((l, asked)),
                        Ok(None) => {
                            tracing::warn!(holder = %cfg.holder, "scheduler lease lost; stepping down");
                            None
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot renew the scheduler lease; stepping down");
                            None
                        }
                    }
                }
                None => {
                    let asked = Instant::now();
                    match shared.store.try_acquire_lease(
                        LEASE,
                        &cfg.holder,
                        cfg.lease_ttl,
                        now_ts(),
                    ) {
                        Ok(Some(l)) => {
                            tracing::info!(holder = %cfg.holder, epoch = l.epoch, "took the scheduler lease");
                            shared.metrics.lease_taken.inc();
                            shared.wake.notify();
                            Some((l, asked))
                        }
                        Ok(None) => None,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot reach the store for the scheduler lease");
                            None
                        }
                    }
                }
            };
            let lost = next.is_none();
            *self
                .held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
            if lost {
                shared.wake.notify();
                std::thread::sleep(cfg.tick.max(Duration::from_millis(250)).min(poll * 3));
            } else {
                std::thread::sleep(poll);
            }
        }
        let held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some((l, _)) = held {
            let _ = shared.store.release_lease(&l);
        }
    }
}

/// Runs the loop until `shared.shutdown` is set; the lease is kept by a thread of its own and
/// given back on the way out. When the rules in force change, the leader is rebuilt under the
/// new ones.
pub fn run(shared: &Shared, cfg: &LoopConfig) {
    let keeper = LeaseKeeper::default();
    std::thread::scope(|scope| {
        scope.spawn(|| keeper.run(shared, cfg));
        while !shared.shutdown.load(Ordering::SeqCst) {
            let rules = shared.rules();
            lead(shared, cfg, &rules, &keeper);
        }
        shared.wake.notify();
    });
    shared.leading.store(false, Ordering::SeqCst);
    shared.metrics.leader.set(0);
}

/// The error a round stops with when the lease may have passed to another replica.
pub(super) fn lease_lost() -> StoreError {
    StoreError::Unavailable {
        backend: "scheduler",
        location: LEASE.to_owned(),
        op: "scheduling",
        source: "the scheduler lease may have passed to another replica".into(),
    }
}

/// The loop under one set of rules: returns at shutdown or when other rules are put in force.
fn lead(shared: &Shared, cfg: &LoopConfig, rules: &Rules, keeper: &LeaseKeeper) {
    let mut leader: Option<Leader<'_>> = None;
    while !shared.shutdown.load(Ordering::SeqCst) {
        if shared.rules().generation != rules.generation {
            return;
        }
        let epoch = keeper.epoch(cfg.lease_ttl);
        if leader.as_ref().is_some_and(|l| Some(l.epoch) != epoch) {
            leader = None;
        }
        let Some(epoch) = epoch else {
            shared.leading.store(false, Ordering::SeqCst);
            shared.metrics.leader.set(0);
            shared.wake.wait(cfg.tick.max(Duration::from_millis(250)));
            continue;
        };
        if leader.is_none() {
            let mut l = Leader::new(shared, cfg, rules, keeper, epoch);
            match l.recover() {
                Ok(n) => {
                    tracing::info!(
                        jobs = n,
                        generation = rules.generation,
                        "scheduler state rebuilt from the store"
                    );
                    leader = Some(l);
                }
                Err(e) => tracing::warn!(error = %e, "cannot rebuild scheduler state; will retry"),
            }
        }
        if let Some(l) = leader.as_mut() {
            shared.leading.store(true, Ordering::SeqCst);
            shared.metrics.leader.set(1);
            if let Err(e) = l.round() {
                tracing::warn!(error = %e, "scheduler round failed; rebuilding from the store");
                leader = None;
            }
        }
        shared.wake.wait(cfg.tick);
    }
}
