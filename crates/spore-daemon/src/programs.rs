//! Programs the daemon runs, kept in a content store by digest. A deploy uploads a wasm once;
//! every later deploy of the same bytes finds it by digest and skips the upload.
//!
//! Images come in through the same door: a create naming an image is pulled (as its pull
//! policy says) into the image store the CLI shares, pinned there (so `spore image prune`
//! keeps it and its unpacked root), its wasm stored here as a program, and its settings put
//! under the spec by the launch path ([`spore_sandbox::launch::from_image`]). The stored
//! record is then a plain spec: restarts need no registry.

use spore_engine::{Digest, Wasm};
use spore_image::{ContentStore, Reference, StoreError, open_image};
use spore_registry::{AuthFiles, Progress, PullPolicy, Registry, RegistryError, RegistryOptions};
use spore_sandbox::{ProgramSource, SandboxSpec};
use std::path::Path;

/// The daemon's view of the content store.
#[derive(Clone)]
pub struct ProgramStore {
    store: ContentStore,
    images: ContentStore,
    registry: std::sync::Arc<Registry>,
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
    /// The image is neither here nor (under the pull policy) fetched.
    #[error("{0}")]
    ImageMissing(String),
    /// The registry could not be reached or refused.
    #[error("{0}")]
    Upstream(String),
    /// The image is not one Spore runs.
    #[error("{0}")]
    BadImage(String),
}

impl spore_api::Classified for ProgramError {
    fn kind(&self) -> spore_api::ErrorKind {
        use spore_api::ErrorKind;
        match self {
            ProgramError::Missing(_) | ProgramError::BadImage(_) => ErrorKind::Unrunnable,
            ProgramError::ImageMissing(_) => ErrorKind::NotFound,
            ProgramError::Upstream(_) => ErrorKind::Upstream,
            ProgramError::Store(StoreError::Io(_)) => ErrorKind::Internal,
            ProgramError::Store(StoreError::TooLarge { .. }) => ErrorKind::TooLarge,
            ProgramError::Store(_) => ErrorKind::Invalid,
        }
    }
}

impl ProgramStore {
    /// Uses (and creates) the program store at `root`, taking programs of up to `max_program`
    /// bytes, and the image store at `images`; `insecure` registries are reached over plain
    /// HTTP, with the credentials in `auth`; pulled images are held to `limits`, their requests
    /// to `reach`.
    pub fn open(
        root: &Path,
        max_program: u64,
        images: &Path,
        insecure: Vec<String>,
        auth: AuthFiles,
        limits: spore_registry::PullLimits,
        reach: spore_registry::Reach,
    ) -> std::io::Result<Self> {
        Ok(ProgramStore {
            store: ContentStore::open(root)?.with_max_blob(max_program),
            images: ContentStore::open(images)?,
            registry: std::sync::Arc::new(Registry::new(RegistryOptions { insecure, auth, limits, reach })),
        })
    }

    /// Turns a spec whose program is an image into one that runs a stored program: see the
    /// module docs. Returns the image's manifest digest (pinned), `None` when the spec named no
    /// image.
    pub async fn resolve_image(
        &self,
        spec: &mut SandboxSpec,
        policy: PullPolicy,
    ) -> Result<Option<String>, ProgramError> {
        let ProgramSource::Image(image) = &spec.program else { return Ok(None) };
        let image = image.clone();
        let reference: Reference = image.parse().map_err(|e| ProgramError::BadImage(format!("spec.program: {e}")))?;
        let (digest, pulled) =
            self.registry.ensure(&self.images, &reference, policy, &Progress::hidden()).await.map_err(|e| match e {
                RegistryError::NotFound { .. } => ProgramError::ImageMissing(e.to_string()),
                RegistryError::Image(_) | RegistryError::BadManifest { .. } | RegistryError::TooLarge { .. } => {
                    ProgramError::BadImage(e.to_string())
                }
                RegistryError::Store(e) => ProgramError::Store(e),
                other => ProgramError::Upstream(other.to_string()),
            })?;
        if let Some(done) = pulled {
            tracing::info!("pulled {reference} ({}, {} blob(s), {} bytes)", done.digest, done.moved, done.bytes);
        }
        let digest = digest.ok_or_else(|| {
            ProgramError::ImageMissing(format!(
                "no image {reference} in the daemon's image store and the pull policy is never; pull it first"
            ))
        })?;
        // Unpacking the layers, reading and hashing the wasm: disk and CPU work, done on the
        // blocking pool so that the runtime's workers go on driving guests and the API.
        let (this, mut taken) = (self.clone(), std::mem::take(spec));
        let (result, taken) = tokio::task::spawn_blocking(move || {
            let result = this.program_of_image(&image, digest, &mut taken);
            (result, taken)
        })
        .await
        .map_err(|e| ProgramError::Upstream(format!("unpacking the image failed: {e}")))?;
        *spec = taken;
        result.map(|()| Some(digest.to_string()))
    }

    /// The blocking half of [`ProgramStore::resolve_image`]: the image `digest` (named `image`)
    /// opened, pinned, its wasm stored as a program and its settings put under `spec`.
    fn program_of_image(&self, image: &str, digest: Digest, spec: &mut SandboxSpec) -> Result<(), ProgramError> {
        let bad = |e: spore_image::ImageError| ProgramError::BadImage(format!("{image}: {e}"));
        let opened = open_image(&self.images, digest).map_err(bad)?;
        // Pinned before anything depends on it, so a prune racing this create keeps it.
        self.images.pin("daemon", &digest)?;
        let wasm = spore_sandbox::launch::from_image(&self.images, &opened, spec).map_err(bad)?;
        let program = wasm.digest().to_string();
        // Stored already (an earlier create of the image): the entrypoint need not be read.
        match self.has(&program)? {
            true => self.touch(&program)?,
            false => {
                let bytes = wasm.bytes().map_err(|e| ProgramError::BadImage(format!("{image}: {e}")))?;
                self.put(&program, &bytes)?;
            }
        }
        spec.program = ProgramSource::Digest(program);
        Ok(())
    }

    /// Keeps the image `digest` (a manifest) through prunes again: a create pins it a second
    /// time once its sandbox is recorded, so a removal that unpinned it in between (its last
    /// other user gone) cannot leave a recorded sandbox's image unpinned.
    pub fn pin_image(&self, digest: &str) -> Result<(), ProgramError> {
        Ok(self.images.pin("daemon", &ContentStore::digest(digest)?)?)
    }

    /// Lets the image `digest` go: no sandbox of this daemon uses it any more, so `spore rmi`
    /// and `spore image prune` in the daemon's store may remove it.
    pub fn unpin_image(&self, digest: &str) -> Result<(), ProgramError> {
        Ok(self.images.unpin("daemon", &ContentStore::digest(digest)?)?)
    }

    /// Whether `digest` is stored.
    pub fn has(&self, digest: &str) -> Result<bool, ProgramError> {
        Ok(self.store.has(&ContentStore::digest(digest)?))
    }

    /// Stores `bytes` under `digest` after checking they hash to it; a program already stored
    /// counts as just used (see [`ProgramStore::touch`]).
    pub fn put(&self, digest: &str, bytes: &[u8]) -> Result<(), ProgramError> {
        self.store.put(&ContentStore::digest(digest)?, bytes)?;
        self.touch(digest)
    }

    /// Marks the stored program `digest` as just used, so that a prune leaves it alone for its
    /// grace period: an upload or a create that finds it already stored is a use.
    pub fn touch(&self, digest: &str) -> Result<(), ProgramError> {
        let path = self.store.path(&ContentStore::digest(digest)?);
        let file = std::fs::File::options().write(true).open(&path).map_err(StoreError::from)?;
        file.set_modified(std::time::SystemTime::now()).map_err(StoreError::from)?;
        Ok(())
    }

    /// Deletes the stored programs not in `used` and not used for `grace`; returns each
    /// deleted program's digest and size.
    pub fn prune(
        &self,
        used: &std::collections::HashSet<String>,
        grace: std::time::Duration,
    ) -> Result<Vec<(String, u64)>, ProgramError> {
        let mut deleted = Vec::new();
        for digest in self.store.blobs()? {
            let name = digest.to_string();
            if used.contains(&name) {
                continue;
            }
            let meta = match std::fs::metadata(self.store.path(&digest)) {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::from(e).into()),
            };
            let idle = meta.modified().ok().and_then(|t| t.elapsed().ok()).unwrap_or_default();
            if idle >= grace {
                self.store.delete(&digest)?;
                deleted.push((name, meta.len()));
            }
        }
        Ok(deleted)
    }

    /// Reads a stored program.
    pub fn get(&self, digest: &str) -> Result<Vec<u8>, ProgramError> {
        match self.store.get(&ContentStore::digest(digest)?) {
            Err(StoreError::Missing(_)) => Err(ProgramError::Missing(digest.to_owned())),
            other => Ok(other?),
        }
    }

    /// A stored program as the engine loads it: the file, named by its digest (the store put
    /// it there only after checking that it hashes to it), so that linking it again when its
    /// compiled code is cached does not read it.
    pub fn wasm(&self, digest: &str) -> Result<Wasm, ProgramError> {
        let d = ContentStore::digest(digest)?;
        match self.store.has(&d) {
            true => Ok(Wasm::File { path: self.store.path(&d), digest: d }),
            false => Err(ProgramError::Missing(digest.to_owned())),
        }
    }
}
