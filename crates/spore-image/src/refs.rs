//! The refs index: image names to manifest digests, in `<root>/refs.json`.
//!
//! The CLI and the daemon share one store, so every change takes an exclusive lock on
//! `<root>/refs.lock`, reads the index, changes it and writes it back by temp file and rename.
//! Readers never lock: a rename is atomic, so they see the old index or the new one, never half.

use crate::reference::Reference;
use crate::store::{ContentStore, StoreError};
use spore_types::Digest;
use std::collections::BTreeMap;
use std::io::Write;

impl ContentStore {
    /// Every name and the manifest digest it points at.
    pub fn refs(&self) -> Result<BTreeMap<String, Digest>, StoreError> {
        let path = self.root().join("refs.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(e.into()),
        };
        let bad = |message: String| StoreError::BadIndex { path: path.display().to_string(), message };
        let raw: BTreeMap<String, String> = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        raw.into_iter()
            .map(|(name, d)| Digest::parse(&d).map(|d| (name, d)).ok_or_else(|| bad(format!("{d:?} is not a digest"))))
            .collect()
    }

    /// The manifest digest `name` points at.
    pub fn resolve(&self, name: &Reference) -> Result<Option<Digest>, StoreError> {
        Ok(self.refs()?.get(&name.to_string()).copied())
    }

    /// Points `name` at `digest` (replacing what it pointed at).
    pub fn set_ref(&self, name: &Reference, digest: Digest) -> Result<(), StoreError> {
        self.update_refs(|refs| {
            refs.insert(name.to_string(), digest);
        })
    }

    /// Removes `name`; returns what it pointed at.
    pub fn remove_ref(&self, name: &Reference) -> Result<Option<Digest>, StoreError> {
        let mut removed = None;
        self.update_refs(|refs| removed = refs.remove(&name.to_string()))?;
        Ok(removed)
    }

    fn update_refs(&self, change: impl FnOnce(&mut BTreeMap<String, Digest>)) -> Result<(), StoreError> {
        let lock =
            std::fs::File::options().create(true).truncate(false).write(true).open(self.root().join("refs.lock"))?;
        lock.lock()?;
        let mut refs = self.refs()?;
        change(&mut refs);
        let raw: BTreeMap<&String, String> = refs.iter().map(|(k, v)| (k, v.to_string())).collect();
        let mut tmp = tempfile::NamedTempFile::new_in(self.root())?;
        tmp.write_all(&serde_json::to_vec_pretty(&raw).expect("refs serialize"))?;
        tmp.as_file().sync_all()?;
        let path = self.root().join("refs.json");
        tmp.persist(&path).map_err(|e| e.error)?;
        crate::store::sync_parent(&path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_point_at_digests_and_survive_concurrent_writers() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let hello: Reference = "hello".parse().unwrap();
        let d = Digest::of(b"manifest");
        store.set_ref(&hello, d).unwrap();
        assert_eq!(store.resolve(&"docker.io/library/hello:latest".parse().unwrap()).unwrap(), Some(d));

        std::thread::scope(|s| {
            for t in 0..8 {
                let store = store.clone();
                s.spawn(move || {
                    for i in 0..10 {
                        store.set_ref(&format!("app{t}:{i}").parse().unwrap(), Digest::of(&[t, i])).unwrap();
                    }
                });
            }
        });
        assert_eq!(store.refs().unwrap().len(), 81, "no update was lost");
        assert_eq!(store.remove_ref(&hello).unwrap(), Some(d));
        assert_eq!(store.resolve(&hello).unwrap(), None);
    }

    #[test]
    fn a_damaged_index_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("refs.json"), "{not json").unwrap();
        let err = store.refs().unwrap_err().to_string();
        assert!(err.contains("refs.json is damaged") && err.contains("move it aside"), "{err}");
    }
}
