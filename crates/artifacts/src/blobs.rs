//! Where encrypted blobs live: the local filesystem by default, S3-compatible object storage
//! with the `s3` feature. Blobs are ciphertext addressed by `blobs/sha256/<hex>`; records,
//! envelopes and keys stay in the data directory.

use std::fs;
use std::path::PathBuf;

use crate::atomic::{write_atomic, write_atomic_streaming};
use crate::ArtifactError;

/// Storage for encrypted blobs, by key (`blobs/sha256/<hex>`).
pub trait BlobBackend: Send + Sync {
    /// Stores `bytes` under `key`, atomically (readers never see a partial blob).
    ///
    /// # Errors
    /// Backend errors.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), ArtifactError>;
    /// Stores what `fill` writes under `key`, atomically. The default collects it in memory
    /// and calls [`BlobBackend::put`]; a backend that can take a stream writes it as it comes
    /// (the local filesystem does, so memory stays bounded whatever the blob's size).
    ///
    /// # Errors
    /// Backend errors, or `fill`'s.
    fn put_streaming(
        &self,
        key: &str,
        fill: &mut dyn FnMut(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> Result<(), ArtifactError> {
        let mut buf = Vec::new();
        fill(&mut buf).map_err(|e| ArtifactError::Invalid(format!("blob {key}: {e}")))?;
        self.put(key, &buf)
    }
    /// The bytes under `key`, or `None` if there are none.
    ///
    /// # Errors
    /// Backend errors other than absence.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ArtifactError>;
    /// Whether `key` holds a blob.
    ///
    /// # Errors
    /// Backend errors other than absence.
    fn exists(&self, key: &str) -> Result<bool, ArtifactError>;
    /// Removes `key`; absent keys are fine.
    ///
    /// # Errors
    /// Backend errors.
    fn delete(&self, key: &str) -> Result<(), ArtifactError>;
    /// A short name for diagnostics.
    fn name(&self) -> &'static str;
}

/// Blobs as files under a root directory (`<data-dir>/artifacts`).
#[derive(Debug, Clone)]
pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    /// Blobs under `root`.
    #[must_use]
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The file path of `key`.
    #[must_use]
    pub fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

impl BlobBackend for LocalBlobs {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), ArtifactError> {
        write_atomic(&self.path(key), bytes)
    }

    fn put_streaming(
        &self,
        key: &str,
        fill: &mut dyn FnMut(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> Result<(), ArtifactError> {
        write_atomic_streaming(&self.path(key), fill)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ArtifactError> {
        let path = self.path(key);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ArtifactError::io(&path, e)),
        }
    }

    fn exists(&self, key: &str) -> Result<bool, ArtifactError> {
        Ok(self.path(key).is_file())
    }

    fn delete(&self, key: &str) -> Result<(), ArtifactError> {
        let path = self.path(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ArtifactError::io(&path, e)),
        }
    }

    fn name(&self) -> &'static str {
        "local"
    }
}

/// S3-compatible object storage (AWS S3, MinIO, Ceph RGW) through the `object_store` crate.
#[cfg(feature = "s3")]
pub mod s3 {
    use object_store::aws::{AmazonS3, AmazonS3Builder};
    use object_store::path::Path;
    use object_store::{ObjectStore, PutPayload};

    use super::BlobBackend;
    use crate::ArtifactError;

    /// Connection settings for an S3-compatible endpoint.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct S3Config {
        /// Endpoint URL, e.g. `http://127.0.0.1:9000`; `None` for AWS itself.
        pub endpoint: Option<String>,
        /// Bucket name.
        pub bucket: String,
        /// Region (any value for most S3-compatible servers).
        pub region: String,
        /// Access key id.
        pub access_key_id: String,
        /// Secret access key.
        pub secret_access_key: String,
        /// Key prefix inside the bucket (e.g. `tidegate/prod`).
        pub prefix: String,
        /// Allow plain HTTP (test servers only).
        pub allow_http: bool,
    }

    /// Blobs in an S3 bucket. Calls block on a private single-threaded runtime, so the store's
    /// API stays synchronous.
    pub struct S3Blobs {
        store: AmazonS3,
        prefix: String,
        runtime: tokio::runtime::Runtime,
    }

    impl std::fmt::Debug for S3Blobs {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("S3Blobs")
                .field("prefix", &self.prefix)
                .finish_non_exhaustive()
        }
    }

    fn s3_err(e: impl std::fmt::Display) -> ArtifactError {
        ArtifactError::Backend(format!("s3: {e}"))
    }

    impl S3Blobs {
        /// Connects (lazily) to the bucket described by `config`.
        ///
        /// # Errors
        /// [`ArtifactError::Backend`] for invalid settings.
        pub fn new(config: &S3Config) -> Result<Self, ArtifactError> {
            let mut b = AmazonS3Builder::new()
                .with_bucket_name(&config.bucket)
                .with_region(&config.region)
                .with_access_key_id(&config.access_key_id)
                .with_secret_access_key(&config.secret_access_key)
                .with_allow_http(config.allow_http);
            if let Some(endpoint) = &config.endpoint {
                b = b
                    .with_endpoint(endpoint)
                    .with_virtual_hosted_style_request(false);
            }
            let store = b.build().map_err(s3_err)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(s3_err)?;
            Ok(Self {
                store,
                prefix: config.prefix.trim_matches('/').to_owned(),
                runtime,
            })
        }

        fn path(&self, key: &str) -> Path {
            if self.prefix.is_empty() {
                Path::from(key)
            } else {
                Path::from(format!("{}/{key}", self.prefix))
            }
        }
    }

    impl BlobBackend for S3Blobs {
        fn put(&self, key: &str, bytes: &[u8]) -> Result<(), ArtifactError> {
            let payload = PutPayload::from(bytes.to_vec());
            self.runtime
                .block_on(self.store.put(&self.path(key), payload))
                .map_err(s3_err)?;
            Ok(())
        }

        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ArtifactError> {
            let path = self.path(key);
            self.runtime.block_on(async {
                match self.store.get(&path).await {
                    Ok(r) => r.bytes().await.map(|b| Some(b.to_vec())).map_err(s3_err),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(s3_err(e)),
                }
            })
        }

        fn exists(&self, key: &str) -> Result<bool, ArtifactError> {
            match self.runtime.block_on(self.store.head(&self.path(key))) {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(s3_err(e)),
            }
        }

        fn delete(&self, key: &str) -> Result<(), ArtifactError> {
            match self.runtime.block_on(self.store.delete(&self.path(key))) {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(s3_err(e)),
            }
        }

        fn name(&self) -> &'static str {
            "s3"
        }
    }
}
