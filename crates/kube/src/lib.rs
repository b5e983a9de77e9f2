//! The Kubernetes executor: each run is a `batch/v1` Job in the zone's namespace, created with
//! kube-rs, followed by a kube-rs watcher (status without polling the API server), cancelled by
//! deleting the Job (and its pods, in the background).
//!
//! The Job manifest comes from a renderer the caller passes in (the GitOps renderer renders the
//! same objects to files), as JSON; it is checked by deserialising it into the `k8s-openapi`
//! `Job` type before anything is sent, so a manifest the API would reject for its shape never
//! leaves. API answers map onto the executor's errors: 409 (already exists) makes `start`
//! idempotent, a 403 for an exceeded quota is `NoCapacity` (the scheduler fails over), other
//! 403s and 422s are `Refused` with the API server's message.
//!
//! The executor's interface is blocking; kube-rs is async. The executor owns a small runtime: the
//! watcher runs on it in the background and every call blocks on it briefly. Call it from a plain
//! thread (the scheduler loop), never from inside another async runtime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams, PropagationPolicy};
use kube::runtime::watcher;
use kube::{Api, Client};
use tidegate_exec::{ExecError, Executor, Launch, RunStatus};

/// The label every Job tidegate creates carries, with the run id as value.
pub const RUN_LABEL: &str = "tidegate.io/run-id";

/// Turns a launch request into a Job manifest (JSON).
pub type Renderer = Arc<dyn Fn(&Launch) -> Result<serde_json::Value, String> + Send + Sync>;

/// What the watcher last saw of a run.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Active,
    Succeeded,
    Failed(String),
    Deleted,
}

/// A zone backend on a Kubernetes cluster (with Kueue admitting the Jobs).
pub struct KubeExecutor {
    rt: tokio::runtime::Runtime,
    jobs: Api<Job>,
    pods: Api<Pod>,
    namespace: String,
    render: Renderer,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    cancelled: Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for KubeExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeExecutor")
            .field("namespace", &self.namespace)
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

fn classify(job: &Job) -> Seen {
    let Some(status) = &job.status else {
        return Seen::Active;
    };
    if status.succeeded.unwrap_or(0) > 0 {
        return Seen::Succeeded;
    }
    let failed = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Failed" && c.status == "True");
    if let Some(c) = failed {
        return Seen::Failed(
            c.message
                .clone()
                .or_else(|| c.reason.clone())
                .unwrap_or_else(|| "the Job failed".into()),
        );
    }
    Seen::Active
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

impl KubeExecutor {
    /// An executor for `namespace` on the cluster at `config`, rendering Jobs with `render`.
    /// Starts the watcher at once.
    pub fn new(
        config: kube::Config,
        namespace: &str,
        render: Renderer,
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
        let seen: Arc<Mutex<HashMap<String, Seen>>> = Arc::new(Mutex::new(HashMap::new()));
        let watch_seen = seen.clone();
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
                let now = if deleted { Seen::Deleted } else { classify(&job) };
                if let Ok(mut m) = watch_seen.lock() {
                    // A Job deleted after it ended keeps its outcome.
                    let keep = deleted && matches!(m.get(&run), Some(Seen::Succeeded | Seen::Failed(_)));
                    if !keep {
                        m.insert(run, now);
                    }
                }
            }
        });
        Ok(Self {
            rt,
            jobs,
            pods,
            namespace: namespace.to_owned(),
            render,
            seen,
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
}

impl Executor for KubeExecutor {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn start(&self, launch: &Launch) -> Result<bool, ExecError> {
        let manifest = self.manifest(launch)?;
        let job = launch.job_id.clone();
        match self
            .rt
            .block_on(self.jobs.create(&PostParams::default(), &manifest))
        {
            Ok(_) => {
                if let Ok(mut m) = self.seen.lock() {
                    m.entry(job.clone()).or_insert(Seen::Active);
                }
                tracing::info!(run = %job, namespace = %self.namespace, "created Kubernetes Job");
                Ok(true)
            }
            // Already created (by us before a restart): starting is idempotent.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(api_error(&job, e)),
        }
    }

    fn poll(&self, run_id: &str) -> Result<RunStatus, ExecError> {
        let seen = self.seen.lock().ok().and_then(|m| m.get(run_id).cloned());
        let seen = match seen {
            Some(s) => s,
            // Not seen by the watcher yet: ask once.
            None => match self.rt.block_on(self.jobs.get_opt(&job_name(run_id))) {
                Ok(Some(j)) => classify(&j),
                Ok(None) => return Ok(RunStatus::Unknown),
                Err(e) => return Err(api_error(run_id, e)),
            },
        };
        Ok(match seen {
            Seen::Active => RunStatus::Running,
            Seen::Succeeded => RunStatus::Exited { code: 0 },
            Seen::Failed(why) => {
                tracing::info!(run = run_id, %why, "Kubernetes Job failed");
                RunStatus::Exited { code: 1 }
            }
            Seen::Deleted if self.cancelled.lock().is_ok_and(|c| c.contains(run_id)) => {
                RunStatus::Cancelled
            }
            Seen::Deleted => RunStatus::Lost {
                reason: "the Job was deleted outside tidegate".into(),
            },
        })
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
