//! Transport security: the control plane's TLS (rustls with ring), its certificate authority
//! (`tidegate-pki`, in `<data-dir>/pki/`), the verified client certificate of each connection,
//! and the check that a zone's routes are called from that zone.
//!
//! The listener presents a server certificate the authority issues at each start, and asks every
//! client for a certificate without requiring one (people call the API with bearer tokens): a
//! certificate that is presented must chain to the authority and be within its validity, or the
//! handshake fails and nothing is served. A verified client certificate is read into a
//! [`PeerCertificate`] and put into every request of its connection ([`crate::http`]).
//!
//! Invariant: a zone's identity comes from its certificate, never from a parameter the caller
//! chooses. Under TLS, every agent route ([`require_zone`]) needs both the zone's agent token and
//! a client certificate whose SPIFFE ID is `spiffe://<trust-domain>/zone/<zone>` for the zone the
//! route names; a missing certificate, one naming no zone and one naming another zone are all
//! `403 zone_identity`. Over plain HTTP (loopback only, when asked for) the token alone proves the
//! zone, as it did before TLS.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tidegate_pki::{Authority, Validity, ZoneIdentity};

use crate::error::ApiError;
use crate::StartError;

/// How long the server certificate issued at start is valid (it is issued again at each start).
const SERVER_CERT_SECS: u64 = 365 * 24 * 3600;

/// The longest workload certificate lifetime the control plane issues.
pub const MAX_WORKLOAD_TTL: Duration = Duration::from_secs(24 * 3600);

/// How the control plane serves TLS.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Where the certificate authority lives (`ca.pem`, `ca.key`); created on first start.
    pub pki_dir: PathBuf,
    /// Trust domain of the zones' SPIFFE IDs.
    pub trust_domain: String,
    /// Names the server certificate carries besides the listen address, `127.0.0.1`, `::1`,
    /// `localhost` and the host name (IP addresses or DNS names clients reach it by).
    pub server_names: Vec<String>,
    /// Lifetime of the workload certificates it issues (at most [`MAX_WORKLOAD_TTL`]).
    pub workload_ttl: Duration,
}

impl TlsSettings {
    /// TLS with the authority in `<data_dir>/pki`, the default trust domain and 1 h workload
    /// certificates.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self {
            pki_dir: tidegate_vocab::DataDir::new(data_dir).pki(),
            trust_domain: tidegate_pki::DEFAULT_TRUST_DOMAIN.to_owned(),
            server_names: Vec::new(),
            workload_ttl: Duration::from_secs(3600),
        }
    }
}

/// The running TLS side: the authority (for workload certificates) and the acceptor.
pub struct Tls {
    /// The certificate authority.
    pub authority: Authority,
    /// Where its certificate is (what clients trust).
    pub ca_path: PathBuf,
    /// Whether this start created it.
    pub created: bool,
    /// Lifetime of workload certificates.
    pub workload_ttl: Duration,
    /// The names in the server certificate.
    pub server_names: Vec<String>,
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("ca_path", &self.ca_path)
            .field("trust_domain", &self.authority.trust_domain())
            .field("server_names", &self.server_names)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// The trust domain of zone identities.
    pub fn trust_domain(&self) -> &str {
        self.authority.trust_domain()
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
}

/// The names of the server certificate for `listen`.
fn server_names(listen: SocketAddr, extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |n: String| {
        if !names.contains(&n) {
            names.push(n);
        }
    };
    if !listen.ip().is_unspecified() {
        add(listen.ip().to_string());
    }
    add(IpAddr::V4(Ipv4Addr::LOCALHOST).to_string());
    add(IpAddr::V6(Ipv6Addr::LOCALHOST).to_string());
    add("localhost".into());
    if let Some(h) = hostname().filter(|h| {
        h.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
    }) {
        add(h);
    }
    for n in extra {
        add(n.trim().to_owned());
    }
    names
}

fn tls_err(dir: &Path, reason: impl std::fmt::Display) -> StartError {
    StartError::Tls {
        dir: dir.to_owned(),
        reason: reason.to_string(),
    }
}

/// Loads (or, on first start, creates) the authority and builds the listener's TLS: a server
/// certificate for `listen` and the configured names, client certificates verified against the
/// authority and optional.
pub(crate) fn setup(
    settings: &TlsSettings,
    listen: SocketAddr,
    now: u64,
) -> Result<Tls, StartError> {
    let dir = &settings.pki_dir;
    if settings.workload_ttl.is_zero() || settings.workload_ttl > MAX_WORKLOAD_TTL {
        return Err(tls_err(
            dir,
            format!(
                "the workload certificate lifetime must be 1 s to {} h",
                MAX_WORKLOAD_TTL.as_secs() / 3600
            ),
        ));
    }
    let (authority, created) =
        Authority::load_or_create(dir, &settings.trust_domain, now).map_err(|e| tls_err(dir, e))?;
    let names = server_names(listen, &settings.server_names);
    let server = authority
        .issue_server(&names, Validity::starting(now, SERVER_CERT_SECS))
        .map_err(|e| tls_err(dir, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca = CertificateDer::from(authority.cert_der().to_vec());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).map_err(|e| tls_err(dir, e))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| tls_err(dir, e))?;
    let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes())
        .map_err(|e| tls_err(dir, format!("the server key: {e}")))?;
    let chain = vec![CertificateDer::from(server.issued.cert_der.clone()), ca];
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(dir, e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls_err(dir, e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        authority,
        ca_path: dir.join(tidegate_pki::CA_CERT_FILE),
        created,
        workload_ttl: settings.workload_ttl,
        server_names: names,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    })
}

/// A TLS acceptor presenting `chain_pem` with `key_pem` and asking for no client certificate
/// (a service whose callers need no identity, such as a witness).
///
/// # Errors
/// A chain or key that does not parse or does not match.
pub fn server_acceptor(
    chain_pem: &str,
    key_pem: &str,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the TLS certificate does not parse: {e}"))?;
    if chain.is_empty() {
        return Err("the TLS certificate file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("the TLS key does not parse: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the TLS certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The verified client certificate of a connection, as a zone identity or why it is none.
#[derive(Debug, Clone)]
pub struct PeerCertificate {
    /// The zone it proves, or why it proves none.
    pub zone: Result<ZoneIdentity, String>,
}

/// The client certificate the TLS layer verified on `conn`, if one was presented.
pub(crate) fn peer_certificate(
    conn: &rustls::ServerConnection,
    trust_domain: &str,
) -> Option<PeerCertificate> {
    let leaf = conn.peer_certificates()?.first()?;
    Some(PeerCertificate {
        zone: ZoneIdentity::from_certificate_der(leaf, trust_domain).map_err(|e| e.to_string()),
    })
}

/// A handler's view of the connection's client certificate (absent over plain HTTP, or when
/// none was presented).
#[derive(Debug, Clone)]
pub struct Peer(pub Option<PeerCertificate>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<PeerCertificate>().cloned()))
    }
}

/// `403 zone_identity`.
fn zone_identity(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "zone_identity", message)
}

/// Under TLS, that the caller's client certificate is `zone`'s workload identity (see the module
/// docs); over plain HTTP, nothing (the token proves the zone).
pub fn require_zone(tls: Option<&Tls>, peer: &Peer, zone: &str) -> Result<(), ApiError> {
    if tls.is_none() {
        return Ok(());
    }
    match &peer.0 {
        None => Err(zone_identity(format!(
            "zone {zone}'s agent routes need the zone's workload certificate (mutual TLS) as well as its token; none was presented (get one with POST /v1/agents/{zone}/certificate, or `tidegate cert issue --zone {zone}`)"
        ))),
        Some(PeerCertificate { zone: Err(why) }) => Err(zone_identity(format!(
            "the client certificate is no zone identity ({why}); zone {zone}'s agent routes need the zone's workload certificate"
        ))),
        Some(PeerCertificate { zone: Ok(id) }) if id.zone() != zone => Err(zone_identity(format!(
            "the client certificate is zone {}'s identity ({id}), not zone {zone}'s: one zone cannot act for another",
            id.zone()
        ))),
        Some(_) => Ok(()),
    }
}

/// When a client certificate is presented, that it is `zone`'s (a caller with another zone's
/// certificate is refused even where a certificate is not required).
pub fn refuse_other_zone(peer: &Peer, zone: &str) -> Result<(), ApiError> {
    match &peer.0 {
        Some(PeerCertificate { zone: Ok(id) }) if id.zone() != zone => Err(zone_identity(format!(
            "the client certificate is zone {}'s identity ({id}), not zone {zone}'s: one zone cannot act for another",
            id.zone()
        ))),
        _ => Ok(()),
    }
}
