//! Errors of the identity crate: each names what is missing or wrong, so a refusal explains itself.

/// Why a token could not be minted, parsed, verified or authorized.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The token text is not a Biscuit token at all.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The token carries no root key id, so no key in the keyring can be chosen.
    #[error(
        "token carries no root key id; refusing (tokens must name the root key that signed them)"
    )]
    MissingKeyId,
    /// The token names a root key id that the keyring does not contain.
    #[error("unknown root key id {0}: it is not in the trusted keyring")]
    UnknownRootKey(u32),
    /// The token was signed by a root key that has been revoked.
    #[error("root key {id} was revoked at {revoked_at}; every token it signed is refused")]
    RevokedRootKey {
        /// The revoked key's id.
        id: u32,
        /// When it was revoked (Unix seconds).
        revoked_at: u64,
    },
    /// The root key exists but `now` is outside its validity window.
    #[error("root key {id} is not valid at {now} (valid from {not_before} until {not_after})")]
    RootKeyOutsideWindow {
        /// The key id.
        id: u32,
        /// The time of the check.
        now: u64,
        /// Start of validity (inclusive).
        not_before: u64,
        /// End of validity (exclusive).
        not_after: u64,
    },
    /// The signature chain does not verify against the named root key.
    #[error("token signature does not verify against root key {id}: {reason}")]
    BadSignature {
        /// The key id the token named.
        id: u32,
        /// What the verifier reported.
        reason: String,
    },
    /// The token's revocation id is in the keyring's revoked token list.
    #[error("token revoked (revocation id {0})")]
    RevokedToken(String),
    /// The token's expiry check failed.
    #[error("token expired: valid until {expires_at}, now is {now}")]
    Expired {
        /// Expiry (Unix seconds), from the token's authority block when readable.
        expires_at: u64,
        /// The time of the check.
        now: u64,
    },
    /// The token is valid but does not grant this request.
    #[error("request denied: {0}")]
    Denied(String),
    /// A token could not be minted from this specification.
    #[error("invalid token specification: {0}")]
    InvalidSpec(String),
    /// Keyring content is invalid (duplicate ids, bad hex, bad window).
    #[error("invalid keyring: {0}")]
    InvalidKeyring(String),
    /// A failure inside the token library that is not one of the above.
    #[error("token library error: {0}")]
    Library(String),
}
