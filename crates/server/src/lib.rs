//! tidegate control plane: the HTTP API ([`api`], its shapes in `tidegate_api`), its
//! authentication ([`auth`]), the scheduler loop ([`control`]) that drives the sans-IO scheduler
//! core and the zone executors, the points of action it records in the evidence ledger
//! ([`evidence`]), and metrics ([`metrics`]).
//!
//! [`start`] brings everything up from a [`ServerConfig`]: fleet and policy set (refusing to
//! start if either does not load), durable store (SQLite under the data directory, or
//! PostgreSQL), token keys and an admin token, the ledger, one executor per zone, the HTTP
//! listener and the scheduler loop. [`Server::shutdown`] drains: stop taking submissions,
//! finish requests in flight, stop the loop (giving its lease back), seal a ledger checkpoint.

#![warn(missing_docs, unreachable_pub)]

pub mod agents;
pub mod api;
pub mod auth;
pub mod control;
mod error;
pub mod evidence;
pub mod health;
mod holdings;
pub mod http;
pub mod metrics;
pub mod shape;
pub mod spool;
pub mod tls;
pub mod witness;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use error::ApiError;
pub use http::HttpLimits;
pub use tls::TlsSettings;

use tidegate_exec::Executor;
use tidegate_identity::{Role, RootKeyStore};
use tidegate_policy::PolicyEngine;

use crate::auth::{Auth, Clock};
use crate::control::{LoopConfig, Shared, Wake};
use crate::evidence::Evidence;
use crate::metrics::Metrics;

/// Everything a handler needs.
#[derive(Debug)]
pub struct AppState {
    /// What the API shares with the scheduler loop.
    pub shared: Arc<Shared>,
    /// Token verification.
    pub auth: Auth,
    /// Set while shutting down: new submissions are refused.
    pub draining: AtomicBool,
    /// TLS and the certificate authority; `None` over plain HTTP (loopback only).
    pub tls: Option<Arc<tls::Tls>>,
}

/// How to start the control plane.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Data directory: SQLite state, ledger, token keys, zone work directories.
    pub data_dir: PathBuf,
    /// Fleet directory.
    pub fleet_dir: PathBuf,
    /// `postgres://` URL; SQLite under the data directory when absent.
    pub database: Option<String>,
    /// A store already open, used instead of the one `database` names (a store shared with
    /// something else in the process, or a test double).
    pub store: Option<Arc<dyn tidegate_store::Store>>,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Scheduler loop settings.
    pub loop_cfg: LoopConfig,
    /// Root of the local executors' work directories (default `<data-dir>/zones`).
    pub work_root: Option<PathBuf>,
    /// Token root keys (default `<data-dir>/keys`); replicas share one so any replica accepts
    /// any replica's tokens.
    pub keys_dir: Option<PathBuf>,
    /// Lifetime of the admin token written at start, minutes.
    pub admin_token_minutes: u32,
    /// Executors for named zones, replacing the default local executor there (a real backend,
    /// or a test double).
    pub executors: BTreeMap<String, Arc<dyn Executor>>,
    /// This replica's stable name (its ledger log in PostgreSQL is named after it).
    pub replica: String,
    /// Zones run by an agent inside them (`tidegate agent`) instead of an executor here.
    pub agent_zones: Vec<String>,
    /// Run the scheduler loop (take part in the leader election). An API-only replica sets it
    /// false: it serves requests and leaves scheduling to the others.
    pub scheduler: bool,
    /// The HTTP listener's timeouts, connection bound and drain deadline.
    pub http: HttpLimits,
    /// TLS (the certificate authority, the server certificate's names, workload certificates);
    /// `None` serves plain HTTP, which is refused unless `listen` is a loopback address.
    pub tls: Option<TlsSettings>,
}

impl ServerConfig {
    /// The embedded control plane of a process that runs one for itself (a demo, a benchmark):
    /// SQLite state and the ledger in `data_dir`, the fleet in `fleet_dir`, a local executor
    /// for every zone, the scheduler loop with default settings, a 60-minute admin token, TLS
    /// with the data directory's certificate authority, on a free loopback port.
    pub fn embedded(data_dir: &Path, fleet_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            fleet_dir: fleet_dir.to_owned(),
            database: None,
            store: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            loop_cfg: LoopConfig::default(),
            work_root: None,
            keys_dir: None,
            executors: BTreeMap::new(),
            admin_token_minutes: 60,
            replica: "embedded".into(),
            agent_zones: Vec::new(),
            scheduler: true,
            http: HttpLimits::default(),
            tls: Some(TlsSettings::in_data_dir(data_dir)),
        }
    }
}

/// Why the control plane did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The fleet does not load.
    #[error("the fleet in {dir} does not load:\n{errors}")]
    Fleet {
        /// Fleet directory.
        dir: PathBuf,
        /// Every problem.
        errors: tidegate_model::LoadErrors,
    },
    /// The policy set does not load: nothing may be placed, so the control plane does not start.
    #[error("the policy set does not load, so nothing could be placed:\n{0}")]
    Policy(String),
    /// The store cannot be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] tidegate_store::StoreError),
    /// Token keys cannot be read or created.
    #[error("token keys in {dir}: {reason}")]
    Keys {
        /// Keys directory.
        dir: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The dataset registry cannot be read.
    #[error("dataset registry: {0}")]
    Datasets(String),
    /// The evidence ledger cannot be opened or written.
    #[error("{0}")]
    Ledger(String),
    /// A zone executor cannot be set up.
    #[error("zone executor: {0}")]
    Executor(#[from] tidegate_exec::ExecError),
    /// A zone's declared backend cannot be set up (it names the zone).
    #[error("{0}")]
    Backend(tidegate_backends::BackendError),
    /// A file in the data directory cannot be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Plain HTTP was asked for on an address that is not loopback.
    #[error("plain HTTP (--plain-http) is only served on a loopback address, not on {0}: serve TLS there (drop --plain-http), or listen on 127.0.0.1")]
    PlainHttpNotLoopback(SocketAddr),
    /// The certificate authority or the server's TLS cannot be set up.
    #[error("TLS with the certificate authority in {dir}: {reason}")]
    Tls {
        /// The PKI directory.
        dir: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A running control plane.
#[derive(Debug)]
pub struct Server {
    /// The API's base URL.
    pub url: String,
    /// Where the admin token was written.
    pub admin_token_path: PathBuf,
    /// The certificate authority's certificate clients trust (`None` over plain HTTP).
    pub ca_path: Option<PathBuf>,
    /// The state handlers share.
    pub state: Arc<AppState>,
    loop_thread: Option<std::thread::JoinHandle<()>>,
    http: tokio::task::JoinHandle<()>,
    stop_http: Arc<tokio::sync::Notify>,
}

fn write_secret(path: &Path, text: &str) -> Result<(), StartError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| StartError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Starts the control plane (call inside a multi-threaded tokio runtime).
pub async fn start(cfg: ServerConfig, clock: Clock) -> Result<Server, StartError> {
    if cfg.tls.is_none() && !cfg.listen.ip().to_canonical().is_loopback() {
        return Err(StartError::PlainHttpNotLoopback(cfg.listen));
    }
    let (fleet, scheduling) =
        tidegate_model::load_fleet_with_scheduling(&cfg.fleet_dir).map_err(|errors| {
            StartError::Fleet {
                dir: cfg.fleet_dir.clone(),
                errors,
            }
        })?;
    let policy = PolicyEngine::load(&fleet).map_err(|e| StartError::Policy(e.to_string()))?;
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| StartError::Io {
        path: cfg.data_dir.clone(),
        source,
    })?;
    let data_dir = cfg.data_dir.clone();
    let database = cfg.database.clone();
    let opened: Arc<dyn tidegate_store::Store> = match cfg.store.clone() {
        Some(s) => s,
        None => tokio::task::spawn_blocking(move || {
            tidegate_store::open(database.as_deref(), &data_dir)
        })
        .await
        .map_err(|e| StartError::Ledger(format!("store open task failed: {e}")))??
        .into(),
    };
    // Every store call, from the API and the scheduler loop, reports to `/healthz`.
    let store_health = Arc::new(health::Component::new("store"));
    let store: Arc<dyn tidegate_store::Store> =
        Arc::new(health::WatchedStore::new(opened, store_health.clone()));
    let keys_dir = cfg
        .keys_dir
        .clone()
        .unwrap_or_else(|| tidegate_vocab::DataDir::new(&cfg.data_dir).keys());
    let keys = RootKeyStore::new(&keys_dir);
    let keys_err = |reason: String| StartError::Keys {
        dir: keys_dir.clone(),
        reason,
    };
    // The first root key is made before anything else reads the keyring; the admin token is
    // minted only once the keyring is the one the ledger recorded (below).
    if keys
        .active_id()
        .map_err(|e| keys_err(e.to_string()))?
        .is_none()
    {
        keys.rotate(clock(), 365)
            .map_err(|e| keys_err(e.to_string()))?;
    }
    let auth = Auth::new(keys, clock.clone()).map_err(|e| keys_err(e.to_string()))?;
    // With PostgreSQL, the ledger lives there too, one log (one writer) per replica.
    let ledger_target = match &cfg.database {
        Some(url) => {
            let replica: String = cfg
                .replica
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            tidegate_ledger::LedgerTarget::from_database(
                Some(url),
                Some(&format!("tidegate_ledger_{replica}")),
            )
            .map_err(|e| StartError::Ledger(e.to_string()))?
        }
        None => tidegate_ledger::LedgerTarget::Files,
    };
    // Opening may talk to PostgreSQL with a blocking client: off the async threads.
    let (fleet, policy, evidence) = {
        let data_dir = cfg.data_dir.clone();
        tokio::task::spawn_blocking(move || {
            let ev = Evidence::open(&data_dir, &ledger_target, &fleet, &policy);
            (fleet, policy, ev)
        })
        .await
        .map_err(|e| StartError::Ledger(format!("ledger open task failed: {e}")))?
    };
    let evidence = evidence.map_err(StartError::Ledger)?;
    // Uploads a killed control plane was spooling: never acknowledged, and plaintext. Only
    // now, with the data directory's ledger held, so a second start cannot remove the
    // uploads of one that runs.
    let spool = spool::dir_of(&cfg.data_dir);
    match spool::clear(&spool) {
        Ok(0) => {}
        Ok(n) => {
            tracing::warn!(removed = n, dir = %spool.display(), "removed uploads left by an earlier run")
        }
        Err(source) => {
            return Err(StartError::Io {
                path: spool,
                source,
            })
        }
    }
    // The token keyring in force is the one the ledger recorded last: a file changed since (a
    // revocation removed, a key added) is refused; one never recorded is recorded now.
    let ring = auth.keyring().map_err(|e| keys_err(e.message))?;
    let digest = evidence::token_keyring_digest(&ring).map_err(&keys_err)?;
    // Reading the ledger may talk to PostgreSQL with a blocking client: off the async threads.
    let (evidence, recorded) = tokio::task::spawn_blocking(move || {
        use tidegate_artifacts::ledger_sink::EntryWriter as _;
        let recorded = evidence
            .read_entries()
            .and_then(|entries| evidence::recorded_token_keyring(&entries))
            .and_then(|r| match r {
                Some(found) => Ok(found),
                // Never recorded: the keyring found is the one in force from now on.
                None => evidence
                    .token_keyring_in_force(&ring)
                    .map(|d| (u64::MAX, d)),
            });
        (evidence, recorded)
    })
    .await
    .map_err(|e| StartError::Ledger(format!("ledger read task failed: {e}")))?;
    let (index, recorded) = recorded.map_err(StartError::Ledger)?;
    if recorded != digest {
        return Err(keys_err(format!(
            "the token keyring {} is not the one the evidence ledger recorded last (entry {index}, {recorded}): its keys or revocations were changed outside tidegate; restore it, or change keys only with `tidegate token keys`",
            auth.keyring_path().display()
        )));
    }
    auth.pin_keyring(recorded);
    let admin = auth
        .mint("admin", Role::Admin, "admin", cfg.admin_token_minutes)
        .map_err(|e| keys_err(e.message))?;
    let admin_token_path = tidegate_vocab::DataDir::new(&cfg.data_dir).admin_token();
    write_secret(&admin_token_path, &admin)?;
    // Dataset versions registered in this data directory (`tidegate dataset register`) are
    // placed like the fleet's own, as the evidence ledger recorded them (the policy set does
    // not read datasets, so it and its recorded hash are the same); a registry that does not
    // read, or that the ledger does not vouch for, stops the start.
    let mut fleet = fleet;
    evidence
        .merge_registered(&mut fleet)
        .map_err(|e| StartError::Datasets(e.to_string()))?;
    let work_root = cfg
        .work_root
        .clone()
        .unwrap_or_else(|| tidegate_vocab::DataDir::new(&cfg.data_dir).zones());
    // What the data directory holds is the control plane's alone (state, ledger, documents,
    // keys, artifacts, registrations): jobs run as other users and must not read it. Only the
    // zones' work root, which jobs enter, stays reachable.
    restrict_data_dir(&cfg.data_dir, &work_root)
        .map_err(|(path, source)| StartError::Io { path, source })?;
    for name in &cfg.agent_zones {
        if fleet.zone(name).is_none() {
            return Err(StartError::Executor(tidegate_exec::ExecError::Invalid {
                job: "-".into(),
                reason: format!("--agent-zone {name}: the fleet has no such zone"),
            }));
        }
    }
    // Every zone but the agents' gets its executor from the one place that builds them: the
    // ones passed in, else the embedded default, a local executor standing in for its backend.
    let mut executors = tidegate_backends::build(
        &fleet,
        &scheduling,
        tidegate_backends::Dirs {
            data_dir: &cfg.data_dir,
            work_root: &work_root,
        },
        &tidegate_backends::Options::default(),
        &cfg.executors,
        &cfg.agent_zones,
    )
    .map_err(|e| match e {
        tidegate_backends::BackendError::Local(e) => StartError::Executor(e),
        other => StartError::Backend(other),
    })?;
    for z in &fleet.zones {
        if cfg.agent_zones.contains(&z.name) {
            executors.insert(
                z.name.clone(),
                Arc::new(agents::AgentExecutor::new(&z.name, store.clone())),
            );
        }
    }
    // The admin token written above is a point of action too.
    let (admin_id, admin_expires) = auth.token_id(&admin).map_err(|e| keys_err(e.message))?;
    evidence
        .token_issued(
            "tidegate-control-plane",
            &admin_id,
            admin_expires,
            "admin",
            "admin",
        )
        .map_err(StartError::Ledger)?;
    let shared = Arc::new(Shared {
        agent_zones: cfg.agent_zones.clone(),
        store,
        store_health,
        rules: std::sync::RwLock::new(Arc::new(control::Rules {
            fleet: Arc::new(fleet),
            policy: Arc::new(policy),
            scheduling: Arc::new(scheduling),
            generation: 0,
        })),
        fleet_dir: std::sync::RwLock::new(cfg.fleet_dir.clone()),
        executors,
        metrics: Arc::new(Metrics::new()),
        evidence: Arc::new(evidence),
        wake: Arc::new(Wake::default()),
        shutdown: Arc::new(AtomicBool::new(false)),
        leading: Arc::new(AtomicBool::new(false)),
    });
    let tls = match &cfg.tls {
        Some(settings) => {
            let settings = settings.clone();
            let listen = cfg.listen;
            let now = clock();
            let t = tokio::task::spawn_blocking(move || tls::setup(&settings, listen, now))
                .await
                .map_err(|e| StartError::Ledger(format!("TLS setup task failed: {e}")))??;
            if t.created {
                tracing::info!(ca = %t.ca_path.display(), "created the certificate authority");
            }
            Some(Arc::new(t))
        }
        None => None,
    };
    let state = Arc::new(AppState {
        shared: shared.clone(),
        auth,
        draining: AtomicBool::new(false),
        tls: tls.clone(),
    });
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let url = match &tls {
        Some(_) if addr.ip().is_unspecified() => format!("https://127.0.0.1:{}", addr.port()),
        Some(_) => format!("https://{addr}"),
        None => format!("http://{addr}"),
    };
    let url_path = tidegate_vocab::DataDir::new(&cfg.data_dir).server_url();
    std::fs::write(&url_path, format!("{url}\n")).map_err(|source| StartError::Io {
        path: url_path,
        source,
    })?;

    let loop_thread = if cfg.scheduler {
        let loop_shared = shared.clone();
        let loop_cfg = cfg.loop_cfg.clone();
        Some(
            std::thread::Builder::new()
                .name("tidegate-scheduler".into())
                .spawn(move || control::run(&loop_shared, &loop_cfg))
                .map_err(|source| StartError::Io {
                    path: PathBuf::from("<scheduler thread>"),
                    source,
                })?,
        )
    } else {
        None
    };

    // The fleet this replica starts with is the one in force for every replica of the store
    // (the last start or apply wins); each replica converges on it within a second or two.
    {
        let s = shared.clone();
        tokio::task::spawn_blocking(move || s.record_in_force())
            .await
            .map_err(|e| {
                StartError::Ledger(format!("recording the fleet in force failed: {e}"))
            })??;
    }
    let watch_shared = shared.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        let mut refused: Option<String> = None;
        loop {
            every.tick().await;
            if watch_shared.shutdown.load(Ordering::SeqCst) {
                break;
            }
            let s = watch_shared.clone();
            match tokio::task::spawn_blocking(move || s.converge()).await {
                Ok(Ok(Some(r))) => {
                    refused = None;
                    tracing::info!(
                        generation = r.generation,
                        "converged on the fleet in force on another replica"
                    );
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    let why = e.to_string();
                    if refused.as_deref() != Some(why.as_str()) {
                        tracing::warn!(error = %why, "cannot converge on the fleet another replica put in force; the rules here stay");
                        refused = Some(why);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "fleet watch task failed"),
            }
        }
    });

    // Seal a checkpoint now and then so evidence bundles cover recent work.
    let cp_shared = shared.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(10));
        loop {
            every.tick().await;
            if cp_shared.shutdown.load(Ordering::SeqCst) {
                break;
            }
            let ev = cp_shared.evidence.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = ev.checkpoint() {
                    tracing::warn!(error = %e, "cannot publish a ledger checkpoint");
                }
            })
            .await;
        }
    });

    let stop_http = Arc::new(tokio::sync::Notify::new());
    let stop = stop_http.clone();
    let app = http::with_body_timeout(api::router(state.clone()), cfg.http.body_read_timeout);
    let transport = match &tls {
        Some(t) => http::Transport::Tls {
            acceptor: t.acceptor.clone(),
            trust_domain: Arc::from(t.trust_domain()),
        },
        None => http::Transport::Plain,
    };
    let http = tokio::spawn(http::serve(
        listener,
        app,
        cfg.http.clone(),
        transport,
        stop,
        shared.metrics.http_connections.clone(),
    ));
    tracing::info!(%url, "control plane listening");
    Ok(Server {
        url,
        admin_token_path,
        ca_path: tls.as_ref().map(|t| t.ca_path.clone()),
        state,
        loop_thread,
        http,
        stop_http,
    })
}

impl Server {
    /// Drains and stops: new submissions are refused at once, requests in flight finish (until
    /// the drain deadline, [`HttpLimits::drain_deadline`], then their connections are closed), the
    /// scheduler loop stops and gives its lease back, and a final ledger checkpoint is sealed.
    /// Running jobs are left running; the next start finds them.
    pub async fn shutdown(mut self) {
        self.state.draining.store(true, Ordering::SeqCst);
        self.stop_http.notify_one();
        let _ = (&mut self.http).await;
        self.state.shared.shutdown.store(true, Ordering::SeqCst);
        self.state.shared.wake.notify();
        if let Some(t) = self.loop_thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        let ev = self.state.shared.evidence.clone();
        match tokio::task::spawn_blocking(move || ev.close()).await {
            Ok(Err(e)) => tracing::error!(error = %e, "cannot seal the ledger's final checkpoint"),
            Err(e) => tracing::error!(error = %e, "ledger close task failed"),
            Ok(Ok(())) => {}
        }
        tracing::info!("control plane stopped");
    }
}

/// Makes every entry of `data_dir` owner-only (directories 0700, files 0600), except the work
/// root jobs enter (and the directories above it), the zones' stores (`zone-stores/`, standing
/// in for storage inside each zone, which its jobs use) and `server.url`, which names no secret.
fn restrict_data_dir(data_dir: &Path, work_root: &Path) -> Result<(), (PathBuf, std::io::Error)> {
    use std::os::unix::fs::PermissionsExt as _;
    // The directories made later, on first use, exist from the start, owner-only, so what is
    // written into them never is open to others, even before the next start.
    for name in ["artifacts", "artifact-holders", "datasets", "documents"] {
        let d = data_dir.join(name);
        std::fs::create_dir_all(&d).map_err(|e| (d.clone(), e))?;
    }
    let entries = std::fs::read_dir(data_dir).map_err(|e| (data_dir.to_path_buf(), e))?;
    for e in entries {
        let e = e.map_err(|err| (data_dir.to_path_buf(), err))?;
        let path = e.path();
        // The zones' stores stand in for each zone's own storage, which its jobs write to.
        let zone_stores = tidegate_artifacts::zone_store_dir(data_dir, "-");
        if work_root.starts_with(&path)
            || zone_stores.starts_with(&path)
            || e.file_name() == "server.url"
        {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).map_err(|err| (path.clone(), err))?;
        let mode = if meta.is_dir() {
            0o700
        } else if meta.is_file() {
            0o600
        } else {
            continue;
        };
        if meta.permissions().mode() & 0o777 != mode {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|err| (path.clone(), err))?;
        }
    }
    Ok(())
}
