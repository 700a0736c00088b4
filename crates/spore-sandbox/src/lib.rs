//! The sandbox: one description ([`SandboxSpec`]) that every entry point builds — `spore run`,
//! the daemon's API, the Kubernetes shim — and the one code path that turns it into a running,
//! limited guest with exactly the capabilities the spec grants and nothing else.
//!
//! Every front end goes through [`launch`] (link, then admit a spec) before it starts a
//! sandbox, so the checks are the same everywhere.
//!
//! The flow is one way: a [`Program`](spore_engine::Program) (compiled once per digest) is
//! linked into a [`Runnable`] (one `InstancePre` per program, shared), and each
//! [`Runnable::run`] builds a fresh store and WASI context from a spec and drives the guest as
//! an async task until it reports an [`ExitStatus`].
//!
//! Depends on the engine, the spec, the image store (to read an image's root) and the key-value
//! backends; must not know of HTTP servers, daemons or registries.

mod bindings;
mod devices;
mod error;
pub mod invoke_args;
mod kv;
mod kv_draft2;
pub mod launch;
mod limits;
mod mounts;
mod net;
mod outbound;
mod outcome;
mod preinit;
mod proxy;
mod runner;
mod sink;
mod spin_kv;
mod sqlite;
mod state;
mod stdio;
mod variables;

pub use devices::Devices;
pub use error::SandboxError;
pub use kv::KvStores;
pub use limits::Meter;
pub use outcome::RunReport;
pub use preinit::DEFAULT_INIT_EXPORT;
pub use proxy::{HandleError, Instances, ProxyResponse, Slot};
pub use runner::Runnable;
pub use sink::{CaptureSink, OutputSink};
pub use sqlite::Databases;
// The spec vocabulary lives in spore-spec (no wasmtime); it is re-exported so that a front end
// naming one crate names the whole sandbox.
pub use spore_spec::{
    AddrRule, Capabilities, Counts, DEFAULT_MAX_OPEN_FILES, ExitStatus, Grant, HttpSpec, Input, Invoke, LimitKind,
    Limits, Mount, MountPin, NetworkPolicy, OutboundPolicy, Output, ProgramSource, SandboxSpec, SpecError, StdioSpec,
    exit_code,
};
pub use spore_types::{Wasm, human_bytes, parse_size};
pub use stdio::Sinks;

/// The instance, table and memory ceilings for one sandbox of `engine`: its share of the pool
/// where there is one, else [`Counts::DEFAULT`].
pub fn counts_for(engine: &spore_engine::SporeEngine) -> Counts {
    match engine.pool_share() {
        Some(share) => Counts {
            instances: share.instances,
            tables: share.tables,
            table_elements: share.table_elements,
            memories: share.memories,
        },
        None => Counts::DEFAULT,
    }
}

/// Resolves every mount's host directory in `spec` now — symlinks followed, the directory's
/// identity recorded — so later starts of this spec open exactly these directories or fail
/// (see [`SpecError::MountChanged`]). Whoever creates a sandbox calls it once; a start of a
/// spec never pinned pins then.
pub fn pin_mounts(spec: &mut SandboxSpec) -> Result<(), SpecError> {
    spec.mounts.iter_mut().try_for_each(mounts::pin)
}
