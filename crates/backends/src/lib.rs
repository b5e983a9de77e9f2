//! Every zone's executor, built in one place from the fleet: which engine runs a zone's jobs
//! (a local process, Slurm, Kubernetes), and the executor for it with its renderer.
//!
//! Two choices of engine ([`Backends`]): [`Backends::Local`], the embedded default, where a local
//! process executor stands in for every zone's backend, and [`Backends::Fleet`], where each zone
//! gets the backend it declares. Agent-run zones are not built here: their executor reads the
//! control plane's store, so the control plane makes them itself.
//!
//! The executors of zones whose jobs do not run on this machine ([`remote`]) are built before the
//! control plane's tokio runtime starts: the kubeconfig is read on a runtime of its own, which
//! may neither start nor stop inside another, and the Kubernetes executor keeps a runtime of
//! its own for its client and watcher.
#![warn(missing_docs, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tidegate_exec::{ExecError, Executor, LocalConfig, LocalExecutor};
use tidegate_model::{Backend, Fleet, Scheduling, Zone};

/// Executors by zone name.
pub type Executors = BTreeMap<String, Arc<dyn Executor>>;

/// Which engines run each zone's jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backends {
    /// The embedded default: a local process executor stands in for every zone's backend.
    #[default]
    Local,
    /// Each zone's declared backend: Slurm zones submit with sbatch to their partition,
    /// Kubernetes zones create Jobs through the kubeconfig context the zone names, local zones
    /// run processes.
    Fleet,
}

/// The engine a zone's jobs run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Processes on this machine.
    Local,
    /// A Slurm cluster.
    Slurm,
    /// A Kubernetes cluster.
    Kubernetes,
}

impl Backends {
    /// The engine that runs `zone`'s jobs under this choice.
    pub fn engine(self, zone: &Zone) -> Engine {
        match (self, &zone.backend) {
            (Backends::Local, _) | (Backends::Fleet, Backend::Local { .. }) => Engine::Local,
            (Backends::Fleet, Backend::Slurm { .. }) => Engine::Slurm,
            (Backends::Fleet, Backend::Kubernetes { .. }) => Engine::Kubernetes,
        }
    }
}

/// How to build the executors.
#[derive(Debug, Clone)]
pub struct Options {
    /// Which engines run each zone's jobs.
    pub backends: Backends,
    /// Container image of Kubernetes Jobs.
    pub image: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            backends: Backends::Local,
            image: "tidegate-job:latest".into(),
        }
    }
}

/// Why an executor could not be built. Each names the zone where it has one, and
/// [`BackendError::help`] says what would fix it.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A zone taken for Slurm does not declare a Slurm backend.
    #[error("zone {zone}: not a Slurm backend")]
    NotSlurm {
        /// The zone.
        zone: String,
    },
    /// The Slurm executor cannot be set up.
    #[error("zone {zone}: cannot use Slurm: {source}")]
    Slurm {
        /// The zone.
        zone: String,
        /// Why.
        #[source]
        source: ExecError,
    },
    /// The runtime that reads the kubeconfig cannot start.
    #[error("{0}")]
    Runtime(#[from] std::io::Error),
    /// The zone's kubeconfig context cannot be read.
    #[error("zone {zone}: no usable kubeconfig context {context:?}: {source}")]
    Kubeconfig {
        /// The zone.
        zone: String,
        /// The context the zone names.
        context: Option<String>,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The Kubernetes executor cannot be set up.
    #[error("zone {zone}: {source}")]
    Kubernetes {
        /// The zone.
        zone: String,
        /// Why.
        #[source]
        source: tidegate_kube::KubeSetupError,
    },
    /// A local executor cannot be set up (a setup reason names the zone).
    #[error(transparent)]
    Local(ExecError),
}

impl BackendError {
    /// What would fix it, where there is a usual fix.
    pub fn help(&self) -> Option<&'static str> {
        match self {
            BackendError::Slurm { .. } => {
                Some("is Slurm installed and slurmctld running? (`sinfo`)")
            }
            BackendError::Kubeconfig { .. } => Some("set KUBECONFIG, or run with --backends local"),
            _ => None,
        }
    }
}

/// The executors of the zones whose jobs do not run on this machine under `options` (Slurm and
/// Kubernetes zones under [`Backends::Fleet`]; none under [`Backends::Local`]), each with its
/// renderer. Slurm's state lives under the data directory's `slurm/<zone>`. Call it before
/// any tokio runtime starts on this thread.
pub fn remote(
    fleet: &Fleet,
    scheduling: &Scheduling,
    data_dir: &Path,
    options: &Options,
) -> Result<Executors, BackendError> {
    let mut out = Executors::new();
    for zone in &fleet.zones {
        match options.backends.engine(zone) {
            Engine::Local => {}
            Engine::Slurm => {
                out.insert(zone.name.clone(), slurm(zone, data_dir)?);
            }
            Engine::Kubernetes => {
                out.insert(
                    zone.name.clone(),
                    kubernetes(zone, scheduling, &options.image)?,
                );
            }
        }
    }
    Ok(out)
}

/// Every zone's executor but the zones in `skip`: `preset`'s where it has one, the remote
/// engine under `options` (see [`remote`]), else a local executor ([`local`]) under
/// `work_root`. Zones are built in the fleet's order; the first that fails stops it.
pub fn build(
    fleet: &Fleet,
    scheduling: &Scheduling,
    dirs: Dirs<'_>,
    options: &Options,
    preset: &Executors,
    skip: &[String],
) -> Result<Executors, BackendError> {
    let mut out = Executors::new();
    for zone in &fleet.zones {
        if skip.contains(&zone.name) {
            continue;
        }
        let ex = match (preset.get(&zone.name), options.backends.engine(zone)) {
            (Some(e), _) => e.clone(),
            (None, Engine::Local) => Arc::new(local(zone, dirs.work_root)?),
            (None, Engine::Slurm) => slurm(zone, dirs.data_dir)?,
            (None, Engine::Kubernetes) => kubernetes(zone, scheduling, &options.image)?,
        };
        out.insert(zone.name.clone(), ex);
    }
    Ok(out)
}

/// Where the executors keep their state.
#[derive(Debug, Clone, Copy)]
pub struct Dirs<'a> {
    /// The control plane's data directory.
    pub data_dir: &'a Path,
    /// Root of the local executors' work directories.
    pub work_root: &'a Path,
}

/// The local executor for `zone`: under the work directory a local zone declares, else
/// `work_root/<zone>`, as the user the zone declares.
pub fn local(zone: &Zone, work_root: &Path) -> Result<LocalExecutor, BackendError> {
    let (dir, run_as): (PathBuf, _) = match &zone.backend {
        Backend::Local { workdir, run_as } => (
            workdir
                .clone()
                .unwrap_or_else(|| work_root.join(&zone.name)),
            run_as.clone(),
        ),
        _ => (work_root.join(&zone.name), None),
    };
    LocalExecutor::with_config(
        dir,
        LocalConfig {
            run_as,
            ..LocalConfig::default()
        },
    )
    .map_err(|e| {
        BackendError::Local(match e {
            ExecError::Setup { reason } => ExecError::Setup {
                reason: format!("zone {}: {reason}", zone.name),
            },
            other => other,
        })
    })
}

fn slurm(zone: &Zone, data_dir: &Path) -> Result<Arc<dyn Executor>, BackendError> {
    let state = tidegate_vocab::DataDir::new(data_dir)
        .slurm()
        .join(&zone.name);
    let cfg = tidegate_slurm::SlurmConfig::from_backend(&zone.backend, state).ok_or_else(|| {
        BackendError::NotSlurm {
            zone: zone.name.clone(),
        }
    })?;
    let render: tidegate_slurm::Renderer = Arc::new(tidegate_render::slurm::script);
    let ex =
        tidegate_slurm::SlurmExecutor::new(cfg, render).map_err(|source| BackendError::Slurm {
            zone: zone.name.clone(),
            source,
        })?;
    Ok(Arc::new(ex))
}

fn kubernetes(
    zone: &Zone,
    scheduling: &Scheduling,
    image: &str,
) -> Result<Arc<dyn Executor>, BackendError> {
    let Backend::Kubernetes {
        context,
        namespace,
        admission_timeout_s,
        ..
    } = &zone.backend
    else {
        return Err(BackendError::Local(ExecError::Setup {
            reason: format!("zone {}: not a Kubernetes backend", zone.name),
        }));
    };
    let options = kube::config::KubeConfigOptions {
        context: context.clone(),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let config = rt
        .block_on(kube::Config::from_kubeconfig(&options))
        .map_err(|source| BackendError::Kubeconfig {
            zone: zone.name.clone(),
            context: context.clone(),
            source,
        })?;
    drop(rt);
    let render =
        tidegate_render::k8s::launch_renderer(zone.clone(), scheduling.clone(), image.to_owned());
    let ex = tidegate_kube::KubeExecutor::new(
        config,
        namespace,
        Arc::new(render),
        Duration::from_secs(*admission_timeout_s),
    )
    .map_err(|source| BackendError::Kubernetes {
        zone: zone.name.clone(),
        source,
    })?;
    Ok(Arc::new(ex))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn example() -> (Fleet, Scheduling) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleet");
        tidegate_model::load_fleet_with_scheduling(&dir).unwrap()
    }

    #[test]
    fn the_embedded_default_runs_every_zone_on_this_machine() {
        let (fleet, sched) = example();
        let tmp = tempfile::tempdir().unwrap();
        let options = Options::default();
        assert!(fleet
            .zones
            .iter()
            .all(|z| options.backends.engine(z) == Engine::Local));
        assert!(remote(&fleet, &sched, tmp.path(), &options)
            .unwrap()
            .is_empty());
        let work_root = tmp.path().join("zones");
        let skip = vec![fleet.zones[0].name.clone()];
        let built = build(
            &fleet,
            &sched,
            Dirs {
                data_dir: tmp.path(),
                work_root: &work_root,
            },
            &options,
            &Executors::new(),
            &skip,
        )
        .unwrap();
        assert_eq!(built.len(), fleet.zones.len() - 1);
        assert!(!built.contains_key(&skip[0]));
        for z in &fleet.zones[1..] {
            assert!(work_root.join(&z.name).is_dir(), "{}", z.name);
        }
    }

    #[test]
    fn the_fleet_choice_takes_each_zone_s_declared_backend() {
        let (fleet, _) = example();
        for z in &fleet.zones {
            let want = match z.backend {
                Backend::Local { .. } => Engine::Local,
                Backend::Slurm { .. } => Engine::Slurm,
                Backend::Kubernetes { .. } => Engine::Kubernetes,
            };
            assert_eq!(Backends::Fleet.engine(z), want, "{}", z.name);
        }
    }

    #[test]
    fn a_missing_kubeconfig_context_names_the_zone_and_the_fix() {
        let (fleet, sched) = example();
        let zone = fleet
            .zones
            .iter()
            .find(|z| Backends::Fleet.engine(z) == Engine::Kubernetes)
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        std::env::set_var("KUBECONFIG", tmp.path().join("none"));
        let Err(e) = kubernetes(zone, &sched, "img") else {
            unreachable!("a kubeconfig that does not exist was used")
        };
        assert!(
            e.to_string().starts_with(&format!("zone {}: ", zone.name)),
            "{e}"
        );
        assert_eq!(
            e.help(),
            Some("set KUBECONFIG, or run with --backends local")
        );
    }
}
