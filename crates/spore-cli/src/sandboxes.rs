//! The commands on the daemon's sandboxes: `ps`, `start`, `stop`, `kill`, `rm`, `inspect`,
//! `stats`, `events`; an app's name stands for all its replicas.

use crate::client::short_id;
use crate::client::{Client, encode};
use anyhow::bail;
use clap::Args;
use hyper::Method;
use spore_daemon::model::{APP_LABEL, Event, SandboxRecord, State, Stats, now_ms};
use spore_engine::Digest;
use spore_sandbox::ProgramSource;
use std::io::Write;

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

impl PsArgs {
    /// (all, quiet), for a runner's `ps`; its filters are the daemon's.
    pub fn for_runner(&self) -> Result<(bool, bool), &'static str> {
        match self.filter.is_empty() {
            true => Ok((self.all, self.quiet)),
            false => Err("--filter"),
        }
    }
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

impl NamesArgs {
    /// The names given.
    pub fn names(&self) -> &[String] {
        &self.names
    }
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
pub(crate) async fn expand(client: &Client, names: &[String]) -> Vec<String> {
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

impl StopArgs {
    /// The names; a runner kills at once (WASI has no signals to give a grace period to).
    pub fn names(&self) -> &[String] {
        &self.names.names
    }
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

impl RmArgs {
    /// The names, and whether running ones are killed first.
    pub fn for_runner(&self) -> (&[String], bool) {
        (&self.names.names, self.force)
    }
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

/// Live figures: memory, CPU time, uptime, restarts.
#[derive(Args)]
pub struct StatsArgs {
    /// Sandboxes to show [default: all].
    #[arg(value_name = "SANDBOX")]
    names: Vec<String>,
}

impl StatsArgs {
    /// The names asked for (none: all).
    pub fn names(&self) -> &[String] {
        &self.names
    }
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

/// Stream events: created, started, exited, restarted, stopped, killed, removed.
#[derive(Args)]
pub struct EventsArgs {}

pub async fn events(client: &Client, _args: EventsArgs, json_out: bool) -> anyhow::Result<i32> {
    client
        .lines("/v1/events", |line| {
            let line = String::from_utf8_lossy(line);
            let Some(data) = line.trim_end().strip_prefix("data:") else { return Ok(()) };
            let Ok(event) = serde_json::from_str::<Event>(data.trim()) else { return Ok(()) };
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
            Ok(std::io::stdout().flush()?)
        })
        .await?;
    Ok(0)
}
