//! Programs stored by content: `<data>/programs/sha256/<hex>.wasm`. A deploy uploads a wasm
//! once; every later deploy of the same bytes finds it by digest and skips the upload.

use sha2::{Digest as _, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The content-addressed program directory.
#[derive(Clone)]
pub struct Programs {
    dir: PathBuf,
}

/// A program could not be stored or found.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    /// Not of the form `sha256:<64 hex>`.
    #[error("{0:?} is not a program digest; write sha256:<64 lowercase hex digits>")]
    BadDigest(String),
    /// The uploaded bytes hash to something else.
    #[error("upload does not match its digest: expected {expected}, got {actual}; the upload was discarded")]
    Mismatch {
        /// Digest in the request.
        expected: String,
        /// Digest of the bytes received.
        actual: String,
    },
    /// Not stored here.
    #[error("program {0} is not on this daemon; upload it first (PUT /v1/programs/{0}, which `spore deploy` does)")]
    Missing(String),
    /// Disk trouble.
    #[error("program store: {0}")]
    Io(#[from] std::io::Error),
}

impl Programs {
    /// Uses (and creates) `dir`.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.join("sha256"))?;
        Ok(Programs { dir: dir.to_owned() })
    }

    /// The hex part of a well-formed digest.
    pub fn hex(digest: &str) -> Result<&str, ProgramError> {
        match digest.strip_prefix("sha256:") {
            Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => {
                Ok(hex)
            }
            _ => Err(ProgramError::BadDigest(digest.to_owned())),
        }
    }

    fn path(&self, hex: &str) -> PathBuf {
        self.dir.join("sha256").join(format!("{hex}.wasm"))
    }

    /// Whether `digest` is stored.
    pub fn has(&self, digest: &str) -> Result<bool, ProgramError> {
        Ok(self.path(Self::hex(digest)?).exists())
    }

    /// Stores `bytes` under `digest` after checking they hash to it (write, fsync, rename).
    pub fn put(&self, digest: &str, bytes: &[u8]) -> Result<(), ProgramError> {
        let hex = Self::hex(digest)?;
        let actual = hex::encode(Sha256::digest(bytes));
        if actual != hex {
            return Err(ProgramError::Mismatch { expected: digest.to_owned(), actual: format!("sha256:{actual}") });
        }
        let dest = self.path(hex);
        if dest.exists() {
            return Ok(());
        }
        let mut tmp = tempfile::NamedTempFile::new_in(self.dir.join("sha256"))?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&dest).map_err(|e| e.error)?;
        Ok(())
    }

    /// Reads a stored program.
    pub fn get(&self, digest: &str) -> Result<Vec<u8>, ProgramError> {
        let hex = Self::hex(digest)?;
        std::fs::read(self.path(hex)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ProgramError::Missing(digest.to_owned()),
            _ => ProgramError::Io(e),
        })
    }
}
