//! tidegate's API client, as the command line and the benchmarks use it: where the server is,
//! which token to send, which certificate authority to trust (and, for an agent, which client
//! certificate to present), and turning the API's JSON errors into diagnostics.
//!
//! TLS is rustls with the ring provider and no bundled roots: the client trusts the control
//! plane's own authority, from `--ca` / `TIDEGATE_CA`, else `<data-dir>/pki/ca.pem` (a local
//! `tidegate up`).
//!
//! [`output`] holds what the commands print with: `--output text|json` ([`output::Format`]),
//! [`output::print_json`], and the fleet directory they default to ([`output::fleet_dir`]).

#![warn(missing_docs, unreachable_pub)]

pub mod output;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use miette::miette;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tidegate_api::ErrorBody;

/// How to reach the control plane.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Base URL of the API. Default: the URL `tidegate up` wrote to `<data-dir>/server.url`,
    /// else https://127.0.0.1:7700.
    #[arg(long, env = "TIDEGATE_URL", global = true)]
    pub server: Option<String>,
    /// File holding a bearer token. Default: `<data-dir>/admin.token` (written by `tidegate up`).
    #[arg(long, env = "TIDEGATE_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Data directory of a local `tidegate up`, used to find its URL, admin token and
    /// certificate authority.
    #[arg(long, default_value = ".tidegate", global = true)]
    pub data_dir: PathBuf,
    /// The control plane's certificate authority (PEM) to trust. Default:
    /// `<data-dir>/pki/ca.pem` (written by `tidegate up`).
    #[arg(long, env = "TIDEGATE_CA", global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

/// A connected client.
#[derive(Debug, Clone)]
pub struct Client {
    agent: ureq::Agent,
    /// Base URL, without a trailing slash.
    pub base: String,
    token: String,
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// A client certificate to present: its chain and key, PEM.
#[derive(Clone)]
pub struct ClientIdentity {
    /// The certificate and its issuers, PEM.
    pub chain_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity").finish_non_exhaustive()
    }
}

/// The certificate authority to trust: `explicit` (a `--ca` file) when given, else
/// `<data_dir>/pki/ca.pem` when it exists; its PEM text.
pub fn find_ca(
    explicit: Option<&Path>,
    data_dir: Option<&Path>,
) -> miette::Result<Option<Vec<u8>>> {
    if let Some(path) = explicit {
        return std::fs::read(path).map(Some).map_err(|e| {
            miette!(
                help = "the control plane's CA is <data-dir>/pki/ca.pem on its machine",
                "cannot read the certificate authority {}: {e}",
                path.display()
            )
        });
    }
    let Some(dir) = data_dir else { return Ok(None) };
    let path = tidegate_vocab::DataDir::new(dir)
        .pki()
        .join(tidegate_pki::CA_CERT_FILE);
    match std::fs::read(&path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(miette!(
            "cannot read the certificate authority {}: {e}",
            path.display()
        )),
    }
}

/// The certificate authority named by `TIDEGATE_CA`, if set.
pub fn ca_from_env() -> miette::Result<Option<Vec<u8>>> {
    match std::env::var_os("TIDEGATE_CA") {
        Some(p) if !p.is_empty() => find_ca(Some(Path::new(&p)), None),
        _ => Ok(None),
    }
}

/// An HTTP agent that hands error statuses back as responses (their JSON bodies explain them),
/// trusting the certificate authority named by `TIDEGATE_CA` for `https://` URLs.
pub fn agent(timeout: Duration) -> miette::Result<ureq::Agent> {
    agent_trusting(timeout, ca_from_env()?.as_deref(), None)
}

/// An HTTP agent trusting `ca` (PEM) for `https://` URLs, presenting `identity` when given.
/// Without a CA an `https://` URL cannot be verified, and is refused when called.
pub fn agent_trusting(
    timeout: Duration,
    ca: Option<&[u8]>,
    identity: Option<&ClientIdentity>,
) -> miette::Result<ureq::Agent> {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};
    let mut roots = Vec::new();
    if let Some(pem) = ca {
        for item in ureq::tls::parse_pem(pem) {
            if let ureq::tls::PemItem::Certificate(c) =
                item.map_err(|e| miette!("the certificate authority does not parse: {e}"))?
            {
                roots.push(c);
            }
        }
        if roots.is_empty() {
            return Err(miette!(
                "the certificate authority file holds no certificate"
            ));
        }
    }
    let mut tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .root_certs(RootCerts::new_with_certs(&roots));
    if let Some(id) = identity {
        let chain: Vec<Certificate<'static>> = ureq::tls::parse_pem(id.chain_pem.as_bytes())
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if chain.is_empty() {
            return Err(miette!("the client certificate holds no certificate"));
        }
        let key = PrivateKey::from_pem(id.key_pem.as_bytes())
            .map_err(|e| miette!("the client key does not parse: {e}"))?;
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .tls_config(tls.build())
        .build();
    Ok(ureq::Agent::new_with_config(config))
}

impl Client {
    /// Resolves the server and token from flags, environment and the data directory.
    pub fn from_args(args: &ClientArgs) -> miette::Result<Self> {
        let base = args
            .server
            .clone()
            .or_else(|| read_trimmed(&tidegate_vocab::DataDir::new(&args.data_dir).server_url()))
            .unwrap_or_else(|| "https://127.0.0.1:7700".into())
            .trim_end_matches('/')
            .to_owned();
        let token_path = args
            .token_file
            .clone()
            .unwrap_or_else(|| tidegate_vocab::DataDir::new(&args.data_dir).admin_token());
        let token = match std::env::var("TIDEGATE_TOKEN") {
            Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
            _ => read_trimmed(&token_path).ok_or_else(|| {
                miette!(
                    help = "start the control plane with `tidegate up` (it writes <data-dir>/admin.token), or pass --token-file / set TIDEGATE_TOKEN",
                    "no API token: {} is missing or empty",
                    token_path.display()
                )
            })?,
        };
        let ca = find_ca(args.ca.as_deref(), Some(&args.data_dir))?;
        Ok(Self {
            agent: agent_trusting(Duration::from_secs(30), ca.as_deref(), None)?,
            base,
            token,
        })
    }

    /// A client with an explicit URL and token (trusting the CA `TIDEGATE_CA` names).
    pub fn new(base: &str, token: &str) -> miette::Result<Self> {
        Self::with_timeout(base, token, Duration::from_secs(30))
    }

    /// A client whose every request gives up after `timeout` (trusting the CA `TIDEGATE_CA`
    /// names).
    pub fn with_timeout(base: &str, token: &str, timeout: Duration) -> miette::Result<Self> {
        Ok(Self::with_agent(base, token, agent(timeout)?))
    }

    /// A client over an agent made with [`agent_trusting`].
    pub fn with_agent(base: &str, token: &str, agent: ureq::Agent) -> Self {
        Self {
            agent,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    fn finish<T: DeserializeOwned>(
        &self,
        what: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> miette::Result<T> {
        let mut resp = self.reached(what, resp)?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| miette!("{what}: cannot read the answer: {e}"))?;
        if status.is_success() {
            return serde_json::from_str(&text)
                .map_err(|e| miette!("{what}: unexpected answer from the server ({e}): {text}"));
        }
        Err(api_error(what, status, &text))
    }

    fn reached(
        &self,
        what: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> miette::Result<ureq::http::Response<ureq::Body>> {
        resp.map_err(|e| {
            let help = if self.base.starts_with("https://") {
                "is the control plane running (`tidegate up`)? Over HTTPS the client trusts --ca FILE / TIDEGATE_CA, else <data-dir>/pki/ca.pem"
            } else {
                "is the control plane running? start it with `tidegate up`"
            };
            miette!(help = help, "{what}: cannot reach {}: {e}", self.base)
        })
    }

    /// GET raw content (at most `limit` bytes), sending `token` instead of the client's own when
    /// given (a scoped job token), and `zone_token` as the zone's identity when given.
    pub fn get_bytes(
        &self,
        path: &str,
        token: Option<&str>,
        zone_token: Option<&str>,
        limit: u64,
    ) -> miette::Result<Vec<u8>> {
        let what = format!("GET {path}");
        let bearer = token.unwrap_or(&self.token);
        let mut req = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {bearer}"));
        if let Some(z) = zone_token {
            req = req.header("X-Tidegate-Zone-Token", z);
        }
        let resp = req.call();
        let mut resp = self.reached(&what, resp)?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            return Err(api_error(&what, status, &text));
        }
        resp.body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| miette!("{what}: cannot read the content: {e}"))
    }

    /// POST the content of a file as `application/octet-stream`, streamed (never read whole
    /// into memory); JSON answer.
    pub fn post_file<T: DeserializeOwned>(
        &self,
        path: &str,
        content: &std::fs::File,
    ) -> miette::Result<T> {
        let resp = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Content-Type", "application/octet-stream")
            .send(content);
        self.finish(&format!("POST {path}"), resp)
    }

    /// GET a JSON resource.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> miette::Result<T> {
        let resp = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call();
        self.finish(&format!("GET {path}"), resp)
    }

    /// POST JSON, with optional extra headers.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        headers: &[(&str, &str)],
    ) -> miette::Result<T> {
        let mut req = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send_json(body);
        self.finish(&format!("POST {path}"), resp)
    }
}

/// The diagnostic for an API error answer: status, stable code, field and message.
fn api_error(what: &str, status: ureq::http::StatusCode, text: &str) -> miette::Report {
    let (code, message, field) = match serde_json::from_str::<ErrorBody>(text) {
        Ok(ErrorBody { error }) => (error.code, error.message, error.field),
        // Not the API's error shape (a proxy's answer, a cut body): what of it can be read.
        Err(_) => {
            let err: serde_json::Value =
                serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
            let read = |at: &str| err.pointer(at).and_then(|v| v.as_str()).map(str::to_owned);
            (
                read("/error/code").unwrap_or_else(|| "error".to_owned()),
                read("/error/message").unwrap_or_else(|| text.to_owned()),
                read("/error/field"),
            )
        }
    };
    match field {
        Some(f) => miette!("{what}: {status} {code} (field {f}): {message}"),
        None => miette!("{what}: {status} {code}: {message}"),
    }
}

/// Percent-encodes a query parameter value (everything but unreserved characters).
pub fn query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::api_error;

    #[test]
    fn an_api_error_names_status_code_field_and_message() {
        let status = ureq::http::StatusCode::BAD_REQUEST;
        let text = r#"{"error":{"code":"invalid_request","message":"bad","field":"manifest"}}"#;
        assert_eq!(
            api_error("POST /v1/jobs", status, text).to_string(),
            "POST /v1/jobs: 400 Bad Request invalid_request (field manifest): bad"
        );
        let text = r#"{"error":{"code":"not_found","message":"gone"}}"#;
        assert_eq!(
            api_error("GET /v1/jobs/x", ureq::http::StatusCode::NOT_FOUND, text).to_string(),
            "GET /v1/jobs/x: 404 Not Found not_found: gone"
        );
    }

    #[test]
    fn an_answer_that_is_not_the_error_shape_is_told_as_far_as_it_reads() {
        let status = ureq::http::StatusCode::BAD_GATEWAY;
        assert_eq!(
            api_error("GET /x", status, "upstream down").to_string(),
            "GET /x: 502 Bad Gateway error: upstream down"
        );
        let text = r#"{"error":{"code":"teapot"}}"#;
        assert_eq!(
            api_error("GET /x", status, text).to_string(),
            format!("GET /x: 502 Bad Gateway teapot: {text}")
        );
    }
}
