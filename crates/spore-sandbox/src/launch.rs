//! The one launch path every front end shares — `spore run`, `serve`, `up`, the daemon and the
//! shim: from a program's bytes and a spec to a sandbox that may start. Each front end keeps
//! only its own I/O (where the bytes and the spec come from, where output goes, how a problem
//! is worded for its user); what is checked, and how, is decided here once, so a limit or
//! grant cannot hold in one front end and not in another.
//!
//! [`prepare`] = [`link`] (compile or fetch from the cache, link against WASI and Spore's
//! capabilities, tell what kind of app it is) + [`admit`] (the spec is valid, its mounts pinned
//! and clear of the compile cache, its counts within the engine's share, the app of the kind
//! the front end runs). The daemon links once per program and admits every create against it.

use crate::SandboxError;
use crate::kv::KvStores;
use crate::runner::Runnable;
use crate::spec::{Counts, SandboxSpec, SpecError};
use spore_engine::{LoadError, SporeEngine};
use std::fmt;
use std::sync::Arc;

/// What a program is, from what it exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    /// Runs to its end: a module with `_start`, or a component exporting `wasi:cli/run`.
    Command,
    /// Answers requests: a component exporting `wasi:http/incoming-handler`.
    Http,
    /// Neither: a reactor or library, whose exports are called by name.
    Library,
}

impl fmt::Display for AppKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AppKind::Command => "a command (it exports wasi:cli/run or _start)",
            AppKind::Http => "an HTTP app (it exports wasi:http/incoming-handler)",
            AppKind::Library => "a library or reactor (no command or HTTP entry point)",
        })
    }
}

/// A program linked and classified, ready for [`admit`].
#[derive(Clone)]
pub struct Prepared {
    /// The linked program, shared by every sandbox of it.
    pub runnable: Arc<Runnable>,
    /// What it is.
    pub kind: AppKind,
}

/// Why a sandbox may not be launched. Each names the concept or the spec field; front ends add
/// the fix in their own terms.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The spec is wrong as written (mounts, env, limits, grants).
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The bytes are not a program this engine runs.
    #[error("{program}: {source}")]
    Load {
        /// Program name.
        program: String,
        /// What is wrong with it.
        #[source]
        source: LoadError,
    },
    /// The program imports what Spore does not provide.
    #[error(transparent)]
    Link(#[from] SandboxError),
    /// A count above what one sandbox may take of the engine's pool.
    #[error("limits.{field} {asked} is more than a sandbox may take here ({share}, its share of the pool)")]
    Share {
        /// The spec field (under `limits`).
        field: &'static str,
        /// What the spec asks.
        asked: usize,
        /// The most it may.
        share: usize,
    },
    /// The program is not of the kind this front end runs.
    #[error("{program} is {is}, not {wanted}; its exports: {exports}")]
    WrongKind {
        /// Program name.
        program: String,
        /// What it is.
        is: AppKind,
        /// What was asked for.
        wanted: AppKind,
        /// What it exports, for the user to see what it is.
        exports: String,
    },
}

/// Compiles (or fetches from the cache) and links `wasm`, named `name` in messages, with the
/// host's key-value stores, and tells what kind of app it is.
pub fn link(engine: &SporeEngine, name: &str, wasm: &[u8], kv: Arc<KvStores>) -> Result<Prepared, LaunchError> {
    let program = engine.load(wasm).map_err(|source| LaunchError::Load { program: name.to_owned(), source })?;
    let runnable = Runnable::new(engine, program, name)?.with_kv_stores(kv);
    let kind = if runnable.is_http() {
        AppKind::Http
    } else if runnable.is_command() {
        AppKind::Command
    } else {
        AppKind::Library
    };
    Ok(Prepared { runnable: Arc::new(runnable), kind })
}

/// Checks `spec` for a sandbox of `linked`, as a front end that runs a `wanted` kind of app
/// (`None`: any), and pins its mounts: after this, every start of the spec opens the very
/// directories resolved now (see [`SandboxSpec::pin_mounts`]).
pub fn admit(linked: &Prepared, spec: &mut SandboxSpec, wanted: Option<AppKind>) -> Result<(), LaunchError> {
    spec.validate()?;
    spec.pin_mounts()?;
    linked.runnable.check_mounts(spec)?;
    if let Some((field, asked, share)) = Counts::for_engine(&linked.runnable.engine).exceeded_by(&spec.limits) {
        return Err(LaunchError::Share { field, asked, share });
    }
    // A command's front end also runs libraries (a named export, or a clear message that
    // one must be named); only an HTTP app is of another kind for it.
    let fits = |wanted| linked.kind == wanted || (wanted == AppKind::Command && linked.kind == AppKind::Library);
    match wanted {
        Some(wanted) if !fits(wanted) => Err(LaunchError::WrongKind {
            program: linked.runnable.name.clone(),
            is: linked.kind,
            wanted,
            exports: linked.runnable.describe_exports(),
        }),
        _ => Ok(()),
    }
}

/// [`link`] then [`admit`]: what a front end that runs one program once calls.
pub fn prepare(
    engine: &SporeEngine,
    name: &str,
    wasm: &[u8],
    spec: &mut SandboxSpec,
    kv: Arc<KvStores>,
    wanted: Option<AppKind>,
) -> Result<Prepared, LaunchError> {
    let linked = link(engine, name, wasm, kv)?;
    admit(&linked, spec, wanted)?;
    Ok(linked)
}
