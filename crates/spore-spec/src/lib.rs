//! What a sandbox is, as data: its spec (program, mounts, limits, grants), the rules its grants
//! are written in, and how it ended. Plain data (serde) and the checks that need no engine:
//! no wasmtime, no async runtime, so the daemon's API, the CLI and the fuzz targets read and
//! check specs without a compiler. `spore-sandbox` turns a spec into a running guest.
//!
//! Depends on `spore-types` only; must not depend on wasmtime, tokio or the host (it describes a
//! sandbox; `spore-sandbox` runs one).

mod net;
pub mod outbound;
mod spec;
mod status;
mod stdio;

pub use net::{AddrRule, AddrRuleError, NetworkPolicy};
pub use outbound::{Grant, OutboundError, OutboundPolicy};
pub use spec::{
    Capabilities, Counts, DEFAULT_MAX_OPEN_FILES, HttpSpec, Invoke, Limits, Mount, MountPin, ProgramSource,
    SandboxSpec, SpecError, valid_store_label,
};
pub use spore_types::exit_code;
pub use status::{ExitStatus, LimitKind};
pub use stdio::{Input, Output, PIPE_CAPACITY, StdioSpec};
