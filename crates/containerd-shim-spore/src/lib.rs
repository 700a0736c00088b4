//! `containerd-shim-spore-v1`: the containerd runtime `io.containerd.spore.v1`, so that
//! containerd (and Kubernetes through a RuntimeClass) runs Spore's images as Spore sandboxes.
//!
//! runwasi's `containerd-shim-wasm` does the containerd side: the task API, the container
//! (namespaces, cgroups, the unpacked image as its root), stdio wired to containerd's FIFOs,
//! and kill. What is Spore's own is [`SporeSandbox::run_wasi`]: inside that container, the
//! entrypoint's wasm is loaded with Spore's engine (compiled once per node, see [`CACHE_DIR`])
//! and run as one sandbox whose `/` is the image's root, read-only, plus the pod's volumes
//! (and nothing the container runtime keeps beside them: see [`confine`]), with the OCI
//! process's args and env, and the container's memory limit.
//! The binary (`src/main.rs`) is separate from `spore` so runwasi's dependencies stay out of
//! it; it reads its environment and calls [`main`].
//!
//! Depends on the engine, the sandbox, `spore-serve` and runwasi; must not depend on the daemon
//! or the CLI.

mod confine;

use anyhow::{Context, bail};
use containerd_shim_wasm::sandbox::Sandbox;
use containerd_shim_wasm::sandbox::context::{RuntimeContext, Source};
use containerd_shim_wasm::shim::{Cli, Shim};
use spore_engine::{CacheKey, EngineConfig, SporeEngine};
use spore_sandbox::launch::{self, AppKind, LaunchError};
use spore_sandbox::{
    Input, Invoke, Output, ProgramSource, Runnable, SandboxError, SandboxSpec, Sinks, StdioSpec, human_bytes,
};
use spore_serve::ServerLimits;
use std::fs::File;
use std::os::fd::AsRawFd;
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

/// The container's memory limit and what of it the guest may grow to.
struct MemoryBudget {
    /// The container's limit, as its cgroup shows it (containerd set it from the OCI spec's
    /// `linux.resources.memory.limit`, the pod's `resources.limits.memory`).
    container: u64,
    /// That less what the process already uses and a margin for the runtime's own allocations.
    guest: u64,
}

impl MemoryBudget {
    const MARGIN: u64 = 16 << 20;

    /// Read from the container's cgroup (v2, else v1) when it is mounted in the container,
    /// which the CRI's spec does; `None` when there is no limit or no cgroup to read. Enforced
    /// by Spore, a guest that reaches it ends with "memory limit" (137) and a message, instead
    /// of the kernel OOM-killing the whole container without one.
    fn read() -> Option<MemoryBudget> {
        let read = |files: [&str; 2]| {
            files.iter().find_map(|f| std::fs::read_to_string(f).ok()).and_then(|t| t.trim().parse::<u64>().ok())
        };
        // "max" (v2) does not parse; v1 says "unlimited" with a huge page-aligned number.
        let container = read(["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"])
            .filter(|n| *n < (1 << 62))?;
        let used = read(["/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory/memory.usage_in_bytes"]).unwrap_or(0);
        let guest = container.saturating_sub(used).saturating_sub(Self::MARGIN).max(1 << 16);
        Some(MemoryBudget { container, guest })
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

/// Where an HTTP app listens in its container unless `SPORE_HTTP_LISTEN` (in the pod's env)
/// says otherwise: every address on port 80, as a `containerPort: 80` and a Service expect.
const DEFAULT_HTTP_LISTEN: &str = "0.0.0.0:80";

/// An HTTP app (a `wasi:http` proxy component): served from the container as `spore serve`
/// serves it, a fresh instance per request, until SIGTERM or SIGINT, which stop it gracefully
/// (requests in flight finish; then status 0).
async fn serve(name: String, runnable: Arc<Runnable>, spec: SandboxSpec) -> anyhow::Result<i32> {
    let listen = spec.env.get("SPORE_HTTP_LISTEN").cloned().unwrap_or_else(|| DEFAULT_HTTP_LISTEN.into());
    let app = spore_serve::App { name: name.clone(), runnable, spec };
    spore_serve::serve_app(app, &listen, ServerLimits::default(), Sinks::default(), spore_serve::shutdown_signal())
        .await
        .map_err(|message| anyhow::anyhow!("{name}: {message}; set SPORE_HTTP_LISTEN in the pod's env to ADDR:PORT"))?;
    Ok(0)
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
    let view = confine::View::of_container()?;
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
    let budget = MemoryBudget::read();
    spec.limits.memory_bytes = budget.as_ref().map(|b| b.guest);
    let engine = engine()?;
    let prepared =
        launch::prepare(&engine, &name, &bytes, &mut spec, Default::default(), None).map_err(|e| match e {
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
        return serve(name, runnable, spec).await;
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

/// The node's compile cache: one directory for every container this shim runs, so a wasm is
/// compiled once per node (per engine version), not once per container start.
///
/// A container sees only its own root, so the directory is opened here, before runwasi forks
/// its zygote and, from it, the containers: each container process inherits the descriptor
/// (the wasm runs in that process, nothing is exec'd, so it stays open) and reaches the
/// directory as `/proc/self/fd/N`. Only Spore's runtime uses it: a guest's filesystem is the
/// container's root, and WASI path resolution does not follow `/proc`'s magic links out of it.
///
/// The cache's key (which authenticates every artifact, see [`spore_engine::CacheKey`]) is read
/// here too, from the node's key file beside the directory, and stays in memory: no container
/// can reach the file, so a container that could write the shared directory still could not
/// make an artifact another pod's runtime would accept.
static CACHE_DIR: OnceLock<Option<(File, CacheKey)>> = OnceLock::new();

/// The node's compile cache at `dir` and its key; `None` (compile in memory) when either
/// cannot be had.
fn open_cache_dir(dir: &Path) -> Option<(File, CacheKey)> {
    let key = CacheKey::load_or_create(&CacheKey::default_path(dir)).ok()?;
    let file = std::fs::create_dir_all(dir).and_then(|_| File::open(dir)).ok()?;
    Some((file, key))
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

/// The engine for one container: with the node's compile cache when it is reachable and
/// writable by this container's user, in memory otherwise.
fn engine() -> anyhow::Result<SporeEngine> {
    if let Some(Some((dir, key))) = CACHE_DIR.get() {
        let cache_dir = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        let config = EngineConfig::one_shot(Some(cache_dir), true).with_cache_key(key.clone());
        if let Ok(engine) = SporeEngine::new(config) {
            return Ok(engine);
        }
    }
    Ok(SporeEngine::new(EngineConfig::one_shot(None, true))?)
}

/// Runs the shim: containerd's task API on its socket, a Spore sandbox for each container.
pub fn main(settings: Settings) {
    CACHE_DIR.get_or_init(|| open_cache_dir(&settings.cache_dir));
    SETTINGS.get_or_init(|| settings);
    SporeShim::run(None);
}
