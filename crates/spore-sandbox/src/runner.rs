//! From a compiled [`Program`] and a [`SandboxSpec`] to an [`ExitStatus`].
//!
//! [`Runnable`] is built once per program: it links the program against WASI and keeps the
//! resulting `InstancePre`, so every sandbox of the same wasm skips import resolution and type
//! checking. [`Runnable::run`] is the per-sandbox part: a fresh store and WASI context from the
//! spec, the limits wired into the store, and the guest driven as one async task.

use crate::devices::Devices;
use crate::error::SandboxError;
use crate::invoke_args::{format_val, parse_params};
use crate::kv::KvStores;
use crate::limits::{CpuTimeExceeded, Meter, Metered};
use crate::outcome::{RunReport, limiter_limit, status_of};
use crate::state::{SandboxState, kv_view, sqlite_view, vars_view};
use crate::stdio::{Captured, Sinks};
use spore_engine::{Program, ProgramCode, SporeEngine};
use spore_spec::{ExitStatus, LimitKind};
use spore_spec::{Invoke, SandboxSpec, SpecError};
use spore_types::human_bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component;
use wasmtime::{ExternType, Instance, Store, Trap, UpdateDeadline, Val};
use wasmtime_wasi::I32Exit;

enum Linked {
    Module(wasmtime::InstancePre<SandboxState>),
    Component {
        /// `None` when the component exports no `wasi:cli/run` (not a command).
        command: Option<Command>,
        /// `None` when it exports neither `wasi:http/incoming-handler@0.2` nor
        /// `wasi:http/handler@0.3` (not an HTTP app).
        proxy: Option<HttpEntry>,
    },
}

/// wasmtime's link error, led by what the app asked for when it is a Spin interface Spore does
/// not back (llm, mqtt, mysql, postgres, redis): the app fails here, at start, not at its
/// first call.
fn unlinked(err: &wasmtime::Error) -> String {
    let message = format!("{err:#}");
    let import = message.split_once("imports instance `").and_then(|(_, rest)| rest.split_once('`')).map(|(i, _)| i);
    match import {
        Some(name) if name.starts_with("spin:") || name.starts_with("fermyon:spin/") => {
            format!("it imports {name}, an interface of Spin's that Spore does not back ({message})")
        }
        _ => message,
    }
}

/// A component's `wasi:cli/run`, of either WASI version.
enum Command {
    P2(wasmtime_wasi::p2::bindings::CommandPre<SandboxState>),
    P3(wasmtime_wasi::p3::bindings::CommandPre<SandboxState>),
}

impl Command {
    /// The component's command entry, 0.2 first (the more common; a component exporting both
    /// runs as 0.2).
    fn of(pre: &component::InstancePre<SandboxState>) -> Option<Command> {
        let p3 = || wasmtime_wasi::p3::bindings::CommandPre::new(pre.clone()).ok().map(Command::P3);
        wasmtime_wasi::p2::bindings::CommandPre::new(pre.clone()).ok().map(Command::P2).or_else(p3)
    }
}

/// A component's HTTP entry, of either WASI version.
#[derive(Clone)]
pub(crate) enum HttpEntry {
    /// `wasi:http/incoming-handler@0.2`.
    P2(wasmtime_wasi_http::p2::bindings::ProxyPre<SandboxState>),
    /// `wasi:http/handler@0.3`.
    P3(wasmtime_wasi_http::p3::bindings::ServicePre<SandboxState>),
}

impl HttpEntry {
    /// 0.2 first, as for commands.
    fn of(pre: &component::InstancePre<SandboxState>) -> Option<HttpEntry> {
        let p3 = || wasmtime_wasi_http::p3::bindings::ServicePre::new(pre.clone()).ok().map(HttpEntry::P3);
        wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre.clone()).ok().map(HttpEntry::P2).or_else(p3)
    }
}

/// A program linked once, ready to start any number of sandboxes.
pub struct Runnable {
    pub(crate) engine: SporeEngine,
    pub(crate) program: Program,
    pub(crate) name: String,
    linked: Linked,
    pub(crate) kv_stores: Arc<KvStores>,
    devices: Arc<Devices>,
}

impl Runnable {
    /// Links `program` against WASI. `name` is how messages refer to it (usually the file).
    pub fn new(engine: &SporeEngine, program: Program, name: &str) -> Result<Self, SandboxError> {
        Runnable::with_devices(engine, program, name, Arc::default())
    }

    /// [`Runnable::new`], with the host's `devices` linked beside WASI for a core module (a
    /// sandbox's spec grants them).
    pub fn with_devices(
        engine: &SporeEngine,
        program: Program,
        name: &str,
        devices: Arc<Devices>,
    ) -> Result<Self, SandboxError> {
        let link_err = |err: wasmtime::Error| SandboxError::Link { program: name.to_owned(), message: unlinked(&err) };
        let linked = match &program.code {
            ProgramCode::Module(module) => {
                let mut linker = wasmtime::Linker::new(engine.wasmtime());
                wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut SandboxState| &mut s.wasi)
                    .map_err(link_err)?;
                devices.add_to_linker(&mut linker).map_err(link_err)?;
                Linked::Module(linker.instantiate_pre(module).map_err(link_err)?)
            }
            ProgramCode::Component(comp) => {
                let mut linker = component::Linker::new(engine.wasmtime());
                // Real components mix WASI 0.2.x patch versions; the linker matches by semver.
                wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link_err)?;
                wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(link_err)?;
                // WASI 0.3 beside 0.2: a component may import either, or both.
                wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(link_err)?;
                wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(link_err)?;
                crate::kv::add_to_linker(&mut linker, kv_view).map_err(link_err)?;
                crate::kv_draft2::add_to_linker(&mut linker, kv_view).map_err(link_err)?;
                crate::spin_kv::add_to_linker(&mut linker, kv_view).map_err(link_err)?;
                crate::sqlite::add_to_linker(&mut linker, sqlite_view).map_err(link_err)?;
                crate::variables::add_to_linker(&mut linker, vars_view).map_err(link_err)?;
                let pre = linker.instantiate_pre(comp).map_err(link_err)?;
                Linked::Component { command: Command::of(&pre), proxy: HttpEntry::of(&pre) }
            }
        };
        Ok(Runnable {
            engine: engine.clone(),
            program,
            name: name.to_owned(),
            linked,
            kv_stores: Arc::default(),
            devices,
        })
    }

    /// The host's key-value stores, for the sandboxes whose specs grant them by name.
    pub fn with_kv_stores(mut self, stores: Arc<KvStores>) -> Self {
        self.kv_stores = stores;
        self
    }

    /// Whether the program is an HTTP app (exports `wasi:http/incoming-handler@0.2` or
    /// `wasi:http/handler@0.3`).
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
    pub(crate) fn http_entry(&self) -> Option<&HttpEntry> {
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
        let (protected, data) = (self.engine.protected_paths(), self.engine.data_paths());
        spec.mounts.iter().try_for_each(|m| crate::mounts::check_exposure(m, &m.host, protected, data))
    }

    /// Refuses a spec that grants a device this host lacks, or lacks the grant of a device
    /// whose functions the program imports. Every start checks; a creator may check earlier.
    pub fn check_devices(&self, spec: &SandboxSpec) -> Result<(), SpecError> {
        match &self.program.code {
            ProgramCode::Module(module) => self.devices.check(module, spec),
            // Components import by WIT interface, not a plugin's core functions: only the
            // grant of a device the host lacks is refused.
            ProgramCode::Component(_) => match spec.capabilities.devices.first() {
                Some(name) => Err(SpecError::NoDevice { name: name.clone(), has: "none for components".into() }),
                None => Ok(()),
            },
        }
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
        self.check_devices(spec)?;
        let started = Instant::now();
        let meter = meter.clone();
        let (store, captured) = self.store(spec, sinks, meter.clone(), crate::state::Moment::Live).await?;
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
        moment: crate::state::Moment,
    ) -> Result<(Store<SandboxState>, Captured), SandboxError> {
        let (state, captured) = self.state(spec, sinks, meter, moment).await?;
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
                let result = match command {
                    Command::P2(pre) => {
                        let command = match pre.instantiate_async(&mut *store).await {
                            Ok(command) => command,
                            Err(err) => return self.instantiation_failed(store, err),
                        };
                        store.data().cpu.mark_entered();
                        command.wasi_cli_run().call_run(&mut *store).await
                    }
                    Command::P3(pre) => {
                        let command = match pre.instantiate_async(&mut *store).await {
                            Ok(command) => command,
                            Err(err) => return self.instantiation_failed(store, err),
                        };
                        store.data().cpu.mark_entered();
                        // A 0.3 run is a concurrent call: the store drives the guest's tasks
                        // until the call ends.
                        store
                            .run_concurrent(async move |accessor| command.wasi_cli_run().call_run(accessor).await)
                            .await
                            .and_then(|ended| ended)
                    }
                };
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
    pub(crate) fn exported_functions(&self) -> String {
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
