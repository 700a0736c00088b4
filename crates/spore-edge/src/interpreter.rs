//! The wasmi backend: plain wasm, interpreted, with deterministic fuel. Runs are resumable
//! calls, so a run spends its fuel in slices and a scheduler (a thread per app on Linux, one
//! loop on a board) decides who runs next.

use crate::Stopped;
use crate::watch::Watch;
use crate::{
    Call, EdgeError, Engine, Host, Import, Instance, Interrupt, LimitKind, Limits, Outcome, Step, Value, Wasi,
};
use alloc::format;
use alloc::string::ToString;
use alloc::vec::Vec;
use spore_wasip1::IMPORTS;
use spore_wire::BackendKind;
use wasmi::{
    Caller, Config, Extern, Func, FuncType, Linker, Memory, Module, ResourceLimiter, ResumableCall,
    ResumableCallHostTrap, ResumableCallOutOfFuel, Store, Val, ValType,
};
use wasmi_core::LimiterError;

/// The wasmi engine.
#[derive(Clone)]
pub struct Interpreter {
    engine: wasmi::Engine,
    bounds: Bounds,
}

/// What bounds a run beyond its app's own limits: host memory and time that are the runner's,
/// set lower on a board than on a Linux host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Fuel a module's start function may use at most: it runs when the instance is made and
    /// cannot be paused, so while it runs nothing else does.
    pub start_fuel: u64,
    /// Bytes of wasmi's value stack a run may grow to (host memory, outside the guest's
    /// linear memory; deeper recursion traps).
    pub max_stack_bytes: usize,
    /// Stacks the engine keeps after runs end, to reuse: host memory no app is counted for.
    pub cached_stacks: usize,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds { start_fuel: 1_000_000_000, max_stack_bytes: 1 << 20, cached_stacks: 2 }
    }
}

impl Default for Interpreter {
    fn default() -> Interpreter {
        Interpreter::new(Bounds::default())
    }
}

impl Interpreter {
    /// The engine with these bounds.
    pub fn new(bounds: Bounds) -> Interpreter {
        let mut config = Config::default();
        // Always counted: fuel is how runs are sliced, and what a fuel limit bounds.
        config.consume_fuel(true);
        // Translated whole at load: a lazily translated function charges its translation to the
        // fuel of the call that reaches it, and wasmi cannot resume a call that ran out there.
        // Eager also finds every invalid function before anything runs.
        config.compilation_mode(wasmi::CompilationMode::Eager);
        // wasmi's initial height is 1000 bytes: a smaller maximum is raised to it.
        config.set_max_stack_height(bounds.max_stack_bytes.max(1000));
        config.set_max_cached_stacks(bounds.cached_stacks);
        Interpreter { engine: wasmi::Engine::new(&config), bounds }
    }
}

// Carried through wasmi as a host error.
impl wasmi::errors::HostError for Stopped {}

/// What a store holds: the guest's WASI state, its watch and its limiter.
struct State<H> {
    wasi: Wasi<H>,
    /// Kill, wall-clock and CPU limits: looked at between slices and around every host call.
    watch: Watch,
    limiter: Limiter,
}

/// Memory and tables within their limits; remembers a refusal, so the trap that follows it
/// (Rust aborts when an allocation fails) is reported as the limit it is.
struct Limiter {
    memory: usize,
    refused: Option<LimitKind>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _: usize, desired: usize, _: Option<usize>) -> Result<bool, LimiterError> {
        let ok = desired <= self.memory;
        if !ok {
            self.refused = Some(LimitKind::Memory);
        }
        Ok(ok)
    }

    fn table_growing(&mut self, _: usize, desired: usize, _: Option<usize>) -> Result<bool, LimiterError> {
        let ok = desired <= crate::MAX_TABLE_ELEMENTS;
        if !ok {
            self.refused = Some(LimitKind::Memory);
        }
        Ok(ok)
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

impl Engine for Interpreter {
    type Module = Module;
    type Instance<H: Host + Send + 'static> = Interpreted<H>;

    fn backend(&self) -> BackendKind {
        BackendKind::Wasmi
    }

    fn load(&self, bytes: &[u8]) -> Result<Module, EdgeError> {
        Module::new(&self.engine, bytes).map_err(|e| EdgeError::Invalid(e.to_string()))
    }

    fn check(&self, module: &Module, limits: &Limits, functions: &[Import]) -> Result<(), EdgeError> {
        let imports = module.imports().map(|i| {
            let signature = match i.ty() {
                wasmi::ExternType::Func(f) => {
                    let results: Vec<&str> = f.results().iter().map(type_name).collect();
                    Some(spore_wasip1::signature(f.params().iter().map(type_name), &results))
                }
                _ => None,
            };
            (i.module(), i.name(), signature)
        });
        crate::check_imports(imports, functions)?;
        let limit = limits.memory_bytes.unwrap_or(crate::DEFAULT_MEMORY);
        for export in module.exports() {
            if let wasmi::ExternType::Memory(m) = export.ty() {
                // Pages of 64 KiB: wasmi is built without custom page sizes.
                let bytes = u128::from(m.minimum()) << 16;
                crate::check_memory(bytes, limit)?;
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
    ) -> Result<Interpreted<H>, EdgeError> {
        self.check(module, limits, wasi.host.functions())?;
        let linker = linker::<H>(&self.engine, wasi.host.functions());
        let watch = Watch::start(limits, interrupt, &mut wasi.host)?;
        wasi.wake_by = watch.wall_deadline();
        let memory = usize::try_from(limits.memory_bytes.unwrap_or(crate::DEFAULT_MEMORY)).unwrap_or(usize::MAX);
        let state = State { wasi, watch, limiter: Limiter { memory, refused: None } };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // A start function cannot be paused: it runs on the budget, within the engine's bound.
        let bound = self.bounds.start_fuel;
        let start_fuel = limits.fuel.unwrap_or(bound).min(bound);
        let _ = store.set_fuel(start_fuel);
        let instance =
            linker.instantiate_and_start(&mut store, module).map_err(|e| match store.data().limiter.refused {
                Some(_) => EdgeError::Limit(e.to_string()),
                None if e.as_trap_code() == Some(wasmi::TrapCode::OutOfFuel) && start_fuel == bound => {
                    EdgeError::Limit(format!(
                        "the module's start function needs more than the {bound} fuel this runner gives one; \
                         move its work to _start or an export"
                    ))
                }
                None if e.as_trap_code().is_some() => EdgeError::Trap(e.to_string()),
                None => EdgeError::Invalid(e.to_string()),
            })?;
        let used = start_fuel - store.get_fuel().unwrap_or(start_fuel);
        let memory = instance.get_memory(&store, "memory");
        Ok(Interpreted {
            store,
            instance,
            memory,
            budget: limits.fuel,
            used,
            paused: None,
            results: Vec::new(),
            started: false,
            is_start: false,
        })
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
        ValType::FuncRef => "funcref",
        ValType::ExternRef => "externref",
    }
}

/// A linker with every WASI preview 1 function, then the host's own `functions`, bound to
/// [`Wasi::call`] by their place in that order.
fn linker<H: Host + Send + 'static>(engine: &wasmi::Engine, functions: &[Import]) -> Linker<State<H>> {
    let mut linker = Linker::new(engine);
    for (index, import) in IMPORTS.iter().chain(functions).enumerate() {
        let params = import.params.iter().map(|t| match t {
            spore_wasip1::Ty::I32 => ValType::I32,
            spore_wasip1::Ty::I64 => ValType::I64,
        });
        let results: &[ValType] = if import.returns { &[ValType::I32] } else { &[] };
        let ty = FuncType::new(params, results.iter().copied());
        // WASI's names are unique (a test of spore-wasip1 says so); a host that lists a name
        // twice has the first.
        let _ = linker.func_new(import.module, import.name, ty, move |caller, params, results| {
            wasi_call(caller, index, params, results)
        });
    }
    linker
}

fn wasi_call<H: Host>(
    mut caller: Caller<'_, State<H>>,
    index: usize,
    params: &[Val],
    results: &mut [Val],
) -> Result<(), wasmi::Error> {
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
        crate::host_call(wasi, watch, index, bytes, &args[..params.len().min(9)]).map_err(wasmi::Error::host)?;
    if let Some(slot) = results.first_mut() {
        *slot = Val::I32(errno);
    }
    Ok(())
}

/// A run that stopped before its end and goes on when resumed.
enum Paused {
    /// Its slice of fuel was spent.
    Fuel(ResumableCallOutOfFuel),
    /// It waits in a parked WASI call.
    Host(ResumableCallHostTrap),
}

/// An instance on wasmi.
pub struct Interpreted<H: Host + Send + 'static> {
    store: Store<State<H>>,
    instance: wasmi::Instance,
    memory: Option<Memory>,
    /// The whole run's fuel, if limited.
    budget: Option<u64>,
    /// Fuel spent in finished slices.
    used: u64,
    paused: Option<Paused>,
    results: Vec<Val>,
    started: bool,
    /// The run is a command's `_start` (its end is an exit, not returned values).
    is_start: bool,
}

impl<H: Host + Send + 'static> Interpreted<H> {
    /// The WASI host, e.g. to read what it recorded.
    pub fn host(&self) -> &H {
        &self.store.data().wasi.host
    }

    /// Gives the store `piece` fuel, or what is left of the budget if less; `None` when the
    /// budget is spent.
    fn refuel(&mut self, piece: u64) -> Option<u64> {
        let fuel = match self.budget.map(|b| b.saturating_sub(self.used)) {
            Some(0) => return None,
            Some(left) => piece.min(left),
            None => piece,
        };
        // Fuel is enabled in the engine's config, so setting it cannot fail.
        let _ = self.store.set_fuel(fuel);
        Some(fuel)
    }

    fn settle(&mut self, given: u64, call: Result<ResumableCall, wasmi::Error>, is_start: bool) -> Step {
        self.used = self.used.saturating_add(given.saturating_sub(self.store.get_fuel().unwrap_or(0)));
        match call {
            Ok(ResumableCall::Finished) => Step::Ended(if is_start {
                Outcome::Exited(0)
            } else {
                Outcome::Returned(self.results.iter().map(value).collect())
            }),
            Ok(ResumableCall::OutOfFuel(paused)) => {
                // Spent when what is left cannot pay for the guest's next step.
                if self.budget.is_some_and(|b| b.saturating_sub(self.used) < paused.required_fuel()) {
                    return Step::Ended(Outcome::Limit {
                        limit: LimitKind::Fuel,
                        message: format!("used its fuel budget of {}", self.budget.unwrap_or(0)),
                    });
                }
                self.paused = Some(Paused::Fuel(paused));
                Step::Paused
            }
            Ok(ResumableCall::HostTrap(trap)) => {
                if let Some(Stopped::Wasi(spore_wasip1::Stop::Park { until })) = trap.host_error().downcast_ref() {
                    let until = *until;
                    self.paused = Some(Paused::Host(trap));
                    return Step::Parked { until };
                }
                Step::Ended(self.stopped(trap.into_host_error()))
            }
            Err(error) => Step::Ended(self.stopped(error)),
        }
    }

    fn stopped(&self, error: wasmi::Error) -> Outcome {
        if let Some(stopped) = error.downcast_ref::<Stopped>() {
            return stopped.outcome();
        }
        if let Some(code) = error.i32_exit_status() {
            return Outcome::Exited(code);
        }
        match self.store.data().limiter.refused {
            Some(_) => crate::over_memory(self.store.data().limiter.memory),
            None => Outcome::Trapped(error.to_string()),
        }
    }
}

fn value(v: &Val) -> Value {
    match v {
        Val::I32(x) => Value::I32(*x),
        Val::I64(x) => Value::I64(*x),
        Val::F32(x) => Value::F32(x.to_bits()),
        Val::F64(x) => Value::F64(x.to_bits()),
        _ => Value::I32(0),
    }
}

fn val(v: &Value) -> Val {
    match *v {
        Value::I32(x) => Val::I32(x),
        Value::I64(x) => Val::I64(x),
        Value::F32(x) => Val::F32(f32::from_bits(x).into()),
        Value::F64(x) => Val::F64(f64::from_bits(x).into()),
    }
}

/// Fuel between two looks at the watch: a kill or a time limit ends a spinning guest within
/// about this much work (well under a millisecond).
const CHECK_EVERY: u64 = 100_000;

impl<H: Host + Send + 'static> Interpreted<H> {
    /// Runs `first` (or the paused run) for at most `slice` fuel, in pieces of [`CHECK_EVERY`]
    /// with the watch looked at before each.
    fn drive(&mut self, mut first: Option<(Func, Vec<Val>)>, slice: Option<u64>) -> Step {
        let mut left = slice;
        loop {
            let state = self.store.data_mut();
            if let Some(outcome) = state.watch.check(&mut state.wasi.host) {
                self.paused = None;
                return Step::Ended(outcome);
            }
            let required = match &self.paused {
                Some(Paused::Fuel(p)) => p.required_fuel(),
                _ => 0,
            };
            let piece = left.map_or(CHECK_EVERY, |l| l.min(CHECK_EVERY)).max(required);
            let Some(given) = self.refuel(piece) else {
                return Step::Ended(Outcome::Limit {
                    limit: LimitKind::Fuel,
                    message: "no fuel budget left".to_string(),
                });
            };
            let before = self.used;
            let mut results = core::mem::take(&mut self.results);
            let call = match (first.take(), self.paused.take()) {
                (Some((func, inputs)), _) => func.call_resumable(&mut self.store, &inputs, &mut results),
                (None, Some(Paused::Fuel(paused))) => paused.resume(&mut self.store, &mut results),
                (None, Some(Paused::Host(parked))) => {
                    // The parked call's answer, now that the guest may have it; or it waits on.
                    match self.finish_parked() {
                        Ok(errno) => parked.resume(&mut self.store, &[Val::I32(errno)], &mut results),
                        Err(spore_wasip1::Stop::Park { until }) => {
                            self.results = results;
                            self.paused = Some(Paused::Host(parked));
                            return Step::Parked { until };
                        }
                        Err(stop) => return Step::Ended(Stopped::Wasi(stop).outcome()),
                    }
                }
                (None, None) => return Step::Ended(Outcome::Trapped("nothing to resume".to_string())),
            };
            self.results = results;
            match self.settle(given, call, self.is_start) {
                Step::Paused => {}
                other => return other,
            }
            if let Some(l) = left.as_mut() {
                *l = l.saturating_sub(self.used - before);
                if *l == 0 {
                    return Step::Paused;
                }
            }
        }
    }
}

impl<H: Host + Send + 'static> Interpreted<H> {
    /// The answer of the WASI call the guest was parked in, or why it waits on or stops.
    fn finish_parked(&mut self) -> Result<i32, spore_wasip1::Stop> {
        let mut none: [u8; 0] = [];
        let (bytes, state) = match self.memory {
            Some(m) => m.data_and_store_mut(&mut self.store),
            None => (&mut none[..], self.store.data_mut()),
        };
        state.wasi.finish(bytes)
    }
}

impl<H: Host + Send + 'static> Instance for Interpreted<H> {
    fn start(&mut self, call: Call<'_>, slice: Option<u64>) -> Step {
        if self.started {
            return Step::Ended(Outcome::Trapped("this instance has run already; make another".to_string()));
        }
        self.started = true;
        let (name, args, is_start) = match call {
            Call::Start => ("_start", &[][..], true),
            Call::Export { name, args } => (name, args, false),
        };
        let Some(func): Option<Func> = self.instance.get_func(&self.store, name) else {
            return Step::Ended(Outcome::Trapped(format!("the module exports no function {name:?}")));
        };
        let ty = func.ty(&self.store);
        self.results = ty.results().iter().map(|t| Val::default_for_ty(*t)).collect();
        self.is_start = is_start;
        self.drive(Some((func, args.iter().map(val).collect())), slice)
    }

    fn resume(&mut self, slice: Option<u64>) -> Step {
        if self.paused.is_none() {
            return Step::Ended(Outcome::Trapped("nothing to resume".to_string()));
        }
        self.drive(None, slice)
    }

    fn fuel_used(&self) -> u64 {
        self.used
    }

    fn memory_bytes(&self) -> u64 {
        self.memory.map_or(0, |m| m.data_size(&self.store) as u64)
    }
}
