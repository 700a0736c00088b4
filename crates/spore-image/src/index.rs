//! An image index that lists one image under several wasm platform names — Docker's
//! `wasi/wasm` beside runwasi's and Go's `wasip1/wasm` (`wasip2/wasm` for components) — so that
//! tools matching the platform (Docker, containerd 2's unpacker) find it under either.
//!
//! Each entry is a manifest of its own whose config names the same platform as the entry (a
//! tool may check either); the layers are shared, so the index costs a config and a manifest
//! per extra name. containerd 1.6's CRI pulls only for the node's platform and so cannot pull
//! such an index; a single manifest, which it does not match, is Spore's default.

use crate::compat::Written;
use crate::doc::Document;
use crate::store::{ContentStore, StoreError};
use serde_json::json;
use spore_types::Digest;
use std::collections::BTreeMap;

/// The OCI index media type written.
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Writes an index listing each `(manifest, os)` as platform `os/wasm`; returns the index's
/// digest and the size of everything it names, each blob once (what a pull transfers).
pub fn write_index(store: &ContentStore, manifests: &[(Written, String)]) -> Result<Written, StoreError> {
    let mut entries = Vec::new();
    let mut blobs = BTreeMap::new();
    for (written, os) in manifests {
        let bytes = store.get(&written.manifest)?;
        blobs.insert(written.manifest, bytes.len() as u64);
        if let Ok(doc) = Document::parse(&bytes, written.manifest) {
            blobs.extend(
                doc.blobs().map(|b| (b.digest_text.clone(), b.size)).filter_map(|(d, n)| Some((Digest::parse(&d)?, n))),
            );
        }
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|m| m["mediaType"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
        entries.push(json!({
            "mediaType": media_type,
            "digest": written.manifest.to_string(),
            "size": bytes.len(),
            "platform": { "architecture": "wasm", "os": os },
        }));
    }
    let index = serde_json::to_vec(&json!({ "schemaVersion": 2, "mediaType": INDEX, "manifests": entries }))
        .expect("an index is JSON");
    let digest = Digest::of(&index);
    store.put(&digest, &index)?;
    Ok(Written { manifest: digest, total_size: blobs.values().sum::<u64>() + index.len() as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CompatImage, open_image};

    fn doc_layer_size(store: &ContentStore, manifest: Digest) -> u64 {
        Document::parse(&store.get(&manifest).unwrap(), manifest).unwrap().layers[0].size
    }

    #[test]
    fn each_platform_names_a_manifest_whose_config_says_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let mut image = CompatImage { entrypoint: vec!["/app.wasm".into()], ..Default::default() };
        image.files.insert("/app.wasm".into(), (b"\0asm\x01\0\0\0".to_vec(), 0o755));
        let written: Vec<(Written, String)> = ["wasip1", "wasi"]
            .into_iter()
            .map(|os| (CompatImage { os: os.into(), ..image.clone() }.write(&store).unwrap(), os.to_owned()))
            .collect();
        let index = write_index(&store, &written).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&store.get(&index.manifest).unwrap()).unwrap();
        for (i, os) in ["wasip1", "wasi"].into_iter().enumerate() {
            let entry = &doc["manifests"][i];
            assert_eq!(entry["platform"], json!({"architecture": "wasm", "os": os}));
            let manifest: Digest = Digest::parse(entry["digest"].as_str().unwrap()).unwrap();
            assert_eq!(open_image(&store, manifest).unwrap().os, os, "the config says what the entry says");
        }
        // Read back as any image: the first wasm platform.
        let opened = open_image(&store, index.manifest).unwrap();
        assert_eq!((opened.os.as_str(), opened.argv.as_slice()), ("wasip1", &["/app.wasm".to_owned()][..]));
        // The layer is shared: counted once.
        let layer = doc_layer_size(&store, written[0].0.manifest);
        let index_len = store.get(&index.manifest).unwrap().len() as u64;
        assert_eq!(index.total_size, written[0].0.total_size + written[1].0.total_size - layer + index_len);
    }
}
