//! `spore` as the agent of an edge runner (`--host runner+unix://…`, `runner+tcp://…`,
//! `serial://…`): the same commands as for the daemon, carried out over the runner's protocol.
//! The agent compiles for the engine the runner advertises (it never compiles on the device),
//! keeps the artifact in its compile cache, and uploads only what the runner lacks.

use crate::common::SpecArgs;
use crate::deploy::DeployArgs;
use crate::logs::LogsArgs;
use crate::run::RunArgs;
use crate::sandboxes::{NamesArgs, PsArgs, RmArgs, StatsArgs, StopArgs};
use anyhow::{Context, bail};
use spore_edge::compiled::compiles_for;
use spore_runner::client::{Client, ClientError};
use spore_runner::link::Address;
use spore_wire::{
    Backend, BackendKind, DropTarget, Exit, InstanceInfo, InstanceState, Instantiate, Limits, ModuleKind, Outcome,
    StreamKind,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The engine an app runs on at a runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineChoice {
    /// Native code compiled by the agent for the runner's target.
    Native,
    /// Pulley bytecode: no executable memory on the runner.
    Pulley,
    /// wasmi: plain wasm interpreted, deterministic fuel.
    Wasmi,
}

impl EngineChoice {
    fn kind(self) -> BackendKind {
        match self {
            EngineChoice::Native => BackendKind::Native,
            EngineChoice::Pulley => BackendKind::Pulley,
            EngineChoice::Wasmi => BackendKind::Wasmi,
        }
    }
}

/// What the agent does at a runner.
pub enum Request {
    /// `spore run`
    Run(RunArgs),
    /// `spore deploy`
    Deploy(DeployArgs),
    /// `spore ps`
    Ps(PsArgs),
    /// `spore logs`
    Logs(LogsArgs),
    /// `spore stop`
    Stop(StopArgs),
    /// `spore kill`
    Kill(NamesArgs),
    /// `spore rm`
    Rm(RmArgs),
    /// `spore stats`
    Stats(StatsArgs),
}

/// Carries out `request` at the runner at `address`.
pub fn command(
    request: Request,
    address: &Address,
    token: Option<&str>,
    cache_dir: &Path,
    json: bool,
) -> anyhow::Result<i32> {
    let agent = format!("spore {}", env!("CARGO_PKG_VERSION"));
    let mut client = Client::connect(address, &agent, token.unwrap_or("")).map_err(anyhow::Error::msg)?;
    let daemons = |flag: &str| anyhow::anyhow!("{flag} is the daemon's; a runner does not have it");
    match request {
        Request::Run(args) => {
            let (spec, engine) = args.for_runner();
            run(&mut client, spec, engine, cache_dir)
        }
        Request::Deploy(args) => {
            let (spec, name) = args.for_runner().map_err(daemons)?;
            deploy(&mut client, spec, name, cache_dir, json)
        }
        Request::Ps(args) => {
            let (all, quiet) = args.for_runner().map_err(daemons)?;
            ps(&mut client, all, quiet, &[], json)
        }
        Request::Stats(args) => ps(&mut client, true, false, args.names(), json),
        Request::Logs(args) => {
            let (name, tail, raw) = args.for_runner().map_err(daemons)?;
            logs(&mut client, name, tail, raw)
        }
        Request::Stop(args) => each(&mut client, args.names(), |c, app| c.kill(app.id)),
        Request::Kill(args) => each(&mut client, args.names(), |c, app| c.kill(app.id)),
        Request::Rm(args) => {
            let (names, force) = args.for_runner();
            each(&mut client, names, |c, app| {
                if app.state == InstanceState::Running && !force {
                    return Err(ClientError::Protocol(format!(
                        "{} is running: stop it first, or rm --force",
                        app.name
                    )));
                }
                c.remove(DropTarget::Instance(app.id))
            })
        }
    }
}

/// The module for the chosen (or best) engine the runner has: the wasm itself, or an artifact
/// compiled for it — from the compile cache when it was compiled for that engine before.
fn module_for(
    client: &Client,
    spec: &SpecArgs,
    engine: Option<EngineChoice>,
    cache_dir: &Path,
) -> anyhow::Result<(Vec<u8>, ModuleKind, String)> {
    if !spec.is_file() {
        bail!("{}: a runner takes a wasm file; images are for the daemon", spec.file.display());
    }
    let backends = &client.ack.backends;
    let chosen: &Backend = match engine {
        Some(choice) => backends.iter().find(|b| b.kind == choice.kind()).with_context(|| {
            let have: Vec<String> = backends.iter().map(|b| format!("{:?}", b.kind).to_lowercase()).collect();
            format!(
                "--engine {}: the runner has no such engine; it has {}",
                format!("{choice:?}").to_lowercase(),
                have.join(", ")
            )
        })?,
        // Native code where this spore's Cranelift targets the runner's machine (aarch64,
        // riscv64, x86_64), else Pulley (any runner of the release loads it), else wasmi.
        None => [BackendKind::Native, BackendKind::Pulley, BackendKind::Wasmi]
            .iter()
            .find_map(|k| {
                backends.iter().find(|b| b.kind == *k && (b.kind != BackendKind::Native || compiles_for(&b.target)))
            })
            .context("the runner advertises no engine")?,
    };
    if chosen.kind == BackendKind::Native && !compiles_for(&chosen.target) {
        bail!(
            "--engine native: this spore cannot compile for the runner's {}; use --engine pulley or --engine wasmi",
            chosen.target
        );
    }
    let wasm = spec.read_program()?;
    match chosen.kind {
        BackendKind::Wasmi => Ok((wasm, ModuleKind::Wasm, String::new())),
        kind => {
            let artifact = compiled(&wasm, chosen, cache_dir)?;
            let module_kind = if kind == BackendKind::Native { ModuleKind::Native } else { ModuleKind::Pulley };
            Ok((artifact, module_kind, chosen.compat.clone()))
        }
    }
}

/// An artifact of `wasm` for `backend`, cached by the module's digest and the engine's compat.
fn compiled(wasm: &[u8], backend: &Backend, cache_dir: &Path) -> anyhow::Result<Vec<u8>> {
    use sha2::{Digest, Sha256};
    let ours = spore_edge::compiled::compat(backend.kind, &backend.target);
    if ours != backend.compat {
        bail!(
            "the runner loads artifacts of \"{}\"; this spore compiles \"{ours}\": use a spore and a runner of one release, or --engine wasmi",
            backend.compat
        );
    }
    let mut key = Sha256::new();
    key.update(wasm);
    key.update(backend.compat.as_bytes());
    let path: PathBuf = cache_dir.join("edge").join(format!("{}.cwasm", hex::encode(key.finalize())));
    if let Ok(bytes) = std::fs::read(&path) {
        return Ok(bytes);
    }
    let artifact = spore_edge::compiled::precompile(backend.kind, &backend.target, wasm)
        .map_err(|e| anyhow::anyhow!("compiling for the runner ({}): {e}", backend.target))?;
    // The cache is a convenience: a failure to keep the artifact costs a compile next time.
    if let Some(dir) = path.parent()
        && std::fs::create_dir_all(dir).is_ok()
    {
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, &artifact).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
    Ok(artifact)
}

/// The instance the flags describe; a flag a runner cannot honour is refused by name.
fn instantiate_spec(
    spec: &SpecArgs,
    module: [u8; 32],
    name: String,
    boot: bool,
) -> anyhow::Result<(Instantiate, Option<spore_sandbox::Invoke>)> {
    let s = spec.spec(spore_sandbox::ProgramSource::Path(spec.file.clone()))?;
    let refused = [
        (!s.mounts.is_empty(), "--dir"),
        (s.network != Default::default(), "--net"),
        (!s.capabilities.allowed_outbound_hosts.is_empty(), "--allow-outbound"),
        (!s.capabilities.key_value_stores.is_empty(), "--key-value"),
        (!s.capabilities.variables.is_empty(), "--var"),
        (s.limits.max_open_files.is_some(), "--max-open-files"),
    ];
    if let Some((_, flag)) = refused.iter().find(|(given, _)| *given) {
        bail!("{flag} is for the daemon and local runs; a runner gives apps WASI stdio, args, env, clocks and random");
    }
    let argv0 = s.argv0.clone().unwrap_or_default();
    let args = std::iter::once(argv0).chain(s.args.iter().cloned()).collect();
    let limits = Limits {
        memory_bytes: s.limits.memory_bytes,
        cpu_ms: s.limits.cpu_time_ms,
        wall_ms: s.limits.timeout_ms,
        fuel: None,
    };
    let env = s.env.into_iter().collect();
    let devices = s.capabilities.devices;
    Ok((Instantiate { module, name, args, env, limits, boot, devices }, s.invoke))
}

/// Set by Ctrl-C while a run streams: the run is killed and its exit still reported.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Release);
}

fn run(client: &mut Client, spec: &SpecArgs, engine: Option<EngineChoice>, cache_dir: &Path) -> anyhow::Result<i32> {
    // From the start: a Ctrl-C while compiling or uploading stops there (what was sent stays at
    // the runner, and the next upload resumes it); once running, it kills the run.
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, on_interrupt as *const () as libc::sighandler_t) };
    let interrupted = || INTERRUPTED.load(Ordering::Acquire);
    let (bytes, kind, compat) = module_for(client, spec, engine, cache_dir)?;
    if interrupted() {
        bail!("interrupted before the upload");
    }
    let digest = client.upload(&bytes, kind, &compat, |_, _| !interrupted()).map_err(anyhow::Error::msg)?;
    let name = format!("run-{}-{}", &hex::encode(digest)[..12], std::process::id());
    let (instance, invoke) = instantiate_spec(spec, digest, name, false)?;
    let invoke = match invoke {
        Some(i) => Some((i.export.clone(), invoke_args(&spec.read_program()?, &i.export, &i.args)?)),
        None => None,
    };
    let id = client.instantiate(instance).map_err(anyhow::Error::msg)?;
    let print = |o: &spore_wire::Output| {
        let _ = match o.stream {
            StreamKind::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&o.bytes).and_then(|()| out.flush())
            }
            _ => std::io::stderr().lock().write_all(&o.bytes),
        };
    };
    let exit = match invoke {
        Some((export, args)) => client.invoke(id, &export, args, &INTERRUPTED, print),
        None => client.run(id, &INTERRUPTED, print),
    };
    // A run's app is the run's own: gone with it, however the run went.
    let _ = client.remove(DropTarget::Instance(id));
    Ok(exit_status(&exit.map_err(anyhow::Error::msg)?))
}

/// `--invoke` arguments read as the export's parameter types, as `spore run` reads them.
fn invoke_args(wasm: &[u8], export: &str, args: &[String]) -> anyhow::Result<Vec<spore_wire::Value>> {
    let engine = wasmtime::Engine::default();
    let module = wasmtime::Module::new(&engine, wasm)?;
    let Some(wasmtime::ExternType::Func(ty)) = module.get_export(export) else {
        bail!("--invoke {export}: the module exports no function of that name");
    };
    let values = spore_sandbox::invoke_args::parse_params(export, ty.params(), args)?;
    values
        .into_iter()
        .map(|v| match v {
            wasmtime::Val::I32(x) => Ok(spore_wire::Value::I32(x)),
            wasmtime::Val::I64(x) => Ok(spore_wire::Value::I64(x)),
            wasmtime::Val::F32(x) => Ok(spore_wire::Value::F32(x)),
            wasmtime::Val::F64(x) => Ok(spore_wire::Value::F64(x)),
            _ => bail!("--invoke {export}: a runner takes i32, i64, f32 and f64 parameters"),
        })
        .collect()
}

/// The process exit code for a run's end, as `spore run` has them; says why on stderr.
fn exit_status(exit: &Exit) -> i32 {
    if let Outcome::Returned(values) = &exit.outcome {
        let shown: Vec<String> = values.iter().map(show_value).collect();
        println!("{}", shown.join(" "));
    }
    let (code, why) = spore_runner::ending::exit_code(&exit.outcome, "--");
    if let Some(why) = why {
        eprintln!("spore: {why}");
    }
    code
}

fn show_value(v: &spore_wire::Value) -> String {
    match *v {
        spore_wire::Value::I32(x) => x.to_string(),
        spore_wire::Value::I64(x) => x.to_string(),
        spore_wire::Value::F32(bits) => f32::from_bits(bits).to_string(),
        spore_wire::Value::F64(bits) => f64::from_bits(bits).to_string(),
    }
}

fn deploy(
    client: &mut Client,
    spec: &SpecArgs,
    name: Option<&str>,
    cache_dir: &Path,
    json: bool,
) -> anyhow::Result<i32> {
    let name = match name {
        Some(n) => n.to_string(),
        None => spec.file.file_stem().map(|s| s.to_string_lossy().into_owned()).context("give the app a --name")?,
    };
    let (bytes, kind, compat) = module_for(client, spec, None, cache_dir)?;
    let digest = client.upload(&bytes, kind, &compat, |_, _| true).map_err(anyhow::Error::msg)?;
    let (instance, invoke) = instantiate_spec(spec, digest, name.clone(), true)?;
    if invoke.is_some() {
        bail!("--invoke is for `spore run`; a deployed app runs its command");
    }
    let id = client.instantiate(instance).map_err(anyhow::Error::msg)?;
    // Started and left: the runner keeps its output for `spore logs`.
    client.start(id).map_err(anyhow::Error::msg)?;
    match json {
        true => println!("{}", serde_json::json!({ "name": name, "id": id, "digest": hex::encode(digest) })),
        false => println!("{name}"),
    }
    Ok(0)
}

fn state(s: &InstanceState) -> String {
    match s {
        InstanceState::Created => "created".into(),
        InstanceState::Running => "running".into(),
        InstanceState::Ended(Outcome::Exited(c)) => format!("exited ({c})"),
        InstanceState::Ended(Outcome::Returned(_)) => "returned".into(),
        InstanceState::Ended(Outcome::Trapped(_)) => "trapped".into(),
        InstanceState::Ended(Outcome::Limit { limit, .. }) => format!("limit ({limit:?})").to_lowercase(),
        InstanceState::Ended(Outcome::Killed) => "killed".into(),
    }
}

fn ps(client: &mut Client, all: bool, quiet: bool, names: &[String], json: bool) -> anyhow::Result<i32> {
    let stats = client.stats().map_err(anyhow::Error::msg)?;
    let shown: Vec<&InstanceInfo> = stats
        .instances
        .iter()
        .filter(|i| all || i.state == InstanceState::Running)
        .filter(|i| names.is_empty() || names.iter().any(|n| *n == i.name || *n == i.id.to_string()))
        .collect();
    if json {
        let rows: Vec<_> = shown
            .iter()
            .map(|i| {
                serde_json::json!({
                    "id": i.id, "name": i.name, "state": state(&i.state), "memory_bytes": i.memory_bytes,
                    "cpu_us": i.cpu_us, "boot": i.boot, "module": hex::encode(i.module),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(0);
    }
    if quiet {
        for i in shown {
            println!("{}", i.id);
        }
        return Ok(0);
    }
    println!("{:<6} {:<24} {:<16} {:>10} {:>10} {:<5} MODULE", "ID", "NAME", "STATE", "MEMORY", "CPU", "BOOT");
    for i in shown {
        println!(
            "{:<6} {:<24} {:<16} {:>10} {:>10} {:<5} {}",
            i.id,
            i.name,
            state(&i.state),
            spore_types::ByteSize(i.memory_bytes).to_string(),
            format!("{:.3}s", i.cpu_us as f64 / 1e6),
            if i.boot { "yes" } else { "no" },
            &hex::encode(i.module)[..12],
        );
    }
    Ok(0)
}

fn find<'a>(instances: &'a [InstanceInfo], name: &str) -> anyhow::Result<&'a InstanceInfo> {
    instances
        .iter()
        .find(|i| i.name == name || i.id.to_string() == name)
        .with_context(|| format!("no app {name:?} on this runner; `spore ps -a` lists them"))
}

fn logs(client: &mut Client, name: &str, tail: Option<usize>, raw: bool) -> anyhow::Result<i32> {
    let stats = client.stats().map_err(anyhow::Error::msg)?;
    let app = find(&stats.instances, name)?;
    let outputs = client.logs(app.id, u32::MAX).map_err(anyhow::Error::msg)?;
    let text: Vec<u8> =
        outputs.iter().filter(|o| o.stream != StreamKind::Log).flat_map(|o| o.bytes.iter().copied()).collect();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    let from = tail.map_or(0, |n| lines.len().saturating_sub(n));
    for line in &lines[from..] {
        match raw {
            true => println!("{line}"),
            false => println!("{}", spore_types::escape_controls(line)),
        }
    }
    Ok(0)
}

/// Does `what` to each named app; one line per failure, exit 1 if any failed.
fn each(
    client: &mut Client,
    names: &[String],
    mut what: impl FnMut(&mut Client, &InstanceInfo) -> Result<(), ClientError>,
) -> anyhow::Result<i32> {
    let stats = client.stats().map_err(anyhow::Error::msg)?;
    let mut failed = false;
    for name in names {
        let done = find(&stats.instances, name).and_then(|app| what(client, app).map_err(anyhow::Error::msg));
        match done {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("spore: {name}: {e:#}");
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}
