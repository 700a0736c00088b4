//! The daemon's API as data: what a sandbox record holds, what clients send, what events say
//! ([`model`]), and the operator's policy that judges every request before the daemon acts
//! on it ([`policy`]). No wasmtime, no async runtime: the CLI speaks these types, and the
//! request bodies and the policy are fuzzed without building an engine.
//!
//! Depends on `spore-spec` and `spore-types`; must not depend on the daemon, wasmtime or tokio.

pub mod error;
pub mod model;
pub mod policy;

pub use error::{Classified, ErrorKind};
