//! The control plane over TLS: a zone's agent routes need the zone's workload certificate as
//! well as its token (another zone's certificate, none, or one that is no zone identity is
//! `403 zone_identity`, and nothing about the zone changes); a certificate that is expired or
//! from another authority fails the handshake; a plain-HTTP request to the TLS port is served
//! nothing; plain HTTP is refused off loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use common::{example_fleet, now};
use serde_json::{json, Value};
use tidegate_identity::{Role, RootKeyStore};
use tidegate_pki::{Authority, Validity, DEFAULT_TRUST_DOMAIN};
use tidegate_server::control::LoopConfig;
use tidegate_server::{Server, ServerConfig, StartError, TlsSettings};

fn config(dir: &std::path::Path, listen: &str, tls: Option<TlsSettings>) -> ServerConfig {
    ServerConfig {
        data_dir: dir.to_owned(),
        fleet_dir: example_fleet(),
        database: None,
        store: None,
        listen: listen.parse().unwrap(),
        loop_cfg: LoopConfig {
            tick: Duration::from_millis(50),
            ..LoopConfig::default()
        },
        work_root: None,
        keys_dir: None,
        executors: Default::default(),
        admin_token_minutes: 60,
        agent_zones: vec!["public-eu".into(), "public-us".into()],
        replica: "test".into(),
        scheduler: true,
        http: Default::default(),
        tls,
    }
}

struct Tls {
    rt: tokio::runtime::Runtime,
    server: Option<Server>,
    dir: tempfile::TempDir,
    ca_pem: String,
}

impl Drop for Tls {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            self.rt.block_on(s.shutdown());
        }
    }
}

/// A client identity: certificate chain and key, PEM.
struct Identity {
    chain: String,
    key: String,
}

impl Tls {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cfg = config(
            dir.path(),
            "127.0.0.1:0",
            Some(TlsSettings::in_data_dir(dir.path())),
        );
        let server = rt
            .block_on(tidegate_server::start(
                cfg,
                tidegate_server::auth::system_clock(),
            ))
            .unwrap();
        assert!(
            server.url.starts_with("https://127.0.0.1:"),
            "{}",
            server.url
        );
        let ca_pem = std::fs::read_to_string(server.ca_path.clone().unwrap()).unwrap();
        Self {
            rt,
            server: Some(server),
            dir,
            ca_pem,
        }
    }

    fn url(&self) -> String {
        self.server.as_ref().unwrap().url.clone()
    }

    fn port(&self) -> u16 {
        self.url().rsplit(':').next().unwrap().parse().unwrap()
    }

    fn authority(&self) -> Authority {
        Authority::load(&self.dir.path().join("pki"), DEFAULT_TRUST_DOMAIN).unwrap()
    }

    fn token(&self, role: Role, team: &str) -> String {
        let keys = RootKeyStore::new(&self.dir.path().join("keys"));
        tidegate_server::auth::mint(&keys, "tester", role, team, 30, now()).unwrap()
    }

    fn workload(&self, zone: &str, validity: Validity) -> Identity {
        let issued = self.authority().issue_workload(zone, validity).unwrap();
        Identity {
            chain: issued.issued.chain_pem,
            key: issued.key_pem,
        }
    }

    fn heartbeat_zones(&self) -> Vec<String> {
        let store = self.server.as_ref().unwrap().state.shared.store.clone();
        store
            .heartbeats()
            .unwrap()
            .into_iter()
            .map(|h| h.zone)
            .collect()
    }
}

fn client(ca_pem: &str, identity: Option<&Identity>) -> ureq::Agent {
    use ureq::tls::{ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig, TlsProvider};
    let certs = |pem: &str| -> Vec<ureq::tls::Certificate<'static>> {
        ureq::tls::parse_pem(pem.as_bytes())
            .filter_map(|i| match i.unwrap() {
                PemItem::Certificate(c) => Some(c),
                _ => None,
            })
            .collect()
    };
    let mut tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .root_certs(RootCerts::new_with_certs(&certs(ca_pem)));
    if let Some(id) = identity {
        tls = tls.client_cert(Some(ClientCert::new_with_certs(
            &certs(&id.chain),
            PrivateKey::from_pem(id.key.as_bytes()).unwrap(),
        )));
    }
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .tls_config(tls.build())
        .build();
    ureq::Agent::new_with_config(config)
}

fn post(
    agent: &ureq::Agent,
    url: &str,
    token: &str,
    body: &Value,
) -> Result<(u16, Value), ureq::Error> {
    let mut r = agent
        .post(url)
        .header("Authorization", format!("Bearer {token}"))
        .send_json(body)?;
    Ok((
        r.status().as_u16(),
        r.body_mut().read_json().unwrap_or(Value::Null),
    ))
}

fn sync_body() -> Value {
    json!({"agent": "agent-1", "runs": []})
}

#[test]
fn an_agent_route_needs_the_zones_certificate_and_another_zones_is_refused() {
    let t = Tls::start();
    let url = t.url();
    let eu_token = t.token(Role::Agent, "public-eu");
    let sync_eu = format!("{url}/v1/agents/public-eu/sync");

    // The token alone no longer proves the zone.
    let (s, b) = post(&client(&t.ca_pem, None), &sync_eu, &eu_token, &sync_body()).unwrap();
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error"]["code"], "zone_identity", "{b}");

    // Another zone's certificate (from the same authority) with this zone's token: refused,
    // and the zone has no heartbeat from it.
    let us = t.workload("public-us", Validity::starting(now(), 600));
    let (s, b) = post(
        &client(&t.ca_pem, Some(&us)),
        &sync_eu,
        &eu_token,
        &sync_body(),
    )
    .unwrap();
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error"]["code"], "zone_identity", "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("public-us"),
        "{b}"
    );
    assert!(
        !t.heartbeat_zones().contains(&"public-eu".to_owned()),
        "a refused sync changed the zone: {:?}",
        t.heartbeat_zones()
    );
    // Nor may it get a certificate for the other zone.
    let csr = tidegate_pki::new_key_and_csr("public-eu").unwrap();
    let (s, b) = post(
        &client(&t.ca_pem, Some(&us)),
        &format!("{url}/v1/agents/public-eu/certificate"),
        &eu_token,
        &json!({"csr": csr.csr_pem}),
    )
    .unwrap();
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("zone_identity")),
        "{b}"
    );

    // A certificate that is no zone identity (the server's own kind) is refused too.
    let server_cert = t
        .authority()
        .issue_server(&["127.0.0.1".into()], Validity::starting(now(), 600))
        .unwrap();
    let not_zone = Identity {
        chain: server_cert.issued.chain_pem,
        key: server_cert.key_pem,
    };
    // webpki refuses a server-auth-only certificate as a client certificate at the handshake.
    assert!(post(
        &client(&t.ca_pem, Some(&not_zone)),
        &sync_eu,
        &eu_token,
        &sync_body()
    )
    .is_err());

    // The zone's own certificate, asked for with the zone's token over server-authenticated
    // TLS: syncs.
    let (s, b) = post(
        &client(&t.ca_pem, None),
        &format!("{url}/v1/agents/public-eu/certificate"),
        &eu_token,
        &json!({"csr": csr.csr_pem}),
    )
    .unwrap();
    assert_eq!(s, 201, "{b}");
    let serial = b["serial"].as_str().unwrap().to_owned();
    assert_eq!(b["spiffe_id"], "spiffe://tidegate.local/zone/public-eu");
    let left = b["not_after"].as_u64().unwrap() - now();
    assert!((3500..=3600).contains(&left), "1 h by default: {left}");
    let eu = Identity {
        chain: b["certificate"].as_str().unwrap().to_owned(),
        key: csr.key_pem,
    };
    let (s, b) = post(
        &client(&t.ca_pem, Some(&eu)),
        &sync_eu,
        &eu_token,
        &sync_body(),
    )
    .unwrap();
    assert_eq!(s, 200, "{b}");
    assert!(t.heartbeat_zones().contains(&"public-eu".to_owned()));
    // The certificate does not replace the token: another zone's token with it is refused.
    let us_token = t.token(Role::Agent, "public-us");
    let (s, b) = post(
        &client(&t.ca_pem, Some(&eu)),
        &sync_eu,
        &us_token,
        &sync_body(),
    )
    .unwrap();
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{b}"
    );
    // And the issuance is in the evidence ledger.
    let mut t = t;
    let server = t.server.take().unwrap();
    t.rt.block_on(server.shutdown());
    let contents = tidegate_ledger::ledger::read_log(&t.dir.path().join("ledger"), true).unwrap();
    let issued: Vec<Value> = contents
        .entries
        .iter()
        .map(|b| serde_json::from_slice::<Value>(b).unwrap())
        .filter(|e| {
            e["action"]["type"] == "token.issued"
                && e["action"]["token_id"] == format!("x509:{serial}")
        })
        .collect();
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert!(issued[0]["action"]["scope"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == "team:public-eu"));
}

#[test]
fn an_expired_certificate_or_one_from_another_authority_fails_the_handshake() {
    let t = Tls::start();
    let url = t.url();
    let token = t.token(Role::Agent, "public-eu");
    let sync = format!("{url}/v1/agents/public-eu/sync");
    let expired = t.workload(
        "public-eu",
        Validity::between(now() - 7200, now() - 3600).unwrap(),
    );
    let e = post(
        &client(&t.ca_pem, Some(&expired)),
        &sync,
        &token,
        &sync_body(),
    )
    .expect_err("an expired certificate is refused");
    assert!(!matches!(e, ureq::Error::StatusCode(_)), "{e}");
    let other = Authority::create(DEFAULT_TRUST_DOMAIN, now()).unwrap();
    let forged = other
        .issue_workload("public-eu", Validity::starting(now(), 600))
        .unwrap();
    let forged = Identity {
        chain: forged.issued.chain_pem,
        key: forged.key_pem,
    };
    post(
        &client(&t.ca_pem, Some(&forged)),
        &sync,
        &token,
        &sync_body(),
    )
    .expect_err("a certificate from another authority is refused");
    // A client that does not trust the control plane's authority cannot reach it either.
    post(&client(other.cert_pem(), None), &sync, &token, &sync_body())
        .expect_err("the server is authenticated");
    assert!(!t.heartbeat_zones().contains(&"public-eu".to_owned()));
    // The same request with a valid certificate goes through (the refusals were the certificates).
    let good = t.workload("public-eu", Validity::starting(now(), 600));
    let (s, b) = post(&client(&t.ca_pem, Some(&good)), &sync, &token, &sync_body()).unwrap();
    assert_eq!(s, 200, "{b}");
}

#[test]
fn plain_http_to_the_tls_port_is_served_nothing() {
    let t = Tls::start();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", t.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        !String::from_utf8_lossy(&got).contains("HTTP/1.1 200") && !got.starts_with(b"HTTP/"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&got)
    );
    // Over TLS the same request is answered.
    let mut r = client(&t.ca_pem, None)
        .get(format!("{}/healthz", t.url()))
        .call()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "{:?}",
        r.body_mut().read_to_string()
    );
}

#[test]
fn plain_http_is_refused_off_loopback_and_has_no_authority() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(tidegate_server::start(
            config(dir.path(), "0.0.0.0:0", None),
            tidegate_server::auth::system_clock(),
        ))
        .expect_err("plain HTTP on every address is refused");
    assert!(matches!(err, StartError::PlainHttpNotLoopback(_)), "{err}");
    assert!(err.to_string().contains("--plain-http"), "{err}");
    // On loopback it serves, without a certificate authority.
    let server = rt
        .block_on(tidegate_server::start(
            config(dir.path(), "127.0.0.1:0", None),
            tidegate_server::auth::system_clock(),
        ))
        .unwrap();
    assert!(server.url.starts_with("http://127.0.0.1:"));
    assert!(!dir.path().join("pki").exists());
    let keys = RootKeyStore::new(&dir.path().join("keys"));
    let token =
        tidegate_server::auth::mint(&keys, "t", Role::Agent, "public-eu", 30, now()).unwrap();
    let csr = tidegate_pki::new_key_and_csr("public-eu").unwrap();
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let (s, b) = post(
        &agent,
        &format!("{}/v1/agents/public-eu/certificate", server.url),
        &token,
        &json!({"csr": csr.csr_pem}),
    )
    .unwrap();
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("no_authority")),
        "{b}"
    );
    // Over plain HTTP on loopback the token proves the zone, as before.
    let (s, b) = post(
        &agent,
        &format!("{}/v1/agents/public-eu/sync", server.url),
        &token,
        &sync_body(),
    )
    .unwrap();
    assert_eq!(s, 200, "{b}");
    rt.block_on(server.shutdown());
}

#[test]
fn the_authority_is_reused_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = || {
        rt.block_on(tidegate_server::start(
            config(
                dir.path(),
                "127.0.0.1:0",
                Some(TlsSettings::in_data_dir(dir.path())),
            ),
            tidegate_server::auth::system_clock(),
        ))
        .unwrap()
    };
    let first = start();
    assert!(first.state.tls.as_ref().unwrap().created);
    let ca = std::fs::read_to_string(dir.path().join("pki/ca.pem")).unwrap();
    rt.block_on(first.shutdown());
    let second = start();
    assert!(!second.state.tls.as_ref().unwrap().created);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("pki/ca.pem")).unwrap(),
        ca
    );
    rt.block_on(second.shutdown());
}
