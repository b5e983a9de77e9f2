//! Zero-copy check that bytes are a well-formed entry in RFC 8785 canonical form.
//!
//! [`Entry::decode`](crate::entry::Entry::decode) proves an entry canonical by building it
//! (serde, one `String` per field) and re-encoding it: correct, but it allocates a dozen times
//! per entry. [`check_entry`] decides the same question in one pass over the bytes, borrowing
//! everything, and is what full verification runs. It accepts exactly the bytes `decode` accepts
//! (a property test compares the two on valid and mutated entries):
//!
//! - the value is one object with exactly the members `action`, `actor`, `seq`, `subjects`,
//!   `ts_ms`, `v`; every object's member names strictly increase (for the ASCII names of the
//!   entry schema, byte order is RFC 8785's UTF-16 order), so no duplicates and no reordering;
//! - no whitespace anywhere and nothing after the closing brace;
//! - every string is printable ASCII without `"` or `\`: every string of the schema (identifiers,
//!   digests, enum names, member names) is, so an escape or a non-ASCII byte can only come from a
//!   value `decode` refuses or re-encodes differently;
//! - integers are plain decimal (`0` or no leading zero), at most 2^53 - 1, `v` at most 255;
//! - `action` has a known `type` and exactly that variant's members, each of its type
//!   (identifier, digest, enum name, identifier list of at most 32, integer, `true`/`false`); an optional member
//!   is absent rather than `null`; `subjects` holds at most 16 objects `{"id","kind"}`;
//! - identifiers and digests pass the same rules as [`Ident::new`](crate::entry::Ident::new) and
//!   [`Digest::parse`](crate::entry::Digest::parse).
//!
//! It walks the bytes once, in the order canonical form fixes, with table lookups per byte and
//! no allocation; the action's `type` is found first (a short scan) so each member is checked
//! against its declared type as it is read. On failure it says only "no": callers that need the
//! reason ask `decode` (the rare path).

use crate::canonical::MAX_SAFE_INTEGER;
use crate::entry::{ident_byte, ident_rule_bytes, MAX_LIST, MAX_SUBJECTS};

/// The bytes are not a canonical, well-formed entry (ask `Entry::decode` for the reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("entry bytes are not a canonical, well-formed entry")]
pub struct NotAnEntry;

type R<T> = Result<T, NotAnEntry>;

/// What [`check_entry`] read from a valid entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// The entry's `seq`.
    pub seq: u64,
}

#[derive(Clone, Copy)]
enum Kind {
    Ident,
    Digest,
    /// An `Option<Digest>` skipped when `None`: when present, a digest.
    OptDigest,
    /// An `Option<Ident>` skipped when `None`: when present, an identifier.
    OptIdent,
    Idents,
    /// An `Option<Vec<Ident>>` skipped when `None`: when present, an identifier list.
    OptIdents,
    Int,
    Bool,
    Enum(&'static [&'static [u8]]),
}

const DECISION: &[&[u8]] = &[b"allowed", b"queued", b"refused"];
const FORM: &[&[u8]] = &[b"raw", b"sanitized", b"encrypted"];
const OBJECT_KIND: &[&[u8]] = &[
    b"raw_data",
    b"features",
    b"checkpoints",
    b"logs",
    b"embeddings",
    b"inference_traces",
];
const SUBJECT_KIND: &[&[u8]] = &[
    b"job",
    b"dataset",
    b"model",
    b"artifact",
    b"checkpoint",
    b"token",
    b"policy",
    b"fleet",
    b"zone",
];

use Kind::{Bool, Digest as D, Enum, Ident as I, Idents as L, Int, OptDigest, OptIdent, OptIdents};

type Fields = &'static [(&'static [u8], Kind)];

/// Members of each action variant (other than `type`), in any order.
fn schema(ty: &[u8]) -> Option<Fields> {
    Some(match ty {
        b"job.submitted" => &[(b"spec", D)],
        b"job.approved" => &[(b"scope", I)],
        b"job.placed" => &[
            (b"decision", Enum(DECISION)),
            (b"zone", I),
            (b"pool", I),
            (b"reasons", L),
            (b"policy_hash", D),
        ],
        b"job.burst" => &[(b"zone", I), (b"pool", I), (b"justification", D)],
        b"job.admitted" => &[(b"zone", I), (b"pool", I), (b"run", I), (b"policy_hash", D)],
        b"job.run" => &[(b"zone", I), (b"pool", I), (b"run", I), (b"event", I)],
        b"key.changed" => &[(b"key_id", I), (b"change", I), (b"keyring", OptDigest)],
        b"artifact.deployed" => &[(b"artifact", D), (b"deployment", I)],
        b"job.revoked" => &[
            (b"zone", I),
            (b"pool", I),
            (b"run", I),
            (b"reasons", L),
            (b"policy_hash", D),
        ],
        b"dataset.copied" => &[
            (b"version", I),
            (b"from_zone", I),
            (b"to_zone", I),
            (b"form", Enum(FORM)),
            (b"content", D),
            (b"bytes", Int),
            (b"report", OptDigest),
        ],
        b"dataset.registered" => &[
            (b"version", I),
            (b"snapshot", D),
            (b"level", I),
            (b"zone", I),
            (b"report", OptDigest),
            (b"owner", OptIdent),
            (b"tags", OptIdents),
            (b"residency", OptIdents),
            (b"retention", OptIdent),
            (b"derived_from", OptIdent),
        ],
        b"artifact.signed" => &[(b"artifact", D), (b"key_id", I), (b"signature", D)],
        b"artifact.promoted" => &[
            (b"artifact", D),
            (b"from_stage", I),
            (b"to_stage", I),
            (b"policy_hash", D),
        ],
        b"artifact.stored" => &[
            (b"artifact", D),
            (b"kind", I),
            (b"classification", OptIdent),
            (b"lane", I),
            (b"sensitive", Bool),
        ],
        b"artifact.attested" => &[
            (b"artifact", D),
            (b"envelope", D),
            (b"predicate", I),
            (b"key_id", I),
        ],
        b"artifact.promotion_refused" => &[(b"artifact", D), (b"to_stage", I), (b"reasons", L)],
        b"artifact.shredded" => &[(b"artifact", D)],
        b"artifact.deployed_edge" => &[(b"artifact", D), (b"site", I)],
        b"checkpoint.archived" => &[(b"checkpoint", D), (b"zone", I)],
        b"checkpoint.destroyed" => &[(b"checkpoint", D), (b"method", I)],
        b"token.issued" => &[(b"token_id", I), (b"expires_ms", Int), (b"scope", L)],
        b"token.used" => &[(b"token_id", I), (b"resource", D), (b"zone", I)],
        b"token.refused" => &[
            (b"resource", D),
            (b"zone", I),
            (b"reason", I),
            (b"token_id", OptIdent),
        ],
        b"policy.loaded" => &[(b"policy_hash", D)],
        b"fleet.loaded" => &[(b"fleet_hash", D)],
        b"retention.registered" => &[(b"object", D), (b"kind", Enum(OBJECT_KIND))],
        b"retention.hold_set" | b"retention.hold_released" => &[(b"order", D)],
        b"retention.deleted" => &[(b"object", D), (b"rule", I), (b"method", I)],
        _ => return None,
    })
}

/// Bytes of member names, enum values and action types: `a-z . _`.
#[inline]
const fn name_byte(c: u8) -> bool {
    c.is_ascii_lowercase() || c == b'_' || c == b'.'
}

/// Byte-string equality without a library call (these strings are a few bytes long).
#[inline]
fn eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// `a < b` in byte order, without a library call.
#[inline]
fn less(a: &[u8], b: &[u8]) -> bool {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x < y;
        }
    }
    a.len() < b.len()
}

#[inline]
const fn hex_byte(c: u8) -> bool {
    matches!(c, b'0'..=b'9' | b'a'..=b'f')
}

macro_rules! table {
    ($f:ident) => {{
        let mut t = [false; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = $f(i as u8);
            i += 1;
        }
        t
    }};
}

static IDENT: [bool; 256] = table!(ident_byte);
static NAME: [bool; 256] = table!(name_byte);
static HEX: [bool; 256] = table!(hex_byte);

struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cur<'a> {
    #[inline]
    fn lit(&mut self, l: &[u8]) -> R<()> {
        match self.b.get(self.i..self.i + l.len()) {
            Some(s) if s == l => {
                self.i += l.len();
                Ok(())
            }
            _ => Err(NotAnEntry),
        }
    }

    #[inline]
    fn eat_if(&mut self, c: u8) -> bool {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// A string whose bytes all pass `class`; returns its contents.
    #[inline]
    fn string_of(&mut self, class: &[bool; 256]) -> R<&'a [u8]> {
        if self.b.get(self.i) != Some(&b'"') {
            return Err(NotAnEntry);
        }
        let rest = &self.b[self.i + 1..];
        let len = rest
            .iter()
            .position(|&c| !class[usize::from(c)])
            .ok_or(NotAnEntry)?;
        if rest[len] != b'"' {
            return Err(NotAnEntry);
        }
        self.i += len + 2;
        Ok(&rest[..len])
    }

    #[inline]
    fn ident(&mut self) -> R<()> {
        let s = self.string_of(&IDENT)?;
        ident_rule_bytes(s).map_err(|_| NotAnEntry)
    }

    #[inline]
    fn digest(&mut self) -> R<()> {
        self.lit(b"\"sha256:")?;
        let hex = self.b.get(self.i..self.i + 65).ok_or(NotAnEntry)?;
        if hex[64] == b'"' && hex[..64].iter().all(|&c| HEX[usize::from(c)]) {
            self.i += 65;
            Ok(())
        } else {
            Err(NotAnEntry)
        }
    }

    #[inline]
    fn one_of(&mut self, names: &[&[u8]]) -> R<()> {
        let s = self.string_of(&NAME)?;
        if names.iter().any(|n| eq(n, s)) {
            Ok(())
        } else {
            Err(NotAnEntry)
        }
    }

    /// A canonical non-negative integer no larger than 2^53 - 1.
    #[inline]
    fn int(&mut self) -> R<u64> {
        let start = self.i;
        let mut n: u64 = 0;
        while let Some(&c) = self.b.get(self.i) {
            if !c.is_ascii_digit() || self.i - start >= 16 {
                break;
            }
            n = n * 10 + u64::from(c - b'0');
            self.i += 1;
        }
        let digits = self.i - start;
        let more = self.b.get(self.i).is_some_and(u8::is_ascii_digit);
        if digits == 0 || more || (digits > 1 && self.b[start] == b'0') || n > MAX_SAFE_INTEGER {
            return Err(NotAnEntry);
        }
        Ok(n)
    }

    /// A list of at most [`MAX_LIST`] identifiers.
    fn idents(&mut self) -> R<()> {
        self.lit(b"[")?;
        if self.eat_if(b']') {
            return Ok(());
        }
        for _ in 0..MAX_LIST {
            self.ident()?;
            if self.eat_if(b']') {
                return Ok(());
            }
            self.lit(b",")?;
        }
        Err(NotAnEntry)
    }

    fn value(&mut self, kind: Kind) -> R<()> {
        match kind {
            I | OptIdent => self.ident(),
            D | OptDigest => self.digest(),
            L | OptIdents => self.idents(),
            Int => self.int().map(|_| ()),
            Bool => self.lit(b"true").or_else(|_| self.lit(b"false")),
            Enum(names) => self.one_of(names),
        }
    }
}

/// The action's `type`: the value of the first `"type":"` in `b`. Only a hint for choosing the
/// schema: the member itself is still read and compared in its place.
fn find_type(b: &[u8]) -> R<&[u8]> {
    const KEY: u64 = u64::from_le_bytes(*b"\"type\":\"");
    let mut from = 0;
    while let Some(p) = b[from..].iter().position(|&c| c == b'"') {
        let at = from + p;
        let word = b
            .get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map(u64::from_le_bytes);
        if word == Some(KEY) {
            let rest = &b[at + 8..];
            let len = rest
                .iter()
                .position(|&c| !NAME[usize::from(c)])
                .ok_or(NotAnEntry)?;
            return Ok(&rest[..len]);
        }
        from = at + 1;
    }
    Err(NotAnEntry)
}

fn action(c: &mut Cur<'_>) -> R<()> {
    c.lit(b"{")?;
    let ty = find_type(&c.b[c.i..])?;
    let fields = schema(ty).ok_or(NotAnEntry)?;
    let mut seen = 0u32;
    let mut prev: &[u8] = b"";
    let mut typed = false;
    loop {
        let k = c.string_of(&NAME)?;
        if !less(prev, k) {
            return Err(NotAnEntry);
        }
        prev = k;
        c.lit(b":")?;
        if eq(k, b"type") {
            if !eq(c.string_of(&NAME)?, ty) {
                return Err(NotAnEntry);
            }
            typed = true;
        } else {
            let f = fields
                .iter()
                .position(|(name, _)| eq(name, k))
                .ok_or(NotAnEntry)?;
            c.value(fields[f].1)?;
            seen |= 1 << f;
        }
        if c.eat_if(b'}') {
            break;
        }
        c.lit(b",")?;
    }
    // Names strictly increase, so each field was seen at most once; all but the optional ones
    // must have been.
    let required = fields
        .iter()
        .enumerate()
        .filter(|(_, (_, k))| !matches!(k, OptDigest | OptIdent | OptIdents))
        .fold(0u32, |m, (f, _)| m | 1 << f);
    if typed && seen & required == required {
        Ok(())
    } else {
        Err(NotAnEntry)
    }
}

fn subjects(c: &mut Cur<'_>) -> R<()> {
    c.lit(b"[")?;
    if c.eat_if(b']') {
        return Ok(());
    }
    for _ in 0..MAX_SUBJECTS {
        c.lit(b"{\"id\":")?;
        c.ident()?;
        c.lit(b",\"kind\":")?;
        c.one_of(SUBJECT_KIND)?;
        c.lit(b"}")?;
        if c.eat_if(b']') {
            return Ok(());
        }
        c.lit(b",")?;
    }
    Err(NotAnEntry)
}

/// Check that `bytes` are exactly the canonical encoding of a valid entry, without decoding it;
/// accepts exactly what [`Entry::decode`](crate::entry::Entry::decode) accepts. See the module
/// docs.
///
/// # Errors
/// [`NotAnEntry`] when they are not.
pub fn check_entry(bytes: &[u8]) -> Result<Checked, NotAnEntry> {
    let mut c = Cur { b: bytes, i: 0 };
    c.lit(b"{\"action\":")?;
    action(&mut c)?;
    c.lit(b",\"actor\":")?;
    c.ident()?;
    c.lit(b",\"seq\":")?;
    let seq = c.int()?;
    c.lit(b",\"subjects\":")?;
    subjects(&mut c)?;
    c.lit(b",\"ts_ms\":")?;
    c.int()?;
    c.lit(b",\"v\":")?;
    if c.int()? > u64::from(u8::MAX) {
        return Err(NotAnEntry);
    }
    c.lit(b"}")?;
    if c.i != bytes.len() {
        return Err(NotAnEntry);
    }
    Ok(Checked { seq })
}
