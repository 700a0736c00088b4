//! `spore serve APP` (one wasi:http app on every path) and `spore up` (a manifest's components
//! behind their routes): both build [`spore_serve::App`]s and hand them to the one server.

use crate::common::{SpecArgs, kv_stores};
use anyhow::{Context, bail};
use clap::Args;
use spore_engine::{EngineConfig, SporeEngine};
use spore_sandbox::launch::{self, AppKind};
use spore_sandbox::{KvStores, Mount, Output, Runnable, SandboxSpec, Sinks, StdioSpec, Wasm};
use spore_serve::door::Door;
use spore_serve::manifest::{Files, Handler};
use spore_serve::router::Router;
use spore_serve::{App, Server, ServerLimits, Target, manifest};
use spore_types::{ByteSize, HumanDuration};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Flags every served app shares: where to listen and the server's limits.
#[derive(Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    addr: String,
    /// Longest a request may take to get its response head (then 504).
    #[arg(long, default_value_t = HumanDuration(ServerLimits::default().request_timeout), value_name = "DURATION",
          value_parser = crate::flags::positive_duration)]
    request_timeout: HumanDuration,
    /// Largest request body (then 413).
    #[arg(long, default_value_t = ByteSize(ServerLimits::default().max_body), value_name = "SIZE")]
    max_body: ByteSize,
    /// Largest request header section.
    #[arg(long, default_value_t = ByteSize(ServerLimits::default().max_header_bytes as u64), value_name = "SIZE")]
    max_headers: ByteSize,
    /// Requests handled at once; more wait for a slot.
    #[arg(long, default_value_t = ServerLimits::default().concurrency, value_name = "N")]
    concurrency: usize,
    /// Longest wait for a request's headers, and between requests on a kept-alive connection
    /// (then the connection is closed).
    #[arg(long, default_value_t = HumanDuration(Door::default().header_read_timeout), value_name = "DURATION",
          value_parser = crate::flags::positive_duration)]
    header_timeout: HumanDuration,
    /// Connections open at once; more wait to be accepted.
    #[arg(long, default_value_t = Door::default().max_connections, value_name = "N")]
    max_connections: usize,
    /// Where key-value stores and SQLite databases live (Spin's runtime-config.toml); `default` is always there.
    #[arg(long, value_name = "FILE")]
    runtime_config: Option<PathBuf>,
    /// No access-log line per request.
    #[arg(long)]
    quiet: bool,
}

/// Serve a wasi:http app: a fresh sandbox per request.
#[derive(Args)]
#[command(after_help = "\
Examples:
  spore serve app.wasm
  spore serve --addr 0.0.0.0:80 --key-value default --var greeting=hi app.wasm
  spore serve --allow-outbound https://api.example.com --request-timeout 5s ghcr.io/acme/web:v2")]
pub struct ServeArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    spec: SpecArgs,
}

/// Run an app of several components from a manifest (spore.toml, or Spin's spin.toml).
#[derive(Args)]
#[command(after_help = "\
Examples:
  spore up                          # ./spore.toml, else ./spin.toml
  spore up -f apps/shop/spin.toml --var api_key=secret --runtime-config runtime-config.toml")]
pub struct UpArgs {
    /// The manifest [default: spore.toml, else spin.toml].
    #[arg(short, long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// An application variable, KEY=VALUE; repeatable.
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = crate::flags::parse_var)]
    vars: Vec<(String, String)>,
    /// When to pull components given as images.
    #[arg(long, default_value = "missing", value_name = "WHEN", value_parser = crate::store::pull_flag())]
    pull: spore_registry::PullPolicy,
    #[command(flatten)]
    server: ServerArgs,
}

fn engine(cache_dir: PathBuf, store_dir: &Path, server: &ServerArgs, max_memory: u64) -> anyhow::Result<SporeEngine> {
    let slots = u32::try_from(server.concurrency.max(1)).unwrap_or(u32::MAX);
    let config = EngineConfig::server(cache_dir, slots, max_memory).with_data_dirs(crate::paths::data_dirs(store_dir));
    Ok(SporeEngine::new(config)?)
}

/// Loads `wasm` as an HTTP app for `spec` (admitted through the one launch path), or says
/// what it is instead.
fn http_app(
    engine: &SporeEngine,
    name: &str,
    wasm: &Wasm,
    spec: &mut SandboxSpec,
    stores: &Arc<KvStores>,
) -> anyhow::Result<Arc<Runnable>> {
    let prepared = launch::prepare(engine, name, wasm, spec, stores.clone(), Some(AppKind::Http))
        .map_err(|e| crate::common::launch_failed(e, name))?;
    Ok(prepared.runnable)
}

fn limits(s: &ServerArgs) -> ServerLimits {
    ServerLimits {
        request_timeout: s.request_timeout.get(),
        max_body: s.max_body.bytes(),
        max_header_bytes: s.max_headers.bytes() as usize,
        concurrency: s.concurrency,
        door: Door { header_read_timeout: s.header_timeout.get(), max_connections: s.max_connections },
        ..ServerLimits::default()
    }
}

/// Guests' stdout and stderr go to the server's stderr.
fn stdio(spec: &mut SandboxSpec) {
    spec.stdio = StdioSpec { stdout: Output::Inherit, stderr: Output::Inherit, ..StdioSpec::default() };
}

fn run_server(router: Router<Target>, server: &ServerArgs) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&server.addr)
            .await
            .with_context(|| format!("--addr {}: cannot listen", server.addr))?;
        let addr = listener.local_addr()?;
        for (route, target) in router.routes() {
            match target {
                Target::App(app) => eprintln!("{route:<24} → {}", app.name),
                Target::Static(r) => eprintln!("{route:<24} → static response {}", r.status_code),
            }
        }
        eprintln!("Serving on http://{addr} (Ctrl-C to stop)");
        Server::new(router, limits(server), Sinks::default(), !server.quiet)
            .serve(listener, spore_serve::shutdown_signal())
            .await;
        eprintln!("Stopped");
        Ok(0)
    })
}

pub fn serve(args: ServeArgs, cache_dir: PathBuf, store_dir: &Path, insecure: &[String]) -> anyhow::Result<i32> {
    let spec_args = &args.spec;
    let mut spec = spec_args.spec(spore_sandbox::ProgramSource::Path(spec_args.file.clone()))?;
    // FILE.wasm (named by its file name), or else an image (from the local store, or pulled).
    let (name, bytes) = match spec_args.is_file() {
        true => (
            spec_args
                .file
                .file_name()
                .map_or_else(|| spec_args.file.display().to_string(), |f| f.to_string_lossy().into_owned()),
            Wasm::Bytes(spec_args.read_program()?),
        ),
        false => {
            let image = spec_args.file.to_string_lossy();
            (image.to_string(), crate::store::for_run(&image, store_dir, spec_args.pull, insecure, &mut spec)?)
        }
    };
    stdio(&mut spec);
    // Opened only for an app granted a store: the embedded one is a locked file, and a server
    // that does not use it must not take (or fail on) the lock.
    let caps = &spec.capabilities;
    let stores = match caps.key_value_stores.is_empty() && caps.sqlite_databases.is_empty() {
        true => Arc::default(),
        false => kv_stores(args.server.runtime_config.as_deref())?,
    };
    let engine = engine(cache_dir, store_dir, &args.server, spec.limits.memory_bytes.unwrap_or(256 << 20))?;
    // Admitted once (its mounts pinned): a request's instance cannot redirect the next one's.
    let runnable = http_app(&engine, &name, &bytes, &mut spec, &stores)?;
    let mut router = Router::default();
    router
        .add("/...", Target::App(Arc::new(App { name, runnable, spec, spin_headers: false })))
        .map_err(anyhow::Error::msg)?;
    run_server(router, &args.server)
}

pub fn up(args: UpArgs, cache_dir: PathBuf, store_dir: &Path, insecure: &[String]) -> anyhow::Result<i32> {
    let file = match args.file {
        Some(f) => f,
        None => ["spore.toml", "spin.toml"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .context("no spore.toml or spin.toml here; give the manifest with -f FILE")?,
    };
    let given = manifest::Given {
        flags: args.vars.into_iter().collect(),
        // Variables that are not text are skipped, not a panic.
        environment: manifest::Given::from_environment(
            std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        ),
    };
    let m = manifest::load(&file, &given).map_err(anyhow::Error::msg)?;
    for w in &m.warnings {
        eprintln!("warning: {w}");
    }
    let stores = kv_stores(args.server.runtime_config.as_deref())?;
    let engine = engine(cache_dir, store_dir, &args.server, 256 << 20)?;
    // Components whose files are copied get a root each here, gone when the server stops.
    let staging = match m.components.values().any(|c| matches!(c.files, Files::Staged(_))) {
        true => {
            Some(tempfile::Builder::new().prefix("spore-up-").tempdir().context("a directory for the app's files")?)
        }
        false => None,
    };
    let mut apps = BTreeMap::new();
    for (id, c) in &m.components {
        let mut spec = SandboxSpec::default();
        let bytes = match &c.source {
            manifest::Source::File(path) => {
                let bytes = std::fs::read(path);
                Wasm::Bytes(bytes.with_context(|| format!("[component.{id}] source {}", path.display()))?)
            }
            manifest::Source::Image(image) => crate::store::for_run(image, store_dir, args.pull, insecure, &mut spec)?,
        };
        spec.argv0 = Some(id.clone());
        spec.env.extend(c.environment.clone());
        let mount = |host: &Path, guest: &str| Mount {
            host: host.to_owned(),
            guest: guest.to_owned(),
            read_only: true,
            pin: None,
        };
        match &c.files {
            Files::Mounts(mounts) => spec.mounts.extend(mounts.iter().map(|(host, guest)| mount(host, guest))),
            Files::Staged(files) => {
                let root = staging.as_ref().expect("made for staged files").path().join(id);
                stage(&root, files).with_context(|| format!("[component.{id}] files"))?;
                spec.mounts.push(mount(&root, "/"));
            }
        }
        spec.capabilities.allowed_outbound_hosts = c.allowed_outbound_hosts.clone();
        spec.capabilities.key_value_stores = c.key_value_stores.clone();
        spec.capabilities.sqlite_databases = c.sqlite_databases.clone();
        spec.capabilities.variables = c.variables.clone();
        for store in &c.key_value_stores {
            if !stores.has(store) {
                bail!(
                    "[component.{id}] key_value_stores names {store:?}, which is not configured; add [key_value_store.{store}] to a runtime config (--runtime-config)"
                );
            }
        }
        for db in &c.sqlite_databases {
            if !stores.has_database(db) {
                bail!(
                    "[component.{id}] sqlite_databases names {db:?}, which is not configured; add [sqlite_database.{db}] to a runtime config (--runtime-config)"
                );
            }
        }
        stdio(&mut spec);
        let runnable =
            http_app(&engine, id, &bytes, &mut spec, &stores).with_context(|| format!("[component.{id}]"))?;
        apps.insert(id.clone(), Arc::new(App { name: id.clone(), runnable, spec, spin_headers: true }));
    }
    let mut router = Router::default();
    for (route, handler) in &m.routes {
        let target = match handler {
            Handler::Component(id) => Target::App(apps[id].clone()),
            Handler::Static(response) => Target::Static(Arc::new(response.clone())),
        };
        router.add(route, target).map_err(anyhow::Error::msg)?;
    }
    eprintln!("{}: {} component(s)", m.name, apps.len());
    run_server(router, &args.server)
}

/// Copies `files` (host file → guest path) under `root`, as the guest will see them.
fn stage(root: &Path, files: &[(PathBuf, String)]) -> anyhow::Result<()> {
    for (host, guest) in files {
        let to = root.join(guest.trim_start_matches('/'));
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("{}", parent.display()))?;
        }
        std::fs::copy(host, &to).with_context(|| format!("copying {} to {guest}", host.display()))?;
    }
    std::fs::create_dir_all(root)?;
    Ok(())
}
