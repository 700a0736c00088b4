//! The on-disk compile cache: compiled code keyed by the sha256 of the wasm and the engine's
//! compatibility hash, loaded by mmap so the second run of a wasm compiles nothing and many
//! processes share the same code pages.
//!
//! Layout: `<root>/<engine-hash>/<wasm-sha256>.cwasm` and, beside it, `<wasm-sha256>.sum`
//! holding the sha256 of the `.cwasm`. wasmtime itself rejects artifacts from another engine
//! version or configuration, but it cannot see a flipped bit in machine code; the `.sum` can.
//! An entry is trusted only when both agree, and otherwise rebuilt. Both files are written to
//! a temporary name and renamed, so concurrent writers never expose half a file.

use crate::detect::WasmKind;
use crate::engine::{Digest, ProgramCode};
use sha2::{Digest as _, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::Engine;

/// How a program's compiled code was obtained; reported by `spore compile` and in logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the cache; nothing was compiled.
    Hit,
    /// Compiled now (and stored, when a cache is configured).
    Compiled,
    /// A cache entry existed but could not be trusted; it was compiled again and replaced.
    Rebuilt {
        /// Why the old entry was rejected.
        reason: String,
    },
}

/// A compile cache directory bound to one engine configuration.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
}

/// What looking up an entry found.
pub(crate) enum Lookup {
    Hit(ProgramCode),
    Miss,
    Untrusted(String),
}

impl CompileCache {
    /// A cache under `root`, in a subdirectory named after `engine`'s compatibility hash, so
    /// engines of different versions or settings never read each other's code.
    pub fn new(root: &Path, engine: &Engine) -> std::io::Result<Self> {
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let dir = root.join(format!("{:016x}", hasher.finish()));
        std::fs::create_dir_all(&dir)?;
        Ok(CompileCache { dir })
    }

    /// The directory holding this engine's entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the compiled artifact for `digest`.
    pub fn artifact_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}.cwasm", digest.hex()))
    }

    fn sum_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}.sum", digest.hex()))
    }

    pub(crate) fn lookup(&self, engine: &Engine, kind: WasmKind, digest: &Digest) -> Lookup {
        let artifact = self.artifact_path(digest);
        let expected = match std::fs::read_to_string(self.sum_path(digest)) {
            Ok(sum) => sum.trim().to_owned(),
            Err(_) if !artifact.exists() => return Lookup::Miss,
            Err(err) => return Lookup::Untrusted(format!("checksum file unreadable: {err}")),
        };
        let bytes = match std::fs::read(&artifact) {
            Ok(bytes) => bytes,
            Err(err) => return Lookup::Untrusted(format!("artifact unreadable: {err}")),
        };
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != expected {
            return Lookup::Untrusted(format!(
                "checksum mismatch (expected {expected:.12}…, found {actual:.12}…): corrupt or truncated"
            ));
        }
        drop(bytes);
        // SAFETY: the file is Spore's own output for this engine configuration (directory keyed
        // by the compatibility hash) and its bytes were just verified against the checksum
        // written with it. wasmtime additionally verifies version and configuration headers.
        let loaded = unsafe {
            match kind {
                WasmKind::Module => wasmtime::Module::deserialize_file(engine, &artifact).map(ProgramCode::Module),
                WasmKind::Component => {
                    wasmtime::component::Component::deserialize_file(engine, &artifact).map(ProgramCode::Component)
                }
            }
        };
        match loaded {
            Ok(code) => Lookup::Hit(code),
            Err(err) => Lookup::Untrusted(format!("rejected by the engine: {err}")),
        }
    }

    /// Stores `artifact` for `digest`: artifact first, then its checksum, each by rename.
    pub(crate) fn store(&self, digest: &Digest, artifact: &[u8]) -> std::io::Result<()> {
        let sum = hex::encode(Sha256::digest(artifact));
        write_atomically(&self.dir, &self.artifact_path(digest), artifact)?;
        write_atomically(&self.dir, &self.sum_path(digest), sum.as_bytes())
    }

    /// Removes an untrusted entry so it is never read again.
    pub(crate) fn evict(&self, digest: &Digest) {
        let _ = std::fs::remove_file(self.sum_path(digest));
        let _ = std::fs::remove_file(self.artifact_path(digest));
    }
}

fn write_atomically(dir: &Path, dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}
