//! The ledger on disk: segment files, a group-commit writer thread, checkpoints and documents.
//!
//! Layout under `<data-dir>`:
//! - `ledger/seg-<first index>.tgl`: append-only segment files ([`crate::segment`] format);
//! - `ledger/checkpoints/<size>.note`: signed checkpoints (C2SP signed notes), witness
//!   co-signatures added in place;
//! - `documents/sha256-<hex>`: documents referenced by digest (policy texts, reports);
//! - `keys/ledger.key` (0600) and `keys/ledger.pub`: the checkpoint signing key.
//!
//! Appends go through one writer thread. Callers hand it a draft and wait; the thread takes
//! every request queued since its last write as one batch, assigns indexes, writes the batch with
//! one `write` and one `fdatasync`, and only then answers each caller (group commit). Any I/O
//! failure answers the whole batch with an error, cuts the file back to its last durable length,
//! and stops the ledger: every later append is refused until the ledger is reopened (fail
//! closed: the action an entry records must not happen when its entry is not durable).
//! On open, a torn tail (an incomplete last record a crash left behind) is cut back to the last
//! whole entry; damage anywhere else is an error naming the index.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use crate::checkpoint::{
    leaves_digest, Batch, Checkpoint, CheckpointError, NoteSigner, NoteVerifier, SignedNote,
};
use crate::commit::{self, CommitFault, Sealed};
use crate::entry::{Digest, EntryDraft, EntryError, PreparedEntry};
use crate::keys::{self, KeyError};
use crate::merkle::{leaf_hash, Frontier, Hash, MerkleTree};
use crate::segment::{self, Damage, Tail};
use crate::subjects::{self, SubjectMap};

/// Default segment size before a new segment file is started.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Tunables for [`Ledger::open`].
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// Start a new segment once the current one reaches this many bytes.
    pub segment_bytes: u64,
    /// Most entries written by one group commit.
    pub max_batch: usize,
    /// Publish a signed checkpoint after this many new entries (and on close); `None`: only on
    /// close and on request.
    pub checkpoint_every: Option<u64>,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        Self {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            max_batch: 16_384,
            checkpoint_every: Some(4096),
        }
    }
}

/// Why the ledger could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A file or directory could not be read, created or repaired.
    #[error("ledger {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The signing key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The log holds entries but its signing key is gone: a new key would sign a history the
    /// old one began, so none is created.
    #[error("the ledger in {0} has a history (entries, checkpoints or a public key) but its signing key is missing; restore keys/ledger.key (no new key is made: it would not vouch for that history)")]
    KeyMissing(PathBuf),
    /// The log is damaged.
    #[error(
        "ledger is damaged at {0}; run `tidegate audit verify` for details; nothing was repaired"
    )]
    Damaged(Damage),
    /// A signed checkpoint does not match the log.
    #[error("ledger does not match its signed checkpoints: {0}")]
    Checkpoint(String),
    /// The log's signed commits do not vouch for it: entries were rewritten, commits removed or
    /// forged. Nothing was repaired and nothing will be signed over it.
    #[error("ledger history does not match what was signed: {0}; run `tidegate audit verify`; nothing was repaired")]
    Unsealed(SealError),
    /// Another process (or another handle in this one) has the ledger open for writing.
    #[error("ledger {0} is already open for writing by another process")]
    Locked(PathBuf),
    /// The ledger database could not be reached, read or set up.
    #[error("ledger database: {0}")]
    Database(String),
    /// Another writer (another control-plane replica) holds the ledger database's writer lock.
    #[error("ledger database {0} is already open for writing by another writer (one writer at a time keeps the log from forking)")]
    DatabaseLocked(String),
}

/// Why an entry was not appended. The action it records must not go ahead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The draft or timestamp is invalid.
    #[error("entry refused: {0}")]
    Entry(#[from] EntryError),
    /// Writing or syncing the entry failed; the entry is not in the ledger.
    #[error(
        "ledger write failed ({kind:?}: {message}); the action was refused and the ledger stopped"
    )]
    Io {
        /// The I/O error kind.
        kind: std::io::ErrorKind,
        /// Its message.
        message: String,
    },
    /// The ledger stopped after an earlier write failure.
    #[error(
        "ledger stopped after an earlier write failure ({0}); reopen it once the cause is fixed"
    )]
    Stopped(String),
    /// The ledger is closed.
    #[error("ledger is closed")]
    Closed,
    /// The transaction holding the entry did not commit; the entry is not acknowledged.
    #[error("ledger database write failed ({0}); the action was refused and the ledger stopped")]
    Database(String),
}

/// Why a checkpoint could not be produced or stored.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Writing the checkpoint failed.
    #[error("writing checkpoint {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The tree could not produce a root.
    #[error(transparent)]
    Proof(#[from] crate::merkle::ProofError),
    /// Storing the checkpoint in the ledger database failed.
    #[error("storing checkpoint in the ledger database: {0}")]
    Database(String),
}

/// Proof that an entry is durable: its index and leaf hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// Position in the log.
    pub index: u64,
    /// `SHA-256(0x00 || canonical entry bytes)`.
    pub leaf: Hash,
}

type Reply = mpsc::SyncSender<Result<Receipt, AppendError>>;

struct Request {
    entry: PreparedEntry,
    reply: Reply,
}

struct Shared {
    /// Holds the exclusive lock on `LOCK` until the ledger is closed or dropped.
    lock: File,
    batches: std::sync::atomic::AtomicU64,
    synced_entries: std::sync::atomic::AtomicU64,
    dir: PathBuf,
    tree: RwLock<MerkleTree>,
    stopped: Mutex<Option<String>>,
    signer: NoteSigner,
    last_checkpoint: Mutex<u64>,
    /// The newest commit's signed note (what [`Ledger::publish_checkpoint`] publishes).
    latest: Mutex<Option<SignedNote>>,
}

/// An append that has been queued; [`PendingAppend::wait`] returns once it is durable.
#[derive(Debug)]
pub struct PendingAppend(pub(crate) mpsc::Receiver<Result<Receipt, AppendError>>);

impl PendingAppend {
    /// Block until the entry is fsynced (or refused).
    ///
    /// # Errors
    /// The append's error; the entry is then not in the ledger.
    pub fn wait(self) -> Result<Receipt, AppendError> {
        self.0.recv().unwrap_or(Err(AppendError::Closed))
    }
}

/// An open, writable ledger. Cheap to share behind an `Arc`; `append` may be called from many
/// threads at once.
pub struct Ledger {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

/// `<data-dir>/ledger`.
#[must_use]
pub fn ledger_dir(data_dir: &Path) -> PathBuf {
    tidegate_vocab::DataDir::new(data_dir).ledger()
}

/// `<data-dir>/keys/ledger.key`.
#[must_use]
pub fn key_path(data_dir: &Path) -> PathBuf {
    tidegate_vocab::DataDir::new(data_dir)
        .keys()
        .join(keys::LEDGER_KEY)
}

/// `<data-dir>/documents`.
#[must_use]
pub fn documents_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("documents")
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The whole log as read from disk, strictly (nothing repaired).
#[derive(Debug, Clone)]
pub struct LogContents {
    /// Canonical entry bytes, by index.
    pub entries: Vec<Vec<u8>>,
    /// The Merkle tree over them.
    pub tree: MerkleTree,
    /// Torn tail found at the end of the newest segment (file, offset), if any.
    pub torn_tail: Option<(PathBuf, usize)>,
    /// First damage, if any: `entries` holds everything before it.
    pub damage: Option<Damage>,
    /// Segment files, oldest first, with their valid lengths.
    pub segments: Vec<(PathBuf, u64, usize)>,
    /// Commit records, oldest first: (size, payload).
    pub commits: Vec<(u64, Vec<u8>)>,
    /// Where entries after the newest commit record start (file, offset), when there are any.
    pub unsealed_at: Option<(PathBuf, usize)>,
    /// The subject map over the entries up to the newest commit record.
    pub subjects: SubjectMap,
}

/// List segment files (path, first index), oldest first.
///
/// # Errors
/// When the directory cannot be read.
pub fn list_segments(dir: &Path) -> Result<Vec<(PathBuf, u64)>, std::io::Error> {
    let mut segs = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        if let Some(first) = e.file_name().to_str().and_then(segment::parse_segment_name) {
            segs.push((e.path(), first));
        }
    }
    segs.sort_by_key(|s| s.1);
    Ok(segs)
}

/// Read every segment under `ledger_dir` (no repair). `keep_entries` false skips copying entry
/// bytes (only the tree is built).
///
/// # Errors
/// Only I/O errors; damage is reported in [`LogContents::damage`].
pub fn read_log(ledger_dir: &Path, keep_entries: bool) -> Result<LogContents, OpenError> {
    let mut out = LogContents {
        entries: Vec::new(),
        tree: MerkleTree::new(),
        torn_tail: None,
        damage: None,
        segments: Vec::new(),
        commits: Vec::new(),
        unsealed_at: None,
        subjects: SubjectMap::new(),
    };
    let segs = match list_segments(ledger_dir) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(OpenError::Io {
                path: ledger_dir.to_owned(),
                source: e,
            })
        }
    };
    let count = segs.len();
    let mut leaves: Vec<Hash> = Vec::new();
    // Entries since the last commit record: they join the subject map when a commit seals them.
    let mut pending: Vec<(u64, Hash, Vec<subjects::Key>)> = Vec::new();
    for (i, (path, _first)) in segs.into_iter().enumerate() {
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        let expected = leaves.len() as u64;
        let scan = segment::scan_segment(&bytes, expected, i + 1 == count);
        for r in &scan.records {
            let payload = &bytes[r.start..r.end];
            if r.commit {
                out.commits.push((r.index, payload.to_vec()));
                out.unsealed_at = None;
                for (index, leaf, keys) in pending.drain(..) {
                    out.subjects.record(index, &leaf, &keys);
                }
                continue;
            }
            if out.unsealed_at.is_none() {
                out.unsealed_at = Some((path.clone(), r.start - segment::RECORD_HEADER));
            }
            let leaf = leaf_hash(payload);
            // An entry whose subjects cannot be read was not written by this ledger; the commit
            // check names it (its leaf differs from the sealed one) or full verification does.
            pending.push((
                leaves.len() as u64,
                leaf,
                subjects::keys_of(payload).unwrap_or_default(),
            ));
            leaves.push(leaf);
            if keep_entries {
                out.entries.push(payload.to_vec());
            }
        }
        out.segments.push((path.clone(), expected, scan.valid_len));
        if let Tail::Torn { offset } = scan.tail {
            out.torn_tail = Some((path, offset));
        }
        if scan.damage.is_some() {
            out.damage = scan.damage;
            break;
        }
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(8);
    out.tree = MerkleTree::from_leaf_hashes(leaves, threads);
    Ok(out)
}

/// Signed checkpoints stored under `ledger_dir/checkpoints`, smallest size first, as
/// (file, note text).
///
/// # Errors
/// When the directory cannot be read.
pub fn list_checkpoints(ledger_dir: &Path) -> Result<Vec<(PathBuf, u64)>, std::io::Error> {
    let dir = ledger_dir.join("checkpoints");
    let mut out = Vec::new();
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        let name = e.file_name();
        let Some(size) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".note"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((e.path(), size));
    }
    out.sort_by_key(|c| c.1);
    Ok(out)
}

/// Path of the checkpoint for `size`.
#[must_use]
pub fn checkpoint_path(ledger_dir: &Path, size: u64) -> PathBuf {
    ledger_dir
        .join("checkpoints")
        .join(format!("{size:020}.note"))
}

/// Write `bytes` to `path` atomically and durably (temp file, fsync, rename, fsync dir).
///
/// # Errors
/// Any I/O error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), std::io::Error> {
    // A bare file name lives in the current directory.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        Some(_) => Path::new("."),
        None => return Err(std::io::Error::other("path has no parent")),
    };
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// Verify a checkpoint note's signature and body.
///
/// # Errors
/// When it does not parse or is not signed by `verifier`.
pub fn read_checkpoint(
    text: &str,
    verifier: &NoteVerifier,
) -> Result<(SignedNote, Checkpoint), CheckpointError> {
    let note = SignedNote::parse(text)?;
    note.verify(verifier)?;
    let cp = note.checkpoint()?;
    Ok((note, cp))
}

/// Why a log cannot be vouched for by its signed commits.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The log could not be read.
    #[error("{0}")]
    Read(Box<OpenError>),
    /// A record is damaged.
    #[error("first bad index {}: {}", .0.index, .0.kind)]
    Damaged(Damage),
    /// The commits do not vouch for the entries.
    #[error(transparent)]
    Commit(#[from] CommitFault),
    /// A stored checkpoint file is not consistent with the log (the log was cut short of it, or
    /// rewritten, or the file was not signed by the ledger key).
    #[error("{why} (nothing from index {index} on is vouched for)")]
    Checkpoint {
        /// The first index the checkpoint files do not let the log vouch for.
        index: u64,
        /// What is wrong.
        why: String,
    },
    /// Entries no commit seals sit before a later segment.
    #[error("first bad index {index}: entries from {index} in {} are sealed by no commit, yet a later segment follows", file.display())]
    UnsealedInside {
        /// First unsealed entry.
        index: u64,
        /// Its segment.
        file: PathBuf,
    },
}

impl SealError {
    /// The first index that cannot be trusted, where one can be named.
    #[must_use]
    pub fn index(&self) -> Option<u64> {
        match self {
            Self::Read(_) => None,
            Self::Damaged(d) => Some(d.index),
            Self::Commit(f) => Some(f.index()),
            Self::UnsealedInside { index, .. } | Self::Checkpoint { index, .. } => Some(*index),
        }
    }
}

/// The log as far as its signed commits vouch for it.
#[derive(Debug, Clone)]
pub struct SealedLog {
    /// The log, with `entries` and `tree` cut to the sealed entries.
    pub log: LogContents,
    /// What the commits vouch for.
    pub sealed: Sealed,
    /// Entries after the newest commit: never acknowledged (an interrupted write) or forged.
    /// They are not in `log.entries` or `log.tree`.
    pub unsealed: u64,
}

/// Read the log under `ledger_dir` strictly and check every commit record against `verifier`
/// ([`crate::commit::check`]): the lowest bad index when anything differs from what was signed.
/// Entries past the newest commit are counted in [`SealedLog::unsealed`] and left out.
///
/// # Errors
/// See [`SealError`].
pub fn read_sealed(
    ledger_dir: &Path,
    verifier: &NoteVerifier,
    keep_entries: bool,
) -> Result<SealedLog, SealError> {
    let mut log = read_log(ledger_dir, keep_entries).map_err(|e| SealError::Read(Box::new(e)))?;
    let checked = commit::check(
        &log.tree,
        log.commits.iter().map(|(s, p)| (*s, p.as_slice())),
        verifier,
    );
    if let Some(d) = log.damage.clone() {
        return Err(match checked {
            Err(f) if f.index() < d.index => SealError::Commit(f),
            // Damage in a commit record leaves the entries it sealed vouched for by nothing.
            Ok(s) if s.size < d.index => SealError::Damaged(Damage {
                index: s.size,
                kind: d.kind,
            }),
            _ => SealError::Damaged(d),
        });
    }
    let sealed = checked?;
    if let Some((_, cp)) = &sealed.latest {
        if cp.subjects != Some(log.subjects.root()) {
            return Err(SealError::Commit(CommitFault::Subjects {
                index: cp.batch.map_or(0, |b| b.first),
                size: cp.size,
            }));
        }
    }
    // Every checkpoint file is consistent with what the commits vouch for: a log cut short of a
    // checkpoint it signed is refused, never vouched for at its shorter size.
    let mut vouched = log.tree.clone();
    vouched.truncate(sealed.size);
    crate::verify::check_checkpoint_dir(ledger_dir, &vouched, verifier).map_err(|e| match e {
        crate::verify::VerifyFailure::Io(o) => SealError::Read(Box::new(o)),
        other => SealError::Checkpoint {
            index: sealed.size,
            why: other.to_string(),
        },
    })?;
    let unsealed = log.tree.len() - sealed.size;
    if unsealed > 0 {
        let newest = log.segments.last().map(|s| s.0.clone());
        if let Some((file, _)) = &log.unsealed_at {
            if Some(file) != newest.as_ref() {
                return Err(SealError::UnsealedInside {
                    index: sealed.size,
                    file: file.clone(),
                });
            }
        }
        log.tree.truncate(sealed.size);
        log.entries
            .truncate(usize::try_from(sealed.size).unwrap_or(usize::MAX));
    } else {
        log.unsealed_at = None;
    }
    Ok(SealedLog {
        log,
        sealed,
        unsealed,
    })
}

/// Move the bytes of `path` from `offset` on into `<dir>/quarantine/` (durably), then cut the
/// file there. Nothing is destroyed: an auditor can still read what was set aside.
fn set_aside(dir: &Path, path: &Path, offset: usize) -> Result<PathBuf, OpenError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let qdir = dir.join("quarantine");
    fs::create_dir_all(&qdir).map_err(io_err(&qdir))?;
    // Never over an earlier one: each setting aside gets a file of its own.
    let mut n = 0u32;
    let aside = loop {
        let p = qdir.join(format!("{name}-at-{offset}-{n}.bin"));
        if fs::symlink_metadata(&p).is_err() {
            break p;
        }
        n += 1;
    };
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&aside)
            .map_err(io_err(&aside))?;
        f.write_all(bytes.get(offset..).unwrap_or_default())
            .and_then(|()| f.sync_all())
            .map_err(io_err(&aside))?;
    }
    File::open(&qdir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(&qdir))?;
    if offset == 0 {
        fs::remove_file(path).map_err(io_err(path))?;
    } else {
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        f.set_len(offset as u64).map_err(io_err(path))?;
        f.sync_all().map_err(io_err(path))?;
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(aside)
}

impl Ledger {
    /// Open (creating if needed) the ledger under `data_dir`, with the signing key from
    /// `<data-dir>/keys/ledger.key` (generated on first use).
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn open(data_dir: &Path, opts: LedgerOptions) -> Result<Self, OpenError> {
        let key = key_path(data_dir);
        let dir = ledger_dir(data_dir);
        // A public key, checkpoints or entries without the signing key: the history they belong
        // to was signed by a key that is gone, and a new one would not vouch for it.
        let has_entries = || -> Result<bool, OpenError> {
            Ok(dir.is_dir()
                && list_segments(&dir)
                    .map_err(io_err(&dir))?
                    .iter()
                    .any(|(p, _)| {
                        fs::metadata(p).is_ok_and(|m| m.len() > segment::SEGMENT_HEADER as u64)
                    }))
        };
        if !key.exists()
            && (keys::public_path(&key).exists()
                || list_checkpoints(&dir).is_ok_and(|c| !c.is_empty())
                || has_entries()?)
        {
            return Err(OpenError::KeyMissing(dir));
        }
        let signer = keys::load_or_create_signer(&key, "tidegate-ledger")?;
        Self::open_with(&ledger_dir(data_dir), signer, opts)
    }

    /// Open the ledger in `dir` with an explicit signing key.
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn open_with(
        dir: &Path,
        signer: NoteSigner,
        opts: LedgerOptions,
    ) -> Result<Self, OpenError> {
        fs::create_dir_all(dir.join("checkpoints")).map_err(io_err(dir))?;
        sync_dir_chain(dir).map_err(io_err(dir))?;
        // One writer per ledger: an exclusive advisory lock held as long as the ledger is open.
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(OpenError::Locked(dir.to_owned()))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(OpenError::Io {
                    path: lock_path,
                    source: e,
                })
            }
        }
        // Every commit is checked (one signature, the chain and every sealed leaf), and every
        // stored checkpoint file: nothing is signed over a log that differs from what was signed.
        let verifier = signer.verifier();
        let SealedLog {
            log,
            sealed,
            unsealed,
        } = read_sealed(dir, &verifier, false).map_err(|e| match e {
            SealError::Damaged(d) => OpenError::Damaged(d),
            SealError::Read(o) => *o,
            SealError::Checkpoint { why, .. } => OpenError::Checkpoint(why),
            other => OpenError::Unsealed(other),
        })?;
        let tree = log.tree;
        let subject_map = log.subjects;
        let last_cp = list_checkpoints(dir)
            .map_err(io_err(dir))?
            .last()
            .map_or(0, |c| c.1);
        let mut segments = log.segments;
        // What follows the newest commit was never acknowledged: an interrupted write (a torn
        // record or a batch whose commit did not land), or bytes no ledger key sealed. It is
        // set aside, never trusted and never destroyed.
        let cut = [
            log.unsealed_at
                .map(|(p, o)| (p, o, "entries no commit seals")),
            log.torn_tail.map(|(p, o)| (p, o, "an incomplete record")),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|c| c.1);
        if let Some((path, offset, what)) = cut {
            let aside = set_aside(dir, &path, offset)?;
            tracing::warn!(file = %path.display(), offset, unsealed, kept = tree.len(), aside = %aside.display(),
                "set aside the unacknowledged end of the log ({what}); it is not part of the ledger");
            if offset == 0 {
                segments.pop();
            }
        }
        let (file, seg_len) = match segments.last() {
            Some((path, _, _)) => {
                let f = OpenOptions::new()
                    .append(true)
                    .open(path)
                    .map_err(io_err(path))?;
                let len = f.metadata().map_err(io_err(path))?.len();
                (f, len)
            }
            None => {
                let path = dir.join(segment::segment_name(tree.len()));
                let f = new_segment(dir, &path, tree.len()).map_err(io_err(&path))?;
                (f, segment::SEGMENT_HEADER as u64)
            }
        };
        let shared = Arc::new(Shared {
            lock,
            batches: std::sync::atomic::AtomicU64::new(0),
            synced_entries: std::sync::atomic::AtomicU64::new(0),
            dir: dir.to_owned(),
            tree: RwLock::new(tree),
            stopped: Mutex::new(None),
            signer,
            last_checkpoint: Mutex::new(last_cp),
            latest: Mutex::new(sealed.latest.as_ref().map(|(n, _)| n.clone())),
        });
        let frontier = read(&shared.tree).frontier();
        let head = sealed.head;
        let (tx, rx) = mpsc::channel::<Request>();
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || {
                let state = WriterState {
                    file,
                    seg_len,
                    frontier,
                    head,
                    subjects: subject_map,
                };
                writer_loop(&writer_shared, &rx, state, &opts);
            })
            .map_err(io_err(dir))?;
        Ok(Self {
            shared,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Queue an entry; returns at once. Call [`PendingAppend::wait`] for durability.
    ///
    /// # Errors
    /// When the ledger is stopped or closed, or the timestamp is out of range.
    pub fn submit(&self, draft: EntryDraft, ts_ms: u64) -> Result<PendingAppend, AppendError> {
        // Canonical encoding happens here, on the caller's thread, in parallel with other callers.
        let entry = draft.prepare(ts_ms)?;
        if entry.len_at(crate::canonical::MAX_SAFE_INTEGER) > segment::MAX_PAYLOAD {
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

    /// Every entry the signed commits vouch for, by index (read from the segment files and
    /// checked like [`read_sealed`]: a log that differs from what was signed is an error).
    ///
    /// # Errors
    /// See [`SealError`].
    pub fn sealed_entries(&self) -> Result<Vec<Vec<u8>>, SealError> {
        read_sealed(&self.shared.dir, &self.verifier(), true).map(|s| s.log.entries)
    }

    /// Append an entry and return once it is fsynced.
    ///
    /// # Errors
    /// See [`AppendError`]; on error the entry is not in the ledger.
    pub fn append(&self, draft: EntryDraft, ts_ms: u64) -> Result<Receipt, AppendError> {
        self.submit(draft, ts_ms)?.wait()
    }

    /// Record first, then act: runs `effect` only after the entry is durable. When the entry
    /// cannot be written, `effect` never runs and the error is returned.
    ///
    /// # Errors
    /// The append error.
    pub fn record_then<T>(
        &self,
        draft: EntryDraft,
        ts_ms: u64,
        effect: impl FnOnce(Receipt) -> T,
    ) -> Result<T, AppendError> {
        let receipt = self.append(draft, ts_ms)?;
        Ok(effect(receipt))
    }

    /// Number of durable entries.
    #[must_use]
    pub fn len(&self) -> u64 {
        read(&self.shared.tree).len()
    }

    /// Whether the ledger has no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of the Merkle tree over the durable entries.
    #[must_use]
    pub fn tree(&self) -> MerkleTree {
        read(&self.shared.tree).clone()
    }

    /// Run `f` with read access to the tree (no copy).
    pub fn with_tree<T>(&self, f: impl FnOnce(&MerkleTree) -> T) -> T {
        f(&read(&self.shared.tree))
    }

    /// The verifier key for this ledger's checkpoints.
    #[must_use]
    pub fn verifier(&self) -> NoteVerifier {
        self.shared.signer.verifier()
    }

    /// Sign and store a checkpoint of the current durable state; returns the note.
    ///
    /// # Errors
    /// When the checkpoint cannot be written.
    pub fn publish_checkpoint(&self) -> Result<SignedNote, PublishError> {
        publish(&self.shared)
    }

    /// Group-commit counters since open: (batches written with one fdatasync each, entries in them).
    #[must_use]
    pub fn commit_stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
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

    /// Stop the writer after the queued appends, and publish a final checkpoint.
    ///
    /// # Errors
    /// When the final checkpoint cannot be written.
    pub fn close(&self) -> Result<(), PublishError> {
        // Once: a second close (the drop after an explicit one) has nothing left to do.
        if self.closed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        lock(&self.tx).take();
        if let Some(h) = lock(&self.writer).take() {
            if h.join().is_err() {
                tracing::error!("ledger writer thread panicked");
            }
        }
        let published = if lock(&self.shared.stopped).is_none() {
            publish(&self.shared).map(|_| ())
        } else {
            Ok(())
        };
        // Nothing more can be written through this handle: let another writer open it, whether
        // or not the checkpoint file could be written.
        if let Err(e) = self.shared.lock.unlock() {
            tracing::warn!(error = %e, "cannot release the ledger lock");
        }
        published
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "final checkpoint could not be written");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Make a freshly created `ledger/checkpoints` chain durable: fsync the directory and its parent.
fn sync_dir_chain(dir: &Path) -> Result<(), std::io::Error> {
    File::open(dir)?.sync_all()?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn new_segment(dir: &Path, path: &Path, first: u64) -> Result<File, std::io::Error> {
    let mut f = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(path)?;
    f.write_all(&segment::segment_header(first))?;
    f.sync_all()?;
    File::open(dir)?.sync_all()?;
    Ok(f)
}

/// Store the newest commit's note as a checkpoint file (for witnesses and auditors). Nothing new
/// is signed here: the note is the one the writer signed with the batch it seals. An empty log
/// publishes a signed checkpoint of size 0.
fn publish(shared: &Shared) -> Result<SignedNote, PublishError> {
    let note = match lock(&shared.latest).clone() {
        Some(n) => n,
        None => shared.signer.sign_checkpoint(&Checkpoint {
            origin: shared.signer.name().to_owned(),
            size: 0,
            root: crate::merkle::empty_root(),
            batch: None,
            subjects: None,
        }),
    };
    let size = note.checkpoint().map_or(0, |c| c.size);
    let path = checkpoint_path(&shared.dir, size);
    if !path.exists() {
        write_atomic(&path, note.to_text().as_bytes())
            .map_err(|source| PublishError::Io { path, source })?;
    }
    *lock(&shared.last_checkpoint) = size;
    Ok(note)
}

/// The writer thread's own state.
struct WriterState {
    file: File,
    seg_len: u64,
    /// Right edge of the durable tree (roots of the next commit are computed from it).
    frontier: Frontier,
    /// Body hash of the newest durable commit.
    head: Hash,
    /// The subject map over the durable entries.
    subjects: SubjectMap,
}

fn writer_loop(
    shared: &Shared,
    rx: &mpsc::Receiver<Request>,
    mut st: WriterState,
    opts: &LedgerOptions,
) {
    let max_batch = opts.max_batch.clamp(1, segment::MAX_BATCH);
    let mut next = read(&shared.tree).len();
    let mut buf = Vec::with_capacity(1 << 20);
    let mut batch: Vec<Request> = Vec::with_capacity(max_batch);
    let mut leaves: Vec<Hash> = Vec::with_capacity(max_batch);
    let mut accepted: Vec<Reply> = Vec::with_capacity(max_batch);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < max_batch {
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
        if st.seg_len >= opts.segment_bytes {
            let path = shared.dir.join(segment::segment_name(next));
            match new_segment(&shared.dir, &path, next) {
                Ok(f) => {
                    st.file = f;
                    st.seg_len = segment::SEGMENT_HEADER as u64;
                }
                Err(e) => {
                    fail_batch(shared, &mut batch, &e);
                    let _ = fs::remove_file(&path);
                    continue;
                }
            }
        }
        buf.clear();
        leaves.clear();
        accepted.clear();
        let mut payload = Vec::with_capacity(512);
        for r in batch.drain(..) {
            let seq = next + leaves.len() as u64;
            payload.clear();
            r.entry.write_at(seq, &mut payload);
            segment::encode_record(seq, &payload, &mut buf);
            let leaf = leaf_hash(&payload);
            // Should the write fail, the ledger stops: the map is never used again.
            st.subjects.record(seq, &leaf, r.entry.keys());
            leaves.push(leaf);
            accepted.push(r.reply);
        }
        if leaves.is_empty() {
            continue;
        }
        // The commit record that seals the batch goes in the same write: the batch is
        // acknowledged exactly when its signed commit is durable.
        let size = next + leaves.len() as u64;
        let mut frontier = st.frontier.clone();
        for l in &leaves {
            frontier.push(*l);
        }
        let note = shared.signer.sign_checkpoint(&Checkpoint {
            origin: shared.signer.name().to_owned(),
            size,
            root: frontier.root(),
            batch: Some(Batch {
                first: next,
                leaves: leaves_digest(&leaves),
                prev: st.head,
            }),
            subjects: Some(st.subjects.root()),
        });
        segment::encode_commit_record(size, &commit::encode(&note, &leaves), &mut buf);
        if let Err(e) = st.file.write_all(&buf).and_then(|()| st.file.sync_data()) {
            // Cut back to the last durable length so a reopen sees no half-written batch.
            if let Err(e2) = st
                .file
                .set_len(st.seg_len)
                .and_then(|()| st.file.sync_all())
            {
                tracing::error!(error = %e2, "could not cut the failed batch back");
            }
            let err = AppendError::Io {
                kind: e.kind(),
                message: e.to_string(),
            };
            *lock(&shared.stopped) = Some(e.to_string());
            tracing::error!(error = %e, entries = leaves.len(), "ledger write failed; refusing appends");
            for reply in accepted.drain(..) {
                let _ = reply.send(Err(err.clone()));
            }
            continue;
        }
        st.seg_len += buf.len() as u64;
        st.frontier = frontier;
        st.head = commit::note_hash(&note);
        *lock(&shared.latest) = Some(note);
        shared
            .batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        shared
            .synced_entries
            .fetch_add(leaves.len() as u64, std::sync::atomic::Ordering::Relaxed);
        {
            let mut t = write(&shared.tree);
            for l in &leaves {
                t.push_leaf_hash(*l);
            }
        }
        for (i, reply) in accepted.drain(..).enumerate() {
            let _ = reply.send(Ok(Receipt {
                index: next + i as u64,
                leaf: leaves[i],
            }));
        }
        next += leaves.len() as u64;
        if let Some(every) = opts.checkpoint_every {
            let last = *lock(&shared.last_checkpoint);
            if next - last >= every {
                if let Err(e) = publish(shared) {
                    tracing::error!(error = %e, "periodic checkpoint failed");
                }
            }
        }
    }
}

fn fail_batch(shared: &Shared, batch: &mut Vec<Request>, e: &std::io::Error) {
    *lock(&shared.stopped) = Some(e.to_string());
    tracing::error!(error = %e, "ledger segment could not be created; refusing appends");
    let err = AppendError::Io {
        kind: e.kind(),
        message: e.to_string(),
    };
    for r in batch.drain(..) {
        let _ = r.reply.send(Err(err.clone()));
    }
}

/// Store a document by content under `<data-dir>/documents/` (durably) and return its digest.
///
/// # Errors
/// When it cannot be written.
pub fn put_document(data_dir: &Path, bytes: &[u8]) -> Result<Digest, std::io::Error> {
    let digest = Digest::of(bytes);
    let path = document_path(data_dir, &digest);
    if !path.exists() {
        write_atomic(&path, bytes)?;
    }
    Ok(digest)
}

/// Where the document with `digest` is stored.
#[must_use]
pub fn document_path(data_dir: &Path, digest: &Digest) -> PathBuf {
    documents_dir(data_dir).join(digest.as_str().replace(':', "-"))
}
