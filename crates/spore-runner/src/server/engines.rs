//! The engines a runner offers, and the one place that picks an engine for a module's kind.

use super::Refusal;
#[cfg(not(feature = "wasmi"))]
use super::absent::Absent as Interpreter;
#[cfg(not(feature = "wasmtime"))]
use super::absent::{Absent as Compiled, WASMTIME_VERSION};
#[cfg(feature = "wasmtime")]
use spore_edge::compiled::{Compiled, WASMTIME_VERSION};
#[cfg(feature = "wasmi")]
use spore_edge::interpreter::Interpreter;
use spore_edge::{Call, EdgeError, Engine, Host, Import, Instance, Interrupt, Limits, Outcome, Step, Wasi};
use spore_wire::Device;
use spore_wire::{Backend, BackendKind, ErrorCode, ModuleKind};

/// A module loaded on the engine for its kind.
pub(crate) enum Loaded {
    /// Plain wasm on wasmi.
    Wasmi(<Interpreter as Engine>::Module),
    /// An artifact on wasmtime's native or Pulley engine.
    Compiled(BackendKind, <Compiled as Engine>::Module),
}

/// How a run ended, with what it used.
pub(crate) struct Ended {
    pub outcome: Outcome,
    pub fuel_used: Option<u64>,
    pub memory_bytes: u64,
}

pub(crate) struct Engines {
    wasmi: Option<Interpreter>,
    native: Option<Compiled>,
    pulley: Option<Compiled>,
}

/// The wasmi engine, where this build has it.
fn wasmi() -> Result<Interpreter, EdgeError> {
    #[cfg(feature = "wasmi")]
    return Ok(Interpreter::default());
    #[cfg(not(feature = "wasmi"))]
    return Interpreter::new(BackendKind::Wasmi);
}

/// The engines this build has, as `--backend` lists them by default.
pub fn built_in() -> Vec<BackendKind> {
    let mut kinds = Vec::new();
    if cfg!(feature = "wasmtime") {
        kinds.extend([BackendKind::Native, BackendKind::Pulley]);
    }
    if cfg!(feature = "wasmi") {
        kinds.push(BackendKind::Wasmi);
    }
    kinds
}

fn backend_of(kind: ModuleKind) -> BackendKind {
    match kind {
        ModuleKind::Wasm => BackendKind::Wasmi,
        ModuleKind::Native => BackendKind::Native,
        ModuleKind::Pulley => BackendKind::Pulley,
    }
}

impl Engines {
    pub(crate) fn new(backends: &[BackendKind]) -> Result<Engines, String> {
        let compiled = |kind| -> Result<Option<Compiled>, String> {
            match backends.contains(&kind) {
                true => Compiled::new(kind).map(Some).map_err(|e| format!("the {kind:?} engine: {e}")),
                false => Ok(None),
            }
        };
        let wasmi = match backends.contains(&BackendKind::Wasmi) {
            true => Some(wasmi().map_err(|e| format!("the Wasmi engine: {e}"))?),
            false => None,
        };
        Ok(Engines { wasmi, native: compiled(BackendKind::Native)?, pulley: compiled(BackendKind::Pulley)? })
    }

    /// The engine for the one artifact of `kind` a process runs from a file it has mapped (a
    /// bundle's own executable): native and Pulley code then runs where it lies
    /// (`Compiled::for_mapped`); load it with [`Engines::load_mapped`].
    pub(crate) fn for_mapped(kind: ModuleKind, artifact: &[u8]) -> Result<Engines, String> {
        let backend = backend_of(kind);
        #[cfg(feature = "wasmtime")]
        if backend != BackendKind::Wasmi {
            let engine = Compiled::for_mapped(backend, artifact).map_err(|e| format!("the {backend:?} engine: {e}"))?;
            let (native, pulley) = match backend {
                BackendKind::Pulley => (None, Some(engine)),
                _ => (Some(engine), None),
            };
            return Ok(Engines { wasmi: None, native, pulley });
        }
        let _ = artifact;
        Engines::new(&[backend])
    }

    /// Loads the artifact [`Engines::for_mapped`] was made for.
    ///
    /// # Safety
    ///
    /// As `Compiled::load_mapped`: `artifact` lies in a private read-only mapping of a file
    /// that stays mapped, unwritten, for the rest of the process.
    pub(crate) unsafe fn load_mapped(&self, kind: ModuleKind, artifact: &'static [u8]) -> Result<Loaded, Refusal> {
        #[cfg(feature = "wasmtime")]
        if let Some(engine) = self.compiled(backend_of(kind)) {
            // SAFETY: as this function's contract.
            return unsafe { engine.load_mapped(artifact) }
                .map(|m| Loaded::Compiled(backend_of(kind), m))
                .map_err(|e| Refusal::new(ErrorCode::INVALID_MODULE, e.to_string()));
        }
        self.load(kind, artifact)
    }

    /// What `HELLO_ACK` advertises.
    pub(crate) fn advertised(&self) -> Vec<Backend> {
        let mut out = Vec::new();
        for c in [&self.native, &self.pulley].into_iter().flatten() {
            out.push(Backend {
                kind: c.backend(),
                target: c.target().to_string(),
                engine: format!("wasmtime {WASMTIME_VERSION}"),
                compat: c.compat(),
            });
        }
        if self.wasmi.is_some() {
            out.push(Backend {
                kind: BackendKind::Wasmi,
                target: spore_edge::TARGET.to_string(),
                engine: "wasmi 2".to_string(),
                compat: String::new(),
            });
        }
        out
    }

    fn compiled(&self, kind: BackendKind) -> Option<&Compiled> {
        match kind {
            BackendKind::Native => self.native.as_ref(),
            BackendKind::Pulley => self.pulley.as_ref(),
            BackendKind::Wasmi => None,
        }
    }

    fn has(&self, kind: BackendKind) -> bool {
        match kind {
            BackendKind::Wasmi => self.wasmi.is_some(),
            other => self.compiled(other).is_some(),
        }
    }

    /// Whether a module of `kind` compiled for `compat` can run here, before any byte of it is
    /// sent.
    pub(crate) fn accepts(&self, kind: ModuleKind, compat: &str) -> Result<(), Refusal> {
        let backend = backend_of(kind);
        if !self.has(backend) {
            let have: Vec<String> = self.advertised().iter().map(|b| format!("{:?}", b.kind)).collect();
            return Err(Refusal::new(
                ErrorCode::WRONG_ENGINE,
                format!("this runner has no {backend:?} engine; it has {}", have.join(", ")),
            ));
        }
        if let Some(c) = self.compiled(backend)
            && compat != c.compat()
        {
            return Err(Refusal::new(
                ErrorCode::WRONG_ENGINE,
                format!("the artifact was compiled for \"{compat}\"; this runner loads \"{}\"", c.compat()),
            ));
        }
        Ok(())
    }

    /// Loads (validates or deserialises) a module of `kind`.
    pub(crate) fn load(&self, kind: ModuleKind, bytes: &[u8]) -> Result<Loaded, Refusal> {
        let invalid = |e: EdgeError| Refusal::new(ErrorCode::INVALID_MODULE, e.to_string());
        match backend_of(kind) {
            BackendKind::Wasmi => match &self.wasmi {
                Some(w) => w.load(bytes).map(Loaded::Wasmi).map_err(invalid),
                None => Err(Refusal::new(ErrorCode::WRONG_ENGINE, "this runner has no wasmi engine")),
            },
            other => match self.compiled(other) {
                Some(c) => c.load(bytes).map(|m| Loaded::Compiled(other, m)).map_err(invalid),
                None => Err(Refusal::new(ErrorCode::WRONG_ENGINE, format!("this runner has no {other:?} engine"))),
            },
        }
    }

    /// Checks that `module` can be made with `limits` (its imports, its declared memory, limits
    /// its engine keeps) without making it, so an app that cannot run is refused when made.
    /// `functions` are those of the app's granted devices; `devices` all the runner has, to
    /// name the grant an import needs.
    pub(crate) fn check(
        &self,
        module: &Loaded,
        limits: &Limits,
        functions: &[Import],
        devices: &[Device],
    ) -> Result<(), Refusal> {
        let checked = match module {
            Loaded::Wasmi(m) => self.wasmi_engine().and_then(|e| e.check(m, limits, functions)),
            Loaded::Compiled(kind, m) => self.engine_of(*kind).and_then(|e| e.check(m, limits, functions)),
        };
        checked.map_err(|e| match e {
            EdgeError::Import { import } => spore_session::ungranted(&import, devices),
            EdgeError::Limit(_) => Refusal::new(ErrorCode::EXHAUSTED, e.to_string()),
            _ => Refusal::new(ErrorCode::INVALID_MODULE, e.to_string()),
        })
    }

    /// Runs `call` on a fresh instance of `module` to its end.
    pub(crate) fn run<H: Host + Send + 'static>(
        &self,
        module: &Loaded,
        wasi: Wasi<H>,
        limits: &Limits,
        interrupt: Interrupt,
        call: Call<'_>,
    ) -> Result<Ended, EdgeError> {
        match module {
            Loaded::Wasmi(m) => run_on(self.wasmi_engine()?, m, wasi, limits, interrupt, call, true),
            Loaded::Compiled(kind, m) => run_on(self.engine_of(*kind)?, m, wasi, limits, interrupt, call, false),
        }
    }

    fn wasmi_engine(&self) -> Result<&Interpreter, EdgeError> {
        self.wasmi.as_ref().ok_or_else(|| EdgeError::Invalid("this runner has no wasmi engine".into()))
    }

    /// The wasmtime engine of `kind`.
    fn engine_of(&self, kind: BackendKind) -> Result<&Compiled, EdgeError> {
        self.compiled(kind).ok_or_else(|| EdgeError::Invalid(format!("this runner has no {kind:?} engine")))
    }
}

fn run_on<E: Engine, H: Host + Send + 'static>(
    engine: &E,
    module: &E::Module,
    wasi: Wasi<H>,
    limits: &Limits,
    interrupt: Interrupt,
    call: Call<'_>,
    counts_fuel: bool,
) -> Result<Ended, EdgeError> {
    let mut instance = engine.instantiate(module, wasi, limits, interrupt)?;
    let mut step = instance.start(call, None);
    // A run's thread waits inside its host calls, so its host never parks the guest; were one
    // to, the guest would go on at once.
    while matches!(step, Step::Paused | Step::Parked { .. }) {
        step = instance.resume(None);
    }
    let Step::Ended(outcome) = step else { unreachable!("the loop ends only at an end") };
    Ok(Ended { outcome, fuel_used: counts_fuel.then(|| instance.fuel_used()), memory_bytes: instance.memory_bytes() })
}
