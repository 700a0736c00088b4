//! The wasmtime backends, runtime only: the runner loads artifacts the agent compiled — native
//! code for the runner's own target, or Pulley bytecode that needs no executable memory — and
//! never compiles. Runs are synchronous (wasmtime cannot pause a synchronous call), so the
//! watch is looked at on every epoch tick; a ticker thread advances the epoch only while
//! something runs, so an idle runner does not wake.
//!
//! Trust: an artifact is code. wasmtime checks that it was compiled by the same version with
//! the same settings, not what it does, so loading one is as safe as the link it came over —
//! which is why a runner's links are authenticated. The wasmi backend loads plain wasm, which
//! it validates, for links that cannot be trusted that far.
//!
//! The agent compiles with the `compile` feature ([`precompile`]): both sides take their
//! settings from [`configure`], so an artifact loads exactly where [`compat`] matches.

use crate::Stopped;
use crate::watch::Watch;
use crate::{Call, EdgeError, Engine, Host, Import, Instance, Interrupt, Limits, Outcome, Step, Value, Wasi};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};
use spore_wasip1::IMPORTS;
use spore_wire::BackendKind;
use std::thread::Thread;
use std::time::Duration;
use wasmtime::{
    Caller, Config, Extern, FuncType, Linker, Memory, Module, Precompiled, ResourceLimiter, Store, UpdateDeadline, Val,
    ValType,
};

/// The wasmtime release artifacts are compiled by and for; an artifact of another one is refused.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// The settings both sides share, as a version: bump it whenever [`configure`] changes, so an
/// artifact from an agent with other settings is refused by name before it is uploaded.
const SETTINGS: u32 = 1;

/// Period of the epoch ticker while something runs: the resolution of kills and time limits.
pub const TICK: Duration = Duration::from_millis(1);

/// The settings an artifact is compiled with and loaded under. Called by the runner and by the
/// agent, so the two can never disagree; anything that changes compiled code belongs here.
pub fn configure(config: &mut Config, kind: BackendKind) -> Result<(), EdgeError> {
    if kind == BackendKind::Pulley {
        config.target(pulley_target()).map_err(|e| EdgeError::Invalid(e.to_string()))?;
    }
    // Preemption and kills by epoch; fuel is the wasmi backend's (it costs compiled code speed).
    config.epoch_interruption(true);
    config.consume_fuel(false);
    // Core modules for WASI preview 1 only: what a runtime-only build has.
    config.gc_support(false);
    config.concurrency_support(false);
    // Linear memories as wasmtime's 64-bit defaults have them, said here so both sides agree.
    config.memory_reservation(4 << 30);
    config.memory_guard_size(32 << 20);
    config.memory_may_move(true);
    config.guard_before_linear_memory(true);
    config.memory_init_cow(true);
    config.table_lazy_init(true);
    config.signals_based_traps(kind == BackendKind::Native);
    Ok(())
}

/// Pulley's target on this runner's pointer width.
fn pulley_target() -> &'static str {
    if cfg!(target_pointer_width = "64") { "pulley64" } else { "pulley32" }
}

/// What an artifact for `kind` on `target` must have been compiled for: engine, version,
/// target and settings, readable so a refusal can name both sides.
pub fn compat(kind: BackendKind, target: &str) -> String {
    format!(
        "wasmtime {WASMTIME_VERSION} {target} settings {SETTINGS}{}",
        if kind == BackendKind::Pulley { " pulley" } else { "" }
    )
}

/// The wasmtime engine of a runner: native artifacts for its own target, or Pulley.
#[derive(Clone)]
pub struct Compiled {
    engine: wasmtime::Engine,
    kind: BackendKind,
    ticker: Arc<Ticker>,
    /// Whether it runs code where it was mapped ([`Compiled::for_mapped`]).
    in_place: bool,
}

/// Advances the engine's epoch every [`TICK`] while at least one instance runs.
struct Ticker {
    running: AtomicUsize,
    thread: Thread,
}

impl Ticker {
    /// The ticker of `engine`; its thread ends when the last handle to it or the engine goes.
    fn start(engine: &wasmtime::Engine) -> Result<Arc<Ticker>, EdgeError> {
        let engine = engine.weak();
        let (send, receive) = std::sync::mpsc::channel::<alloc::sync::Weak<Ticker>>();
        let thread = std::thread::Builder::new()
            .name("spore-edge-epoch".into())
            .spawn(move || {
                let Ok(ticker) = receive.recv() else { return };
                loop {
                    let Some(running) = ticker.upgrade().map(|t| t.running.load(Ordering::Acquire)) else { return };
                    if running == 0 {
                        std::thread::park();
                        continue;
                    }
                    std::thread::sleep(TICK);
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })
            .map_err(|e| EdgeError::Invalid(format!("cannot start the epoch ticker thread: {e}")))?;
        let ticker = Arc::new(Ticker { running: AtomicUsize::new(0), thread: thread.thread().clone() });
        let _ = send.send(Arc::downgrade(&ticker));
        Ok(ticker)
    }

    /// Counts a run for as long as the guard lives.
    fn running(&self) -> Running<'_> {
        if self.running.fetch_add(1, Ordering::AcqRel) == 0 {
            self.thread.unpark();
        }
        Running(self)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        // Wakes the parked thread to find its ticker gone and end.
        self.thread.unpark();
    }
}

struct Running<'a>(&'a Ticker);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Compiled {
    /// An engine for `kind` (native code for this machine, or Pulley), with the shared
    /// [`configure`]d settings.
    pub fn new(kind: BackendKind) -> Result<Compiled, EdgeError> {
        Compiled::with(kind, |_| {})
    }

    fn with(kind: BackendKind, more: impl FnOnce(&mut Config)) -> Result<Compiled, EdgeError> {
        if kind == BackendKind::Wasmi {
            return Err(EdgeError::Invalid("wasmi is the interpreter backend, not wasmtime's".to_string()));
        }
        let mut config = Config::new();
        configure(&mut config, kind)?;
        more(&mut config);
        let engine = wasmtime::Engine::new(&config).map_err(|e| EdgeError::Invalid(format!("{e:#}")))?;
        let ticker = Ticker::start(&engine)?;
        Ok(Compiled { engine, kind, ticker, in_place: false })
    }

    /// An engine for `kind` that runs `artifact` from a file the process has mapped (a bundle
    /// runs the one attached to its executable; load it with [`Compiled::load_mapped`]). Where
    /// the mapping is page-aligned the code runs where it lies: nothing is copied, and only the
    /// pages the app touches are read — for a 20 MB pre-initialised app, most of its start.
    /// Otherwise the engine loads by copy, as [`Engine::load`] does.
    pub fn for_mapped(kind: BackendKind, artifact: &[u8]) -> Result<Compiled, EdgeError> {
        let aligned = (artifact.as_ptr() as usize).is_multiple_of(in_place::page_size());
        match aligned {
            true => Compiled::with(kind, |config| {
                config.with_custom_code_memory(Some(Arc::new(in_place::InPlace)));
            }),
            false => Compiled::new(kind),
        }
        .map(|engine| Compiled { in_place: aligned, ..engine })
    }

    /// Loads `artifact` for an engine made by [`Compiled::for_mapped`] for it.
    ///
    /// # Safety
    ///
    /// `artifact` must be part of a private, read-only mapping of a file that stays mapped for
    /// the rest of the process, and trusted as the process's own code is: its code pages are
    /// made executable in place, and paged in from the file as the program's own text is (the
    /// process's own executable qualifies — whoever can change it can change the runner).
    pub unsafe fn load_mapped(&self, artifact: &'static [u8]) -> Result<Module, EdgeError> {
        if !self.in_place {
            return self.load(artifact);
        }
        self.check_precompiled(artifact)?;
        // SAFETY: as this function's contract; wasmtime checks the artifact's version,
        // settings and target against the engine before it uses anything of it, as in `load`.
        unsafe { Module::deserialize_raw(&self.engine, core::ptr::NonNull::from(artifact)) }
            .map_err(|e| self.cannot_load(e))
    }

    /// Refuses what is not a wasmtime module artifact before wasmtime reads any more of it.
    fn check_precompiled(&self, bytes: &[u8]) -> Result<(), EdgeError> {
        match wasmtime::Engine::detect_precompiled(bytes) {
            Some(Precompiled::Module) => Ok(()),
            Some(Precompiled::Component) => {
                Err(EdgeError::Invalid("a component artifact; this runner runs core modules".to_string()))
            }
            None => Err(EdgeError::Invalid(format!(
                "not a wasmtime artifact; the agent compiles modules for this backend ({})",
                self.compat()
            ))),
        }
    }

    fn cannot_load(&self, e: wasmtime::Error) -> EdgeError {
        EdgeError::Invalid(format!("an artifact this runner cannot load (it loads {}): {e:#}", self.compat()))
    }

    /// The target this engine's artifacts are for, as `HELLO_ACK` advertises it.
    pub fn target(&self) -> &'static str {
        match self.kind {
            BackendKind::Pulley => pulley_target(),
            _ => crate::TARGET,
        }
    }

    /// What an artifact must have been compiled for to load here.
    pub fn compat(&self) -> String {
        compat(self.kind, self.target())
    }
}

/// Compiles `wasm` into an artifact for `kind` on `target` — a Rust target triple for native
/// code, `pulley32`/`pulley64` for Pulley, as the runner advertises it: the agent's side of
/// [`configure`].
#[cfg(feature = "compile")]
pub fn precompile(kind: BackendKind, target: &str, wasm: &[u8]) -> Result<Vec<u8>, EdgeError> {
    compiler(kind, target)?.precompile_module(wasm).map_err(|e| EdgeError::Invalid(format!("{e:#}")))
}

/// Whether this build's Cranelift compiles native code for `target` (it has the aarch64,
/// riscv64 and x86_64 backends, whatever machine it runs on).
#[cfg(feature = "compile")]
pub fn compiles_for(target: &str) -> bool {
    compiler(BackendKind::Native, target).is_ok()
}

/// An engine that compiles for `kind` on `target` what the runner's [`configure`] loads.
#[cfg(feature = "compile")]
fn compiler(kind: BackendKind, target: &str) -> Result<wasmtime::Engine, EdgeError> {
    let mut config = Config::new();
    configure(&mut config, kind)?;
    // The runner's target, not this machine's (for Pulley, the runner's pointer width).
    config.target(target).map_err(|e| EdgeError::Invalid(format!("cannot compile for {target}: {e}")))?;
    // What the runner's runtime-only build lacks must not be assumed by the code.
    config.wasm_component_model(false);
    config.wasm_threads(false);
    config.wasm_exceptions(false);
    config.wasm_gc(false);
    config.wasm_function_references(false);
    config.wasm_stack_switching(false);
    wasmtime::Engine::new(&config).map_err(|e| EdgeError::Invalid(format!("cannot compile for {target}: {e:#}")))
}

/// What a store holds.
struct State<H> {
    wasi: Wasi<H>,
    limiter: Limiter,
    watch: Watch,
}

/// Memory and tables within their limits; remembers a refusal, so the trap that follows it is
/// reported as the limit it is.
struct Limiter {
    memory: usize,
    refused: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _: usize, desired: usize, _: Option<usize>) -> wasmtime::Result<bool> {
        self.refused |= desired > self.memory;
        Ok(desired <= self.memory)
    }

    fn table_growing(&mut self, _: usize, desired: usize, _: Option<usize>) -> wasmtime::Result<bool> {
        self.refused |= desired > crate::MAX_TABLE_ELEMENTS;
        Ok(desired <= crate::MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        16
    }

    fn memories(&self) -> usize {
        1
    }
}

impl Engine for Compiled {
    type Module = Module;
    type Instance<H: Host + Send + 'static> = Run<H>;

    fn backend(&self) -> BackendKind {
        self.kind
    }

    fn load(&self, bytes: &[u8]) -> Result<Module, EdgeError> {
        self.check_precompiled(bytes)?;
        // SAFETY: an artifact is code and wasmtime trusts it once its header (version,
        // settings, target) matches this engine's; it came over an authenticated link from the
        // agent that compiled it (see the module's documentation).
        unsafe { Module::deserialize(&self.engine, bytes) }.map_err(|e| self.cannot_load(e))
    }

    fn check(&self, module: &Module, limits: &Limits, functions: &[Import]) -> Result<(), EdgeError> {
        if limits.fuel.is_some() {
            return Err(EdgeError::Limit(
                "the wasmtime backends count CPU time, not fuel: give cpu_ms, or run on wasmi".to_string(),
            ));
        }
        let imports = module.imports().map(|i| {
            let signature = match i.ty() {
                wasmtime::ExternType::Func(f) => {
                    let results: Vec<&str> = f.results().map(|t| type_name(&t)).collect();
                    Some(spore_wasip1::signature(f.params().map(|t| type_name(&t)), &results))
                }
                _ => None,
            };
            (i.module(), i.name(), signature)
        });
        crate::check_imports(imports, functions)?;
        let limit = limits.memory_bytes.unwrap_or(crate::DEFAULT_MEMORY);
        for export in module.exports() {
            if let wasmtime::ExternType::Memory(m) = export.ty() {
                crate::check_memory(u128::from(m.minimum()) * u128::from(m.page_size()), limit)?;
            }
        }
        Ok(())
    }

    fn instantiate<H: Host + Send + 'static>(
        &self,
        module: &Module,
        mut wasi: Wasi<H>,
        limits: &Limits,
        interrupt: Interrupt,
    ) -> Result<Run<H>, EdgeError> {
        self.check(module, limits, wasi.host.functions())?;
        let linker = linker::<H>(&self.engine, wasi.host.functions())?;
        let watch = Watch::start(limits, interrupt, &mut wasi.host)?;
        wasi.wake_by = watch.wall_deadline();
        let memory = usize::try_from(limits.memory_bytes.unwrap_or(crate::DEFAULT_MEMORY)).unwrap_or(usize::MAX);
        let mut store = Store::new(&self.engine, State { wasi, limiter: Limiter { memory, refused: false }, watch });
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            match state.watch.check(&mut state.wasi.host) {
                Some(outcome) => Err(wasmtime::Error::new(Stopped::Watch(outcome))),
                None => Ok(UpdateDeadline::Continue(1)),
            }
        });
        let instance = {
            let _running = self.ticker.running();
            linker.instantiate(&mut store, module)
        }
        .map_err(|e| match store.data().limiter.refused {
            true => EdgeError::Limit(format!("{e:#}")),
            false if e.downcast_ref::<wasmtime::Trap>().is_some() => EdgeError::Trap(format!("{e:#}")),
            false => EdgeError::Invalid(format!("{e:#}")),
        })?;
        let memory = instance.get_memory(&mut store, "memory");
        Ok(Run { store, instance, memory, ticker: self.ticker.clone(), started: false })
    }
}

/// A value type as the text format writes it.
fn type_name(ty: &ValType) -> &'static str {
    match ty {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        ValType::F32 => "f32",
        ValType::F64 => "f64",
        ValType::V128 => "v128",
        ValType::Ref(_) => "ref",
    }
}

/// A linker with every WASI preview 1 function, then the host's own `functions`, bound to
/// [`Wasi::call`] by their place in that order.
fn linker<H: Host + Send + 'static>(
    engine: &wasmtime::Engine,
    functions: &[Import],
) -> Result<Linker<State<H>>, EdgeError> {
    let mut linker = Linker::new(engine);
    for (index, import) in IMPORTS.iter().chain(functions).enumerate() {
        let params = import.params.iter().map(|t| match t {
            spore_wasip1::Ty::I32 => ValType::I32,
            spore_wasip1::Ty::I64 => ValType::I64,
        });
        let results: &[ValType] = if import.returns { &[ValType::I32] } else { &[] };
        let ty = FuncType::new(engine, params, results.iter().cloned());
        linker
            .func_new(import.module, import.name, ty, move |caller, params, results| {
                wasi_call(caller, index, params, results)
            })
            .map_err(|e| EdgeError::Invalid(format!("{e:#}")))?;
    }
    Ok(linker)
}

fn wasi_call<H: Host>(
    mut caller: Caller<'_, State<H>>,
    index: usize,
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let mut args = [0u64; 9];
    for (slot, value) in args.iter_mut().zip(params) {
        *slot = match value {
            Val::I32(v) => *v as u32 as u64,
            Val::I64(v) => *v as u64,
            _ => 0,
        };
    }
    let memory = caller.get_export("memory").and_then(Extern::into_memory);
    let mut none: [u8; 0] = [];
    let (bytes, state) = match memory {
        Some(m) => m.data_and_store_mut(&mut caller),
        None => (&mut none[..], caller.data_mut()),
    };
    let State { wasi, watch, .. } = state;
    let errno =
        crate::host_call(wasi, watch, index, bytes, &args[..params.len().min(9)]).map_err(wasmtime::Error::new)?;
    if let Some(slot) = results.first_mut() {
        *slot = Val::I32(errno);
    }
    Ok(())
}

/// An instance on wasmtime.
pub struct Run<H: Host + Send + 'static> {
    store: Store<State<H>>,
    instance: wasmtime::Instance,
    memory: Option<Memory>,
    ticker: Arc<Ticker>,
    started: bool,
}

impl<H: Host + Send + 'static> Run<H> {
    /// The WASI host, e.g. to read what it recorded.
    pub fn host(&self) -> &H {
        &self.store.data().wasi.host
    }

    fn ended(&self, error: wasmtime::Error) -> Outcome {
        if let Some(stopped) = error.downcast_ref::<Stopped>() {
            return stopped.outcome();
        }
        if self.store.data().limiter.refused {
            return crate::over_memory(self.store.data().limiter.memory);
        }
        // The trap and the function it happened in; the whole backtrace is for a debugger.
        let Some(trap) = error.downcast_ref::<wasmtime::Trap>() else { return Outcome::Trapped(format!("{error:#}")) };
        let function = error
            .downcast_ref::<wasmtime::WasmBacktrace>()
            .and_then(|b| b.frames().first().and_then(|f| f.func_name().map(String::from)));
        Outcome::Trapped(match function {
            Some(f) => format!("{trap} in `{f}`"),
            None => trap.to_string(),
        })
    }
}

fn value(v: &Val) -> Value {
    match v {
        Val::I32(x) => Value::I32(*x),
        Val::I64(x) => Value::I64(*x),
        Val::F32(x) => Value::F32(*x),
        Val::F64(x) => Value::F64(*x),
        _ => Value::I32(0),
    }
}

fn val(v: &Value) -> Val {
    match *v {
        Value::I32(x) => Val::I32(x),
        Value::I64(x) => Val::I64(x),
        Value::F32(x) => Val::F32(x),
        Value::F64(x) => Val::F64(x),
    }
}

impl<H: Host + Send + 'static> Instance for Run<H> {
    fn start(&mut self, call: Call<'_>, _slice: Option<u64>) -> Step {
        if self.started {
            return Step::Ended(Outcome::Trapped("this instance has run already; make another".to_string()));
        }
        self.started = true;
        let (name, args, is_start) = match call {
            Call::Start => ("_start", &[][..], true),
            Call::Export { name, args } => (name, args, false),
        };
        let Some(func) = self.instance.get_func(&mut self.store, name) else {
            return Step::Ended(Outcome::Trapped(format!("the module exports no function {name:?}")));
        };
        let ty = func.ty(&self.store);
        let inputs: Vec<Val> = args.iter().map(val).collect();
        let mut results: Vec<Val> = ty.results().map(|t| Val::default_for_ty(&t).unwrap_or(Val::I32(0))).collect();
        // A kill that came before the run ends it before the first instruction.
        if let Some(outcome) = self.store.data_mut().watch_now() {
            return Step::Ended(outcome);
        }
        let ticker = self.ticker.clone();
        let called = {
            let _running = ticker.running();
            func.call(&mut self.store, &inputs, &mut results)
        };
        Step::Ended(match called {
            Ok(()) if is_start => Outcome::Exited(0),
            Ok(()) => Outcome::Returned(results.iter().map(value).collect()),
            Err(error) => self.ended(error),
        })
    }

    fn resume(&mut self, _slice: Option<u64>) -> Step {
        Step::Ended(Outcome::Trapped("nothing to resume: wasmtime runs end in one call".to_string()))
    }

    fn fuel_used(&self) -> u64 {
        0
    }

    fn memory_bytes(&self) -> u64 {
        self.memory.map_or(0, |m| m.data_size(&self.store) as u64)
    }
}

impl<H: Host> State<H> {
    fn watch_now(&mut self) -> Option<Outcome> {
        self.watch.check(&mut self.wasi.host)
    }
}

/// Code published where it was mapped from a file ([`Compiled::load_mapped`]): wasmtime hands
/// over the text section's pages (page-aligned in an artifact and, by the caller's check, in
/// memory) and they are made executable as they are. Used only by an engine that loads in
/// place, whose code is never written after it is mapped (so no cache maintenance is due: the
/// pages come from the file).
mod in_place {
    use alloc::format;
    /// The machine's page size.
    pub(super) fn page_size() -> usize {
        // SAFETY: sysconf reads a constant of the system.
        usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
    }

    pub(super) struct InPlace;

    impl InPlace {
        fn protect(ptr: *const u8, len: usize, prot: libc::c_int) -> wasmtime::Result<()> {
            // SAFETY: wasmtime passes a page-aligned range of the module's own mapping, which
            // it no longer writes nor runs while the protection changes.
            match unsafe { libc::mprotect(ptr as *mut libc::c_void, len, prot) } {
                0 => Ok(()),
                _ => Err(wasmtime::Error::msg(format!(
                    "cannot change the protection of the app's code: {}",
                    std::io::Error::last_os_error()
                ))),
            }
        }
    }

    impl wasmtime::CustomCodeMemory for InPlace {
        fn required_alignment(&self) -> usize {
            page_size()
        }

        fn publish_executable(&self, ptr: *const u8, len: usize) -> wasmtime::Result<()> {
            InPlace::protect(ptr, len, libc::PROT_READ | libc::PROT_EXEC)
        }

        /// Back to the mapping's own protection, read-only: nothing writes these pages (a
        /// stray write faults, after the module as before it), so they never become writable.
        fn unpublish_executable(&self, ptr: *const u8, len: usize) -> wasmtime::Result<()> {
            InPlace::protect(ptr, len, libc::PROT_READ)
        }
    }
}
