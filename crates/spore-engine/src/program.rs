//! [`Program`]: what the engine hands up — compiled code, ready to link — and how it was
//! obtained. Shared by the engine (which makes programs) and the cache (which stores their
//! code), so neither depends on the other for it.

use spore_types::{Digest, WasmKind};
use std::fmt;
use wasmtime::Module;
use wasmtime::component::Component;

/// Compiled code, ready to link: the form depends on the binary's kind.
#[derive(Clone)]
pub enum ProgramCode {
    /// A core module.
    Module(Module),
    /// A component.
    Component(Component),
}

/// A compiled wasm binary and what is known about it. Cheap to clone (reference-counted), so
/// one `Program` serves every sandbox of the same digest.
#[derive(Clone)]
pub struct Program {
    /// sha256 of the original wasm bytes.
    pub digest: Digest,
    /// Module or component.
    pub kind: WasmKind,
    /// The compiled code.
    pub code: ProgramCode,
    /// Whether this load hit the cache.
    pub outcome: CacheOutcome,
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Program")
            .field("digest", &self.digest)
            .field("kind", &self.kind)
            .field("outcome", &self.outcome)
            .finish()
    }
}

/// How a program's compiled code was obtained; reported by `spore compile` and in logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the cache; nothing was compiled.
    Hit,
    /// Compiled now (and stored, when a cache is configured).
    Compiled,
    /// A cache entry existed but could not be trusted; it was compiled again and replaced.
    Rebuilt {
        /// Why the old entry was rejected.
        reason: String,
    },
}
