//! The state test-suite every backend must pass: each case takes a [`Fixture`] that opens (and
//! reopens) one fresh store. `state_suite!(factory)` turns every case into a `#[test]`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::json;
use tidegate_store::{
    EventDraft, JobFilter, JobId, JobState, NewJob, PageRequest, StateCount, Store, StoreError,
    Timestamp, Transition,
};

/// Opens the store under test; each call opens the same data again (a restart).
pub trait Fixture: Sync {
    /// Opens the store.
    fn open(&self) -> Box<dyn Store>;
    /// The schema version recorded in the database.
    fn schema_version(&self) -> i64;
}

/// Generates one `#[test]` per case for a backend. `$make(name)` returns `Option<fixture>`
/// (`None` skips, e.g. when PostgreSQL is not configured).
macro_rules! state_suite {
    ($make:path) => {
        state_suite!(@cases $make;
            submit_then_get_returns_the_job_and_its_first_event,
            submit_refuses_bad_input_naming_the_field,
            submit_refuses_a_duplicate_id,
            same_idempotency_key_and_body_returns_the_same_job,
            same_idempotency_key_with_another_body_is_a_conflict,
            idempotency_keys_are_scoped_to_the_team,
            concurrent_submits_with_one_key_create_one_job,
            lifecycle_transitions_append_ordered_events,
            admitting_needs_zone_and_pool,
            illegal_transitions_are_refused_and_write_nothing,
            stale_version_is_refused,
            concurrent_transitions_only_one_wins,
            writes_committed_together_keep_their_own_outcomes,
            appended_events_interleave_in_order,
            reason_codes_are_kept_beside_their_text_and_checked,
            unknown_jobs_are_reported,
            list_filters_and_pages_without_gaps,
            counts_per_state_and_zone,
            reopen_keeps_jobs_events_and_keys,
            migrations_are_idempotent_and_concurrent_safe,
            lease_has_one_holder_at_a_time,
            lease_passes_to_another_after_expiry,
            stale_holder_cannot_renew,
            released_lease_is_free_at_once,
            concurrent_lease_acquisition_has_one_winner,
            zone_conditions_are_set_replaced_and_validated,
            the_fleet_in_force_is_one_row_replaced_and_kept,
            agent_runs_are_handed_out_once_reported_and_cancelled,
        );
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                if let Some(fixture) = $make(stringify!($case)) {
                    suite::$case(&fixture);
                }
            }
        )*
    };
}

const T0: i64 = 1_700_000_000_000;

fn at(offset_ms: i64) -> Timestamp {
    Timestamp(T0 + offset_ms)
}

fn id(s: &str) -> JobId {
    JobId::new(s).unwrap()
}

/// A job request for `team` with an optional idempotency key.
pub fn new_job(job_id: &str, team: &str, key: Option<&str>) -> NewJob {
    NewJob {
        id: id(job_id),
        name: format!("train-{team}"),
        team: team.to_string(),
        spec: json!({"name": format!("train-{team}"), "team": team, "kind": "train", "resources": {"gpus": 8, "gpu_type": "h100"}}),
        idempotency_key: key.map(str::to_string),
        reason: Some("submitted by test".into()),
        at: at(0),
    }
}

pub fn submit_then_get_returns_the_job_and_its_first_event(f: &dyn Fixture) {
    let s = f.open();
    let out = s.submit(new_job("j1", "vision", None)).unwrap();
    assert!(!out.replayed);
    let got = s.get(&id("j1")).unwrap().unwrap();
    assert_eq!(got, out.job);
    assert_eq!(got.state, JobState::Submitted);
    assert_eq!(got.version, 1);
    assert_eq!(got.team, "vision");
    assert_eq!(got.submitted_at, at(0));
    assert_eq!(got.spec["resources"]["gpus"], 8);
    assert!(
        got.spec_digest.starts_with("sha256:") && got.spec_digest.len() == 71,
        "{}",
        got.spec_digest
    );
    // Key order does not change the digest.
    let mut other = new_job("j2", "vision", None);
    other.spec = json!({"resources": {"gpu_type": "h100", "gpus": 8}, "kind": "train", "team": "vision", "name": "train-vision"});
    assert_eq!(s.submit(other).unwrap().job.spec_digest, got.spec_digest);
    let ev = s.events(&id("j1")).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (
            ev[0].seq,
            ev[0].kind.as_str(),
            ev[0].to_state,
            ev[0].from_state
        ),
        (1, "submitted", Some(JobState::Submitted), None)
    );
    assert_eq!(ev[0].reason.as_deref(), Some("submitted by test"));
}

pub fn submit_refuses_bad_input_naming_the_field(f: &dyn Fixture) {
    let s = f.open();
    let mut j = new_job("bad1", "t", None);
    j.name = " ".into();
    assert!(matches!(
        s.submit(j),
        Err(StoreError::Invalid { field: "name", .. })
    ));
    let mut j = new_job("bad2", "t", None);
    j.team = String::new();
    assert!(matches!(
        s.submit(j),
        Err(StoreError::Invalid { field: "team", .. })
    ));
    let mut j = new_job("bad3", "t", None);
    j.spec = json!([1, 2]);
    let err = s.submit(j).unwrap_err();
    assert!(matches!(err, StoreError::Invalid { field: "spec", .. }));
    assert!(err.to_string().contains("spec"), "{err}");
    let j = new_job("bad4", "t", Some("has space"));
    assert!(matches!(
        s.submit(j),
        Err(StoreError::Invalid {
            field: "idempotency_key",
            ..
        })
    ));
    let mut j = new_job("bad5", "t", None);
    j.at = Timestamp(-5);
    assert!(matches!(
        s.submit(j),
        Err(StoreError::Invalid {
            field: "submitted_at",
            ..
        })
    ));
    assert!(s
        .list(&JobFilter::default(), PageRequest::first(10))
        .unwrap()
        .jobs
        .is_empty());
}

pub fn submit_refuses_a_duplicate_id(f: &dyn Fixture) {
    let s = f.open();
    s.submit(new_job("dup", "a", None)).unwrap();
    assert!(matches!(
        s.submit(new_job("dup", "a", None)),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(s.events(&id("dup")).unwrap().len(), 1);
}

pub fn same_idempotency_key_and_body_returns_the_same_job(f: &dyn Fixture) {
    let s = f.open();
    let first = s.submit(new_job("k1", "nlp", Some("req-1"))).unwrap();
    // A client retry generates a new id; the key brings back the first job.
    let again = s.submit(new_job("k1-retry", "nlp", Some("req-1"))).unwrap();
    assert!(again.replayed);
    assert_eq!(again.job.id, first.job.id);
    assert_eq!(again.job.idempotency_key.as_deref(), Some("req-1"));
    assert!(s.get(&id("k1-retry")).unwrap().is_none());
    assert_eq!(
        s.list(&JobFilter::default(), PageRequest::first(10))
            .unwrap()
            .jobs
            .len(),
        1
    );
    assert_eq!(s.events(&id("k1")).unwrap().len(), 1);
}

pub fn same_idempotency_key_with_another_body_is_a_conflict(f: &dyn Fixture) {
    let s = f.open();
    s.submit(new_job("c1", "nlp", Some("req-9"))).unwrap();
    let mut other = new_job("c2", "nlp", Some("req-9"));
    other.spec["resources"]["gpus"] = json!(16);
    let err = s.submit(other).unwrap_err();
    match &err {
        StoreError::IdempotencyConflict {
            key,
            existing,
            team,
        } => {
            assert_eq!(
                (key.as_str(), existing.as_str(), team.as_str()),
                ("req-9", "c1", "nlp")
            );
        }
        e => panic!("expected a conflict, got {e}"),
    }
    assert!(err.to_string().contains("req-9"));
    assert!(s.get(&id("c2")).unwrap().is_none());
}

pub fn idempotency_keys_are_scoped_to_the_team(f: &dyn Fixture) {
    let s = f.open();
    let a = s.submit(new_job("ta", "team-a", Some("same"))).unwrap();
    let b = s.submit(new_job("tb", "team-b", Some("same"))).unwrap();
    assert!(!a.replayed && !b.replayed);
    assert_ne!(a.job.id, b.job.id);
}

pub fn concurrent_submits_with_one_key_create_one_job(f: &dyn Fixture) {
    let s: Arc<dyn Store> = Arc::from(f.open());
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (s, barrier) = (Arc::clone(&s), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                s.submit(new_job(&format!("race-{i}"), "ops", Some("one-key")))
                    .unwrap()
            })
        })
        .collect();
    let outs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ids: BTreeSet<_> = outs.iter().map(|o| o.job.id.clone()).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(outs.iter().filter(|o| !o.replayed).count(), 1);
    assert_eq!(
        s.list(&JobFilter::default(), PageRequest::first(100))
            .unwrap()
            .jobs
            .len(),
        1
    );
}

pub fn lifecycle_transitions_append_ordered_events(f: &dyn Fixture) {
    let s = f.open();
    let j = id("life");
    s.submit(new_job("life", "vision", None)).unwrap();
    let q = s
        .transition(
            &j,
            Transition::to(JobState::Queued, 1, at(10)).because("waiting for h100"),
        )
        .unwrap();
    assert_eq!(
        (q.state, q.version, q.reason.as_deref()),
        (JobState::Queued, 2, Some("waiting for h100"))
    );
    let mut admit = Transition::admit("private-a", "h100-pool", 2, at(20)).because("capacity free");
    admit.details = json!({"cost": 0, "attempt": 1});
    let a = s.transition(&j, admit).unwrap();
    assert_eq!(
        (a.state, a.zone.as_deref(), a.pool.as_deref()),
        (JobState::Admitted, Some("private-a"), Some("h100-pool"))
    );
    let r = s
        .transition(&j, Transition::to(JobState::Running, 3, at(30)))
        .unwrap();
    assert_eq!(r.zone.as_deref(), Some("private-a"));
    let done = s
        .transition(
            &j,
            Transition::to(JobState::Succeeded, 4, at(40)).because("exit 0"),
        )
        .unwrap();
    assert_eq!(
        (done.state, done.version, done.updated_at),
        (JobState::Succeeded, 5, at(40))
    );
    assert_eq!(done.submitted_at, at(0));
    let ev = s.events(&j).unwrap();
    let kinds: Vec<_> = ev.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["submitted", "queued", "admitted", "running", "succeeded"]
    );
    assert_eq!(
        ev.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(ev[2].from_state, Some(JobState::Queued));
    assert_eq!(ev[2].details, json!({"attempt": 1, "cost": 0}));
    assert_eq!(ev[4].at, at(40));
    // Back to the queue (capacity failover) clears the placement.
    s.submit(new_job("fo", "vision", None)).unwrap();
    let fo = id("fo");
    s.transition(&fo, Transition::to(JobState::Queued, 1, at(1)))
        .unwrap();
    s.transition(&fo, Transition::admit("public-us", "h200-spot", 2, at(2)))
        .unwrap();
    let back = s
        .transition(
            &fo,
            Transition::to(JobState::Queued, 3, at(3)).because("no h200 capacity in region"),
        )
        .unwrap();
    assert_eq!((back.zone, back.pool), (None, None));
}

pub fn admitting_needs_zone_and_pool(f: &dyn Fixture) {
    let s = f.open();
    s.submit(new_job("adm", "t", None)).unwrap();
    let j = id("adm");
    s.transition(&j, Transition::to(JobState::Queued, 1, at(1)))
        .unwrap();
    let mut t = Transition::admit("z", "p", 2, at(2));
    t.pool = None;
    assert!(matches!(
        s.transition(&j, t),
        Err(StoreError::Invalid { field: "pool", .. })
    ));
    assert!(matches!(
        s.transition(&j, Transition::to(JobState::Admitted, 2, at(2))),
        Err(StoreError::Invalid { field: "zone", .. })
    ));
    let mut t = Transition::to(JobState::Cancelled, 2, at(2));
    t.zone = Some("z".into());
    assert!(matches!(
        s.transition(&j, t),
        Err(StoreError::Invalid { field: "zone", .. })
    ));
    assert_eq!(s.get(&j).unwrap().unwrap().version, 2);
}

pub fn illegal_transitions_are_refused_and_write_nothing(f: &dyn Fixture) {
    let s = f.open();
    s.submit(new_job("ill", "t", None)).unwrap();
    let j = id("ill");
    let err = s
        .transition(&j, Transition::to(JobState::Running, 1, at(1)))
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::IllegalTransition {
                from: JobState::Submitted,
                to: JobState::Running,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("ill") && err.to_string().contains("running"),
        "{err}"
    );
    s.transition(&j, Transition::to(JobState::Cancelled, 1, at(2)))
        .unwrap();
    for to in JobState::ALL {
        let t = if to == JobState::Admitted {
            Transition::admit("z", "p", 2, at(3))
        } else {
            Transition::to(to, 2, at(3))
        };
        assert!(
            matches!(
                s.transition(&j, t),
                Err(StoreError::IllegalTransition { .. })
            ),
            "cancelled -> {to}"
        );
    }
    let now = s.get(&j).unwrap().unwrap();
    assert_eq!((now.state, now.version), (JobState::Cancelled, 2));
    assert_eq!(s.events(&j).unwrap().len(), 2);
}

pub fn stale_version_is_refused(f: &dyn Fixture) {
    let s = f.open();
    s.submit(new_job("stale", "t", None)).unwrap();
    let j = id("stale");
    s.transition(&j, Transition::to(JobState::Queued, 1, at(1)))
        .unwrap();
    let err = s
        .transition(&j, Transition::to(JobState::Cancelled, 1, at(2)))
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::VersionConflict {
                expected: 1,
                actual: 2,
                state: JobState::Queued,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(s.get(&j).unwrap().unwrap().state, JobState::Queued);
}

pub fn concurrent_transitions_only_one_wins(f: &dyn Fixture) {
    let s: Arc<dyn Store> = Arc::from(f.open());
    for round in 0..5 {
        let name = format!("cas-{round}");
        s.submit(new_job(&name, "t", None)).unwrap();
        s.transition(&id(&name), Transition::to(JobState::Queued, 1, at(1)))
            .unwrap();
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (s, barrier, name) = (Arc::clone(&s), Arc::clone(&barrier), name.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let t = Transition::admit(&format!("zone-{i}"), "pool", 2, at(2));
                    s.transition(&id(&name), t)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let wins: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(wins.len(), 1, "round {round}: {results:?}");
        for r in &results {
            if let Err(e) = r {
                assert!(
                    matches!(
                        e,
                        StoreError::VersionConflict { .. } | StoreError::IllegalTransition { .. }
                    ),
                    "{e}"
                );
            }
        }
        let job = s.get(&id(&name)).unwrap().unwrap();
        assert_eq!((job.version, job.zone.clone()), (3, wins[0].zone.clone()));
        assert_eq!(s.events(&id(&name)).unwrap().len(), 3);
    }
}

/// Submissions and transitions from many threads at once (a backend may commit them in one
/// transaction): each write gets its own outcome, a refused one writes nothing, and no write is
/// lost or applied twice.
pub fn writes_committed_together_keep_their_own_outcomes(f: &dyn Fixture) {
    let s: Arc<dyn Store> = Arc::from(f.open());
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (s, barrier) = (Arc::clone(&s), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                for n in 0..10 {
                    let name = format!("mix-{i}-{n}");
                    s.submit(new_job(&name, "t", None)).unwrap();
                    let q = s
                        .transition(&id(&name), Transition::to(JobState::Queued, 1, at(1)))
                        .unwrap();
                    assert_eq!(q.version, 2);
                    // Stale, and illegal: refused, each for its own reason, writing nothing.
                    let stale = s
                        .transition(&id(&name), Transition::to(JobState::Cancelled, 1, at(2)))
                        .unwrap_err();
                    assert!(
                        matches!(stale, StoreError::VersionConflict { .. }),
                        "{stale}"
                    );
                    let illegal = s
                        .transition(&id(&name), Transition::to(JobState::Succeeded, 2, at(2)))
                        .unwrap_err();
                    assert!(
                        matches!(illegal, StoreError::IllegalTransition { .. }),
                        "{illegal}"
                    );
                    let a = s
                        .transition(&id(&name), Transition::admit("z", "p", 2, at(3)))
                        .unwrap();
                    assert_eq!((a.version, a.state), (3, JobState::Admitted));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for i in 0..8 {
        for n in 0..10 {
            let j = id(&format!("mix-{i}-{n}"));
            let job = s.get(&j).unwrap().unwrap();
            assert_eq!((job.state, job.version), (JobState::Admitted, 3));
            let kinds: Vec<String> = s.events(&j).unwrap().into_iter().map(|e| e.kind).collect();
            assert_eq!(kinds, ["submitted", "queued", "admitted"]);
        }
    }
}

pub fn appended_events_interleave_in_order(f: &dyn Fixture) {
    let s = f.open();
    s.submit(new_job("ev", "t", None)).unwrap();
    let j = id("ev");
    let draft = |kind: &str, ms| EventDraft {
        kind: kind.into(),
        reason: Some(format!("{kind} reason")),
        reason_code: None,
        details: json!({"k": kind}),
        at: at(ms),
    };
    let e = s.append_event(&j, draft("placement_attempt", 1)).unwrap();
    assert_eq!(e.seq, 2);
    s.transition(&j, Transition::to(JobState::Queued, 1, at(2)))
        .unwrap();
    s.append_event(&j, draft("burst_refused", 3)).unwrap();
    let ev = s.events(&j).unwrap();
    let kinds: Vec<_> = ev.iter().map(|e| (e.seq, e.kind.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (1, "submitted"),
            (2, "placement_attempt"),
            (3, "queued"),
            (4, "burst_refused")
        ]
    );
    assert_eq!(ev[3].details, json!({"k": "burst_refused"}));
    // Events never change the state or version.
    assert_eq!(s.get(&j).unwrap().unwrap().version, 2);
    assert!(matches!(
        s.append_event(&j, draft("Bad Kind", 4)),
        Err(StoreError::Invalid { field: "kind", .. })
    ));
    assert!(matches!(
        s.append_event(&j, draft("running", 4)),
        Err(StoreError::Invalid { field: "kind", .. })
    ));
}

/// A transition's and an event's reason code is stored beside its text and read back as written
/// (evidence matches codes, never prose); a malformed code is refused, naming the field, and
/// writes nothing.
pub fn reason_codes_are_kept_beside_their_text_and_checked(f: &dyn Fixture) {
    let s = f.open();
    s.submit(new_job("rc", "t", None)).unwrap();
    let j = id("rc");
    s.transition(
        &j,
        Transition::queue("z", 1, at(1))
            .because_coded("queue:quota-limit", "team t is at its borrowing limit in z"),
    )
    .unwrap();
    s.append_event(
        &j,
        EventDraft {
            kind: "failover".into(),
            reason: Some("no capacity in z/p".into()),
            reason_code: Some("failover:no-capacity".into()),
            details: json!(null),
            at: at(2),
        },
    )
    .unwrap();
    let ev = s.events(&j).unwrap();
    let codes: Vec<_> = ev.iter().map(|e| e.reason_code.as_deref()).collect();
    assert_eq!(
        codes,
        [
            None,
            Some("queue:quota-limit"),
            Some("failover:no-capacity")
        ]
    );
    assert_eq!(
        ev[1].reason.as_deref(),
        Some("team t is at its borrowing limit in z")
    );
    for bad in ["Queue:Quota", "queue quota", "", &"x".repeat(65)] {
        let t = Transition::to(JobState::Admitted, 2, at(3)).because_coded(bad, "text");
        assert!(
            matches!(
                s.transition(&j, t),
                Err(StoreError::Invalid {
                    field: "reason_code",
                    ..
                })
            ),
            "{bad:?}"
        );
    }
    assert_eq!(
        s.events(&j).unwrap().len(),
        3,
        "a refused write wrote nothing"
    );
    assert_eq!(s.get(&j).unwrap().unwrap().version, 2);
}

pub fn unknown_jobs_are_reported(f: &dyn Fixture) {
    let s = f.open();
    let j = id("nope");
    assert!(s.get(&j).unwrap().is_none());
    assert!(matches!(
        s.transition(&j, Transition::to(JobState::Queued, 1, at(1))),
        Err(StoreError::NotFound { .. })
    ));
    let d = EventDraft {
        kind: "note".into(),
        reason: None,
        reason_code: None,
        details: json!(null),
        at: at(1),
    };
    assert!(matches!(
        s.append_event(&j, d),
        Err(StoreError::NotFound { .. })
    ));
    assert!(s.events(&j).unwrap().is_empty());
}

pub fn list_filters_and_pages_without_gaps(f: &dyn Fixture) {
    let s = f.open();
    for i in 0..25 {
        let team = if i % 2 == 0 { "even" } else { "odd" };
        let name = format!("l{i:02}");
        s.submit(new_job(&name, team, None)).unwrap();
        if i % 5 == 0 {
            s.transition(&id(&name), Transition::to(JobState::Queued, 1, at(1)))
                .unwrap();
            s.transition(
                &id(&name),
                Transition::admit(if i % 10 == 0 { "z10" } else { "z5" }, "p", 2, at(2)),
            )
            .unwrap();
        }
    }
    let mut seen = Vec::new();
    let mut page = PageRequest::first(10);
    let mut pages = 0;
    loop {
        let p = s.list(&JobFilter::default(), page).unwrap();
        pages += 1;
        seen.extend(p.jobs.iter().map(|j| j.id.to_string()));
        match p.next {
            Some(next) => {
                page = PageRequest {
                    after: Some(next),
                    limit: 10,
                }
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<_> = (0..25).map(|i| format!("l{i:02}")).collect();
    assert_eq!(seen, expected);
    // Exactly one page when the page size equals the count.
    assert!(s
        .list(&JobFilter::default(), PageRequest::first(25))
        .unwrap()
        .next
        .is_none());
    let odd = s
        .list(
            &JobFilter {
                team: Some("odd".into()),
                ..JobFilter::default()
            },
            PageRequest::first(100),
        )
        .unwrap();
    assert_eq!(odd.jobs.len(), 12);
    assert!(odd.jobs.iter().all(|j| j.team == "odd"));
    let admitted = s
        .list(
            &JobFilter {
                state: Some(JobState::Admitted),
                ..JobFilter::default()
            },
            PageRequest::first(100),
        )
        .unwrap();
    assert_eq!(
        admitted
            .jobs
            .iter()
            .map(|j| j.id.to_string())
            .collect::<Vec<_>>(),
        ["l00", "l05", "l10", "l15", "l20"]
    );
    let z10 = s
        .list(
            &JobFilter {
                zone: Some("z10".into()),
                team: Some("even".into()),
                state: Some(JobState::Admitted),
            },
            PageRequest::first(100),
        )
        .unwrap();
    assert_eq!(
        z10.jobs
            .iter()
            .map(|j| j.id.to_string())
            .collect::<Vec<_>>(),
        ["l00", "l10", "l20"]
    );
    assert!(matches!(
        s.list(&JobFilter::default(), PageRequest::first(0)),
        Err(StoreError::Invalid { field: "limit", .. })
    ));
    assert!(matches!(
        s.list(&JobFilter::default(), PageRequest::first(100_000)),
        Err(StoreError::Invalid { field: "limit", .. })
    ));
}

pub fn counts_per_state_and_zone(f: &dyn Fixture) {
    let s = f.open();
    assert!(s.counts().unwrap().is_empty());
    for i in 0..6 {
        s.submit(new_job(&format!("n{i}"), "t", None)).unwrap();
    }
    for i in 0..4 {
        s.transition(
            &id(&format!("n{i}")),
            Transition::to(JobState::Queued, 1, at(1)),
        )
        .unwrap();
    }
    s.transition(&id("n0"), Transition::admit("za", "p", 2, at(2)))
        .unwrap();
    s.transition(&id("n1"), Transition::admit("zb", "p", 2, at(2)))
        .unwrap();
    s.transition(&id("n2"), Transition::admit("zb", "p", 2, at(2)))
        .unwrap();
    let mut c = s.counts().unwrap();
    c.sort_by(|a, b| (a.state, &a.zone).cmp(&(b.state, &b.zone)));
    let sc = |state, zone: Option<&str>, count| StateCount {
        state,
        zone: zone.map(str::to_string),
        count,
    };
    assert_eq!(
        c,
        [
            sc(JobState::Submitted, None, 2),
            sc(JobState::Queued, None, 1),
            sc(JobState::Admitted, Some("za"), 1),
            sc(JobState::Admitted, Some("zb"), 2),
        ]
    );
}

pub fn reopen_keeps_jobs_events_and_keys(f: &dyn Fixture) {
    {
        let s = f.open();
        s.submit(new_job("keep", "t", Some("keep-key"))).unwrap();
        s.transition(&id("keep"), Transition::to(JobState::Queued, 1, at(1)))
            .unwrap();
        s.try_acquire_lease("scheduler", "replica-1", Duration::from_secs(30), at(0))
            .unwrap()
            .unwrap();
    }
    let s = f.open();
    let j = s.get(&id("keep")).unwrap().unwrap();
    assert_eq!((j.state, j.version), (JobState::Queued, 2));
    assert_eq!(s.events(&id("keep")).unwrap().len(), 2);
    let again = s.submit(new_job("keep-2", "t", Some("keep-key"))).unwrap();
    assert!(again.replayed);
    assert_eq!(again.job.id, id("keep"));
    assert_eq!(s.lease("scheduler").unwrap().unwrap().holder, "replica-1");
}

pub fn migrations_are_idempotent_and_concurrent_safe(f: &dyn Fixture) {
    std::thread::scope(|scope| {
        let hs: Vec<_> = (0..4).map(|_| scope.spawn(|| drop(f.open()))).collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    let s = f.open();
    s.submit(new_job("m", "t", None)).unwrap();
    drop(s);
    let _ = f.open();
    assert_eq!(
        f.schema_version(),
        tidegate_store::migrate::latest(tidegate_store::migrate::SQLITE)
    );
}

pub fn lease_has_one_holder_at_a_time(f: &dyn Fixture) {
    let s = f.open();
    let ttl = Duration::from_secs(10);
    let a = s
        .try_acquire_lease("scheduler", "a", ttl, at(0))
        .unwrap()
        .unwrap();
    assert_eq!(
        (a.holder.as_str(), a.expires_at, a.epoch),
        ("a", at(10_000), 1)
    );
    assert!(s
        .try_acquire_lease("scheduler", "b", ttl, at(5_000))
        .unwrap()
        .is_none());
    // The holder re-acquiring extends it without changing hands.
    let a2 = s
        .try_acquire_lease("scheduler", "a", ttl, at(5_000))
        .unwrap()
        .unwrap();
    assert_eq!((a2.epoch, a2.expires_at), (1, at(15_000)));
    let renewed = s.renew_lease(&a2, ttl, at(9_000)).unwrap().unwrap();
    assert_eq!(renewed.expires_at, at(19_000));
    assert!(s
        .try_acquire_lease("scheduler", "b", ttl, at(18_999))
        .unwrap()
        .is_none());
    // Other names are independent.
    assert!(s
        .try_acquire_lease("gc", "b", ttl, at(0))
        .unwrap()
        .is_some());
    assert!(matches!(
        s.try_acquire_lease("scheduler", "b", Duration::ZERO, at(0)),
        Err(StoreError::Invalid { field: "ttl", .. })
    ));
    assert!(matches!(
        s.try_acquire_lease("", "b", ttl, at(0)),
        Err(StoreError::Invalid {
            field: "lease name",
            ..
        })
    ));
}

pub fn lease_passes_to_another_after_expiry(f: &dyn Fixture) {
    let s = f.open();
    let ttl = Duration::from_secs(10);
    let a = s
        .try_acquire_lease("scheduler", "a", ttl, at(0))
        .unwrap()
        .unwrap();
    let b = s
        .try_acquire_lease("scheduler", "b", ttl, at(10_000))
        .unwrap()
        .unwrap();
    assert_eq!(
        (b.holder.as_str(), b.epoch, b.expires_at),
        ("b", a.epoch + 1, at(20_000))
    );
    assert!(s
        .try_acquire_lease("scheduler", "a", ttl, at(10_001))
        .unwrap()
        .is_none());
    assert_eq!(s.lease("scheduler").unwrap().unwrap(), b);
}

pub fn stale_holder_cannot_renew(f: &dyn Fixture) {
    let s = f.open();
    let ttl = Duration::from_secs(10);
    let a = s
        .try_acquire_lease("scheduler", "a", ttl, at(0))
        .unwrap()
        .unwrap();
    // Expired, nobody took it: still too late to renew.
    assert!(s.renew_lease(&a, ttl, at(10_000)).unwrap().is_none());
    let b = s
        .try_acquire_lease("scheduler", "b", ttl, at(11_000))
        .unwrap()
        .unwrap();
    assert!(s.renew_lease(&a, ttl, at(12_000)).unwrap().is_none());
    assert!(
        !s.release_lease(&a).unwrap(),
        "a stale holder must not release the new holder's lease"
    );
    assert_eq!(s.lease("scheduler").unwrap().unwrap(), b);
    assert!(s.renew_lease(&b, ttl, at(12_000)).unwrap().is_some());
}

pub fn released_lease_is_free_at_once(f: &dyn Fixture) {
    let s = f.open();
    let ttl = Duration::from_secs(60);
    let a = s
        .try_acquire_lease("scheduler", "a", ttl, at(0))
        .unwrap()
        .unwrap();
    assert!(s.release_lease(&a).unwrap());
    let b = s
        .try_acquire_lease("scheduler", "b", ttl, at(1))
        .unwrap()
        .unwrap();
    assert_eq!(
        b.epoch, 2,
        "the fencing token keeps growing across releases"
    );
    assert!(s.renew_lease(&a, ttl, at(2)).unwrap().is_none());
}

pub fn concurrent_lease_acquisition_has_one_winner(f: &dyn Fixture) {
    let s: Arc<dyn Store> = Arc::from(f.open());
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (s, barrier) = (Arc::clone(&s), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                s.try_acquire_lease(
                    "scheduler",
                    &format!("replica-{i}"),
                    Duration::from_secs(30),
                    at(0),
                )
                .unwrap()
            })
        })
        .collect();
    let winners: Vec<_> = handles
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(s.lease("scheduler").unwrap().unwrap(), winners[0]);
}

pub fn the_fleet_in_force_is_one_row_replaced_and_kept(f: &dyn Fixture) {
    let s = f.open();
    assert_eq!(s.fleet_in_force().unwrap(), None);
    let mut fi = tidegate_store::FleetInForce {
        dir: "/etc/tidegate/fleet".into(),
        fleet_hash: "a".repeat(64),
        policy_hash: "b".repeat(64),
        updated_at: at(1),
    };
    s.set_fleet_in_force(&fi).unwrap();
    fi.fleet_hash = "c".repeat(64);
    fi.updated_at = at(2);
    s.set_fleet_in_force(&fi).unwrap();
    assert_eq!(s.fleet_in_force().unwrap(), Some(fi.clone()));
    drop(s);
    assert_eq!(
        f.open().fleet_in_force().unwrap(),
        Some(fi),
        "kept across a reopen"
    );
}

pub fn zone_conditions_are_set_replaced_and_validated(f: &dyn Fixture) {
    let s = f.open();
    assert!(s.zone_conditions().unwrap().is_empty());
    let mut c = tidegate_store::ZoneCondition {
        zone: "hospital-onprem".into(),
        health: "degraded".into(),
        throttled: false,
        reason: Some("power work in hall B".into()),
        updated_at: at(1),
    };
    s.set_zone_condition(&c).unwrap();
    c.health = "healthy".into();
    c.throttled = true;
    c.updated_at = at(2);
    s.set_zone_condition(&c).unwrap();
    let other = tidegate_store::ZoneCondition {
        zone: "public-eu".into(),
        health: "unreachable".into(),
        throttled: false,
        reason: None,
        updated_at: at(3),
    };
    s.set_zone_condition(&other).unwrap();
    assert_eq!(s.zone_conditions().unwrap(), vec![c.clone(), other]);
    let bad = tidegate_store::ZoneCondition {
        health: "sleepy".into(),
        ..c.clone()
    };
    let err = s.set_zone_condition(&bad).unwrap_err();
    assert!(err.to_string().contains("health"), "{err}");
    assert_eq!(
        s.zone_conditions().unwrap().len(),
        2,
        "nothing written by a refused change"
    );
}

pub fn agent_runs_are_handed_out_once_reported_and_cancelled(f: &dyn Fixture) {
    use tidegate_store::{AgentRun, RunReport};
    let s = f.open();
    let run = |id: &str, zone: &str| AgentRun {
        run_id: id.into(),
        job_id: JobId::new(id).unwrap(),
        zone: zone.into(),
        launch: json!({"job_id": id, "zone": zone}),
        cancel: false,
        status: "pending".into(),
        exit_code: None,
        log_tail: String::new(),
        updated_at: at(0),
    };
    assert!(s.enqueue_run(&run("r1", "edge")).unwrap());
    assert!(
        !s.enqueue_run(&run("r1", "edge")).unwrap(),
        "a run is handed over once"
    );
    assert!(s.enqueue_run(&run("r2", "edge")).unwrap());
    assert!(s.enqueue_run(&run("r3", "other")).unwrap());
    // The edge agent sees its two pending runs, not the other zone's.
    let work = s.agent_sync("edge", "agent-1", &[], at(1), 10).unwrap();
    assert_eq!(
        work.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(),
        ["r1", "r2"]
    );
    assert_eq!(work[0].launch["zone"], "edge");
    // Reports: r1 running, r2 exited; a report on another zone's run changes nothing.
    let rep = |id: &str, status: &str, code: Option<i32>| RunReport {
        run_id: id.into(),
        status: status.into(),
        exit_code: code,
        log_tail: format!("{id} log"),
    };
    let work = s
        .agent_sync(
            "edge",
            "agent-1",
            &[
                rep("r1", "running", None),
                rep("r2", "exited", Some(0)),
                rep("r3", "exited", Some(9)),
            ],
            at(2),
            10,
        )
        .unwrap();
    assert!(work.is_empty(), "nothing left to start: {work:?}");
    assert_eq!(s.agent_run("r2").unwrap().unwrap().exit_code, Some(0));
    assert_eq!(
        s.agent_run("r3").unwrap().unwrap().status,
        "pending",
        "another zone's agent cannot report on it"
    );
    // A stale report never reopens an ended run.
    s.agent_sync("edge", "agent-1", &[rep("r2", "running", None)], at(3), 10)
        .unwrap();
    assert_eq!(s.agent_run("r2").unwrap().unwrap().status, "exited");
    // Cancel: the running run is handed back as work to stop; an ended one cannot be cancelled.
    assert!(s.cancel_run("r1", at(4)).unwrap());
    assert!(!s.cancel_run("r2", at(4)).unwrap());
    let work = s.agent_sync("edge", "agent-1", &[], at(5), 10).unwrap();
    assert_eq!(work.len(), 1);
    assert!(work[0].cancel && work[0].run_id == "r1");
    // Bad reports name the field and change nothing.
    let err = s
        .agent_sync("edge", "agent-1", &[rep("r1", "exited", None)], at(6), 10)
        .unwrap_err();
    assert!(err.to_string().contains("exit_code"), "{err}");
    assert_eq!(s.agent_run("r1").unwrap().unwrap().status, "running");
    let hb = s.heartbeats().unwrap();
    assert_eq!(hb.len(), 1);
    assert_eq!(
        (hb[0].zone.as_str(), hb[0].agent.as_str(), hb[0].last_seen),
        ("edge", "agent-1", at(5))
    );
}
