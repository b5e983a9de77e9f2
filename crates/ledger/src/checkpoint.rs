//! Signed checkpoints in the C2SP `tlog-checkpoint` format, carried in a C2SP `signed-note`.
//!
//! A checkpoint body is three lines: the log origin, the tree size in decimal, and the root hash
//! in standard base64, each ending in a newline. The note adds a blank line and one signature
//! line per signer: `— <name> <base64(key id (4 bytes) || ed25519 signature (64 bytes))>`. The
//! key id is the first four bytes of `SHA-256(name || "\n" || 0x01 || public key)` (0x01 is the
//! ed25519 algorithm byte). Verifier keys use the note text form `name+hexkeyid+base64(0x01||pk)`,
//! private keys `PRIVATE+KEY+name+hexkeyid+base64(0x01||seed)`.
//!
//! Every checkpoint the ledger writes (one per group commit) carries one extension line,
//! `tidegate-batch <first> <b64 leaves digest> <b64 previous body hash>`: the first index the
//! commit adds, `SHA-256` of the leaf hashes it adds (in order), and `SHA-256` of the previous
//! commit's whole note text (all zeros for the first). The chain makes every commit authenticate all earlier
//! ones, and the leaves digest lets a verifier name the exact entry that differs from what was
//! signed. A second line, `tidegate-subjects <b64 root>`, commits to the subject map at that size
//! ([`crate::subjects`]), which lets an evidence bundle prove it holds every entry about its
//! subject. Other extension lines are refused, so every byte of a checkpoint is checked.
//!
//! A witness co-signs in the C2SP `cosignature/v1` form: its key has algorithm byte 0x04, and its
//! signature line carries `key id (4) || timestamp (8, big-endian seconds) || ed25519 signature
//! (64)` over `cosignature/v1\ntime <timestamp>\n` followed by the checkpoint body.
//! Everything here is pure: keys are passed in, nothing is read from disk.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

use crate::merkle::Hash;

/// The em dash that starts every signature line.
const SIG_PREFIX: &str = "\u{2014} ";
/// Algorithm byte for ed25519 in signed-note key hashes.
const ALG_ED25519: u8 = 0x01;
/// Algorithm byte of C2SP `cosignature/v1` witness keys (ed25519 over a timestamped message).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// Why a checkpoint, note or key could not be parsed, signed or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The note text is malformed.
    #[error("malformed signed note: {0}")]
    Note(&'static str),
    /// The checkpoint body is malformed.
    #[error("malformed checkpoint body: {0}")]
    Body(&'static str),
    /// A key string is malformed.
    #[error("malformed key: {0}")]
    Key(&'static str),
    /// A key name that signed notes cannot carry.
    #[error("invalid key name: names must be non-empty and contain no '+', spaces or newlines")]
    KeyName,
    /// No signature by the expected key is present.
    #[error("checkpoint carries no signature by key `{name}` ({key_id})")]
    NoSignature {
        /// Expected signer name.
        name: String,
        /// Expected key id (hex).
        key_id: String,
    },
    /// A signature by the expected key is present but does not verify.
    #[error("signature by key `{name}` does not verify: the checkpoint was altered or signed by another key")]
    BadSignature {
        /// Signer name.
        name: String,
    },
}

/// A checkpoint: the state of the log at one tree size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log origin (unique name of the log).
    pub origin: String,
    /// Number of entries covered.
    pub size: u64,
    /// Merkle root at that size.
    pub root: Hash,
    /// The group commit this checkpoint seals, when it is one of the ledger's own commits.
    pub batch: Option<Batch>,
    /// Root of the subject map ([`crate::subjects`]) at this size, when the checkpoint commits to
    /// one (every commit of the file ledger does; evidence bundles require it).
    pub subjects: Option<Hash>,
}

/// The `tidegate-batch` extension line of a ledger commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// First index the commit adds (the previous commit's size).
    pub first: u64,
    /// `SHA-256` over the leaf hashes of entries `first..size`, concatenated in order.
    pub leaves: Hash,
    /// `SHA-256` of the previous commit's whole note text; all zeros for the first commit.
    pub prev: Hash,
}

/// Prefix of the batch extension line.
const BATCH_LINE: &str = "tidegate-batch ";
/// Prefix of the subject map extension line.
const SUBJECTS_LINE: &str = "tidegate-subjects ";

/// `SHA-256` over leaf hashes, concatenated (the batch line's leaves digest).
#[must_use]
pub fn leaves_digest(leaves: &[Hash]) -> Hash {
    let mut h = Sha256::new();
    for l in leaves {
        h.update(l);
    }
    h.finalize().into()
}

/// `SHA-256` of a text (of a whole note, it is what the next commit's batch line names as
/// `prev`).
#[must_use]
pub fn body_hash(body: &str) -> Hash {
    Sha256::digest(body.as_bytes()).into()
}

fn decode_hash(s: &str, what: &'static str) -> Result<Hash, CheckpointError> {
    let raw = B64.decode(s).map_err(|_| CheckpointError::Body(what))?;
    let h: Hash = raw.try_into().map_err(|_| CheckpointError::Body(what))?;
    if B64.encode(h) != s {
        return Err(CheckpointError::Body(what));
    }
    Ok(h)
}

fn canonical_decimal(s: &str) -> Result<u64, CheckpointError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return Err(CheckpointError::Body(
            "tree size is not a canonical decimal",
        ));
    }
    s.parse::<u64>()
        .map_err(|_| CheckpointError::Body("tree size out of range"))
}

impl Checkpoint {
    /// The note body: `origin\nsize\nbase64(root)\n`, then the batch line when there is one.
    #[must_use]
    pub fn body(&self) -> String {
        let mut out = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        if let Some(b) = &self.batch {
            out.push_str(&format!(
                "{BATCH_LINE}{} {} {}\n",
                b.first,
                B64.encode(b.leaves),
                B64.encode(b.prev)
            ));
        }
        if let Some(m) = &self.subjects {
            out.push_str(&format!("{SUBJECTS_LINE}{}\n", B64.encode(m)));
        }
        out
    }

    /// Parse a checkpoint body.
    ///
    /// # Errors
    /// [`CheckpointError::Body`] when a line is missing or malformed.
    pub fn parse_body(body: &str) -> Result<Self, CheckpointError> {
        let rest = body
            .strip_suffix('\n')
            .ok_or(CheckpointError::Body("must end with a newline"))?;
        let mut lines = rest.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(CheckpointError::Body("empty origin"))?;
        let size_s = lines
            .next()
            .ok_or(CheckpointError::Body("missing tree size"))?;
        let root_s = lines
            .next()
            .ok_or(CheckpointError::Body("missing root hash"))?;
        // Extension lines are allowed by the format; this log writes only its batch line and its
        // subject map line, in that order, and accepts nothing else, so that every byte of a
        // checkpoint is covered by what is checked.
        let mut next = lines.next();
        let batch = match next.and_then(|l| l.strip_prefix(BATCH_LINE)) {
            None => None,
            Some(rest) => {
                next = lines.next();
                let mut parts = rest.split(' ');
                let (Some(first), Some(leaves), Some(prev), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(CheckpointError::Body(
                        "batch line must be `tidegate-batch <first> <leaves> <prev>`",
                    ));
                };
                Some(Batch {
                    first: canonical_decimal(first)?,
                    leaves: decode_hash(
                        leaves,
                        "batch leaves digest is not canonical base64 of 32 bytes",
                    )?,
                    prev: decode_hash(
                        prev,
                        "batch previous hash is not canonical base64 of 32 bytes",
                    )?,
                })
            }
        };
        let subjects = match next {
            None => None,
            Some(line) => {
                let rest = line
                    .strip_prefix(SUBJECTS_LINE)
                    .ok_or(CheckpointError::Body("unexpected extension line"))?;
                Some(decode_hash(
                    rest,
                    "subject map root is not canonical base64 of 32 bytes",
                )?)
            }
        };
        if lines.next().is_some() {
            return Err(CheckpointError::Body("unexpected extension lines"));
        }
        let size = canonical_decimal(size_s)?;
        if batch.is_some_and(|b| b.first > size) {
            return Err(CheckpointError::Body("batch starts past the tree size"));
        }
        let root = decode_hash(root_s, "root hash is not canonical base64 of 32 bytes")?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            batch,
            subjects,
        })
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Signer name.
    pub name: String,
    /// Key id (first 4 bytes of the key hash).
    pub key_id: [u8; 4],
    /// The signature bytes.
    pub sig: [u8; 64],
    /// The timestamp of a `cosignature/v1` line (Unix seconds); `None` for a plain signature.
    pub timestamp: Option<u64>,
}

/// A signed note: a text body and one or more signatures over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    /// The signed text (ends in a newline).
    pub body: String,
    /// Signatures, in the order they appear.
    pub signatures: Vec<NoteSignature>,
}

impl SignedNote {
    /// Parse note text.
    ///
    /// # Errors
    /// [`CheckpointError::Note`] when the structure is wrong.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let split = text
            .find("\n\n")
            .ok_or(CheckpointError::Note("no blank line before signatures"))?;
        let body = &text[..=split];
        let sigs = text[split + 2..]
            .strip_suffix('\n')
            .ok_or(CheckpointError::Note("must end with a newline"))?;
        let mut signatures = Vec::new();
        for line in sigs.split('\n') {
            let rest = line.strip_prefix(SIG_PREFIX).ok_or(CheckpointError::Note(
                "signature line must start with an em dash",
            ))?;
            let (name, b64) = rest.split_once(' ').ok_or(CheckpointError::Note(
                "signature line needs a name and a signature",
            ))?;
            check_name(name)?;
            let raw = B64
                .decode(b64)
                .map_err(|_| CheckpointError::Note("signature is not base64"))?;
            if B64.encode(&raw) != b64 {
                return Err(CheckpointError::Note("signature base64 is not canonical"));
            }
            let (timestamp, sig_at) =
                match raw.len() {
                    68 => (None, 4),
                    76 => {
                        let mut t = [0u8; 8];
                        t.copy_from_slice(&raw[4..12]);
                        (Some(u64::from_be_bytes(t)), 12)
                    }
                    _ => return Err(CheckpointError::Note(
                        "signature must be 4 + 64 bytes (ed25519) or 4 + 8 + 64 (cosignature/v1)",
                    )),
                };
            let mut key_id = [0u8; 4];
            key_id.copy_from_slice(&raw[..4]);
            let mut sig = [0u8; 64];
            sig.copy_from_slice(&raw[sig_at..]);
            signatures.push(NoteSignature {
                name: name.to_owned(),
                key_id,
                sig,
                timestamp,
            });
        }
        if signatures.is_empty() {
            return Err(CheckpointError::Note("no signatures"));
        }
        Ok(Self {
            body: body.to_owned(),
            signatures,
        })
    }

    /// The note text.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut out = self.body.clone();
        out.push('\n');
        for s in &self.signatures {
            let mut raw = Vec::with_capacity(76);
            raw.extend_from_slice(&s.key_id);
            if let Some(t) = s.timestamp {
                raw.extend_from_slice(&t.to_be_bytes());
            }
            raw.extend_from_slice(&s.sig);
            out.push_str(SIG_PREFIX);
            out.push_str(&s.name);
            out.push(' ');
            out.push_str(&B64.encode(raw));
            out.push('\n');
        }
        out
    }

    /// Check that `verifier` signed this note.
    ///
    /// # Errors
    /// [`CheckpointError::NoSignature`] when no line names the key, [`CheckpointError::BadSignature`]
    /// when the lines that do fail to verify.
    pub fn verify(&self, verifier: &NoteVerifier) -> Result<(), CheckpointError> {
        self.verified_signature(verifier).map(|_| ())
    }

    /// As [`SignedNote::verify`], returning the verified line: for a witness's
    /// `cosignature/v1` key, its timestamp says when the witness co-signed.
    ///
    /// # Errors
    /// As [`SignedNote::verify`].
    pub fn verified_signature(
        &self,
        verifier: &NoteVerifier,
    ) -> Result<&NoteSignature, CheckpointError> {
        let mut seen = false;
        for s in self
            .signatures
            .iter()
            .filter(|s| s.name == verifier.name && s.key_id == verifier.key_id)
        {
            seen = true;
            let message = match (verifier.alg, s.timestamp) {
                (ALG_COSIGNATURE_V1, Some(t)) => cosigned_message(&self.body, t),
                (ALG_ED25519, None) => self.body.clone(),
                _ => continue,
            };
            if verifier
                .key
                .verify_strict(message.as_bytes(), &Signature::from_bytes(&s.sig))
                .is_ok()
            {
                return Ok(s);
            }
        }
        if seen {
            Err(CheckpointError::BadSignature {
                name: verifier.name.clone(),
            })
        } else {
            Err(CheckpointError::NoSignature {
                name: verifier.name.clone(),
                key_id: hex::encode(verifier.key_id),
            })
        }
    }

    /// Add a witness's `cosignature/v1` line made at `time` (Unix seconds), replacing an earlier
    /// one by the same key. `signer` must be a cosigner ([`NoteSigner::cosigner_from_seed`]).
    pub fn add_cosignature(&mut self, signer: &NoteSigner, time: u64) {
        let sig = signer.cosign_body(&self.body, time);
        self.signatures
            .retain(|s| !(s.name == sig.name && s.key_id == sig.key_id));
        self.signatures.push(sig);
    }

    /// Add `signer`'s signature (replacing an earlier one by the same key).
    pub fn add_signature(&mut self, signer: &NoteSigner) {
        let sig = signer.sign_body(&self.body);
        self.signatures
            .retain(|s| !(s.name == sig.name && s.key_id == sig.key_id));
        self.signatures.push(sig);
    }

    /// Parse the body as a checkpoint.
    ///
    /// # Errors
    /// When the body is not a checkpoint.
    pub fn checkpoint(&self) -> Result<Checkpoint, CheckpointError> {
        Checkpoint::parse_body(&self.body)
    }
}

fn check_name(name: &str) -> Result<(), CheckpointError> {
    if name.is_empty() || name.contains(['+', ' ', '\n', '\t']) {
        return Err(CheckpointError::KeyName);
    }
    Ok(())
}

/// The message a `cosignature/v1` signature covers.
fn cosigned_message(body: &str, time: u64) -> String {
    format!("cosignature/v1\ntime {time}\n{body}")
}

/// Signed-note key id: first 4 bytes of `SHA-256(name || "\n" || 0x01 || pubkey)`.
#[must_use]
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    key_id_of(name, ALG_ED25519, key)
}

/// Key id for algorithm `alg`: first 4 bytes of `SHA-256(name || "\n" || alg || pubkey)`.
fn key_id_of(name: &str, alg: u8, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([alg]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A named ed25519 signing key.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    alg: u8,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A signer from a 32-byte seed.
    ///
    /// # Errors
    /// [`CheckpointError::KeyName`] for an unusable name.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, CheckpointError> {
        check_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key: SigningKey::from_bytes(seed),
            alg: ALG_ED25519,
        })
    }

    /// A witness's `cosignature/v1` signer from a 32-byte seed.
    ///
    /// # Errors
    /// [`CheckpointError::KeyName`] for an unusable name.
    pub fn cosigner_from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, CheckpointError> {
        let mut s = Self::from_seed(name, seed)?;
        s.alg = ALG_COSIGNATURE_V1;
        Ok(s)
    }

    /// Whether this is a witness's `cosignature/v1` key.
    #[must_use]
    pub fn is_cosigner(&self) -> bool {
        self.alg == ALG_COSIGNATURE_V1
    }

    /// Parse `PRIVATE+KEY+name+hexkeyid+base64(0x01||seed)`.
    ///
    /// # Errors
    /// When the text is not such a key or its key id does not match.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let rest = text
            .trim_end()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(CheckpointError::Key("not a PRIVATE+KEY"))?;
        let (name, id, alg, raw) = split_key(rest)?;
        let seed: [u8; 32] = raw
            .try_into()
            .map_err(|_| CheckpointError::Key("seed must be 32 bytes"))?;
        let mut signer = Self::from_seed(name, &seed)?;
        signer.alg = alg;
        if signer.verifier().key_id != id {
            return Err(CheckpointError::Key("key id does not match the key"));
        }
        Ok(signer)
    }

    /// The private key text (keep secret).
    #[must_use]
    pub fn to_private_text(&self) -> String {
        let mut raw = vec![self.alg];
        raw.extend_from_slice(&self.key.to_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex::encode(self.verifier().key_id),
            B64.encode(raw)
        )
    }

    /// The matching verifier.
    #[must_use]
    pub fn verifier(&self) -> NoteVerifier {
        let key = self.key.verifying_key();
        NoteVerifier {
            name: self.name.clone(),
            key_id: key_id_of(&self.name, self.alg, &key),
            key,
            alg: self.alg,
        }
    }

    /// The signer name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sign a note body.
    #[must_use]
    pub fn sign_body(&self, body: &str) -> NoteSignature {
        let sig = self.key.sign(body.as_bytes());
        NoteSignature {
            name: self.name.clone(),
            key_id: self.verifier().key_id,
            sig: sig.to_bytes(),
            timestamp: None,
        }
    }

    /// A `cosignature/v1` line over a note body at `time` (Unix seconds).
    #[must_use]
    pub fn cosign_body(&self, body: &str, time: u64) -> NoteSignature {
        let sig = self.key.sign(cosigned_message(body, time).as_bytes());
        NoteSignature {
            name: self.name.clone(),
            key_id: self.verifier().key_id,
            sig: sig.to_bytes(),
            timestamp: Some(time),
        }
    }

    /// Sign a checkpoint, producing a note with this single signature.
    #[must_use]
    pub fn sign_checkpoint(&self, cp: &Checkpoint) -> SignedNote {
        let body = cp.body();
        let sig = self.sign_body(&body);
        SignedNote {
            body,
            signatures: vec![sig],
        }
    }
}

/// A named ed25519 verifier key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    /// Signer name.
    pub name: String,
    /// Key id.
    pub key_id: [u8; 4],
    /// The public key.
    pub key: VerifyingKey,
    /// Its algorithm byte: 0x01 (ed25519 note signatures) or 0x04 (`cosignature/v1`).
    pub alg: u8,
}

impl NoteVerifier {
    /// Parse `name+hexkeyid+base64(0x01||pubkey)`.
    ///
    /// # Errors
    /// When the text is not a verifier key or its key id does not match.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let (name, id, alg, raw) = split_key(text.trim_end())?;
        check_name(name)?;
        let pk: [u8; 32] = raw
            .try_into()
            .map_err(|_| CheckpointError::Key("public key must be 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&pk)
            .map_err(|_| CheckpointError::Key("not an ed25519 public key"))?;
        if key_id_of(name, alg, &key) != id {
            return Err(CheckpointError::Key("key id does not match the key"));
        }
        Ok(Self {
            name: name.to_owned(),
            key_id: id,
            key,
            alg,
        })
    }

    /// The verifier key text.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut raw = vec![self.alg];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            B64.encode(raw)
        )
    }
}

/// Split `name+hexid+base64(alg||key)` into its parts (algorithm byte checked: 0x01 or 0x04).
/// A key text's parts: name, key id, algorithm byte, key bytes.
type KeyParts<'a> = (&'a str, [u8; 4], u8, Vec<u8>);

fn split_key(s: &str) -> Result<KeyParts<'_>, CheckpointError> {
    // The base64 key may itself contain '+', so only the first two '+' separate fields.
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(CheckpointError::Key("expected name+keyid+key"));
    };
    let id_raw = hex::decode(id_hex).map_err(|_| CheckpointError::Key("key id is not hex"))?;
    let id: [u8; 4] = id_raw
        .try_into()
        .map_err(|_| CheckpointError::Key("key id must be 4 bytes"))?;
    let raw = B64
        .decode(b64)
        .map_err(|_| CheckpointError::Key("key is not base64"))?;
    match raw.split_first() {
        Some((&alg, key)) if alg == ALG_ED25519 || alg == ALG_COSIGNATURE_V1 => {
            Ok((name, id, alg, key.to_vec()))
        }
        _ => Err(CheckpointError::Key(
            "only ed25519 (0x01) and cosignature/v1 (0x04) keys are supported",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(name: &str, b: u8) -> NoteSigner {
        NoteSigner::from_seed(name, &[b; 32]).unwrap()
    }

    #[test]
    fn note_round_trip_and_signature_checks() {
        let log = signer("example.com/log", 1);
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 42,
            root: [7; 32],
            batch: None,
            subjects: None,
        };
        let note = log.sign_checkpoint(&cp);
        let text = note.to_text();
        assert!(text.starts_with("example.com/log\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\n\u{2014} example.com/log "));
        let parsed = SignedNote::parse(&text).unwrap();
        assert_eq!(parsed, note);
        assert_eq!(parsed.checkpoint().unwrap(), cp);
        parsed.verify(&log.verifier()).unwrap();

        // Another key with the same name: no matching key id.
        let impostor = signer("example.com/log", 2);
        assert!(matches!(
            parsed.verify(&impostor.verifier()),
            Err(CheckpointError::NoSignature { .. })
        ));
        // Signed by the wrong key but labelled with the right key id: signature fails.
        let mut forged = impostor.sign_checkpoint(&cp);
        forged.signatures[0].key_id = log.verifier().key_id;
        assert!(matches!(
            forged.verify(&log.verifier()),
            Err(CheckpointError::BadSignature { .. })
        ));
        // Body altered after signing.
        let altered = SignedNote::parse(&text.replacen("\n42\n", "\n43\n", 1)).unwrap();
        assert!(matches!(
            altered.verify(&log.verifier()),
            Err(CheckpointError::BadSignature { .. })
        ));
    }

    #[test]
    fn the_batch_line_round_trips_and_nothing_else_is_accepted() {
        let cp = Checkpoint {
            origin: "log".into(),
            size: 9,
            root: [1; 32],
            batch: Some(Batch {
                first: 4,
                leaves: [2; 32],
                prev: [3; 32],
            }),
            subjects: Some([5; 32]),
        };
        let body = cp.body();
        assert!(body.contains("\ntidegate-batch 4 "), "{body}");
        assert!(
            body.ends_with("\ntidegate-subjects BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU=\n"),
            "{body}"
        );
        assert_eq!(Checkpoint::parse_body(&body).unwrap(), cp);
        // Either line alone is a checkpoint too; the order is fixed.
        for (batch, subjects) in [(cp.batch, None), (None, cp.subjects)] {
            let one = Checkpoint {
                batch,
                subjects,
                ..cp.clone()
            };
            assert_eq!(Checkpoint::parse_body(&one.body()).unwrap(), one);
        }
        let lines: Vec<&str> = body.lines().collect();
        let swapped = format!(
            "{}\n{}\n{}\n{}\n{}\n",
            lines[0], lines[1], lines[2], lines[4], lines[3]
        );
        for bad in [
            body.replace("tidegate-batch 4", "tidegate-batch 04"),
            body.replace("tidegate-batch 4", "tidegate-batch 10"),
            body.replace("tidegate-batch", "other-extension"),
            body.replace("tidegate-subjects BQ", "tidegate-subjects  BQ"),
            swapped,
            format!("{body}more\n"),
        ] {
            assert!(Checkpoint::parse_body(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn witness_cosignature_is_independent() {
        let log = signer("log", 1);
        let witness = signer("witness", 9);
        let mut note = log.sign_checkpoint(&Checkpoint {
            origin: "log".into(),
            size: 1,
            root: [0; 32],
            batch: None,
            subjects: None,
        });
        assert!(note.verify(&witness.verifier()).is_err());
        note.add_signature(&witness);
        let parsed = SignedNote::parse(&note.to_text()).unwrap();
        parsed.verify(&log.verifier()).unwrap();
        parsed.verify(&witness.verifier()).unwrap();
        assert_eq!(parsed.signatures.len(), 2);
    }

    #[test]
    fn key_texts_round_trip_and_reject_mismatched_ids() {
        let s = signer("tidegate-ledger", 3);
        let back = NoteSigner::parse(&s.to_private_text()).unwrap();
        assert_eq!(back.verifier(), s.verifier());
        let v = NoteVerifier::parse(&s.verifier().to_text()).unwrap();
        assert_eq!(v, s.verifier());
        let text = s.verifier().to_text();
        let (head, tail) = text.split_at(text.find('+').unwrap() + 1);
        let bad = format!("{head}00000000{}", &tail[8..]);
        assert!(NoteVerifier::parse(&bad).is_err());
    }

    #[test]
    fn key_id_matches_the_signed_note_definition() {
        // Recompute the definition by hand: SHA-256("name\n" || 0x01 || key)[..4].
        let s = signer("PeterNeumann", 5);
        let mut input = b"PeterNeumann\n".to_vec();
        input.push(1);
        input.extend_from_slice(s.verifier().key.as_bytes());
        let d = Sha256::digest(&input);
        assert_eq!(s.verifier().key_id, [d[0], d[1], d[2], d[3]]);
    }

    #[test]
    fn go_sumdb_note_reference_vector() {
        // The published golang.org/x/mod/sumdb/note example: same key, same text, same bytes.
        let skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
        let want = format!(
            "{text}\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        );
        let signer = NoteSigner::parse(skey).unwrap();
        assert_eq!(signer.verifier().to_text(), vkey);
        let note = SignedNote {
            body: text.to_owned(),
            signatures: vec![signer.sign_body(text)],
        };
        assert_eq!(note.to_text(), want);
        let parsed = SignedNote::parse(&want).unwrap();
        parsed.verify(&NoteVerifier::parse(vkey).unwrap()).unwrap();
        let tampered = SignedNote::parse(&want.replace("cryptography", "cryptographY")).unwrap();
        assert!(tampered
            .verify(&NoteVerifier::parse(vkey).unwrap())
            .is_err());
    }

    #[test]
    fn malformed_bodies_are_rejected() {
        for body in [
            "",
            "o\n1\n",
            "o\n01\nAAAA\n",
            "\n1\nAAAA\n",
            "o\n1\nAAAA\n",
            "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nx\n",
        ] {
            assert!(Checkpoint::parse_body(body).is_err(), "{body:?}");
        }
    }
}
