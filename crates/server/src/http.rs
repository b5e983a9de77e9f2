//! The HTTP listener: one hyper HTTP/1 connection per accepted socket, with the limits that keep
//! one slow or idle client from holding the server ([`HttpLimits`]).
//!
//! - A request head must arrive within `header_read_timeout` (an idle keep-alive connection is
//!   closed after it too); a client that sends half a request line and stalls is disconnected.
//! - A request body that makes no progress for `body_read_timeout` is cut: the request is
//!   answered `408 request_timeout` and the connection closed.
//! - At most `max_connections` connections are served at once; past the bound, connections wait
//!   in the kernel's accept queue (nothing is accepted, so nothing is held by the process) until
//!   one ends.
//! - Draining stops accepting at once, asks every connection to finish its request in flight,
//!   and after `drain_deadline` closes those still open: acknowledged work is already durable,
//!   so the server exits whatever a client does.
//! - Under TLS ([`Transport::Tls`]) the handshake must finish within `header_read_timeout`; one
//!   that fails (a plain-HTTP request, a client certificate that is expired or not from the
//!   control plane's authority) closes the connection with nothing served. The verified client
//!   certificate, if any, goes into every request's extensions ([`crate::tls::PeerCertificate`]).
//! - Over plain HTTP ([`Transport::Plain`], loopback only) a connection from a peer that is not
//!   a loopback address is closed at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::error::ApiError;

/// Limits of the HTTP listener.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Time allowed for a request head (request line and headers) to arrive, and for the next
    /// one on an idle keep-alive connection (default 10 s).
    pub header_read_timeout: Duration,
    /// Longest a request body may go without sending anything (default 30 s).
    pub body_read_timeout: Duration,
    /// Connections served at once (default 1024); later ones wait to be accepted.
    pub max_connections: usize,
    /// How long a drain waits for connections to finish before closing them (default 10 s).
    pub drain_deadline: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
            drain_deadline: Duration::from_secs(10),
        }
    }
}

/// Adds the body-read timeout to `app`.
pub(crate) fn with_body_timeout(app: Router, limit: Duration) -> Router {
    app.layer(axum::middleware::from_fn_with_state(limit, body_timeout))
}

async fn body_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let expired = Arc::new(AtomicBool::new(false));
    let ended = Arc::new(AtomicBool::new(false));
    let declared = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let req = req.map(|inner| {
        Body::new(Stalling {
            inner,
            limit,
            sleep: Box::pin(tokio::time::sleep(limit)),
            expired: expired.clone(),
            ended: ended.clone(),
        })
    });
    let mut resp = next.run(req).await;
    if !expired.load(Ordering::SeqCst) {
        // A request answered before its body was read (refused on its head) leaves the rest of
        // the body on the connection, so the server closes it: the client is told, and opens a
        // new one for its next request instead of writing into a closed one.
        if declared && !ended.load(Ordering::SeqCst) {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return resp;
    }
    let mut resp = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!(
            "the request body sent nothing for {} s; the connection is closed",
            limit.as_secs_f64()
        ),
    )
    .into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The body stopped arriving.
#[derive(Debug, thiserror::Error)]
#[error("the request body sent nothing for {0:?}")]
struct BodyStalled(Duration);

/// A request body that fails once it goes `limit` without a frame.
struct Stalling {
    inner: Body,
    limit: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    expired: Arc<AtomicBool>,
    /// Set once the whole body was read.
    ended: Arc<AtomicBool>,
}

impl http_body::Body for Stalling {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.limit;
                this.sleep.as_mut().reset(next);
                if frame.is_none() || this.inner.is_end_stream() {
                    this.ended.store(true, Ordering::SeqCst);
                }
                Poll::Ready(frame)
            }
            Poll::Pending => {
                if this.sleep.as_mut().poll(cx).is_ready() {
                    this.expired.store(true, Ordering::SeqCst);
                    Poll::Ready(Some(Err(axum::Error::new(BodyStalled(this.limit)))))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Counts a connection as open for as long as it lives.
struct Open(Gauge);

impl Open {
    fn new(g: &Gauge) -> Self {
        g.inc();
        Self(g.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// How connections are secured.
#[derive(Clone)]
pub(crate) enum Transport {
    /// Plain HTTP, from loopback peers only.
    Plain,
    /// TLS, client certificates verified against the control plane's authority.
    Tls {
        /// The handshake.
        acceptor: tokio_rustls::TlsAcceptor,
        /// Trust domain of zone identities.
        trust_domain: Arc<str>,
    },
}

/// Serves one connection with hyper HTTP/1 until it ends, or until a drain asks it to finish.
async fn serve_connection<I>(
    io: I,
    app: Router,
    peer: Option<crate::tls::PeerCertificate>,
    mut drain: watch::Receiver<bool>,
    header_timeout: Duration,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = TowerToHyperService::new(tower::util::MapRequest::new(
        app,
        move |mut req: axum::http::Request<hyper::body::Incoming>| {
            if let Some(p) = &peer {
                req.extensions_mut().insert(p.clone());
            }
            req
        },
    ));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        // Past the API's own bound, so that a request with too many headers is
        // answered with the JSON error shape (crate::shape).
        .max_headers(crate::shape::HARD_MAX_HEADERS);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let res = tokio::select! {
        r = conn.as_mut() => r,
        _ = drain.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = res {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

/// Serves `app` on `listener` until `stop` is notified, then drains (see the module docs).
/// `open` counts the connections being served.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    transport: Transport,
    stop: Arc<Notify>,
    open: Gauge,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        while conns.try_join_next().is_some() {}
        // A permit first: past the bound nothing is accepted.
        let permit = tokio::select! {
            () = &mut stopped => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer_addr) = tokio::select! {
            () = &mut stopped => break,
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was accepted: the
                    // listener stays, and tries again shortly.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if matches!(transport, Transport::Plain) && !peer_addr.ip().to_canonical().is_loopback() {
            // Plain HTTP is for this machine only: nothing is read from anyone else.
            tracing::warn!(peer = %peer_addr, "plain HTTP connection from outside loopback refused");
            drop(stream);
            continue;
        }
        let open = Open::new(&open);
        let app = app.clone();
        let drain = drain_rx.clone();
        let header_timeout = limits.header_read_timeout;
        let transport = transport.clone();
        conns.spawn(async move {
            let _permit = permit;
            let _open = open;
            match transport {
                Transport::Plain => {
                    serve_connection(stream, app, None, drain, header_timeout).await;
                }
                Transport::Tls {
                    acceptor,
                    trust_domain,
                } => {
                    let tls = match tokio::time::timeout(header_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::info!(peer = %peer_addr, error = %e, "TLS handshake refused");
                            return;
                        }
                        Err(_) => {
                            tracing::info!(peer = %peer_addr, "TLS handshake timed out");
                            return;
                        }
                    };
                    let peer = crate::tls::peer_certificate(tls.get_ref().1, &trust_domain);
                    serve_connection(tls, app, peer, drain, header_timeout).await;
                }
            }
        });
    }
    drop(listener);
    let _ = drain_tx.send(true);
    let finished = tokio::time::timeout(limits.drain_deadline, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            connections = conns.len(),
            deadline_s = limits.drain_deadline.as_secs_f64(),
            "connections still open at the drain deadline are closed"
        );
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}
