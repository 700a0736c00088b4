//! Programs the daemon runs, kept in the content store by digest (the same store images use).
//! A deploy uploads a wasm once; every later deploy of the same bytes finds it by digest and
//! skips the upload.

use spore_image::{ContentStore, StoreError};
use std::path::Path;

/// Largest program accepted (also the API's body limit).
pub const MAX_PROGRAM: u64 = 512 << 20;

/// The daemon's view of the content store.
#[derive(Clone)]
pub struct Programs {
    store: ContentStore,
}

/// A program could not be stored or found.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    /// Not stored here.
    #[error("program {0} is not on this daemon; upload it first (PUT /v1/programs/{0}, which `spore deploy` does)")]
    Missing(String),
    /// Bad digest, mismatching bytes, too large, or disk trouble.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Programs {
    /// Uses (and creates) the content store at `root`.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        Ok(Programs { store: ContentStore::open(root)?.with_max_blob(MAX_PROGRAM) })
    }

    /// Whether `digest` is stored.
    pub fn has(&self, digest: &str) -> Result<bool, ProgramError> {
        Ok(self.store.has(&ContentStore::digest(digest)?))
    }

    /// Stores `bytes` under `digest` after checking they hash to it.
    pub fn put(&self, digest: &str, bytes: &[u8]) -> Result<(), ProgramError> {
        Ok(self.store.put(&ContentStore::digest(digest)?, bytes)?)
    }

    /// Reads a stored program.
    pub fn get(&self, digest: &str) -> Result<Vec<u8>, ProgramError> {
        match self.store.get(&ContentStore::digest(digest)?) {
            Err(StoreError::Missing(_)) => Err(ProgramError::Missing(digest.to_owned())),
            other => Ok(other?),
        }
    }
}
