//! The Kubernetes executor: each run is a `batch/v1` Job in the zone's namespace, created with
//! kube-rs, followed by a kube-rs watcher (status without polling the API server), cancelled by
//! deleting the Job (and its pods, in the background).
//!
//! The Job manifest comes from a renderer the caller passes in (the GitOps renderer renders the
//! same objects to files), as JSON; it is checked by deserialising it into the `k8s-openapi`
//! `Job` type before anything is sent, so a manifest the API would reject for its shape never
//! leaves. API answers map onto the executor's errors: 409 (already exists) makes `start`
//! idempotent, a 403 for an exceeded quota (an object-count ResourceQuota such as
//! `count/jobs.batch`; GPU quota is Kueue's, and a ResourceQuota on `nvidia.com/gpu` charges
//! pods, never the Job) is `NoCapacity` (the scheduler fails over), other 403s and 422s are
//! `Refused` with the API server's message.
//!
//! Kueue. The rendered Job is created suspended (`spec.suspend: true`, labelled with its
//! LocalQueue, `kueue.x-k8s.io/queue-name`); Kueue admits it by unsuspending it, and evicts it
//! (preemption, a reclaimed quota) by suspending it again. The executor follows that lifecycle:
//! - suspended and never seen admitted: [`RunStatus::Queued`], waiting for admission — never
//!   reported running;
//! - not suspended: admitted, [`RunStatus::Running`] until it succeeds or fails;
//! - suspended again after it was seen admitted: preempted. The Job is deleted (foreground
//!   propagation) so that Kueue cannot admit it a second time behind the control plane's back;
//!   until it is gone (its pods first) the run is [`RunStatus::Queued`], then
//!   [`RunStatus::Preempted`]: the control plane puts the job back in its queue with all its
//!   options, and a later admission is a new run (a new Job), never this one again;
//! - still suspended after the zone's admission timeout (`backend.admission_timeout_s`, counted
//!   from the start, or from the first sight after the executor itself restarted): the Job is
//!   deleted with foreground propagation and preconditions on its uid and resourceVersion (a Job
//!   Kueue admitted meanwhile is not deleted: the precondition fails and it is reported running),
//!   and once it is gone (its pods first), `poll` answers [`ExecError::NoCapacity`], which the
//!   control plane handles as a start without capacity: the admission is withdrawn and the job
//!   moves to its next allowed option. Until it is gone the run stays `Queued`, so no other
//!   option starts while any pod of it could exist.
//!
//! What the executor knows of a run's past (that it was admitted once) lives in memory: after a
//! restart a Job Kueue had evicted looks queued, and ends as no capacity after the timeout (it is
//! deleted first either way, so it never runs twice).
//!
//! The executor's interface is blocking; kube-rs is async. The executor owns a small runtime: the
//! watcher runs on it in the background and every call blocks on it briefly. Call it from a plain
//! thread (the scheduler loop), never from inside another async runtime.

#![warn(missing_docs, unreachable_pub)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    DeleteParams, ListParams, LogParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::runtime::watcher;
use kube::{Api, Client};
use tidegate_exec::{ExecError, Executor, Launch, RunStatus};

/// The label every Job tidegate creates carries, with the run id as value.
pub const RUN_LABEL: &str = "tidegate.io/run-id";

/// Turns a launch request into a Job manifest (JSON).
pub type Renderer = Arc<dyn Fn(&Launch) -> Result<serde_json::Value, String> + Send + Sync>;

/// What a Job's own fields say, without its history.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// `spec.suspend: true`: not admitted (or evicted).
    Suspended,
    /// Not suspended and not ended.
    Admitted,
    Succeeded,
    Failed(String),
}

/// What the executor last knew of a run.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    /// Suspended, never seen admitted: waiting for Kueue.
    Queued,
    /// Admitted and not ended.
    Active,
    /// Suspended again after it was admitted: Kueue evicted it (preempted).
    Evicted,
    Succeeded,
    Failed(String),
    /// Deleted (by a cancel, or outside tidegate).
    Deleted,
    /// Not admitted in time and deleted by the executor: no capacity.
    Withdrawn(String),
}

impl Seen {
    /// States no later event changes: ended, evicted (the executor deletes it), withdrawn.
    fn sticky(&self) -> bool {
        matches!(
            self,
            Seen::Succeeded | Seen::Failed(_) | Seen::Evicted | Seen::Withdrawn(_)
        )
    }
}

/// One run as the executor follows it.
#[derive(Debug, Clone)]
struct Track {
    seen: Seen,
    /// When the executor started waiting for its admission.
    queued_since: Instant,
    /// Seen admitted at least once.
    admitted: bool,
    /// The executor asked the API server to delete it (why, for a withdrawal).
    deleting: Option<String>,
    /// The Job is gone from the API server (its pods first).
    gone: bool,
}

impl Track {
    fn new(now: Instant) -> Self {
        Self {
            seen: Seen::Queued,
            queued_since: now,
            admitted: false,
            deleting: None,
            gone: false,
        }
    }
}

/// The next state of a run from an event about its Job (`None`: the Job was deleted).
fn observe(prev: Option<&Track>, phase: Option<&Phase>, now: Instant) -> Track {
    let mut t = prev.cloned().unwrap_or_else(|| Track::new(now));
    t.gone = phase.is_none();
    if t.seen.sticky() {
        return t;
    }
    t.seen = match phase {
        None => match &t.deleting {
            Some(why) if !t.admitted => Seen::Withdrawn(why.clone()),
            _ => Seen::Deleted,
        },
        Some(Phase::Suspended) if t.admitted => Seen::Evicted,
        Some(Phase::Suspended) => Seen::Queued,
        Some(Phase::Admitted) => {
            t.admitted = true;
            Seen::Active
        }
        Some(Phase::Succeeded) => Seen::Succeeded,
        Some(Phase::Failed(why)) => Seen::Failed(why.clone()),
    };
    t
}

/// A zone backend on a Kubernetes cluster (with Kueue admitting the Jobs).
pub struct KubeExecutor {
    rt: tokio::runtime::Runtime,
    jobs: Api<Job>,
    pods: Api<Pod>,
    namespace: String,
    render: Renderer,
    admission_timeout: Duration,
    runs: Arc<Mutex<HashMap<String, Track>>>,
    cancelled: Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for KubeExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeExecutor")
            .field("namespace", &self.namespace)
            .field("admission_timeout", &self.admission_timeout)
            .finish_non_exhaustive()
    }
}

/// Why the executor could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum KubeSetupError {
    /// The runtime could not start.
    #[error("cannot start the Kubernetes client runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// The client configuration is unusable.
    #[error("Kubernetes client configuration: {0}")]
    Config(String),
}

/// The Job's name for a run id: DNS-1123 (`.` in `ID.N` becomes `-r`).
pub fn job_name(run_id: &str) -> String {
    run_id.replace('.', "-r").to_ascii_lowercase()
}

fn phase(job: &Job) -> Phase {
    let status = job.status.as_ref();
    let condition = |type_: &str| {
        status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    if status.and_then(|s| s.succeeded).unwrap_or(0) > 0 || condition("Complete").is_some() {
        return Phase::Succeeded;
    }
    if let Some(c) = condition("Failed") {
        return Phase::Failed(
            c.message
                .clone()
                .or_else(|| c.reason.clone())
                .unwrap_or_else(|| "the Job failed".into()),
        );
    }
    if job.spec.as_ref().and_then(|s| s.suspend) == Some(true) {
        return Phase::Suspended;
    }
    Phase::Admitted
}

fn run_of(job: &Job) -> Option<String> {
    job.metadata.labels.as_ref()?.get(RUN_LABEL).cloned()
}

fn api_error(job: &str, e: kube::Error) -> ExecError {
    match e {
        kube::Error::Api(s) if s.code == 403 && s.message.contains("exceeded quota") => {
            ExecError::NoCapacity {
                job: job.to_owned(),
                reason: format!("Kubernetes: {}", s.message),
            }
        }
        kube::Error::Api(s) => ExecError::Refused {
            job: job.to_owned(),
            reason: format!("Kubernetes {} {}: {}", s.code, s.reason, s.message),
        },
        other => ExecError::Refused {
            job: job.to_owned(),
            reason: format!("the Kubernetes API is unreachable: {other}"),
        },
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

impl KubeExecutor {
    /// An executor for `namespace` on the cluster at `config`, rendering Jobs with `render`; a
    /// Job Kueue has not admitted after `admission_timeout` is withdrawn as no capacity. Starts
    /// the watcher at once.
    pub fn new(
        config: kube::Config,
        namespace: &str,
        render: Renderer,
        admission_timeout: Duration,
    ) -> Result<Self, KubeSetupError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let client = {
            let _guard = rt.enter();
            Client::try_from(config).map_err(|e| KubeSetupError::Config(e.to_string()))?
        };
        let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        let runs: Arc<Mutex<HashMap<String, Track>>> = Arc::new(Mutex::new(HashMap::new()));
        let watch_runs = runs.clone();
        let stream = watcher(jobs.clone(), watcher::Config::default().labels(RUN_LABEL));
        rt.spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                let (job, deleted) = match ev {
                    Ok(watcher::Event::Apply(j) | watcher::Event::InitApply(j)) => (j, false),
                    Ok(watcher::Event::Delete(j)) => (j, true),
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "Kubernetes watch interrupted; it resumes by itself");
                        continue;
                    }
                };
                let Some(run) = run_of(&job) else { continue };
                let now = (!deleted).then(|| phase(&job));
                if let Ok(mut m) = watch_runs.lock() {
                    let next = observe(m.get(&run), now.as_ref(), Instant::now());
                    m.insert(run, next);
                }
            }
        });
        Ok(Self {
            rt,
            jobs,
            pods,
            namespace: namespace.to_owned(),
            render,
            admission_timeout,
            runs,
            cancelled: Mutex::new(Default::default()),
        })
    }

    /// The Job manifest for a launch, checked against the Kubernetes types.
    pub fn manifest(&self, launch: &Launch) -> Result<Job, ExecError> {
        let job = launch.job_id.as_str();
        let value = (self.render)(launch).map_err(|reason| ExecError::Invalid {
            job: job.to_owned(),
            reason,
        })?;
        let mut manifest: Job = serde_json::from_value(value).map_err(|e| ExecError::Invalid {
            job: job.to_owned(),
            reason: format!("the rendered Job is not a valid batch/v1 Job: {e}"),
        })?;
        manifest.metadata.name = Some(job_name(job));
        manifest.metadata.namespace = Some(self.namespace.clone());
        manifest
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(RUN_LABEL.to_owned(), job.to_owned());
        Ok(manifest)
    }

    fn track(&self, run_id: &str) -> Option<Track> {
        self.runs.lock().ok().and_then(|m| m.get(run_id).cloned())
    }

    fn update(&self, run_id: &str, f: impl FnOnce(&mut Track)) {
        if let Ok(mut m) = self.runs.lock() {
            let t = m
                .entry(run_id.to_owned())
                .or_insert_with(|| Track::new(Instant::now()));
            f(t);
        }
    }

    /// Records what a fresh read of the Job says (the watcher may not have seen it yet).
    fn refresh(&self, run_id: &str, job: Option<&Job>) -> Track {
        let p = job.map(phase);
        let mut out = Track::new(Instant::now());
        if let Ok(mut m) = self.runs.lock() {
            let next = observe(m.get(run_id), p.as_ref(), Instant::now());
            m.insert(run_id.to_owned(), next.clone());
            out = next;
        }
        out
    }

    fn delete_params(preconditions: Option<Preconditions>) -> DeleteParams {
        DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions,
            ..DeleteParams::default()
        }
    }

    /// A run still suspended past the admission timeout: deleted (foreground, only if it is
    /// still the suspended Job last read), then reported as no capacity once it is gone.
    fn withdraw(&self, run_id: &str) -> Result<RunStatus, ExecError> {
        let name = job_name(run_id);
        let why = format!(
            "Kueue did not admit Job {}/{name} within the zone's admission timeout ({} s); the Job was deleted",
            self.namespace,
            self.admission_timeout.as_secs()
        );
        let job = self
            .rt
            .block_on(self.jobs.get_opt(&name))
            .map_err(|e| api_error(run_id, e))?;
        let Some(job) = job else {
            let t = self.refresh(run_id, None);
            return self.status_of(run_id, t);
        };
        if job.metadata.deletion_timestamp.is_some() {
            // Being deleted (by this executor, or another): gone only once its pods are.
            return Ok(RunStatus::Queued);
        }
        let t = self.refresh(run_id, Some(&job));
        if t.seen != Seen::Queued {
            return self.status_of(run_id, t);
        }
        let pre = Preconditions {
            uid: job.metadata.uid.clone(),
            resource_version: job.metadata.resource_version.clone(),
        };
        self.update(run_id, |t| t.deleting = Some(why.clone()));
        match self
            .rt
            .block_on(self.jobs.delete(&name, &Self::delete_params(Some(pre))))
        {
            // Deletion started (the object stays until its pods are gone): still queued.
            Ok(answer) if answer.is_left() => {
                tracing::info!(run = run_id, namespace = %self.namespace, "Kueue did not admit the Job in time; deleting it");
                Ok(RunStatus::Queued)
            }
            // Deleted at once.
            Ok(_) => {
                let t = self.refresh(run_id, None);
                self.status_of(run_id, t)
            }
            // Changed since it was read (admitted meanwhile?): look again at the next poll.
            Err(e) if is_status(&e, 409) => {
                self.update(run_id, |t| t.deleting = None);
                Ok(RunStatus::Queued)
            }
            Err(e) if is_status(&e, 404) => {
                let t = self.refresh(run_id, None);
                self.status_of(run_id, t)
            }
            Err(e) => {
                self.update(run_id, |t| t.deleting = None);
                Err(api_error(run_id, e))
            }
        }
    }

    /// A run Kueue evicted after it ran: deleted so that it is not admitted again; preempted
    /// once it is gone.
    fn evicted(&self, run_id: &str, t: &Track) -> Result<RunStatus, ExecError> {
        let name = job_name(run_id);
        let preempted = || {
            RunStatus::Preempted {
            reason: format!(
                "Kueue evicted Kubernetes Job {}/{name} (suspended it again after it ran); the Job was deleted",
                self.namespace
            ),
        }
        };
        if t.gone {
            return Ok(preempted());
        }
        if t.deleting.is_none() {
            match self
                .rt
                .block_on(self.jobs.delete(&name, &Self::delete_params(None)))
            {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) => {}
                Err(e) => return Err(api_error(run_id, e)),
            }
            self.update(run_id, |t| t.deleting = Some("evicted".into()));
            tracing::info!(run = run_id, namespace = %self.namespace, "Kueue evicted the Job after it ran; deleting it");
        }
        // Gone only once its pods are: until then nothing else of this job may start.
        let present = self
            .rt
            .block_on(self.jobs.get_opt(&name))
            .map_err(|e| api_error(run_id, e))?
            .is_some();
        if present {
            return Ok(RunStatus::Queued);
        }
        self.update(run_id, |t| t.gone = true);
        Ok(preempted())
    }

    fn status_of(&self, run_id: &str, t: Track) -> Result<RunStatus, ExecError> {
        Ok(match t.seen {
            Seen::Queued if t.queued_since.elapsed() >= self.admission_timeout => {
                return self.withdraw(run_id)
            }
            Seen::Queued => RunStatus::Queued,
            Seen::Active => RunStatus::Running,
            Seen::Evicted => return self.evicted(run_id, &t),
            Seen::Succeeded => RunStatus::Exited { code: 0 },
            Seen::Failed(why) => {
                tracing::info!(run = run_id, %why, "Kubernetes Job failed");
                RunStatus::Exited { code: 1 }
            }
            Seen::Withdrawn(reason) => {
                return Err(ExecError::NoCapacity {
                    job: run_id.to_owned(),
                    reason,
                })
            }
            Seen::Deleted if self.cancelled.lock().is_ok_and(|c| c.contains(run_id)) => {
                RunStatus::Cancelled
            }
            Seen::Deleted => RunStatus::Lost {
                reason: "the Job was deleted outside tidegate".into(),
            },
        })
    }
}

impl Executor for KubeExecutor {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn start(&self, launch: &Launch) -> Result<bool, ExecError> {
        let manifest = self.manifest(launch)?;
        let suspended = manifest.spec.as_ref().and_then(|s| s.suspend) == Some(true);
        let job = launch.job_id.clone();
        match self
            .rt
            .block_on(self.jobs.create(&PostParams::default(), &manifest))
        {
            Ok(_) => {
                if let Ok(mut m) = self.runs.lock() {
                    let t = m
                        .entry(job.clone())
                        .or_insert_with(|| Track::new(Instant::now()));
                    if !suspended && t.seen == Seen::Queued {
                        t.seen = Seen::Active;
                        t.admitted = true;
                    }
                }
                tracing::info!(run = %job, namespace = %self.namespace, suspended, "created Kubernetes Job");
                Ok(true)
            }
            // Already created (by us before a restart): starting is idempotent.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(api_error(&job, e)),
        }
    }

    fn poll(&self, run_id: &str) -> Result<RunStatus, ExecError> {
        let t = match self.track(run_id) {
            Some(t) => t,
            // Not seen by the watcher yet: ask once.
            None => match self.rt.block_on(self.jobs.get_opt(&job_name(run_id))) {
                Ok(Some(j)) => self.refresh(run_id, Some(&j)),
                Ok(None) => return Ok(RunStatus::Unknown),
                Err(e) => return Err(api_error(run_id, e)),
            },
        };
        self.status_of(run_id, t)
    }

    fn cancel(&self, run_id: &str) -> Result<bool, ExecError> {
        if let Ok(mut c) = self.cancelled.lock() {
            c.insert(run_id.to_owned());
        }
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match self.rt.block_on(self.jobs.delete(&job_name(run_id), &dp)) {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(api_error(run_id, e)),
        }
    }

    fn logs(&self, run_id: &str, max_bytes: u64) -> Result<String, ExecError> {
        let lp = ListParams::default().labels(&format!(
            "batch.kubernetes.io/job-name={}",
            job_name(run_id)
        ));
        let pods = self
            .rt
            .block_on(self.pods.list(&lp))
            .map_err(|e| api_error(run_id, e))?;
        let Some(name) = pods
            .items
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .next()
        else {
            return Ok(String::new());
        };
        let params = LogParams {
            limit_bytes: i64::try_from(max_bytes).ok(),
            ..LogParams::default()
        };
        self.rt
            .block_on(self.pods.logs(&name, &params))
            .map_err(|e| api_error(run_id, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_queued_until_admitted_and_evicted_when_suspended_after_it_ran() {
        let now = Instant::now();
        let t = observe(None, Some(&Phase::Suspended), now);
        assert_eq!(t.seen, Seen::Queued);
        let t = observe(Some(&t), Some(&Phase::Suspended), now);
        assert_eq!(t.seen, Seen::Queued, "still waiting");
        let t = observe(Some(&t), Some(&Phase::Admitted), now);
        assert_eq!(t.seen, Seen::Active);
        let t = observe(Some(&t), Some(&Phase::Suspended), now);
        assert_eq!(t.seen, Seen::Evicted);
        // Admitted again before the executor deleted it: still evicted, and its deletion keeps it so.
        let t = observe(Some(&t), Some(&Phase::Admitted), now);
        assert_eq!(t.seen, Seen::Evicted);
        assert!(!t.gone);
        let gone = observe(Some(&t), None, now);
        assert_eq!(gone.seen, Seen::Evicted);
        assert!(gone.gone);
    }

    #[test]
    fn a_withdrawn_run_stays_withdrawn_and_other_deletions_are_deletions() {
        let now = Instant::now();
        let mut t = observe(None, Some(&Phase::Suspended), now);
        t.deleting = Some("not admitted".into());
        let gone = observe(Some(&t), None, now);
        assert_eq!(gone.seen, Seen::Withdrawn("not admitted".into()));
        assert_eq!(
            observe(Some(&gone), Some(&Phase::Admitted), now).seen,
            gone.seen
        );
        let queued = observe(None, Some(&Phase::Suspended), now);
        assert_eq!(observe(Some(&queued), None, now).seen, Seen::Deleted);
        let done = observe(Some(&queued), Some(&Phase::Succeeded), now);
        assert_eq!(observe(Some(&done), None, now).seen, Seen::Succeeded);
    }
}
