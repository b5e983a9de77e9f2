//! The Kubernetes executor against a local stand-in for the API server and Kueue
//! (`apiserver/mod.rs`): Jobs rendered by the real renderer for a test fleet's zone, admitted
//! from the ClusterQueue quotas `tidegate render --fleet` writes for it. Covers the Kueue
//! lifecycle (queued while suspended, running once admitted, preempted when suspended again,
//! no capacity when not admitted in time, deleted first), quota gating, and the API answers that
//! matter: 409 already exists, 403 forbidden, 403 exceeded quota. And, when KUBECONFIG is set,
//! one Job on a real cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod apiserver;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver::{selector_matches, Queues, Stand};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use kube::Api;
use serde_json::{json, Value};
use tidegate_exec::{ExecError, Executor, Launch, RunStatus};
use tidegate_kube::{KubeExecutor, Renderer};

const ZONE: &str = "gpu-eu";

/// A small fleet: one Kubernetes zone with 8 H100 and 4 H200, no team quotas (so one
/// ClusterQueue, `gpu-eu`, behind the zone's LocalQueue `burst`).
fn fleet() -> (tidegate_model::Fleet, tidegate_model::Scheduling) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    std::fs::write(dir.path().join("fleet.yaml"), "name: kube-test\n").unwrap();
    std::fs::write(
        dir.path().join("zones").join(format!("{ZONE}.yaml")),
        format!(
            "name: {ZONE}
tier: public
provider: gpuaas
region: eu-central-1
jurisdiction: EU
max_classification: confidential
backend:
  kind: kubernetes
  namespace: burst
  queue: burst
pools:
  - name: h100-od
    gpu_type: H100
    gpus: 8
    gpu_memory_gb: 80
    price_per_gpu_hour: 3.2
  - name: h200-od
    gpu_type: H200
    gpus: 4
    gpu_memory_gb: 141
    price_per_gpu_hour: 4.1
"
        ),
    )
    .unwrap();
    tidegate_model::load_fleet_with_scheduling(dir.path()).unwrap()
}

/// The zone's Kueue objects, as `tidegate render --fleet` writes them.
fn rendered() -> Vec<Value> {
    let (fleet, sched) = fleet();
    tidegate_render::k8s::fleet_objects(&fleet, &sched, &Default::default())
        .into_iter()
        .filter(|o| o.path.starts_with(&format!("{ZONE}/")))
        .map(|o| o.value)
        .collect()
}

fn standin() -> (String, Stand) {
    Stand::start(&rendered())
}

/// The renderer under test: the real one for the zone, plus the label that steers the
/// stand-in's Job controller (the launch's name).
fn renderer() -> Renderer {
    let (fleet, sched) = fleet();
    let zone = fleet.zone(ZONE).unwrap().clone();
    let real = tidegate_render::k8s::launch_renderer(zone, sched, "registry.example/t:1".into());
    Arc::new(move |l: &Launch| {
        if l.name == "malformed" {
            return Ok(json!({"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": 5}}));
        }
        let mut v = real(l)?;
        v["metadata"]["labels"]["tidegate.io/test"] = json!(l.name);
        Ok(v)
    })
}

fn launch(id: &str, behaviour: &str) -> Launch {
    launch_on(id, behaviour, "h100-od", "H100", 8)
}

fn launch_on(id: &str, behaviour: &str, pool: &str, gpu_type: &str, gpus: u32) -> Launch {
    Launch {
        job_id: id.into(),
        name: behaviour.into(),
        team: "icu-ml".into(),
        zone: ZONE.into(),
        pool: pool.into(),
        gpus,
        gpu_type: gpu_type.into(),
        command: vec![],
        stand_in_seconds: 0.0,
        time_limit_s: 3600,
        env: vec![],
        labels: [
            ("data_classification", "confidential"),
            ("allowed_execution_zone", "public"),
            ("burst_eligible", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    }
}

fn executor_with(url: &str, admission_timeout: Duration) -> KubeExecutor {
    let config = kube::Config::new(url.parse().unwrap());
    KubeExecutor::new(config, "burst", renderer(), admission_timeout).unwrap()
}

fn executor(url: &str) -> KubeExecutor {
    executor_with(url, Duration::from_secs(60))
}

fn wait(ex: &KubeExecutor, id: &str, want: &RunStatus) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = ex.poll(id).unwrap();
        if &s == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id}: still {s:?}, wanted {want:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls for `d`, asserting every answer is `Queued` (never running, never ended).
fn stays_queued(ex: &KubeExecutor, id: &str, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        assert_eq!(ex.poll(id).unwrap(), RunStatus::Queued, "{id}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_stand_in_reads_its_quotas_from_the_rendered_cluster_queues() {
    let q = Queues::from_rendered(&rendered());
    assert_eq!(
        q.local.get(&("burst".to_owned(), "burst".to_owned())),
        Some(&ZONE.to_owned())
    );
    let cq = &q.cluster[ZONE];
    let quotas: Vec<(&str, u64)> = cq
        .flavors
        .iter()
        .map(|f| (f.name.as_str(), f.nominal))
        .collect();
    assert_eq!(quotas, [("gpu-h100", 8), ("gpu-h200", 4)]);
    assert_eq!(cq.flavors[0].node_labels["tidegate.io/gpu-type"], "h100");
    assert!(!cq.strict_fifo, "rendered queues are BestEffortFIFO");
}

#[test]
fn jobs_run_end_and_fail_through_the_watcher_and_start_is_idempotent() {
    let (url, st) = standin();
    let ex = executor(&url);
    assert!(ex.start(&launch("job-a1", "ok")).unwrap());
    let created = st.job("job-a1").unwrap();
    assert_eq!(
        created["metadata"]["labels"]["kueue.x-k8s.io/queue-name"],
        "burst"
    );
    wait(&ex, "job-a1", &RunStatus::Exited { code: 0 });
    assert!(
        !ex.start(&launch("job-a1", "ok")).unwrap(),
        "409 AlreadyExists: nothing new started"
    );
    assert!(ex.start(&launch("job-b1.2", "fail")).unwrap());
    wait(&ex, "job-b1.2", &RunStatus::Exited { code: 1 });
    let stored = st.job("job-b1-r2").unwrap();
    let labels = &stored["metadata"]["labels"];
    assert_eq!(labels["tidegate.io/run-id"], "job-b1.2");
    assert_eq!(labels["data_classification"], "confidential");
    assert_eq!(labels["allowed_execution_zone"], "public");
    assert_eq!(labels["burst_eligible"], "true");
    assert_eq!(stored["metadata"]["namespace"], "burst");
    assert_eq!(
        stored["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
            ["nvidia.com/gpu"],
        "8"
    );
    assert_eq!(
        st.history(),
        [
            "admit job-a1",
            "release job-a1",
            "admit job-b1-r2",
            "release job-b1-r2"
        ]
    );
    assert!(ex.logs("job-a1", 4096).unwrap().contains("epoch 1 loss"));
    assert_eq!(ex.poll("job-nope").unwrap(), RunStatus::Unknown);
}

#[test]
fn a_suspended_job_is_queued_until_kueue_admits_it_within_the_rendered_quota() {
    let (url, st) = standin();
    let ex = executor(&url);
    // The first takes all 8 H100 of the ClusterQueue and runs until cancelled.
    assert!(ex.start(&launch("job-first", "hang")).unwrap());
    wait(&ex, "job-first", &RunStatus::Running);
    // The second is created suspended and waits: queued, never running, no pods, no logs.
    assert!(ex.start(&launch("job-second", "ok")).unwrap());
    stays_queued(&ex, "job-second", Duration::from_millis(800));
    assert_eq!(st.job("job-second").unwrap()["spec"]["suspend"], true);
    assert_eq!(ex.logs("job-second", 4096).unwrap(), "");
    assert_eq!(
        st.usage(),
        BTreeMap::from([((ZONE.to_owned(), "gpu-h100".to_owned()), 8)])
    );
    // The first ends (deleted): its quota goes back, Kueue unsuspends the second, it runs.
    assert!(ex.cancel("job-first").unwrap());
    wait(&ex, "job-first", &RunStatus::Cancelled);
    wait(&ex, "job-second", &RunStatus::Running);
    assert_eq!(st.job("job-second").unwrap()["spec"]["suspend"], false);
    wait(&ex, "job-second", &RunStatus::Exited { code: 0 });
    // Two that both want the whole quota and end by themselves: the second is admitted only
    // after the first has ended and released it.
    assert!(ex.start(&launch("job-x", "ok")).unwrap());
    assert!(ex.start(&launch("job-y", "ok")).unwrap());
    wait(&ex, "job-x", &RunStatus::Exited { code: 0 });
    wait(&ex, "job-y", &RunStatus::Exited { code: 0 });
    assert_eq!(
        st.history(),
        [
            "admit job-first",
            "release job-first",
            "admit job-second",
            "release job-second",
            "admit job-x",
            "release job-x",
            "admit job-y",
            "release job-y"
        ]
    );
    // A smaller H200 job fits its own flavor while the H100 quota is taken.
    assert!(ex.start(&launch("job-big", "hang")).unwrap());
    assert!(ex
        .start(&launch_on("job-small", "ok", "h200-od", "H200", 4))
        .unwrap());
    wait(&ex, "job-small", &RunStatus::Exited { code: 0 });
    assert_eq!(ex.poll("job-big").unwrap(), RunStatus::Running);
}

#[test]
fn a_job_kueue_evicts_after_it_ran_is_preempted_once_deleted() {
    let (url, st) = standin();
    let ex = executor(&url);
    assert!(ex.start(&launch("job-p", "hang")).unwrap());
    wait(&ex, "job-p", &RunStatus::Running);
    st.evict("job-p");
    let deadline = Instant::now() + Duration::from_secs(10);
    let reason = loop {
        match ex.poll("job-p").unwrap() {
            RunStatus::Preempted { reason } => break reason,
            // Running until the eviction is seen, queued while its deletion is under way.
            RunStatus::Running => {}
            RunStatus::Queued => assert!(st.job("job-p").is_some(), "queued after it was gone"),
            other => panic!("an evicted run is preempted, not {other:?}"),
        }
        assert!(Instant::now() < deadline, "the eviction was not seen");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(reason.contains("evicted"), "{reason}");
    // Preempted only once deleted (pods first), so Kueue cannot admit it again after its backoff
    // and no later run of the job overlaps it.
    assert!(
        st.job("job-p").is_none(),
        "preempted while the Job is still there"
    );
    let deletes = st.deletes();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(
        (deletes[0].0.as_str(), deletes[0].1.as_str()),
        ("job-p", "Foreground")
    );
    // Its end stays what it was once the Job is gone.
    assert!(matches!(
        ex.poll("job-p").unwrap(),
        RunStatus::Preempted { .. }
    ));
    assert_eq!(
        st.history(),
        ["admit job-p", "release job-p", "evict job-p"]
    );
}

#[test]
fn a_job_not_admitted_in_time_is_no_capacity_and_deleted_first() {
    let (url, st) = standin();
    let timeout = Duration::from_millis(700);
    let ex = executor_with(&url, timeout);
    // 8 H200: more than the ClusterQueue's 4, so Kueue never admits it.
    let started = Instant::now();
    assert!(ex
        .start(&launch_on("job-t", "ok", "h200-od", "H200", 8))
        .unwrap());
    let reason = loop {
        match ex.poll("job-t") {
            Ok(RunStatus::Queued) => {}
            Err(ExecError::NoCapacity { reason, .. }) => break reason,
            other => panic!("a Job waiting for admission is queued, then no capacity: {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never withdrawn"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(started.elapsed() >= timeout, "withdrawn before its time");
    assert!(
        reason.contains("did not admit") && reason.contains("job-t"),
        "{reason}"
    );
    // When no capacity is reported the Job is already gone: it can never run there.
    assert!(st.job("job-t").is_none(), "the Job is still in the cluster");
    let deletes = st.deletes();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    let (name, policy, pre) = &deletes[0];
    assert_eq!((name.as_str(), policy.as_str()), ("job-t", "Foreground"));
    assert!(
        pre["uid"].is_string() && pre["resourceVersion"].is_string(),
        "{pre}"
    );
    assert!(
        st.history().is_empty(),
        "never admitted: {:?}",
        st.history()
    );
    // Asked again, the answer stays.
    assert!(matches!(
        ex.poll("job-t"),
        Err(ExecError::NoCapacity { .. })
    ));
}

#[test]
fn a_job_admitted_as_its_wait_ends_is_not_deleted() {
    let (url, st) = standin();
    let ex = executor_with(&url, Duration::from_millis(300));
    // Too big for its flavor, but the stand-in admits it the moment a deletion with
    // preconditions arrives, as Kueue might just before the executor gives up.
    assert!(ex
        .start(&launch_on(
            "job-race",
            "admit-on-delete",
            "h200-od",
            "H200",
            8
        ))
        .unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ex.poll("job-race").unwrap() {
            RunStatus::Queued => {}
            RunStatus::Running | RunStatus::Exited { code: 0 } => break,
            other => panic!("admitted in the race, it runs: {other:?}"),
        }
        assert!(Instant::now() < deadline, "never admitted");
        std::thread::sleep(Duration::from_millis(20));
    }
    wait(&ex, "job-race", &RunStatus::Exited { code: 0 });
    assert!(st.deletes().is_empty(), "{:?}", st.deletes());
    assert!(st.job("job-race").is_some());
}

#[test]
fn quota_and_forbidden_answers_become_clear_errors() {
    let (url, st) = standin();
    let ex = executor(&url);
    match ex.start(&launch("job-q", "count-quota")) {
        Err(ExecError::NoCapacity { reason, .. }) => {
            assert!(reason.contains("exceeded quota"), "{reason}")
        }
        other => panic!("quota exceeded must be NoCapacity: {other:?}"),
    }
    match ex.start(&launch("job-f", "forbid")) {
        Err(ExecError::Refused { reason, .. }) => assert!(
            reason.contains("403") && reason.contains("cannot create"),
            "{reason}"
        ),
        other => panic!("403 must be Refused: {other:?}"),
    }
    let before = st.creates();
    match ex.start(&launch("job-m", "malformed")) {
        Err(ExecError::Invalid { reason, .. }) => {
            assert!(reason.contains("not a valid batch/v1 Job"), "{reason}")
        }
        other => panic!("a malformed manifest is refused before sending: {other:?}"),
    }
    let mut unlabelled = launch("job-u", "ok");
    unlabelled.labels.remove("data_classification");
    match ex.start(&unlabelled) {
        Err(ExecError::Invalid { reason, .. }) => {
            assert!(reason.contains("data_classification"), "{reason}")
        }
        other => panic!("a launch without its effective labels is not rendered: {other:?}"),
    }
    assert_eq!(st.creates(), before, "nothing was sent");
}

#[test]
fn cancel_deletes_the_job_and_the_watcher_reports_it() {
    let (url, st) = standin();
    let ex = executor(&url);
    assert!(ex.start(&launch("job-h", "hang")).unwrap());
    wait(&ex, "job-h", &RunStatus::Running);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ex.poll("job-h").unwrap(), RunStatus::Running);
    // A queued one can be cancelled too.
    assert!(ex.start(&launch("job-w", "ok")).unwrap());
    assert_eq!(ex.poll("job-w").unwrap(), RunStatus::Queued);
    assert!(ex.cancel("job-w").unwrap());
    wait(&ex, "job-w", &RunStatus::Cancelled);
    assert!(ex.cancel("job-h").unwrap());
    wait(&ex, "job-h", &RunStatus::Cancelled);
    assert!(st.job("job-h").is_none());
    assert!(!ex.cancel("job-h").unwrap(), "already gone");
    assert!(
        !st.history().contains(&"admit job-w".to_owned()),
        "{:?}",
        st.history()
    );
}

#[test]
fn the_stand_in_honours_label_selectors_and_resource_versions() {
    let (url, _st) = standin();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
        let jobs: Api<Job> = Api::namespaced(client, "burst");
        let job = |name: &str, labels: Value| -> Job {
            serde_json::from_value(json!({
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": name, "labels": labels},
                "spec": {"suspend": true, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}},
            }))
            .unwrap()
        };
        let pp = PostParams::default();
        let ours = jobs
            .create(&pp, &job("ours", json!({"tidegate.io/run-id": "ours"})))
            .await
            .unwrap();
        let from = ours.metadata.resource_version.clone().unwrap();
        jobs.create(&pp, &job("other", json!({"team": "x"})))
            .await
            .unwrap();
        jobs.create(&pp, &job("later", json!({"tidegate.io/run-id": "later"})))
            .await
            .unwrap();
        let names = |l: Vec<Job>| -> Vec<String> {
            l.into_iter().map(|j| j.metadata.name.unwrap()).collect()
        };
        let listed = jobs
            .list(&ListParams::default().labels("tidegate.io/run-id"))
            .await
            .unwrap();
        assert_eq!(names(listed.items), ["later", "ours"]);
        let listed = jobs.list(&ListParams::default().labels("team=x")).await.unwrap();
        assert_eq!(names(listed.items), ["other"]);
        let listed = jobs
            .list(&ListParams::default().labels("!tidegate.io/run-id"))
            .await
            .unwrap();
        assert_eq!(names(listed.items), ["other"]);
        // A watch from the version after `ours` was created: only what came later and matches.
        let mut stream = std::pin::pin!(jobs
            .watch(&WatchParams::default().labels("tidegate.io/run-id"), &from)
            .await
            .unwrap());
        use futures_util::StreamExt as _;
        let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match first {
            WatchEvent::Added(j) => assert_eq!(j.metadata.name.as_deref(), Some("later")),
            other => panic!("expected `later` added, got {other:?}"),
        }
        jobs.create(&pp, &job("other2", json!({"team": "x"})))
            .await
            .unwrap();
        jobs.create(&pp, &job("live", json!({"tidegate.io/run-id": "live"})))
            .await
            .unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match next {
            WatchEvent::Added(j) => assert_eq!(j.metadata.name.as_deref(), Some("live")),
            other => panic!("expected `live` added, got {other:?}"),
        }
        // Set-based selectors are refused, not silently matched.
        assert!(jobs
            .list(&ListParams::default().labels("team in (x,y)"))
            .await
            .is_err());
    });
    assert!(selector_matches("a=1,!b", &json!({"a": "1"})).unwrap());
    assert!(!selector_matches("a=1,!b", &json!({"a": "1", "b": "2"})).unwrap());
    assert!(selector_matches("a!=2", &json!({"a": "1"})).unwrap());
}

#[test]
fn live_cluster_when_kubeconfig_is_set() {
    if std::env::var("KUBECONFIG").is_err() {
        eprintln!("skipping the live Kubernetes test: set KUBECONFIG (and TIDEGATE_KUBE_NAMESPACE) to run one Job on a real cluster");
        return;
    }
    let ns = std::env::var("TIDEGATE_KUBE_NAMESPACE").unwrap_or_else(|_| "default".into());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = rt.block_on(kube::Config::infer()).unwrap();
    drop(rt);
    let render: Renderer = Arc::new(|_l: &Launch| {
        Ok(
            json!({"apiVersion": "batch/v1", "kind": "Job", "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "job", "image": "busybox:1.36", "command": ["sh", "-c", "echo tidegate live test"]}]}}}}),
        )
    });
    let ex = KubeExecutor::new(config, &ns, render, Duration::from_secs(300)).unwrap();
    let id = format!("tidegate-live-{}", std::process::id());
    assert!(ex.start(&launch(&id, "live")).unwrap());
    let deadline = Instant::now() + Duration::from_secs(300);
    while !ex.poll(&id).unwrap().is_final() {
        assert!(Instant::now() < deadline, "the live Job did not end");
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(ex.poll(&id).unwrap(), RunStatus::Exited { code: 0 });
    let _ = ex.cancel(&id);
}
