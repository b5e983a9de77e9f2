//! Content digests as `sha256:<hex>` text, the algorithm always named: one type for artifacts,
//! ledger entries, policy and fleet hashes and uploads alike.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// A SHA-256 content digest, written `sha256:` and 64 lower-case hex digits.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

/// A text that is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest `{text}`: expected `sha256:` followed by 64 lower-case hex digits")]
pub struct DigestError {
    /// The text (at most its first 80 characters).
    pub text: String,
}

const PREFIX: &str = "sha256:";

fn is_hex64(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Digest {
    /// Parses `sha256:<64 lower-case hex>`.
    ///
    /// # Errors
    /// [`DigestError`] for any other text.
    pub fn parse(text: impl Into<String>) -> Result<Self, DigestError> {
        let text = text.into();
        match text.strip_prefix(PREFIX) {
            Some(hex) if is_hex64(hex) => Ok(Self(text)),
            _ => Err(DigestError {
                text: text.chars().take(80).collect(),
            }),
        }
    }

    /// The digest whose 64 lower-case hex digits are `hex` (as hashes are often written).
    ///
    /// # Errors
    /// [`DigestError`] when `hex` is not 64 lower-case hex digits.
    pub fn from_hex(hex: &str) -> Result<Self, DigestError> {
        Self::parse(format!("{PREFIX}{hex}"))
    }

    /// The digest of `bytes`.
    #[must_use]
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_sha256(&Sha256::digest(bytes).into())
    }

    /// The digest from raw SHA-256 output.
    #[must_use]
    pub fn from_sha256(raw: &[u8; 32]) -> Self {
        Self(format!("{PREFIX}{}", hex::encode(raw)))
    }

    /// The digest of everything `reader` yields, and its length, read in bounded chunks.
    ///
    /// # Errors
    /// The reader's I/O errors.
    pub fn of_reader(reader: &mut dyn std::io::Read) -> std::io::Result<(Self, u64)> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut len = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(buf.get(..n).unwrap_or_default());
            len = len.saturating_add(n as u64);
        }
        Ok((Self::from_sha256(&hasher.finalize().into()), len))
    }

    /// The whole text, `sha256:<hex>`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits, without the algorithm.
    #[must_use]
    pub fn hex(&self) -> &str {
        self.0.get(PREFIX.len()..).unwrap_or_default()
    }

    /// The algorithm's name, always `sha256`.
    #[must_use]
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> Self {
        d.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_digest_names_its_algorithm_and_round_trips() {
        let d = Digest::of(b"abc");
        let text = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(d.to_string(), text);
        assert_eq!(d.as_str(), text);
        assert_eq!(d.hex(), &text[7..]);
        assert_eq!(text.parse::<Digest>().unwrap(), d);
        assert_eq!(Digest::from_hex(d.hex()).unwrap(), d);
        let (r, len) = Digest::of_reader(&mut &b"abc"[..]).unwrap();
        assert_eq!((r, len), (d.clone(), 3));
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    }

    #[test]
    fn anything_else_is_refused() {
        let good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        for bad in [
            String::new(),
            good.to_owned(),
            format!("sha256:{}", good.to_uppercase()),
            format!("md5:{good}"),
            format!("sha256:{good}0"),
            format!("sha256:{}", &good[1..]),
            format!("sha256: {}", &good[1..]),
        ] {
            assert!(Digest::parse(bad.clone()).is_err(), "{bad:?}");
            assert!(serde_json::from_str::<Digest>(&format!("\"{bad}\"")).is_err());
        }
        assert!(Digest::from_hex("abc").is_err());
    }
}
