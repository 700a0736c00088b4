//! Garbage collection: `spore rmi` removes names, `spore image prune` removes what no name
//! and no pin reaches.
//!
//! Two kinds of owner keep blobs alive: names (refs), which keep their whole image — index,
//! manifests, config, layers — and pins, which keep single blobs that have no image around
//! them (the daemon's programs, uploaded as bare wasm). Writers that add blobs before naming
//! them (pull, build, load, a daemon upload) hold the store's shared *GC lock* for that whole
//! time; prune takes it exclusively, so it never sees a half-added image as garbage.

use crate::doc::Document;
use crate::store::{ContentStore, StoreError};
use spore_types::Digest;
use std::collections::BTreeSet;
use std::time::Duration;

/// Largest blob read as a document while walking what names reach: manifests, indexes and
/// configs are kilobytes; a layer is never read whole to find out it is not one.
const MAX_DOCUMENT: u64 = 4 << 20;

/// Age after which a writer's temporary file or directory is a crashed writer's leftover.
const STALE: Duration = Duration::from_secs(3600);

/// Held while blobs are added but not yet named; see the module docs.
pub struct GcGuard {
    _file: std::fs::File,
}

/// What a prune removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// Blobs deleted.
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Unpacked image roots deleted.
    pub roots: usize,
    /// Crashed writers' temporary files and directories deleted.
    pub leftovers: usize,
}

impl ContentStore {
    fn gc_lock_file(&self) -> Result<std::fs::File, StoreError> {
        Ok(std::fs::File::options().create(true).truncate(false).write(true).open(self.root().join("gc.lock"))?)
    }

    /// The shared GC lock: prune waits until it is dropped.
    pub fn gc_guard(&self) -> Result<GcGuard, StoreError> {
        let file = self.gc_lock_file()?;
        file.lock_shared()?;
        Ok(GcGuard { _file: file })
    }

    /// Keeps `digest` through prunes on behalf of `owner` (e.g. `daemon`).
    pub fn pin(&self, owner: &str, digest: &Digest) -> Result<(), StoreError> {
        let dir = self.root().join("pins").join(owner);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(digest.hex()), b"")?;
        Ok(())
    }

    /// Lets `digest` go on behalf of `owner` (other owners' pins still keep it); a digest
    /// `owner` never pinned is no error.
    pub fn unpin(&self, owner: &str, digest: &Digest) -> Result<(), StoreError> {
        match std::fs::remove_file(self.root().join("pins").join(owner).join(digest.hex())) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Every pinned digest, whoever pinned it.
    pub fn pinned(&self) -> Result<BTreeSet<Digest>, StoreError> {
        let mut pins = BTreeSet::new();
        let Ok(owners) = std::fs::read_dir(self.root().join("pins")) else { return Ok(pins) };
        for owner in owners {
            for pin in std::fs::read_dir(owner?.path())? {
                if let Some(d) = pin?.file_name().to_str().and_then(|hex| Digest::parse(&format!("sha256:{hex}"))) {
                    pins.insert(d);
                }
            }
        }
        Ok(pins)
    }

    /// Every blob a name or a pin reaches (a pinned manifest keeps its whole image).
    pub fn reachable(&self) -> Result<BTreeSet<Digest>, StoreError> {
        let mut live = BTreeSet::new();
        let mut todo: Vec<Digest> = self.refs()?.into_values().chain(self.pinned()?).collect();
        while let Some(d) = todo.pop() {
            if !live.insert(d) {
                continue;
            }
            // Only documents name other blobs; a layer that is not JSON names nothing.
            if std::fs::metadata(self.path(&d)).map_or(true, |m| m.len() > MAX_DOCUMENT) {
                continue;
            }
            let Ok(bytes) = self.get(&d) else { continue };
            if let Ok(doc) = Document::parse(&bytes, d) {
                for child in doc.manifests.iter().chain(doc.blobs()) {
                    if let Ok(c) = child.digest(d) {
                        todo.push(c);
                    }
                }
            }
        }
        Ok(live)
    }

    /// Deletes every blob no name or pin reaches, and the unpacked roots of images no longer
    /// present.
    pub fn prune(&self) -> Result<Pruned, StoreError> {
        let lock = self.gc_lock_file()?;
        lock.lock()?;
        let live = self.reachable()?;
        let mut pruned = Pruned::default();
        for entry in std::fs::read_dir(self.root().join("blobs/sha256"))? {
            let entry = entry?;
            // Temporary files are not named by a digest: a writer's in progress is left alone,
            // a crashed writer's (an hour old) removed.
            let Some(d) = entry.file_name().to_str().and_then(|hex| Digest::parse(&format!("sha256:{hex}"))) else {
                pruned.leftovers += remove_if_stale(&entry)?;
                continue;
            };
            if !live.contains(&d) {
                pruned.bytes += entry.metadata()?.len();
                self.delete(&d)?;
                pruned.blobs += 1;
            }
        }
        if let Ok(roots) = std::fs::read_dir(self.root().join("rootfs")) {
            for entry in roots {
                let entry = entry?;
                // A root, or the record of its entrypoint's digest beside it.
                let name = entry.file_name().to_string_lossy().into_owned();
                let record = name.strip_suffix(crate::rootfs::ENTRYPOINT_DIGEST);
                let Some(d) = Digest::parse(&format!("sha256:{}", record.unwrap_or(&name))) else {
                    pruned.leftovers += remove_if_stale(&entry)?;
                    continue;
                };
                match (live.contains(&d), record) {
                    (true, _) => {}
                    (false, Some(_)) => std::fs::remove_file(entry.path())?,
                    (false, None) => {
                        std::fs::remove_dir_all(entry.path())?;
                        pruned.roots += 1;
                    }
                }
            }
        }
        Ok(pruned)
    }
}

/// Removes a temporary file or directory last changed over [`STALE`] ago; 1 if it did.
fn remove_if_stale(entry: &std::fs::DirEntry) -> Result<usize, StoreError> {
    let meta = entry.metadata()?;
    let age = meta.modified().ok().and_then(|t| t.elapsed().ok()).unwrap_or_default();
    if age < STALE {
        return Ok(0);
    }
    match meta.is_dir() {
        true => std::fs::remove_dir_all(entry.path())?,
        false => std::fs::remove_file(entry.path())?,
    }
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CompatImage, Reference, open_image};

    #[test]
    fn prune_removes_crashed_writers_leftovers_but_not_a_writer_at_work() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let blobs = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::create_dir_all(dir.path().join("rootfs/.tmpOLD")).unwrap();
        std::fs::write(blobs.join(".tmpOLD"), b"half a blob").unwrap();
        std::fs::write(blobs.join(".tmpNEW"), b"a blob being written").unwrap();
        let hour_ago = std::time::SystemTime::now() - STALE - Duration::from_secs(60);
        for old in [blobs.join(".tmpOLD"), dir.path().join("rootfs/.tmpOLD")] {
            std::fs::File::options().read(true).open(&old).unwrap().set_modified(hour_ago).unwrap();
        }
        assert_eq!(store.prune().unwrap().leftovers, 2);
        assert!(blobs.join(".tmpNEW").exists() && !blobs.join(".tmpOLD").exists());
        assert!(!dir.path().join("rootfs/.tmpOLD").exists());
    }

    #[test]
    fn prune_keeps_named_images_and_pins_and_removes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let image = |entry: &str| {
            let mut image = CompatImage { os: "wasip1".into(), entrypoint: vec![entry.into()], ..Default::default() };
            image.files.insert(entry.into(), (b"\0asm\x01\0\0\0".to_vec(), 0o755));
            image.write(&store).unwrap().manifest
        };
        let kept = image("/a.wasm");
        let dropped = image("/b.wasm");
        let name: Reference = "keep:v1".parse().unwrap();
        store.set_ref(&name, kept).unwrap();
        let program = Digest::of(b"a daemon program");
        store.put(&program, b"a daemon program").unwrap();
        store.pin("daemon", &program).unwrap();
        let stray = Digest::of(b"stray");
        store.put(&stray, b"stray").unwrap();
        let root = open_image(&store, dropped).unwrap().rootfs(&store).unwrap();
        let record = root.with_extension("entrypoint");
        open_image(&store, dropped).unwrap().entrypoint_wasm(&store).unwrap();
        assert!(record.is_file(), "reading the entrypoint records its digest");

        let pruned = store.prune().unwrap();
        // The dropped image's manifest, config and layer, and the stray blob.
        assert_eq!((pruned.blobs, pruned.roots), (4, 1), "{pruned:?}");
        assert!(!root.exists() && !record.exists() && !store.has(&dropped) && !store.has(&stray));
        assert!(store.has(&program));
        let opened = open_image(&store, kept).unwrap();
        assert!(opened.entrypoint_wasm(&store).is_ok(), "the named image is whole");
        assert_eq!(store.prune().unwrap(), Pruned::default(), "nothing left to prune");
    }
}
