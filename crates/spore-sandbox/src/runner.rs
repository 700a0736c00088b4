//! From a compiled [`Program`] and a [`SandboxSpec`] to an [`ExitStatus`].
//!
//! [`Runnable`] is built once per program: it links the program against WASI and keeps the
//! resulting `InstancePre`, so every sandbox of the same wasm skips import resolution and type
//! checking. [`Runnable::run`] is the per-sandbox part: a fresh store and WASI context from the
//! spec, the limits wired into the store, and the guest driven as one async task.

use crate::kv::{KvGrant, KvStores, KvView};
use crate::limits::{CpuTimeExceeded, Limiter, Meter, Metered};
use crate::outbound::OutboundHooks;
use crate::stdio::{Captured, Sinks};
use spore_engine::{Program, ProgramCode, SporeEngine};
use spore_spec::{ExitStatus, LimitKind};
use spore_spec::{Invoke, ProgramSource, SandboxSpec, SpecError};
use spore_types::human_bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component;
use wasmtime::{ExternType, Instance, Store, Trap, UpdateDeadline, Val, ValType, WasmBacktrace};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// A sandbox could not be started as specified. (How a *started* guest ended is an
/// [`ExitStatus`], never this.)
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The spec itself is wrong.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The program imports something Spore does not provide.
    #[error(
        "cannot link {program}: {message}. Spore provides WASI preview 1 (`wasi_snapshot_preview1`) to modules and WASI 0.2 (cli, clocks, filesystem, io, random, sockets) to components"
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
    #[error("{program} is an HTTP app (it exports wasi:http/incoming-handler, not wasi:cli/run): serve it")]
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
    /// The guest could not be instantiated for a reason other than the above.
    #[error("cannot start {program}: {message}")]
    Instantiate {
        /// Program name.
        program: String,
        /// Why.
        message: String,
    },
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// How the guest ended.
    pub status: ExitStatus,
    /// Return values of an `--invoke`d function, formatted.
    pub results: Vec<String>,
    /// Captured stdout, when the spec asked for a pipe.
    pub stdout: Option<Vec<u8>>,
    /// Captured stderr, when the spec asked for a pipe.
    pub stderr: Option<Vec<u8>>,
    /// CPU time the guest used.
    pub cpu_time: Duration,
    /// Wall-clock time from start to end.
    pub wall_time: Duration,
    /// Linear memory the guest had committed when it ended (memories never shrink, so this is
    /// also its peak). Zero when it was stopped by the wall-clock timeout.
    pub memory_bytes: u64,
}

/// Per-store state: WASI (the p1 context also serves components), limits, the CPU meter, and
/// the capabilities the spec grants (HTTP, key-value, config).
pub(crate) struct SandboxState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: Limiter,
    pub(crate) cpu: Arc<Meter>,
    /// The cap set on the resource table, and whether the process's own descriptor limit set
    /// it, for the message when it is reached.
    open_files_limit: (usize, bool),
    http: WasiHttpCtx,
    hooks: OutboundHooks,
    kv: KvGrant,
    config: Arc<WasiConfigVariables>,
}

impl WasiView for SandboxState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiView::ctx(&mut self.wasi)
    }
}

impl WasiHttpView for SandboxState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        let SandboxState { wasi, http, hooks, .. } = self;
        WasiHttpCtxView { ctx: http, table: WasiView::ctx(wasi).table, hooks }
    }
}

fn kv_view(s: &mut SandboxState) -> KvView<'_> {
    let SandboxState { wasi, kv, cpu, .. } = s;
    KvView { table: WasiView::ctx(wasi).table, grant: kv, meter: cpu }
}

fn config_view(s: &mut SandboxState) -> WasiConfig<'_> {
    WasiConfig::new(&s.config)
}

enum Linked {
    Module(wasmtime::InstancePre<SandboxState>),
    Component {
        /// `None` when the component does not export `wasi:cli/run` (not a command).
        command: Option<CommandPre<SandboxState>>,
        /// `None` when it does not export `wasi:http/incoming-handler` (not an HTTP app).
        proxy: Option<ProxyPre<SandboxState>>,
    },
}

/// A program linked once, ready to start any number of sandboxes.
pub struct Runnable {
    pub(crate) engine: SporeEngine,
    program: Program,
    pub(crate) name: String,
    linked: Linked,
    kv_stores: Arc<KvStores>,
}

impl Runnable {
    /// Links `program` against WASI. `name` is how messages refer to it (usually the file).
    pub fn new(engine: &SporeEngine, program: Program, name: &str) -> Result<Self, SandboxError> {
        let link_err =
            |err: wasmtime::Error| SandboxError::Link { program: name.to_owned(), message: format!("{err:#}") };
        let linked = match &program.code {
            ProgramCode::Module(module) => {
                let mut linker = wasmtime::Linker::new(engine.wasmtime());
                wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut SandboxState| &mut s.wasi)
                    .map_err(link_err)?;
                Linked::Module(linker.instantiate_pre(module).map_err(link_err)?)
            }
            ProgramCode::Component(comp) => {
                let mut linker = component::Linker::new(engine.wasmtime());
                // Real components mix WASI 0.2.x patch versions; the linker matches by semver.
                wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link_err)?;
                wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(link_err)?;
                crate::kv::add_to_linker(&mut linker, kv_view).map_err(link_err)?;
                wasmtime_wasi_config::add_to_linker(&mut linker, config_view).map_err(link_err)?;
                let pre = linker.instantiate_pre(comp).map_err(link_err)?;
                Linked::Component { command: CommandPre::new(pre.clone()).ok(), proxy: ProxyPre::new(pre).ok() }
            }
        };
        Ok(Runnable { engine: engine.clone(), program, name: name.to_owned(), linked, kv_stores: Arc::default() })
    }

    /// The host's key-value stores, for the sandboxes whose specs grant them by name.
    pub fn with_kv_stores(mut self, stores: Arc<KvStores>) -> Self {
        self.kv_stores = stores;
        self
    }

    /// Whether the program is an HTTP app (exports `wasi:http/incoming-handler`).
    pub fn is_http(&self) -> bool {
        matches!(&self.linked, Linked::Component { proxy: Some(_), .. })
    }

    /// Whether the program is a command: a module exporting `_start`, or a component exporting
    /// `wasi:cli/run`.
    pub fn is_command(&self) -> bool {
        match (&self.linked, &self.program.code) {
            (Linked::Module(_), ProgramCode::Module(m)) => m.get_export("_start").is_some(),
            (Linked::Component { command, .. }, _) => command.is_some(),
            _ => false,
        }
    }

    /// The program's HTTP entry, if it has one.
    pub(crate) fn proxy_pre(&self) -> Option<&ProxyPre<SandboxState>> {
        match &self.linked {
            Linked::Component { proxy, .. } => proxy.as_ref(),
            Linked::Module(_) => None,
        }
    }

    /// What the component targets, for messages: its exports.
    pub fn describe_exports(&self) -> String {
        self.exported_functions()
    }

    /// Refuses mounts that would give the guest what decides the native code this engine runs
    /// (the compile cache, its key). Every start checks; a creator may check earlier.
    pub fn check_mounts(&self, spec: &SandboxSpec) -> Result<(), SpecError> {
        let protected = self.engine.protected_paths();
        spec.mounts.iter().try_for_each(|m| crate::mounts::check_exposure(m, &m.host, protected))
    }

    /// The program this runnable was linked from.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Runs one sandbox to completion. Errors mean it could not start; how it ended once
    /// started is in the report's status.
    pub async fn run(&self, spec: &SandboxSpec) -> Result<RunReport, SandboxError> {
        self.run_with(spec, &Sinks::default(), &Arc::default()).await
    }

    /// [`Runnable::run`] with embedder-supplied output sinks and a [`Meter`] the embedder can
    /// read while the sandbox runs (for live stats).
    pub async fn run_with(
        &self,
        spec: &SandboxSpec,
        sinks: &Sinks,
        meter: &Arc<Meter>,
    ) -> Result<RunReport, SandboxError> {
        spec.validate()?;
        let started = Instant::now();
        let meter = meter.clone();
        let (store, captured) = self.store(spec, sinks, meter.clone()).await?;
        let drive = Metered::new(self.drive(store, spec), meter.clone());
        let (status, results, memory_bytes) = match spec.limits.timeout_ms {
            None => drive.await?,
            Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), drive).await {
                Ok(ended) => ended?,
                Err(_) => {
                    let message = format!(
                        "wall-clock timeout of {} reached; the guest was stopped",
                        humantime::format_duration(Duration::from_millis(ms))
                    );
                    (ExitStatus::LimitExceeded { limit: LimitKind::Timeout, message }, Vec::new(), 0)
                }
            },
        };
        Ok(RunReport {
            status,
            results,
            stdout: captured.stdout.map(|p| p.contents().0),
            stderr: captured.stderr.map(|p| p.contents().0),
            cpu_time: Duration::from_nanos(meter.cpu_ns()),
            wall_time: started.elapsed(),
            memory_bytes,
        })
    }

    /// A fresh store for one sandbox (or one HTTP request): the state from [`Self::state`],
    /// the limiter, and the epoch callback that enforces CPU time and yields to the executor.
    pub(crate) async fn store(
        &self,
        spec: &SandboxSpec,
        sinks: &Sinks,
        meter: Arc<Meter>,
    ) -> Result<(Store<SandboxState>, Captured), SandboxError> {
        let (state, captured) = self.state(spec, sinks, meter).await?;
        let mut store = Store::new(self.engine.wasmtime(), state);
        store.limiter(|s| &mut s.limiter);
        let cpu_limit_ns = spec.limits.cpu_time_ms.map(|ms| ms.saturating_mul(1_000_000));
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |ctx| {
            if let Some(limit) = cpu_limit_ns
                && ctx.data().cpu.cpu_ns() > limit
            {
                return Err(wasmtime::Error::new(CpuTimeExceeded));
            }
            // Yield at every tick, so the executor runs other sandboxes and timers (an outer
            // timeout) fire even while this guest spins. tokio's own yield is used because it
            // defers the wake-up until after the runtime has polled its timers and I/O; a plain
            // self-wake would let a spinning guest starve them.
            Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
        });
        Ok((store, captured))
    }

    /// The per-sandbox WASI context: exactly what the spec grants.
    async fn state(
        &self,
        spec: &SandboxSpec,
        sinks: &Sinks,
        cpu: Arc<Meter>,
    ) -> Result<(SandboxState, Captured), SandboxError> {
        let mut b = WasiCtxBuilder::new();
        b.arg(spec.argv0.clone().unwrap_or_else(|| default_argv0(spec, &self.name)));
        b.args(&spec.args);
        for (k, v) in &spec.env {
            b.env(k, v);
        }
        let protected = self.engine.protected_paths();
        for m in &spec.mounts {
            let perms = if m.read_only { FsPerms::ReadOnly } else { FsPerms::ReadWrite };
            // The very directory pinned at create, then checked to be clear of the cache.
            let dir = crate::mounts::open(m)?;
            crate::mounts::check_exposure(m, &dir.path(), protected)?;
            // Calls on the mount's directory (open, stat, readdir by path) run on the guest's
            // own thread instead of tokio's blocking pool, so their CPU is the guest's —
            // metered and limited: a loop of `stat`s spends the guest's budget, not the
            // host's. Each preopen takes the setting when it is made.
            b.allow_blocking_current_thread(true);
            b.preopened_dir(dir.path(), &m.guest, perms).map_err(|err| SpecError::MountHost {
                host: m.host.display().to_string(),
                problem: format!("{err:#}"),
            })?;
        }
        // Files a component opens take the context's setting, so their reads and writes are
        // the guest's too. A module's cannot: WASI p1 also reads the setting to sleep with
        // `thread::sleep`, which would block the executor every sandbox shares (and no timer
        // could stop it), so for a module it is switched off again; its file reads and writes
        // do the kernel's part on tokio's blocking pool, the copy into the guest on its thread.
        b.allow_blocking_current_thread(matches!(self.program.code, ProgramCode::Component(_)));
        let captured = crate::stdio::apply(&spec.stdio, &mut b, sinks)?;
        if spec.network.is_none() {
            b.allow_tcp(false).allow_udp(false);
        } else {
            let policy = crate::net::resolve(&spec.network, spec.public_network_only).await;
            // wasmtime-wasi disables the protocols by default; the address check below is what
            // grants or denies each use.
            b.allow_tcp(true).allow_udp(true);
            b.allow_ip_name_lookup(spec.network.needs_name_lookup());
            b.socket_addr_check(move |addr, use_| {
                let allowed = policy.allows(addr, use_);
                if !allowed {
                    tracing::warn!(
                        "network: denied {use_:?} {addr}: not granted by the sandbox's network policy (spec.network)"
                    );
                }
                Box::pin(async move { allowed })
            });
        }
        let caps = &spec.capabilities;
        let policy = spore_spec::OutboundPolicy::parse(&caps.allowed_outbound_hosts).map_err(SpecError::Outbound)?;
        let mut wasi = b.build_p1();
        // Every file, socket, stream and HTTP body the guest holds is an entry of this table:
        // capping it caps the sandbox's host descriptors (and their memory), where wasmtime's
        // default would let one guest take a million.
        let (asked, allowed) = (spec.limits.open_files(), crate::limits::process_open_files());
        let (open_files, by_process) = (asked.min(allowed), allowed < asked);
        WasiView::ctx(&mut wasi).table.set_max_capacity(open_files);
        let state = SandboxState {
            wasi,
            limiter: Limiter::new(&spec.limits, crate::counts_for(&self.engine), cpu.clone()),
            cpu,
            open_files_limit: (open_files, by_process),
            http: WasiHttpCtx::new(),
            hooks: OutboundHooks {
                policy: Arc::new(policy),
                resolver: crate::outbound::system_resolver(),
                public_only: spec.public_network_only,
            },
            kv: KvGrant {
                stores: self.kv_stores.clone(),
                granted: caps.key_value_stores.clone().into(),
                namespace: caps.key_value_namespace.clone(),
            },
            config: Arc::new(caps.variables.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()),
        };
        Ok((state, captured))
    }

    /// Instantiates and calls the entry point, turning every ending into a status; also
    /// returns the memory the guest ended with.
    async fn drive(
        &self,
        mut store: Store<SandboxState>,
        spec: &SandboxSpec,
    ) -> Result<(ExitStatus, Vec<String>, u64), SandboxError> {
        let (status, results) = self.call_entry(&mut store, spec).await?;
        Ok((status, results, store.data().limiter.memory_used()))
    }

    async fn call_entry(
        &self,
        store: &mut Store<SandboxState>,
        spec: &SandboxSpec,
    ) -> Result<(ExitStatus, Vec<String>), SandboxError> {
        match &self.linked {
            Linked::Module(pre) => {
                let instance = match pre.instantiate_async(&mut *store).await {
                    Ok(instance) => instance,
                    Err(err) => return self.instantiation_failed(store, err),
                };
                match &spec.invoke {
                    Some(invoke) => self.invoke(store, instance, invoke).await,
                    None => {
                        let start = instance.get_typed_func::<(), ()>(&mut *store, "_start").map_err(|_| {
                            SandboxError::NoEntryPoint {
                                program: self.name.clone(),
                                entry: "_start",
                                exports: self.exported_functions(),
                            }
                        })?;
                        store.data().cpu.mark_entered();
                        let result = start.call_async(&mut *store, ()).await;
                        Ok((status_of(result.map(|()| 0), store), Vec::new()))
                    }
                }
            }
            Linked::Component { command, proxy } => {
                if spec.invoke.is_some() {
                    return Err(SandboxError::Unsupported(format!(
                        "calling a named export works on core modules; {} is a component — run it as a command (wasi:cli/run)",
                        self.name
                    )));
                }
                let Some(command) = command else {
                    if proxy.is_some() {
                        return Err(SandboxError::HttpApp { program: self.name.clone() });
                    }
                    return Err(SandboxError::NoEntryPoint {
                        program: self.name.clone(),
                        entry: "wasi:cli/run",
                        exports: self.exported_functions(),
                    });
                };
                let command = match command.instantiate_async(&mut *store).await {
                    Ok(command) => command,
                    Err(err) => return self.instantiation_failed(store, err),
                };
                store.data().cpu.mark_entered();
                let result = command.wasi_cli_run().call_run(&mut *store).await;
                Ok((status_of(result.map(|r| if r.is_ok() { 0 } else { 1 }), store), Vec::new()))
            }
        }
    }

    /// Calls a named export of a module (after `_initialize`, for reactors) with typed args.
    async fn invoke(
        &self,
        store: &mut Store<SandboxState>,
        instance: Instance,
        invoke: &Invoke,
    ) -> Result<(ExitStatus, Vec<String>), SandboxError> {
        let func = instance.get_func(&mut *store, &invoke.export).ok_or_else(|| SandboxError::NoSuchExport {
            program: self.name.clone(),
            export: invoke.export.clone(),
            exports: self.exported_functions(),
        })?;
        let ty = func.ty(&*store);
        let params = parse_params(&invoke.export, ty.params(), &invoke.args)?;
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut *store, "_initialize")
            && let Err(err) = init.call_async(&mut *store, ()).await
        {
            return Ok((status_of(Err(err), store), Vec::new()));
        }
        store.data().cpu.mark_entered();
        let mut results = vec![Val::I32(0); ty.results().len()];
        match func.call_async(&mut *store, &params, &mut results).await {
            Ok(()) => Ok((ExitStatus::Exited { code: 0 }, results.iter().map(format_val).collect())),
            Err(err) => Ok((status_of(Err(err), store), Vec::new())),
        }
    }

    fn instantiation_failed(
        &self,
        store: &Store<SandboxState>,
        err: wasmtime::Error,
    ) -> Result<(ExitStatus, Vec<String>), SandboxError> {
        let limiter = &store.data().limiter;
        if let (Some(limit), Some((_, asked))) = (limiter_limit(store), limiter.memory_denied) {
            return Err(SandboxError::MemoryBelowMinimum {
                program: self.name.clone(),
                limit: human_bytes(limit),
                minimum: human_bytes(asked),
            });
        }
        if let Some(full) = err.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
            return Err(SandboxError::Capacity { program: self.name.clone(), message: full.to_string() });
        }
        let message = format!("{err:#}");
        if message.contains("resource limit exceeded") {
            return Err(SandboxError::TooManyInstances { program: self.name.clone(), message });
        }
        if err.downcast_ref::<Trap>().is_some() || err.downcast_ref::<I32Exit>().is_some() {
            // The start function ran and ended the guest: that is a run, not a setup failure.
            return Ok((status_of(Err(err), store), Vec::new()));
        }
        Err(SandboxError::Instantiate { program: self.name.clone(), message })
    }

    /// Exported function names, for messages that suggest what to run instead.
    fn exported_functions(&self) -> String {
        let engine = self.engine.wasmtime();
        let names: Vec<String> = match &self.program.code {
            ProgramCode::Module(m) => {
                m.exports().filter(|e| matches!(e.ty(), ExternType::Func(_))).map(|e| e.name().to_owned()).collect()
            }
            ProgramCode::Component(c) => c.component_type().exports(engine).map(|(name, _)| name.to_owned()).collect(),
        };
        if names.is_empty() { "(none)".to_owned() } else { names.join(", ") }
    }
}

fn limiter_limit(store: &Store<SandboxState>) -> Option<u64> {
    store.data().limiter.memory_limit()
}

fn default_argv0(spec: &SandboxSpec, name: &str) -> String {
    match &spec.program {
        ProgramSource::Path(p) => {
            p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| name.to_owned())
        }
        ProgramSource::Digest(_) | ProgramSource::Image(_) => name.to_owned(),
    }
}

/// Maps how a call ended to a status: the guest's exit code, a limit, or a trap.
fn status_of(result: wasmtime::Result<i32>, store: &Store<SandboxState>) -> ExitStatus {
    let err = match result {
        Ok(code) => return ExitStatus::Exited { code },
        Err(err) => err,
    };
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return ExitStatus::Exited { code: exit.0 };
    }
    if err.downcast_ref::<CpuTimeExceeded>().is_some() {
        let used = Duration::from_millis(store.data().cpu.cpu_ns() / 1_000_000);
        let message =
            format!("CPU time limit reached after {} of CPU; the guest was stopped", humantime::format_duration(used));
        return ExitStatus::LimitExceeded { limit: LimitKind::CpuTime, message };
    }
    if is_table_full(&err) {
        let (limit, by_process) = store.data().open_files_limit;
        let whose = if by_process { " (what this process's RLIMIT_NOFILE leaves a guest)" } else { "" };
        let message = format!(
            "open-handle limit of {limit}{whose} reached: the guest held that many files, sockets and streams and asked for another; it was stopped"
        );
        return ExitStatus::LimitExceeded { limit: LimitKind::OpenFiles, message };
    }
    let trap = describe_trap(&err);
    let limiter = &store.data().limiter;
    if let (Some(limit), Some((used, asked))) = (limiter.memory_limit(), limiter.memory_denied) {
        let message = format!(
            "memory limit of {} reached: the guest had {} and asked for {} in all, was refused, then failed ({trap})",
            human_bytes(limit),
            human_bytes(used),
            human_bytes(asked)
        );
        return ExitStatus::LimitExceeded { limit: LimitKind::Memory, message };
    }
    ExitStatus::Trapped { message: trap }
}

/// Whether a guest ended because its resource table (its host handles) was full.
pub(crate) fn is_table_full(err: &wasmtime::Error) -> bool {
    use wasmtime::component::ResourceTableError;
    err.chain().any(|cause| matches!(cause.downcast_ref::<ResourceTableError>(), Some(ResourceTableError::Full)))
}

/// "wasm trap: <what> in function `<name>`" from the trap code and the innermost frames, so
/// the user sees where in *their* code it happened (an `abort` alone says little).
fn describe_trap(err: &wasmtime::Error) -> String {
    let what = match err.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("guest failed: {}", err.root_cause()),
    };
    let Some(bt) = err.downcast_ref::<WasmBacktrace>() else { return what };
    let names: Vec<String> = bt
        .frames()
        .iter()
        .take(3)
        .map(|f| {
            f.func_name()
                .map_or_else(|| format!("#{}", f.func_index()), |n| format!("{:#}", rustc_demangle::demangle(n)))
        })
        .collect();
    match names.split_first() {
        None => what,
        Some((inner, [])) => format!("{what} in function `{inner}`"),
        Some((inner, callers)) => format!("{what} in function `{inner}` (called from `{}`)", callers.join("` ← `")),
    }
}

fn parse_params(
    export: &str,
    params: impl ExactSizeIterator<Item = ValType>,
    args: &[String],
) -> Result<Vec<Val>, SandboxError> {
    let problem = |problem: String| SandboxError::InvokeArgs { export: export.to_owned(), problem };
    let types: Vec<ValType> = params.collect();
    if types.len() != args.len() {
        return Err(problem(format!(
            "takes {} argument(s) ({}), {} given",
            types.len(),
            types.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", "),
            args.len()
        )));
    }
    types
        .iter()
        .zip(args)
        .map(|(ty, arg)| {
            let bad = || problem(format!("argument {arg:?} is not a valid {ty}"));
            Ok(match ty {
                ValType::I32 => {
                    Val::I32(arg.parse::<i32>().or_else(|_| arg.parse::<u32>().map(|v| v as i32)).map_err(|_| bad())?)
                }
                ValType::I64 => {
                    Val::I64(arg.parse::<i64>().or_else(|_| arg.parse::<u64>().map(|v| v as i64)).map_err(|_| bad())?)
                }
                ValType::F32 => Val::F32(arg.parse::<f32>().map_err(|_| bad())?.to_bits()),
                ValType::F64 => Val::F64(arg.parse::<f64>().map_err(|_| bad())?.to_bits()),
                other => {
                    return Err(problem(format!("parameters of type {other} cannot be given on the command line")));
                }
            })
        })
        .collect()
}

fn format_val(v: &Val) -> String {
    match v {
        Val::I32(v) => v.to_string(),
        Val::I64(v) => v.to_string(),
        Val::F32(bits) => f32::from_bits(*bits).to_string(),
        Val::F64(bits) => f64::from_bits(*bits).to_string(),
        Val::V128(v) => format!("{:#034x}", v.as_u128()),
        other => format!("{other:?}"),
    }
}
