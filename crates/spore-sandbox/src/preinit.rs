//! Pre-initialisation (Wizer): run a module's init export once, at build time, in a sandbox
//! of its own, and keep the memory and globals it leaves as the module's initial state — so
//! every start of the result begins where the init ended, without paying for it.
//!
//! The init runs as any guest does: under the spec's limits (CPU, wall time, memory, open
//! files), with the spec's mounts (a build gives it the image's files, read-only) and nothing
//! else — no network, no capability. What a snapshot cannot keep is refused or documented
//! (docs/sporefile.md): memory and globals are kept; open files are host state, not memory,
//! and an init that touches a socket is stopped. The init sees randomness seeded by the wasm's
//! digest and a wall clock stopped at the UNIX epoch, so what it reads is the same every build
//! (reproducible images) and no build host's entropy or time is baked into every start. An
//! init that exits (`proc_exit`), traps, uses a socket or reaches a limit fails the build with
//! how it ended.
//!
//! Core modules only: wasmtime-wizer 48 snapshots components whose every core instance it can
//! rewrite, which a component made from a WASI command (its adapter imports memory) is not.

use crate::limits::Metered;
use crate::state::SandboxState;
use crate::{Runnable, SandboxError, SandboxSpec, Sinks};
use spore_engine::ProgramCode;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::ExternType;

/// The export Wizer runs unless told otherwise.
pub const DEFAULT_INIT_EXPORT: &str = "wizer.initialize";

impl Runnable {
    /// `wasm` (the bytes this was compiled from) with `export` run and its resulting state
    /// kept: a module whose start begins after the init. Deterministic for the same inputs
    /// when the init is (it reads no clock or randomness).
    pub async fn preinit(&self, wasm: &[u8], spec: &SandboxSpec, export: &str) -> Result<Vec<u8>, SandboxError> {
        let ProgramCode::Module(module) = &self.program.code else {
            return Err(SandboxError::Unsupported(format!(
                "{} is a component; pre-initialisation takes core modules (wasm32-wasip1) only",
                self.name
            )));
        };
        let fits = module.exports().any(|e| {
            e.name() == export
                && matches!(e.ty(), ExternType::Func(f) if f.params().len() == 0 && f.results().len() == 0)
        });
        if !fits {
            return Err(SandboxError::NoInitExport {
                program: self.name.clone(),
                export: export.to_owned(),
                exports: self.exported_functions(),
            });
        }
        spec.validate()?;
        let meter = Arc::<crate::Meter>::default();
        let seed = *spore_types::Digest::of(wasm).as_bytes();
        let (mut store, _captured) =
            self.store(spec, &Sinks::default(), meter.clone(), crate::state::Moment::Frozen(seed)).await?;
        let mut linker = wasmtime::Linker::new(self.engine.wasmtime());
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut SandboxState| &mut s.wasi)
            .map_err(|e| SandboxError::Link { program: self.name.clone(), message: format!("{e:#}") })?;
        refuse_sockets(&mut linker)
            .map_err(|e| SandboxError::Link { program: self.name.clone(), message: format!("{e:#}") })?;
        let mut wizer = wasmtime_wizer::Wizer::new();
        wizer.init_func(export);
        let run = async {
            let (cx, instrumented) = wizer.instrument(wasm)?;
            let module = wasmtime::Module::new(self.engine.wasmtime(), &instrumented)?;
            let instance = linker.instantiate_async(&mut store, &module).await?;
            let stack = dead_stack(wasm, &mut store, &instance);
            store.data().cpu.mark_entered();
            // A reactor's own initialisation first, as Wizer does (and as a start would).
            if let Some(reactor) = instance.get_typed_func::<(), ()>(&mut store, "_initialize").ok()
                && export != "_initialize"
            {
                reactor.call_async(&mut store, ()).await?;
            }
            instance.get_typed_func::<(), ()>(&mut store, export)?.call_async(&mut store, ()).await?;
            let below = stack.filter(|&top| stack_pointer(&mut store, &instance) == Some(top));
            let mut state = Scrubbed { inner: wasmtime_wizer::WasmtimeWizer { store: &mut store, instance }, below };
            wizer.snapshot(&cx, &mut state).await
        };
        let ran = Metered::new(run, meter);
        let result = match spec.limits.timeout_ms {
            None => ran.await,
            Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), ran).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(self.init_failed(
                        export,
                        format!(
                            "wall-clock timeout of {} reached; the init was stopped",
                            humantime::format_duration(Duration::from_millis(ms))
                        ),
                    ));
                }
            },
        };
        result.map_err(|err| {
            if let Some(SocketAtInit(call)) = err.downcast_ref::<SocketAtInit>() {
                return self.init_failed(
                    export,
                    format!(
                        "it used a socket (`{call}`); a connection is host state a snapshot cannot keep — accept or connect in `main`"
                    ),
                );
            }
            let status = crate::outcome::status_of(Err(err), &store);
            self.init_failed(export, format!("it must return; {status}"))
        })
    }

    fn init_failed(&self, export: &str, problem: String) -> SandboxError {
        SandboxError::Init { program: self.name.clone(), export: export.to_owned(), problem }
    }
}

/// Why an init was stopped: it called a WASI socket function. Its connection (or the listener
/// it accepts from) would live in the build's host, not in the snapshot's memory, so every
/// start would hold a socket number that means nothing — and a build has no network anyway.
#[derive(Debug)]
struct SocketAtInit(&'static str);

impl std::fmt::Display for SocketAtInit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the init called `{}`", self.0)
    }
}

impl std::error::Error for SocketAtInit {}

/// Puts in place of WASI preview 1's socket functions (the only network it has: sockets handed
/// in as descriptors) ones that stop the init with [`SocketAtInit`], rather than answering with
/// an errno the init may ignore and so ship a snapshot that expects a socket.
fn refuse_sockets(linker: &mut wasmtime::Linker<SandboxState>) -> wasmtime::Result<()> {
    const WASI: &str = "wasi_snapshot_preview1";
    linker.allow_shadowing(true);
    linker.func_wrap(WASI, "sock_accept", |_: i32, _: i32, _: i32| -> wasmtime::Result<i32> {
        Err(SocketAtInit("sock_accept").into())
    })?;
    linker.func_wrap(WASI, "sock_recv", |_: i32, _: i32, _: i32, _: i32, _: i32, _: i32| -> wasmtime::Result<i32> {
        Err(SocketAtInit("sock_recv").into())
    })?;
    linker.func_wrap(WASI, "sock_send", |_: i32, _: i32, _: i32, _: i32, _: i32| -> wasmtime::Result<i32> {
        Err(SocketAtInit("sock_send").into())
    })?;
    linker.func_wrap(WASI, "sock_shutdown", |_: i32, _: i32| -> wasmtime::Result<i32> {
        Err(SocketAtInit("sock_shutdown").into())
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The name the linker gives the stack pointer (global 0 of LLVM's wasm).
const STACK_POINTER: &str = "__stack_pointer";

/// The stack pointer's value, when global 0 is it (Wizer exports the defined mutable globals).
fn stack_pointer(store: &mut wasmtime::Store<SandboxState>, instance: &wasmtime::Instance) -> Option<u32> {
    match instance.get_global(&mut *store, "__wizer_global_0")?.get(&mut *store) {
        wasmtime::Val::I32(sp) => Some(sp as u32),
        _ => None,
    }
}

/// Where the stack is below its pointer in a stack-first layout (Rust's for wasm: the stack at
/// the bottom of memory, data above it), which an init leaves full of dead frames — holding
/// whatever it read (a file's inode and times) and so making every build's snapshot differ.
/// Known only when the name section calls global 0 the stack pointer and memory below it is
/// all zeros when the module starts (nothing but stack can be there); otherwise `None`, and
/// nothing is scrubbed.
fn dead_stack(wasm: &[u8], store: &mut wasmtime::Store<SandboxState>, instance: &wasmtime::Instance) -> Option<u32> {
    if global_zero_name(wasm).as_deref() != Some(STACK_POINTER) {
        return None;
    }
    let top = stack_pointer(store, instance)?;
    let memory = instance.get_memory(&mut *store, "__wizer_memory_0")?;
    let below = memory.data(&*store).get(..top as usize)?;
    below.iter().all(|&b| b == 0).then_some(top)
}

/// Global 0's name in the module's name section.
fn global_zero_name(wasm: &[u8]) -> Option<String> {
    use wasmparser::{KnownCustom, Name, Payload};
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        let Ok(Payload::CustomSection(section)) = payload else { continue };
        let KnownCustom::Name(names) = section.as_known() else { continue };
        for name in names.into_iter().flatten() {
            if let Name::Global(map) = name {
                return map.into_iter().flatten().find(|n| n.index == 0).map(|n| n.name.to_owned());
            }
        }
    }
    None
}

/// The instance's state as Wizer reads it for the snapshot, with the dead stack (memory 0
/// below `below`) read as the zeros it was at start.
struct Scrubbed<'a> {
    inner: wasmtime_wizer::WasmtimeWizer<'a, SandboxState>,
    below: Option<u32>,
}

impl wasmtime_wizer::InstanceState for Scrubbed<'_> {
    async fn global_get(&mut self, name: &str, type_hint: wasmtime_wizer::ValType) -> wasmtime_wizer::SnapshotVal {
        self.inner.global_get(name, type_hint).await
    }

    async fn memory_contents(&mut self, name: &str, contents: impl FnOnce(&[u8]) + Send) {
        match self.below.filter(|_| name == "__wizer_memory_0") {
            None => self.inner.memory_contents(name, contents).await,
            Some(top) => {
                self.inner
                    .memory_contents(name, |bytes| {
                        let mut scrubbed = bytes.to_vec();
                        let end = (top as usize).min(scrubbed.len());
                        scrubbed[..end].fill(0);
                        contents(&scrubbed);
                    })
                    .await;
            }
        }
    }
}
