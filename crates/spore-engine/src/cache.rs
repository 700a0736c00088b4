//! The on-disk compile cache: compiled code keyed by the sha256 of the wasm and the engine's
//! compatibility hash, loaded by mmap so the second run of a wasm compiles nothing and many
//! processes share the same code pages.
//!
//! Layout, under `<root>/<engine-hash>/`:
//! - `<mac>.cwasm` — a compiled artifact, named by its MAC;
//! - `<wasm-sha256>.ref` — which artifact belongs to that wasm (its MAC).
//!
//! An artifact is written (temp file, rename) before the ref that names it, so a reader that
//! finds a ref always finds a complete artifact, and concurrent writers can never expose a
//! mismatched pair.
//!
//! **Compiled code is trusted only if this host made it.** An artifact is native code that is
//! mapped and run as it is, so anyone who can write the directory could otherwise plant code
//! that every later sandbox of that wasm runs — a guest with a writable mount over the cache,
//! or a pod that found a way into a node's shared cache. So each artifact is named by a keyed
//! BLAKE3 MAC of its bytes and its wasm's digest under a per-host [`CacheKey`], kept outside
//! the cache directory, readable by its owner only, and checked on every load before the file
//! is mapped. An entry written without the key — forged, corrupt, truncated, another
//! program's, or from another host — is rejected and rebuilt. wasmtime itself rejects artifacts from another engine version or
//! configuration. (BLAKE3 costs about a tenth of a millisecond on a typical artifact.)

use crate::program::ProgramCode;
use spore_types::Digest;
use spore_types::WasmKind;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::Engine;

/// The per-host secret that authenticates compiled artifacts. Whoever holds it can make
/// code the cache will run: keep it where no guest can read it.
#[derive(Clone)]
pub struct CacheKey([u8; 32]);

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey(..)")
    }
}

impl CacheKey {
    /// Where the key of the cache rooted at `root` lives by default: beside it, not in it
    /// (`~/.cache/spore/compiled` → `~/.cache/spore/compiled.key`).
    pub fn default_path(root: &Path) -> PathBuf {
        let mut name = root.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "cache".into());
        name.push(".key");
        root.with_file_name(name)
    }

    /// Reads the key at `path`, or makes a new random one there (mode 0600) if there is none.
    /// Two processes making it at once agree on one: the first to link its file wins.
    pub fn load_or_create(path: &Path) -> std::io::Result<CacheKey> {
        match Self::read(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => return other,
        }
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut key = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut key)?;
        let mut tmp = tempfile::Builder::new()
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .tempfile_in(dir)?;
        tmp.write_all(&key)?;
        tmp.as_file().sync_all()?;
        match tmp.persist_noclobber(path) {
            Ok(_) => Ok(CacheKey(key)),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Self::read(path),
            Err(e) => Err(e.error),
        }
    }

    fn read(path: &Path) -> std::io::Result<CacheKey> {
        let bytes = std::fs::read(path)?;
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} holds {} bytes, not a 32-byte key; delete it to make a new one", path.display(), b.len()),
            )
        })?;
        Ok(CacheKey(key))
    }

    /// A fixed key, for tests and for embedders that keep the key elsewhere.
    pub fn from_bytes(key: [u8; 32]) -> CacheKey {
        CacheKey(key)
    }

    /// The MAC that names an artifact: keyed BLAKE3 over the digest of the wasm it was compiled
    /// from and its bytes, 64 hex digits. The digest is in it so that an authentic artifact of
    /// one program cannot be passed off as another's by rewriting a ref.
    fn mac(&self, digest: &Digest, bytes: &[u8]) -> String {
        self.hasher(digest).update(bytes).finalize().to_hex().to_string()
    }

    /// [`Self::mac`] of a file's bytes, hashed from a mapping of it: a large artifact (tens of
    /// megabytes for an interpreter with its pre-initialised heap) is neither copied nor
    /// allocated, which was most of a cached start's time.
    fn mac_file(&self, digest: &Digest, path: &Path) -> std::io::Result<String> {
        Ok(self.hasher(digest).update_mmap(path)?.finalize().to_hex().to_string())
    }

    fn hasher(&self, digest: &Digest) -> blake3::Hasher {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(digest.hex().as_bytes());
        h
    }
}

/// A compile cache directory bound to one engine configuration and one host key.
#[derive(Debug, Clone)]
pub struct CompileCache {
    root: PathBuf,
    dir: PathBuf,
    key: CacheKey,
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
    /// Artifacts are authenticated with `key`.
    pub fn new(root: &Path, engine: &Engine, key: CacheKey) -> std::io::Result<Self> {
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let dir = root.join(format!("{:016x}", hasher.finish()));
        std::fs::create_dir_all(&dir)?;
        Ok(CompileCache { root: root.to_owned(), dir, key })
    }

    /// The cache's root directory (all engines' entries), which no sandbox may be given.
    pub fn root(&self) -> &Path {
        &self.root
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
        if !is_mac(&expected) {
            return Lookup::Untrusted(format!("reference holds {expected:.70?}, not an artifact MAC"));
        }
        let artifact = self.artifact_file(&expected);
        let mac = match self.key.mac_file(digest, &artifact) {
            Ok(mac) => mac,
            Err(err) => return Lookup::Untrusted(format!("artifact unreadable: {err}")),
        };
        if mac != expected {
            return Lookup::Untrusted(
                "not made by this host for this wasm: its MAC does not match (corrupt, truncated, another program's, or written without this host's cache key)"
                    .into(),
            );
        }
        // SAFETY: the file's bytes were just authenticated with this host's key, so this host
        // wrote them, for this engine configuration (directory keyed by the compatibility
        // hash). wasmtime additionally verifies version and configuration headers.
        // (Between the check and the mapping, only someone who can already write the cache
        // directory could swap the file; the directory is never given to a sandbox.)
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
        let sum = self.key.mac(digest, artifact);
        write_atomically(&self.dir, &self.artifact_file(&sum), artifact)?;
        write_atomically(&self.dir, &self.ref_path(digest), sum.as_bytes())
    }

    /// Forgets an entry (its ref, and the artifact it named): an untrusted one, so it is never
    /// read again, or one of a program its host no longer keeps.
    pub fn evict(&self, digest: &Digest) {
        if let Some(artifact) = self.artifact_path(digest) {
            let _ = std::fs::remove_file(artifact);
        }
        let _ = std::fs::remove_file(self.ref_path(digest));
    }
}

fn is_mac(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn write_atomically(dir: &Path, dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}
