//! Writing a *compat* image — the format containerd 1.6+ and runwasi run: the `.wasm` and its
//! files in one tar+gzip layer, a config with `architecture: wasm` and `os: wasip1|wasip2` and
//! the process settings, and a manifest annotated `module.wasm.image/variant=compat-smart`.
//!
//! Reproducible by construction: entries sorted, parent directories listed, timestamps zero,
//! owners root, modes normalised, the gzip header fixed, no creation time in the config — the
//! same inputs always give the same manifest digest.

use crate::store::{ContentStore, StoreError};
use flate2::{Compression, GzBuilder};
use oci_spec::image::{
    Arch, ConfigBuilder, DescriptorBuilder, ImageConfigurationBuilder, ImageManifestBuilder, MediaType, Os,
    RootFsBuilder,
};
use spore_types::Digest;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

/// The annotation that tells containerd's wasm shims how to read the image.
pub const VARIANT_ANNOTATION: &str = "module.wasm.image/variant";

/// Everything a compat image holds.
#[derive(Debug, Clone, Default)]
pub struct CompatImage {
    /// Files by absolute path in the image (`/app.wasm`), with their bytes and mode.
    pub files: BTreeMap<String, (Vec<u8>, u32)>,
    /// `Entrypoint`, usually the wasm's path.
    pub entrypoint: Vec<String>,
    /// `Cmd`: default arguments.
    pub cmd: Vec<String>,
    /// `Env`, as `KEY=VALUE`.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
    /// `ExposedPorts` (`8080`, `9090/udp`).
    pub exposed_ports: Vec<String>,
    /// `wasip1` for core modules, `wasip2` for components.
    pub os: String,
}

/// The digests of what was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The manifest: the image's identity.
    pub manifest: Digest,
    /// Manifest, config and layer sizes together: what a pull transfers.
    pub total_size: u64,
}

fn oci_digest(d: &Digest) -> oci_spec::image::Digest {
    d.to_string().parse().expect("a sha256 digest is a valid OCI digest")
}

fn spec_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(std::io::Error::other(format!("building the image metadata: {e}")))
}

/// A manifest is the one OCI document both writers make: it names the config and the layers
/// (each a media type, a digest and a size), with an artifact type or annotations where the
/// format has them. Stored; returns its digest and size.
pub(crate) fn put_manifest(
    store: &ContentStore,
    config: (MediaType, &Digest, usize),
    layers: &[(MediaType, &Digest, usize)],
    artifact_type: Option<MediaType>,
    annotations: &[(&str, &str)],
) -> Result<(Digest, usize), StoreError> {
    let descriptor = |(media, digest, size): (MediaType, &Digest, usize)| {
        DescriptorBuilder::default()
            .media_type(media)
            .digest(oci_digest(digest))
            .size(size as u64)
            .build()
            .map_err(spec_error)
    };
    let mut manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(config)?)
        .layers(layers.iter().cloned().map(descriptor).collect::<Result<Vec<_>, _>>()?);
    if let Some(kind) = artifact_type {
        manifest = manifest.artifact_type(kind);
    }
    if !annotations.is_empty() {
        let annotations = annotations.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        manifest = manifest.annotations(annotations.collect::<std::collections::HashMap<_, _>>());
    }
    let json = manifest.build().map_err(spec_error)?.to_string().map_err(spec_error)?.into_bytes();
    let digest = Digest::of(&json);
    store.put(&digest, &json)?;
    Ok((digest, json.len()))
}

impl CompatImage {
    /// The layer's tar, deterministic.
    fn layer_tar(&self) -> std::io::Result<Vec<u8>> {
        let mut dirs = BTreeSet::new();
        for path in self.files.keys() {
            let mut p = std::path::Path::new(path.trim_start_matches('/'));
            while let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
                dirs.insert(parent.to_path_buf());
                p = parent;
            }
        }
        let mut tar = tar::Builder::new(Vec::new());
        tar.mode(tar::HeaderMode::Deterministic);
        for dir in &dirs {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            h.set_mtime(0);
            tar.append_data(&mut h, dir, std::io::empty())?;
        }
        for (path, (bytes, mode)) in &self.files {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(mode & 0o755);
            h.set_size(bytes.len() as u64);
            h.set_mtime(0);
            tar.append_data(&mut h, path.trim_start_matches('/'), &bytes[..])?;
        }
        tar.into_inner()
    }

    /// Writes layer, config and manifest into `store`.
    pub fn write(&self, store: &ContentStore) -> Result<Written, StoreError> {
        let tar = self.layer_tar()?;
        let diff_id = Digest::of(&tar);
        let mut gz = GzBuilder::new().mtime(0).operating_system(255).write(Vec::new(), Compression::best());
        gz.write_all(&tar)?;
        let layer = gz.finish()?;
        let layer_digest = Digest::of(&layer);
        store.put(&layer_digest, &layer)?;

        let mut process = ConfigBuilder::default()
            .entrypoint(self.entrypoint.clone())
            .cmd(self.cmd.clone())
            .env(self.env.clone())
            .labels(
                self.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<std::collections::HashMap<_, _>>(),
            );
        if let Some(dir) = &self.working_dir {
            process = process.working_dir(dir.clone());
        }
        if !self.exposed_ports.is_empty() {
            let ports = self.exposed_ports.iter().map(|p| if p.contains('/') { p.clone() } else { format!("{p}/tcp") });
            process = process.exposed_ports(ports.collect::<Vec<_>>());
        }
        let config = ImageConfigurationBuilder::default()
            .architecture(Arch::Wasm)
            .os(Os::Other(self.os.clone()))
            .config(process.build().map_err(spec_error)?)
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(vec![diff_id.to_string()])
                    .build()
                    .map_err(spec_error)?,
            )
            .build()
            .map_err(spec_error)?;
        let config_json = config.to_string().map_err(spec_error)?.into_bytes();
        let config_digest = Digest::of(&config_json);
        store.put(&config_digest, &config_json)?;

        let (manifest_digest, manifest_len) = put_manifest(
            store,
            (MediaType::ImageConfig, &config_digest, config_json.len()),
            &[(MediaType::ImageLayerGzip, &layer_digest, layer.len())],
            None,
            &[(VARIANT_ANNOTATION, "compat-smart")],
        )?;
        Ok(Written { manifest: manifest_digest, total_size: (layer.len() + config_json.len() + manifest_len) as u64 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> CompatImage {
        let mut image = CompatImage { os: "wasip1".into(), entrypoint: vec!["/app.wasm".into()], ..Default::default() };
        image.files.insert("/app.wasm".into(), (b"\0asm\x01\0\0\0".to_vec(), 0o755));
        image.files.insert("/etc/app/config.toml".into(), (b"x = 1\n".to_vec(), 0o644));
        image.env.push("GREETING=hi".into());
        image
    }

    #[test]
    fn the_same_inputs_give_the_same_digest_and_the_image_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let a = hello().write(&store).unwrap();
        let other = tempfile::tempdir().unwrap();
        let b = hello().write(&ContentStore::open(other.path()).unwrap()).unwrap();
        assert_eq!(a, b, "reproducible across stores and runs");

        let manifest: oci_spec::image::ImageManifest =
            serde_json::from_slice(&store.get(&a.manifest).unwrap()).unwrap();
        assert_eq!(manifest.annotations().as_ref().unwrap()[VARIANT_ANNOTATION], "compat-smart");
        let config_digest = Digest::parse(manifest.config().digest().as_ref()).unwrap();
        let config: serde_json::Value = serde_json::from_slice(&store.get(&config_digest).unwrap()).unwrap();
        assert_eq!((config["architecture"].as_str(), config["os"].as_str()), (Some("wasm"), Some("wasip1")));
        assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/app.wasm"]));

        let layer_digest = Digest::parse(manifest.layers()[0].digest().as_ref()).unwrap();
        let root = dir.path().join("rootfs");
        crate::extract_layer(&store.get(&layer_digest).unwrap()[..], &root).unwrap();
        assert_eq!(std::fs::read(root.join("etc/app/config.toml")).unwrap(), b"x = 1\n");
        assert!(a.total_size < 1024, "a tiny wasm makes a tiny image: {} bytes", a.total_size);
    }
}
