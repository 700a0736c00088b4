//! Spore's edge runner, and the agent's end of its links.
//!
//! A runner holds modules and apps an agent uploads and starts, runs them on engines that
//! never compile (wasmtime runtime-only for the agent's native or Pulley artifacts, wasmi for
//! plain wasm), streams their output back within the agent's credit, and keeps what it needs
//! to come back after a restart under its data directory. It speaks `spore-wire` over a Unix
//! socket, TCP or a serial line, with plain threads: no async runtime, so it stays small.
//!
//! - [`link`]: the byte streams (listeners for the runner, connectors for the agent).
//! - [`client`]: the agent's side of the protocol, with retransmission.
//! - [`server`] (features `wasmtime` and/or `wasmi`): the runner — sessions, the module store,
//!   the apps.
//! - [`bundle`] (likewise): the runner with one app attached to its executable, run once.
//! - [`ending`]: a run's end as an exit code and a message, for the agent and for bundles.
//!
//! Must not depend on a compiler, an async runtime or the daemon's crates.

#[cfg(any(feature = "wasmtime", feature = "wasmi"))]
pub mod bundle;
pub mod client;
pub mod ending;
pub mod link;
#[cfg(any(feature = "wasmtime", feature = "wasmi"))]
pub mod server;
#[cfg(any(feature = "wasmtime", feature = "wasmi"))]
mod system;
