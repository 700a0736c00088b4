//! `spore`: WebAssembly containers. This file is the edge of the program — argument parsing,
//! logging, and the mapping from outcomes to exit codes; each command lives in its own module.

mod bundle;
mod client;
mod common;
mod compile;
mod daemon;
mod deploy;
mod edge;
mod flags;
mod images;
mod logs;
mod paths;
mod preinit;
mod programs;
mod registry;
mod run;
mod sandboxes;
mod serve;
mod store;

use clap::{Parser, Subcommand};
use spore_sandbox::exit_code;
use std::path::PathBuf;
use std::process::ExitCode;

const EXAMPLES: &str = "\
Examples:
  spore run hello.wasm                       run a WASI command (module or component)
  spore serve app.wasm                       serve a wasi:http app, a fresh sandbox per request
  spore up                                   run spore.toml / spin.toml: components behind routes
  spore daemon                               keep sandboxes alive, behind a local API
  spore deploy --name ticker refdaemon.wasm  deploy to the daemon (--host for a remote one)
  spore ps -a; spore logs -f ticker          watch it
  spore build -t hello .; spore run hello    build an image from a Sporefile, run it
  spore load -i hello.tar; spore run hello   run an image from an OCI layout
  spore run --dir ./data:/data:ro app.wasm   map a host directory, read-only
  spore run --memory 64M --timeout 5s app.wasm arg1 arg2
  spore run --invoke add calc.wasm 2 3       call an exported function of a reactor
  spore compile app.wasm                     precompile into the cache
  spore bundle hello -o hello; ./hello       one executable of an image, to run without Spore

Exit codes: the guest's own code; 134 trap; 137 memory limit; 152 CPU-time limit;
124 wall-clock timeout; 125 Spore could not run the program (bad flag, file or link).";

/// WebAssembly containers: build, ship and run wasm apps as sandboxes.
#[derive(Parser)]
#[command(name = "spore", version, about, after_help = EXAMPLES, max_term_width = 100)]
struct Cli {
    /// Compile cache directory [default: $XDG_CACHE_HOME/spore/compiled].
    #[arg(long, global = true, env = "SPORE_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Daemon to talk to: unix:///path/spore.sock, https://HOST:PORT (TLS) or tcp://HOST:PORT
    /// [default: the local socket].
    #[arg(long, global = true, env = "SPORE_HOST", value_name = "URL")]
    host: Option<String>,

    /// Bearer token for a daemon reached over TCP.
    #[arg(long, global = true, env = "SPORE_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    token: Option<String>,

    /// CA certificate (PEM) a daemon reached at https://… must be signed by [default: the
    /// system's roots].
    #[arg(long, global = true, env = "SPORE_TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,

    /// Local image store [default: the daemon's data dir + /store, e.g. ~/.local/share/spore/store].
    #[arg(long, global = true, env = "SPORE_STORE", value_name = "DIR")]
    store: Option<PathBuf>,

    /// A registry to reach over plain HTTP (HOST[:PORT]); repeatable. Loopback ones always are.
    #[arg(
        long = "insecure-registry",
        global = true,
        env = "SPORE_INSECURE_REGISTRIES",
        value_delimiter = ',',
        value_name = "HOST[:PORT]"
    )]
    insecure_registries: Vec<String>,

    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once per process; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    Run(run::RunArgs),
    Serve(serve::ServeArgs),
    Up(serve::UpArgs),
    Compile(compile::CompileArgs),
    Bundle(bundle::BundleArgs),
    Daemon(daemon::DaemonArgs),
    Deploy(deploy::DeployArgs),
    /// List sandboxes.
    Ps(sandboxes::PsArgs),
    /// Start sandboxes.
    Start(sandboxes::NamesArgs),
    /// Stop sandboxes (grace period, then kill).
    Stop(sandboxes::StopArgs),
    /// Kill sandboxes now.
    Kill(sandboxes::NamesArgs),
    /// Remove sandboxes and their logs.
    Rm(sandboxes::RmArgs),
    /// Show sandboxes' records or images' details as JSON.
    Inspect(sandboxes::InspectArgs),
    /// Print a sandbox's logs.
    Logs(logs::LogsArgs),
    /// Show live figures.
    Stats(sandboxes::StatsArgs),
    /// Stream sandbox events.
    Events(sandboxes::EventsArgs),
    /// Build an image from a Sporefile.
    Build(images::BuildArgs),
    /// Load images from an OCI layout.
    Load(images::LoadArgs),
    /// Save an image as an OCI layout.
    Save(images::SaveArgs),
    /// List images in the local store.
    Images(images::ImagesArgs),
    /// Give an image another name.
    Tag(images::TagArgs),
    /// Remove image names.
    Rmi(images::RmiArgs),
    /// Pull an image from a registry.
    Pull(registry::PullArgs),
    /// Push an image to a registry.
    Push(registry::PushArgs),
    /// Log in to a registry.
    Login(registry::LoginArgs),
    /// Log out of a registry.
    Logout(registry::LogoutArgs),
    /// Inspect and prune images.
    #[command(subcommand)]
    Image(images::ImageCommand),
    /// Manage the daemon's program store.
    #[command(subcommand)]
    Program(programs::ProgramCommand),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { ExitCode::from(exit_code::SPORE_ERROR as u8) } else { ExitCode::SUCCESS };
        }
    };
    init_logging();
    let cache_dir = paths::cache_dir(cli.cache_dir);
    let json = cli.json;
    let insecure = cli.insecure_registries;
    let store_dir = cli.store.unwrap_or_else(|| paths::daemon_paths().1.join("store"));
    // An edge runner's address sends `run` there too; the image and local commands stay here.
    let runner = cli.host.as_deref().and_then(spore_runner::link::Address::parse);
    let result = match (cli.command, runner) {
        (_, Some(Err(e))) => Err(anyhow::anyhow!("--host: {e}")),
        (
            command @ (Command::Run(_)
            | Command::Deploy(_)
            | Command::Ps(_)
            | Command::Logs(_)
            | Command::Stop(_)
            | Command::Kill(_)
            | Command::Rm(_)
            | Command::Stats(_)
            | Command::Start(_)
            | Command::Inspect(_)
            | Command::Events(_)
            | Command::Program(_)),
            Some(Ok(runner)),
        ) => edge_command(command, &runner, cli.token.as_deref(), &cache_dir, json),
        (command, _) => {
            local_command(command, cli.host.as_deref(), (cli.token, cli.tls_ca), cache_dir, &store_dir, &insecure, json)
        }
    };
    match result {
        Ok(code) => exit(code),
        Err(err) => {
            eprintln!("spore: {err:#}");
            exit(exit_code::SPORE_ERROR)
        }
    }
}

/// The commands carried out here or at the daemon.
fn local_command(
    command: Command,
    host: Option<&str>,
    credentials: (Option<String>, Option<PathBuf>),
    cache_dir: PathBuf,
    store_dir: &std::path::Path,
    insecure: &[String],
    json: bool,
) -> anyhow::Result<i32> {
    match command {
        Command::Run(args) => run::run(args, cache_dir, store_dir, insecure),
        Command::Serve(args) => serve::serve(args, cache_dir, store_dir, insecure),
        Command::Up(args) => serve::up(args, cache_dir, store_dir, insecure),
        Command::Build(args) => images::build(args, store_dir, cache_dir),
        Command::Load(args) => images::load(args, store_dir),
        Command::Save(args) => images::save(args, store_dir),
        Command::Images(args) => images::images(args, store_dir, json),
        Command::Tag(args) => images::tag(args, store_dir),
        Command::Rmi(args) => images::rmi(args, store_dir),
        Command::Pull(args) => registry::pull(args, store_dir, insecure),
        Command::Push(args) => registry::push(args, store_dir, insecure),
        Command::Login(args) => registry::login(args, insecure),
        Command::Logout(args) => registry::logout(args),
        Command::Image(command) => images::image(command, store_dir, json),
        Command::Compile(args) => compile::compile(args, cache_dir, store_dir),
        Command::Bundle(args) => bundle::bundle(args, store_dir, insecure),
        Command::Daemon(args) => daemon::daemon(args),
        command => daemon_client_command(command, host, credentials, json, store_dir),
    }
}

/// Logs go to stderr: warnings by default, or what `SPORE_LOG` selects (e.g. `debug`,
/// `spore_engine=debug`). The default skips parsing a filter, which a one-shot run notices.
fn init_logging() {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time();
    match std::env::var("SPORE_LOG") {
        Ok(filter) if !filter.is_empty() => builder.with_env_filter(tracing_subscriber::EnvFilter::new(filter)).init(),
        _ => builder.with_max_level(tracing::Level::WARN).init(),
    }
}

/// The commands an edge runner answers; the others name what a runner does.
fn edge_command(
    command: Command,
    runner: &spore_runner::link::Address,
    token: Option<&str>,
    cache_dir: &std::path::Path,
    json: bool,
) -> anyhow::Result<i32> {
    use edge::Request;
    let request = match command {
        Command::Run(args) => Request::Run(args),
        Command::Deploy(args) => Request::Deploy(args),
        Command::Ps(args) => Request::Ps(args),
        Command::Logs(args) => Request::Logs(args),
        Command::Stop(args) => Request::Stop(args),
        Command::Kill(args) => Request::Kill(args),
        Command::Rm(args) => Request::Rm(args),
        Command::Stats(args) => Request::Stats(args),
        _ => anyhow::bail!("{runner} is an edge runner: it does run, deploy, ps, logs, stop, kill, rm and stats"),
    };
    edge::command(request, runner, token, cache_dir, json)
}

/// The commands that talk to a daemon, on a small single-threaded runtime.
fn daemon_client_command(
    command: Command,
    host: Option<&str>,
    (token, tls_ca): (Option<String>, Option<PathBuf>),
    json: bool,
    store_dir: &std::path::Path,
) -> anyhow::Result<i32> {
    let client = client::Client::new(host, token, tls_ca)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        match command {
            Command::Deploy(args) => deploy::deploy(&client, args, json).await,
            Command::Ps(args) => sandboxes::ps(&client, args, json).await,
            Command::Start(args) => sandboxes::each(&client, args, "start", json).await,
            Command::Stop(args) => sandboxes::stop(&client, args).await,
            Command::Kill(args) => sandboxes::each(&client, args, "kill", json).await,
            Command::Rm(args) => sandboxes::rm(&client, args).await,
            Command::Inspect(args) => sandboxes::inspect(&client, args, store_dir).await,
            Command::Logs(args) => logs::logs(&client, args, json).await,
            Command::Stats(args) => sandboxes::stats(&client, args, json).await,
            Command::Events(args) => sandboxes::events(&client, args, json).await,
            Command::Program(command) => programs::program(&client, command, json).await,
            _ => unreachable!("local commands are handled in main"),
        }
    })
}

/// Process exit codes are 8 bits on Unix; a guest's `exit(n)` is reported modulo 256, as a
/// shell would see it.
fn exit(code: i32) -> ExitCode {
    ExitCode::from((code & 0xff) as u8)
}
