//! The control plane's points of action in the evidence ledger: the fleet and policy set it
//! starts with, each submission, each placement decision (with its policy hash and reasons) and
//! each burst (with the business justification, stored as a document by its digest).
//!
//! Every method returns only once the entry is durable; an error means the action it records
//! must not happen (the callers refuse it).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tidegate_ledger::ledger::put_document;
use tidegate_ledger::{
    open_ledger, Action, AnyLedger, Decision, Digest, EntryDraft, Ident, LedgerOptions,
    LedgerTarget, Subject, SubjectKind,
};
use tidegate_model::{Fleet, Input, JobSpec};
use tidegate_placement::Placement;
use tidegate_policy::PolicyEngine;
use tidegate_store::JobId;

const ACTOR: &str = "tidegate-control-plane";

/// The ledger of one data directory, as the control plane writes it.
#[derive(Debug)]
pub struct Evidence {
    ledger: RwLock<Arc<AnyLedger>>,
    target: LedgerTarget,
    /// When a stopped ledger was last reopened (at most once a second).
    reopened: Mutex<Instant>,
    data_dir: PathBuf,
    /// The hash of the policy set in force (changes when a new fleet is put in force).
    policy_hash: RwLock<Digest>,
    /// The placement decision last recorded for each job by this process: a leader rebuilding
    /// (after losing its lease, or a fleet change that decides the same) records a decision once,
    /// and a new decision (another policy set, zone or pool) again.
    placed: Mutex<std::collections::HashMap<String, Digest>>,
    /// Whether the latest append was durable (`/healthz`).
    health: crate::health::Component,
}

/// Most placement decisions remembered before the memo starts afresh.
const PLACED_MEMO: usize = 200_000;

/// Shortest time between two attempts to reopen a stopped ledger.
const REOPEN_EVERY: Duration = Duration::from_secs(1);

fn ident(s: &str) -> Result<Ident, String> {
    Ident::new(s).map_err(|e| format!("`{s}` cannot be recorded as an identifier: {e}"))
}

/// A rule code as an identifier: characters an identifier cannot hold become `-`.
fn code_ident(code: &str) -> String {
    code.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-' | '@' | '/') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn subject(kind: SubjectKind, id: &str) -> Result<Subject, String> {
    Subject::new(kind, id).map_err(|e| format!("`{id}` cannot be recorded as a subject: {e}"))
}

fn now_ms() -> u64 {
    tidegate_vocab::Timestamp::now().unix_millis()
}

impl Evidence {
    /// Opens the ledger (segment files under `data_dir`, or a PostgreSQL schema of this
    /// replica's own) and records the fleet and policy set the control plane starts with (the
    /// policy document is stored under its hash, in `data_dir`).
    pub fn open(
        data_dir: &Path,
        target: &LedgerTarget,
        fleet: &Fleet,
        policy: &PolicyEngine,
    ) -> Result<Self, String> {
        let ledger =
            open_ledger(data_dir, target, LedgerOptions::default()).map_err(|e| match target {
                LedgerTarget::Files => format!(
                    "cannot open the evidence ledger in {}: {e}",
                    data_dir.display()
                ),
                LedgerTarget::Postgres { .. } => {
                    format!("cannot open the evidence ledger in PostgreSQL: {e}")
                }
            })?;
        let ev = Self {
            ledger: RwLock::new(Arc::new(ledger)),
            target: target.clone(),
            reopened: Mutex::new(Instant::now()),
            data_dir: data_dir.to_owned(),
            policy_hash: RwLock::new(Digest::of(b"")),
            placed: Mutex::new(std::collections::HashMap::new()),
            health: crate::health::Component::new("ledger"),
        };
        ev.rules_loaded(fleet, policy)?;
        Ok(ev)
    }

    /// A fleet and policy set are put in force: the policy document is stored under its hash,
    /// and `fleet.loaded` and `policy.loaded` are durable before later entries carry the hash.
    pub fn rules_loaded(&self, fleet: &Fleet, policy: &PolicyEngine) -> Result<(), String> {
        let doc = put_document(&self.data_dir, policy.document()).map_err(|e| {
            format!(
                "cannot store the policy document in {}: {e}",
                self.data_dir.display()
            )
        })?;
        let policy_hash = Digest::from_hex(policy.hash()).map_err(|e| e.to_string())?;
        if doc != policy_hash {
            return Err("the policy document does not hash to the policy hash".into());
        }
        let fleet_hash = Digest::from_hex(&fleet.fleet_hash).map_err(|e| e.to_string())?;
        self.append(
            Action::FleetLoaded { fleet_hash },
            vec![subject(SubjectKind::Fleet, &fleet.name)?],
        )?;
        self.append(
            Action::PolicyLoaded {
                policy_hash: policy_hash.clone(),
            },
            vec![subject(SubjectKind::Policy, "placement")?],
        )?;
        *self
            .policy_hash
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = policy_hash;
        Ok(())
    }

    fn policy_hash(&self) -> Digest {
        self.policy_hash
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn current(&self) -> Arc<AnyLedger> {
        self.ledger
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Appends an entry; durable when this returns `Ok`. A ledger that stopped after a write
    /// failure (a full disk, a database that went away) is reopened — verified again from its
    /// storage — at most once a second, and the entry tried once more; until then every action
    /// is refused.
    fn append(&self, action: Action, subjects: Vec<Subject>) -> Result<(), String> {
        let draft = EntryDraft::new(ident(ACTOR)?, action, subjects).map_err(|e| e.to_string())?;
        self.append_draft(draft)
    }

    fn append_draft(&self, draft: EntryDraft) -> Result<(), String> {
        self.append_draft_at(draft, None)
    }

    /// Appends `draft` stamped `ts_ms` (the current time when `None`), reopening a stopped
    /// ledger as [`Self::append`] does.
    fn append_draft_at(&self, draft: EntryDraft, ts_ms: Option<u64>) -> Result<(), String> {
        let ts = || ts_ms.unwrap_or_else(now_ms);
        let ledger = self.current();
        let out = match ledger.append(draft.clone(), ts()) {
            Ok(_) => Ok(()),
            Err(first) => match self.reopen(&ledger) {
                Some(fresh) => fresh
                    .append(draft, ts())
                    .map(|_| ())
                    .map_err(|e| format!("{}: {e}", self.describe())),
                None => Err(format!("{}: {first}", self.describe())),
            },
        };
        match &out {
            Ok(()) => self.health.succeeded(true),
            Err(e) => {
                tracing::warn!(error = %e, "the evidence ledger cannot record an entry");
                self.health.failed(
                    "an entry could not be made durable: the ledger's storage is out of space, \
                     has an I/O error or cannot be reached",
                    true,
                );
            }
        }
        out
    }

    /// What the ledger is kept in, for messages that must not name paths: `files` or
    /// `PostgreSQL`.
    pub fn storage(&self) -> &'static str {
        match &self.target {
            LedgerTarget::Files => "files",
            LedgerTarget::Postgres { .. } => "PostgreSQL",
        }
    }

    /// Whether the ledger's latest append was durable.
    pub fn health(&self) -> &crate::health::Component {
        &self.health
    }

    /// Where the ledger lives, for messages.
    fn describe(&self) -> String {
        match &self.target {
            LedgerTarget::Files => format!(
                "ledger in {}",
                tidegate_vocab::DataDir::new(&self.data_dir)
                    .ledger()
                    .display()
            ),
            LedgerTarget::Postgres { schema, .. } => format!(
                "ledger in PostgreSQL (schema {})",
                schema.as_deref().unwrap_or("default")
            ),
        }
    }

    fn reopen(&self, failed: &Arc<AnyLedger>) -> Option<Arc<AnyLedger>> {
        let mut last = self
            .reopened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.current();
        if !Arc::ptr_eq(&current, failed) {
            return Some(current); // someone else reopened it meanwhile
        }
        if last.elapsed() < REOPEN_EVERY {
            return None;
        }
        *last = Instant::now();
        let _ = failed.close();
        match open_ledger(&self.data_dir, &self.target, LedgerOptions::default()) {
            Ok(l) => {
                tracing::warn!(
                    "the evidence ledger stopped after a write failure and was reopened"
                );
                let fresh = Arc::new(l);
                *self
                    .ledger
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh.clone();
                Some(fresh)
            }
            Err(e) => {
                tracing::warn!(error = %e, "the evidence ledger cannot be reopened yet; actions stay refused");
                None
            }
        }
    }

    fn job_subjects(id: &JobId, spec: &JobSpec) -> Result<Vec<Subject>, String> {
        let mut subjects = vec![subject(SubjectKind::Job, id.as_str())?];
        for input in &spec.inputs {
            match input {
                Input::Dataset(d) => subjects.push(subject(SubjectKind::Dataset, &d.to_string())?),
                Input::Artifact(a) => subjects.push(subject(SubjectKind::Artifact, a)?),
            }
        }
        // Every subject is recorded, or the action is refused: never a silent cut.
        if subjects.len() > tidegate_ledger::entry::MAX_SUBJECTS - 1 {
            return Err(format!(
                "job {id} names {} inputs; its evidence entries can name at most {}",
                subjects.len() - 1,
                tidegate_ledger::entry::MAX_SUBJECTS - 2
            ));
        }
        Ok(subjects)
    }

    /// A job was submitted (the manifest's digest; never its content).
    pub fn submitted(&self, id: &JobId, manifest: &[u8]) -> Result<(), String> {
        self.append(
            Action::JobSubmitted {
                spec: Digest::of(manifest),
            },
            vec![subject(SubjectKind::Job, id.as_str())?],
        )
    }

    /// The placement decision for a job: where it may run and the policies that decided.
    pub fn placed(
        &self,
        id: &JobId,
        spec: &JobSpec,
        p: &Placement,
        fleet: &Fleet,
    ) -> Result<(), String> {
        let mut subjects = Self::job_subjects(id, spec)?;
        let (decision, zone, pool) = match p.decided(fleet) {
            Some((zone, pool)) => (Decision::Allowed, zone, pool),
            None => (Decision::Refused, "none", "none"),
        };
        if decision == Decision::Allowed {
            subjects.push(subject(SubjectKind::Zone, zone)?);
        }
        let reasons = p
            .reason_codes(tidegate_ledger::entry::MAX_LIST)
            .iter()
            .map(|r| ident(r))
            .collect::<Result<Vec<_>, _>>()?;
        let action = Action::JobPlaced {
            decision,
            zone: ident(zone)?,
            pool: ident(pool)?,
            reasons,
            policy_hash: self.policy_hash(),
        };
        let decided = Digest::of(
            serde_json::to_string(&(&action, &subjects))
                .map_err(|e| e.to_string())?
                .as_bytes(),
        );
        let mut memo = self
            .placed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if memo.get(id.as_str()) == Some(&decided) {
            return Ok(()); // the same decision is already in the ledger
        }
        self.append(action, subjects)?;
        if memo.len() >= PLACED_MEMO {
            memo.clear();
        }
        memo.insert(id.as_str().to_owned(), decided);
        Ok(())
    }

    /// A run's placement no longer holds (recorded before the run is stopped or withheld).
    pub fn revoked(
        &self,
        id: &JobId,
        zone: &str,
        pool: &str,
        run: &str,
        reasons: &[String],
    ) -> Result<(), String> {
        let reasons = reasons
            .iter()
            .take(tidegate_ledger::entry::MAX_LIST)
            .map(|r| ident(&code_ident(r)))
            .collect::<Result<Vec<_>, _>>()?;
        self.append(
            Action::JobRevoked {
                zone: ident(zone)?,
                pool: ident(pool)?,
                run: ident(run)?,
                reasons,
                policy_hash: self.policy_hash(),
            },
            vec![
                subject(SubjectKind::Job, id.as_str())?,
                subject(SubjectKind::Zone, zone)?,
            ],
        )
    }

    /// A job was admitted to `zone`/`pool` as run `run`, under the policy set in force (recorded
    /// after the admission won in the store and before the run is launched).
    pub fn admitted(&self, id: &JobId, zone: &str, pool: &str, run: &str) -> Result<(), String> {
        self.append(
            Action::JobAdmitted {
                zone: ident(zone)?,
                pool: ident(pool)?,
                run: ident(run)?,
                policy_hash: self.policy_hash(),
            },
            vec![
                subject(SubjectKind::Job, id.as_str())?,
                subject(SubjectKind::Zone, zone)?,
            ],
        )
    }

    /// Something happened to a run (`started`, `exited-0`, `preempted`, ...), recorded before the
    /// control plane acts on it.
    pub fn run_event(
        &self,
        id: &JobId,
        zone: &str,
        pool: &str,
        run: &str,
        event: &str,
    ) -> Result<(), String> {
        self.append(
            Action::JobRun {
                zone: ident(zone)?,
                pool: ident(pool)?,
                run: ident(run)?,
                event: ident(event)?,
            },
            vec![
                subject(SubjectKind::Job, id.as_str())?,
                subject(SubjectKind::Zone, zone)?,
            ],
        )
    }

    /// A job burst to public capacity, with its business justification (stored as a document).
    pub fn burst(
        &self,
        id: &JobId,
        zone: &str,
        pool: &str,
        justification: &str,
    ) -> Result<(), String> {
        if justification.trim().is_empty() {
            return Err("a burst needs a business justification and this job has none".into());
        }
        let doc = put_document(&self.data_dir, justification.as_bytes())
            .map_err(|e| format!("cannot store the justification: {e}"))?;
        self.append(
            Action::JobBurst {
                zone: ident(zone)?,
                pool: ident(pool)?,
                justification: doc,
            },
            vec![
                subject(SubjectKind::Job, id.as_str())?,
                subject(SubjectKind::Zone, zone)?,
            ],
        )
    }

    /// A user token was issued (its id and what it grants; never the token).
    pub fn token_issued(
        &self,
        issuer: &str,
        token_id: &str,
        expires_s: u64,
        role: &str,
        team: &str,
    ) -> Result<(), String> {
        let grant = TokenGrant::User { role, team };
        let (action, subjects) = token_issued_entry(token_id, expires_s, &grant)?;
        let draft = EntryDraft::new(ident(issuer)?, action, subjects).map_err(|e| e.to_string())?;
        self.append_draft(draft)
    }

    /// A job token was issued (its id, its job, zone, inputs and output prefix; never the
    /// token): the job's bundle carries it.
    pub fn job_token_issued(
        &self,
        issuer: &str,
        token_id: &str,
        expires_s: u64,
        grant: &TokenGrant<'_>,
    ) -> Result<(), String> {
        let (action, subjects) = token_issued_entry(token_id, expires_s, grant)?;
        let draft = EntryDraft::new(ident(issuer)?, action, subjects).map_err(|e| e.to_string())?;
        self.append_draft(draft)
    }

    /// Records `ring` as the token keyring in force (kept as a ledger document): what a control
    /// plane does when it starts on a keyring its ledger never recorded.
    pub fn token_keyring_in_force(
        &self,
        ring: &tidegate_identity::RootKeyring,
    ) -> Result<Digest, String> {
        self.token_keyring_changed(
            "tidegate-control-plane",
            "token-keyring",
            TOKEN_KEYRING_IN_FORCE,
            ring,
        )
    }

    /// Records a change of the token keyring by `actor` (`change` names it, starting with
    /// [`TOKEN_KEY_CHANGE_PREFIX`]), with the keyring it leaves kept as a ledger document;
    /// returns that keyring's digest. Written before the change takes effect.
    pub fn token_keyring_changed(
        &self,
        actor: &str,
        key_id: &str,
        change: &str,
        ring: &tidegate_identity::RootKeyring,
    ) -> Result<Digest, String> {
        let json = ring.to_json().map_err(|e| e.to_string())?;
        let digest = put_document(&self.data_dir, json.as_bytes())
            .map_err(|e| format!("keeping the token keyring as evidence: {e}"))?;
        let draft = EntryDraft::new(
            ident(actor)?,
            Action::KeyChanged {
                key_id: ident(key_id)?,
                change: ident(change)?,
                keyring: Some(digest.clone()),
            },
            Vec::new(),
        )
        .map_err(|e| e.to_string())?;
        self.append_draft(draft)?;
        Ok(digest)
    }

    /// A person approved a job for `scope` (`run`, `burst`, `export`); the approver is the actor.
    pub fn approved(&self, id: &JobId, approver: &str, scope: &str) -> Result<(), String> {
        let draft = EntryDraft::new(
            ident(approver)?,
            Action::JobApproved {
                scope: ident(scope)?,
            },
            vec![subject(SubjectKind::Job, id.as_str())?],
        )
        .map_err(|e| e.to_string())?;
        self.append_draft(draft)
    }

    /// The data directory the ledger (and the artifact store beside it) lives in.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The dataset versions registered in the data directory, each exactly as the evidence
    /// ledger recorded it ([`tidegate_data::Registry::list_recorded`]): a registry row the ledger
    /// does not have, or that says anything else, refuses every decision that would read it.
    /// Registrations are recorded where `dataset register` records them: this ledger when it is
    /// the data directory's file ledger; with PostgreSQL, the data directory's sealed file
    /// ledger (the command's), read as offline commands read it.
    ///
    /// # Errors
    /// [`RegistryRead::Unavailable`] when the ledger cannot be read;
    /// [`RegistryRead::Refused`] naming the version and field of a row it does not vouch for.
    pub fn registered_versions(&self) -> Result<Vec<tidegate_data::DatasetVersion>, RegistryRead> {
        let entries = self.registry_entries()?;
        tidegate_data::Registry::open(&self.data_dir)
            .list_recorded(&entries)
            .map_err(|e| match e {
                tidegate_data::DataError::Io { .. } => RegistryRead::Unavailable(e.to_string()),
                other => RegistryRead::Refused(other.to_string()),
            })
    }

    /// The sealed entries the registry is checked against ([`Self::registered_versions`]).
    fn registry_entries(&self) -> Result<Vec<Vec<u8>>, RegistryRead> {
        match self.target {
            LedgerTarget::Files => tidegate_artifacts::ledger_sink::EntryWriter::read_entries(self)
                .map_err(RegistryRead::Unavailable),
            LedgerTarget::Postgres { .. } => {
                tidegate_artifacts::ArtifactStore::open(&self.data_dir)
                    .and_then(|s| s.evidence_entries())
                    .map_err(|e| RegistryRead::Unavailable(e.to_string()))
            }
        }
    }

    /// Adds the registered versions, as the evidence ledger recorded them, to `fleet`.
    ///
    /// # Errors
    /// As [`Self::registered_versions`].
    pub fn merge_registered(&self, fleet: &mut Fleet) -> Result<usize, RegistryRead> {
        let entries = self.registry_entries()?;
        tidegate_data::Registry::open(&self.data_dir)
            .merge_into(fleet, &entries)
            .map_err(|e| match e {
                tidegate_data::DataError::Io { .. } => RegistryRead::Unavailable(e.to_string()),
                other => RegistryRead::Refused(other.to_string()),
            })
    }

    /// Publishes a signed checkpoint over everything recorded so far.
    pub fn checkpoint(&self) -> Result<(), String> {
        self.current()
            .publish_checkpoint()
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Seals a final checkpoint and closes the ledger: later appends fail (and so refuse their
    /// actions), and another process may open it.
    pub fn close(&self) -> Result<(), String> {
        self.current().close().map_err(|e| e.to_string())
    }

    /// Entries in the ledger.
    pub fn len(&self) -> u64 {
        self.current().len()
    }

    /// Whether the ledger is empty.
    pub fn is_empty(&self) -> bool {
        self.current().is_empty()
    }
}

/// Why the registered datasets could not be read as the ledger recorded them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryRead {
    /// The ledger or the registry file cannot be read for now.
    #[error("the dataset registry cannot be read: {0}")]
    Unavailable(String),
    /// A registry row the ledger does not vouch for (names the version and the field).
    #[error("the dataset registry is not what the evidence ledger recorded: {0}")]
    Refused(String),
}

/// The artifact store's ledger sink writes through the control plane's handle, so artifact events
/// from the API land in the same ledger as everything else, with the same reopen-once-a-second
/// behaviour; an entry that cannot be written refuses the artifact operation.
impl tidegate_artifacts::ledger_sink::EntryWriter for Evidence {
    fn write_entry(&self, draft: EntryDraft, ts_ms: u64) -> Result<(), String> {
        self.append_draft_at(draft, Some(ts_ms))
    }

    fn read_entries(&self) -> Result<Vec<Vec<u8>>, String> {
        self.current().entries()
    }
}

/// The `change` every `key.changed` entry about the token root keyring names starts with; the
/// artifact signing keyring's changes never do.
pub const TOKEN_KEY_CHANGE_PREFIX: &str = "token-";

/// The change recorded when a control plane starts on a token keyring its ledger never
/// recorded: from then on, that keyring is the one in force.
pub const TOKEN_KEYRING_IN_FORCE: &str = "token-keyring-in-force";

/// The digest a token keyring is recorded under: of its canonical JSON (the form the key store
/// writes), so the same keys, validity and revocations always give the same digest.
///
/// # Errors
/// When the keyring cannot be serialized.
pub fn token_keyring_digest(ring: &tidegate_identity::RootKeyring) -> Result<Digest, String> {
    let json = ring.to_json().map_err(|e| e.to_string())?;
    Ok(Digest::of(json.as_bytes()))
}

/// The token keyring the ledger recorded last (`entries` are sealed entries, oldest first): the
/// index of its `key.changed` entry and the keyring's digest; `None` when none was recorded.
///
/// # Errors
/// When an entry does not decode.
pub fn recorded_token_keyring(entries: &[Vec<u8>]) -> Result<Option<(u64, Digest)>, String> {
    let mut last = None;
    for bytes in entries {
        let e = tidegate_ledger::Entry::decode(bytes).map_err(|e| e.to_string())?;
        if let Action::KeyChanged {
            change,
            keyring: Some(d),
            ..
        } = &e.action
        {
            if change.as_str().starts_with(TOKEN_KEY_CHANGE_PREFIX) {
                last = Some((e.seq, d.clone()));
            }
        }
    }
    Ok(last)
}

/// What a minted token grants, as its `token.issued` entry records it.
#[derive(Debug, Clone, Copy)]
pub enum TokenGrant<'a> {
    /// A user's token: a role for a team.
    User {
        /// The role.
        role: &'a str,
        /// The team.
        team: &'a str,
    },
    /// A job's token: its inputs, read in one zone, and where it writes.
    Job {
        /// The job.
        job: &'a str,
        /// The zone it is valid in.
        zone: &'a str,
        /// What it may read (`dataset:NAME@VERSION`, `checkpoint:…`, `artifact:…`).
        inputs: &'a [String],
        /// The prefix it may write under.
        output_prefix: &'a str,
        /// What each input is, as the ledger names it ([`token_input_subjects`]): the job's
        /// bundle then carries the inputs' provenance.
        input_subjects: &'a [Subject],
    },
}

/// The ledger subject each job-token input names: a dataset version as a dataset, a digest as
/// the artifact it is in `store` (a model or checkpoint by its kind, as its own entries name
/// it).
///
/// # Errors
/// When an input cannot be named in the ledger.
pub fn token_input_subjects(
    inputs: &[String],
    store: &tidegate_artifacts::ArtifactStore,
) -> Result<Vec<Subject>, String> {
    let mut out = Vec::new();
    for input in inputs {
        let (kind, id) = input
            .split_once(':')
            .unwrap_or(("artifact", input.as_str()));
        let kind = match kind {
            "dataset" => SubjectKind::Dataset,
            "checkpoint" => SubjectKind::Checkpoint,
            "model" => SubjectKind::Model,
            _ => match id
                .parse::<tidegate_artifacts::Digest>()
                .ok()
                .and_then(|d| store.record(&d).ok())
            {
                Some(r) if r.kind == tidegate_artifacts::ArtifactKind::Model => SubjectKind::Model,
                Some(r) if r.kind == tidegate_artifacts::ArtifactKind::Checkpoint => {
                    SubjectKind::Checkpoint
                }
                _ => SubjectKind::Artifact,
            },
        };
        let s = subject(kind, id)?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// The `token.issued` action and its subjects for a token (the token, and for a job's token
/// the job and its zone), shared by the control plane and the offline `token mint`. Every grant
/// is recorded or the token is not issued: an input list longer than an entry holds is refused,
/// never cut.
///
/// # Errors
/// When a part of the grant cannot be recorded.
pub fn token_issued_entry(
    token_id: &str,
    expires_s: u64,
    grant: &TokenGrant<'_>,
) -> Result<(Action, Vec<Subject>), String> {
    let mut subjects = vec![subject(SubjectKind::Token, token_id)?];
    let scope = match grant {
        TokenGrant::User { role, team } => vec![
            ident(&format!("role:{role}"))?,
            ident(&format!("team:{team}"))?,
        ],
        TokenGrant::Job {
            job,
            zone,
            inputs,
            output_prefix,
            input_subjects,
        } => {
            subjects.push(subject(SubjectKind::Job, job)?);
            subjects.push(subject(SubjectKind::Zone, zone)?);
            subjects.extend(input_subjects.iter().cloned());
            let mut scope = vec![
                ident(&format!("job:{job}"))?,
                ident(&format!("zone:{zone}"))?,
                ident(&format!("write:{output_prefix}"))?,
            ];
            for i in *inputs {
                scope.push(ident(&format!("read:{i}"))?);
            }
            scope
        }
    };
    Ok((
        Action::TokenIssued {
            token_id: ident(token_id)?,
            expires_ms: expires_s.saturating_mul(1000),
            scope,
        },
        subjects,
    ))
}
