//! Errors of the engine layer. Each says what happened and what the user can do about it;
//! the file name is added by the caller, which knows it.

use std::path::PathBuf;

/// The engine could not be created (bad configuration, or the host refuses what it needs).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime rejected the configuration.
    #[error("cannot configure the WebAssembly engine: {0:#}")]
    Config(wasmtime::Error),
    /// The compile cache directory cannot be created.
    #[error("cannot create the compile cache at {path}: {source}; set SPORE_CACHE_DIR to a writable directory")]
    CacheDir {
        /// The directory that could not be created.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The compile cache's key file cannot be read or created.
    #[error("cannot use the compile cache key {path}: {source}")]
    CacheKey {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl EngineError {
    /// The key file of the compile cache cannot be read or made.
    pub(crate) fn cache_key(path: PathBuf, source: std::io::Error) -> Self {
        EngineError::CacheKey { path, source }
    }
}

/// A wasm binary could not be turned into a runnable [`crate::Program`].
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes do not start with the wasm magic number.
    #[error("not a WebAssembly binary: it looks like {looks_like}")]
    NotWasm {
        /// A guess at what the file is instead.
        looks_like: &'static str,
    },
    /// The header carries a version this engine does not know.
    #[error(
        "unsupported WebAssembly binary version {version} (layer {layer}); Spore reads core modules (version 1) and components (layer 1)"
    )]
    UnknownVersion {
        /// Layer field of the header (0 = core, 1 = component).
        layer: u16,
        /// Version field of the header.
        version: u16,
    },
    /// Validation or compilation failed: truncated, malformed, or uses a disabled feature.
    #[error("invalid WebAssembly {kind}: {message}")]
    Invalid {
        /// "module" or "component".
        kind: &'static str,
        /// wasmtime's own description, which names the offset and the problem.
        message: String,
    },
}
