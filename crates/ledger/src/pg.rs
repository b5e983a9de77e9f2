//! The ledger in PostgreSQL: the same entries, Merkle hashing, signed checkpoints and proofs as
//! the file ledger, for control planes that keep their state in a shared database.
//!
//! Tables (in `PgLedgerOptions::schema` when given, created if missing):
//! - `ledger_entries (idx bigint primary key, entry bytea, leaf bytea)`: the canonical entry
//!   bytes exactly as the file ledger stores them, and the leaf hash computed at append (so an
//!   `UPDATE` of the bytes alone is named by index; rewriting both is caught by the signed roots);
//! - `ledger_checkpoints (size bigint primary key, note text)`: C2SP signed notes.
//!
//! One writer: [`PgLedger::open`] takes a session advisory lock keyed by the schema on the
//! connection it appends with, and holds it while open. A second writer (another replica) is
//! refused with [`OpenError::DatabaseLocked`], or waits up to `PgLedgerOptions::lock_wait`. As
//! a second fence, every batch checks inside its transaction that the table ends where the writer
//! believes it does, and the primary key refuses a second row at an index: two writers cannot
//! interleave or fork the log even if the lock were lost.
//!
//! Appends use group commit like the file ledger: a writer thread takes every queued draft as one
//! batch, inserts it in one transaction (`unnest` of the batch's arrays) and answers each caller
//! only after `COMMIT` returned (durable under the default `synchronous_commit = on`). When the
//! transaction cannot be committed every caller in the batch gets [`AppendError::Database`] and
//! the ledger stops: later appends are refused until it is reopened (fail closed). A commit whose
//! answer was lost (the connection dropped during `COMMIT`) may have landed: the action was
//! refused although its entry exists, which is the safe direction (recorded but not done).
//!
//! [`PgLog`] reads a ledger database for `tidegate audit`: proofs, checkpoints, and
//! [`PgLog::verify`], the same checks as [`crate::verify`] naming the first bad index.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::{Client, Config, NoTls};

use crate::checkpoint::{Checkpoint, NoteSigner, NoteVerifier, SignedNote};
use crate::entry::{EntryDraft, EntryError, PreparedEntry};
use crate::ledger::{
    read_checkpoint, AppendError, OpenError, PendingAppend, PublishError, Receipt,
};
use crate::merkle::{leaf_hash, Hash, MerkleTree};
use crate::verify::{check_checkpoints, check_entries, Depth, VerifyFailure, VerifyReport};

/// Advisory lock key taken while creating the tables ("tgledger").
const SETUP_LOCK: i64 = 0x7467_6c65_6467_6572;

/// Tunables for [`PgLedger::open`] and [`PgLog::connect`].
#[derive(Debug, Clone)]
pub struct PgLedgerOptions {
    /// Schema holding the tables (created if missing); `None`: the connection's `search_path`.
    pub schema: Option<String>,
    /// Most entries committed by one transaction.
    pub max_batch: usize,
    /// Kept for configuration compatibility: every batch now commits with its own signed
    /// checkpoint, whatever this says.
    pub checkpoint_every: Option<u64>,
    /// How long to wait for another writer to let go of the ledger (zero: refuse at once).
    pub lock_wait: Duration,
    /// Limit on connecting (unless the URL sets `connect_timeout`).
    pub connect_timeout: Duration,
}

impl Default for PgLedgerOptions {
    fn default() -> Self {
        Self {
            schema: None,
            max_batch: 4096,
            checkpoint_every: Some(4096),
            lock_wait: Duration::ZERO,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

pub use crate::backend::redact;

fn db(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    }
}

fn connect(url: &str, opts: &PgLedgerOptions) -> Result<(Client, String), OpenError> {
    let location = match &opts.schema {
        Some(s) => format!("{} (schema {s})", redact(url)),
        None => redact(url),
    };
    let err = |what: &str, e: &postgres::Error| {
        OpenError::Database(format!("{location}: {what}: {}", db(e)))
    };
    let mut config: Config = url
        .parse()
        .map_err(|e| err("not a valid PostgreSQL URL", &e))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(opts.connect_timeout);
    }
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .tcp_user_timeout(Duration::from_secs(20));
    config.application_name("tidegate-ledger");
    let mut client = config
        .connect(NoTls)
        .map_err(|e| err("cannot connect", &e))?;
    let mut setup = String::from("BEGIN; SELECT pg_advisory_xact_lock(");
    setup.push_str(&SETUP_LOCK.to_string());
    setup.push_str(");");
    if let Some(s) = &opts.schema {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(OpenError::Database(format!(
                "schema `{s}`: 1 to 63 characters of a-z, 0-9 and _, not starting with a digit"
            )));
        }
        setup.push_str(&format!(
            "CREATE SCHEMA IF NOT EXISTS {s}; SET search_path TO {s};"
        ));
    }
    setup.push_str(
        "CREATE TABLE IF NOT EXISTS ledger_entries (
            idx bigint PRIMARY KEY CHECK (idx >= 0),
            entry bytea NOT NULL,
            leaf bytea NOT NULL CHECK (length(leaf) = 32));
         CREATE TABLE IF NOT EXISTS ledger_checkpoints (
            size bigint PRIMARY KEY CHECK (size >= 0),
            note text NOT NULL);
         COMMIT;",
    );
    client
        .batch_execute(&setup)
        .map_err(|e| err("setting up the ledger tables", &e))?;
    Ok((client, location))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Every entry, in index order, checked for gaps: (entries, leaf hashes stored at append).
/// Entry bytes and the leaf hashes stored with them, by index.
type Rows = (Vec<Vec<u8>>, Vec<Vec<u8>>);

fn load_entries(client: &mut Client, location: &str) -> Result<Rows, VerifyFailure> {
    let rows = client
        .query(
            "SELECT idx, entry, leaf FROM ledger_entries ORDER BY idx",
            &[],
        )
        .map_err(|e| {
            VerifyFailure::Io(OpenError::Database(format!(
                "{location}: reading entries: {}",
                db(&e)
            )))
        })?;
    let mut entries = Vec::with_capacity(rows.len());
    let mut leaves = Vec::with_capacity(rows.len());
    for (k, row) in rows.into_iter().enumerate() {
        let idx: i64 = row.get(0);
        if idx != k as i64 {
            return Err(VerifyFailure::BadEntry {
                index: k as u64,
                why: format!("missing: the next stored index is {idx} (entries were deleted)"),
            });
        }
        entries.push(row.get::<_, Vec<u8>>(1));
        leaves.push(row.get::<_, Vec<u8>>(2));
    }
    Ok((entries, leaves))
}

/// Check entries to `depth`, hash them, and compare each hash with the leaf stored at append;
/// the lowest bad index wins.
fn check_stored(
    entries: &[Vec<u8>],
    stored: &[Vec<u8>],
    depth: Depth,
) -> Result<Vec<Hash>, VerifyFailure> {
    let changed = |k: usize| {
        VerifyFailure::BadEntry {
        index: k as u64,
        why: "the stored bytes differ from the bytes appended (their hash is not the leaf hash recorded at append)".into(),
    }
    };
    match check_entries(entries.len(), &|k| (k as u64, entries[k].as_slice()), depth) {
        Ok(leaves) => match leaves
            .iter()
            .zip(stored)
            .position(|(l, s)| l.as_slice() != s.as_slice())
        {
            Some(k) => Err(changed(k)),
            None => Ok(leaves),
        },
        Err(e) => {
            let at = e
                .index()
                .map_or(entries.len(), |i| usize::try_from(i).unwrap_or(usize::MAX))
                .min(entries.len());
            match (0..at).find(|&k| leaf_hash(&entries[k]).as_slice() != stored[k].as_slice()) {
                Some(k) => Err(changed(k)),
                None => Err(e),
            }
        }
    }
}

/// A ledger database opened for reading (auditing): entries, proofs, checkpoints, verification.
pub struct PgLog {
    client: Client,
    location: String,
}

impl std::fmt::Debug for PgLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLog")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// The log as read from the database.
#[derive(Debug, Clone)]
pub struct PgContents {
    /// Canonical entry bytes, by index.
    pub entries: Vec<Vec<u8>>,
    /// The Merkle tree over them.
    pub tree: MerkleTree,
}

impl PgLog {
    /// Connect to the ledger database at `url` (creating the tables if missing).
    ///
    /// # Errors
    /// [`OpenError::Database`] when it cannot be reached or set up.
    pub fn connect(url: &str, opts: &PgLedgerOptions) -> Result<Self, OpenError> {
        let (client, location) = connect(url, opts)?;
        Ok(Self { client, location })
    }

    /// Where the log lives (URL without password, and schema), for messages.
    #[must_use]
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Read every entry (strictly: a gap or an entry whose bytes changed is an error).
    ///
    /// # Errors
    /// A database error or the first bad index.
    pub fn read(&mut self) -> Result<PgContents, VerifyFailure> {
        let (entries, stored) = load_entries(&mut self.client, &self.location)?;
        let leaves = check_stored(&entries, &stored, Depth::Integrity)?;
        Ok(PgContents {
            entries,
            tree: MerkleTree::from_leaf_hashes(leaves, workers()),
        })
    }

    /// Stored checkpoint notes, smallest size first: (size, note text).
    ///
    /// # Errors
    /// A database error.
    pub fn checkpoints(&mut self) -> Result<Vec<(u64, String)>, OpenError> {
        let rows = self
            .client
            .query(
                "SELECT size, note FROM ledger_checkpoints ORDER BY size",
                &[],
            )
            .map_err(|e| {
                OpenError::Database(format!(
                    "{}: reading checkpoints: {}",
                    self.location,
                    db(&e)
                ))
            })?;
        Ok(rows
            .into_iter()
            .map(|r| (u64::try_from(r.get::<_, i64>(0)).unwrap_or(0), r.get(1)))
            .collect())
    }

    /// Store a signed note for `size` (kept as is when one is already stored for that size).
    ///
    /// # Errors
    /// A database error.
    pub fn store_checkpoint(&mut self, size: u64, note: &str) -> Result<(), PublishError> {
        store_checkpoint(&mut self.client, size, note)
            .map_err(|e| PublishError::Database(format!("{}: {e}", self.location)))
    }

    /// Verify the whole log against checkpoints signed by `verifier`, to `depth`: every index
    /// present, every entry's bytes unchanged since append and (for [`Depth::Full`]) canonical and
    /// well-formed at its position, every stored checkpoint signed and matching the recomputed
    /// root. Names the first bad index.
    ///
    /// # Errors
    /// The first failure found.
    pub fn verify(
        &mut self,
        verifier: &NoteVerifier,
        depth: Depth,
    ) -> Result<VerifyReport, VerifyFailure> {
        let (entries, stored) = load_entries(&mut self.client, &self.location)?;
        let leaves = check_stored(&entries, &stored, depth)?;
        drop(entries);
        let tree = MerkleTree::from_leaf_hashes(leaves, workers());
        let cps = self.checkpoints().map_err(VerifyFailure::Io)?;
        let (count, latest) = check_checkpoints(
            &tree,
            cps.into_iter()
                .map(|(size, note)| (format!("ledger_checkpoints size {size}"), size, Ok(note))),
            verifier,
        )?;
        Ok(VerifyReport {
            commits: 0,
            entries: tree.len(),
            checkpoints: count,
            latest,
            torn_tail: None,
        })
    }
}

fn workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, 8)
}

fn store_checkpoint(client: &mut Client, size: u64, note: &str) -> Result<(), String> {
    client
        .execute(
            "INSERT INTO ledger_checkpoints (size, note) VALUES ($1, $2) ON CONFLICT (size) DO NOTHING",
            &[&to_i64(size), &note],
        )
        .map(|_| ())
        .map_err(|e| db(&e))
}

struct Request {
    entry: PreparedEntry,
    reply: mpsc::SyncSender<Result<Receipt, AppendError>>,
}

struct Shared {
    client: Mutex<Client>,
    backend_pid: i32,
    location: String,
    tree: RwLock<MerkleTree>,
    stopped: Mutex<Option<String>>,
    signer: NoteSigner,
    last_checkpoint: Mutex<u64>,
    batches: AtomicU64,
    synced_entries: AtomicU64,
}

/// An open, writable ledger in PostgreSQL; the same API as [`crate::Ledger`].
pub struct PgLedger {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for PgLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLedger")
            .field("location", &self.shared.location)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PgLedger {
    /// Open the ledger in the database at `url` for writing, signing checkpoints with `signer`.
    /// Takes the writer lock (see the module docs), reads and checks the whole log (every index
    /// present, every leaf as appended, the newest checkpoint signed by `signer` and matching).
    ///
    /// # Errors
    /// [`OpenError::DatabaseLocked`] when another writer holds the ledger;
    /// [`OpenError::Database`] when it cannot be reached or is damaged;
    /// [`OpenError::Checkpoint`] when the newest checkpoint does not match the log.
    pub fn open(url: &str, signer: NoteSigner, opts: PgLedgerOptions) -> Result<Self, OpenError> {
        let (mut client, location) = connect(url, &opts)?;
        let deadline = Instant::now() + opts.lock_wait;
        loop {
            let got: bool = client
                .query_one("SELECT pg_try_advisory_lock(hashtextextended('tidegate-ledger:' || current_schema(), 0))", &[])
                .map_err(|e| OpenError::Database(format!("{location}: taking the writer lock: {}", db(&e))))?
                .get(0);
            if got {
                break;
            }
            if Instant::now() >= deadline {
                return Err(OpenError::DatabaseLocked(location));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let (entries, stored) = load_entries(&mut client, &location)
            .map_err(|e| OpenError::Database(format!("{location}: {e}")))?;
        let leaves = check_stored(&entries, &stored, Depth::Integrity).map_err(|e| {
            OpenError::Database(format!(
                "{location}: {e}; run `tidegate audit verify --database`"
            ))
        })?;
        drop(entries);
        let tree = MerkleTree::from_leaf_hashes(leaves, workers());
        let mut last_cp = 0;
        let latest = client
            .query_opt(
                "SELECT size, note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1",
                &[],
            )
            .map_err(|e| {
                OpenError::Database(format!("{location}: reading checkpoints: {}", db(&e)))
            })?;
        if let Some(row) = latest {
            let size = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
            let text: String = row.get(1);
            let (_, cp) = read_checkpoint(&text, &signer.verifier())
                .map_err(|e| OpenError::Checkpoint(format!("{location} checkpoint {size}: {e}")))?;
            if cp.size != size || cp.size > tree.len() {
                return Err(OpenError::Checkpoint(format!(
                    "checkpoint covers {} entries but the log holds {}: entries from index {} are missing",
                    cp.size,
                    tree.len(),
                    tree.len()
                )));
            }
            if tree.root_at(cp.size).ok() != Some(cp.root) {
                return Err(OpenError::Checkpoint(format!(
                    "root at size {} differs from the signed root: the history was rewritten",
                    cp.size
                )));
            }
            last_cp = cp.size;
        }
        let backend_pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .map_err(|e| OpenError::Database(format!("{location}: {}", db(&e))))?
            .get(0);
        let shared = Arc::new(Shared {
            backend_pid,
            client: Mutex::new(client),
            location,
            tree: RwLock::new(tree),
            stopped: Mutex::new(None),
            signer,
            last_checkpoint: Mutex::new(last_cp),
            batches: AtomicU64::new(0),
            synced_entries: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel::<Request>();
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("ledger-pg-writer".into())
            .spawn(move || writer_loop(&writer_shared, &rx, &opts))
            .map_err(|e| OpenError::Database(format!("starting the writer thread: {e}")))?;
        Ok(Self {
            shared,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            closed: false.into(),
        })
    }

    /// Queue an entry; returns at once. Call [`PendingAppend::wait`] for durability.
    ///
    /// # Errors
    /// When the ledger is stopped or closed, or the timestamp is out of range.
    pub fn submit(&self, draft: EntryDraft, ts_ms: u64) -> Result<PendingAppend, AppendError> {
        let entry = draft.prepare(ts_ms)?;
        if entry.len_at(crate::canonical::MAX_SAFE_INTEGER) > crate::segment::MAX_PAYLOAD {
            return Err(AppendError::Entry(EntryError::Malformed(
                "entry too large".into(),
            )));
        }
        if let Some(cause) = lock(&self.shared.stopped).clone() {
            return Err(AppendError::Stopped(cause));
        }
        let (reply, rx) = mpsc::sync_channel(1);
        let guard = lock(&self.tx);
        let tx = guard.as_ref().ok_or(AppendError::Closed)?;
        tx.send(Request { entry, reply })
            .map_err(|_| AppendError::Closed)?;
        Ok(PendingAppend(rx))
    }

    /// Append an entry and return once its transaction committed.
    ///
    /// # Errors
    /// See [`AppendError`]; on error the action must not go ahead.
    pub fn append(&self, draft: EntryDraft, ts_ms: u64) -> Result<Receipt, AppendError> {
        self.submit(draft, ts_ms)?.wait()
    }

    /// Every committed entry, by index (strictly: a gap or an entry whose bytes changed is an
    /// error).
    ///
    /// # Errors
    /// A database error or the first bad index.
    pub fn entries(&self) -> Result<Vec<Vec<u8>>, VerifyFailure> {
        let (entries, stored) =
            load_entries(&mut lock(&self.shared.client), &self.shared.location)?;
        check_stored(&entries, &stored, Depth::Integrity)?;
        Ok(entries)
    }

    /// Number of committed entries.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.with_tree(MerkleTree::len)
    }

    /// Whether the ledger has no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Run `f` with read access to the tree over the committed entries.
    pub fn with_tree<T>(&self, f: impl FnOnce(&MerkleTree) -> T) -> T {
        f(&self
            .shared
            .tree
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The verifier key for this ledger's checkpoints.
    #[must_use]
    pub fn verifier(&self) -> NoteVerifier {
        self.shared.signer.verifier()
    }

    /// Sign and store a checkpoint of the committed state.
    ///
    /// # Errors
    /// When it cannot be stored.
    pub fn publish_checkpoint(&self) -> Result<SignedNote, PublishError> {
        publish(&self.shared)
    }

    /// Group-commit counters since open: (transactions, entries in them).
    #[must_use]
    pub fn commit_stats(&self) -> (u64, u64) {
        (
            self.shared.batches.load(Relaxed),
            self.shared.synced_entries.load(Relaxed),
        )
    }

    /// Why the ledger stopped, if it did.
    #[must_use]
    pub fn stopped(&self) -> Option<String> {
        lock(&self.shared.stopped).clone()
    }

    /// The server process id of the writer's connection (the session holding the writer lock).
    #[must_use]
    pub fn backend_pid(&self) -> i32 {
        self.shared.backend_pid
    }

    /// Stop the writer after the queued appends, publish a final checkpoint and let go of the
    /// writer lock.
    ///
    /// # Errors
    /// When the final checkpoint cannot be stored.
    pub fn close(&self) -> Result<(), PublishError> {
        if self.closed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        lock(&self.tx).take();
        if let Some(h) = lock(&self.writer).take() {
            if h.join().is_err() {
                tracing::error!("ledger writer thread panicked");
            }
        }
        let result = if lock(&self.shared.stopped).is_none() {
            publish(&self.shared).map(|_| ())
        } else {
            Ok(())
        };
        let _ = lock(&self.shared.client).batch_execute("SELECT pg_advisory_unlock_all()");
        result
    }
}

impl Drop for PgLedger {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "final checkpoint could not be stored");
        }
    }
}

fn publish(shared: &Shared) -> Result<SignedNote, PublishError> {
    let (size, root) = {
        let t = shared
            .tree
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (t.len(), t.root())
    };
    let note = shared.signer.sign_checkpoint(&Checkpoint {
        origin: shared.signer.name().to_owned(),
        size,
        root,
        batch: None,
        subjects: None,
    });
    store_checkpoint(&mut lock(&shared.client), size, &note.to_text())
        .map_err(|e| PublishError::Database(format!("{}: {e}", shared.location)))?;
    *lock(&shared.last_checkpoint) = size;
    Ok(note)
}

/// Insert one batch in one transaction, after checking the table ends at `next`.
fn commit_batch(
    client: &mut Client,
    next: u64,
    idx: &[i64],
    entries: &[Vec<u8>],
    leaves: &[Vec<u8>],
    seal: (u64, &str),
) -> Result<(), String> {
    let mut txn = client.transaction().map_err(|e| db(&e))?;
    let end: i64 = txn
        .query_one("SELECT coalesce(max(idx) + 1, 0) FROM ledger_entries", &[])
        .map_err(|e| db(&e))?
        .get(0);
    if end != to_i64(next) {
        return Err(format!(
            "the log holds {end} entries but this writer expected {next}: another writer appended; refusing to fork the log"
        ));
    }
    txn.execute(
        "INSERT INTO ledger_entries (idx, entry, leaf) SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bytea[])",
        &[&idx, &entries, &leaves],
    )
    .map_err(|e| db(&e))?;
    // The signed checkpoint covering the batch commits with it: no acknowledged entry is ever
    // without a signed checkpoint.
    txn.execute(
        "INSERT INTO ledger_checkpoints (size, note) VALUES ($1, $2) ON CONFLICT (size) DO NOTHING",
        &[&to_i64(seal.0), &seal.1],
    )
    .map_err(|e| db(&e))?;
    txn.commit().map_err(|e| db(&e))
}

fn writer_loop(shared: &Shared, rx: &mpsc::Receiver<Request>, opts: &PgLedgerOptions) {
    let mut next = shared.tree.read().map_or(0, |t| t.len());
    let mut batch: Vec<Request> = Vec::with_capacity(opts.max_batch);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < opts.max_batch {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        if let Some(cause) = lock(&shared.stopped).clone() {
            for r in batch.drain(..) {
                let _ = r.reply.send(Err(AppendError::Stopped(cause.clone())));
            }
            continue;
        }
        let mut idx = Vec::with_capacity(batch.len());
        let mut entries = Vec::with_capacity(batch.len());
        let mut hashes: Vec<Hash> = Vec::with_capacity(batch.len());
        for (k, r) in batch.iter().enumerate() {
            let seq = next + k as u64;
            let mut payload = Vec::with_capacity(r.entry.len_at(seq));
            r.entry.write_at(seq, &mut payload);
            hashes.push(leaf_hash(&payload));
            idx.push(to_i64(seq));
            entries.push(payload);
        }
        let leaves: Vec<Vec<u8>> = hashes.iter().map(|h| h.to_vec()).collect();
        let size = next + hashes.len() as u64;
        let mut frontier = shared
            .tree
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .frontier();
        for h in &hashes {
            frontier.push(*h);
        }
        let note = shared.signer.sign_checkpoint(&Checkpoint {
            origin: shared.signer.name().to_owned(),
            size,
            root: frontier.root(),
            batch: None,
            subjects: None,
        });
        let result = commit_batch(
            &mut lock(&shared.client),
            next,
            &idx,
            &entries,
            &leaves,
            (size, &note.to_text()),
        );
        if let Err(e) = result {
            *lock(&shared.stopped) = Some(e.clone());
            tracing::error!(error = %e, entries = batch.len(), "ledger database write failed; refusing appends");
            for r in batch.drain(..) {
                let _ = r.reply.send(Err(AppendError::Database(e.clone())));
            }
            continue;
        }
        shared.batches.fetch_add(1, Relaxed);
        shared
            .synced_entries
            .fetch_add(hashes.len() as u64, Relaxed);
        {
            let mut t = shared
                .tree
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for h in &hashes {
                t.push_leaf_hash(*h);
            }
        }
        for (k, r) in batch.drain(..).enumerate() {
            let _ = r.reply.send(Ok(Receipt {
                index: next + k as u64,
                leaf: hashes[k],
            }));
        }
        next += hashes.len() as u64;
        *lock(&shared.last_checkpoint) = next;
    }
}
