//! Retention planning from the ledger: rules per object kind with their justification, legal
//! holds, and tombstones (pure; the clock is passed in).
//!
//! The inventory is read from the entries themselves: `retention.registered` (any kind),
//! `checkpoint.archived` (checkpoints) and raw `dataset.copied` (raw data) bring an object under
//! a rule; `retention.deleted` and `checkpoint.destroyed` are tombstones; `retention.hold_set` /
//! `retention.hold_released` place and lift a legal hold on subjects, and an object is held while
//! any subject it was recorded with is held. Deleting an object appends a tombstone entry; the
//! log itself is never edited, so every earlier proof and checkpoint stays valid.

use std::collections::{BTreeMap, BTreeSet};

use crate::entry::{Action, DataForm, Digest, Entry, ObjectKind, Subject};

const DAY_MS: u64 = 86_400_000;

/// How long objects of one kind are kept, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The rule's identifier (recorded in tombstones).
    pub id: &'static str,
    /// Kind it applies to.
    pub kind: ObjectKind,
    /// Days kept after the object was recorded.
    pub keep_days: u64,
    /// Why this period.
    pub justification: &'static str,
}

/// The default rules.
#[must_use]
pub fn default_rules() -> Vec<Rule> {
    vec![
        Rule {
            id: "raw-data-30d",
            kind: ObjectKind::RawData,
            keep_days: 30,
            justification: "Data minimisation and storage limitation (GDPR Art. 5(1)(c),(e); HIPAA minimum necessary): \
                            a raw copy outside its home zone exists only for the job that needed it; the registered source stays in the data owner's zone.",
        },
        Rule {
            id: "features-180d",
            kind: ObjectKind::Features,
            keep_days: 180,
            justification: "Derived features and sanitized sets are kept for two quarterly model refreshes so results can be reproduced, then deleted (storage limitation).",
        },
        Rule {
            id: "checkpoints-90d",
            kind: ObjectKind::Checkpoints,
            keep_days: 90,
            justification: "Training checkpoints can memorise training data; kept only for resuming and rollback of the current release cycle.",
        },
        Rule {
            id: "logs-6y",
            kind: ObjectKind::Logs,
            keep_days: 6 * 365,
            justification: "Security and audit documentation must be retained six years (HIPAA 45 CFR 164.316(b)(2)); logs hold identifiers, not content.",
        },
        Rule {
            id: "embeddings-365d",
            kind: ObjectKind::Embeddings,
            keep_days: 365,
            justification: "Embeddings are derived personal data that can be inverted; kept one year for retrieval indexes, then recomputed or deleted.",
        },
        Rule {
            id: "inference-traces-30d",
            kind: ObjectKind::InferenceTraces,
            keep_days: 30,
            justification: "Inference traces may contain patient inputs; kept 30 days for incident investigation and drift monitoring only.",
        },
    ]
}

/// Where an object stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Deleted; the tombstone is at this index.
    Deleted {
        /// Index of the tombstone entry.
        tombstone: u64,
    },
    /// Past its date but under legal hold: must not be deleted.
    Held,
    /// Past its date: delete now.
    Due,
    /// Will be deleted at its due date.
    Scheduled,
}

/// One line of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The object.
    pub object: Digest,
    /// Its kind.
    pub kind: ObjectKind,
    /// When it was recorded (unix ms) and at which index.
    pub recorded_ms: u64,
    /// Index of the entry that brought it under retention.
    pub index: u64,
    /// When the rule says it goes.
    pub due_ms: u64,
    /// The rule applied.
    pub rule: &'static str,
    /// Status at `now`.
    pub status: Status,
    /// Subjects it was recorded with.
    pub subjects: Vec<Subject>,
}

/// Build the retention plan from the log's entries at time `now_ms`, sorted by due date.
#[must_use]
pub fn plan(entries: &[Entry], rules: &[Rule], now_ms: u64) -> Vec<Planned> {
    let rule_for: BTreeMap<ObjectKind, &Rule> = rules.iter().map(|r| (r.kind, r)).collect();
    let mut objects: BTreeMap<Digest, Planned> = BTreeMap::new();
    let mut tombstones: BTreeMap<&Digest, u64> = BTreeMap::new();
    let mut held: BTreeSet<&Subject> = BTreeSet::new();
    for e in entries {
        let tracked = match &e.action {
            Action::RetentionRegistered { object, kind } => Some((object, *kind)),
            Action::CheckpointArchived { checkpoint, .. } => {
                Some((checkpoint, ObjectKind::Checkpoints))
            }
            Action::DatasetCopied {
                content,
                form: DataForm::Raw,
                ..
            } => Some((content, ObjectKind::RawData)),
            Action::RetentionDeleted { object, .. }
            | Action::CheckpointDestroyed {
                checkpoint: object, ..
            } => {
                tombstones.entry(object).or_insert(e.seq);
                None
            }
            Action::RetentionHoldSet { .. } => {
                held.extend(e.subjects.iter());
                None
            }
            Action::RetentionHoldReleased { .. } => {
                for s in &e.subjects {
                    held.remove(s);
                }
                None
            }
            _ => None,
        };
        if let Some((object, kind)) = tracked {
            let Some(rule) = rule_for.get(&kind) else {
                continue;
            };
            objects.entry(object.clone()).or_insert_with(|| Planned {
                object: object.clone(),
                kind,
                recorded_ms: e.ts_ms,
                index: e.seq,
                due_ms: e
                    .ts_ms
                    .saturating_add(rule.keep_days.saturating_mul(DAY_MS)),
                rule: rule.id,
                status: Status::Scheduled,
                subjects: e.subjects.clone(),
            });
        }
    }
    let mut out: Vec<Planned> = objects
        .into_values()
        .map(|mut p| {
            p.status = if let Some(t) = tombstones.get(&p.object) {
                Status::Deleted { tombstone: *t }
            } else if p.subjects.iter().any(|s| held.contains(s)) {
                Status::Held
            } else if p.due_ms <= now_ms {
                Status::Due
            } else {
                Status::Scheduled
            };
            p
        })
        .collect();
    out.sort_by(|a, b| (a.due_ms, &a.object).cmp(&(b.due_ms, &b.object)));
    out
}

/// A legal hold in force: the entry that set it and the digest of its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Index of the `retention.hold_set` entry.
    pub index: u64,
    /// Digest of the hold order.
    pub order: crate::entry::Digest,
    /// Who set it.
    pub by: String,
}

/// The legal holds in force on subjects whose id is `id` (any kind), from the ledger's entries in
/// order: set by `retention.hold_set`, lifted by `retention.hold_released` on the same subject.
#[must_use]
pub fn holds_on(entries: &[Entry], id: &str) -> Vec<Hold> {
    let mut held: BTreeMap<&crate::entry::Subject, Hold> = BTreeMap::new();
    for e in entries {
        match &e.action {
            Action::RetentionHoldSet { order } => {
                for s in e.subjects.iter().filter(|s| s.id.as_str() == id) {
                    held.insert(
                        s,
                        Hold {
                            index: e.seq,
                            order: order.clone(),
                            by: e.actor.to_string(),
                        },
                    );
                }
            }
            Action::RetentionHoldReleased { .. } => {
                for s in &e.subjects {
                    held.remove(s);
                }
            }
            _ => {}
        }
    }
    held.into_values().collect()
}

/// Why a deletion was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// The object is under legal hold.
    #[error("object {0} is under legal hold: deletion refused")]
    LegalHold(String),
    /// The object is not yet due.
    #[error("object {object} is not due until {due_ms} (unix ms)")]
    NotDue {
        /// The object.
        object: String,
        /// When it is due.
        due_ms: u64,
    },
    /// The object was already deleted.
    #[error("object {0} was already deleted (tombstone at index {1})")]
    AlreadyDeleted(String, u64),
    /// The tombstone could not be written: nothing was deleted.
    #[error(transparent)]
    Ledger(#[from] crate::ledger::AppendError),
    /// The tombstone is malformed.
    #[error(transparent)]
    Entry(#[from] crate::entry::EntryError),
}

/// Delete a due object: write its tombstone first (fail closed), then run `shred` (destroy the
/// object's data key). Refused while the object is held or not yet due.
///
/// # Errors
/// See [`DeleteError`]; on error `shred` has not run.
pub fn delete<T>(
    ledger: &crate::ledger::Ledger,
    item: &Planned,
    actor: crate::entry::Ident,
    now_ms: u64,
    shred: impl FnOnce() -> T,
) -> Result<T, DeleteError> {
    match item.status {
        Status::Held => return Err(DeleteError::LegalHold(item.object.to_string())),
        Status::Scheduled => {
            return Err(DeleteError::NotDue {
                object: item.object.to_string(),
                due_ms: item.due_ms,
            })
        }
        Status::Deleted { tombstone } => {
            return Err(DeleteError::AlreadyDeleted(
                item.object.to_string(),
                tombstone,
            ))
        }
        Status::Due => {}
    }
    let draft = crate::entry::EntryDraft::new(
        actor,
        Action::RetentionDeleted {
            object: item.object.clone(),
            rule: crate::entry::Ident::new(item.rule)?,
            method: crate::entry::Ident::new("crypto-shred")?,
        },
        item.subjects.clone(),
    )?;
    Ok(ledger.record_then(draft, now_ms, |_| shred())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{EntryDraft, Ident, SubjectKind};

    fn e(seq: u64, ts: u64, action: Action, subject: &str) -> Entry {
        EntryDraft::new(
            Ident::new("retention").unwrap(),
            action,
            vec![Subject::new(SubjectKind::Job, subject).unwrap()],
        )
        .unwrap()
        .into_entry(seq, ts)
    }

    #[test]
    fn every_kind_has_a_justified_rule() {
        let rules = default_rules();
        for k in ObjectKind::ALL {
            let r = rules.iter().find(|r| r.kind == k).unwrap();
            assert!(r.justification.len() > 40 && r.keep_days > 0, "{r:?}");
        }
    }

    #[test]
    fn plan_schedules_holds_and_honours_tombstones() {
        let (a, b, c) = (Digest::of(b"a"), Digest::of(b"b"), Digest::of(b"c"));
        let day = DAY_MS;
        let entries = vec![
            e(
                0,
                0,
                Action::CheckpointArchived {
                    checkpoint: a.clone(),
                    zone: Ident::new("z").unwrap(),
                },
                "job-1",
            ),
            e(
                1,
                0,
                Action::RetentionRegistered {
                    object: b.clone(),
                    kind: ObjectKind::InferenceTraces,
                },
                "job-2",
            ),
            e(
                2,
                0,
                Action::RetentionRegistered {
                    object: c.clone(),
                    kind: ObjectKind::Logs,
                },
                "job-3",
            ),
            e(
                3,
                day,
                Action::RetentionHoldSet {
                    order: Digest::of(b"court order"),
                },
                "job-2",
            ),
            e(
                4,
                2 * day,
                Action::RetentionDeleted {
                    object: a.clone(),
                    rule: Ident::new("checkpoints-90d").unwrap(),
                    method: Ident::new("crypto-shred").unwrap(),
                },
                "job-1",
            ),
        ];
        let p = plan(&entries, &default_rules(), 100 * day);
        let by = |d: &Digest| p.iter().find(|x| &x.object == d).unwrap();
        assert_eq!(by(&a).status, Status::Deleted { tombstone: 4 });
        assert_eq!(by(&b).status, Status::Held, "past 30 days but under hold");
        assert_eq!(by(&b).due_ms, 30 * day);
        assert_eq!(by(&c).status, Status::Scheduled);
        // Releasing the hold makes the trace due.
        let mut more = entries.clone();
        more.push(e(
            5,
            3 * day,
            Action::RetentionHoldReleased {
                order: Digest::of(b"release"),
            },
            "job-2",
        ));
        let p = plan(&more, &default_rules(), 100 * day);
        assert_eq!(
            p.iter().find(|x| x.object == b).unwrap().status,
            Status::Due
        );
        // Before the due date nothing is due.
        let p = plan(&more, &default_rules(), 10 * day);
        assert!(p.iter().all(|x| !matches!(x.status, Status::Due)));
    }
}
