//! The content-addressed, encrypted, immutable artifact store on the local filesystem.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::generic_array::GenericArray;
use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::atomic::write_atomic;
use crate::blobs::{BlobBackend, LocalBlobs};
use crate::dsse::Envelope;
use crate::events::{ArtifactEvent, EventSink, JsonlSink};
use crate::history::{History, Trail};
use crate::intoto::{Provenance, Statement, SLSA_PROVENANCE_V1};
use crate::kms::{DataKey, FileKeyManager, KeyManager};
use crate::signing::{Keyring, Signer, VerifiedStatement};
use crate::{ArtifactError, ArtifactKind, Digest, Lane};

const MAGIC: &[u8; 4] = b"TGA1";
const NONCE_LEN: usize = 24;
/// Blobs written in chunks (STREAM construction, XChaCha20-Poly1305, 64 KiB chunks): each
/// chunk authenticated with the record's associated data, reordering, dropping or cutting
/// chunks detected.
const STREAM_MAGIC: &[u8; 4] = b"TGA2";
const STREAM_ENCRYPTION: &str = "xchacha20poly1305-stream64k";
/// The STREAM nonce prefix: the cipher's 24-byte nonce less STREAM's 5-byte counter and flag.
const STREAM_NONCE_LEN: usize = 19;
const CHUNK: usize = 64 * 1024;
const TAG_LEN: usize = 16;

/// What a put stores: bytes in memory, or a file read in chunks.
enum Content<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

impl Content<'_> {
    fn reader(&self) -> Result<Box<dyn std::io::Read + '_>, ArtifactError> {
        match self {
            Self::Bytes(b) => Ok(Box::new(*b)),
            Self::File(p) => Ok(Box::new(
                fs::File::open(p).map_err(|e| ArtifactError::io(p, e))?,
            )),
        }
    }
}

/// The data classification an artifact carries: inherited from the job that produced it, or
/// the dataset version it holds, by names (the fleet's scheme gives them their meaning). An
/// artifact without one is judged as the most sensitive data the fleet knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactClass {
    /// Level name, e.g. `restricted`.
    pub level: String,
    /// Legal tags, e.g. `phi`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub tags: BTreeSet<String>,
    /// Jurisdictions it may be processed in; absent means unrestricted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residency: Option<BTreeSet<String>>,
}

impl ArtifactClass {
    /// `LEVEL` or `LEVEL/TAG+TAG`: the form an evidence entry records (identifier characters
    /// only; tags are kept, residency is in the record).
    #[must_use]
    pub fn ident(&self) -> String {
        if self.tags.is_empty() {
            self.level.clone()
        } else {
            format!(
                "{}/{}",
                self.level,
                self.tags.iter().cloned().collect::<Vec<_>>().join("+")
            )
        }
    }

    /// `level/tag,tag` for people.
    #[must_use]
    pub fn describe(&self) -> String {
        if self.tags.is_empty() {
            self.level.clone()
        } else {
            format!(
                "{}/{}",
                self.level,
                self.tags.iter().cloned().collect::<Vec<_>>().join(",")
            )
        }
    }
}

/// Metadata given when putting an artifact.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutOptions {
    /// Human name (file name, model name).
    pub name: String,
    /// Production or experiment lane.
    pub lane: Lane,
    /// Whether it derives from sensitive data (restricted, PHI): extra gates apply.
    pub sensitive: bool,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// Its data classification (`None`: unclassified, judged as the most sensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<ArtifactClass>,
}

/// The immutable record of a stored artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// Content digest of the plaintext.
    pub digest: Digest,
    /// Kind.
    pub kind: ArtifactKind,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Human name.
    pub name: String,
    /// Lane.
    pub lane: Lane,
    /// Derived from sensitive data.
    pub sensitive: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// When it was stored (Unix seconds).
    pub created_at: u64,
    /// Encryption of the blob.
    pub encryption: String,
    /// Key manager holding its data key.
    pub key_manager: String,
    /// Its data classification (`None`: unclassified, judged as the most sensitive). Bound,
    /// with the kind, lane and `sensitive`, into the encryption's associated data: a record
    /// edited to say anything else no longer opens its content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<ArtifactClass>,
}

impl ArtifactRecord {
    /// The attributes decisions read, as the associated data of the blob's encryption.
    fn aad(&self) -> String {
        let class = self.classification.as_ref().map_or_else(
            || "unclassified".to_owned(),
            |c| {
                let residency = c.residency.as_ref().map_or_else(
                    || "-".to_owned(),
                    |r| r.iter().cloned().collect::<Vec<_>>().join(","),
                );
                format!(
                    "{}|{}|{}",
                    c.level,
                    c.tags.iter().cloned().collect::<Vec<_>>().join(","),
                    residency
                )
            },
        );
        format!(
            "tidegate-artifact-v2\n{}\n{}\nlane={}\nsensitive={}\nclass={class}",
            self.digest,
            self.kind,
            self.lane.as_str(),
            self.sensitive
        )
    }
}

/// The result of verifying one artifact.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    /// The record.
    pub record: ArtifactRecord,
    /// Every attached statement, verified.
    pub statements: Vec<VerifiedStatement>,
}

impl VerifyReport {
    /// The verified provenance, if one is attached.
    #[must_use]
    pub fn provenance(&self) -> Option<&VerifiedStatement> {
        self.statements
            .iter()
            .find(|s| s.statement.predicate_type == SLSA_PROVENANCE_V1)
    }
}

/// An artifact store rooted at a data directory.
pub struct ArtifactStore {
    root: PathBuf,
    kms: Box<dyn KeyManager>,
    blobs: Box<dyn BlobBackend>,
    events: Box<dyn EventSink>,
}

impl std::fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactStore")
            .field("root", &self.root)
            .field("kms", &self.kms.name())
            .field("blobs", &self.blobs.name())
            .finish()
    }
}

impl ArtifactStore {
    /// Opens the store in `data_dir` with the file-backed key manager in `<data_dir>/keys`.
    ///
    /// # Errors
    /// I/O or key-manager errors.
    pub fn open(data_dir: &Path) -> Result<Self, ArtifactError> {
        let kms = FileKeyManager::open(&tidegate_vocab::DataDir::new(data_dir).keys())?;
        Ok(Self::with_key_manager(data_dir, Box::new(kms)))
    }

    /// Opens the store with another key manager (an external KMS).
    #[must_use]
    pub fn with_key_manager(data_dir: &Path, kms: Box<dyn KeyManager>) -> Self {
        let blobs = Box::new(LocalBlobs::new(
            tidegate_vocab::DataDir::new(data_dir).artifacts(),
        ));
        Self::with_backends(data_dir, kms, blobs)
    }

    /// Opens the store with a key manager and another blob backend (S3-compatible storage).
    /// Records, envelopes and logs stay in `data_dir`.
    #[must_use]
    pub fn with_backends(
        data_dir: &Path,
        kms: Box<dyn KeyManager>,
        blobs: Box<dyn BlobBackend>,
    ) -> Self {
        let events = Box::new(JsonlSink::new(
            tidegate_vocab::DataDir::new(data_dir)
                .artifacts()
                .join("events.jsonl"),
        ));
        Self {
            root: data_dir.to_path_buf(),
            kms,
            blobs,
            events,
        }
    }

    /// Replaces the evidence event sink (the default appends to `artifacts/events.jsonl`).
    #[must_use]
    pub fn with_event_sink(mut self, events: Box<dyn EventSink>) -> Self {
        self.events = events;
        self
    }

    /// Records an evidence event; callers do this before the effect it describes.
    ///
    /// # Errors
    /// Whatever the sink reports; the caller must then not perform the effect.
    pub fn record_event(&self, event: &ArtifactEvent) -> Result<(), ArtifactError> {
        self.events.record(event)
    }

    /// Takes the store's exclusive write lock (an advisory lock on `artifacts/.write.lock`),
    /// held until the returned file is dropped. Serializes puts, shreds and promotions between
    /// processes on this host, so a data key and its blob always belong together.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write_lock(&self) -> Result<std::fs::File, ArtifactError> {
        let dir = self.artifacts_dir();
        fs::create_dir_all(&dir).map_err(|e| ArtifactError::io(&dir, e))?;
        let path = dir.join(".write.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ArtifactError::io(&path, e))?;
        file.lock().map_err(|e| ArtifactError::io(&path, e))?;
        Ok(file)
    }

    fn blob_key(digest: &Digest) -> String {
        format!("blobs/sha256/{}", digest.hex())
    }

    /// The data directory.
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.root
    }

    /// Keeps `bytes` (a report or statement: identifiers, digests and counts, never content) as
    /// a document of the evidence sink, addressed by its digest.
    ///
    /// # Errors
    /// When the sink cannot keep it.
    pub fn record_document(&self, bytes: &[u8]) -> Result<(), ArtifactError> {
        self.events.document(bytes)
    }

    /// `<data-dir>/keys`.
    #[must_use]
    pub fn keys_dir(&self) -> PathBuf {
        tidegate_vocab::DataDir::new(&self.root).keys()
    }

    pub(crate) fn artifacts_dir(&self) -> PathBuf {
        tidegate_vocab::DataDir::new(&self.root).artifacts()
    }

    /// Path of the encrypted blob of `digest` with the default local backend.
    #[must_use]
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.artifacts_dir()
            .join("blobs")
            .join("sha256")
            .join(digest.hex())
    }

    fn record_path(&self, digest: &Digest) -> PathBuf {
        self.artifacts_dir()
            .join("records")
            .join("sha256")
            .join(format!("{}.json", digest.hex()))
    }

    fn envelope_dir(&self, digest: &Digest) -> PathBuf {
        self.artifacts_dir()
            .join("envelopes")
            .join("sha256")
            .join(digest.hex())
    }

    /// Stores `content` as an artifact of `kind`. Idempotent for identical content and kind;
    /// the same content under another kind is refused (objects are immutable).
    ///
    /// # Errors
    /// I/O, key-manager or [`ArtifactError::Conflict`].
    pub fn put(
        &self,
        content: &[u8],
        kind: ArtifactKind,
        options: &PutOptions,
        now: u64,
    ) -> Result<ArtifactRecord, ArtifactError> {
        let digest = Digest::of(content);
        self.put_from(
            &Content::Bytes(content),
            &digest,
            content.len() as u64,
            kind,
            options,
            now,
        )
    }

    /// [`Self::put`] of the content of the file at `path`, read in bounded chunks (hashed, then
    /// encrypted as it is written), so an artifact of any size is stored with bounded memory.
    /// The file must not change meanwhile: content that no longer hashes to what was read
    /// first is not stored.
    ///
    /// # Errors
    /// As [`Self::put`], and the file's I/O errors.
    pub fn put_file(
        &self,
        path: &Path,
        kind: ArtifactKind,
        options: &PutOptions,
        now: u64,
    ) -> Result<ArtifactRecord, ArtifactError> {
        let mut f = fs::File::open(path).map_err(|e| ArtifactError::io(path, e))?;
        let (digest, len) = Digest::of_reader(&mut f).map_err(|e| ArtifactError::io(path, e))?;
        self.put_from(&Content::File(path), &digest, len, kind, options, now)
    }

    fn put_from(
        &self,
        content: &Content<'_>,
        digest: &Digest,
        len: u64,
        kind: ArtifactKind,
        options: &PutOptions,
        now: u64,
    ) -> Result<ArtifactRecord, ArtifactError> {
        let digest = digest.clone();
        let _lock = self.write_lock()?;
        let mut previous = None;
        if let Ok(existing) = self.record(&digest) {
            if existing.kind != kind || existing.lane != options.lane {
                return Err(ArtifactError::Conflict {
                    digest,
                    existing: format!("{} in lane {}", existing.kind, existing.lane.as_str()),
                });
            }
            if self.blobs.exists(&Self::blob_key(&digest))? {
                return Ok(existing);
            }
            // Shredded earlier and stored again by someone holding the content: a new blob and
            // data key under the same immutable record.
            previous = Some(existing);
        }
        let class = previous
            .as_ref()
            .map_or(options.classification.as_ref(), |p| {
                p.classification.as_ref()
            });
        // What the ledger first recorded this content as stands: putting it again as something
        // else (its files deleted) is refused here, not left as an artifact nothing verifies.
        if let Some(first) = self.history()?.of(&digest).stored {
            let (lane, sensitive) = previous
                .as_ref()
                .map_or((options.lane, options.sensitive), |p| (p.lane, p.sensitive));
            let asked = (
                kind.to_string(),
                lane.as_str().to_owned(),
                sensitive,
                class.map(ArtifactClass::ident),
            );
            let recorded = (
                first.kind.clone(),
                first.lane.clone(),
                first.sensitive,
                first.classification.clone(),
            );
            if asked != recorded {
                return Err(ArtifactError::Conflict {
                    digest,
                    existing: format!(
                        "{} in lane {}{}{}, as the evidence ledger first recorded it",
                        first.kind,
                        first.lane,
                        if first.sensitive { ", sensitive" } else { "" },
                        first
                            .classification
                            .as_deref()
                            .map(|c| format!(", classified {c}"))
                            .unwrap_or_default()
                    ),
                });
            }
        }
        self.record_event(&ArtifactEvent::Put {
            digest: digest.clone(),
            kind: kind.to_string(),
            classification: class.map(ArtifactClass::ident),
            lane: options.lane.as_str().to_owned(),
            sensitive: options.sensitive,
            at: now,
        })?;
        let key = DataKey::generate();
        let fresh = ArtifactRecord {
            digest: digest.clone(),
            kind,
            size: len,
            name: options.name.clone(),
            lane: options.lane,
            sensitive: options.sensitive,
            labels: options.labels.clone(),
            created_at: now,
            encryption: STREAM_ENCRYPTION.to_owned(),
            key_manager: self.kms.name().to_owned(),
            classification: options.classification.clone(),
        };
        let record = previous.clone().unwrap_or(fresh);
        // Key first, then blob, then record: a record exists only for a readable object.
        let aad = record.aad();
        let stored = (|| {
            self.kms.seal_data_key(&digest, &key)?;
            let mut reader = content.reader()?;
            let mut hasher = Sha256::new();
            self.blobs
                .put_streaming(&Self::blob_key(&digest), &mut |out| {
                    seal_stream(&key, &aad, &mut *reader, len, out, &mut hasher)
                })?;
            if hex::encode(hasher.finalize()) != digest.hex() {
                return Err(ArtifactError::Invalid(
                    "the content changed while it was stored".to_owned(),
                ));
            }
            if previous.is_none() {
                let json = serde_json::to_vec_pretty(&record)
                    .map_err(|e| ArtifactError::Invalid(e.to_string()))?;
                write_atomic(&self.record_path(&digest), &json)?;
            }
            Ok(())
        })();
        if let Err(e) = stored {
            // Not stored (a full disk, say): what was written is destroyed and the ledger says
            // so after its `artifact.stored`, so it never claims an object that is not there.
            let _ = self.kms.destroy_data_key(&digest);
            let _ = self.blobs.delete(&Self::blob_key(&digest));
            let undone = self.record_event(&ArtifactEvent::Shred {
                digest: digest.clone(),
            });
            tracing::error!(%digest, error = %e, recorded = undone.is_ok(), "artifact not stored; partial writes removed");
            return Err(ArtifactError::NotStored {
                digest,
                reason: e.to_string(),
                recorded: undone.is_ok(),
            });
        }
        tracing::info!(%digest, kind = %kind, size = record.size, "stored artifact");
        Ok(record)
    }

    /// The record of `digest`.
    ///
    /// # Errors
    /// [`ArtifactError::NotFound`] or a parse error.
    pub fn record(&self, digest: &Digest) -> Result<ArtifactRecord, ArtifactError> {
        let path = self.record_path(digest);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ArtifactError::NotFound(digest.clone()))
            }
            Err(e) => return Err(ArtifactError::io(&path, e)),
        };
        let record: ArtifactRecord =
            serde_json::from_slice(&bytes).map_err(|e| ArtifactError::Tampered {
                digest: digest.clone(),
                reason: format!("record does not parse: {e}"),
            })?;
        if &record.digest != digest {
            return Err(ArtifactError::Tampered {
                digest: digest.clone(),
                reason: format!("record names another digest {}", record.digest),
            });
        }
        Ok(record)
    }

    /// The verified content of `digest`: decrypted, authenticated, and re-hashed to its digest.
    ///
    /// # Errors
    /// [`ArtifactError::Tampered`] if the blob or record changed, [`ArtifactError::Shredded`],
    /// [`ArtifactError::NotFound`].
    pub fn get(&self, digest: &Digest) -> Result<Vec<u8>, ArtifactError> {
        let record = self.record(digest)?;
        let key = self.kms.open_data_key(digest)?;
        let blob =
            self.blobs
                .get(&Self::blob_key(digest))?
                .ok_or_else(|| ArtifactError::Tampered {
                    digest: digest.clone(),
                    reason: "blob is missing".to_owned(),
                })?;
        let content = if blob.starts_with(STREAM_MAGIC) {
            open_stream(&key, digest, &record.aad(), &blob)?
        } else {
            open(&key, digest, &record.aad(), &blob)?
        };
        if Digest::of(&content) != *digest {
            return Err(ArtifactError::Tampered {
                digest: digest.clone(),
                reason: "content does not hash to its digest".to_owned(),
            });
        }
        if content.len() as u64 != record.size {
            return Err(ArtifactError::Tampered {
                digest: digest.clone(),
                reason: format!(
                    "size {} differs from recorded {}",
                    content.len(),
                    record.size
                ),
            });
        }
        Ok(content)
    }

    /// All records, sorted by creation time then digest.
    ///
    /// # Errors
    /// I/O or parse errors.
    pub fn list(&self) -> Result<Vec<ArtifactRecord>, ArtifactError> {
        let dir = self.artifacts_dir().join("records").join("sha256");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ArtifactError::io(&dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| ArtifactError::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".json") else {
                continue;
            };
            let digest = Digest::from_hex(hex)?;
            out.push(self.record(&digest)?);
        }
        out.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.digest.cmp(&b.digest))
        });
        Ok(out)
    }

    /// Crypto-shreds `digest`: destroys its data key and removes its blob. Its record stays,
    /// so lineage keeps pointing at something; `get` then reports [`ArtifactError::Shredded`].
    ///
    /// # Errors
    /// I/O and key-manager errors.
    pub fn shred(&self, digest: &Digest) -> Result<(), ArtifactError> {
        let _lock = self.write_lock()?;
        self.record(digest)?;
        self.record_event(&ArtifactEvent::Shred {
            digest: digest.clone(),
        })?;
        self.kms.destroy_data_key(digest)?;
        self.blobs.delete(&Self::blob_key(digest))?;
        tracing::info!(%digest, "crypto-shredded artifact");
        Ok(())
    }

    /// Attaches a DSSE envelope about `digest`. The envelope is stored content-addressed; it is
    /// checked only structurally here (the statement must name `digest`); trust is decided at
    /// verification time against a keyring.
    ///
    /// # Errors
    /// [`ArtifactError::Signature`] if the payload is not a statement about `digest`.
    pub fn attach(&self, digest: &Digest, envelope: &Envelope) -> Result<Digest, ArtifactError> {
        self.record(digest)?;
        let statement = Statement::from_json(&envelope.payload_bytes()?)?;
        if !statement.covers(digest) {
            return Err(ArtifactError::Signature(format!(
                "statement does not name {digest} as a subject"
            )));
        }
        let json = envelope.to_json()?;
        let id = Digest::of(&json);
        // Provenance names the job that built the artifact and its inputs: the evidence entry
        // carries them as identifiers, so an evidence bundle about the artifact reaches them.
        let (job, inputs) = if statement.predicate_type == crate::intoto::SLSA_PROVENANCE_V1 {
            let p = crate::intoto::Provenance::from_predicate(&statement.predicate)?;
            (
                Some(p.job_id),
                p.materials.into_iter().map(|m| m.uri).collect(),
            )
        } else {
            (None, Vec::new())
        };
        self.record_event(&ArtifactEvent::Attest {
            digest: digest.clone(),
            envelope: id.clone(),
            predicate_type: statement.predicate_type.clone(),
            keyids: envelope
                .signatures
                .iter()
                .map(|s| s.keyid.clone())
                .collect(),
            job,
            inputs,
        })?;
        write_atomic(
            &self
                .envelope_dir(digest)
                .join(format!("{}.dsse.json", id.hex())),
            &json,
        )?;
        // Signed statements hold digests and identifiers, never content: they are kept as evidence
        // documents too, so an evidence bundle carries the signatures its entries cite.
        self.events.document(&json)?;
        Ok(id)
    }

    /// Signs SLSA provenance for `digest` with `signer` and attaches it, only with a keyring the
    /// evidence ledger vouches for ([`Self::check_signing_keyring`]).
    ///
    /// # Errors
    /// As [`Self::trusted_keyring`], [`Provenance::to_predicate`] and [`Self::attach`].
    pub fn sign_provenance(
        &self,
        digest: &Digest,
        provenance: &Provenance,
        signer: &Signer,
    ) -> Result<Envelope, ArtifactError> {
        self.check_signing_keyring()?;
        let record = self.record(digest)?;
        let mut statement = Statement::provenance(&record.name, digest, provenance)?;
        // The artifact's classification goes into what the builder signs, beside the record's
        // binding into the encryption.
        if let Some(c) = &record.classification {
            if let Some(params) = statement
                .predicate
                .pointer_mut("/buildDefinition/internalParameters")
                .and_then(serde_json::Value::as_object_mut)
            {
                params.insert(
                    "classification".to_owned(),
                    serde_json::Value::String(c.ident()),
                );
            }
        }
        let envelope = signer.sign_statement(&statement)?;
        self.attach(digest, &envelope)?;
        Ok(envelope)
    }

    /// The envelopes attached to `digest`, in a stable order.
    ///
    /// # Errors
    /// I/O errors or [`ArtifactError::Signature`] for an unparsable envelope.
    pub fn envelopes(&self, digest: &Digest) -> Result<Vec<Envelope>, ArtifactError> {
        Ok(self
            .envelope_files(digest)?
            .into_iter()
            .map(|(_, e)| e)
            .collect())
    }

    /// The envelopes attached to `digest` with the digest of each one's stored bytes (what the
    /// ledger records), in a stable order.
    fn envelope_files(&self, digest: &Digest) -> Result<Vec<(Digest, Envelope)>, ArtifactError> {
        let dir = self.envelope_dir(digest);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ArtifactError::io(&dir, e)),
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".dsse.json"))
            .collect();
        paths.sort();
        let mut out = Vec::new();
        for p in paths {
            let bytes = fs::read(&p).map_err(|e| ArtifactError::io(&p, e))?;
            out.push((Digest::of(&bytes), Envelope::from_json(&bytes)?));
        }
        Ok(out)
    }

    /// What the evidence ledger says about this store's artifacts ([`History`]): read through
    /// the ledger this store records into (entries naming its zone, for a zone's store), or, for
    /// a store with no ledger sink, from the file ledger of its own data directory (none there:
    /// an empty history, so nothing signed counts).
    ///
    /// # Errors
    /// [`ArtifactError::Evidence`] when the ledger cannot be read or differs from what it signed.
    pub fn history(&self) -> Result<History, ArtifactError> {
        if let Some(h) = self.events.ledger_history() {
            return h;
        }
        // A zone's store inside a data directory records into that data directory's ledger.
        let own =
            tidegate_ledger::keys::public_path(&tidegate_ledger::ledger::key_path(&self.root));
        match zone_store_of(&self.root) {
            Some((data_dir, zone)) if !own.exists() => {
                History::from_entries(&file_ledger_entries(data_dir)?, Some(zone))
            }
            _ => History::from_entries(&file_ledger_entries(&self.root)?, None),
        }
    }

    /// The entries of the evidence ledger this store records into (the ledger its sink writes
    /// to, else the file ledger of its data directory: for a zone's store, the enclosing data
    /// directory's), sealed and checked against what the ledger signed; none when there is no
    /// ledger. Decisions about what the store's data directory holds besides artifacts (the
    /// dataset registry) are derived from these, as [`Self::history`] is for artifacts.
    ///
    /// # Errors
    /// [`ArtifactError::Evidence`] when the ledger cannot be read or differs from what it signed.
    pub fn evidence_entries(&self) -> Result<Vec<Vec<u8>>, ArtifactError> {
        if let Some(e) = self.events.ledger_entries() {
            return e;
        }
        let own =
            tidegate_ledger::keys::public_path(&tidegate_ledger::ledger::key_path(&self.root));
        match zone_store_of(&self.root) {
            Some((data_dir, _)) if !own.exists() => file_ledger_entries(data_dir),
            _ => file_ledger_entries(&self.root),
        }
    }

    /// The signing keyring of this store's data directory (`keys/signing/`), refused if it is not
    /// the keyring the evidence ledger last recorded a key change leaving (roles, windows,
    /// revocations edited in the file, or keys added to it, count for nothing). A store whose
    /// ledger never recorded a keyring takes the file as it is.
    ///
    /// # Errors
    /// [`ArtifactError::Key`] for a keyring that differs from the recorded one; I/O errors.
    pub fn trusted_keyring(&self) -> Result<Keyring, ArtifactError> {
        let ring = crate::signing::KeyStore::new(&self.keys_dir()).keyring()?;
        if let Some(recorded) = self.history()?.keyring() {
            let have = ring.digest()?;
            if have.to_string() != recorded {
                return Err(ArtifactError::Key(format!(
                    "the signing keyring in {} ({have}) is not the one the evidence ledger last recorded ({recorded}): it was changed outside tidegate, and no signature counts until it is restored",
                    self.keys_dir().join("signing").display()
                )));
            }
        }
        Ok(ring)
    }

    /// The signing keyring of this store's data directory exactly as its evidence ledger
    /// recorded it: the ledger must have recorded a key change leaving a keyring, and the file
    /// must be that keyring. What another store is trusted for (`artifact key trust --from`)
    /// comes only from here: a keyring its ledger never vouched for grants nothing.
    ///
    /// # Errors
    /// [`ArtifactError::Key`] when the ledger recorded no keyring or the file differs from it;
    /// [`ArtifactError::Evidence`] when the ledger cannot be read or differs from what it signed.
    pub fn recorded_keyring(&self) -> Result<Keyring, ArtifactError> {
        let dir = self.keys_dir().join("signing");
        if self.history()?.keyring().is_none() {
            return Err(ArtifactError::Key(format!(
                "the evidence ledger of {} never recorded a signing keyring, so nothing in {} is vouched for",
                self.root.display(),
                dir.display()
            )));
        }
        self.trusted_keyring()
    }

    /// Refuses to sign in this store when its keyring file is not the one its evidence ledger
    /// last recorded ([`Self::trusted_keyring`]): roles, windows or keys edited into the file
    /// sign nothing (the signer is taken from that file).
    ///
    /// # Errors
    /// As [`Self::trusted_keyring`].
    pub fn check_signing_keyring(&self) -> Result<(), ArtifactError> {
        self.trusted_keyring().map(|_| ())
    }

    /// Checks that `record` says what the ledger recorded when the artifact was stored (kind,
    /// lane, sensitivity, classification): a record edited in the data directory is refused even
    /// by a holder of the data keys, who could re-encrypt it under new associated data.
    fn check_recorded(record: &ArtifactRecord, trail: &Trail) -> Result<(), ArtifactError> {
        let tampered = |reason: String| ArtifactError::Tampered {
            digest: record.digest.clone(),
            reason,
        };
        let stored = trail.stored.as_ref().ok_or_else(|| {
            tampered("the evidence ledger never recorded it being stored".to_owned())
        })?;
        let class = record.classification.as_ref().map(ArtifactClass::ident);
        for (field, ledger, file) in [
            ("kind", stored.kind.clone(), record.kind.to_string()),
            ("lane", stored.lane.clone(), record.lane.as_str().to_owned()),
            (
                "sensitive",
                stored.sensitive.to_string(),
                record.sensitive.to_string(),
            ),
            (
                "classification",
                stored.classification.clone().unwrap_or_default(),
                class.unwrap_or_default(),
            ),
        ] {
            if ledger != file {
                return Err(tampered(format!(
                    "its record says {field} {file:?} but the evidence ledger recorded {ledger:?} when it was stored"
                )));
            }
        }
        Ok(())
    }

    /// Verifies `digest` fully at `now`: content integrity, the record against what the
    /// evidence ledger recorded at storage, and every attached envelope against `keyring` (each
    /// must name `digest`, and must have been recorded in the ledger: its keys are judged at the
    /// time it was recorded, never at a time the statement claims, and never before the artifact
    /// was stored). Checkpoints and models must carry verified provenance.
    ///
    /// # Errors
    /// The first failure: [`ArtifactError::Tampered`], [`ArtifactError::Signature`],
    /// [`ArtifactError::Key`], or [`ArtifactError::Signature`] for missing provenance.
    pub fn verify(
        &self,
        digest: &Digest,
        keyring: &Keyring,
        now: u64,
    ) -> Result<VerifyReport, ArtifactError> {
        let record = self.record(digest)?;
        self.get(digest)?;
        let history = self.history()?;
        let trail = history.of(digest);
        Self::check_recorded(&record, &trail)?;
        let stored_ms = trail.stored.as_ref().map_or(0, |s| s.ts_ms);
        let mut statements = Vec::new();
        for (id, env) in self.envelope_files(digest)? {
            let recorded_ms = *trail.envelopes.get(&id.to_string()).ok_or_else(|| {
                ArtifactError::Signature(format!(
                    "envelope {id} on {digest} was never recorded in the evidence ledger (it was added outside tidegate) and counts for nothing"
                ))
            })?;
            if recorded_ms < stored_ms {
                return Err(ArtifactError::Signature(format!(
                    "envelope {id} on {digest} is recorded before the artifact was stored"
                )));
            }
            let verified = keyring.verify_recorded(&env, recorded_ms / 1000, now)?;
            if !verified.statement.covers(digest) {
                return Err(ArtifactError::Signature(format!(
                    "an attached statement does not name {digest}"
                )));
            }
            statements.push(verified);
        }
        let report = VerifyReport { record, statements };
        if report.record.kind.requires_provenance() && report.provenance().is_none() {
            return Err(ArtifactError::Signature(format!(
                "{} {digest} has no signed SLSA provenance attached",
                report.record.kind
            )));
        }
        Ok(report)
    }

    /// Pulls `digest`: [`Self::verify`] then the verified content.
    ///
    /// # Errors
    /// As [`Self::verify`] and [`Self::get`].
    pub fn pull(
        &self,
        digest: &Digest,
        keyring: &Keyring,
        now: u64,
    ) -> Result<(Vec<u8>, VerifyReport), ArtifactError> {
        let report = self.verify(digest, keyring, now)?;
        let content = self.get(digest)?;
        Ok((content, report))
    }
}

/// Where a zone's own artifact store lives inside a data directory (the local stand-in for the
/// zone's object storage; its data keys are the zone's own, its entries go to the data
/// directory's ledger, naming the zone).
#[must_use]
pub fn zone_store_dir(data_dir: &Path, zone: &str) -> PathBuf {
    data_dir.join(ZONE_STORES).join(zone)
}

const ZONE_STORES: &str = "zone-stores";

/// The data directory and zone of a store at `root`, when it is a zone's store
/// ([`zone_store_dir`]).
fn zone_store_of(root: &Path) -> Option<(&Path, &str)> {
    let zone = root.file_name()?.to_str()?;
    let parent = root.parent()?;
    (parent.file_name()? == ZONE_STORES).then_some((parent.parent()?, zone))
}

/// The sealed entries of the file ledger in `data_dir`, checked against its public key; none when
/// there is no ledger (or no key) there.
fn file_ledger_entries(data_dir: &Path) -> Result<Vec<Vec<u8>>, ArtifactError> {
    use tidegate_ledger::{keys, ledger};
    let public = keys::public_path(&ledger::key_path(data_dir));
    if !public.exists() {
        return Ok(Vec::new());
    }
    let verifier = keys::load_verifier(&public)
        .map_err(|e| ArtifactError::Evidence(format!("ledger key {}: {e}", public.display())))?;
    ledger::read_sealed(&ledger::ledger_dir(data_dir), &verifier, true)
        .map(|s| s.log.entries)
        .map_err(|e| ArtifactError::Evidence(format!("the evidence ledger: {e}")))
}

/// Encrypts `len` bytes from `reader` to `out` in [`CHUNK`]-sized pieces (the last one, maybe
/// empty, marked last), hashing the plaintext into `hasher` as it goes. Content shorter or
/// longer than `len` is an error: it changed since it was measured.
fn seal_stream(
    key: &DataKey,
    aad: &str,
    reader: &mut dyn std::io::Read,
    len: u64,
    out: &mut dyn std::io::Write,
    hasher: &mut Sha256,
) -> std::io::Result<()> {
    let failed = || std::io::Error::other("encrypting an artifact failed");
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    let mut nonce = [0u8; STREAM_NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    out.write_all(STREAM_MAGIC)?;
    out.write_all(&nonce)?;
    let mut enc = EncryptorBE32::from_aead(cipher, GenericArray::from_slice(&nonce));
    let mut buf = vec![0u8; CHUNK];
    let mut remaining = len;
    loop {
        let want = usize::try_from(remaining.min(CHUNK as u64)).unwrap_or(CHUNK);
        let piece = buf.get_mut(..want).ok_or_else(failed)?;
        reader.read_exact(piece).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                std::io::Error::other("the content got shorter while it was stored")
            } else {
                e
            }
        })?;
        hasher.update(&*piece);
        remaining -= want as u64;
        let payload = Payload {
            msg: piece,
            aad: aad.as_bytes(),
        };
        if remaining == 0 {
            out.write_all(&enc.encrypt_last(payload).map_err(|_| failed())?)?;
            break;
        }
        out.write_all(&enc.encrypt_next(payload).map_err(|_| failed())?)?;
    }
    let mut probe = [0u8; 1];
    if reader.read(&mut probe)? != 0 {
        return Err(std::io::Error::other(
            "the content grew while it was stored",
        ));
    }
    Ok(())
}

/// Decrypts a blob [`seal_stream`] wrote.
fn open_stream(
    key: &DataKey,
    digest: &Digest,
    aad: &str,
    blob: &[u8],
) -> Result<Vec<u8>, ArtifactError> {
    let tampered = |reason: &str| ArtifactError::Tampered {
        digest: digest.clone(),
        reason: reason.to_owned(),
    };
    let header = STREAM_MAGIC.len() + STREAM_NONCE_LEN;
    let (Some(nonce), Some(mut ct)) = (blob.get(STREAM_MAGIC.len()..header), blob.get(header..))
    else {
        return Err(tampered("blob header is not TGA2"));
    };
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    let mut dec = DecryptorBE32::from_aead(cipher, GenericArray::from_slice(nonce));
    let bad = || tampered("ciphertext does not authenticate (blob or record changed on disk)");
    let mut out = Vec::with_capacity(ct.len());
    loop {
        if ct.len() <= CHUNK + TAG_LEN {
            let last = dec
                .decrypt_last(Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                })
                .map_err(|_| bad())?;
            out.extend_from_slice(&last);
            return Ok(out);
        }
        let (piece, rest) = ct.split_at(CHUNK + TAG_LEN);
        let plain = dec
            .decrypt_next(Payload {
                msg: piece,
                aad: aad.as_bytes(),
            })
            .map_err(|_| bad())?;
        out.extend_from_slice(&plain);
        ct = rest;
    }
}

#[cfg(test)]
fn seal(key: &DataKey, aad: &str, content: &[u8]) -> Result<Vec<u8>, ArtifactError> {
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: content,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| ArtifactError::Kms("encrypting an artifact failed".to_owned()))?;
    let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + ct.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

fn open(key: &DataKey, digest: &Digest, aad: &str, blob: &[u8]) -> Result<Vec<u8>, ArtifactError> {
    let tampered = |reason: &str| ArtifactError::Tampered {
        digest: digest.clone(),
        reason: reason.to_owned(),
    };
    if blob.len() < MAGIC.len() + NONCE_LEN || &blob[..MAGIC.len()] != MAGIC {
        return Err(tampered("blob header is not TGA1"));
    }
    let nonce = &blob[MAGIC.len()..MAGIC.len() + NONCE_LEN];
    let ct = &blob[MAGIC.len() + NONCE_LEN..];
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| tampered("ciphertext does not authenticate (blob or record changed on disk)"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn sealed(content: &[u8], aad: &str, key: &DataKey) -> Vec<u8> {
        let mut out = Vec::new();
        let mut hasher = Sha256::new();
        let mut reader: &[u8] = content;
        seal_stream(
            key,
            aad,
            &mut reader,
            content.len() as u64,
            &mut out,
            &mut hasher,
        )
        .unwrap();
        assert_eq!(hex::encode(hasher.finalize()), Digest::of(content).hex());
        out
    }

    #[test]
    fn chunked_encryption_round_trips_at_every_chunk_boundary() {
        let key = DataKey::generate();
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 5] {
            let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let blob = sealed(&content, "aad", &key);
            let digest = Digest::of(&content);
            assert_eq!(open_stream(&key, &digest, "aad", &blob).unwrap(), content);
            // Another record's associated data does not open it.
            assert!(open_stream(&key, &digest, "other", &blob).is_err());
        }
    }

    #[test]
    fn dropped_reordered_or_cut_chunks_do_not_authenticate() {
        let key = DataKey::generate();
        let content: Vec<u8> = (0..3 * CHUNK + 10).map(|i| (i % 7) as u8).collect();
        let digest = Digest::of(&content);
        let blob = sealed(&content, "aad", &key);
        let header = STREAM_MAGIC.len() + STREAM_NONCE_LEN;
        let piece = CHUNK + TAG_LEN;
        // The last chunk dropped: the one before it was not sealed as the last.
        let cut = &blob[..header + 3 * piece];
        assert!(open_stream(&key, &digest, "aad", cut).is_err());
        // Cut at a whole chunk after the first.
        assert!(open_stream(&key, &digest, "aad", &blob[..header + piece]).is_err());
        // Two chunks swapped.
        let mut swapped = blob[..header].to_vec();
        swapped.extend_from_slice(&blob[header + piece..header + 2 * piece]);
        swapped.extend_from_slice(&blob[header..header + piece]);
        swapped.extend_from_slice(&blob[header + 2 * piece..]);
        assert!(open_stream(&key, &digest, "aad", &swapped).is_err());
        // One flipped bit.
        let mut flipped = blob.clone();
        flipped[header + 5] ^= 1;
        assert!(open_stream(&key, &digest, "aad", &flipped).is_err());
    }

    #[test]
    fn content_that_changes_while_it_is_stored_is_refused() {
        let key = DataKey::generate();
        let mut hasher = Sha256::new();
        let mut longer: &[u8] = &[1u8; 100];
        let err = seal_stream(&key, "a", &mut longer, 99, &mut Vec::new(), &mut hasher);
        assert!(err.unwrap_err().to_string().contains("grew"));
        let mut shorter: &[u8] = &[1u8; 10];
        let err = seal_stream(&key, "a", &mut shorter, 99, &mut Vec::new(), &mut hasher);
        assert!(err.unwrap_err().to_string().contains("shorter"));
    }

    #[test]
    fn a_file_is_stored_in_chunks_and_blobs_of_the_earlier_format_still_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let path = dir.path().join("weights.bin");
        let content: Vec<u8> = (0..5 * CHUNK + 3).map(|i| (i % 13) as u8).collect();
        fs::write(&path, &content).unwrap();
        let rec = store
            .put_file(&path, ArtifactKind::Model, &PutOptions::default(), 1)
            .unwrap();
        assert_eq!(rec.digest, Digest::of(&content));
        assert_eq!(rec.size, content.len() as u64);
        assert_eq!(rec.encryption, STREAM_ENCRYPTION);
        let blob = fs::read(
            dir.path()
                .join("artifacts")
                .join(ArtifactStore::blob_key(&rec.digest)),
        )
        .unwrap();
        assert!(blob.starts_with(STREAM_MAGIC));
        assert_eq!(store.get(&rec.digest).unwrap(), content);
        // The same bytes in memory are the same artifact.
        let again = store
            .put(&content, ArtifactKind::Model, &PutOptions::default(), 2)
            .unwrap();
        assert_eq!(again.digest, rec.digest);
        // A blob sealed whole (the format before chunks) under the same key still opens.
        let key = store.kms.open_data_key(&rec.digest).unwrap();
        let old = seal(&key, &rec.aad(), &content).unwrap();
        store
            .blobs
            .put(&ArtifactStore::blob_key(&rec.digest), &old)
            .unwrap();
        assert_eq!(store.get(&rec.digest).unwrap(), content);
    }
}
