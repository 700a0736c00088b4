//! OCI image layouts (`oci-layout`, `index.json`, `blobs/sha256/…`), as `skopeo copy oci:DIR`
//! and `docker save`-style tools write them: import into the store, export from it.
//!
//! Import copies every blob reachable from the layout's index through the store's verifying
//! writer — a layout with a wrong digest or size loses nothing and stores nothing of that blob —
//! and names each manifest by its `org.opencontainers.image.ref.name` annotation.

use crate::doc::Document;
use crate::error::ImageError;
use crate::open::open_image;
use crate::reference::Reference;
use crate::store::{ContentStore, StoreError};
use serde_json::json;
use spore_types::Digest;
use std::path::Path;

/// The annotation naming a manifest in an index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A layout could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// Not a layout (no `oci-layout` or `index.json`).
    #[error("{0} is not an OCI image layout (it needs an oci-layout file and an index.json)")]
    NotALayout(String),
    /// The index or a manifest is wrong.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Store or disk trouble.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Imports the layout at `dir`; returns the names (or digests, for unnamed manifests) loaded.
pub fn import_layout(store: &ContentStore, dir: &Path) -> Result<Vec<String>, LayoutError> {
    let not_layout = || LayoutError::NotALayout(dir.display().to_string());
    if !dir.join("oci-layout").is_file() {
        return Err(not_layout());
    }
    let index_bytes = std::fs::read(dir.join("index.json")).map_err(|_| not_layout())?;
    let index_digest = Digest::of(&index_bytes);
    let index: serde_json::Value = serde_json::from_slice(&index_bytes).map_err(|e| ImageError::Malformed {
        what: "index",
        digest: index_digest,
        message: e.to_string(),
    })?;
    let _gc = store.gc_guard()?;
    let mut loaded = Vec::new();
    for m in index["manifests"].as_array().into_iter().flatten() {
        let malformed = |message: String| ImageError::Malformed { what: "index", digest: index_digest, message };
        let digest = m["digest"]
            .as_str()
            .and_then(Digest::parse)
            .ok_or_else(|| malformed(format!("bad manifest digest in {m}")))?;
        copy_tree(store, dir, digest, m["size"].as_u64(), 0)?;
        // The image must open; the name goes to what the layout names (an index stays one).
        open_image(store, digest)?;
        let name = m["annotations"][REF_NAME].as_str().map(str::to_owned);
        match name {
            Some(name) => {
                // A bare tag (as skopeo writes for `oci:DIR:TAG`) or a full reference.
                let full = if name.contains('/') || name.contains(':') { name } else { format!("local/image:{name}") };
                let reference: Reference = full.parse().map_err(|e: crate::ReferenceError| malformed(e.to_string()))?;
                store.set_ref(&reference, digest)?;
                loaded.push(reference.to_string());
            }
            None => loaded.push(digest.to_string()),
        }
    }
    Ok(loaded)
}

/// Copies a manifest (or index) and everything it names from the layout into the store.
/// Indexes within indexes a layout may nest: real images use one or two levels; a hostile
/// layout nesting thousands would otherwise exhaust the stack.
const MAX_NESTING: usize = 8;

fn copy_tree(
    store: &ContentStore,
    dir: &Path,
    digest: Digest,
    size: Option<u64>,
    depth: usize,
) -> Result<(), LayoutError> {
    copy_blob(store, dir, digest, size)?;
    let doc = Document::parse(&store.get(&digest)?, digest)?;
    if depth >= MAX_NESTING && !doc.manifests.is_empty() {
        return Err(ImageError::Malformed {
            what: "index",
            digest,
            message: format!("indexes nest more than {MAX_NESTING} deep"),
        }
        .into());
    }
    for m in &doc.manifests {
        copy_tree(store, dir, m.digest(digest)?, Some(m.size), depth + 1)?;
    }
    for blob in doc.blobs() {
        copy_blob(store, dir, blob.digest(digest)?, Some(blob.size))?;
    }
    Ok(())
}

fn copy_blob(store: &ContentStore, dir: &Path, digest: Digest, size: Option<u64>) -> Result<(), LayoutError> {
    if store.has(&digest) {
        return Ok(());
    }
    let file =
        std::fs::File::open(dir.join("blobs/sha256").join(digest.hex())).map_err(|_| StoreError::Missing(digest))?;
    store.put_reader(&digest, size, std::io::BufReader::new(file))?;
    Ok(())
}

/// Exports the image `name` points at (a manifest, or an index and the manifests it lists) as a
/// layout in `dir` (created), naming it in the index.
pub fn export_layout(store: &ContentStore, name: &Reference, top: Digest, dir: &Path) -> Result<(), LayoutError> {
    // The image must open (a broken one is refused here, not written out).
    open_image(store, top)?;
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(StoreError::from)?;
    export_tree(store, top, &blobs, 0)?;
    let top_bytes = store.get(&top)?;
    let doc: serde_json::Value = serde_json::from_slice(&top_bytes).unwrap_or_default();
    let media_type = doc["mediaType"].as_str().unwrap_or("application/vnd.oci.image.manifest.v1+json");
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": media_type,
            "digest": top.to_string(),
            "size": top_bytes.len(),
            "annotations": { REF_NAME: name.to_string() }
        }]
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec_pretty(&index).expect("json"))
        .map_err(StoreError::from)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(StoreError::from)?;
    Ok(())
}

/// Copies a document and everything it names from the store into `blobs`. Only blobs the store
/// has are named: an index may list platforms that were never pulled, and the layout keeps
/// the index whole (its digest is the image's name) while holding what was.
fn export_tree(store: &ContentStore, digest: Digest, blobs: &Path, depth: usize) -> Result<(), LayoutError> {
    let copy = |d: Digest| std::fs::copy(store.path(&d), blobs.join(d.hex())).map_err(|_| StoreError::Missing(d));
    copy(digest)?;
    let doc = Document::parse(&store.get(&digest)?, digest)?;
    for m in &doc.manifests {
        let child = m.digest(digest)?;
        if depth < MAX_NESTING && store.has(&child) {
            export_tree(store, child, blobs, depth + 1)?;
        }
    }
    for blob in doc.blobs() {
        copy(blob.digest(digest)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CompatImage;

    #[test]
    fn indexes_nested_without_end_are_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(dir.path().join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let index_type = "application/vnd.oci.image.index.v1+json";
        let mut inner: Option<(Digest, usize)> = None;
        for _ in 0..50 {
            let manifests: Vec<serde_json::Value> = inner
                .iter()
                .map(|(d, n)| json!({"mediaType": index_type, "digest": d.to_string(), "size": n}))
                .collect();
            let bytes =
                serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": index_type, "manifests": manifests}))
                    .unwrap();
            let d = Digest::of(&bytes);
            std::fs::write(blobs.join(d.hex()), &bytes).unwrap();
            inner = Some((d, bytes.len()));
        }
        let (d, n) = inner.unwrap();
        let top =
            json!({"schemaVersion": 2, "manifests": [{"mediaType": index_type, "digest": d.to_string(), "size": n}]});
        std::fs::write(dir.path().join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
        let store_dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(store_dir.path()).unwrap();
        let err = import_layout(&store, dir.path()).unwrap_err().to_string();
        assert!(err.contains("indexes nest more than 8 deep"), "{err}");
    }

    #[test]
    fn export_then_import_round_trips_and_bad_blobs_are_refused() {
        let a = tempfile::tempdir().unwrap();
        let store = ContentStore::open(a.path()).unwrap();
        let mut image = CompatImage { os: "wasip1".into(), entrypoint: vec!["/app.wasm".into()], ..Default::default() };
        image.files.insert("/app.wasm".into(), (b"\0asm\x01\0\0\0".to_vec(), 0o755));
        let written = image.write(&store).unwrap();
        let name: Reference = "localhost:5000/demo/hello:v1".parse().unwrap();
        let out = a.path().join("layout");
        export_layout(&store, &name, written.manifest, &out).unwrap();

        let b = tempfile::tempdir().unwrap();
        let other = ContentStore::open(b.path()).unwrap();
        assert_eq!(import_layout(&other, &out).unwrap(), vec![name.to_string()]);
        assert_eq!(other.resolve(&name).unwrap(), Some(written.manifest));

        // Corrupt a layer in the layout: the import fails and stores nothing of it.
        let opened = open_image(&store, written.manifest).unwrap();
        let layer = out.join("blobs/sha256").join(opened.tree_layers[0].hex());
        std::fs::write(&layer, b"garbage").unwrap();
        let c = tempfile::tempdir().unwrap();
        let third = ContentStore::open(c.path()).unwrap();
        let err = import_layout(&third, &out).unwrap_err().to_string();
        assert!(err.contains("nothing was stored"), "{err}");
        assert!(!third.has(&opened.tree_layers[0]));
        assert!(matches!(import_layout(&third, c.path()), Err(LayoutError::NotALayout(_))));
    }
}
