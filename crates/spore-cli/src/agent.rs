//! The CLI as the daemon's agent: `spore daemon` itself, and `deploy`, `ps`, `start`, `stop`,
//! `kill`, `rm`, `inspect`, `logs`, `stats`, `events` against a local or remote daemon.

use crate::client::{Client, server_error};
use crate::common::SpecArgs;
use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use spore_daemon::config::DaemonConfig;
use spore_daemon::logs::{LogLine, Stream};
use spore_daemon::model::{
    BatchRequest, CreateRequest, Created, Event, PrunedPrograms, RestartPolicy, SandboxRecord, State, Stats, now_ms,
};
use spore_engine::Digest;
use spore_sandbox::ProgramSource;
use spore_types::escape_controls;
use std::io::Write;
use std::path::PathBuf;

/// Run the daemon in the foreground: many sandboxes in one process, behind a local API.
#[derive(Args)]
#[command(after_help = "\
Examples:
  spore daemon
  spore daemon --data-dir /srv/spore --socket /run/spore/spore.sock
  spore daemon --listen 0.0.0.0:7070 --token-file /etc/spore/token \
               --tls-cert /etc/spore/cert.pem --tls-key /etc/spore/key.pem   # remote agents
  spore daemon --config /etc/spore/daemon.toml
  spore daemon --config /etc/spore/daemon.toml --print-config   # what it would run with")]
pub struct DaemonArgs {
    /// API socket (owner-only) [default: $XDG_RUNTIME_DIR/spore/spore.sock, /run/spore/spore.sock as root].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// State, programs, logs and compile cache [default: $XDG_DATA_HOME/spore, /var/lib/spore as root].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Also serve the API on TCP (requires --token-file).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// File holding the bearer token TCP clients must send.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// PEM certificate chain: serve the TCP API over TLS (needed beyond loopback).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// TOML configuration ([pool], [logs], [engine]); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Live sandboxes at once (overrides [pool] sandboxes).
    #[arg(long, value_name = "N")]
    capacity: Option<u32>,
    /// Print the effective configuration (file, flags and defaults merged) as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

pub fn daemon(args: DaemonArgs) -> anyhow::Result<i32> {
    let mut config = match &args.config {
        Some(path) => DaemonConfig::from_file(path).map_err(anyhow::Error::msg)?,
        None => DaemonConfig::default(),
    };
    if let Some(v) = args.socket {
        config.socket = v;
    }
    if let Some(v) = args.data_dir {
        config.data_dir = v;
    }
    if args.listen.is_some() {
        config.listen = args.listen;
    }
    if args.token_file.is_some() {
        config.token_file = args.token_file;
    }
    if args.tls_cert.is_some() {
        (config.tls_cert, config.tls_key) = (args.tls_cert, args.tls_key);
    }
    if let Some(n) = args.capacity {
        config.pool.sandboxes = n;
    }
    // What neither the flags nor the file say comes from the user's environment.
    let (socket, data_dir) = crate::paths::daemon_paths();
    let empty = |p: &PathBuf| p.as_os_str().is_empty();
    if empty(&config.socket) {
        config.socket = socket;
    }
    if empty(&config.data_dir) {
        config.data_dir = data_dir;
    }
    if empty(&config.registries.auth_file) {
        let auth = crate::paths::auth_files();
        config.registries.auth_file = auth.spore().to_owned();
        if empty(&config.registries.docker_config) {
            config.registries.docker_config = auth.docker().map(std::path::Path::to_path_buf).unwrap_or_default();
        }
    }
    if args.print_config {
        print!("{}", toml::to_string_pretty(&config).context("printing the configuration")?);
        return Ok(0);
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(spore_daemon::run(config)).map_err(anyhow::Error::msg)?;
    Ok(0)
}

/// Deploy a wasm app to the daemon: upload by digest (skipped when it already has it), then
/// create and start it. Deploying a name again replaces the old version.
#[derive(Args)]
#[command(after_help = "\
Examples:
  spore deploy --name ticker refdaemon.wasm 10
  spore deploy --name web --replicas 3 --restart always --memory 32M app.wasm
  spore --host tcp://gateway.local:7070 deploy --name sensor sensor.wasm")]
pub struct DeployArgs {
    /// App name; replicas are NAME-0, NAME-1, … [default: the file's stem].
    #[arg(long)]
    name: Option<String>,
    /// Restart policy: no, always, on-failure, on-failure:N [default: the daemon's
    /// `[defaults] restart`, else no].
    #[arg(long)]
    restart: Option<RestartPolicy>,
    /// How many sandboxes to run.
    #[arg(long, default_value_t = 1)]
    replicas: u32,
    /// Label KEY=VALUE (repeatable), for `spore ps --filter`.
    #[arg(short, long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// For an HTTP app: serve it on ADDR:PORT (a fresh instance per request).
    #[arg(long, value_name = "ADDR:PORT")]
    http: Option<String>,
    /// For an HTTP app: requests it runs at once; each takes one of the daemon's sandbox
    /// slots [default: 16].
    #[arg(long, value_name = "N", requires = "http")]
    concurrency: Option<usize>,
    #[command(flatten)]
    spec: SpecArgs,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: write KEY=VALUE")),
    }
}

/// The label that ties a deployed app's sandboxes together.
const APP_LABEL: &str = "spore.app";

/// Uploads the spec's wasm file unless the daemon has its digest; returns the digest.
async fn upload(client: &Client, spec: &SpecArgs) -> anyhow::Result<String> {
    let bytes = spec.read_program()?;
    let digest = Digest::of(&bytes).to_string();
    let head = client.send(Method::HEAD, &format!("/v1/programs/{digest}"), None).await?;
    if head.status() == StatusCode::NOT_FOUND {
        let put = client
            .send(
                Method::PUT,
                &format!("/v1/programs/{digest}"),
                Some(("application/wasm", Bytes::from(bytes.clone()))),
            )
            .await?;
        let status = put.status();
        let body = put.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            return Err(server_error(status, &body).context(format!("uploading {}", spec.file.display())));
        }
        eprintln!("uploaded {} ({} KiB, {digest})", spec.file.display(), bytes.len().div_ceil(1024));
    } else if head.status().is_success() {
        eprintln!("the daemon already has {digest}; skipped the upload");
    } else {
        bail!("the daemon answered {} to a program lookup", head.status());
    }
    Ok(digest)
}

pub async fn deploy(client: &Client, args: DeployArgs, json_out: bool) -> anyhow::Result<i32> {
    if args.replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    let image = (!args.spec.is_file()).then(|| args.spec.file.to_string_lossy().into_owned());
    let name = match (&args.name, &image) {
        (Some(n), _) => n.clone(),
        // The repository's last part: ghcr.io/acme/web:v2 → web.
        (None, Some(image)) => {
            image.parse::<spore_image::Reference>()?.repository.rsplit('/').next().unwrap_or("app").to_owned()
        }
        (None, None) => {
            args.spec.file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "app".into())
        }
    };
    let program = match &image {
        // The daemon resolves (and pulls) the image itself, into its own store.
        Some(image) => ProgramSource::Image(image.clone()),
        None => ProgramSource::Digest(upload(client, &args.spec).await?),
    };
    let mut spec = args.spec.spec(program)?;
    // The daemon has its own working directory: a relative --dir means this shell's.
    for m in &mut spec.mounts {
        m.host = std::path::absolute(&m.host).with_context(|| format!("--dir {}", m.host.display()))?;
    }
    spec.http = args.http.clone().map(|listen| spore_sandbox::HttpSpec { listen, concurrency: args.concurrency });
    let mut labels: std::collections::BTreeMap<String, String> = args.labels.iter().cloned().collect();
    labels.insert(APP_LABEL.into(), name.clone());

    // Replace what an earlier deploy of this name left, in the create itself: the daemon
    // removes the old sandboxes only once it has accepted the new ones.
    let old: Vec<SandboxRecord> =
        client.json(Method::GET, &format!("/v1/sandboxes?label={}", encode(&format!("{APP_LABEL}={name}")))).await?;
    let replace: String = old.iter().map(|r| format!("replace={}&", encode(&r.id))).collect();
    let template = CreateRequest {
        name: Some(name.clone()),
        labels,
        spec,
        pull: args.spec.pull,
        restart: args.restart,
        start: true,
    };
    let created: anyhow::Result<Vec<Created>> = if args.replicas == 1 {
        client.post(&format!("/v1/sandboxes?{replace}"), &template).await.map(|c| vec![c])
    } else {
        let batch = BatchRequest { template, count: args.replicas };
        client.post(&format!("/v1/sandboxes/batch?{replace}"), &batch).await
    };
    let created = match created {
        Ok(created) => created,
        Err(err) if !old.is_empty() => {
            return Err(
                err.context(format!("{name} was not redeployed; its {} sandbox(es) were left as they were", old.len()))
            );
        }
        Err(err) => return Err(err),
    };
    if json_out {
        println!("{}", serde_json::to_string(&created)?);
    } else {
        if !old.is_empty() {
            eprintln!("replaced {} sandbox(es) of {name}", old.len());
        }
        for c in &created {
            println!("{}  {}", short_id(&c.id), c.name);
        }
    }
    Ok(0)
}

/// List sandboxes (running ones unless --all).
#[derive(Args)]
#[command(
    after_help = "Examples:\n  spore ps\n  spore ps -a --filter label=spore.app=web\n  spore ps --filter state=exited -q"
)]
pub struct PsArgs {
    /// Show all sandboxes, not only running ones.
    #[arg(short, long)]
    all: bool,
    /// Filter: label=KEY=VALUE or state=created|running|restarting|exited (repeatable).
    #[arg(short, long, value_name = "FILTER")]
    filter: Vec<String>,
    /// Print ids only.
    #[arg(short, long)]
    quiet: bool,
}

pub async fn ps(client: &Client, args: PsArgs, json_out: bool) -> anyhow::Result<i32> {
    let mut query = Vec::new();
    let mut state_given = false;
    for f in &args.filter {
        match f.split_once('=') {
            Some(("label", kv)) => query.push(format!("label={}", encode(kv))),
            Some(("state", s)) => {
                state_given = true;
                query.push(format!("state={}", encode(s)));
            }
            _ => bail!("--filter {f:?}: write label=KEY=VALUE or state=STATE"),
        }
    }
    if !args.all && !state_given {
        query.push("state=running".into());
    }
    let records: Vec<SandboxRecord> = client.json(Method::GET, &format!("/v1/sandboxes?{}", query.join("&"))).await?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else if args.quiet {
        for r in &records {
            println!("{}", short_id(&r.id));
        }
    } else {
        println!("{:<12}  {:<24}  {:<10}  {:<28}  {:>8}  PROGRAM", "ID", "NAME", "STATE", "STATUS", "RESTARTS");
        for r in &records {
            let program = match &r.spec.program {
                ProgramSource::Digest(d) => Digest::shorten(d).to_owned(),
                ProgramSource::Path(p) => p.display().to_string(),
                ProgramSource::Image(i) => i.clone(),
            };
            println!(
                "{:<12}  {:<24}  {:<10}  {:<28}  {:>8}  {program}",
                short_id(&r.id),
                r.name,
                r.state.as_str(),
                status_text(r),
                r.restarts
            );
        }
    }
    Ok(0)
}

fn status_text(r: &SandboxRecord) -> String {
    let ago = |t: Option<u64>| {
        t.map(|t| {
            humantime::format_duration(std::time::Duration::from_secs(now_ms().saturating_sub(t) / 1000)).to_string()
        })
    };
    match r.state {
        State::Running => format!("up {}", ago(r.started_at).unwrap_or_default()),
        State::Created => "created".into(),
        State::Restarting => format!("restarting (#{})", r.restarts),
        State::Exited => {
            let code = r.exit.as_ref().map(|e| e.code().to_string()).unwrap_or_else(|| "?".into());
            format!("exited ({code}) {} ago", ago(r.finished_at).unwrap_or_default())
        }
    }
}

/// One or more sandboxes by id, id prefix or name.
#[derive(Args)]
pub struct NamesArgs {
    /// Sandbox ids (or unique prefixes) or names.
    #[arg(required = true, value_name = "SANDBOX")]
    names: Vec<String>,
}

/// What `spore inspect` looks at.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InspectType {
    /// A daemon sandbox.
    Sandbox,
    /// An image in the local store.
    Image,
}

/// Show sandboxes' records or images' details as JSON.
#[derive(Args)]
#[command(after_help = "\
A name is looked up as a sandbox on the daemon first, then as a local image (as docker does);
--type picks one.

Examples:
  spore inspect ticker
  spore inspect --type image localhost:5000/hello:v1")]
pub struct InspectArgs {
    /// Only this kind of object.
    #[arg(long = "type", value_enum)]
    kind: Option<InspectType>,
    /// Show the values of a sandbox's variables (hidden otherwise; the daemon's policy must
    /// allow it: [policy] reveal_variables).
    #[arg(long)]
    secrets: bool,
    /// Sandbox ids, names, or images.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
}

/// `spore inspect`: sandboxes from the daemon, else images from the local store.
pub async fn inspect(client: &Client, args: InspectArgs, store_dir: &std::path::Path) -> anyhow::Result<i32> {
    let names = match args.kind {
        Some(InspectType::Image) => args.names.clone(),
        _ => expand(client, &args.names).await,
    };
    per_name(&names, |name| async move {
        let sandbox = match args.kind {
            Some(InspectType::Image) => Err(anyhow::anyhow!("not looked up as a sandbox")),
            _ => {
                let path = format!("/v1/sandboxes/{}?secrets={}", encode(name), args.secrets);
                client.json::<SandboxRecord>(Method::GET, &path).await
            }
        };
        match (sandbox, args.kind) {
            (Ok(record), _) => Ok(serde_json::to_string_pretty(&record)?),
            (Err(e), Some(InspectType::Sandbox)) => Err(e),
            (Err(sandbox_err), _) => match crate::images::inspect_one(name, store_dir) {
                Ok(doc) => Ok(serde_json::to_string_pretty(&doc)?),
                Err(image_err) if args.kind.is_none() => {
                    bail!("no such sandbox ({sandbox_err:#}) and no such image ({image_err:#})")
                }
                Err(image_err) => Err(image_err),
            },
        }
    })
    .await
}

/// `start`, `kill`: the same request per name.
pub async fn each(client: &Client, args: NamesArgs, action: &str, json_out: bool) -> anyhow::Result<i32> {
    let (method, suffix) = (Method::POST, format!("/{action}"));
    let print_record = json_out;
    let names = expand(client, &args.names).await;
    per_name(&names, |name| {
        let (client, method, path) = (client, method.clone(), format!("/v1/sandboxes/{}{suffix}", encode(name)));
        async move {
            let record: SandboxRecord = client.json(method, &path).await?;
            Ok(if print_record { serde_json::to_string_pretty(&record)? } else { name.to_owned() })
        }
    })
    .await
}

/// The sandboxes `names` address: each a sandbox's id, id prefix or name — or else a deployed
/// app's name, which stands for all its replicas (`web` → `web-0`, `web-1`…), as a compose
/// service stands for its containers. A name that is neither is kept, for its error.
async fn expand(client: &Client, names: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        let path = format!("/v1/sandboxes/{}", encode(name));
        if client.json::<SandboxRecord>(Method::GET, &path).await.is_err() {
            let path = format!("/v1/sandboxes?label={}", encode(&format!("{APP_LABEL}={name}")));
            if let Ok(replicas) = client.json::<Vec<SandboxRecord>>(Method::GET, &path).await
                && !replicas.is_empty()
            {
                out.extend(replicas.into_iter().map(|r| r.name));
                continue;
            }
        }
        out.push(name.clone());
    }
    out
}

/// Runs `request` for every name, printing what it returns or the error, one line per name
/// (docker's habit); the exit code is 1 if any failed.
async fn per_name<'a, F, Fut>(names: &'a [String], request: F) -> anyhow::Result<i32>
where
    F: Fn(&'a str) -> Fut,
    Fut: Future<Output = anyhow::Result<String>>,
{
    let mut failed = false;
    for name in names {
        match request(name).await {
            Ok(line) => println!("{line}"),
            Err(err) => {
                eprintln!("spore: {name}: {err:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// Stop sandboxes: no more restarts, a grace period for the guest to finish, then kill.
#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait before killing (WASI has no signals: the guest is not notified).
    #[arg(short = 't', long = "time", default_value_t = 10.0)]
    time: f64,
    #[command(flatten)]
    names: NamesArgs,
}

pub async fn stop(client: &Client, args: StopArgs) -> anyhow::Result<i32> {
    let names = expand(client, &args.names.names).await;
    per_name(&names, |name| async move {
        let path = format!("/v1/sandboxes/{}/stop?timeout={}", encode(name), args.time);
        client.json::<SandboxRecord>(Method::POST, &path).await?;
        Ok(name.to_owned())
    })
    .await
}

/// Remove sandboxes and their logs.
#[derive(Args)]
pub struct RmArgs {
    /// Kill running sandboxes first.
    #[arg(short, long)]
    force: bool,
    #[command(flatten)]
    names: NamesArgs,
}

pub async fn rm(client: &Client, args: RmArgs) -> anyhow::Result<i32> {
    let names = expand(client, &args.names.names).await;
    per_name(&names, |name| async move {
        let path = format!("/v1/sandboxes/{}?force={}", encode(name), args.force);
        client.json::<serde::de::IgnoredAny>(Method::DELETE, &path).await?;
        Ok(name.to_owned())
    })
    .await
}

/// The daemon's program store.
#[derive(Subcommand)]
pub enum ProgramCommand {
    /// Delete the programs no sandbox uses from the daemon's store, with their compiled code.
    Prune(ProgramPruneArgs),
}

/// `spore program prune`.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  spore program prune\n  spore program prune --grace 0s   # also what was uploaded a moment ago"
)]
pub struct ProgramPruneArgs {
    /// Keep programs uploaded or used within this long (a deploy uploads, then creates).
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    grace: String,
}

pub async fn program(client: &Client, command: ProgramCommand, json: bool) -> anyhow::Result<i32> {
    match command {
        ProgramCommand::Prune(args) => {
            let path = format!("/v1/programs/prune?grace={}", encode(&args.grace));
            let pruned: PrunedPrograms = client.json(Method::POST, &path).await?;
            if json {
                println!("{}", serde_json::to_string(&pruned)?);
                return Ok(0);
            }
            for d in &pruned.deleted {
                println!("Deleted {}", d.digest);
            }
            println!(
                "Deleted {} program(s); reclaimed {}",
                pruned.deleted.len(),
                spore_sandbox::human_bytes(pruned.bytes)
            );
            Ok(0)
        }
    }
}

/// Print a sandbox's logs (stdout lines to stdout, stderr lines to stderr).
#[derive(Args)]
#[command(
    after_help = "Examples:\n  spore logs ticker\n  spore logs -f --tail 10 ticker\n  spore logs --since 5m -t ticker"
)]
pub struct LogsArgs {
    /// Keep printing new lines while the sandbox runs.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    tail: Option<usize>,
    /// Only lines since a time (RFC 3339), a duration back (10m), or Unix ms.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Prefix each line with its time.
    #[arg(short, long)]
    timestamps: bool,
    /// Print the guest's text as it wrote it, terminal control sequences included (by default
    /// they are shown escaped, `\x1b[2J`, so a guest cannot drive the reader's terminal).
    #[arg(long)]
    raw: bool,
    /// Sandbox id or name.
    #[arg(value_name = "SANDBOX")]
    name: String,
}

/// The first twelve characters of an id, as docker shows them (all of it if shorter: the
/// daemon's answer is not trusted to be well formed).
fn short_id(id: &str) -> &str {
    id.char_indices().nth(12).map_or(id, |(end, _)| &id[..end])
}

pub async fn logs(client: &Client, args: LogsArgs, json_out: bool) -> anyhow::Result<i32> {
    let mut query = Vec::new();
    if args.follow {
        query.push("follow=1".to_owned());
    }
    if let Some(n) = args.tail {
        query.push(format!("tail={n}"));
    }
    if let Some(s) = &args.since {
        query.push(format!("since={}", encode(s)));
    }
    let query = query.join("&");
    // An app's name stands for all its replicas: their lines interleave, each with its
    // sandbox's name in front (as compose shows a service's containers).
    let names = expand(client, std::slice::from_ref(&args.name)).await;
    let prefixed = names.len() > 1;
    let width = names.iter().map(String::len).max().unwrap_or(0);
    let streams = names.iter().map(|name| {
        let prefix = prefixed.then(|| format!("{name:<width$} | "));
        stream_logs(client, name, &query, prefix, &args, json_out)
    });
    futures_util::future::try_join_all(streams).await?;
    Ok(0)
}

/// Prints one sandbox's log lines as they come (stdout lines to stdout, stderr lines to
/// stderr), each after `prefix`.
async fn stream_logs(
    client: &Client,
    name: &str,
    query: &str,
    prefix: Option<String>,
    args: &LogsArgs,
    json_out: bool,
) -> anyhow::Result<()> {
    let response = client.send(Method::GET, &format!("/v1/sandboxes/{}/logs?{query}", encode(name)), None).await?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let bytes = body.collect().await?.to_bytes();
        return Err(server_error(status, &bytes));
    }
    let prefix = prefix.unwrap_or_default();
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        pending.extend_from_slice(&data);
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            if json_out {
                std::io::stdout().write_all(&line)?;
                continue;
            }
            let Ok(line) = serde_json::from_slice::<LogLine>(&line) else { continue };
            let m = if args.raw { line.m.as_str().into() } else { escape_controls(&line.m) };
            let text = if args.timestamps {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(line.t);
                format!("{prefix}{} {m}\n", humantime::format_rfc3339_millis(t))
            } else {
                format!("{prefix}{m}\n")
            };
            match line.s {
                Stream::Out => std::io::stdout().write_all(text.as_bytes())?,
                Stream::Err | Stream::Spore => std::io::stderr().write_all(text.as_bytes())?,
            }
        }
        std::io::stdout().flush()?;
    }
    Ok(())
}

/// Live figures: memory, CPU time, uptime, restarts.
#[derive(Args)]
pub struct StatsArgs {
    /// Sandboxes to show [default: all].
    #[arg(value_name = "SANDBOX")]
    names: Vec<String>,
}

pub async fn stats(client: &Client, args: StatsArgs, json_out: bool) -> anyhow::Result<i32> {
    let stats: Vec<Stats> = if args.names.is_empty() {
        client.json(Method::GET, "/v1/stats").await?
    } else {
        let mut out = Vec::new();
        for name in expand(client, &args.names).await {
            out.push(client.json(Method::GET, &format!("/v1/sandboxes/{}/stats", encode(&name))).await?);
        }
        out
    };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(0);
    }
    println!(
        "{:<24}  {:<10}  {:>10}  {:>10}  {:>10}  {:>8}  {:>22}",
        "NAME", "STATE", "MEMORY", "CPU", "UPTIME", "RESTARTS", "LOG DROPPED"
    );
    for s in &stats {
        println!(
            "{:<24}  {:<10}  {:>10}  {:>10}  {:>10}  {:>8}  {:>22}",
            s.name,
            s.state.as_str(),
            spore_sandbox::human_bytes(s.memory_bytes),
            format!("{:.1}ms", s.cpu_ms),
            humantime::format_duration(std::time::Duration::from_secs(s.uptime_ms / 1000)).to_string(),
            s.restarts,
            format!("{} B / {} lines", s.log_dropped_bytes, s.log_dropped_lines)
        );
    }
    Ok(0)
}

/// Stream events: created, started, exited, restarted, killed, removed.
#[derive(Args)]
pub struct EventsArgs {}

pub async fn events(client: &Client, _args: EventsArgs, json_out: bool) -> anyhow::Result<i32> {
    let response = client.send(Method::GET, "/v1/events", None).await?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let bytes = body.collect().await?.to_bytes();
        return Err(server_error(status, &bytes));
    }
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        pending.extend_from_slice(&data);
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim_end().strip_prefix("data:") else { continue };
            let Ok(event) = serde_json::from_str::<Event>(data.trim()) else { continue };
            if json_out {
                println!("{}", serde_json::to_string(&event)?);
            } else {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(event.time);
                let exit = event.exit.map(|e| format!(" ({e})")).unwrap_or_default();
                println!(
                    "{} {:<9} {} {}{exit}",
                    humantime::format_rfc3339_millis(t),
                    event.kind,
                    event.name,
                    short_id(&event.id)
                );
            }
            std::io::stdout().flush()?;
        }
    }
    Ok(0)
}

/// Percent-encodes a query or path component.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {

    #[test]
    fn ids_are_shortened_without_trusting_their_length() {
        assert_eq!(super::short_id("0123456789abcdef"), "0123456789ab");
        assert_eq!(super::short_id("short"), "short");
        assert_eq!(super::short_id("ééééééééééééé"), "éééééééééééé");
    }
}
