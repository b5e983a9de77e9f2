//! `tidegate witness`: the C2SP `tlog-witness` HTTP endpoint (`POST /add-checkpoint`) over the
//! pure [`tidegate_ledger::witness`], with the control plane's connection limits.
//!
//! The witness keeps its own key and its own state file (per log, the newest checkpoint it
//! co-signed); a co-signature is answered only after the new state is durably written, so a
//! witness killed at any moment never later co-signs a history inconsistent with one it vouched
//! for. Run it in another zone, or let the auditor run it: whoever holds the control plane's
//! data directory cannot reach its key or its state.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use prometheus_client::metrics::gauge::Gauge;
use tidegate_ledger::witness::{Witness, WitnessError, WitnessState};

use crate::http::HttpLimits;

/// Largest request accepted (a checkpoint and a proof are a few kilobytes).
const MAX_BODY: usize = 64 * 1024;

/// Why the witness could not start or keep its state.
#[derive(Debug, thiserror::Error)]
pub enum WitnessServeError {
    /// The state file could not be read or written.
    #[error("witness state {path}: {why}")]
    State {
        /// The file.
        path: PathBuf,
        /// What failed.
        why: String,
    },
    /// Plain HTTP on an address that is not loopback, or a TLS certificate that does not load.
    #[error("{0}")]
    Tls(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// Read a witness state file (absent: a witness that has co-signed nothing yet).
///
/// # Errors
/// [`WitnessServeError::State`] when it cannot be read or does not parse.
pub fn load_state(path: &Path) -> Result<WitnessState, WitnessServeError> {
    let err = |why: String| WitnessServeError::State {
        path: path.to_owned(),
        why,
    };
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(WitnessState::default()),
        Err(e) => Err(err(e.to_string())),
    }
}

struct Inner {
    witness: Witness,
    state: Mutex<WitnessState>,
    path: PathBuf,
    clock: fn() -> u64,
}

/// A running witness.
pub struct WitnessServer {
    /// Its base URL (`http://addr`).
    pub url: String,
    stop: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl WitnessServer {
    /// Stop accepting, drain, and return.
    pub async fn shutdown(self) {
        self.stop.notify_waiters();
        let _ = self.task.await;
    }
}

/// Start the witness on `listen` with its state in `state_path`; `clock` gives Unix seconds
/// (the co-signatures' timestamps). `tls` is its certificate chain and key (PEM): without one it
/// serves plain HTTP, on a loopback address only.
///
/// # Errors
/// When the state cannot be read, the address cannot be bound, plain HTTP is asked for on an
/// address that is not loopback, or the certificate does not load.
pub async fn start(
    listen: SocketAddr,
    witness: Witness,
    state_path: &Path,
    clock: fn() -> u64,
    tls: Option<(&str, &str)>,
) -> Result<WitnessServer, WitnessServeError> {
    let transport = match tls {
        Some((chain, key)) => crate::http::Transport::Tls {
            acceptor: crate::tls::server_acceptor(chain, key).map_err(WitnessServeError::Tls)?,
            trust_domain: Arc::from(tidegate_pki::DEFAULT_TRUST_DOMAIN),
        },
        None if listen.ip().to_canonical().is_loopback() => crate::http::Transport::Plain,
        None => {
            return Err(WitnessServeError::Tls(format!(
                "plain HTTP is only served on a loopback address, not on {listen}: give the witness --tls-cert and --tls-key"
            )))
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let state = load_state(state_path)?;
    let inner = Arc::new(Inner {
        witness,
        state: Mutex::new(state),
        path: state_path.to_owned(),
        clock,
    });
    let app = Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(inner);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| WitnessServeError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| WitnessServeError::Bind {
            addr: listen,
            source,
        })?;
    let stop = Arc::new(tokio::sync::Notify::new());
    let limits = HttpLimits::default();
    let app = crate::http::with_body_timeout(app, limits.body_read_timeout);
    let task = tokio::spawn(crate::http::serve(
        listener,
        app,
        limits,
        transport,
        stop.clone(),
        Gauge::default(),
    ));
    tracing::info!(%addr, "witness listening");
    Ok(WitnessServer {
        url: format!("{scheme}://{addr}"),
        stop,
        task,
    })
}

async fn add_checkpoint(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    match tokio::task::spawn_blocking(move || handle(&inner, &body)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "witness request failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
    }
}

fn handle(inner: &Inner, body: &[u8]) -> Response {
    let Ok(body) = std::str::from_utf8(body) else {
        return refusal(&WitnessError::Malformed("the body is not UTF-8".into()));
    };
    // One request at a time: the state read, the check and the durable write are one step.
    let mut state = inner
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match inner.witness.add_checkpoint(&state, body, (inner.clock)()) {
        Ok((next, sigs)) => {
            let json = match serde_json::to_vec_pretty(&next) {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode the witness state");
                    return (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response();
                }
            };
            // Durable before the answer: a co-signature is never given for a state the witness
            // could forget.
            if let Err(e) = tidegate_ledger::ledger::write_atomic(&inner.path, &json) {
                tracing::error!(error = %e, path = %inner.path.display(), "cannot write the witness state; refusing to co-sign");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the witness cannot record its state; not co-signed\n",
                )
                    .into_response();
            }
            *state = next;
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                sigs,
            )
                .into_response()
        }
        Err(e) => refusal(&e),
    }
}

fn refusal(e: &WitnessError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    tracing::warn!(status = status.as_u16(), reason = %e, "checkpoint not co-signed");
    match e {
        // The protocol's conflict answer: the witness's size, so the client can retry.
        WitnessError::Conflict(size) => (
            status,
            [(header::CONTENT_TYPE, "text/x.tlog.size")],
            format!("{size}\n"),
        )
            .into_response(),
        other => (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{other}\n"),
        )
            .into_response(),
    }
}
