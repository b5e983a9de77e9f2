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
//!   (identifier, digest, enum name, identifier list of at most 32, integer); an optional member
//!   is absent rather than `null`; `subjects` holds at most 16 objects `{"id","kind"}`;
//! - identifiers and digests pass the same rules as [`Ident::new`](crate::entry::Ident::new) and
//!   [`Digest::parse`](crate::entry::Digest::parse).
//!
//! On failure it says only "no": callers that need the reason ask `decode` (the rare path).

use crate::canonical::MAX_SAFE_INTEGER;
use crate::entry::{ident_rule, MAX_LIST, MAX_SUBJECTS};

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
    Idents,
    Int,
    Enum(&'static [&'static str]),
}

const DECISION: &[&str] = &["allowed", "queued", "refused"];
const FORM: &[&str] = &["raw", "sanitized", "encrypted"];
const OBJECT_KIND: &[&str] = &["raw_data", "features", "checkpoints", "logs", "embeddings", "inference_traces"];
const SUBJECT_KIND: &[&str] =
    &["job", "dataset", "model", "artifact", "checkpoint", "token", "policy", "fleet", "zone"];

use Kind::{Digest as D, Enum, Ident as I, Idents as L, Int, OptDigest};

/// Members of each action variant (other than `type`), in any order.
fn schema(ty: &str) -> Option<&'static [(&'static str, Kind)]> {
    Some(match ty {
        "job.submitted" => &[("spec", D)],
        "job.approved" => &[("scope", I)],
        "job.placed" => &[("decision", Enum(DECISION)), ("zone", I), ("pool", I), ("reasons", L), ("policy_hash", D)],
        "job.burst" => &[("zone", I), ("pool", I), ("justification", D)],
        "dataset.copied" => &[
            ("version", I),
            ("from_zone", I),
            ("to_zone", I),
            ("form", Enum(FORM)),
            ("content", D),
            ("report", OptDigest),
        ],
        "artifact.signed" => &[("artifact", D), ("key_id", I), ("signature", D)],
        "artifact.promoted" => &[("artifact", D), ("from_stage", I), ("to_stage", I)],
        "artifact.stored" => &[("artifact", D), ("kind", I)],
        "artifact.attested" => &[("artifact", D), ("envelope", D), ("predicate", I), ("key_id", I)],
        "artifact.promotion_refused" => &[("artifact", D), ("to_stage", I), ("reasons", L)],
        "artifact.shredded" => &[("artifact", D)],
        "artifact.deployed_edge" => &[("artifact", D), ("site", I)],
        "checkpoint.archived" => &[("checkpoint", D), ("zone", I)],
        "checkpoint.destroyed" => &[("checkpoint", D), ("method", I)],
        "token.issued" => &[("token_id", I), ("expires_ms", Int), ("scope", L)],
        "token.used" => &[("token_id", I), ("resource", D), ("zone", I)],
        "token.refused" => &[("resource", D), ("zone", I), ("reason", I)],
        "policy.loaded" => &[("policy_hash", D)],
        "fleet.loaded" => &[("fleet_hash", D)],
        "retention.registered" => &[("object", D), ("kind", Enum(OBJECT_KIND))],
        "retention.hold_set" | "retention.hold_released" => &[("order", D)],
        "retention.deleted" => &[("object", D), ("rule", I), ("method", I)],
        _ => return None,
    })
}

/// A member value as read: only the shapes the entry schema uses.
#[derive(Clone, Copy)]
enum Val<'a> {
    Str(&'a str),
    Int,
    /// An array of strings: its count and its raw bytes between the brackets.
    Strs(usize, &'a [u8]),
}

struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cur<'a> {
    #[inline]
    fn peek(&self) -> R<u8> {
        self.b.get(self.i).copied().ok_or(NotAnEntry)
    }

    #[inline]
    fn eat(&mut self, c: u8) -> R<()> {
        if self.peek()? == c {
            self.i += 1;
            Ok(())
        } else {
            Err(NotAnEntry)
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

    /// A string of printable ASCII without `"` or `\`.
    #[inline]
    fn string(&mut self) -> R<&'a str> {
        self.eat(b'"')?;
        let rest = self.b.get(self.i..).ok_or(NotAnEntry)?;
        let len = rest.iter().position(|&c| c == b'"').ok_or(NotAnEntry)?;
        let s = &rest[..len];
        if !s.iter().all(|&c| (0x20..0x7f).contains(&c) && c != b'\\') {
            return Err(NotAnEntry);
        }
        self.i += len + 1;
        // Printable ASCII is UTF-8.
        std::str::from_utf8(s).map_err(|_| NotAnEntry)
    }

    /// A canonical non-negative integer no larger than 2^53 - 1.
    #[inline]
    fn int(&mut self) -> R<u64> {
        let start = self.i;
        let mut n: u64 = 0;
        while let Some(&c) = self.b.get(self.i) {
            if !c.is_ascii_digit() {
                break;
            }
            n = n.checked_mul(10).and_then(|n| n.checked_add(u64::from(c - b'0'))).ok_or(NotAnEntry)?;
            self.i += 1;
        }
        let digits = self.i - start;
        if digits == 0 || (digits > 1 && self.b[start] == b'0') || n > MAX_SAFE_INTEGER {
            return Err(NotAnEntry);
        }
        Ok(n)
    }

    fn value(&mut self) -> R<Val<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Val::Str),
            b'0'..=b'9' => self.int().map(|_| Val::Int),
            b'[' => {
                self.i += 1;
                let start = self.i;
                let mut count = 0;
                if !self.eat_if(b']') {
                    loop {
                        self.string()?;
                        count += 1;
                        if self.eat_if(b']') {
                            break;
                        }
                        self.eat(b',')?;
                    }
                }
                Ok(Val::Strs(count, &self.b[start..self.i - 1]))
            }
            _ => Err(NotAnEntry),
        }
    }

    /// `"name":` where `name` must sort strictly after `prev`.
    #[inline]
    fn key(&mut self, prev: &mut &'a str) -> R<&'a str> {
        let k = self.string()?;
        if k <= *prev {
            return Err(NotAnEntry);
        }
        *prev = k;
        self.eat(b':')?;
        Ok(k)
    }

    #[inline]
    fn expect_key(&mut self, name: &str) -> R<()> {
        if self.string()? == name {
            self.eat(b':')
        } else {
            Err(NotAnEntry)
        }
    }
}

#[inline]
fn ident(s: &str) -> R<()> {
    ident_rule(s).map_err(|_| NotAnEntry)
}

#[inline]
fn digest(s: &str) -> R<()> {
    let hex = s.strip_prefix("sha256:").ok_or(NotAnEntry)?;
    if hex.len() == 64 && hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(NotAnEntry)
    }
}

fn check_val(kind: Kind, v: Val<'_>) -> R<()> {
    match (kind, v) {
        (I, Val::Str(s)) => ident(s),
        (D | OptDigest, Val::Str(s)) => digest(s),
        (Int, Val::Int) => Ok(()),
        (Enum(names), Val::Str(s)) if names.contains(&s) => Ok(()),
        (L, Val::Strs(n, raw)) if n <= MAX_LIST => {
            let mut c = Cur { b: raw, i: 0 };
            for k in 0..n {
                if k > 0 {
                    c.eat(b',')?;
                }
                ident(c.string()?)?;
            }
            Ok(())
        }
        _ => Err(NotAnEntry),
    }
}

const MAX_MEMBERS: usize = 8;

fn action(c: &mut Cur<'_>) -> R<()> {
    c.eat(b'{')?;
    let mut members: [(&str, Val<'_>); MAX_MEMBERS] = [("", Val::Int); MAX_MEMBERS];
    let mut n = 0;
    let mut ty = None;
    let mut prev = "";
    if !c.eat_if(b'}') {
        loop {
            let k = c.key(&mut prev)?;
            let v = c.value()?;
            if k == "type" {
                match v {
                    Val::Str(s) => ty = Some(s),
                    _ => return Err(NotAnEntry),
                }
            } else {
                *members.get_mut(n).ok_or(NotAnEntry)? = (k, v);
                n += 1;
            }
            if c.eat_if(b'}') {
                break;
            }
            c.eat(b',')?;
        }
    }
    let fields = schema(ty.ok_or(NotAnEntry)?).ok_or(NotAnEntry)?;
    // Names strictly increase, so each matches at most one member: every member must be in the
    // schema, and every required field must be present.
    let mut seen = 0usize;
    for (k, v) in &members[..n] {
        let (_, kind) = fields.iter().find(|(name, _)| name == k).ok_or(NotAnEntry)?;
        check_val(*kind, *v)?;
        seen += 1;
    }
    let required = fields.iter().filter(|(_, k)| !matches!(k, OptDigest)).count();
    let optional_present = members[..n].iter().filter(|(k, _)| fields.iter().any(|(f, t)| f == k && matches!(t, OptDigest))).count();
    if seen - optional_present != required {
        return Err(NotAnEntry);
    }
    Ok(())
}

fn subjects(c: &mut Cur<'_>) -> R<()> {
    c.eat(b'[')?;
    if c.eat_if(b']') {
        return Ok(());
    }
    let mut count = 0;
    loop {
        count += 1;
        if count > MAX_SUBJECTS {
            return Err(NotAnEntry);
        }
        c.eat(b'{')?;
        c.expect_key("id")?;
        ident(c.string()?)?;
        c.eat(b',')?;
        c.expect_key("kind")?;
        let kind = c.string()?;
        if !SUBJECT_KIND.contains(&kind) {
            return Err(NotAnEntry);
        }
        c.eat(b'}')?;
        if c.eat_if(b']') {
            return Ok(());
        }
        c.eat(b',')?;
    }
}

/// Check that `bytes` are exactly the canonical encoding of a valid entry, without decoding it;
/// accepts exactly what [`Entry::decode`](crate::entry::Entry::decode) accepts. See the module
/// docs.
///
/// # Errors
/// [`NotAnEntry`] when they are not.
pub fn check_entry(bytes: &[u8]) -> Result<Checked, NotAnEntry> {
    let mut c = Cur { b: bytes, i: 0 };
    c.eat(b'{')?;
    c.expect_key("action")?;
    action(&mut c)?;
    c.eat(b',')?;
    c.expect_key("actor")?;
    ident(c.string()?)?;
    c.eat(b',')?;
    c.expect_key("seq")?;
    let seq = c.int()?;
    c.eat(b',')?;
    c.expect_key("subjects")?;
    subjects(&mut c)?;
    c.eat(b',')?;
    c.expect_key("ts_ms")?;
    c.int()?;
    c.eat(b',')?;
    c.expect_key("v")?;
    if c.int()? > u64::from(u8::MAX) {
        return Err(NotAnEntry);
    }
    c.eat(b'}')?;
    if c.i != bytes.len() {
        return Err(NotAnEntry);
    }
    Ok(Checked { seq })
}
