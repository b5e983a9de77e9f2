//! Offline verification and authorization: a pure function of (keyring, token, request, now).

use std::collections::HashMap;
use std::time::Duration;

use biscuit_auth::builder::string;
use biscuit_auth::error::{FailedCheck, Logic, Token as TokenError};
use biscuit_auth::{AuthorizerBuilder, AuthorizerLimits, Biscuit, UnverifiedBiscuit};
use serde::{Deserialize, Serialize};

use crate::issue::{lib, unix_date, UnixDate};
use crate::{IdentityError, RootKeyring};

/// A data operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Read an input (dataset version, checkpoint, artifact).
    Read,
    /// Write an output.
    Write,
}

impl Operation {
    /// The name used inside tokens.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
        }
    }
}

/// The role of an API user within a team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Submits jobs for the team.
    Submitter,
    /// Approves promotions and data use for the team.
    Approver,
    /// Reads evidence for the team.
    Auditor,
    /// Any action, any team.
    Admin,
    /// A zone agent: its "team" is the zone whose work it pulls and reports on.
    Agent,
}

impl Role {
    /// The name used inside tokens.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Submitter => "submitter",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::Agent => "agent",
        }
    }

    /// Parses a role name.
    ///
    /// # Errors
    /// [`IdentityError::InvalidSpec`] for an unknown name.
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        match s {
            "submitter" => Ok(Role::Submitter),
            "approver" => Ok(Role::Approver),
            "auditor" => Ok(Role::Auditor),
            "admin" => Ok(Role::Admin),
            "agent" => Ok(Role::Agent),
            other => Err(IdentityError::InvalidSpec(format!(
                "unknown role {other:?} (submitter, approver, auditor, admin, agent)"
            ))),
        }
    }
}

/// An API action a user token may be asked to allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Submit a job (role submitter).
    Submit,
    /// Approve a promotion or data use (role approver).
    Approve,
    /// Read audit evidence (role auditor).
    Audit,
    /// Read a team's jobs, their events and logs (roles submitter, approver, auditor).
    Read,
    /// Cancel a team's job (role submitter).
    Cancel,
    /// Read fleet-wide operational state: zones, metrics (role auditor; any team).
    Observe,
    /// Pull a zone's work and report on it (role agent, for its own zone).
    Agent,
    /// Administer the installation (role admin only).
    Administer,
}

impl Action {
    /// The name used inside the authorizer.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Submit => "submit",
            Action::Approve => "approve",
            Action::Audit => "audit",
            Action::Read => "read",
            Action::Cancel => "cancel",
            Action::Observe => "observe",
            Action::Agent => "agent",
            Action::Administer => "administer",
        }
    }

    /// The operation the action is, for a token attenuated to one operation: reading
    /// (`read`, `observe`, `audit`) or writing (every other action).
    #[must_use]
    pub fn operation(self) -> Operation {
        match self {
            Action::Read | Action::Observe | Action::Audit => Operation::Read,
            Action::Submit
            | Action::Approve
            | Action::Cancel
            | Action::Agent
            | Action::Administer => Operation::Write,
        }
    }
}

/// What is being asked of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// A data-plane request by a job: read an input or write an output, from a zone.
    Data {
        /// Read or write.
        operation: Operation,
        /// The exact resource (`checkpoint:sha256:...`, `dataset:name@v3`, or an output path).
        resource: String,
        /// The zone the request comes from.
        zone: String,
    },
    /// An API request by a user: an action on behalf of a team.
    Api {
        /// The action.
        action: Action,
        /// The team the action concerns.
        team: String,
    },
}

/// What a verified token says, read from its authority block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// `job` or `user`.
    pub kind: String,
    /// Root key id that signed the token.
    pub key_id: u32,
    /// Hex revocation id of the authority block.
    pub revocation_id: String,
    /// When the token stops working (Unix seconds): the authority block's expiry, or an earlier
    /// one an attenuation block set (`Attenuation::expires_at`).
    pub expires_at: u64,
    /// Number of blocks (1 = not attenuated).
    pub blocks: usize,
    /// Job id (job tokens).
    pub job: Option<String>,
    /// Zone (job tokens).
    pub zone: Option<String>,
    /// Readable inputs (job tokens), sorted.
    pub inputs: Vec<String>,
    /// Writable output prefix (job tokens).
    pub output_prefix: Option<String>,
    /// User name (user tokens).
    pub subject: Option<String>,
    /// Role (user tokens).
    pub role: Option<String>,
    /// Team (user tokens).
    pub team: Option<String>,
    /// Source of the appended (attenuation) blocks, for display.
    pub attenuations: Vec<String>,
}

/// A successful authorization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The verified claims of the token.
    pub claims: Claims,
    /// The request that was allowed.
    pub request: Request,
}

/// Verifies tokens offline against a root keyring. Holds no secrets.
#[derive(Debug, Clone)]
pub struct Verifier {
    keyring: RootKeyring,
}

const POLICIES: &str = r#"
role_allows("submitter", "submit");
role_allows("approver", "approve");
role_allows("auditor", "audit");
role_allows("submitter", "read");
role_allows("approver", "read");
role_allows("auditor", "read");
role_allows("submitter", "cancel");
role_allows("agent", "agent");
allow if kind("user"), req_action("observe"), role("auditor");
allow if kind("job"), req_operation("read"), req_resource($r), input($r), req_zone($z), job_zone($z);
allow if kind("job"), req_operation("write"), req_resource($r), output_prefix($p), $r.starts_with($p), req_zone($z), job_zone($z);
allow if kind("user"), req_action($a), role($role), role_allows($role, $a), req_team($t), team($t);
allow if kind("user"), req_action($a), role("admin");
deny if true;
"#;

fn limits() -> AuthorizerLimits {
    AuthorizerLimits {
        max_facts: 10_000,
        max_iterations: 100,
        max_time: Duration::from_millis(250),
    }
}

impl Verifier {
    /// A verifier trusting exactly the keys in `keyring`.
    #[must_use]
    pub fn new(keyring: RootKeyring) -> Self {
        Self { keyring }
    }

    /// The keyring in use.
    #[must_use]
    pub fn keyring(&self) -> &RootKeyring {
        &self.keyring
    }

    /// The id (first revocation identifier, hex) a token *claims*, without verifying anything:
    /// for naming a refused token in evidence (it may be forged). `None` when it does not parse.
    #[must_use]
    pub fn claimed_token_id(token: &str) -> Option<String> {
        let unverified = UnverifiedBiscuit::from_base64(token.trim()).ok()?;
        unverified.revocation_identifiers().first().map(hex::encode)
    }

    /// Checks the signature chain, the root key (known, not revoked, in its window at `now`)
    /// and the token revocation list. Does not check expiry or rights.
    fn verify(&self, token: &str, now: u64) -> Result<(Biscuit, u32), IdentityError> {
        let unverified = UnverifiedBiscuit::from_base64(token.trim())
            .map_err(|e| IdentityError::Malformed(e.to_string()))?;
        let id = unverified
            .root_key_id()
            .ok_or(IdentityError::MissingKeyId)?;
        let public = self.keyring.usable_key(id, now)?;
        let biscuit = unverified
            .verify(public)
            .map_err(|e| IdentityError::BadSignature {
                id,
                reason: e.to_string(),
            })?;
        for rid in biscuit.revocation_identifiers() {
            let rid = hex::encode(rid);
            if self.keyring.revoked_tokens.contains(&rid) {
                return Err(IdentityError::RevokedToken(rid));
            }
        }
        Ok((biscuit, id))
    }

    /// Verifies `token` at `now` and returns its claims. Refuses bad signatures, unknown,
    /// revoked or out-of-window root keys, revoked tokens and expired tokens.
    ///
    /// # Errors
    /// The [`IdentityError`] naming the first problem.
    pub fn inspect(&self, token: &str, now: u64) -> Result<Claims, IdentityError> {
        let (biscuit, id) = self.verify(token, now)?;
        let claims = read_claims(&biscuit, id)?;
        if now >= claims.expires_at {
            return Err(IdentityError::Expired {
                expires_at: claims.expires_at,
                now,
            });
        }
        Ok(claims)
    }

    /// Decides whether `token` allows `request` at time `now`. Pure and offline.
    ///
    /// # Errors
    /// Everything [`Verifier::inspect`] refuses, plus [`IdentityError::Denied`] listing the
    /// failed checks when the token is valid but does not grant the request.
    pub fn authorize(
        &self,
        token: &str,
        request: &Request,
        now: u64,
    ) -> Result<Grant, IdentityError> {
        if let Request::Data { resource, .. } = request {
            check_resource(resource)?;
        }
        let (biscuit, id) = self.verify(token, now)?;
        let claims = read_claims(&biscuit, id)?;
        if now >= claims.expires_at {
            return Err(IdentityError::Expired {
                expires_at: claims.expires_at,
                now,
            });
        }
        let mut params = HashMap::from([("now".to_owned(), unix_date(now))]);
        let request_code = match request {
            Request::Data {
                operation,
                resource,
                zone,
            } => {
                params.insert("op".to_owned(), string(operation.as_str()));
                params.insert("res".to_owned(), string(resource));
                params.insert("zone".to_owned(), string(zone));
                "time({now}); req_operation({op}); req_resource({res}); req_zone({zone});"
            }
            Request::Api { action, team } => {
                params.insert("action".to_owned(), string(action.as_str()));
                params.insert("team".to_owned(), string(team));
                params.insert("op".to_owned(), string(action.operation().as_str()));
                "time({now}); req_action({action}); req_team({team}); req_operation({op});"
            }
        };
        let mut authorizer = AuthorizerBuilder::new()
            .set_limits(limits())
            .code_with_params(request_code, params, HashMap::new())
            .and_then(|b| b.code(POLICIES))
            .and_then(|b| b.build(&biscuit))
            .map_err(lib)?;
        match authorizer.authorize() {
            Ok(_) => {
                tracing::debug!(key_id = id, kind = %claims.kind, "token authorized");
                Ok(Grant {
                    claims,
                    request: request.clone(),
                })
            }
            Err(TokenError::FailedLogic(logic)) => Err(IdentityError::Denied(explain(&logic))),
            Err(other) => Err(lib(other)),
        }
    }
}

/// Refuses resource names that could escape a prefix check: `.` or `..` path segments, empty
/// segments, backslashes and control characters. Prefix rights are only sound on normalized
/// names.
fn check_resource(resource: &str) -> Result<(), IdentityError> {
    let bad_segment = resource.split('/').any(|seg| seg == ".." || seg == ".");
    if resource.is_empty()
        || bad_segment
        || resource.contains("//")
        || resource.contains('\\')
        || resource.chars().any(char::is_control)
    {
        return Err(IdentityError::Denied(format!(
            "resource {resource:?} is not a normalized name (no '.', '..' or empty path segments)"
        )));
    }
    Ok(())
}

fn explain(logic: &Logic) -> String {
    let (policy, checks) = match logic {
        Logic::Unauthorized { checks, .. } => ("no allow policy matched", checks.as_slice()),
        Logic::NoMatchingPolicy { checks } => ("no policy matched", checks.as_slice()),
        other => return other.to_string(),
    };
    let failed: Vec<String> = checks
        .iter()
        .map(|c| match c {
            FailedCheck::Block(b) => format!("block {} check failed: {}", b.block_id, b.rule),
            FailedCheck::Authorizer(a) => format!("verifier check failed: {}", a.rule),
        })
        .collect();
    if failed.is_empty() {
        format!("{policy}: the token does not grant this operation on this resource in this zone")
    } else {
        format!("{policy}; {}", failed.join("; "))
    }
}

fn query_strings(
    authorizer: &mut biscuit_auth::Authorizer,
    rule: &str,
) -> Result<Vec<String>, IdentityError> {
    let rows: Vec<(String,)> = authorizer.query(rule).map_err(lib)?;
    let mut out: Vec<String> = rows.into_iter().map(|(s,)| s).collect();
    out.sort();
    out.dedup();
    Ok(out)
}

fn read_claims(biscuit: &Biscuit, key_id: u32) -> Result<Claims, IdentityError> {
    let mut authorizer = AuthorizerBuilder::new()
        .set_limits(limits())
        .build(biscuit)
        .map_err(lib)?;
    let single = |v: Vec<String>| v.into_iter().next();
    let kind = single(query_strings(&mut authorizer, "data($x) <- kind($x)")?)
        .ok_or_else(|| IdentityError::Malformed("token has no kind fact".to_owned()))?;
    let expires: Vec<(UnixDate,)> = authorizer.query("data($x) <- expires($x)").map_err(lib)?;
    let expires_at = expires
        .into_iter()
        .map(|(t,)| t.0)
        .min()
        .ok_or_else(|| IdentityError::Malformed("token has no expiry".to_owned()))?;
    let mut attenuations = Vec::new();
    let mut expires_at = expires_at;
    for i in 1..biscuit.block_count() {
        let source = biscuit
            .print_block_source(i)
            .map_err(lib)?
            .trim()
            .to_owned();
        if let Some(t) = attenuated_expiry(&source) {
            expires_at = expires_at.min(t);
        }
        attenuations.push(source);
    }
    Ok(Claims {
        kind,
        key_id,
        revocation_id: biscuit
            .revocation_identifiers()
            .first()
            .map(hex::encode)
            .unwrap_or_default(),
        expires_at,
        blocks: biscuit.block_count(),
        job: single(query_strings(&mut authorizer, "data($x) <- job($x)")?),
        zone: single(query_strings(&mut authorizer, "data($x) <- job_zone($x)")?),
        inputs: query_strings(&mut authorizer, "data($x) <- input($x)")?,
        output_prefix: single(query_strings(
            &mut authorizer,
            "data($x) <- output_prefix($x)",
        )?),
        subject: single(query_strings(&mut authorizer, "data($x) <- subject($x)")?),
        role: single(query_strings(&mut authorizer, "data($x) <- role($x)")?),
        team: single(query_strings(&mut authorizer, "data($x) <- team($x)")?),
        attenuations,
    })
}

/// The earliest expiry an attenuation block sets: its checks of the form [`crate::attenuate`]
/// writes, `check if time($t), $t < DATE;` (a time check with other conditions is left to the
/// authorizer).
fn attenuated_expiry(source: &str) -> Option<u64> {
    source
        .split(';')
        .filter_map(|c| c.trim().strip_prefix("check if time($t), $t < "))
        .filter_map(|d| parse_utc(d.trim()))
        .min()
}

/// Seconds since the Unix epoch of an RFC 3339 UTC time `YYYY-MM-DDTHH:MM:SS[.frac]Z` (as
/// biscuit prints dates); `None` for anything else.
fn parse_utc(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, clock) = s.split_once('T')?;
    let clock = clock.split('.').next()?;
    let num = |p: Option<&str>| p.and_then(|v| v.parse::<i64>().ok());
    let mut d = date.split('-');
    let (y, m, day) = (num(d.next())?, num(d.next())?, num(d.next())?);
    let mut c = clock.split(':');
    let (h, min, sec) = (num(c.next())?, num(c.next())?, num(c.next())?);
    if d.next().is_some()
        || c.next().is_some()
        || !(0..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || !(0..24).contains(&h)
        || !(0..60).contains(&min)
        || !(0..=60).contains(&sec)
    {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), after H. Hinnant.
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + min * 60 + sec).ok()
}

#[cfg(test)]
mod tests {
    use super::{attenuated_expiry, parse_utc};

    #[test]
    fn utc_times_parse_to_unix_seconds() {
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_utc("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(parse_utc("2024-02-29T12:34:56Z"), Some(1_709_210_096));
        assert_eq!(
            parse_utc("2024-02-29T12:34:56.5+00:00"),
            Some(1_709_210_096)
        );
        assert_eq!(parse_utc("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_utc("2024-02-29 12:34:56Z"), None);
        assert_eq!(parse_utc("2024-02-29T12:34:56+02:00"), None);
        // Years past what a token prints are no time (and overflow nothing).
        assert_eq!(parse_utc("9223372036854775807-01-01T00:00:00Z"), None);
        assert_eq!(parse_utc("-9223372036854775808-01-01T00:00:00Z"), None);
        assert_eq!(parse_utc("9999-12-31T23:59:59Z"), Some(253_402_300_799));
    }

    #[test]
    fn only_plain_time_checks_set_an_expiry() {
        let src =
            "check if time($t), $t < 2024-02-29T12:34:56Z;\ncheck if req_operation(\"read\");";
        assert_eq!(attenuated_expiry(src), Some(1_709_210_096));
        assert_eq!(attenuated_expiry("check if req_operation(\"read\");"), None);
    }
}
