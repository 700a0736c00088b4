//! `containerd-shim-spore-v1`: the containerd runtime `io.containerd.spore.v1`, so that
//! containerd (and Kubernetes through a RuntimeClass) runs Spore's images as Spore sandboxes.
//!
//! runwasi's `containerd-shim-wasm` does the containerd side: the task API, the container
//! (namespaces, cgroups, the unpacked image as its root), stdio wired to containerd's FIFOs,
//! and kill. What is Spore's own is [`SporeSandbox::run_wasi`]: inside that container, the
//! entrypoint's wasm is loaded with Spore's engine (compiled once per node, see [`CACHE_DIR`])
//! and run as one sandbox whose `/` is the image's root, read-only, plus the pod's volumes
//! (and nothing the container runtime keeps beside them: see [`confine`]), with the OCI
//! process's args and env, the container's memory limit, and what the pod grants (stores,
//! databases, outbound hosts: see [`pod`]).
//! The binary (`src/main.rs`) is separate from `spore` so runwasi's dependencies stay out of
//! it; it reads its environment and calls [`main`].
//!
//! Depends on the engine, the sandbox, `spore-serve` and runwasi; must not depend on the daemon
//! or the CLI.

mod cache;
mod confine;
mod http;
mod memory;
mod pod;

use cache::{CACHE_DIR, engine, open_cache_dir};
use memory::MemoryBudget;

use anyhow::{Context, bail};
use containerd_shim_wasm::sandbox::Sandbox;
use containerd_shim_wasm::sandbox::context::{RuntimeContext, Source};
use containerd_shim_wasm::shim::{Cli, Shim};
use spore_sandbox::launch::{self, AppKind, LaunchError};
use spore_sandbox::{
    Input, Invoke, Output, ProgramSource, Runnable, SandboxError, SandboxSpec, StdioSpec, Wasm, human_bytes,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

struct SporeShim;

/// One container's sandbox.
#[derive(Default)]
struct SporeSandbox;

impl Shim for SporeShim {
    fn name() -> &'static str {
        "spore"
    }

    type Sandbox = SporeSandbox;

    /// The layer types Spore reads as the wasm itself (for artifact-style images).
    fn supported_layers_types() -> &'static [&'static str] {
        spore_image::media_types::WASM_LAYERS
    }
}

/// The wasm to run: the image's wasm layer, else the entrypoint file inside the container.
fn program(ctx: &impl RuntimeContext) -> anyhow::Result<(Vec<u8>, String)> {
    let entry = ctx.entrypoint();
    match entry.source {
        Source::Oci(layers) => match layers.first() {
            Some(layer) => Ok((layer.layer.clone(), entry.name.unwrap_or_else(|| "app".into()))),
            None => bail!("the image has no wasm layer"),
        },
        Source::File(path) => {
            if path.as_os_str().is_empty() {
                bail!(
                    "no wasm entrypoint: the container's process has no args; set the image's Entrypoint (or the pod's command) to the .wasm file"
                );
            }
            let full = if path.is_absolute() { path.clone() } else { Path::new("/").join(&path) };
            let bytes = std::fs::read(&full).with_context(|| {
                format!(
                    "no wasm entrypoint: looked for {} in the image (from the process's first arg); check the image's Entrypoint",
                    full.display()
                )
            })?;
            Ok((bytes, path.display().to_string()))
        }
    }
}

impl Sandbox for SporeSandbox {
    /// Setup failures (no entrypoint, a wasm that does not compile) are written to the task's
    /// stderr — which `ctr` and the CRI log show — and end the task with 125, as `spore run`
    /// does; runwasi's own path would only say "can't handle spec".
    async fn run_wasi(&self, ctx: &impl RuntimeContext) -> anyhow::Result<i32> {
        match run(ctx).await {
            Ok(code) => Ok(code),
            Err(err) => {
                eprintln!("spore: {err:#}");
                Ok(spore_sandbox::exit_code::SPORE_ERROR)
            }
        }
    }

    /// Everything is handed to [`Self::run_wasi`], which explains what it cannot run.
    async fn can_handle(&self, _ctx: &impl RuntimeContext) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The container's process is PID 1 of its PID namespace, and the kernel does not deliver to
/// PID 1 the signals it has no handler for: without one, SIGTERM (`ctr task kill`, a pod's
/// deletion) would be ignored and every stop would wait out its grace period for SIGKILL. A
/// WASI guest cannot handle signals, so these end it as they end an ordinary process: at once,
/// with status 128 + the signal.
fn exit_on_termination_signals() {
    extern "C" fn terminate(signal: libc::c_int) {
        // SAFETY: `_exit` is async-signal-safe; nothing else runs in the handler.
        unsafe { libc::_exit(128 + signal) }
    }
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: installs a handler that only calls `_exit`.
        unsafe { libc::signal(signal, terminate as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
}

/// One container's run: the wasm, the spec from the OCI process, Spore's engine; then the
/// guest, on a thread of its own confined to what it may see of the container.
async fn run(ctx: &impl RuntimeContext) -> anyhow::Result<i32> {
    let (bytes, name) = program(ctx)?;
    let args = ctx.args();
    // runwasi's `path#export` entrypoint: call that export with the other args, as
    // `spore run --invoke EXPORT`, and print what it returns.
    let func = ctx.entrypoint().func;
    let invoke = (func != "_start").then(|| Invoke { export: func, args: args.iter().skip(1).cloned().collect() });
    let mut view = confine::View::of_container()?;
    // What the pod grants (stores, databases, outbound hosts): read before the spec, since the
    // stores' data dir leaves the guest's mounts.
    let granted = pod::read(&mut view)?;
    for warning in &granted.warnings {
        eprintln!("spore: warning: {}/runtime-config.toml: {warning}", pod::DIR);
    }
    let mut spec = SandboxSpec {
        program: ProgramSource::Path(PathBuf::from(&name)),
        argv0: args.first().map(|a| a.split('#').next().unwrap_or(a).to_owned()),
        args: args.iter().skip(1).cloned().collect(),
        env: ctx.envs().iter().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect(),
        // The image's root, read-only, and the pod's writable volumes.
        mounts: view.mounts(),
        // The container's stdio is containerd's FIFOs.
        stdio: StdioSpec { stdin: Input::Inherit, stdout: Output::Inherit, stderr: Output::Inherit },
        invoke,
        ..Default::default()
    };
    // Spin's app variables from the pod's env, as SpinKube passes them (`SPIN_VARIABLE_NAME`,
    // or `SPORE_VARIABLE_NAME`): values, not grants.
    spec.capabilities.variables = spore_serve::manifest::Given::from_environment(spec.env.clone());
    let pod::Grants { key_value_stores, sqlite_databases, allowed_outbound_hosts, .. } = granted.grants;
    spec.capabilities.key_value_stores = key_value_stores;
    spec.capabilities.sqlite_databases = sqlite_databases;
    spec.capabilities.allowed_outbound_hosts = allowed_outbound_hosts;
    let budget = MemoryBudget::read();
    spec.limits.memory_bytes = budget.as_ref().map(|b| b.guest);
    let engine = engine()?;
    let prepared = launch::prepare(&engine, &name, &Wasm::Bytes(bytes), &mut spec, Arc::new(granted.stores), None)
        .map_err(|e| match e {
            LaunchError::Load { source, .. } => anyhow::anyhow!("{name} does not compile: {source}"),
            other => other.into(),
        })?;
    let (runnable, kind) = (prepared.runnable, prepared.kind);
    // Everything the runtime itself needs from the container is read by now: the guest's
    // thread (and the runtime threads it starts) can then be confined before its first
    // instruction.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("spore-guest".into())
        .spawn(move || {
            let ran = (|| {
                match view.enforce() {
                    Ok(()) => {}
                    Err(err) if SETTINGS.get().is_some_and(|s| s.unconfined) => eprintln!("spore: warning: {err:#}"),
                    Err(err) => return Err(err),
                }
                let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
                runtime.block_on(guest(name, runnable, kind, spec, budget))
            })();
            let _ = tx.send(ran);
        })
        .context("cannot start the guest's thread")?;
    rx.await.context("the guest's thread ended without a result")?
}

/// Runs the guest: served when it is an HTTP app, else run to its end.
async fn guest(
    name: String,
    runnable: Arc<Runnable>,
    kind: AppKind,
    spec: SandboxSpec,
    budget: Option<MemoryBudget>,
) -> anyhow::Result<i32> {
    if kind == AppKind::Http {
        return http::serve(name, runnable, spec).await;
    }
    exit_on_termination_signals();
    let report = match (runnable.run(&spec).await, budget) {
        (Err(SandboxError::MemoryBelowMinimum { minimum, .. }), Some(budget)) => bail!(
            "{name} declares a minimum memory of {minimum}, more than the {} the container's memory limit of {} leaves the guest; raise the limit (the pod's resources.limits.memory) to at least {minimum} + {} for the runtime",
            human_bytes(budget.guest),
            human_bytes(budget.container),
            human_bytes(budget.container - budget.guest),
        ),
        (report, _) => report?,
    };
    for value in &report.results {
        println!("{value}");
    }
    match &report.status {
        spore_sandbox::ExitStatus::Exited { .. } => {}
        spore_sandbox::ExitStatus::LimitExceeded { limit: spore_sandbox::LimitKind::Memory, .. } => {
            eprintln!("spore: {name}: {}; raise the pod's resources.limits.memory", report.status);
        }
        other => eprintln!("spore: {name}: {other}"),
    }
    Ok(report.status.code())
}

/// Where the node's compile cache is unless the shim's environment says otherwise.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/spore/shim-cache";

/// What the shim's environment decides (containerd passes its own environment to shims).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The node's compile cache (`SPORE_SHIM_CACHE_DIR`, else [`DEFAULT_CACHE_DIR`]).
    pub cache_dir: PathBuf,
    /// Run guests without Landlock where the kernel lacks it (`SPORE_SHIM_UNCONFINED=1`).
    pub unconfined: bool,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Runs the shim: containerd's task API on its socket, a Spore sandbox for each container.
pub fn main(settings: Settings) {
    CACHE_DIR.get_or_init(|| open_cache_dir(&settings.cache_dir));
    SETTINGS.get_or_init(|| settings);
    SporeShim::run(None);
}
