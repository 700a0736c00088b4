//! [`ImageError`]: why an image could not be read.

use crate::store::StoreError;
use spore_types::Digest;

/// An image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Store trouble (missing blob, disk).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Not valid JSON, or not the shape its media type promises.
    #[error("{what} {digest} is malformed: {message}")]
    Malformed {
        /// "manifest", "index" or "config".
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// What is wrong.
        message: String,
    },
    /// A media type Spore does not read.
    #[error("{what} media type {media_type:?} is not supported; Spore reads {supported}")]
    UnknownMediaType {
        /// Manifest, config or layer.
        what: &'static str,
        /// The type found.
        media_type: String,
        /// What would have been accepted.
        supported: String,
    },
    /// An index with no wasm platform.
    #[error("index {0} has no wasm image (no platform with architecture wasm); it is not a Spore-runnable image")]
    NoWasmPlatform(Digest),
    /// Nothing says what to run.
    #[error("image {0} has no wasm to run: its config has no Entrypoint or Cmd, and it has no wasm layer")]
    NoEntrypoint(Digest),
    /// The entrypoint is reached through a symlink, which could point anywhere on the host.
    #[error(
        "the entrypoint {entry} goes through the symlink {link}; Spore runs the wasm file itself, name it directly"
    )]
    EntrypointThroughSymlink {
        /// The entrypoint as the image names it.
        entry: String,
        /// The symlink on its way.
        link: String,
    },
    /// The entrypoint file is not in the image.
    #[error("the entrypoint {0} is not in the image")]
    EntrypointMissing(String),
}
