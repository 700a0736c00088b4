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
use spore_engine::Digest;
use std::collections::BTreeSet;

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
            // Temporary files of writers in progress are not named by a digest: left alone.
            let Some(d) = entry.file_name().to_str().and_then(|hex| Digest::parse(&format!("sha256:{hex}"))) else {
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
                let Some(d) = entry.file_name().to_str().and_then(|hex| Digest::parse(&format!("sha256:{hex}"))) else {
                    continue;
                };
                if !live.contains(&d) {
                    std::fs::remove_dir_all(entry.path())?;
                    pruned.roots += 1;
                }
            }
        }
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CompatImage, Reference, open_image};

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

        let pruned = store.prune().unwrap();
        // The dropped image's manifest, config and layer, and the stray blob.
        assert_eq!((pruned.blobs, pruned.roots), (4, 1), "{pruned:?}");
        assert!(!root.exists() && !store.has(&dropped) && !store.has(&stray));
        assert!(store.has(&program));
        let opened = open_image(&store, kept).unwrap();
        assert!(opened.entrypoint_wasm(&store).is_ok(), "the named image is whole");
        assert_eq!(store.prune().unwrap(), Pruned::default(), "nothing left to prune");
    }
}
