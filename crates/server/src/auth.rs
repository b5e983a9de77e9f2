//! Bearer-token authentication and authorization for the API: the only module that knows the
//! token format (Biscuit user tokens from `tidegate-identity`).
//!
//! Invariant: every route but `/healthz` authenticates the caller, then asks the token whether it
//! allows the route's action for the team concerned; a missing, malformed, expired or revoked
//! token is 401, a valid token of the wrong role or team is 403.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use tidegate_identity::{
    Action, Claims, IdentityError, Issuer, Request, Role, RootKeyStore, TokenSpec, Verifier,
};

use crate::error::ApiError;

/// Seconds since the Unix epoch, from whatever clock the server runs on.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// How often the keyring is re-read, so revocations take effect without a restart. Cached
/// verdicts are dropped at each reload.
const RELOAD: Duration = Duration::from_secs(5);

/// Most tokens whose verification is remembered between reloads.
const CACHE_MAX: usize = 10_000;

/// Verdicts remembered until the next keyring reload: a signature is checked once per token per
/// reload, not once per request. Only tokens without attenuation blocks are cached (their only
/// time limit is the authority block's expiry, checked on every hit).
#[derive(Debug, Default)]
struct Cache {
    claims: HashMap<String, Claims>,
    allowed: HashSet<(String, &'static str, String)>,
}

/// A caller whose token verified.
#[derive(Debug, Clone)]
pub struct Caller {
    token: String,
    /// What the token says.
    pub claims: Claims,
}

impl Caller {
    /// The caller's team.
    pub fn team(&self) -> &str {
        self.claims.team.as_deref().unwrap_or("")
    }

    /// Whether the caller is an administrator.
    pub fn is_admin(&self) -> bool {
        self.claims.role.as_deref() == Some(Role::Admin.as_str())
    }

    /// The caller's name.
    pub fn subject(&self) -> &str {
        self.claims.subject.as_deref().unwrap_or("")
    }
}

/// Verifies API tokens against the data directory's token keyring.
pub struct Auth {
    keys: RootKeyStore,
    /// The digest of the token keyring the evidence ledger recorded: a reloaded keyring that
    /// differs is not adopted.
    pinned: RwLock<Option<tidegate_ledger::Digest>>,
    /// Held while the keyring is being changed.
    changing: Mutex<()>,
    verifier: RwLock<(Arc<Verifier>, Instant)>,
    cache: Mutex<Cache>,
    clock: Clock,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("keyring", &self.keys.keyring_path())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Loads the keyring under `keys`. An unreadable keyring is an error: the server does not
    /// start without one (fail closed).
    pub fn new(keys: RootKeyStore, clock: Clock) -> Result<Self, IdentityError> {
        let ring = keys.keyring()?;
        Ok(Self {
            keys,
            pinned: RwLock::new(None),
            changing: Mutex::new(()),
            verifier: RwLock::new((Arc::new(Verifier::new(ring)), Instant::now())),
            cache: Mutex::new(Cache::default()),
            clock,
        })
    }

    /// The clock tokens are checked against.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// The verifier for the current keyring (re-read every few seconds); also checks scoped job
    /// tokens offline where a data endpoint accepts them.
    pub fn verifier(&self) -> Result<Arc<Verifier>, ApiError> {
        if let Ok(guard) = self.verifier.read() {
            if guard.1.elapsed() < RELOAD {
                return Ok(guard.0.clone());
            }
        }
        // Reload; if the keyring became unreadable, refuse (never fall back to an old one). A
        // keyring that differs from the one the ledger recorded (changed outside tidegate, which
        // records every key change it makes) is refused too.
        let ring = self.keys.keyring().map_err(ApiError::from)?;
        let pinned = self.pinned.read().ok().and_then(|p| p.clone());
        if let Some(want) = pinned {
            let got = crate::evidence::token_keyring_digest(&ring).map_err(ApiError::internal)?;
            if got != want {
                tracing::error!(keyring = %self.keys.keyring_path().display(), recorded = %want, found = %got,
                    "the token keyring changed outside tidegate; no token is accepted until it is restored");
                return Err(ApiError::unavailable(
                    "the token keyring differs from the one the evidence ledger recorded; no token is accepted until an operator restores it",
                ));
            }
        }
        let v = Arc::new(Verifier::new(ring));
        if let Ok(mut guard) = self.verifier.write() {
            *guard = (v.clone(), Instant::now());
        }
        if let Ok(mut c) = self.cache.lock() {
            *c = Cache::default();
        }
        Ok(v)
    }

    /// Checks the bearer token in `headers`: present, well-formed, signed by a trusted root key,
    /// not revoked, not expired, and a user token.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        self.authenticate_token(bearer(headers)?)
    }

    /// Proves that a request comes from inside `zone`: the zone's identity is its agent's token
    /// (role `agent`, team = the zone) in `X-Tidegate-Zone-Token`, never a parameter the caller
    /// chooses alone.
    pub fn authenticate_zone(&self, headers: &HeaderMap, zone: &str) -> Result<(), ApiError> {
        let token = headers
            .get(ZONE_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    format!("a read from inside zone {zone} needs the zone's identity: its agent's token in {ZONE_TOKEN_HEADER}"),
                )
                .field(ZONE_TOKEN_HEADER)
            })?;
        let caller = self
            .authenticate_token(token)
            .map_err(|e| e.field(ZONE_TOKEN_HEADER))?;
        // Only a zone's own agent identity proves the zone: an administrator is no zone.
        if caller.claims.role.as_deref() != Some(Role::Agent.as_str()) || caller.team() != zone {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("the token in {ZONE_TOKEN_HEADER} is not zone {zone}'s agent identity (role agent, team {zone})"),
            )
            .field(ZONE_TOKEN_HEADER));
        }
        self.authorize(&caller, Action::Agent, zone)
            .map_err(|e| e.field(ZONE_TOKEN_HEADER))
    }

    fn authenticate_token(&self, token: &str) -> Result<Caller, ApiError> {
        let now = self.now();
        let verifier = self.verifier()?;
        let cached = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.claims.get(token).cloned());
        if let Some(claims) = cached.filter(|c| now < c.expires_at) {
            return Ok(Caller {
                token: token.to_owned(),
                claims,
            });
        }
        let claims = verifier
            .inspect(token, now)
            .map_err(|e| ApiError::from(e).field("Authorization"))?;
        if claims.kind != "user" {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                format!(
                    "a {} token cannot call the API; use a user token",
                    claims.kind
                ),
            )
            .field("Authorization"));
        }
        if claims.blocks == 1 {
            if let Ok(mut c) = self.cache.lock() {
                if c.claims.len() >= CACHE_MAX {
                    *c = Cache::default();
                }
                c.claims.insert(token.to_owned(), claims.clone());
            }
        }
        Ok(Caller {
            token: token.to_owned(),
            claims,
        })
    }

    /// Whether the caller's token allows `action` on behalf of `team` (every block of the token,
    /// attenuations included, is evaluated).
    pub fn authorize(&self, caller: &Caller, action: Action, team: &str) -> Result<(), ApiError> {
        let now = self.now();
        let key = (caller.token.clone(), action.as_str(), team.to_owned());
        let cacheable = caller.claims.blocks == 1 && now < caller.claims.expires_at;
        if cacheable && self.cache.lock().is_ok_and(|c| c.allowed.contains(&key)) {
            return Ok(());
        }
        let request = Request::Api {
            action,
            team: team.to_owned(),
        };
        match self.verifier()?.authorize(&caller.token, &request, now) {
            Ok(_) => {
                if cacheable {
                    if let Ok(mut c) = self.cache.lock() {
                        if c.allowed.len() >= CACHE_MAX {
                            c.allowed.clear();
                        }
                        c.allowed.insert(key);
                    }
                }
                Ok(())
            }
            Err(IdentityError::Denied(why)) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "{} (role {}, team {}) may not {} for team `{team}`: {why}",
                    caller.subject(),
                    caller.claims.role.as_deref().unwrap_or("?"),
                    caller.team(),
                    action.as_str()
                ),
            )),
            Err(e) => Err(ApiError::from(e)),
        }
    }

    /// Mints a user token with the active root key (admin route and `tidegate up`).
    pub fn mint(
        &self,
        subject: &str,
        role: Role,
        team: &str,
        minutes: u32,
    ) -> Result<String, ApiError> {
        mint(&self.keys, subject, role, team, minutes, self.now()).map_err(ApiError::from)
    }

    /// Mints a token from `spec` (a job's scoped token, for one).
    pub fn mint_spec(&self, spec: &TokenSpec, now: u64) -> Result<String, ApiError> {
        let issuer = self.keys.issuer().map_err(ApiError::from)?;
        let ring = self.keys.keyring().map_err(ApiError::from)?;
        issuer.mint(&ring, spec, now).map_err(ApiError::from)
    }

    /// The token keyring as its file holds it now.
    pub fn keyring(&self) -> Result<tidegate_identity::RootKeyring, ApiError> {
        self.keys.keyring().map_err(ApiError::from)
    }

    /// Where the token keyring lives.
    pub fn keyring_path(&self) -> std::path::PathBuf {
        self.keys.keyring_path()
    }

    /// Pins the keyring to `digest`, the one the evidence ledger recorded: from now on a
    /// keyring file that differs is refused.
    pub fn pin_keyring(&self, digest: tidegate_ledger::Digest) {
        if let Ok(mut p) = self.pinned.write() {
            *p = Some(digest);
        }
        // The next verification reloads and checks.
        if let Ok(mut v) = self.verifier.write() {
            v.1 = Instant::now().checked_sub(RELOAD).unwrap_or(v.1);
        }
    }

    /// Revokes one token (by revocation id) or a root key, recorded by `record` before it takes
    /// effect: the keyring is first checked to be the one pinned, the keyring the change leaves
    /// is recorded (`record` returns its digest), then written and pinned. Changes are
    /// serialized.
    pub fn revoke(
        &self,
        what: &Revocation,
        now: u64,
        record: impl FnOnce(
            &tidegate_identity::RootKeyring,
        ) -> Result<tidegate_ledger::Digest, ApiError>,
    ) -> Result<(), ApiError> {
        let _one = self
            .changing
            .lock()
            .map_err(|_| ApiError::internal("keyring lock poisoned"))?;
        let mut ring = self.keys.keyring().map_err(ApiError::from)?;
        let pinned = self.pinned.read().ok().and_then(|p| p.clone());
        let current = crate::evidence::token_keyring_digest(&ring).map_err(ApiError::internal)?;
        if pinned.as_ref().is_some_and(|p| *p != current) {
            return Err(ApiError::unavailable(
                "the token keyring differs from the one the evidence ledger recorded; nothing is changed until an operator restores it",
            ));
        }
        match what {
            Revocation::Token(id) => ring.revoke_token(id),
            Revocation::RootKey(id) => ring
                .revoke(*id, now)
                .map_err(|e| ApiError::invalid("root_key", e.to_string()))?,
        }
        let digest = record(&ring)?;
        match what {
            Revocation::Token(id) => self.keys.revoke_token(id),
            Revocation::RootKey(id) => self.keys.revoke(*id, now),
        }
        .map_err(ApiError::from)?;
        self.pin_keyring(digest);
        Ok(())
    }

    /// A token's id (its revocation id) and expiry, for the evidence ledger.
    pub fn token_id(&self, token: &str) -> Result<(String, u64), ApiError> {
        let claims = self
            .verifier()?
            .inspect(token, self.now())
            .map_err(ApiError::from)?;
        Ok((claims.revocation_id, claims.expires_at))
    }
}

/// What a revocation refuses from now on.
#[derive(Debug, Clone)]
pub enum Revocation {
    /// One token, by its revocation id (hex).
    Token(String),
    /// A root key: every token it signed.
    RootKey(u32),
}

/// The header carrying a zone agent's token on a read made from inside that zone.
pub const ZONE_TOKEN_HEADER: &str = "x-tidegate-zone-token";

/// The bearer token of a request: 401 when the `Authorization` header is missing or not
/// `Bearer TOKEN`. Says nothing about the token itself.
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "no bearer token: send `Authorization: Bearer TOKEN` (`tidegate up` writes an admin token to <data-dir>/admin.token)",
        )
        .field("Authorization"));
    };
    let text = value.to_str().unwrap_or("");
    text.strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "the Authorization header must be `Bearer TOKEN`",
            )
            .field("Authorization")
        })
}

/// Mints a user token from the key store (creating the first root key if there is none).
pub fn mint(
    keys: &RootKeyStore,
    subject: &str,
    role: Role,
    team: &str,
    minutes: u32,
    now: u64,
) -> Result<String, IdentityError> {
    if keys.active_id()?.is_none() {
        keys.rotate(now, 365)?;
    }
    let issuer: Issuer = keys.issuer()?;
    let ring = keys.keyring()?;
    let spec = TokenSpec::User {
        subject: subject.to_owned(),
        role,
        team: team.to_owned(),
        ttl_minutes: minutes,
    };
    issuer.mint(&ring, &spec, now)
}
