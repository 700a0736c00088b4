//! Telling a module from a component before anything is compiled: the header is read by
//! [`spore_types::detect`]; here its refusal becomes the engine's [`LoadError`].

use crate::error::LoadError;
use spore_types::WasmKind;

/// Classifies `bytes` as a module or a component, or says what it looks like instead.
pub fn detect(bytes: &[u8]) -> Result<WasmKind, LoadError> {
    spore_types::detect(bytes).map_err(LoadError::Header)
}
