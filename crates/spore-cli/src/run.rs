//! `spore run`: one sandbox, in this process, with the terminal as its stdio.

use crate::common::{SpecArgs, flag, launch_failed, with_fix};
use crate::edge::EngineChoice;
use anyhow::Context;
use clap::Args;
use spore_engine::{CodeKind, EngineConfig, SporeEngine};
use spore_sandbox::launch::{self, AppKind};
use spore_sandbox::{ExitStatus, Input, Output, OutputSink, ProgramSource, Sinks, StdioSpec, Wasm};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Run a wasm module or component as a sandbox.
///
/// Nothing of the host is visible unless granted: no files without --dir, no environment
/// without --env, no sockets without --net.
#[derive(Args)]
#[command(after_help = "\
Examples:
  spore run hello.wasm
  spore run -e GREETING=hi --env-file app.env app.wasm --verbose
  spore run --dir ./site:/www:ro --dir /tmp/out:/out app.wasm
  spore run --memory 64M --cpu-time 2s --timeout 5s app.wasm
  spore run --net allow=db.internal:5432,10.0.0.0/8 client.wasm
  spore run --invoke fib lib.wasm 20")]
pub struct RunArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// The engine: native code, or pulley (wasmtime's bytecode interpreter: no executable
    /// memory, much slower on compute); at an edge runner also wasmi [default: native; at a
    /// runner, the first it has of native, pulley, wasmi].
    #[arg(long, value_enum, value_name = "ENGINE")]
    engine: Option<EngineChoice>,
}

impl RunArgs {
    /// The sandbox flags, and the engine asked for at a runner.
    pub fn for_runner(&self) -> (&SpecArgs, Option<EngineChoice>) {
        (&self.spec, self.engine)
    }
}

pub fn run(args: RunArgs, cache_dir: PathBuf, store_dir: &std::path::Path, insecure: &[String]) -> anyhow::Result<i32> {
    let code = match args.engine {
        None | Some(EngineChoice::Native) => CodeKind::Native,
        Some(EngineChoice::Pulley) => CodeKind::Pulley,
        Some(EngineChoice::Wasmi) => {
            anyhow::bail!(
                "--engine wasmi is an edge runner's (with --host runner+…:// or serial://); here: native or pulley"
            )
        }
    };
    let args = args.spec;
    let mut spec = args.spec(ProgramSource::Path(args.file.clone()))?;
    // FILE.wasm, or else an image (from the local store, or pulled).
    let bytes = match args.is_file() {
        true => Wasm::Bytes(args.read_program()?),
        false => crate::store::for_run(&args.file.to_string_lossy(), store_dir, args.pull, insecure, &mut spec)?,
    };
    spec.stdio = StdioSpec { stdin: Input::Inherit, stdout: Output::Inherit, stderr: Output::Inherit };
    let name = args.file.display().to_string();
    let timed = spec.limits.cpu_time_ms.is_some() || spec.limits.timeout_ms.is_some();
    let engine = SporeEngine::new(
        EngineConfig::one_shot(Some(cache_dir), timed)
            .with_code(code)
            .with_data_dirs(crate::paths::data_dirs(store_dir)),
    )?;
    // Stores are opened only for a sandbox granted one (it costs a file open).
    let caps = &spec.capabilities;
    let kv = match caps.key_value_stores.is_empty() && caps.sqlite_databases.is_empty() {
        true => Arc::default(),
        false => crate::common::kv_stores(None)?,
    };
    let prepared = launch::prepare(&engine, &name, &bytes, &mut spec, kv, Some(AppKind::Command))
        .map_err(|e| launch_failed(e, &name))?;
    let runnable = prepared.runnable;
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    // The terminal's streams, written synchronously from the guest's own thread: one guest in
    // the foreground has nobody to wait for, and this spares a writer thread per stream.
    let sinks = Sinks { stdout: Some(Arc::new(Terminal::Stdout)), stderr: Some(Arc::new(Terminal::Stderr)) };
    let report = runtime.block_on(runnable.run_with(&spec, &sinks, &Arc::default())).map_err(|e| with_fix(e, &name))?;
    for value in &report.results {
        println!("{value}");
    }
    match &report.status {
        ExitStatus::Exited { .. } => {}
        ExitStatus::LimitExceeded { limit, .. } => {
            eprintln!("spore: {name}: {}; raise {}", report.status, flag(*limit));
        }
        other => eprintln!("spore: {name}: {other}"),
    }
    // Everything the guest wrote is written (the sinks are synchronous). Exit now rather than
    // unwinding the runtime, engine, module and code mappings one by one: the kernel frees them
    // at once, and a one-shot run saves a good part of its remaining time.
    std::process::exit(report.status.code() & 0xff)
}

/// The process's own stdout or stderr as a guest output sink, unbuffered like a WASI stream.
enum Terminal {
    Stdout,
    Stderr,
}

impl OutputSink for Terminal {
    fn write(&self, bytes: &[u8]) {
        // A closed pipe (`spore run app.wasm | head -1`) is not the guest's problem: the bytes
        // go nowhere, as they would with a closed terminal.
        let _ = match self {
            Terminal::Stdout => {
                std::io::stdout().lock().write_all(bytes).and_then(|()| std::io::stdout().lock().flush())
            }
            Terminal::Stderr => std::io::stderr().lock().write_all(bytes),
        };
    }
}
