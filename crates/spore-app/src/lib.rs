//! An app as its author declares it, read into plain data: the Spin-style manifest
//! (`spin.toml`/`spore.toml`), its HTTP routes, and the operator's runtime config of key-value
//! stores. Nothing here runs a guest or opens a store — the host does that with what these
//! return — so the readers build without wasmtime and can be fuzzed on their own.
//!
//! Depends on `spore-types` (and glob matching) only; must not open stores, read the environment or link wasmtime.

pub mod files;
pub mod manifest;
pub mod router;
pub mod runtime_config;
