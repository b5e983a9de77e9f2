//! A stand-in for the Kubernetes API server and Kueue, on loopback, for the executor's tests.
//!
//! API server: Jobs (create, get, list and watch with label selectors and `resourceVersion`,
//! delete with propagation policies and preconditions), pods (list by label, logs), in one
//! namespace. Every change is numbered (`resourceVersion`) and kept, so a watch from version N
//! replays what came after N before it goes live (a watch started after a list misses nothing);
//! a watch from `0` or no version starts with the current objects. Answers: 201, 200, 404,
//! 409 AlreadyExists, 409 Conflict (a precondition), 403 forbidden, 403 exceeded quota (an
//! object-count quota, `count/jobs.batch`: GPU quota is Kueue's; a ResourceQuota on GPUs would
//! charge pods, never the Job), 400 for a selector it does not understand.
//!
//! Job controller: a Job that is not suspended gets pods (`status.active`, `startTime`) and ends
//! as its `tidegate.io/test` label says (`ok`: succeeds, `fail`: fails, `hang`: runs until it is
//! deleted or evicted); a suspended Job gets the `Suspended` condition and no pods. Foreground
//! deletion marks the Job (`deletionTimestamp`, the `foregroundDeletion` finalizer) and removes it
//! once its pods are gone (a short delay); background and orphan deletion remove it at once.
//!
//! Kueue: quotas come from the objects `tidegate render --fleet` writes for the zone
//! (`k8s::fleet_objects`): each LocalQueue's ClusterQueue, each ClusterQueue's flavors in order
//! with their nominal `nvidia.com/gpu` quota, each ResourceFlavor's node labels. A controller
//! loop admits suspended Jobs labelled `kueue.x-k8s.io/queue-name` in creation order (FIFO per
//! ClusterQueue) while quota allows: the first flavor whose node labels the pod template's node
//! selector and required node affinity allow, and whose quota still holds the Job's GPU
//! requests. Admission unsuspends the Job; quota is released when the Job succeeds, fails, is
//! deleted or is evicted. [`Stand::evict`] does what Kueue does to a preempted workload: suspends
//! the Job again and releases its quota; the workload waits out a requeue backoff (60 s, longer
//! than any test) before it may be admitted again.
//!
//! Fidelity limits (what real Kueue does that this does not):
//! - no cohorts: no borrowing or lending between ClusterQueues, `borrowingLimit`,
//!   `lendingLimit` and `fairSharing` are ignored;
//! - no preemption of its own (`preemption`, `withinClusterQueue`, `reclaimWithinCohort`,
//!   priorities and WorkloadPriorityClasses are ignored): eviction happens only when a test
//!   calls [`Stand::evict`];
//! - no partial admission, no `flavorFungibility` (a Job takes the first flavor that fits
//!   whole), only `nvidia.com/gpu` is counted (not cpu or memory), one resource group;
//! - `BestEffortFIFO` and `StrictFIFO` differ only in whether a Job that does not fit blocks the
//!   ones behind it; no inadmissible-workload requeueing timers;
//! - no Workload objects, no admission checks, no `waitForPodsReady`, no injection of the
//!   flavor's node labels and tolerations into the pod template, no LocalQueue or ClusterQueue
//!   status, no `stopPolicy`;
//! - no multi-namespace isolation (namespaces in paths are not told apart), no admission webhooks,
//!   no ResourceQuota beyond the one scripted answer, no field selectors, no set-based label
//!   selectors (`in`, `notin`: answered 400), no watch bookmarks or timeouts, no 410 Gone (every
//!   change is kept).

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
use tokio::sync::{broadcast, Notify};

const GPU: &str = "nvidia.com/gpu";
const QUEUE_LABEL: &str = "kueue.x-k8s.io/queue-name";
/// How long an evicted workload waits before Kueue may admit it again.
const REQUEUE_BACKOFF: Duration = Duration::from_secs(60);

/// One flavor of a ClusterQueue: its node labels (from the ResourceFlavor) and nominal GPUs.
#[derive(Debug, Clone)]
pub struct Flavor {
    pub name: String,
    pub node_labels: BTreeMap<String, String>,
    pub nominal: u64,
}

/// A ClusterQueue as the stand-in admits through it.
#[derive(Debug, Clone)]
pub struct ClusterQueue {
    pub strict_fifo: bool,
    pub flavors: Vec<Flavor>,
}

/// The Kueue configuration of one cluster, read from rendered objects.
#[derive(Debug, Clone, Default)]
pub struct Queues {
    /// (namespace, LocalQueue) → ClusterQueue.
    pub local: BTreeMap<(String, String), String>,
    pub cluster: BTreeMap<String, ClusterQueue>,
}

fn quantity(v: &Value) -> u64 {
    match v {
        Value::Number(n) => n.as_u64().unwrap_or(0),
        Value::String(s) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

impl Queues {
    /// Reads ResourceFlavors, ClusterQueues and LocalQueues (other kinds are skipped).
    pub fn from_rendered(objects: &[Value]) -> Self {
        fn by_kind<'a>(objects: &'a [Value], k: &'static str) -> impl Iterator<Item = &'a Value> {
            objects
                .iter()
                .filter(move |o| o["kind"] == k && o["apiVersion"] == "kueue.x-k8s.io/v1beta1")
        }
        let node_labels: BTreeMap<String, BTreeMap<String, String>> =
            by_kind(objects, "ResourceFlavor")
                .map(|f| {
                    let labels = f["spec"]["nodeLabels"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                        .collect();
                    (f["metadata"]["name"].as_str().unwrap().to_owned(), labels)
                })
                .collect();
        let mut q = Queues::default();
        for cq in by_kind(objects, "ClusterQueue") {
            let mut flavors = Vec::new();
            for group in cq["spec"]["resourceGroups"].as_array().unwrap() {
                for f in group["flavors"].as_array().unwrap() {
                    let name = f["name"].as_str().unwrap().to_owned();
                    let nominal = f["resources"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|r| r["name"] == GPU)
                        .map(|r| quantity(&r["nominalQuota"]))
                        .sum();
                    let labels = node_labels
                        .get(&name)
                        .unwrap_or_else(|| panic!("ClusterQueue uses unknown flavor {name}"))
                        .clone();
                    flavors.push(Flavor {
                        name,
                        node_labels: labels,
                        nominal,
                    });
                }
            }
            q.cluster.insert(
                cq["metadata"]["name"].as_str().unwrap().to_owned(),
                ClusterQueue {
                    strict_fifo: cq["spec"]["queueingStrategy"] == "StrictFIFO",
                    flavors,
                },
            );
        }
        for lq in by_kind(objects, "LocalQueue") {
            q.local.insert(
                (
                    lq["metadata"]["namespace"].as_str().unwrap().to_owned(),
                    lq["metadata"]["name"].as_str().unwrap().to_owned(),
                ),
                lq["spec"]["clusterQueue"].as_str().unwrap().to_owned(),
            );
        }
        q
    }
}

/// A Job's admission: ClusterQueue, flavor, GPUs, and a token for its controller timers.
#[derive(Debug, Clone)]
struct Admission {
    cq: String,
    flavor: String,
    gpus: u64,
    token: u64,
}

#[derive(Default)]
struct Inner {
    jobs: BTreeMap<String, Value>,
    rv: u64,
    /// Every watch event, in order: (resourceVersion, event).
    log: Vec<(u64, Value)>,
    /// Creation order.
    seq: BTreeMap<String, u64>,
    next_seq: u64,
    admitted: BTreeMap<String, Admission>,
    /// Jobs that had pods at some point.
    had_pods: std::collections::BTreeSet<String>,
    backoff: BTreeMap<String, Instant>,
    next_token: u64,
    /// `admit NAME`, `release NAME`, `evict NAME`, in order.
    history: Vec<String>,
    /// (name, propagation policy, preconditions) of every DELETE that removed or marked a Job.
    deletes: Vec<(String, String, Value)>,
    creates: usize,
}

/// The stand-in: its state, and the handle of the runtime serving it.
#[derive(Clone)]
pub struct Stand {
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<(u64, Value)>,
    queues: Arc<Queues>,
    kueue: Arc<Notify>,
    rt: tokio::runtime::Handle,
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code});
    (StatusCode::from_u16(code).unwrap(), Json(body)).into_response()
}

/// Whether `labels` match a label selector (equality and existence terms only).
pub fn selector_matches(sel: &str, labels: &Value) -> Result<bool, String> {
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    for term in sel.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if term.contains('(') || term.contains(' ') {
            return Err(format!(
                "the stand-in does not support set-based selectors: {term:?}"
            ));
        }
        let ok = if let Some(k) = term.strip_prefix('!') {
            get(k).is_none()
        } else if let Some((k, v)) = term.split_once("!=") {
            get(k) != Some(v)
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            get(k) == Some(v)
        } else {
            get(term).is_some()
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn now_rfc3339() -> String {
    // Fixed: the executor reads no timestamps but `deletionTimestamp`'s presence.
    "2026-01-01T00:00:00Z".into()
}

fn gpus_of(job: &Value) -> u64 {
    job["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let r = &c["resources"];
            let req = &r["requests"][GPU];
            quantity(if req.is_null() {
                &r["limits"][GPU]
            } else {
                req
            })
        })
        .sum()
}

/// Whether the pod template may run on nodes with `flavor`'s labels.
fn fits_flavor(job: &Value, flavor: &Flavor) -> bool {
    let pod = &job["spec"]["template"]["spec"];
    for (k, v) in &flavor.node_labels {
        if let Some(want) = pod["nodeSelector"][k].as_str() {
            if want != v {
                return false;
            }
        }
        let terms = &pod["affinity"]["nodeAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
        for e in terms[0]["matchExpressions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if e["key"] == k.as_str() && e["operator"] == "In" {
                let allowed = e["values"].as_array().unwrap();
                if !allowed.iter().any(|a| a == v.as_str()) {
                    return false;
                }
            }
        }
    }
    true
}

fn suspended(job: &Value) -> bool {
    job["spec"]["suspend"] == true
}

fn finished(job: &Value) -> bool {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
}

fn suspended_status(reason: &str) -> Value {
    json!({"active": 0, "conditions": [{"type": "Suspended", "status": "True", "reason": reason, "message": "Job suspended"}]})
}

impl Inner {
    /// Numbers a change and hands it to the log and to live watches (under the lock, so a watch
    /// that subscribes under it sees every later change exactly once).
    fn commit(&mut self, tx: &broadcast::Sender<(u64, Value)>, kind: &str, job: &mut Value) {
        self.rv += 1;
        job["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let ev = json!({"type": kind, "object": job});
        self.log.push((self.rv, ev.clone()));
        let _ = tx.send((self.rv, ev));
    }

    fn release(&mut self, name: &str) -> bool {
        if self.admitted.remove(name).is_some() {
            self.history.push(format!("release {name}"));
            true
        } else {
            false
        }
    }

    fn remove(&mut self, tx: &broadcast::Sender<(u64, Value)>, name: &str) -> bool {
        let Some(mut job) = self.jobs.remove(name) else {
            return false;
        };
        self.commit(tx, "DELETED", &mut job);
        self.release(name)
    }
}

impl Stand {
    /// Serves the stand-in on a loopback port, with the Kueue objects `rendered`.
    pub fn start(rendered: &[Value]) -> (String, Stand) {
        let queues = Arc::new(Queues::from_rendered(rendered));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let (tx, _) = broadcast::channel(4096);
            let st = Stand {
                inner: Default::default(),
                events: tx,
                queues,
                kueue: Arc::new(Notify::new()),
                rt: rt.handle().clone(),
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
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let kueue = st.clone();
                tokio::spawn(async move { kueue.kueue_loop().await });
                addr_tx.send((listener.local_addr().unwrap(), st)).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        let (addr, st) = addr_rx.recv().unwrap();
        (format!("http://{addr}"), st)
    }

    /// The Job now, if it exists.
    pub fn job(&self, name: &str) -> Option<Value> {
        self.inner.lock().unwrap().jobs.get(name).cloned()
    }

    /// Admissions, releases and evictions so far, in order.
    pub fn history(&self) -> Vec<String> {
        self.inner.lock().unwrap().history.clone()
    }

    /// Deletions so far: (Job, propagation policy, preconditions).
    pub fn deletes(&self) -> Vec<(String, String, Value)> {
        self.inner.lock().unwrap().deletes.clone()
    }

    /// Create requests so far (refused ones included).
    pub fn creates(&self) -> usize {
        self.inner.lock().unwrap().creates
    }

    /// GPUs admitted now per ClusterQueue and flavor.
    pub fn usage(&self) -> BTreeMap<(String, String), u64> {
        let inner = self.inner.lock().unwrap();
        let mut out = BTreeMap::new();
        for a in inner.admitted.values() {
            *out.entry((a.cq.clone(), a.flavor.clone())).or_insert(0) += a.gpus;
        }
        out
    }

    /// What Kueue does to a preempted workload: the Job is suspended again (its pods go), its
    /// quota is released, and it waits out the requeue backoff.
    pub fn evict(&self, name: &str) {
        let mut inner = self.inner.lock().unwrap();
        let Some(mut job) = inner.jobs.get(name).cloned() else {
            panic!("no Job {name} to evict");
        };
        assert!(inner.release(name), "{name} was not admitted");
        job["spec"]["suspend"] = json!(true);
        job["status"] = suspended_status("JobSuspended");
        inner.commit(&self.events, "MODIFIED", &mut job);
        inner.jobs.insert(name.to_owned(), job);
        inner.history.push(format!("evict {name}"));
        inner
            .backoff
            .insert(name.to_owned(), Instant::now() + REQUEUE_BACKOFF);
        drop(inner);
        self.kueue.notify_one();
    }

    fn modify(&self, name: &str, f: impl FnOnce(&mut Value)) -> bool {
        let mut inner = self.inner.lock().unwrap();
        let Some(mut job) = inner.jobs.get(name).cloned() else {
            return false;
        };
        f(&mut job);
        inner.commit(&self.events, "MODIFIED", &mut job);
        inner.jobs.insert(name.to_owned(), job);
        true
    }

    /// The Kueue controller: admits pending Jobs whenever something changed (and every 100 ms).
    async fn kueue_loop(self) {
        loop {
            let _ = tokio::time::timeout(Duration::from_millis(100), self.kueue.notified()).await;
            // Admission is asynchronous, as in a cluster: a short pause after each change.
            tokio::time::sleep(Duration::from_millis(20)).await;
            for name in self.admit_pending() {
                self.run_pods(name);
            }
        }
    }

    /// Admits what fits, in creation order per ClusterQueue; returns the admitted Jobs.
    fn admit_pending(&self) -> Vec<String> {
        let mut inner = self.inner.lock().unwrap();
        let now = Instant::now();
        let mut pending: Vec<(u64, String)> = inner
            .jobs
            .iter()
            .filter(|(n, j)| {
                suspended(j)
                    && !finished(j)
                    && j["metadata"]["deletionTimestamp"].is_null()
                    && !inner.admitted.contains_key(*n)
                    && inner.backoff.get(*n).is_none_or(|t| *t <= now)
            })
            .map(|(n, _)| (inner.seq[n], n.clone()))
            .collect();
        pending.sort();
        let mut blocked: std::collections::BTreeSet<String> = Default::default();
        let mut out = Vec::new();
        for (_, name) in pending {
            let job = inner.jobs[&name].clone();
            let ns = job["metadata"]["namespace"].as_str().unwrap_or_default();
            let Some(lq) = job["metadata"]["labels"][QUEUE_LABEL].as_str() else {
                continue; // Kueue leaves Jobs without a queue name alone
            };
            let Some(cq_name) = self.queues.local.get(&(ns.to_owned(), lq.to_owned())) else {
                continue; // no such LocalQueue: inadmissible
            };
            if blocked.contains(cq_name) {
                continue;
            }
            let cq = &self.queues.cluster[cq_name];
            let gpus = gpus_of(&job);
            let used = |f: &str| -> u64 {
                inner
                    .admitted
                    .values()
                    .filter(|a| a.cq == *cq_name && a.flavor == f)
                    .map(|a| a.gpus)
                    .sum()
            };
            let flavor = cq
                .flavors
                .iter()
                .find(|f| fits_flavor(&job, f) && used(&f.name) + gpus <= f.nominal)
                .map(|f| f.name.clone());
            let Some(flavor) = flavor else {
                if cq.strict_fifo {
                    blocked.insert(cq_name.clone());
                }
                continue;
            };
            inner.next_token += 1;
            let token = inner.next_token;
            inner.admitted.insert(
                name.clone(),
                Admission {
                    cq: cq_name.clone(),
                    flavor,
                    gpus,
                    token,
                },
            );
            inner.history.push(format!("admit {name}"));
            let mut job = job;
            job["spec"]["suspend"] = json!(false);
            inner.commit(&self.events, "MODIFIED", &mut job);
            inner.jobs.insert(name.clone(), job);
            out.push(name);
        }
        out
    }

    /// The Job controller for a Job that is not suspended: pods, then the outcome its
    /// `tidegate.io/test` label asks for. Stops if the Job is suspended or deleted meanwhile.
    fn run_pods(&self, name: String) {
        let st = self.clone();
        let token = self
            .inner
            .lock()
            .unwrap()
            .admitted
            .get(&name)
            .map(|a| a.token);
        self.rt.spawn(async move {
            let current = |st: &Stand| {
                let inner = st.inner.lock().unwrap();
                let job_ok = inner
                    .jobs
                    .get(&name)
                    .is_some_and(|j| !suspended(j) && j["metadata"]["deletionTimestamp"].is_null());
                job_ok && token.is_none_or(|t| inner.admitted.get(&name).is_some_and(|a| a.token == t))
            };
            tokio::time::sleep(Duration::from_millis(150)).await;
            if !current(&st) {
                return;
            }
            st.inner.lock().unwrap().had_pods.insert(name.clone());
            st.modify(&name, |j| {
                j["status"] = json!({"active": 1, "startTime": now_rfc3339(), "conditions": [{"type": "Suspended", "status": "False", "reason": "JobResumed"}]});
            });
            tokio::time::sleep(Duration::from_millis(250)).await;
            if !current(&st) {
                return;
            }
            let behaviour = st
                .job(&name)
                .and_then(|j| j["metadata"]["labels"]["tidegate.io/test"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "ok".into());
            let end = match behaviour.as_str() {
                "hang" => return,
                "fail" => json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}),
                _ => json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}),
            };
            st.modify(&name, |j| j["status"] = end);
            st.inner.lock().unwrap().release(&name);
            st.kueue.notify_one();
        });
    }
}

async fn create(
    State(st): State<Stand>,
    Path(_ns): Path<String>,
    Json(mut job): Json<Value>,
) -> Response {
    let name = job["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let behaviour = job["metadata"]["labels"]["tidegate.io/test"]
        .as_str()
        .unwrap_or("ok")
        .to_owned();
    let mut inner = st.inner.lock().unwrap();
    inner.creates += 1;
    match behaviour.as_str() {
        "count-quota" => return status(403, "Forbidden", &format!("jobs.batch \"{name}\" is forbidden: exceeded quota: job-count, requested: count/jobs.batch=1, used: count/jobs.batch=50, limited: count/jobs.batch=50")),
        "forbid" => return status(403, "Forbidden", &format!("jobs.batch \"{name}\" is forbidden: User \"system:serviceaccount:burst:tidegate\" cannot create resource \"jobs\" in API group \"batch\"")),
        _ => {}
    }
    if inner.jobs.contains_key(&name) {
        return status(
            409,
            "AlreadyExists",
            &format!("jobs.batch \"{name}\" already exists"),
        );
    }
    job["metadata"]["uid"] = json!(format!("uid-{name}-{}", inner.next_seq));
    job["metadata"]["creationTimestamp"] = json!(now_rfc3339());
    let is_suspended = suspended(&job);
    if is_suspended {
        job["status"] = suspended_status("JobSuspended");
    }
    inner.next_seq += 1;
    let seq = inner.next_seq;
    inner.seq.insert(name.clone(), seq);
    inner.commit(&st.events, "ADDED", &mut job);
    inner.jobs.insert(name.clone(), job.clone());
    drop(inner);
    if is_suspended {
        st.kueue.notify_one();
    } else {
        st.run_pods(name);
    }
    (StatusCode::CREATED, Json(job)).into_response()
}

async fn list_or_watch(
    State(st): State<Stand>,
    Path(_ns): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let sel = q.get("labelSelector").cloned().unwrap_or_default();
    let matches = |job: &Value| selector_matches(&sel, &job["metadata"]["labels"]);
    if let Err(e) = matches(&json!({})) {
        return status(400, "BadRequest", &e);
    }
    let watching = matches!(q.get("watch").map(String::as_str), Some("true" | "1"));
    let inner = st.inner.lock().unwrap();
    if !watching {
        let items: Vec<Value> = inner
            .jobs
            .values()
            .filter(|j| matches(j).unwrap_or(false))
            .cloned()
            .collect();
        let rv = inner.rv.to_string();
        return Json(json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {"resourceVersion": rv}, "items": items})).into_response();
    }
    let from: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // What the watch starts with: the changes after `from`, or the current objects.
    let backlog: Vec<Value> = if from == 0 {
        inner
            .jobs
            .values()
            .filter(|j| matches(j).unwrap_or(false))
            .map(|j| json!({"type": "ADDED", "object": j}))
            .collect()
    } else {
        inner
            .log
            .iter()
            .filter(|(rv, ev)| *rv > from && matches(&ev["object"]).unwrap_or(false))
            .map(|(_, ev)| ev.clone())
            .collect()
    };
    let last = inner.rv;
    let rx = st.events.subscribe();
    drop(inner);
    let live = futures_util::stream::unfold((rx, sel), move |(mut rx, sel)| async move {
        loop {
            match rx.recv().await {
                Ok((rv, ev)) if rv > last => {
                    if selector_matches(&sel, &ev["object"]["metadata"]["labels"]).unwrap_or(false)
                    {
                        return Some((ev, (rx, sel)));
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    use futures_util::StreamExt as _;
    let stream = futures_util::stream::iter(backlog).chain(live).map(|ev| {
        let mut line = serde_json::to_vec(&ev).unwrap();
        line.push(b'\n');
        Ok::<Bytes, Infallible>(Bytes::from(line))
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

async fn get_job(State(st): State<Stand>, Path((_ns, name)): Path<(String, String)>) -> Response {
    match st.job(&name) {
        Some(j) => Json(j).into_response(),
        None => status(404, "NotFound", &format!("jobs.batch \"{name}\" not found")),
    }
}

async fn delete_job(
    State(st): State<Stand>,
    Path((_ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let opts: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    // Batch Jobs deleted through the API orphan their pods unless told otherwise.
    let policy = opts["propagationPolicy"]
        .as_str()
        .unwrap_or("Orphan")
        .to_owned();
    let pre = opts["preconditions"].clone();
    let mut inner = st.inner.lock().unwrap();
    let Some(mut job) = inner.jobs.get(&name).cloned() else {
        return status(404, "NotFound", &format!("jobs.batch \"{name}\" not found"));
    };
    if job["metadata"]["labels"]["tidegate.io/test"] == "admit-on-delete"
        && !pre.is_null()
        && suspended(&job)
    {
        // Kueue admits it just before the deletion lands (ignoring quota): the precondition on
        // the version the executor read no longer holds.
        inner.next_token += 1;
        let token = inner.next_token;
        inner.admitted.insert(
            name.clone(),
            Admission {
                cq: "race".into(),
                flavor: "race".into(),
                gpus: 0,
                token,
            },
        );
        inner.history.push(format!("admit {name}"));
        job["spec"]["suspend"] = json!(false);
        inner.commit(&st.events, "MODIFIED", &mut job);
        inner.jobs.insert(name.clone(), job.clone());
        let st2 = st.clone();
        let n = name.clone();
        st.rt.spawn(async move { st2.run_pods(n) });
    }
    for (field, key) in [("resourceVersion", "resourceVersion"), ("uid", "uid")] {
        if let Some(want) = pre[field].as_str() {
            let have = job["metadata"][key].as_str().unwrap_or_default();
            if want != have {
                return status(409, "Conflict", &format!("Operation cannot be fulfilled on jobs.batch \"{name}\": the {field} in the precondition ({want}) does not match the {field} in record ({have}). The object might have been modified"));
            }
        }
    }
    if !job["metadata"]["deletionTimestamp"].is_null() {
        return Json(job).into_response();
    }
    inner.deletes.push((name.clone(), policy.clone(), pre));
    if policy == "Foreground" {
        job["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        job["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
        inner.commit(&st.events, "MODIFIED", &mut job);
        inner.jobs.insert(name.clone(), job.clone());
        drop(inner);
        let st2 = st.clone();
        let n = name.clone();
        st.rt.spawn(async move {
            // The garbage collector deletes the pods first, then the Job.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut inner = st2.inner.lock().unwrap();
            inner.remove(&st2.events, &n);
            drop(inner);
            st2.kueue.notify_one();
        });
        return Json(job).into_response();
    }
    inner.remove(&st.events, &name);
    drop(inner);
    st.kueue.notify_one();
    Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": name, "group": "batch", "kind": "jobs", "uid": job["metadata"]["uid"]}})).into_response()
}

async fn pods(
    State(st): State<Stand>,
    Path(_ns): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let sel = q.get("labelSelector").cloned().unwrap_or_default();
    let inner = st.inner.lock().unwrap();
    let mut items = Vec::new();
    for name in inner.jobs.keys().filter(|n| inner.had_pods.contains(*n)) {
        let labels = json!({"batch.kubernetes.io/job-name": name, "job-name": name});
        match selector_matches(&sel, &labels) {
            Ok(true) => items.push(json!({"metadata": {"name": format!("{name}-abcde"), "namespace": "burst", "labels": labels}})),
            Ok(false) => {}
            Err(e) => return status(400, "BadRequest", &e),
        }
    }
    let rv = inner.rv.to_string();
    Json(json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": rv}, "items": items}))
        .into_response()
}

async fn pod_log(Path((_ns, pod)): Path<(String, String)>) -> String {
    format!("training on 8 x nvidia.com/gpu in pod {pod}\nepoch 1 loss 0.41\n")
}
