//! What the evidence ledger says about artifacts: the attributes each was stored with, the
//! signature envelopes recorded for it (and when), its promotions, and the promotion policy in
//! force. Decisions read these, never files in the data directory a writer there could edit.
//!
//! [`History::from_entries`] is pure: canonical entry bytes in (as the ledger signed them), the
//! history out. Only entries about artifacts and promotion policies are decoded.

use std::collections::BTreeMap;
use std::str::FromStr as _;

use tidegate_ledger::{Action, Entry, SubjectKind};

use crate::gates::Stage;
use crate::{ArtifactError, Digest};

/// The subject id under which promotion policy changes are recorded (`policy.loaded`).
pub const PROMOTION_POLICY_SUBJECT: &str = "promotion";

/// How an artifact was stored, as the ledger recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// When (Unix milliseconds, the ledger entry's time).
    pub ts_ms: u64,
    /// Its kind.
    pub kind: String,
    /// Its classification (`LEVEL` or `LEVEL/TAG+TAG`), if any.
    pub classification: Option<String>,
    /// Its lane.
    pub lane: String,
    /// Whether it derives from sensitive data.
    pub sensitive: bool,
}

/// One recorded promotion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    /// From stage.
    pub from: Stage,
    /// To stage.
    pub to: Stage,
    /// When (Unix milliseconds).
    pub ts_ms: u64,
    /// Who promoted.
    pub actor: String,
    /// Hash of the promotion policy that allowed it.
    pub policy_hash: String,
}

/// Everything the ledger holds about one artifact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trail {
    /// The first `artifact.stored` entry (what the artifact is, for good).
    pub stored: Option<Stored>,
    /// Signature envelopes recorded for it (digest → when, Unix milliseconds): only these count.
    pub envelopes: BTreeMap<String, u64>,
    /// Its promotions, oldest first.
    pub promotions: Vec<Promotion>,
    /// Whether it was shredded.
    pub shredded: bool,
}

impl Trail {
    /// Its stage: where its newest recorded promotion took it (candidate when never promoted).
    #[must_use]
    pub fn stage(&self) -> Stage {
        self.promotions.last().map_or(Stage::Candidate, |p| p.to)
    }
}

/// The artifacts' history in a ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    artifacts: BTreeMap<String, Trail>,
    promotion_policy: Option<(String, u64)>,
    keyring: Option<String>,
}

impl History {
    /// The history of one store in `entries` (canonical bytes, by index): entries naming zone
    /// `zone` when the store is a zone's store, else entries naming no zone (several zones'
    /// stores may record into one ledger, and one zone's promotions or signatures say nothing
    /// about another's copy). Promotion policy changes apply to every store of the ledger.
    ///
    /// # Errors
    /// [`ArtifactError::Evidence`] when an entry about an artifact does not decode, or names a
    /// stage tidegate does not know.
    pub fn from_entries(entries: &[Vec<u8>], zone: Option<&str>) -> Result<Self, ArtifactError> {
        let mut h = Self::default();
        // Ledger time: an entry is never earlier than any entry before it. A command run with
        // its clock set back records a time the ledger's order contradicts; it counts as the
        // latest time already recorded (so a retired key cannot sign "before" its retirement).
        let mut clock = 0u64;
        for (i, bytes) in entries.iter().enumerate() {
            if let Some(ts) = ts_of(bytes) {
                clock = clock.max(ts);
            }
            if !relevant(bytes) {
                continue;
            }
            let mut e = Entry::decode(bytes).map_err(|e| {
                ArtifactError::Evidence(format!("ledger entry {i} does not decode: {e}"))
            })?;
            clock = clock.max(e.ts_ms);
            e.ts_ms = clock;
            let named = e
                .subjects
                .iter()
                .find(|s| s.kind == SubjectKind::Zone)
                .map(|s| s.id.as_str());
            if named == zone || matches!(e.action, Action::PolicyLoaded { .. }) {
                h.apply(i, &e)?;
            }
        }
        Ok(h)
    }

    fn apply(&mut self, i: usize, e: &Entry) -> Result<(), ArtifactError> {
        let stage = |s: &str| {
            Stage::from_str(s).map_err(|_| {
                ArtifactError::Evidence(format!("ledger entry {i} names an unknown stage {s:?}"))
            })
        };
        match &e.action {
            Action::ArtifactStored {
                artifact,
                kind,
                classification,
                lane,
                sensitive,
            } => {
                // An artifact is immutable: what it was first stored as stands. A later
                // `artifact.stored` (its files deleted and the bytes put again) changes nothing.
                let trail = self.trail(artifact.as_str());
                if trail.stored.is_none() {
                    trail.stored = Some(Stored {
                        ts_ms: e.ts_ms,
                        kind: kind.to_string(),
                        classification: classification.as_ref().map(ToString::to_string),
                        lane: lane.to_string(),
                        sensitive: *sensitive,
                    });
                }
            }
            Action::ArtifactSigned {
                artifact,
                signature: envelope,
                ..
            }
            | Action::ArtifactAttested {
                artifact, envelope, ..
            } => {
                self.trail(artifact.as_str())
                    .envelopes
                    .entry(envelope.to_string())
                    .or_insert(e.ts_ms);
            }
            Action::ArtifactPromoted {
                artifact,
                from_stage,
                to_stage,
                policy_hash,
            } => {
                let p = Promotion {
                    from: stage(from_stage.as_str())?,
                    to: stage(to_stage.as_str())?,
                    ts_ms: e.ts_ms,
                    actor: e.actor.to_string(),
                    policy_hash: policy_hash.to_string(),
                };
                self.trail(artifact.as_str()).promotions.push(p);
            }
            Action::ArtifactShredded { artifact } => self.trail(artifact.as_str()).shredded = true,
            // The token root keyring's changes (`token-…`) are not the signing keyring's.
            Action::KeyChanged {
                keyring: Some(d),
                change,
                ..
            } if !change.as_str().starts_with("token-") => self.keyring = Some(d.to_string()),
            Action::PolicyLoaded { policy_hash }
                if e.subjects.iter().any(|s| {
                    s.kind == SubjectKind::Policy && s.id.as_str() == PROMOTION_POLICY_SUBJECT
                }) =>
            {
                self.promotion_policy = Some((policy_hash.to_string(), e.ts_ms));
            }
            _ => {}
        }
        Ok(())
    }

    fn trail(&mut self, digest: &str) -> &mut Trail {
        self.artifacts.entry(digest.to_owned()).or_default()
    }

    /// What the ledger holds about `digest` (empty when nothing).
    #[must_use]
    pub fn of(&self, digest: &Digest) -> Trail {
        self.artifacts
            .get(&digest.to_string())
            .cloned()
            .unwrap_or_default()
    }

    /// The stage of `digest`, as its recorded promotions say.
    #[must_use]
    pub fn stage(&self, digest: &Digest) -> Stage {
        self.artifacts
            .get(&digest.to_string())
            .map_or(Stage::Candidate, Trail::stage)
    }

    /// The digest of the signing keyring as the newest recorded key change left it, if a change
    /// recorded one ([`crate::signing::Keyring::digest`]).
    #[must_use]
    pub fn keyring(&self) -> Option<&str> {
        self.keyring.as_deref()
    }

    /// The promotion policy last recorded (its hash, and when), if a change was ever recorded.
    #[must_use]
    pub fn promotion_policy(&self) -> Option<(&str, u64)> {
        self.promotion_policy
            .as_ref()
            .map(|(h, t)| (h.as_str(), *t))
    }
}

/// The `ts_ms` of a canonical entry, read without decoding it (`,"ts_ms":N,` occurs once: no
/// string in an entry can hold a quote).
fn ts_of(bytes: &[u8]) -> Option<u64> {
    const MARK: &[u8] = b",\"ts_ms\":";
    let at = bytes.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    let digits = bytes.get(at..)?;
    let n = digits.iter().take_while(|c| c.is_ascii_digit()).count();
    std::str::from_utf8(digits.get(..n)?).ok()?.parse().ok()
}

/// Whether the bytes can be an entry the history reads (a cheap look at the action's type).
fn relevant(bytes: &[u8]) -> bool {
    const MARKS: [&[u8]; 3] = [
        b"\"type\":\"artifact.",
        b"\"type\":\"policy.loaded\"",
        b"\"type\":\"key.changed\"",
    ];
    MARKS
        .iter()
        .any(|m| bytes.windows(m.len()).any(|w| w == *m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidegate_ledger::{Digest as LDigest, EntryDraft, Ident, Subject};

    fn entry(seq: u64, ts: u64, actor: &str, action: Action, subjects: Vec<Subject>) -> Vec<u8> {
        EntryDraft::new(Ident::new(actor).unwrap(), action, subjects)
            .unwrap()
            .into_entry(seq, ts)
            .encode()
            .unwrap()
    }

    #[test]
    fn stage_signatures_and_policy_come_from_the_entries() {
        let a = LDigest::of(b"model");
        let id = |s: &str| Ident::new(s).unwrap();
        let sub = vec![Subject::new(SubjectKind::Artifact, "m").unwrap()];
        let pol = vec![Subject::new(SubjectKind::Policy, PROMOTION_POLICY_SUBJECT).unwrap()];
        let entries = vec![
            entry(
                0,
                1_000,
                "svc",
                Action::ArtifactStored {
                    artifact: a.clone(),
                    kind: id("model"),
                    classification: None,
                    lane: id("experiment"),
                    sensitive: true,
                },
                sub.clone(),
            ),
            entry(
                1,
                2_000,
                "k1",
                Action::ArtifactSigned {
                    artifact: a.clone(),
                    key_id: id("k1"),
                    signature: LDigest::of(b"env"),
                },
                sub.clone(),
            ),
            entry(
                2,
                2_500,
                "approver",
                Action::PolicyLoaded {
                    policy_hash: LDigest::of(b"policy"),
                },
                pol,
            ),
            entry(
                3,
                3_000,
                "bob",
                Action::ArtifactPromoted {
                    artifact: a.clone(),
                    from_stage: id("candidate"),
                    to_stage: id("validated"),
                    policy_hash: LDigest::of(b"policy"),
                },
                sub,
            ),
        ];
        let h = History::from_entries(&entries, None).unwrap();
        assert_eq!(
            History::from_entries(&entries, Some("public-us"))
                .unwrap()
                .stage(&a.to_string().parse().unwrap()),
            Stage::Candidate
        );
        let d: Digest = a.to_string().parse().unwrap();
        let t = h.of(&d);
        assert_eq!(h.stage(&d), Stage::Validated);
        assert_eq!(t.stored.as_ref().unwrap().lane, "experiment");
        assert!(t.stored.as_ref().unwrap().sensitive);
        assert_eq!(
            t.envelopes.get(&LDigest::of(b"env").to_string()),
            Some(&2_000)
        );
        assert_eq!(
            h.promotion_policy(),
            Some((LDigest::of(b"policy").as_str(), 2_500))
        );
        let other: Digest = LDigest::of(b"other");
        assert_eq!(h.stage(&other), Stage::Candidate);
        assert_eq!(h.of(&other), Trail::default());
    }
}
