//! Images, from the bottom up. This first layer is what every later one stands on: the
//! content-addressed store that the CLI and the daemon share (every blob verified against its
//! digest and size before it is visible; names kept in a refs index changed under a file
//! lock), image references parsed and normalised as docker does, and the extraction of layer
//! tarballs that refuses anything reaching outside the target directory.
//!
//! Depends on `spore-types`; must not depend on wasmtime, tokio, the sandbox or the registry
//! (`cargo tree -p spore-image`).

mod artifact;
mod compat;
mod doc;
mod error;
mod extract;
mod gc;
mod index;
mod layout;
pub mod media_types;
mod open;
mod reference;
mod refs;
mod rootfs;
mod store;

pub use artifact::ArtifactImage;
pub use compat::{CompatImage, VARIANT_ANNOTATION, Written};
pub use doc::{Descriptor, Document, Platform};
pub use error::ImageError;
pub use extract::{ExtractError, ExtractLimits, Resolved, Unpacker, extract_layer, resolve_in_root};
pub use gc::{GcGuard, Pruned};
pub use index::write_index;
pub use layout::{LayoutError, REF_NAME, export_layout, import_layout};
pub use media_types::{INDEX_TYPES, MANIFEST_TYPES};
pub use open::{OpenedImage, open_image};
pub use reference::{DEFAULT_REGISTRY, Reference, ReferenceError};
pub use store::{BlobWriter, ContentStore, StoreError};
