//! The content store: `<root>/blobs/sha256/<hex>`, each blob written once, by digest.
//!
//! A blob becomes visible only after its bytes were hashed and sized while being written to a
//! temporary file in the same directory, fsynced, and renamed into place: a reader never sees a
//! partial or unverified blob, a crash leaves at worst a stray temporary file, and two writers
//! of the same blob race harmlessly (the same bytes land under the same name).

use sha2::{Digest as _, Sha256};
use spore_types::Digest;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Blobs larger than this are refused unless the store is opened with another cap.
pub const DEFAULT_MAX_BLOB: u64 = 1 << 30;

/// A directory of blobs by sha256.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
    blobs: PathBuf,
    max_blob: u64,
}

/// A blob could not be stored or read. Nothing is stored when a put fails.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Not of the form `sha256:<64 hex>`.
    #[error("{0:?} is not a digest; write sha256:<64 lowercase hex digits>")]
    BadDigest(String),
    /// The bytes hash to something else.
    #[error("content does not match its digest: expected {expected}, got {actual}; nothing was stored")]
    DigestMismatch {
        /// The digest the caller named.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// The bytes are not as long as announced.
    #[error("content of {digest} is {actual} bytes, but {expected} were announced; nothing was stored")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// Announced size.
        expected: u64,
        /// Bytes received.
        actual: u64,
    },
    /// Over the configured cap.
    #[error("content of {digest} is larger than the {cap}-byte limit for one blob; nothing was stored")]
    TooLarge {
        /// The blob.
        digest: Digest,
        /// The cap.
        cap: u64,
    },
    /// Not in the store.
    #[error("{0} is not in the store")]
    Missing(Digest),
    /// The refs index is not readable JSON.
    #[error("the refs index {path} is damaged ({message}); move it aside and re-tag or pull the images it named")]
    BadIndex {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Disk trouble.
    #[error("content store: {0}")]
    Io(#[from] std::io::Error),
}

impl ContentStore {
    /// Opens (and creates) a store under `root`.
    ///
    /// Directories it creates are the user's alone (0700, whatever the umask): images may hold
    /// an app's secrets, and its unpacked roots are readable files.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let blobs = root.join("blobs/sha256");
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&blobs)?;
        Ok(ContentStore { root: root.to_owned(), blobs, max_blob: DEFAULT_MAX_BLOB })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The same store with another cap on a single blob's size.
    pub fn with_max_blob(mut self, bytes: u64) -> Self {
        self.max_blob = bytes;
        self
    }

    /// Parses a digest as users and registries write it.
    pub fn digest(s: &str) -> Result<Digest, StoreError> {
        Digest::parse(s).ok_or_else(|| StoreError::BadDigest(s.to_owned()))
    }

    /// Where a blob lives (whether or not it is there).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// The digests of the blobs stored (not the temporary files of writers at work).
    pub fn blobs(&self) -> Result<Vec<Digest>, StoreError> {
        let entries = match std::fs::read_dir(&self.blobs) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other?,
        };
        let mut digests = Vec::new();
        for entry in entries {
            if let Some(d) = entry?.file_name().to_str().and_then(|hex| Digest::parse(&format!("sha256:{hex}"))) {
                digests.push(d);
            }
        }
        Ok(digests)
    }

    /// Whether the blob is stored.
    pub fn has(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Stores `bytes` as `digest`, verifying it.
    pub fn put(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_reader(digest, Some(bytes.len() as u64), bytes).map(|_| ())
    }

    /// Streams a blob into the store, hashing and counting as it goes; `size`, when known
    /// (from a manifest), must match too. Returns the size stored.
    pub fn put_reader(&self, digest: &Digest, size: Option<u64>, mut reader: impl Read) -> Result<u64, StoreError> {
        if self.has(digest) {
            // Already verified when it was stored; drain nothing, trust the name.
            return Ok(std::fs::metadata(self.path(digest))?.len());
        }
        let mut writer = self.writer(digest, size)?;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            writer.write(&buf[..n])?;
        }
        writer.commit()
    }

    /// A writer for a blob that arrives in pieces (from a registry, say): every piece is
    /// hashed and counted, and [`BlobWriter::commit`] makes it visible only if digest and size
    /// match. Dropping the writer without committing leaves nothing behind.
    pub fn writer(&self, digest: &Digest, size: Option<u64>) -> Result<BlobWriter, StoreError> {
        if let Some(size) = size
            && size > self.max_blob
        {
            return Err(StoreError::TooLarge { digest: *digest, cap: self.max_blob });
        }
        Ok(BlobWriter {
            tmp: tempfile::NamedTempFile::new_in(&self.blobs)?,
            hasher: Sha256::new(),
            total: 0,
            digest: *digest,
            size,
            cap: self.max_blob,
            dest: self.path(digest),
        })
    }

    /// A stored blob's bytes.
    pub fn get(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        std::fs::read(self.path(digest)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::Missing(*digest),
            _ => StoreError::Io(e),
        })
    }

    /// Removes a blob (no error when it is already gone).
    pub fn delete(&self, digest: &Digest) -> Result<(), StoreError> {
        match std::fs::remove_file(self.path(digest)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// A blob being written: see [`ContentStore::writer`].
pub struct BlobWriter {
    tmp: tempfile::NamedTempFile,
    hasher: Sha256,
    total: u64,
    digest: Digest,
    size: Option<u64>,
    cap: u64,
    dest: PathBuf,
}

impl BlobWriter {
    /// Appends bytes; fails as soon as the blob outgrows its announced size or the cap.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.total += bytes.len() as u64;
        if self.total > self.cap {
            return Err(StoreError::TooLarge { digest: self.digest, cap: self.cap });
        }
        if let Some(expected) = self.size
            && self.total > expected
        {
            return Err(StoreError::SizeMismatch { digest: self.digest, expected, actual: self.total });
        }
        self.hasher.update(bytes);
        self.tmp.write_all(bytes)?;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.total
    }

    /// Checks size and digest, then makes the blob visible. Returns its size.
    pub fn commit(self) -> Result<u64, StoreError> {
        if let Some(expected) = self.size
            && expected != self.total
        {
            return Err(StoreError::SizeMismatch { digest: self.digest, expected, actual: self.total });
        }
        let actual = Digest::from_bytes(self.hasher.finalize().into());
        if actual != self.digest {
            return Err(StoreError::DigestMismatch { expected: self.digest, actual });
        }
        self.tmp.as_file().sync_all()?;
        self.tmp.persist(&self.dest).map_err(|e| e.error)?;
        sync_parent(&self.dest)?;
        Ok(self.total)
    }
}

/// Makes a rename into `path`'s directory durable: until the directory itself is synced, a
/// crash may lose the new entry even though the file's contents were synced — and a name
/// (refs.json) written after it could then point at a blob that is not there.
pub(crate) fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_new_store_is_the_users_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        ContentStore::open(&root).unwrap();
        for d in [root.clone(), root.join("blobs"), root.join("blobs/sha256")] {
            assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700, "{}", d.display());
        }
    }

    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn stores_verified_blobs_once() {
        let (_d, s) = store();
        let digest = Digest::of(b"hello");
        s.put(&digest, b"hello").unwrap();
        assert!(s.has(&digest));
        assert_eq!(s.get(&digest).unwrap(), b"hello");
        s.put(&digest, b"hello").unwrap();
        s.delete(&digest).unwrap();
        assert!(matches!(s.get(&digest), Err(StoreError::Missing(_))));
    }

    #[test]
    fn a_bad_blob_leaves_nothing_behind() {
        let (d, s) = store();
        let digest = Digest::of(b"hello");
        let err = s.put(&digest, b"jello").unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
        assert!(err.to_string().contains("nothing was stored"));
        let err = s.put_reader(&digest, Some(4), &b"hello"[..]).unwrap_err();
        assert!(matches!(err, StoreError::SizeMismatch { expected: 4, actual: 5, .. }), "{err}");
        let capped = s.clone().with_max_blob(3);
        assert!(matches!(capped.put(&digest, b"hello"), Err(StoreError::TooLarge { .. })));
        assert!(matches!(capped.put_reader(&digest, None, &b"hello"[..]), Err(StoreError::TooLarge { .. })));
        assert_eq!(std::fs::read_dir(d.path().join("blobs/sha256")).unwrap().count(), 0, "no blob, no temp file");
    }

    #[test]
    fn digests_are_parsed_strictly() {
        assert!(ContentStore::digest(&Digest::of(b"x").to_string()).is_ok());
        for bad in
            ["sha256:abc", "md5:00", "sha256:ABCDEF0000000000000000000000000000000000000000000000000000000000", ""]
        {
            assert!(matches!(ContentStore::digest(bad), Err(StoreError::BadDigest(_))), "{bad}");
        }
    }
}
