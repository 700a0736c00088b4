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

mod kv;
pub mod launch;
mod limits;
mod mounts;
mod net;
mod outbound;
mod proxy;
mod runner;
mod sink;
mod spec;
mod status;
mod stdio;

pub use kv::KvStores;
pub use limits::Meter;
pub use net::{AddrRule, NetworkPolicy};
pub use outbound::{Grant, OutboundPolicy};
pub use proxy::{HandleError, Instances, ProxyResponse, Slot};
pub use runner::{RunReport, Runnable, SandboxError};
pub use sink::{CaptureSink, OutputSink};
pub use spec::{
    Capabilities, Counts, DEFAULT_MAX_OPEN_FILES, HttpSpec, Invoke, Limits, Mount, MountPin, ProgramSource,
    SandboxSpec, SpecError,
};
pub use spore_types::{human_bytes, parse_size};
pub use status::{ExitStatus, LimitKind, exit_code};
pub use stdio::{Input, Output, Sinks, StdioSpec};
