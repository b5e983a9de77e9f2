//! Segment file format: length-prefixed, checksummed records, and the pure scanner that reads it.
//!
//! A segment file `seg-<first index, 20 digits>.tgl` starts with a 16-byte header: the magic
//! `TGLEDGR1` and the index of its first record (u64 little-endian). Each record is
//!
//! ```text
//! len u32 LE | index u64 LE | crc32(len || index) u32 LE | payload (len bytes) | crc32(payload) u32 LE
//! ```
//!
//! The top bit of `len` marks a *commit record*: the signed checkpoint that seals the group
//! commit just before it (see [`crate::commit`]); its `index` is the number of entries before it
//! (the checkpoint's size), and it does not take an index of its own. Every group commit is its
//! entries followed by their commit record, written together with one `write` and one
//! `fdatasync`: an entry is acknowledged exactly when a commit record after it is durable.
//!
//! The header checksum protects the length, so a damaged length is reported as damage at that
//! index instead of being mistaken for a short (torn) tail. Scanning is a pure function of the
//! bytes: it returns every whole record, how the file ends (clean, or a torn tail that a crash
//! can leave: an incomplete last record, or trailing zero bytes), or the first damage with the
//! exact index. Damage is never skipped.

/// Magic bytes at the start of every segment.
pub const MAGIC: &[u8; 8] = b"TGLEDGR2";
/// Magic of the first format (no commit records), refused with an explanation.
pub const MAGIC_V1: &[u8; 8] = b"TGLEDGR1";
/// Bit of a record's `len` that marks a commit record.
pub const COMMIT_FLAG: u32 = 0x8000_0000;
/// Largest commit record payload: a note and one 32-byte leaf hash per entry of the batch.
pub const MAX_COMMIT_PAYLOAD: usize = 8 * 1024 + 32 * MAX_BATCH;
/// Most entries one group commit may hold.
pub const MAX_BATCH: usize = 16_384;
/// Segment header length.
pub const SEGMENT_HEADER: usize = 16;
/// Record header length (len, index, header crc).
pub const RECORD_HEADER: usize = 16;
/// Bytes a record adds around its payload.
pub const RECORD_OVERHEAD: usize = RECORD_HEADER + 4;
/// Largest payload accepted.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// File name of the segment whose first record has `first`.
#[must_use]
pub fn segment_name(first: u64) -> String {
    format!("seg-{first:020}.tgl")
}

/// First index encoded in a segment file name, if it is one.
#[must_use]
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".tgl")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segment header bytes.
#[must_use]
pub fn segment_header(first: u64) -> [u8; SEGMENT_HEADER] {
    let mut h = [0u8; SEGMENT_HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&first.to_le_bytes());
    h
}

/// Append the encoding of one entry record to `out`.
pub fn encode_record(index: u64, payload: &[u8], out: &mut Vec<u8>) {
    encode(index, payload, 0, out);
}

/// Append the encoding of a commit record sealing the first `size` entries to `out`.
pub fn encode_commit_record(size: u64, payload: &[u8], out: &mut Vec<u8>) {
    encode(size, payload, COMMIT_FLAG, out);
}

fn encode(index: u64, payload: &[u8], flag: u32, out: &mut Vec<u8>) {
    let len = (u32::try_from(payload.len()).unwrap_or(u32::MAX >> 1) | flag).to_le_bytes();
    let idx = index.to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(&idx);
    out.extend_from_slice(&len);
    out.extend_from_slice(&idx);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
}

/// What is wrong at a position in the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DamageKind {
    /// The segment header is missing or wrong.
    #[error("segment header is damaged")]
    SegmentHeader,
    /// The segment's first index does not continue the previous segment.
    #[error("segment starts at index {found}: entries are missing or out of order")]
    SegmentGap {
        /// First index named by the segment.
        found: u64,
    },
    /// The record header checksum does not match.
    #[error("record header checksum mismatch")]
    HeaderChecksum,
    /// The payload checksum does not match.
    #[error("record payload checksum mismatch")]
    PayloadChecksum,
    /// The record carries another index than its position: entries were reordered or removed.
    #[error("record carries index {found}: entries were reordered, removed or duplicated")]
    IndexMismatch {
        /// Index found in the record.
        found: u64,
    },
    /// A record claims a payload larger than allowed.
    #[error("record length {0} exceeds the maximum")]
    TooLong(u32),
    /// A record is incomplete in a segment that is not the last one.
    #[error("record is cut short inside a sealed segment")]
    ShortRecord,
    /// The segment was written by the first ledger format, which had no commit records.
    #[error("segment is in the first ledger format (no signed commits); this version cannot vouch for it")]
    OldFormat,
}

/// First damage found while scanning, with the index of the entry it affects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {index}: {kind}")]
pub struct Damage {
    /// Index of the first entry that cannot be trusted.
    pub index: u64,
    /// What is wrong.
    pub kind: DamageKind,
}

/// How a scanned segment ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Ends exactly after the last whole record.
    Clean,
    /// Ends in an incomplete record or zero padding from an interrupted write, starting at
    /// `offset`; the bytes from there on were never acknowledged.
    Torn {
        /// Byte offset where the partial data starts.
        offset: usize,
    },
}

/// One whole record found by the scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef {
    /// Its index (for a commit record: the number of entries before it).
    pub index: u64,
    /// Whether it is a commit record rather than an entry.
    pub commit: bool,
    /// Payload start offset in the segment bytes.
    pub start: usize,
    /// Payload end offset.
    pub end: usize,
}

/// Result of scanning one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentScan {
    /// Whole, checksummed records in order.
    pub records: Vec<RecordRef>,
    /// Offset just past the last whole record.
    pub valid_len: usize,
    /// How the segment ends.
    pub tail: Tail,
    /// First damage, if any; records after it are not returned.
    pub damage: Option<Damage>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Scan one segment's bytes. `expected_first` is the index the segment must start with;
/// `last` says whether this is the newest segment (the only one that may have a torn tail).
#[must_use]
pub fn scan_segment(bytes: &[u8], expected_first: u64, last: bool) -> SegmentScan {
    let mut scan = SegmentScan {
        records: Vec::new(),
        valid_len: 0,
        tail: Tail::Clean,
        damage: None,
    };
    if bytes.len() >= SEGMENT_HEADER && &bytes[..8] == MAGIC_V1 {
        scan.damage = Some(Damage {
            index: expected_first,
            kind: DamageKind::OldFormat,
        });
        return scan;
    }
    if bytes.len() < SEGMENT_HEADER || &bytes[..8] != MAGIC {
        if last && bytes.iter().all(|b| *b == 0) {
            // A segment created but never written (crash right after creation).
            scan.tail = Tail::Torn { offset: 0 };
        } else {
            scan.damage = Some(Damage {
                index: expected_first,
                kind: DamageKind::SegmentHeader,
            });
        }
        return scan;
    }
    let first = u64_at(bytes, 8);
    if first != expected_first {
        scan.damage = Some(Damage {
            index: expected_first,
            kind: DamageKind::SegmentGap { found: first },
        });
        return scan;
    }
    let mut pos = SEGMENT_HEADER;
    scan.valid_len = pos;
    let mut expected = expected_first;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let torn = |scan: &mut SegmentScan, kind: DamageKind| {
            if last {
                scan.tail = Tail::Torn { offset: pos };
            } else {
                scan.damage = Some(Damage {
                    index: expected,
                    kind,
                });
            }
        };
        if rest.len() < RECORD_HEADER {
            torn(&mut scan, DamageKind::ShortRecord);
            return scan;
        }
        let len = u32_at(rest, 0);
        let idx = u64_at(rest, 4);
        let hcrc = u32_at(rest, 12);
        if crc32fast::hash(&rest[..12]) != hcrc {
            if last && rest.iter().all(|b| *b == 0) {
                scan.tail = Tail::Torn { offset: pos };
            } else {
                scan.damage = Some(Damage {
                    index: expected,
                    kind: DamageKind::HeaderChecksum,
                });
            }
            return scan;
        }
        let commit = len & COMMIT_FLAG != 0;
        let plen = (len & !COMMIT_FLAG) as usize;
        if plen
            > if commit {
                MAX_COMMIT_PAYLOAD
            } else {
                MAX_PAYLOAD
            }
        {
            scan.damage = Some(Damage {
                index: expected,
                kind: DamageKind::TooLong(len),
            });
            return scan;
        }
        if rest.len() < RECORD_OVERHEAD + plen {
            torn(&mut scan, DamageKind::ShortRecord);
            return scan;
        }
        let payload = &rest[RECORD_HEADER..RECORD_HEADER + plen];
        if crc32fast::hash(payload) != u32_at(rest, RECORD_HEADER + plen) {
            scan.damage = Some(Damage {
                index: expected,
                kind: DamageKind::PayloadChecksum,
            });
            return scan;
        }
        if idx != expected {
            scan.damage = Some(Damage {
                index: expected,
                kind: DamageKind::IndexMismatch { found: idx },
            });
            return scan;
        }
        let start = pos + RECORD_HEADER;
        scan.records.push(RecordRef {
            index: idx,
            commit,
            start,
            end: start + plen,
        });
        pos += RECORD_OVERHEAD + plen;
        scan.valid_len = pos;
        if !commit {
            expected += 1;
        }
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(first: u64, payloads: &[&[u8]]) -> Vec<u8> {
        let mut b = segment_header(first).to_vec();
        for (i, p) in payloads.iter().enumerate() {
            encode_record(first + i as u64, p, &mut b);
        }
        b
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("seg-42.tgl"), None);
        assert_eq!(parse_segment_name("other"), None);
    }

    #[test]
    fn clean_segment_scans_whole() {
        let b = segment(5, &[b"a", b"bb", b"ccc"]);
        let s = scan_segment(&b, 5, true);
        assert_eq!(s.damage, None);
        assert_eq!(s.tail, Tail::Clean);
        assert_eq!(
            s.records.iter().map(|r| r.index).collect::<Vec<_>>(),
            vec![5, 6, 7]
        );
        assert_eq!(&b[s.records[2].start..s.records[2].end], b"ccc");
        assert_eq!(s.valid_len, b.len());
    }

    #[test]
    fn every_truncation_of_the_last_segment_is_a_torn_tail() {
        let b = segment(0, &[b"one", b"two", b"three"]);
        let whole = scan_segment(&b, 0, true);
        for cut in SEGMENT_HEADER..b.len() {
            let s = scan_segment(&b[..cut], 0, true);
            assert_eq!(s.damage, None, "cut at {cut}");
            let kept = whole.records.iter().filter(|r| r.end + 4 <= cut).count();
            assert_eq!(s.records.len(), kept, "cut at {cut}");
            if cut != s.valid_len {
                assert_eq!(
                    s.tail,
                    Tail::Torn {
                        offset: s.valid_len
                    }
                );
            }
            // The same cut in a sealed (older) segment is damage at the exact index.
            let sealed = scan_segment(&b[..cut], 0, false);
            if cut != s.valid_len {
                assert_eq!(sealed.damage.map(|d| d.index), Some(kept as u64));
            }
        }
    }

    #[test]
    fn every_byte_flip_is_damage_at_the_right_index() {
        let b = segment(10, &[b"alpha", b"beta", b"gamma"]);
        let whole = scan_segment(&b, 10, true);
        for at in 0..b.len() {
            let mut m = b.clone();
            m[at] ^= 0x01;
            let s = scan_segment(&m, 10, true);
            let want = whole
                .records
                .iter()
                .position(|r| at < r.end + 4)
                .map_or(13, |i| 10 + i as u64);
            let want = if at < SEGMENT_HEADER { 10 } else { want };
            assert_eq!(
                s.damage.as_ref().map(|d| d.index),
                Some(want),
                "flip at {at}: {s:?}"
            );
        }
    }

    #[test]
    fn zero_padding_after_a_crash_is_a_torn_tail() {
        let mut b = segment(0, &[b"x"]);
        let len = b.len();
        b.extend_from_slice(&[0u8; 40]);
        let s = scan_segment(&b, 0, true);
        assert_eq!(s.damage, None);
        assert_eq!(s.tail, Tail::Torn { offset: len });
        assert_eq!(s.records.len(), 1);
    }
}
