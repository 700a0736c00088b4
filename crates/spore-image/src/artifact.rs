//! Writing the CNCF Wasm OCI artifact: config `application/vnd.wasm.config.v0+json`
//! (`architecture`, `os`, `layerDigests`, and for components their imports and exports) and one
//! raw `application/wasm` layer. Smaller than a compat image and self-describing; it carries no
//! other files and no process settings.

use crate::Written;
use crate::compat::put_manifest;
use crate::media_types::WASM_CONFIG;
use crate::store::{ContentStore, StoreError};
use oci_spec::image::MediaType;
use serde_json::json;
use spore_types::Digest;

/// A wasm and what the artifact's config says about it.
#[derive(Debug, Clone, Default)]
pub struct ArtifactImage {
    /// The wasm binary.
    pub wasm: Vec<u8>,
    /// `wasip1` or `wasip2`.
    pub os: String,
    /// For a component: its imports and exports (interface names), as the spec asks.
    pub component: Option<(Vec<String>, Vec<String>)>,
}

impl ArtifactImage {
    /// Writes layer, config and manifest into `store`.
    pub fn write(&self, store: &ContentStore) -> Result<Written, StoreError> {
        let layer = Digest::of(&self.wasm);
        store.put(&layer, &self.wasm)?;
        let mut config = json!({ "architecture": "wasm", "os": self.os, "layerDigests": [layer.to_string()] });
        if let Some((imports, exports)) = &self.component {
            config["component"] = json!({ "imports": imports, "exports": exports });
        }
        let config = serde_json::to_vec(&config).expect("json");
        let config_digest = Digest::of(&config);
        store.put(&config_digest, &config)?;
        let wasm_config = || MediaType::Other(WASM_CONFIG.to_owned());
        let (manifest, manifest_len) = put_manifest(
            store,
            (wasm_config(), &config_digest, config.len()),
            &[(MediaType::Other("application/wasm".to_owned()), &layer, self.wasm.len())],
            Some(wasm_config()),
            &[],
        )?;
        Ok(Written { manifest, total_size: (self.wasm.len() + config.len() + manifest_len) as u64 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_artifact_reads_back_as_its_wasm() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let image = ArtifactImage {
            wasm: b"\0asm\x0d\0\x01\0".to_vec(),
            os: "wasip2".into(),
            component: Some((vec!["wasi:cli/environment@0.2.0".into()], vec!["wasi:cli/run@0.2.0".into()])),
        };
        let written = image.write(&store).unwrap();
        assert_eq!(written, image.write(&store).unwrap(), "reproducible");
        let opened = crate::open_image(&store, written.manifest).unwrap();
        assert_eq!(store.get(&opened.wasm_layer.unwrap()).unwrap(), image.wasm);
        let manifest: serde_json::Value = serde_json::from_slice(&store.get(&written.manifest).unwrap()).unwrap();
        let config = Digest::parse(manifest["config"]["digest"].as_str().unwrap()).unwrap();
        let config: serde_json::Value = serde_json::from_slice(&store.get(&config).unwrap()).unwrap();
        assert_eq!(config["component"]["exports"][0], "wasi:cli/run@0.2.0");
        assert_eq!(config["layerDigests"][0], opened.wasm_layer.unwrap().to_string());
    }
}
