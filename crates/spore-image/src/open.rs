//! Reading an image back: from a manifest (or an index naming one) in the store to what a
//! sandbox needs — the wasm to run, the files beside it, and the process settings.
//!
//! Accepted, as seen in the wild: OCI and Docker v2 manifests and indexes/manifest lists; the
//! *compat* image (tar layers, config `architecture: wasm`), runwasi's wasm-layer images and
//! `application/vnd.wasm.content.layer.v1+wasm` layers, and the CNCF Wasm artifact
//! (`application/vnd.wasm.config.v0+json` with one `application/wasm` layer).

use crate::doc::{Descriptor, Document};
use crate::error::ImageError;
use crate::media_types::{INDEX_TYPES, MANIFEST_TYPES, TAR_LAYERS, TREE_CONFIGS, WASM_CONFIG, WASM_LAYERS};
use crate::store::{ContentStore, StoreError};
use serde::Deserialize;
use spore_types::Digest;

#[derive(Deserialize, Default)]
struct Config {
    #[serde(default)]
    os: String,
    #[serde(default)]
    config: Option<Process>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Process {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
}

/// What an image asks to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedImage {
    /// The (platform) manifest's digest.
    pub manifest: Digest,
    /// `wasip1`, `wasip2`, `wasi`… as the config says (may be empty).
    pub os: String,
    /// Tar layers to unpack, in order, into the image's read-only root.
    pub tree_layers: Vec<Digest>,
    /// A layer that is the wasm itself, when the image has one.
    pub wasm_layer: Option<Digest>,
    /// Entrypoint followed by Cmd: the argv the image asks for.
    pub argv: Vec<String>,
    /// How many leading `argv` elements are the Entrypoint (the rest is Cmd, which a user's
    /// arguments replace, as with docker).
    pub entrypoint_len: usize,
    /// `KEY=VALUE` environment.
    pub env: Vec<String>,
    /// Working directory inside the image.
    pub working_dir: Option<String>,
}

fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &'static str, digest: Digest) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::Malformed { what, digest, message: e.to_string() })
}

/// The digest of a config or layer descriptor, checking the stored blob has the size the
/// manifest gives it (the digest was checked when it was stored).
fn stored_blob(store: &ContentStore, d: &Descriptor, manifest: Digest) -> Result<Digest, ImageError> {
    let digest = d.digest(manifest)?;
    let actual = std::fs::metadata(store.path(&digest)).map_err(|_| StoreError::Missing(digest))?.len();
    if actual != d.size {
        return Err(ImageError::Malformed {
            what: "manifest",
            digest: manifest,
            message: format!("it gives {digest} a size of {} bytes, but the blob has {actual}", d.size),
        });
    }
    Ok(digest)
}

fn unknown(what: &'static str, media_type: &str, supported: &[&[&str]]) -> ImageError {
    ImageError::UnknownMediaType {
        what,
        media_type: media_type.to_owned(),
        supported: supported.iter().flat_map(|s| s.iter()).copied().collect::<Vec<_>>().join(", "),
    }
}

/// Reads the image whose manifest or index is `digest` in `store`.
pub fn open_image(store: &ContentStore, digest: Digest) -> Result<OpenedImage, ImageError> {
    let top = Document::parse(&store.get(&digest)?, digest)?;
    if top.is_index() {
        return open_image(store, top.wasm_platform(digest)?.digest(digest)?);
    }
    if let Some(m) = top.media_type.as_deref()
        && !MANIFEST_TYPES.contains(&m)
    {
        return Err(unknown("manifest", m, &[MANIFEST_TYPES, INDEX_TYPES]));
    }
    let config_desc = top.config.as_ref().ok_or_else(|| ImageError::Malformed {
        what: "manifest",
        digest,
        message: "it has no config descriptor".into(),
    })?;
    let config: Config = if TREE_CONFIGS.contains(&config_desc.media_type.as_str()) {
        let config_digest = stored_blob(store, config_desc, digest)?;
        parse(&store.get(&config_digest)?, "config", config_digest)?
    } else if config_desc.media_type == WASM_CONFIG {
        Config::default()
    } else {
        return Err(unknown("config", &config_desc.media_type, &[TREE_CONFIGS, &[WASM_CONFIG]]));
    };
    let mut tree_layers = Vec::new();
    let mut wasm_layer = None;
    for layer in &top.layers {
        let d = stored_blob(store, layer, digest)?;
        if WASM_LAYERS.contains(&layer.media_type.as_str()) {
            wasm_layer = Some(d);
        } else if TAR_LAYERS.contains(&layer.media_type.as_str()) {
            tree_layers.push(d);
        } else {
            return Err(unknown("layer", &layer.media_type, &[TAR_LAYERS, WASM_LAYERS]));
        }
    }
    let process = config.config.unwrap_or_default();
    let entrypoint = process.entrypoint.unwrap_or_default();
    let entrypoint_len = entrypoint.len();
    let argv: Vec<String> = entrypoint.into_iter().chain(process.cmd.unwrap_or_default()).collect();
    if argv.is_empty() && wasm_layer.is_none() {
        return Err(ImageError::NoEntrypoint(digest));
    }
    Ok(OpenedImage {
        manifest: digest,
        os: config.os,
        tree_layers,
        wasm_layer,
        argv,
        entrypoint_len,
        env: process.env.unwrap_or_default(),
        working_dir: process.working_dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CompatImage;
    use spore_types::Wasm;

    #[test]
    fn a_compat_image_opens_to_its_argv_env_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let mut image = CompatImage { os: "wasip1".into(), entrypoint: vec!["/app.wasm".into()], ..Default::default() };
        image.cmd = vec!["--port".into(), "80".into()];
        image.env = vec!["A=1".into()];
        image.files.insert("/app.wasm".into(), (b"\0asm\x01\0\0\0".to_vec(), 0o755));
        let written = image.write(&store).unwrap();
        let opened = open_image(&store, written.manifest).unwrap();
        assert_eq!(opened.argv, ["/app.wasm", "--port", "80"]);
        assert_eq!((opened.os.as_str(), opened.env.as_slice()), ("wasip1", &["A=1".to_owned()][..]));
        let root = opened.rootfs(&store).unwrap();
        assert_eq!(std::fs::read(root.join("app.wasm")).unwrap(), b"\0asm\x01\0\0\0");
        assert_eq!(opened.rootfs(&store).unwrap(), root, "unpacked once");
    }

    #[test]
    fn an_entrypoint_through_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let mut image =
            CompatImage { os: "wasip1".into(), entrypoint: vec!["/bin/app.wasm".into()], ..Default::default() };
        image.files.insert("/bin/app.wasm".into(), (b"\0asm\x01\0\0\0".to_vec(), 0o755));
        let opened = open_image(&store, image.write(&store).unwrap().manifest).unwrap();
        assert_eq!(opened.entrypoint_wasm(&store).unwrap().0, Wasm::Bytes(b"\0asm\x01\0\0\0".to_vec()));
        // Read once, then known by its recorded digest; the symlink check holds either way.
        let (again, _) = opened.entrypoint_wasm(&store).unwrap();
        assert!(matches!(&again, Wasm::File { .. }), "{again:?}");
        assert_eq!(again.digest(), Digest::of(b"\0asm\x01\0\0\0"));
        // Swap the directory for a link to somewhere on the host.
        let root = opened.rootfs(&store).unwrap();
        std::fs::remove_dir_all(root.join("bin")).unwrap();
        std::os::unix::fs::symlink("/usr/bin", root.join("bin")).unwrap();
        let err = opened.entrypoint_wasm(&store).unwrap_err().to_string();
        assert!(err.contains("goes through the symlink bin"), "{err}");
    }

    #[test]
    fn an_artifact_and_an_index_open_to_the_wasm_layer() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let put = |bytes: &[u8]| {
            let d = Digest::of(bytes);
            store.put(&d, bytes).unwrap();
            d
        };
        let wasm = put(b"\0asm\x01\0\0\0");
        let config = put(b"{}");
        let manifest = put(format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
                "config":{{"mediaType":"{WASM_CONFIG}","digest":"{config}","size":2}},
                "layers":[{{"mediaType":"application/wasm","digest":"{wasm}","size":8}}]}}"#
        )
        .as_bytes());
        let index = put(
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
                {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}},
                {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest}","size":1,"platform":{{"architecture":"wasm","os":"wasip1"}}}}]}}"#,
                "0".repeat(64)
            )
            .as_bytes(),
        );
        let opened = open_image(&store, index).unwrap();
        assert_eq!((opened.manifest, opened.wasm_layer), (manifest, Some(wasm)));
    }

    #[test]
    fn unknown_media_types_list_the_supported_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let m = br#"{"schemaVersion":2,"mediaType":"application/x-mystery","config":{"mediaType":"x","digest":"sha256:00","size":0}}"#;
        let d = Digest::of(m);
        store.put(&d, m).unwrap();
        let err = open_image(&store, d).unwrap_err().to_string();
        assert!(err.contains("\"application/x-mystery\" is not supported") && err.contains(MANIFEST_TYPES[0]), "{err}");
        let junk = b"not json";
        let d = Digest::of(junk);
        store.put(&d, junk).unwrap();
        assert!(open_image(&store, d).unwrap_err().to_string().contains("is malformed"));
    }
}
