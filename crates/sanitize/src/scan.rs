//! Identifier scanners for free text: hand-written byte scanners (no regex engine), linear in the
//! input. They find SSNs, phone numbers, email addresses, record/account numbers after a keyword,
//! passport and licence numbers (a letter and eight digits), and card numbers (13 to 19 digits,
//! optionally grouped, passing the Luhn check, not the fraction of a decimal number).

use serde::Serialize;

/// What kind of identifier a match is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `123-45-6789`.
    Ssn,
    /// `555-123-4567`, `(555) 123-4567`, `555.123.4567`, with an optional `+1`.
    Phone,
    /// `someone@example.org`.
    Email,
    /// A number after `MRN`, `record`, `account`, `acct`, `member` or `id` keywords.
    RecordNumber,
    /// A letter, eight digits and a letter (`X12345678X`).
    Passport,
    /// A letter and eight digits (`S12345678`).
    Licence,
    /// 13 to 19 digits passing the Luhn check.
    CardNumber,
    /// A value in a `code` column that is not a code token.
    NotACode,
    /// A value of one of the input's identifier columns (dropped or pseudonymised ones) found in
    /// the output.
    OriginalValue,
}

impl Kind {
    /// The redaction text for this kind.
    pub fn placeholder(self) -> &'static [u8] {
        match self {
            Self::Ssn => b"[SSN]",
            Self::Phone => b"[PHONE]",
            Self::Email => b"[EMAIL]",
            Self::RecordNumber => b"[RECORD]",
            Self::Passport => b"[PASSPORT]",
            Self::Licence => b"[LICENCE]",
            Self::CardNumber => b"[CARD]",
            Self::NotACode | Self::OriginalValue => b"[REDACTED]",
        }
    }
}

fn at(t: &[u8], i: usize) -> u8 {
    t.get(i).copied().unwrap_or(0)
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Whether position `i` starts a token (nothing word-like right before it).
fn starts_token(t: &[u8], i: usize) -> bool {
    i == 0 || !is_word(at(t, i - 1))
}

fn count_digits(t: &[u8], i: usize) -> usize {
    t.get(i..)
        .map_or(0, |s| s.iter().take_while(|b| b.is_ascii_digit()).count())
}

/// Matches `n` digits at `i`; returns the end.
fn exact_digits(t: &[u8], i: usize, n: usize) -> Option<usize> {
    (count_digits(t, i) == n).then_some(i + n)
}

fn ends_token(t: &[u8], end: usize) -> bool {
    !is_word(at(t, end))
}

fn ssn_at(t: &[u8], i: usize) -> Option<usize> {
    let a = exact_digits(t, i, 3)?;
    let sep = at(t, a);
    if sep != b'-' && sep != b' ' {
        return None;
    }
    let b = exact_digits(t, a + 1, 2)?;
    if at(t, b) != sep {
        return None;
    }
    let c = exact_digits(t, b + 1, 4)?;
    ends_token(t, c).then_some(c)
}

fn phone_at(t: &[u8], i: usize) -> Option<usize> {
    let mut p = i;
    if at(t, p) == b'+' && at(t, p + 1) == b'1' {
        p += 2;
        if at(t, p) == b' ' || at(t, p) == b'-' {
            p += 1;
        }
    }
    let after_area = if at(t, p) == b'(' {
        let e = exact_digits(t, p + 1, 3)?;
        if at(t, e) != b')' {
            return None;
        }
        let mut q = e + 1;
        if at(t, q) == b' ' {
            q += 1;
        }
        q
    } else {
        let e = exact_digits(t, p, 3)?;
        let s = at(t, e);
        if s != b'-' && s != b'.' && s != b' ' {
            return None;
        }
        e + 1
    };
    let e = exact_digits(t, after_area, 3)?;
    let s = at(t, e);
    if s != b'-' && s != b'.' && s != b' ' {
        return None;
    }
    let end = exact_digits(t, e + 1, 4)?;
    ends_token(t, end).then_some(end)
}

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (n, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if !n.is_multiple_of(2) {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn card_at(t: &[u8], i: usize, buf: &mut Vec<u8>) -> Option<usize> {
    // Not the fraction part of a decimal number.
    if i >= 2 && matches!(at(t, i - 1), b'.' | b',') && at(t, i - 2).is_ascii_digit() {
        return None;
    }
    buf.clear();
    let mut p = i;
    let mut best = None;
    loop {
        let n = count_digits(t, p);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(t.get(p..p + n)?);
        p += n;
        if buf.len() > 19 {
            return None;
        }
        if (13..=19).contains(&buf.len())
            && ends_token(t, p)
            && !(matches!(at(t, p), b'.' | b',') && at(t, p + 1).is_ascii_digit())
            && luhn(buf)
        {
            best = Some(p);
        }
        let s = at(t, p);
        if (s == b' ' || s == b'-') && at(t, p + 1).is_ascii_digit() {
            p += 1;
        } else {
            break;
        }
    }
    best
}

fn letter_id_at(t: &[u8], i: usize) -> Option<(Kind, usize)> {
    if !at(t, i).is_ascii_uppercase() {
        return None;
    }
    let e = exact_digits(t, i + 1, 8)?;
    if at(t, e).is_ascii_uppercase() && ends_token(t, e + 1) {
        return Some((Kind::Passport, e + 1));
    }
    ends_token(t, e).then_some((Kind::Licence, e))
}

const RECORD_WORDS: [&[u8]; 6] = [b"mrn", b"record", b"account", b"acct", b"member", b"id"];

fn record_at(t: &[u8], i: usize) -> Option<(usize, usize)> {
    let word_len = t
        .get(i..)?
        .iter()
        .take_while(|b| b.is_ascii_alphabetic())
        .count();
    let word = t.get(i..i + word_len)?;
    if !RECORD_WORDS.iter().any(|w| w.eq_ignore_ascii_case(word)) {
        return None;
    }
    let mut p = i + word_len;
    // Separators and the optional "no" / "number" between the keyword and the value.
    let mut steps = 0;
    while steps < 12 {
        let b = at(t, p);
        if matches!(b, b' ' | b'#' | b':' | b'.' | b'-') {
            p += 1;
        } else if t
            .get(p..p + 6)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"number"))
        {
            p += 6;
        } else if t
            .get(p..p + 2)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"no"))
            && !at(t, p + 2).is_ascii_alphabetic()
        {
            p += 2;
        } else {
            break;
        }
        steps += 1;
    }
    if p == i + word_len {
        return None;
    }
    let start = p;
    let len = t
        .get(p..)?
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-')
        .count();
    let value = t.get(start..start + len)?;
    (value.iter().filter(|b| b.is_ascii_digit()).count() >= 4).then_some((start, start + len))
}

fn email_around(t: &[u8], at_pos: usize) -> Option<(usize, usize)> {
    let local = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-');
    let mut s = at_pos;
    while s > 0 && local(at(t, s - 1)) {
        s -= 1;
    }
    if s == at_pos {
        return None;
    }
    let mut e = at_pos + 1;
    let mut last_dot = None;
    while at(t, e).is_ascii_alphanumeric()
        || at(t, e) == b'-'
        || (at(t, e) == b'.' && at(t, e + 1).is_ascii_alphanumeric())
    {
        if at(t, e) == b'.' {
            last_dot = Some(e);
        }
        e += 1;
    }
    let d = last_dot?;
    let tld = t.get(d + 1..e)?;
    (tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic)).then_some((s, e))
}

/// A scanner with its scratch buffer; reuse one per thread.
#[derive(Debug, Default)]
pub struct Scanner {
    digits: Vec<u8>,
}

impl Scanner {
    /// Calls `found(kind, start, end)` for each identifier in `t`, left to right, not overlapping.
    pub fn scan(&mut self, t: &[u8], found: impl FnMut(Kind, usize, usize)) {
        // Fast path: every kind but email needs digits (an SSN 9, a phone number 10, a card 13, a
        // passport or licence number 8 after a letter, a record number 4 after a keyword); an
        // email needs an `@`. Without letters, an SSN is the shortest. Numbers and codes
        // (`123.45`, `8302-2`) have no letters and few digits.
        // (Counted without branches, so the loop runs many bytes at a time.)
        let (mut digits, mut letters, mut at_signs) = (0u32, 0u32, 0u32);
        for &b in t {
            digits += u32::from(b.wrapping_sub(b'0') < 10);
            letters += u32::from((b | 0x20).wrapping_sub(b'a') < 26);
            at_signs += u32::from(b == b'@');
        }
        if at_signs == 0 && (digits < 4 || (digits < 9 && letters == 0)) {
            return;
        }
        self.scan_all(t, found);
    }

    /// [`Self::scan`] without its fast path.
    fn scan_all(&mut self, t: &[u8], mut found: impl FnMut(Kind, usize, usize)) {
        let mut i = 0;
        while i < t.len() {
            let b = at(t, i);
            if b == b'@' {
                if let Some((s, e)) = email_around(t, i) {
                    found(Kind::Email, s, e);
                    i = e;
                    continue;
                }
            } else if starts_token(t, i) {
                if b.is_ascii_digit() || b == b'(' || b == b'+' {
                    if let Some(e) = ssn_at(t, i) {
                        found(Kind::Ssn, i, e);
                        i = e;
                        continue;
                    }
                    if let Some(e) = phone_at(t, i) {
                        found(Kind::Phone, i, e);
                        i = e;
                        continue;
                    }
                    if b.is_ascii_digit() {
                        if let Some(e) = card_at(t, i, &mut self.digits) {
                            found(Kind::CardNumber, i, e);
                            i = e;
                            continue;
                        }
                    }
                } else if b.is_ascii_alphabetic() {
                    if let Some((k, e)) = letter_id_at(t, i) {
                        found(k, i, e);
                        i = e;
                        continue;
                    }
                    if let Some((s, e)) = record_at(t, i) {
                        found(Kind::RecordNumber, s, e);
                        i = e;
                        continue;
                    }
                    // Skip the rest of the word.
                    while is_word(at(t, i)) && i < t.len() {
                        i += 1;
                    }
                    continue;
                }
            }
            i += 1;
        }
    }

    /// Writes `t` with every identifier replaced by its placeholder; returns how many were found.
    pub fn redact(&mut self, t: &[u8], out: &mut Vec<u8>) -> usize {
        let mut last = 0;
        let mut n = 0;
        let mut pieces: Vec<(Kind, usize, usize)> = Vec::new();
        self.scan(t, |k, s, e| pieces.push((k, s, e)));
        for (k, s, e) in pieces {
            out.extend_from_slice(t.get(last..s).unwrap_or_default());
            out.extend_from_slice(k.placeholder());
            last = e;
            n += 1;
        }
        out.extend_from_slice(t.get(last..).unwrap_or_default());
        n
    }
}

/// Whether a value is a terminology code token: letters, digits, `.`, `-`, at most 32 bytes, with
/// a digit (or a mnemonic of at most four capitals), and not a date. Empty is no value.
pub fn is_code_token(v: &[u8]) -> bool {
    if v.is_empty() {
        return true;
    }
    let shaped = v.len() <= 32
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'-');
    // A date is no code, and a word is none either: codes carry digits, except short upper-case
    // mnemonics (`DX`, `CT`).
    let date = v.len() >= 10
        && v.get(..4).is_some_and(|y| y.iter().all(u8::is_ascii_digit))
        && v.get(4) == Some(&b'-')
        && v.get(7) == Some(&b'-');
    let digits = v.iter().any(u8::is_ascii_digit);
    let mnemonic = v.len() <= 4 && v.iter().all(u8::is_ascii_uppercase);
    shaped && !date && (digits || mnemonic)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn kinds(t: &str) -> Vec<(Kind, String)> {
        let mut v = Vec::new();
        Scanner::default().scan(t.as_bytes(), |k, s, e| v.push((k, t[s..e].to_string())));
        v
    }

    #[test]
    fn code_tokens_are_codes_not_names_dates_or_words() {
        for c in [
            "185345009",
            "8302-2",
            "E11.9",
            "DX",
            "1.2.840.10008.5.1.4.1.1.1.1",
            "",
        ] {
            assert!(is_code_token(c.as_bytes()), "{c}");
        }
        for n in [
            "Smith",
            "abel",
            "1990-03-04",
            "2020-01-01T10:00:00Z",
            "999 33 2827",
            "x@y.org",
        ] {
            assert!(!is_code_token(n.as_bytes()), "{n}");
        }
    }

    #[test]
    fn finds_each_kind() {
        assert_eq!(
            kinds("ssn 999-33-2827 ok"),
            vec![(Kind::Ssn, "999-33-2827".into())]
        );
        assert_eq!(
            kinds("call (978) 342-9781"),
            vec![(Kind::Phone, "(978) 342-9781".into())]
        );
        assert_eq!(kinds("978-342-9781 Or +1 978.342.9781")[1].0, Kind::Phone);
        assert_eq!(
            kinds("mail a.b@example.org now"),
            vec![(Kind::Email, "a.b@example.org".into())]
        );
        assert_eq!(
            kinds("MRN: 00123456"),
            vec![(Kind::RecordNumber, "00123456".into())]
        );
        assert_eq!(
            kinds("pp X33401017X"),
            vec![(Kind::Passport, "X33401017X".into())]
        );
        assert_eq!(
            kinds("dl S99992337"),
            vec![(Kind::Licence, "S99992337".into())]
        );
        assert_eq!(
            kinds("card 4111 1111 1111 1111."),
            vec![(Kind::CardNumber, "4111 1111 1111 1111".into())]
        );
    }

    #[test]
    fn ignores_lookalikes() {
        assert!(kinds("4111 1111 1111 1112").is_empty(), "Luhn fails");
        assert!(
            kinds("0.9016567884015410").is_empty(),
            "fraction of a decimal"
        );
        assert!(kinds("2014-05-06T08:34:30Z 101.8 cm 8302-2").is_empty());
        assert!(kinds("p4111111111111111").is_empty(), "inside a token");
        assert!(
            kinds("24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet").is_empty()
        );
    }

    #[test]
    fn the_fast_path_skips_only_text_with_nothing_to_find() {
        // Identifiers of every kind, cut, altered and padded around every threshold of the fast
        // path (digits dropped one by one, letters and `@` replaced).
        let seeds: [&[u8]; 9] = [
            b"999-33-2827",
            b"(978) 342-9781",
            b"+1 978.342.9781",
            b"4111 1111 1111 1111",
            b"S99992337",
            b"X33401017X",
            b"MRN: 0012",
            b"acct no 1234",
            b"a.b@example.org",
        ];
        let fillers: [&[u8]; 6] = [b"", b" ", b"x ", b"1 ", b"-", b"."];
        let mut r = crate::transform::SplitMix::new(11);
        let mut sc = Scanner::default();
        let mut found_some = 0;
        for _ in 0..40_000 {
            let mut t = seeds[(r.next_u64() % seeds.len() as u64) as usize].to_vec();
            for _ in 0..r.next_u64() % 4 {
                if t.is_empty() {
                    break;
                }
                let at = (r.next_u64() % t.len() as u64) as usize;
                match r.next_u64() % 3 {
                    0 => {
                        t.remove(at);
                    }
                    1 => t[at] = b"0-. x@"[(r.next_u64() % 6) as usize],
                    _ => t.insert(at, b'7'),
                }
            }
            let pad = |r: &mut crate::transform::SplitMix| fillers[(r.next_u64() % 6) as usize];
            let mut text = pad(&mut r).to_vec();
            text.extend_from_slice(&t);
            text.extend_from_slice(pad(&mut r));
            let (mut fast, mut all) = (Vec::new(), Vec::new());
            sc.scan(&text, |k, s, e| fast.push((k, s, e)));
            sc.scan_all(&text, |k, s, e| all.push((k, s, e)));
            assert_eq!(fast, all, "{:?}", String::from_utf8_lossy(&text));
            found_some += usize::from(!all.is_empty());
        }
        assert!(
            found_some > 10_000,
            "the inputs exercise the scanners: {found_some}"
        );
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let mut r = crate::transform::SplitMix::new(3);
        let alphabet = b"0123456789-() .+@aXS#:MRNmrn,\xff";
        let mut sc = Scanner::default();
        for len in 0..400 {
            let t: Vec<u8> = (0..len)
                .map(|_| alphabet[(r.next_u64() % alphabet.len() as u64) as usize])
                .collect();
            let mut out = Vec::new();
            sc.redact(&t, &mut out);
            sc.scan(&t, |_, s, e| assert!(s < e && e <= t.len()));
        }
    }

    #[test]
    fn redacts() {
        let mut out = Vec::new();
        let n = Scanner::default().redact(b"SSN 999-33-2827, mail x@y.io", &mut out);
        assert_eq!(n, 2);
        assert_eq!(out, b"SSN [SSN], mail [EMAIL]");
    }
}
