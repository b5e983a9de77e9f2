//! Per-cell transforms. Each writes into a caller-owned buffer, so the engine allocates nothing per
//! cell; a bad value is an error message, never a panic.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::SanitizeError;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the HMAC tag kept in a pseudonym (hex-encoded: twice as many characters).
pub const PSEUDONYM_BYTES: usize = 12;

/// A pseudonymisation key: the HMAC state keyed once and cloned per value.
#[derive(Clone)]
pub struct Key {
    mac: HmacSha256,
    id: String,
    ephemeral: bool,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("ephemeral", &self.ephemeral)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// A key from secret bytes (at least 16).
    pub fn from_bytes(secret: &[u8]) -> Result<Self, SanitizeError> {
        if secret.len() < 16 {
            return Err(SanitizeError::Key(format!(
                "{} bytes is too short; use at least 16",
                secret.len()
            )));
        }
        let mac =
            HmacSha256::new_from_slice(secret).map_err(|e| SanitizeError::Key(e.to_string()))?;
        let mut idmac = mac.clone();
        idmac.update(b"tidegate-sanitize key id");
        let id = hex::encode(&idmac.finalize().into_bytes()[..8]);
        Ok(Self {
            mac,
            id,
            ephemeral: false,
        })
    }

    /// A key read from a file: 64 hex characters (32 bytes), or else the raw bytes of the file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, SanitizeError> {
        let raw = std::fs::read(path).map_err(|e| SanitizeError::io(path, "cannot read key", e))?;
        let trimmed = raw.trim_ascii();
        if trimmed.len() == 64 && trimmed.iter().all(u8::is_ascii_hexdigit) {
            let bytes = hex::decode(trimmed).map_err(|e| SanitizeError::Key(e.to_string()))?;
            return Self::from_bytes(&bytes);
        }
        Self::from_bytes(&raw)
    }

    /// A random key that is never stored: pseudonyms cannot be reproduced or reversed later.
    pub fn ephemeral() -> Result<Self, SanitizeError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| SanitizeError::Key(format!("no randomness: {e}")))?;
        let mut k = Self::from_bytes(&secret)?;
        k.ephemeral = true;
        Ok(k)
    }

    /// A public identifier of the key (an HMAC of a fixed label), never the key.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the key is random and unstored.
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// The keyed tag of `domain` followed by `value`.
    fn tag(&self, domain: &[u8], value: &[u8]) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.update(domain);
        m.update(value);
        m.finalize().into_bytes().into()
    }

    /// Writes the pseudonym of `value` (empty stays empty): `p` and 24 hex characters. The same
    /// value gives the same pseudonym whatever table or column it is in.
    pub fn pseudonym(&self, value: &[u8], out: &mut Vec<u8>) {
        if value.is_empty() {
            return;
        }
        let t = self.tag(b"", value);
        out.push(b'p');
        push_hex(&t[..PSEUDONYM_BYTES], out);
    }

    /// The keyed per-subject date shift, in days, within `[-max, max]`.
    pub fn shift_days(&self, subject: &[u8], max: u32) -> i64 {
        let t = self.tag(b"\x00date-shift\x00", subject);
        let mut b = [0u8; 8];
        b.copy_from_slice(&t[..8]);
        let span = 2 * u64::from(max) + 1;
        let r = u64::from_le_bytes(b) % span;
        i64::try_from(r).unwrap_or(0) - i64::from(max)
    }
}

fn push_hex(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

/// The 17 three-digit ZIP prefixes with 20,000 people or fewer (2000 census) that Safe Harbor
/// requires be replaced by `000`.
pub const RESTRICTED_ZIP3: [&[u8; 3]; 17] = [
    b"036", b"059", b"063", b"102", b"203", b"556", b"692", b"790", b"821", b"823", b"830", b"831",
    b"878", b"879", b"884", b"890", b"893",
];

/// ZIP to its first three digits, `000` for a restricted prefix or anything that is not a ZIP.
pub fn zip3(value: &[u8], out: &mut Vec<u8>) {
    if value.is_empty() {
        return;
    }
    match value.get(..3) {
        Some(p)
            if p.iter().all(u8::is_ascii_digit)
                && !RESTRICTED_ZIP3.iter().any(|r| r.as_slice() == p) =>
        {
            out.extend_from_slice(p);
        }
        _ => out.extend_from_slice(b"000"),
    }
}

fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: i64 = 0;
    for d in b {
        v = v * 10 + i64::from(d - b'0');
    }
    Some(v)
}

/// A parsed `YYYY-MM-DD` prefix and the rest of the value (a time part, kept by shifts).
fn parse_date(v: &[u8]) -> Option<(i64, i64, i64, &[u8])> {
    if v.len() < 10 || v[4] != b'-' || v[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(&v[..4])?, digits(&v[5..7])?, digits(&v[8..10])?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some((y, m, d, &v[10..]))
}

/// The year of a date or timestamp (empty stays empty).
pub fn date_year(value: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    if value.is_empty() {
        return Ok(());
    }
    let (y, _, _, _) = parse_date(value).ok_or("not a date (YYYY-MM-DD...)")?;
    out.extend_from_slice(&value[..4]);
    let _ = y;
    Ok(())
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date (year, month, day) of a day count since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// A date shifted by `days`; a time part after the date is kept (empty stays empty).
pub fn date_shift(value: &[u8], days: i64, out: &mut Vec<u8>) -> Result<(), &'static str> {
    use std::io::Write;
    if value.is_empty() {
        return Ok(());
    }
    let (y, m, d, rest) = parse_date(value).ok_or("not a date (YYYY-MM-DD...)")?;
    let (y, m, d) = civil_from_days(days_from_civil(y, m, d) + days);
    if !(0..=9999).contains(&y) {
        return Err("date out of range after shifting");
    }
    write!(out, "{y:04}-{m:02}-{d:02}").map_err(|_| "cannot format date")?;
    out.extend_from_slice(rest);
    Ok(())
}

/// A birth date to its year, grouped to `<=YEAR` when it means an age over 89 at
/// `reference_year`; an age in whole years over 89 becomes `90+`.
pub fn age_cap(value: &[u8], reference_year: i32, out: &mut Vec<u8>) -> Result<(), &'static str> {
    use std::io::Write;
    if value.is_empty() {
        return Ok(());
    }
    let oldest = i64::from(reference_year) - 90;
    if let Some((y, _, _, _)) = parse_date(value) {
        if y <= oldest {
            write!(out, "<={oldest}").map_err(|_| "cannot format")?;
        } else {
            out.extend_from_slice(&value[..4]);
        }
        return Ok(());
    }
    let int_part = value.split(|b| *b == b'.').next().unwrap_or(value);
    let age = digits(int_part).ok_or("neither a date nor an age in years")?;
    if age > 89 {
        out.extend_from_slice(b"90+");
    } else {
        out.extend_from_slice(int_part);
    }
    Ok(())
}

pub use tidegate_vocab::SplitMix;

/// A 64-bit hash of bytes with a seed (FNV-1a, then a SplitMix finaliser), for sampling choices.
pub fn seeded_hash(seed: u64, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    SplitMix::new(h).next_u64()
}

/// A number with uniform relative noise of at most `fraction`, written with the input's number
/// of decimals (empty stays empty).
pub fn noise(
    value: &[u8],
    fraction: f64,
    rng: &mut SplitMix,
    out: &mut Vec<u8>,
) -> Result<(), &'static str> {
    use std::io::Write;
    if value.is_empty() {
        return Ok(());
    }
    let s = std::str::from_utf8(value).map_err(|_| "not a number")?;
    let x: f64 = s.trim().parse().map_err(|_| "not a number")?;
    if !x.is_finite() {
        return Err("not a finite number");
    }
    let decimals = s.split_once('.').map_or(0, |(_, f)| f.len()).min(12);
    let y = x * (1.0 + fraction * rng.signed_unit());
    write!(out, "{y:.decimals$}").map_err(|_| "cannot format number")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn civil_round_trip_and_shift() {
        for z in [-800_000i64, -1, 0, 1, 10_957, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        let mut out = Vec::new();
        date_shift(b"2020-02-28T08:00:00Z", 2, &mut out).unwrap();
        assert_eq!(out, b"2020-03-01T08:00:00Z");
    }

    #[test]
    fn zip_and_age() {
        let mut o = Vec::new();
        zip3(b"03601", &mut o);
        assert_eq!(o, b"000");
        o.clear();
        zip3(b"01810", &mut o);
        assert_eq!(o, b"018");
        o.clear();
        age_cap(b"1930-01-01", 2025, &mut o).unwrap();
        assert_eq!(o, b"<=1935");
        o.clear();
        age_cap(b"1990-05-05", 2025, &mut o).unwrap();
        assert_eq!(o, b"1990");
        o.clear();
        age_cap(b"93", 2025, &mut o).unwrap();
        assert_eq!(o, b"90+");
    }

    #[test]
    fn noise_keeps_decimals_and_bounds() {
        let mut r = SplitMix::new(7);
        for _ in 0..100 {
            let mut o = Vec::new();
            noise(b"1000.00", 0.05, &mut r, &mut o).unwrap();
            let s = String::from_utf8(o).unwrap();
            assert_eq!(s.split_once('.').unwrap().1.len(), 2);
            let v: f64 = s.parse().unwrap();
            assert!((950.0..=1050.0).contains(&v));
        }
    }

    #[test]
    fn shift_is_bounded_and_per_subject() {
        let k = Key::from_bytes(&[7u8; 32]).unwrap();
        let a = k.shift_days(b"a", 365);
        assert!((-365..=365).contains(&a));
        assert_eq!(a, k.shift_days(b"a", 365));
    }
}
