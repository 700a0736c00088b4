//! [`SandboxError`]: why a sandbox could not be started.

use spore_spec::SpecError;

/// A sandbox could not be started as specified. (How a *started* guest ended is an
/// [`ExitStatus`], never this.)
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The spec itself is wrong.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The program imports something Spore does not provide.
    #[error(
        "cannot link {program}: {message}. Spore provides WASI preview 1 (`wasi_snapshot_preview1`) to modules; to components WASI 0.2 and 0.3 (cli, clocks, filesystem, io, random, sockets, http), wasi:keyvalue (0.2.0-draft, 0.2.0-draft2), wasi:config, and Spin's key-value, variables and sqlite (fermyon:spin@2.0.0, spin:*@3)"
    )]
    Link {
        /// Program name.
        program: String,
        /// wasmtime's description, naming the import.
        message: String,
    },
    /// The memory limit is below what the module needs to even instantiate.
    #[error("memory limit {limit} is below the {minimum} {program} declares as its minimum memory")]
    MemoryBelowMinimum {
        /// Program name.
        program: String,
        /// The limit, formatted.
        limit: String,
        /// The declared minimum, formatted.
        minimum: String,
    },
    /// No command entry point and no `--invoke`.
    #[error(
        "{program} has no `{entry}` export, so it is not a command (it may be a reactor or library); call one of its exported functions instead: {exports}"
    )]
    NoEntryPoint {
        /// Program name.
        program: String,
        /// The entry point that was looked for.
        entry: &'static str,
        /// Exported functions, comma-separated.
        exports: String,
    },
    /// `--invoke` names an export that does not exist or is not a function.
    #[error("{program} has no exported function `{export}`; exported functions: {exports}")]
    NoSuchExport {
        /// Program name.
        program: String,
        /// Requested export.
        export: String,
        /// Exported functions, comma-separated.
        exports: String,
    },
    /// `--invoke` arguments do not fit the function's parameters.
    #[error("calling {export}: {problem}")]
    InvokeArgs {
        /// Requested export.
        export: String,
        /// What does not fit.
        problem: String,
    },
    /// The program is an HTTP app, which is served, not run to its end.
    #[error(
        "{program} is an HTTP app (it exports wasi:http/incoming-handler or wasi:http/handler, not wasi:cli/run): serve it"
    )]
    HttpApp {
        /// Program name.
        program: String,
    },
    /// Something Spore does not support yet for this kind of program.
    #[error("{0}")]
    Unsupported(String),
    /// A host resource named by the spec (stdio file, mount) could not be opened.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The engine's instance pool is full: a capacity problem, not a problem of this program.
    #[error(
        "cannot start {program}: no free instance slot ({message}); wait for sandboxes to end or raise the pool size"
    )]
    Capacity {
        /// Program name.
        program: String,
        /// The pool's own description of the limit reached.
        message: String,
    },
    /// The program needs more core instances, tables or memories than one sandbox may have
    /// (on a pool: its share of it, so that it cannot take its neighbours' slots).
    #[error(
        "cannot start {program}: it needs more core instances, tables or memories than a sandbox may have here ({message})"
    )]
    TooManyInstances {
        /// Program name.
        program: String,
        /// The engine's description of the count reached.
        message: String,
    },
    /// Pre-initialisation asked for an export the module does not have, or one that is not a
    /// function of no arguments and no results.
    #[error(
        "{program} has no init export `{export}` (a function of no arguments and no results); its exported functions: {exports}"
    )]
    NoInitExport {
        /// Program name.
        program: String,
        /// The export asked for.
        export: String,
        /// Exported functions, comma-separated.
        exports: String,
    },
    /// The init export did not return (it trapped, exited, or reached a limit), or its state
    /// cannot be snapshotted; nothing was written.
    #[error("pre-initialising {program} with `{export}`: {problem}")]
    Init {
        /// Program name.
        program: String,
        /// The init export.
        export: String,
        /// What happened.
        problem: String,
    },
    /// The guest could not be instantiated for a reason other than the above.
    #[error("cannot start {program}: {message}")]
    Instantiate {
        /// Program name.
        program: String,
        /// Why.
        message: String,
    },
}
