//! Modules by digest on disk, uploads that survive a cut link, and the loaded modules in
//! memory. Nothing is stored under a digest until its bytes hash to it and its engine loads it.

use super::Refusal;
use super::engines::{Engines, Loaded};
use spore_wire::{ChunkAck, Digest, ErrorCode, Have, Message, ModuleBegin, ModuleKind, SendFrom};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// An upload under way on one link.
pub(crate) struct Upload {
    size: u64,
    kind: ModuleKind,
    file: File,
    received: u64,
}

impl Upload {
    /// Bytes held from the start.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }
}

/// Uploads under way on all links together.
const MAX_UPLOADS: usize = 16;

/// An interrupted upload left longer than this is removed at start.
const STALE_UPLOAD: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

pub(crate) struct Store {
    modules: PathBuf,
    uploads: PathBuf,
    max_bytes: u64,
    /// What modules and uploads may take on disk together.
    max_store: u64,
    loaded: Mutex<HashMap<Digest, Arc<Loaded>>>,
    /// Digests an upload is under way for, so two links never write one file.
    uploading: Mutex<HashSet<Digest>>,
}

const KINDS: [(ModuleKind, &str); 3] =
    [(ModuleKind::Wasm, "wasm"), (ModuleKind::Native, "native"), (ModuleKind::Pulley, "pulley")];

fn extension(kind: ModuleKind) -> &'static str {
    KINDS.iter().find(|(k, _)| *k == kind).map_or("wasm", |(_, e)| e)
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a crash leaves the old
/// file or the new one, never half of one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl Store {
    pub(crate) fn open(dir: &Path, max_bytes: u64, max_store: u64) -> Result<Store, String> {
        let modules = dir.join("modules");
        let uploads = dir.join("uploads");
        // The runner's alone (0700): whoever writes a stored artifact chooses native code.
        for d in [&modules, &uploads] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)
                .and_then(|()| std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)))
                .map_err(|e| format!("cannot make {}: {e}", d.display()))?;
        }
        // Uploads nobody came back for, and temporary files a crash left.
        for entry in std::fs::read_dir(&uploads).into_iter().flatten().flatten() {
            let old =
                entry.metadata().and_then(|m| m.modified()).map(|t| t.elapsed().unwrap_or_default() > STALE_UPLOAD);
            if old.unwrap_or(false) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        for entry in std::fs::read_dir(&modules).into_iter().flatten().flatten() {
            if entry.path().extension().is_some_and(|x| x == "tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Store {
            modules,
            uploads,
            max_bytes,
            max_store,
            loaded: Mutex::new(HashMap::new()),
            uploading: Mutex::new(HashSet::new()),
        })
    }

    fn path(&self, digest: &Digest, kind: ModuleKind) -> PathBuf {
        self.modules.join(format!("{}.{}", hex::encode(digest), extension(kind)))
    }

    fn part(&self, digest: &Digest) -> PathBuf {
        self.uploads.join(format!("{}.part", hex::encode(digest)))
    }

    /// The stored module's kind and file.
    fn find(&self, digest: &Digest) -> Option<(ModuleKind, PathBuf)> {
        KINDS.iter().map(|(k, _)| (*k, self.path(digest, *k))).find(|(_, p)| p.is_file())
    }

    /// Starts (or resumes) an upload: `Have` if the module is stored, `SendFrom` with what an
    /// earlier link left otherwise.
    pub(crate) fn begin(&self, m: &ModuleBegin, engines: &Engines) -> Result<(Message, Option<Upload>), Refusal> {
        engines.accepts(m.kind, &m.compat)?;
        if m.size > self.max_bytes {
            return Err(Refusal::new(
                ErrorCode::TOO_LARGE,
                format!("the module is {} bytes; this runner stores at most {} (--max-module)", m.size, self.max_bytes),
            ));
        }
        if self.find(&m.digest).is_some() {
            return Ok((Message::Have(Have { digest: m.digest }), None));
        }
        let used = self.used_bytes();
        if used.saturating_add(m.size) > self.max_store {
            return Err(Refusal::new(
                ErrorCode::EXHAUSTED,
                format!(
                    "the runner's store holds {used} of its {} bytes; remove modules first (--max-store)",
                    self.max_store
                ),
            ));
        }
        {
            let mut uploading = self.uploading.lock().unwrap_or_else(PoisonError::into_inner);
            if uploading.contains(&m.digest) {
                return Err(Refusal::new(
                    ErrorCode::CONFLICT,
                    "another link is uploading this module; try again when it is done",
                ));
            }
            if uploading.len() >= MAX_UPLOADS {
                return Err(Refusal::new(
                    ErrorCode::EXHAUSTED,
                    format!("{MAX_UPLOADS} uploads are under way; try again later"),
                ));
            }
            uploading.insert(m.digest);
        }
        let opened = OpenOptions::new().create(true).append(true).read(true).mode(0o600).open(self.part(&m.digest));
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                self.release(&m.digest);
                return Err(Refusal::new(ErrorCode::INTERNAL, format!("cannot store the upload: {e}")));
            }
        };
        let mut received = file.metadata().map(|md| md.len()).unwrap_or(0);
        if received > m.size {
            // Left by an upload of other bytes under this digest: start again.
            let _ = file.set_len(0);
            received = 0;
        }
        let upload = Upload { size: m.size, kind: m.kind, file, received };
        Ok((Message::SendFrom(SendFrom { digest: m.digest, offset: received }), Some(upload)))
    }

    /// Stores a chunk at the end of what the upload holds. A chunk that is all already held is
    /// acknowledged again (a retransmission); any other offset is refused with where to go on.
    pub(crate) fn chunk(
        &self,
        up: &mut Upload,
        digest: Digest,
        offset: u64,
        bytes: &[u8],
    ) -> Result<ChunkAck, Refusal> {
        if spore_session::place(up.received, up.size, offset, bytes.len())? == spore_session::Placement::Held {
            return Ok(ChunkAck { digest, received: up.received });
        }
        let end = offset + bytes.len() as u64;
        if let Err(e) = up.file.write_all(bytes) {
            // Whatever part of the chunk was written goes: the file ends where the upload does.
            let _ = up.file.set_len(up.received);
            return Err(Refusal::new(ErrorCode::EXHAUSTED, format!("cannot store the chunk: {e}")));
        }
        up.received = end;
        Ok(ChunkAck { digest, received: end })
    }

    /// Whether every byte of the upload is here (else it stays, to be completed).
    pub(crate) fn complete(&self, up: &Upload) -> Result<(), Refusal> {
        spore_session::complete(up.received, up.size)
    }

    /// Checks the whole upload against its digest, loads it on its engine (to refuse what
    /// will not load), and stores it.
    pub(crate) fn commit(&self, up: Upload, digest: Digest, engines: &Engines) -> Result<(), Refusal> {
        let result = self.verify_and_store(up, &digest, engines);
        self.release(&digest);
        result
    }

    fn verify_and_store(&self, up: Upload, digest: &Digest, engines: &Engines) -> Result<(), Refusal> {
        self.complete(&up)?;
        let part = self.part(digest);
        let mut bytes = Vec::with_capacity(up.size as usize);
        up.file.sync_all().ok();
        File::open(&part)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| Refusal::new(ErrorCode::INTERNAL, format!("cannot read the upload back: {e}")))?;
        if let Err(refusal) = spore_session::verify(&bytes, digest) {
            let _ = std::fs::remove_file(&part);
            return Err(refusal);
        }
        // Loaded to be checked, then let go: memory holds only the modules apps use.
        if let Err(refusal) = engines.load(up.kind, &bytes) {
            let _ = std::fs::remove_file(&part);
            return Err(refusal);
        }
        std::fs::rename(&part, self.path(digest, up.kind))
            .map_err(|e| Refusal::new(ErrorCode::INTERNAL, format!("cannot store the module: {e}")))
    }

    /// Whether the module is stored.
    pub(crate) fn has(&self, digest: &Digest) -> bool {
        self.find(digest).is_some()
    }

    /// Lets go of a loaded module no app uses any more.
    pub(crate) fn unload(&self, digest: &Digest) {
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner).remove(digest);
    }

    /// Bytes the modules and uploads take on disk.
    fn used_bytes(&self) -> u64 {
        [&self.modules, &self.uploads]
            .iter()
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    /// Lets another link upload `digest` (this link committed it, or went away).
    pub(crate) fn release(&self, digest: &Digest) {
        self.uploading.lock().unwrap_or_else(PoisonError::into_inner).remove(digest);
    }

    /// The stored module, loaded (from memory, or from disk the first time after a start).
    pub(crate) fn module(&self, digest: &Digest, engines: &Engines) -> Result<Arc<Loaded>, Refusal> {
        if let Some(l) = self.loaded.lock().unwrap_or_else(PoisonError::into_inner).get(digest) {
            return Ok(l.clone());
        }
        let Some((kind, path)) = self.find(digest) else {
            return Err(Refusal::new(
                ErrorCode::UNKNOWN_MODULE,
                format!("no module sha256:{} on this runner; upload it first", hex::encode(digest)),
            ));
        };
        let bytes = std::fs::read(&path)
            .map_err(|e| Refusal::new(ErrorCode::INTERNAL, format!("cannot read {}: {e}", path.display())))?;
        // Checked again from disk, as at upload: a file changed since (a native artifact is
        // code) is not loaded.
        if spore_session::verify(&bytes, digest).is_err() {
            // Removed, so the agent's next upload of it replaces it.
            eprintln!("spore-runner: {} does not hash to its name any more; removed, not loaded", path.display());
            let _ = std::fs::remove_file(&path);
            return Err(Refusal::new(
                ErrorCode::INTERNAL,
                format!(
                    "stored module sha256:{} changed on disk since it was uploaded; removed, not loaded: upload it again",
                    hex::encode(digest)
                ),
            ));
        }
        let loaded = Arc::new(engines.load(kind, &bytes)?);
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner).insert(*digest, loaded.clone());
        Ok(loaded)
    }

    /// Forgets a stored module.
    pub(crate) fn remove(&self, digest: &Digest) -> Result<(), Refusal> {
        let Some((_, path)) = self.find(digest) else {
            return Err(Refusal::new(
                ErrorCode::UNKNOWN_MODULE,
                format!("no module sha256:{} on this runner", hex::encode(digest)),
            ));
        };
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner).remove(digest);
        std::fs::remove_file(&path)
            .map_err(|e| Refusal::new(ErrorCode::INTERNAL, format!("cannot remove {}: {e}", path.display())))
    }

    /// Stored modules.
    pub(crate) fn count(&self) -> u32 {
        std::fs::read_dir(&self.modules)
            .map(|d| d.filter_map(Result::ok).filter(|e| e.path().extension().is_some_and(|x| x != "tmp")).count())
            .unwrap_or(0) as u32
    }
}
