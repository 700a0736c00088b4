//! An image's files on disk: its tree layers unpacked once into a read-only root shared by
//! every sandbox of the image, and the entrypoint's wasm found inside that root.

use crate::error::ImageError;
use crate::open::OpenedImage;
use crate::store::{ContentStore, StoreError};
use spore_types::{Digest, Wasm};
use std::path::{Path, PathBuf};

/// The suffix of the file beside an unpacked root (`rootfs/<manifest hex>`) that records its
/// entrypoint's digest. Kept out of the root: that is the guest's `/`.
pub(crate) const ENTRYPOINT_DIGEST: &str = ".entrypoint";

/// Writes `digest` to `path` whole or not at all (a temporary file renamed over it).
fn write_record(path: &Path, digest: &Digest) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = tempfile::NamedTempFile::new_in(path.parent().unwrap_or(Path::new(".")))?;
    tmp.write_all(digest.to_string().as_bytes())?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

impl OpenedImage {
    /// The wasm to run and, for an image of files, its unpacked root: the wasm layer when the
    /// image has one, else the entrypoint's file, resolved inside the root only.
    ///
    /// The entrypoint's digest is recorded beside the root the first time it is read (see
    /// [`Wasm`]), so later starts whose compiled code is cached need not read the file.
    pub fn entrypoint_wasm(&self, store: &ContentStore) -> Result<(Wasm, Option<PathBuf>), ImageError> {
        if let Some(layer) = self.wasm_layer {
            return Ok((Wasm::Bytes(store.get(&layer)?), None));
        }
        let root = self.rootfs(store)?;
        let file = self.entrypoint_in(&root)?;
        let missing = || ImageError::EntrypointMissing(self.argv[0].clone());
        let record = store.root().join("rootfs").join(format!("{}{ENTRYPOINT_DIGEST}", self.manifest.hex()));
        if let Some(digest) = std::fs::read_to_string(&record).ok().and_then(|d| Digest::parse(d.trim())) {
            if !file.is_file() {
                return Err(missing());
            }
            return Ok((Wasm::File { path: file, digest }, Some(root)));
        }
        let wasm = std::fs::read(&file).map_err(|_| missing())?;
        // Best effort: without the record the next start reads the file again.
        let _ = write_record(&record, &Digest::of(&wasm));
        Ok((Wasm::Bytes(wasm), Some(root)))
    }

    /// The entrypoint's file in the image's unpacked `root`, resolved inside it only (an
    /// image without a wasm layer runs that file).
    pub fn entrypoint_in(&self, root: &Path) -> Result<PathBuf, ImageError> {
        let entry = self.argv.first().ok_or(ImageError::NoEntrypoint(self.manifest))?;
        let inside = match (entry.starts_with('/'), &self.working_dir) {
            (false, Some(wd)) => Path::new(wd).join(entry),
            _ => PathBuf::from(entry),
        };
        let rel: PathBuf = inside.components().filter(|c| matches!(c, std::path::Component::Normal(_))).collect();
        if let Some(link) = crate::extract::symlink_on_the_way(root, &rel, true) {
            return Err(ImageError::EntrypointThroughSymlink { entry: entry.clone(), link });
        }
        Ok(root.join(&rel))
    }

    /// Unpacks the tree layers once into `<store>/rootfs/<manifest>` (by temp directory and
    /// rename, so a half-unpacked root is never used) and returns it.
    pub fn rootfs(&self, store: &ContentStore) -> Result<PathBuf, ImageError> {
        let dir = store.root().join("rootfs");
        let done = dir.join(self.manifest.hex());
        if done.is_dir() {
            return Ok(done);
        }
        std::fs::create_dir_all(&dir).map_err(StoreError::from)?;
        let tmp = tempfile::tempdir_in(&dir).map_err(StoreError::from)?;
        let malformed = |message: String| ImageError::Malformed { what: "manifest", digest: self.manifest, message };
        let mut unpacker =
            crate::Unpacker::new(tmp.path(), crate::ExtractLimits::DEFAULT).map_err(|e| malformed(e.to_string()))?;
        for layer in &self.tree_layers {
            let file = std::fs::File::open(store.path(layer)).map_err(|_| StoreError::Missing(*layer))?;
            unpacker.layer(std::io::BufReader::new(file)).map_err(|e| malformed(format!("layer {layer}: {e}")))?;
        }
        unpacker.finish().map_err(|e| malformed(e.to_string()))?;
        match std::fs::rename(tmp.path(), &done) {
            Ok(()) => {
                let _ = tmp.keep();
                Ok(done)
            }
            // Another process unpacked the same image meanwhile: theirs is as good (ours is
            // removed with `tmp`).
            Err(_) if done.is_dir() => Ok(done),
            Err(e) => Err(StoreError::from(e).into()),
        }
    }
}
