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
    /// Not a wasm binary Spore reads (the header says so).
    #[error(transparent)]
    Header(spore_types::HeaderError),
    /// A recorded wasm file cannot be read, or no longer holds what was recorded.
    #[error(transparent)]
    File(spore_types::WasmFileError),
    /// Validation or compilation failed: truncated, malformed, or uses a disabled feature.
    #[error("invalid WebAssembly {kind}: {message}")]
    Invalid {
        /// "module" or "component".
        kind: &'static str,
        /// wasmtime's own description, which names the offset and the problem.
        message: String,
    },
}

impl From<spore_types::WasmFileError> for LoadError {
    fn from(err: spore_types::WasmFileError) -> Self {
        match err {
            spore_types::WasmFileError::Header(header) => LoadError::Header(header),
            other => LoadError::File(other),
        }
    }
}
