//! Offline commands that change a data directory (artifacts, sanitizer runs, datasets,
//! transfers, the training demo's sync-back) record their events in its evidence ledger first:
//! one ledger opened per command, artifact stores (the data directory's own and each zone's)
//! writing through it, and a signed checkpoint published when the command ends. If the ledger
//! cannot be opened — for instance `tidegate up` holds it — the command is refused before
//! anything changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::miette;
use tidegate_artifacts::ledger_sink::{EntryWriter, LedgerSink};
use tidegate_artifacts::ArtifactStore;
use tidegate_ledger::{Action, EntryDraft, Ident, Ledger, LedgerOptions, Subject};

/// Records one entry in `data_dir`'s evidence ledger (opened, appended, checkpointed, released)
/// and returns its index: for a command whose one action must be evidence before it takes
/// effect (key changes, minted tokens).
///
/// # Errors
/// When the entry is malformed or cannot be made durable: the action must then not happen.
pub fn record_one(
    data_dir: &Path,
    now: u64,
    actor: &str,
    action: Action,
    subjects: Vec<Subject>,
) -> miette::Result<u64> {
    let led = Ledgered::open(data_dir, now)?;
    let index = led.record(actor, action, subjects)?;
    led.close()?;
    Ok(index)
}

/// The sealed entries of `data_dir`'s evidence ledger (every commit checked against its public
/// key); none when it holds none. A ledger with entries but no public key is refused: nothing
/// would vouch for what it says.
///
/// # Errors
/// When the ledger cannot be read or does not verify.
pub fn sealed_entries(data_dir: &Path) -> miette::Result<Vec<Vec<u8>>> {
    use tidegate_ledger::{keys, ledger};
    let dir = ledger::ledger_dir(data_dir);
    let has_entries = dir.is_dir()
        && ledger::list_segments(&dir)
            .map_err(|e| miette!("cannot read the evidence ledger in {}: {e}", dir.display()))?
            .iter()
            .any(|(p, _)| {
                std::fs::metadata(p)
                    .is_ok_and(|m| m.len() > tidegate_ledger::segment::SEGMENT_HEADER as u64)
            });
    if !has_entries {
        return Ok(Vec::new());
    }
    let public = keys::public_path(&ledger::key_path(data_dir));
    let verifier = keys::load_verifier(&public).map_err(|e| {
        miette!(
            "the evidence ledger in {} holds entries but its public key cannot be read ({e}); nothing vouches for them",
            dir.display()
        )
    })?;
    ledger::read_sealed(&dir, &verifier, true)
        .map(|s| s.log.entries)
        .map_err(|e| {
            miette!(
                "the evidence ledger in {} does not verify: {e}",
                dir.display()
            )
        })
}

/// A key change as a ledger action.
///
/// # Errors
/// When the key id cannot be recorded as an identifier.
pub fn key_changed(key_id: &str, change: &str) -> miette::Result<Action> {
    let id = |s: &str| Ident::new(s).map_err(|e| miette!("{s:?} cannot be recorded: {e}"));
    Ok(Action::KeyChanged {
        key_id: id(key_id)?,
        change: id(change)?,
        keyring: None,
    })
}

/// The evidence ledger of one data directory, held for one command.
pub struct Ledgered {
    ledger: Arc<Ledger>,
    data_dir: PathBuf,
    now: u64,
}

pub use tidegate_artifacts::zone_store_dir;

impl Ledgered {
    /// Opens the ledger of `data_dir`, stamping entries `now`.
    ///
    /// # Errors
    /// When the ledger cannot be opened (nothing has changed).
    pub fn open(data_dir: &Path, now: u64) -> miette::Result<Self> {
        let ledger = Ledger::open(data_dir, LedgerOptions::default()).map_err(|e| {
            miette!(
                help = "changes are recorded in the evidence ledger first, so nothing was changed; if `tidegate up` runs on this data directory, stop it or use another --data-dir",
                "cannot open the evidence ledger in {}: {e}",
                data_dir.display()
            )
        })?;
        Ok(Self {
            ledger: Arc::new(ledger),
            data_dir: data_dir.to_path_buf(),
            now,
        })
    }

    /// Opens the ledger of `data_dir`, or `None` when another process (a running
    /// `tidegate up`) holds it: the caller then acts through that process's API, which records.
    ///
    /// # Errors
    /// When the ledger cannot be opened for another reason (nothing has changed).
    pub fn open_unless_held(data_dir: &Path, now: u64) -> miette::Result<Option<Self>> {
        match Ledger::open(data_dir, LedgerOptions::default()) {
            Ok(ledger) => Ok(Some(Self {
                ledger: Arc::new(ledger),
                data_dir: data_dir.to_path_buf(),
                now,
            })),
            Err(tidegate_ledger::OpenError::Locked(_)) => Ok(None),
            Err(e) => Err(miette!(
                help = "changes are recorded in the evidence ledger first, so nothing was changed",
                "cannot open the evidence ledger in {}: {e}",
                data_dir.display()
            )),
        }
    }

    /// The artifact store rooted at `dir` (the store of `zone`, when given: its entries name the
    /// zone), recording into this ledger.
    ///
    /// # Errors
    /// When the store cannot be opened.
    pub fn store(&self, dir: &Path, zone: Option<&str>) -> miette::Result<ArtifactStore> {
        let err = |e: tidegate_artifacts::ArtifactError| {
            miette!("artifact store in {}: {e}", dir.display())
        };
        let store = ArtifactStore::open(dir).map_err(err)?;
        let writer: Arc<dyn EntryWriter> = Arc::clone(&self.ledger) as Arc<dyn EntryWriter>;
        let mut sink = LedgerSink::new(dir, writer, self.now)
            .map_err(err)?
            .documents_in(&self.data_dir);
        if let Some(z) = zone {
            sink = sink.in_zone(z).map_err(err)?;
        }
        Ok(store.with_event_sink(Box::new(sink)))
    }

    /// The data directory's own store.
    ///
    /// # Errors
    /// As [`Self::store`].
    pub fn home_store(&self) -> miette::Result<ArtifactStore> {
        self.store(&self.data_dir, None)
    }

    /// The store of `zone`.
    ///
    /// # Errors
    /// As [`Self::store`].
    pub fn zone_store(&self, zone: &str) -> miette::Result<ArtifactStore> {
        self.store(&zone_store_dir(&self.data_dir, zone), Some(zone))
    }

    /// Appends one entry stamped with this command's time and returns its index.
    ///
    /// # Errors
    /// When the entry is malformed or cannot be made durable: its action must then not happen.
    pub fn record(
        &self,
        actor: &str,
        action: Action,
        subjects: Vec<Subject>,
    ) -> miette::Result<u64> {
        let actor = Ident::new(actor)
            .map_err(|e| miette!("{actor:?} cannot be recorded as the actor: {e}"))?;
        let draft = EntryDraft::new(actor, action, subjects).map_err(|e| miette!("{e}"))?;
        self.ledger
            .append(draft, self.now.saturating_mul(1000))
            .map(|r| r.index)
            .map_err(|e| miette!("the evidence ledger cannot record it, so it was not done: {e}"))
    }

    /// The data directory whose ledger this is.
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Publishes a signed checkpoint file and releases the ledger. Every entry recorded is
    /// already durable and sealed by its signed commit in the log itself, so a checkpoint file
    /// that cannot be written (a full disk) is a warning, never a failure of what was done: the
    /// command's outcome is the outcome of its action.
    ///
    /// # Errors
    /// None today; kept fallible for callers.
    pub fn close(self) -> miette::Result<()> {
        if let Err(e) = self.ledger.close() {
            eprintln!(
                "warning: the evidence ledger's checkpoint file could not be written ({e}); every entry recorded is sealed in the log itself, and `tidegate audit checkpoint` writes the file once there is room"
            );
        }
        Ok(())
    }
}
