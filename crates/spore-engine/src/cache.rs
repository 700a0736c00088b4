//! The on-disk compile cache: compiled code keyed by the sha256 of the wasm and the engine's
//! compatibility hash, loaded by mmap so the second run of a wasm compiles nothing and many
//! processes share the same code pages.
//!
//! Layout, under `<root>/<engine-hash>/`:
//! - `<checksum>.cwasm` — a compiled artifact, named by the XXH3-128 checksum of its bytes;
//! - `<wasm-sha256>.ref` — which artifact belongs to that wasm (its checksum).
//!
//! An artifact is written (temp file, rename) before the ref that names it, so a reader that
//! finds a ref always finds a complete artifact, and concurrent writers can never expose a
//! mismatched pair. On every load the artifact's bytes are checked against the checksum in its
//! name: wasmtime itself rejects artifacts from another engine version or configuration, but it
//! cannot see a flipped bit in machine code. (A checksum, not a cryptographic hash, is the right
//! tool: it guards against disks and interrupted writes — whoever could forge it could rewrite
//! the ref too — and costs a fraction of a sha256 on every start.)

use crate::detect::WasmKind;
use crate::engine::{Digest, ProgramCode};
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

    fn ref_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}.ref", digest.hex()))
    }

    fn artifact_file(&self, checksum: &str) -> PathBuf {
        self.dir.join(format!("{checksum}.cwasm"))
    }

    /// Path of the compiled artifact cached for `digest`, if there is one.
    pub fn artifact_path(&self, digest: &Digest) -> Option<PathBuf> {
        let checksum = std::fs::read_to_string(self.ref_path(digest)).ok()?;
        Some(self.artifact_file(checksum.trim()))
    }

    pub(crate) fn lookup(&self, engine: &Engine, kind: WasmKind, digest: &Digest) -> Lookup {
        let expected = match std::fs::read_to_string(self.ref_path(digest)) {
            Ok(sum) => sum.trim().to_owned(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(err) => return Lookup::Untrusted(format!("reference unreadable: {err}")),
        };
        if !is_checksum(&expected) {
            return Lookup::Untrusted(format!("reference holds {expected:.40?}, not a checksum"));
        }
        let artifact = self.artifact_file(&expected);
        let bytes = match std::fs::read(&artifact) {
            Ok(bytes) => bytes,
            Err(err) => return Lookup::Untrusted(format!("artifact unreadable: {err}")),
        };
        let actual = checksum(&bytes);
        if actual != expected {
            return Lookup::Untrusted(format!(
                "checksum mismatch (expected {expected}, found {actual}): corrupt or truncated"
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

    /// Stores `artifact` for `digest`: the artifact under its checksum first, then the ref.
    pub(crate) fn store(&self, digest: &Digest, artifact: &[u8]) -> std::io::Result<()> {
        let sum = checksum(artifact);
        write_atomically(&self.dir, &self.artifact_file(&sum), artifact)?;
        write_atomically(&self.dir, &self.ref_path(digest), sum.as_bytes())
    }

    /// Forgets an untrusted entry (its ref, and the artifact it named) so it is never read again.
    pub(crate) fn evict(&self, digest: &Digest) {
        if let Some(artifact) = self.artifact_path(digest) {
            let _ = std::fs::remove_file(artifact);
        }
        let _ = std::fs::remove_file(self.ref_path(digest));
    }
}

fn is_checksum(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The integrity checksum that names each artifact: XXH3-128, 32 hex digits.
pub(crate) fn checksum(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

fn write_atomically(dir: &Path, dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}
