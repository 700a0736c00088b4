//! An engine this build of the runner does not have (built without its feature): it can never
//! be made, so every path through it is unreachable, and the code that picks engines reads the
//! same whichever engines a build has.

use spore_edge::{BackendKind, Call, EdgeError, Engine, Host, Import, Instance, Interrupt, Limits, Step, Wasi};

/// No engine: no value of this type exists.
#[derive(Clone)]
pub(crate) enum Absent {}

/// What a build without wasmtime advertises as its version (never, as it has no such engine).
#[cfg(not(feature = "wasmtime"))]
pub(crate) const WASMTIME_VERSION: &str = "";

impl Absent {
    /// Refuses, naming the feature the runner was built without.
    pub(crate) fn new(kind: BackendKind) -> Result<Absent, EdgeError> {
        Err(EdgeError::Invalid(format!("this spore-runner was built without the {kind:?} engine")))
    }

    #[cfg(not(feature = "wasmtime"))]
    pub(crate) fn target(&self) -> &'static str {
        match *self {}
    }

    #[cfg(not(feature = "wasmtime"))]
    pub(crate) fn compat(&self) -> String {
        match *self {}
    }
}

impl Engine for Absent {
    type Module = Absent;
    type Instance<H: Host + Send + 'static> = Absent;

    fn backend(&self) -> BackendKind {
        match *self {}
    }

    fn load(&self, _: &[u8]) -> Result<Absent, EdgeError> {
        match *self {}
    }

    fn check(&self, _: &Absent, _: &Limits, _: &[Import]) -> Result<(), EdgeError> {
        match *self {}
    }

    fn instantiate<H: Host + Send + 'static>(
        &self,
        _: &Absent,
        _: Wasi<H>,
        _: &Limits,
        _: Interrupt,
    ) -> Result<Absent, EdgeError> {
        match *self {}
    }
}

impl Instance for Absent {
    fn start(&mut self, _: Call<'_>, _: Option<u64>) -> Step {
        match *self {}
    }

    fn resume(&mut self, _: Option<u64>) -> Step {
        match *self {}
    }

    fn fuel_used(&self) -> u64 {
        match *self {}
    }

    fn memory_bytes(&self) -> u64 {
        match *self {}
    }
}
