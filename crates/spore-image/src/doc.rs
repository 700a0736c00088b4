//! The JSON documents that tie an image together — indexes and manifests — read just far
//! enough to know what they name. Opening, pulling, pushing, importing, exporting and pruning
//! all walk images through this one reading.

use crate::error::ImageError;
use crate::media_types::INDEX_TYPES;
use serde::Deserialize;
use spore_types::Digest;

/// A reference to a blob: what it is, its digest and size, and (in an index) its platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    pub media_type: String,
    /// `sha256:<hex>` as written (checked by [`Descriptor::digest`]).
    #[serde(rename = "digest")]
    pub digest_text: String,
    /// Size in bytes.
    pub size: u64,
    /// Platform, for an index's manifests.
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// The platform an index entry is for.
#[derive(Debug, Clone, Deserialize)]
pub struct Platform {
    /// `wasm` for Spore's images; `amd64`, `arm64`… for others.
    pub architecture: String,
    /// `wasip1`, `wasip2`, `linux`…
    #[serde(default)]
    pub os: String,
}

/// An index or a manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    /// Its declared media type (optional in OCI documents).
    #[serde(default)]
    pub media_type: Option<String>,
    /// A manifest's config.
    #[serde(default)]
    pub config: Option<Descriptor>,
    /// A manifest's layers.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// An index's manifests.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

impl Descriptor {
    /// The digest, checked; `within` names the document for the error.
    pub fn digest(&self, within: Digest) -> Result<Digest, ImageError> {
        Digest::parse(&self.digest_text).ok_or_else(|| ImageError::Malformed {
            what: "manifest",
            digest: within,
            message: format!("descriptor digest {:?} is not sha256:<hex>", self.digest_text),
        })
    }
}

impl Document {
    /// Parses the document stored as `digest`.
    pub fn parse(bytes: &[u8], digest: Digest) -> Result<Self, ImageError> {
        serde_json::from_slice(bytes).map_err(|e| ImageError::Malformed {
            what: "manifest",
            digest,
            message: e.to_string(),
        })
    }

    /// Whether it is an index (by media type, or by shape when the type is left out).
    pub fn is_index(&self) -> bool {
        self.media_type.as_deref().is_some_and(|m| INDEX_TYPES.contains(&m))
            || (self.config.is_none() && !self.manifests.is_empty())
    }

    /// An index's entry for the wasm platform (`architecture: wasm`).
    pub fn wasm_platform(&self, digest: Digest) -> Result<&Descriptor, ImageError> {
        self.manifests
            .iter()
            .find(|m| m.platform.as_ref().is_some_and(|p| p.architecture == "wasm"))
            .ok_or(ImageError::NoWasmPlatform(digest))
    }

    /// A manifest's config and layers: the blobs it needs.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(&self.layers)
    }
}
