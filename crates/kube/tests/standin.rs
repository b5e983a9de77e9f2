//! The Kubernetes executor against a local stand-in for the few API calls it uses (create, get,
//! list + watch, delete, pod logs), including the answers that matter: 409 already exists, 403
//! forbidden, 403 exceeded quota. And, when KUBECONFIG is set, one Job on a real cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tidegate_exec::{ExecError, Executor, Launch, RunStatus};
use tidegate_kube::{KubeExecutor, Renderer};
use tokio::sync::broadcast;

#[derive(Clone)]
struct Stand {
    jobs: Arc<Mutex<BTreeMap<String, Value>>>,
    rv: Arc<Mutex<u64>>,
    events: broadcast::Sender<Value>,
    creates: Arc<Mutex<usize>>,
}

impl Stand {
    fn bump(&self, job: &mut Value) -> String {
        let mut rv = self.rv.lock().unwrap();
        *rv += 1;
        job["metadata"]["resourceVersion"] = json!(rv.to_string());
        rv.to_string()
    }

    fn emit(&self, kind: &str, job: &Value) {
        let _ = self.events.send(json!({"type": kind, "object": job}));
    }

    fn set_status(&self, name: &str, status: Value) {
        let mut jobs = self.jobs.lock().unwrap();
        if let Some(mut job) = jobs.get(name).cloned() {
            job["status"] = status;
            self.bump(&mut job);
            jobs.insert(name.to_owned(), job.clone());
            drop(jobs);
            self.emit("MODIFIED", &job);
        }
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code});
    (StatusCode::from_u16(code).unwrap(), Json(body)).into_response()
}

async fn create(
    State(st): State<Stand>,
    Path(_ns): Path<String>,
    Json(mut job): Json<Value>,
) -> Response {
    *st.creates.lock().unwrap() += 1;
    let name = job["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let behaviour = job["metadata"]["labels"]["tidegate.io/test"]
        .as_str()
        .unwrap_or("ok")
        .to_owned();
    match behaviour.as_str() {
        "quota" => return status(403, "Forbidden", &format!("jobs \"{name}\" is forbidden: exceeded quota: gpu-quota, requested: nvidia.com/gpu=8, used: nvidia.com/gpu=60, limited: nvidia.com/gpu=64")),
        "forbid" => return status(403, "Forbidden", &format!("jobs.batch \"{name}\" is forbidden: User \"system:serviceaccount:burst:tidegate\" cannot create resource")),
        _ => {}
    }
    if st.jobs.lock().unwrap().contains_key(&name) {
        return status(
            409,
            "AlreadyExists",
            &format!("jobs.batch \"{name}\" already exists"),
        );
    }
    job["metadata"]["uid"] = json!(format!("uid-{name}"));
    st.bump(&mut job);
    st.jobs.lock().unwrap().insert(name.clone(), job.clone());
    st.emit("ADDED", &job);
    let st2 = st.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        st2.set_status(&name, json!({"active": 1}));
        tokio::time::sleep(Duration::from_millis(250)).await;
        match behaviour.as_str() {
            "hang" => {}
            "fail" => st2.set_status(&name, json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]})),
            _ => st2.set_status(&name, json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})),
        }
    });
    (StatusCode::CREATED, Json(job)).into_response()
}

async fn list_or_watch(
    State(st): State<Stand>,
    Path(_ns): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if q.get("watch").map(String::as_str) == Some("true")
        || q.get("watch").map(String::as_str) == Some("1")
    {
        let rx = st.events.subscribe();
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => {
                        let mut line = serde_json::to_vec(&ev).unwrap();
                        line.push(b'\n');
                        return Some((Ok::<Bytes, Infallible>(Bytes::from(line)), rx));
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    let items: Vec<Value> = st.jobs.lock().unwrap().values().cloned().collect();
    let rv = st.rv.lock().unwrap().to_string();
    Json(json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {"resourceVersion": rv}, "items": items})).into_response()
}

async fn get_job(State(st): State<Stand>, Path((_ns, name)): Path<(String, String)>) -> Response {
    match st.jobs.lock().unwrap().get(&name) {
        Some(j) => Json(j.clone()).into_response(),
        None => status(404, "NotFound", &format!("jobs.batch \"{name}\" not found")),
    }
}

async fn delete_job(
    State(st): State<Stand>,
    Path((_ns, name)): Path<(String, String)>,
) -> Response {
    let removed = st.jobs.lock().unwrap().remove(&name);
    match removed {
        Some(mut j) => {
            st.bump(&mut j);
            st.emit("DELETED", &j);
            Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": name, "kind": "jobs"}})).into_response()
        }
        None => status(404, "NotFound", &format!("jobs.batch \"{name}\" not found")),
    }
}

async fn pods(Path(_ns): Path<String>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let sel = q.get("labelSelector").cloned().unwrap_or_default();
    let job = sel.split('=').nth(1).unwrap_or_default().to_owned();
    Json(json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": [
        {"metadata": {"name": format!("{job}-abcde"), "labels": {"batch.kubernetes.io/job-name": job}}}
    ]}))
    .into_response()
}

async fn pod_log(Path((_ns, pod)): Path<(String, String)>) -> String {
    format!("training on 8 x nvidia.com/gpu in pod {pod}\nepoch 1 loss 0.41\n")
}

fn standin() -> (String, Stand) {
    let (tx, _) = broadcast::channel(1024);
    let st = Stand {
        jobs: Default::default(),
        rv: Arc::new(Mutex::new(1)),
        events: tx,
        creates: Default::default(),
    };
    let app = Router::new()
        .route(
            "/apis/batch/v1/namespaces/{ns}/jobs",
            get(list_or_watch).post(create),
        )
        .route(
            "/apis/batch/v1/namespaces/{ns}/jobs/{name}",
            get(get_job).delete(delete_job),
        )
        .route("/api/v1/namespaces/{ns}/pods", get(pods))
        .route("/api/v1/namespaces/{ns}/pods/{pod}/log", get(pod_log))
        .with_state(st.clone());
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (format!("http://{}", addr_rx.recv().unwrap()), st)
}

/// The renderer under test: a minimal Job; the behaviour label steers the stand-in.
fn renderer() -> Renderer {
    Arc::new(|l: &Launch| {
        if l.name == "malformed" {
            return Ok(json!({"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": 5}}));
        }
        Ok(json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"labels": {"tidegate.io/test": l.name, "kueue.x-k8s.io/queue-name": "burst"}},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{
                "name": "job", "image": "registry.example/trainer:1",
                "resources": {"limits": {"nvidia.com/gpu": l.gpus.to_string()}}
            }]}}}
        }))
    })
}

fn launch(id: &str, behaviour: &str) -> Launch {
    Launch {
        job_id: id.into(),
        name: behaviour.into(),
        team: "icu-ml".into(),
        zone: "public-eu".into(),
        pool: "h100-od".into(),
        gpus: 8,
        gpu_type: "H100".into(),
        command: vec![],
        stand_in_seconds: 0.0,
        time_limit_s: 3600,
        env: vec![],
        labels: Default::default(),
    }
}

fn executor(url: &str) -> KubeExecutor {
    let config = kube::Config::new(url.parse().unwrap());
    KubeExecutor::new(config, "burst", renderer()).unwrap()
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
        std::thread::sleep(Duration::from_millis(30));
    }
}

#[test]
fn jobs_run_end_and_fail_through_the_watcher_and_start_is_idempotent() {
    let (url, st) = standin();
    let ex = executor(&url);
    assert!(ex.start(&launch("job-a1", "ok")).unwrap());
    assert_eq!(ex.poll("job-a1").unwrap(), RunStatus::Running);
    wait(&ex, "job-a1", &RunStatus::Exited { code: 0 });
    assert!(
        !ex.start(&launch("job-a1", "ok")).unwrap(),
        "409 AlreadyExists: nothing new started"
    );
    assert!(ex.start(&launch("job-b1.2", "fail")).unwrap());
    wait(&ex, "job-b1.2", &RunStatus::Exited { code: 1 });
    let stored = st.jobs.lock().unwrap().get("job-b1-r2").cloned().unwrap();
    assert_eq!(
        stored["metadata"]["labels"]["tidegate.io/run-id"],
        "job-b1.2"
    );
    assert_eq!(stored["metadata"]["namespace"], "burst");
    assert_eq!(
        stored["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
            ["nvidia.com/gpu"],
        "8"
    );
    assert!(ex.logs("job-a1", 4096).unwrap().contains("epoch 1 loss"));
    assert_eq!(ex.poll("job-nope").unwrap(), RunStatus::Unknown);
}

#[test]
fn quota_and_forbidden_answers_become_clear_errors() {
    let (url, st) = standin();
    let ex = executor(&url);
    match ex.start(&launch("job-q", "quota")) {
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
    let before = *st.creates.lock().unwrap();
    match ex.start(&launch("job-m", "malformed")) {
        Err(ExecError::Invalid { reason, .. }) => {
            assert!(reason.contains("not a valid batch/v1 Job"), "{reason}")
        }
        other => panic!("a malformed manifest is refused before sending: {other:?}"),
    }
    assert_eq!(*st.creates.lock().unwrap(), before, "nothing was sent");
}

#[test]
fn cancel_deletes_the_job_and_the_watcher_reports_it() {
    let (url, st) = standin();
    let ex = executor(&url);
    assert!(ex.start(&launch("job-h", "hang")).unwrap());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ex.poll("job-h").unwrap(), RunStatus::Running);
    assert!(ex.cancel("job-h").unwrap());
    wait(&ex, "job-h", &RunStatus::Cancelled);
    assert!(st.jobs.lock().unwrap().get("job-h").is_none());
    assert!(!ex.cancel("job-h").unwrap(), "already gone");
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
    let ex = KubeExecutor::new(config, &ns, render).unwrap();
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
