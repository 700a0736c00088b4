//! Tell a core module from a component by its first eight bytes, before anything is compiled.
//!
//! The binary format puts the kind in the header: `\0asm` then a 32-bit version word whose
//! upper half is the *layer* (0 for core modules, 1 for components). Reading it ourselves lets
//! Spore give a precise message for the common mistakes (a text `.wat`, a native binary, a
//! precompiled `.cwasm`) instead of a parser error at offset 0.

/// What a wasm binary is, which decides how it is linked and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WasmKind {
    /// A core WebAssembly module (WASI preview 1 commands, reactors, libraries).
    Module,
    /// A component-model component (WASI preview 2 commands, `wasi:http` proxies).
    Component,
}

impl WasmKind {
    /// The word users see in messages and `--json` output.
    pub fn as_str(self) -> &'static str {
        match self {
            WasmKind::Module => "module",
            WasmKind::Component => "component",
        }
    }
}

const MAGIC: &[u8; 4] = b"\0asm";

/// Bytes that are not a wasm binary Spore reads, said so that the user knows what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
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
}

/// Classifies `bytes` as a module or a component, or says what it looks like instead.
pub fn detect(bytes: &[u8]) -> Result<WasmKind, HeaderError> {
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(HeaderError::NotWasm { looks_like: looks_like(bytes) });
    }
    let layer = u16::from_le_bytes([bytes[6], bytes[7]]);
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    match (layer, version) {
        (0, 1) => Ok(WasmKind::Module),
        (1, _) => Ok(WasmKind::Component),
        _ => Err(HeaderError::UnknownVersion { layer, version }),
    }
}

/// A best guess at what a non-wasm file is, so the error can say what to do about it.
fn looks_like(bytes: &[u8]) -> &'static str {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(256)]);
    let trimmed = text.trim_start();
    if bytes.is_empty() {
        "an empty file"
    } else if bytes.starts_with(b"\x7fELF") {
        "an ELF binary (a native program or a precompiled .cwasm, not portable wasm)"
    } else if trimmed.starts_with("(module") || trimmed.starts_with("(component") || trimmed.starts_with(";;") {
        "WebAssembly text format (.wat); compile it with `wasm-tools parse` or `wat2wasm` first"
    } else if bytes.starts_with(b"\x1f\x8b") {
        "a gzip archive"
    } else if bytes.starts_with(b"#!") {
        "a script"
    } else if bytes.len() < 8 && bytes.starts_with(&MAGIC[..bytes.len().min(4)]) {
        "a truncated wasm header"
    } else {
        "something else"
    }
}

/// A program's wasm as a front end holds it: the bytes, or a file whose digest is already known.
///
/// An image's entrypoint is the second kind (its store hashed it once, when it unpacked the
/// image): a start whose compiled code is cached then reads eight bytes of it, not all of it.
/// For an interpreter with a pre-initialised heap, reading and hashing tens of megabytes was
/// most of its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wasm {
    /// The bytes in hand (a file named on the command line, an upload).
    Bytes(Vec<u8>),
    /// A file and the digest its owner recorded for it.
    File {
        /// Where it is.
        path: std::path::PathBuf,
        /// What it hashed to when recorded; [`Wasm::bytes`] checks it still does.
        digest: crate::Digest,
    },
}

/// A [`Wasm`] file that cannot be used as recorded.
#[derive(Debug, thiserror::Error)]
pub enum WasmFileError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file no longer holds what was recorded: changed on disk since.
    #[error(
        "{path} changed on disk since it was recorded as {recorded} (it now hashes to {found}); remove the image and pull or build it again"
    )]
    Changed {
        /// The file.
        path: std::path::PathBuf,
        /// The digest it was recorded with.
        recorded: crate::Digest,
        /// What it hashes to now.
        found: crate::Digest,
    },
    /// Not a wasm binary Spore reads.
    #[error(transparent)]
    Header(#[from] HeaderError),
}

impl Wasm {
    /// The digest that names the program (computed for bytes, as recorded for a file).
    pub fn digest(&self) -> crate::Digest {
        match self {
            Wasm::Bytes(bytes) => crate::Digest::of(bytes),
            Wasm::File { digest, .. } => *digest,
        }
    }

    /// Module or component, from the header alone.
    pub fn kind(&self) -> Result<WasmKind, WasmFileError> {
        match self {
            Wasm::Bytes(bytes) => Ok(detect(bytes)?),
            Wasm::File { path, .. } => {
                use std::io::Read;
                let read = |source| WasmFileError::Read { path: path.clone(), source };
                let mut header = Vec::with_capacity(8);
                std::fs::File::open(path).map_err(read)?.take(8).read_to_end(&mut header).map_err(read)?;
                Ok(detect(&header)?)
            }
        }
    }

    /// All the bytes: a file is read, and refused unless it still hashes to its digest (so
    /// the program compiled is the one the digest names).
    pub fn bytes(&self) -> Result<std::borrow::Cow<'_, [u8]>, WasmFileError> {
        match self {
            Wasm::Bytes(bytes) => Ok(bytes.into()),
            Wasm::File { path, digest } => {
                let bytes = std::fs::read(path).map_err(|source| WasmFileError::Read { path: path.clone(), source })?;
                let found = crate::Digest::of(&bytes);
                if found != *digest {
                    return Err(WasmFileError::Changed { path: path.clone(), recorded: *digest, found });
                }
                Ok(bytes.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_module_and_component_headers() {
        assert_eq!(detect(b"\0asm\x01\0\0\0").unwrap(), WasmKind::Module);
        assert_eq!(detect(b"\0asm\x0d\0\x01\0").unwrap(), WasmKind::Component);
    }

    #[test]
    fn names_what_a_non_wasm_file_looks_like() {
        let err = detect(b"(module (func))").unwrap_err().to_string();
        assert!(err.contains("text format"), "{err}");
        let err = detect(b"\x7fELF\x02\x01\x01\0\0\0").unwrap_err().to_string();
        assert!(err.contains("ELF"), "{err}");
        let err = detect(b"").unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let err = detect(b"\0asm\x02\0\0\0").unwrap_err().to_string();
        assert!(err.contains("version 2"), "{err}");
    }

    #[test]
    fn a_recorded_file_is_read_only_as_recorded() {
        let path = std::env::temp_dir().join(format!("spore-wasm-{}.wasm", std::process::id()));
        std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
        let recorded = crate::Digest::of(b"\0asm\x01\0\0\0");
        let wasm = Wasm::File { path: path.clone(), digest: recorded };
        assert_eq!(wasm.kind().unwrap(), WasmKind::Module);
        assert_eq!(wasm.digest(), recorded);
        assert_eq!(&*wasm.bytes().unwrap(), b"\0asm\x01\0\0\0");
        // Changed behind the recorder's back: the kind still reads, the bytes are refused.
        std::fs::write(&path, b"\0asm\x01\0\0\0\x00").unwrap();
        let err = wasm.bytes().unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(err.contains("changed on disk") && err.contains(&recorded.to_string()), "{err}");
        let err = wasm.kind().unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{err}");
    }
}
