//! Spore's engine layer: exactly one [`wasmtime::Engine`] per process, configured once for
//! density (pooling or on-demand allocation, copy-on-write memory images, small fiber stacks)
//! and preemption (epoch interruption driven by a single ticker thread), plus the things that
//! must be decided *before* any sandbox exists: whether a blob is a core module or a component,
//! and where its compiled code lives on disk.
//!
//! Everything above this crate (the sandbox, the CLI, the daemon) receives a [`Program`] — a
//! compiled, ready-to-link module or component — and never calls the compiler itself. That is
//! what keeps compilation to once per wasm digest.
//!
//! Depends on `spore-types` and wasmtime; must not know of specs, sandboxes or images.

mod cache;
mod config;
mod detect;
mod engine;
mod error;
mod program;
mod ticker;

pub use cache::{CacheKey, CompileCache};
pub use config::{Allocation, CodeKind, EngineConfig, PoolConfig};
pub use detect::detect;
pub use engine::{PoolShare, SporeEngine};
pub use error::{EngineError, LoadError};
pub use program::{CacheOutcome, Program, ProgramCode};
pub use spore_types::{Digest, Wasm, WasmKind};
