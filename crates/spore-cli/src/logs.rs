//! `spore logs`: a sandbox's (or an app's replicas') log lines, control characters shown,
//! not obeyed.

use crate::client::{Client, encode};
use crate::sandboxes::expand;
use clap::Args;
use spore_daemon::logs::{LogLine, Stream};
use spore_types::escape_controls;
use std::io::Write;

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

impl LogsArgs {
    /// (name, last N lines, raw) for a runner, which keeps output without times and does not
    /// stream it; the first flag only the daemon has, if one is given.
    pub fn for_runner(&self) -> Result<(&str, Option<usize>, bool), &'static str> {
        match (self.follow, &self.since, self.timestamps) {
            (true, _, _) => Err("--follow"),
            (_, Some(_), _) => Err("--since"),
            (_, _, true) => Err("--timestamps"),
            _ => Ok((&self.name, self.tail, self.raw)),
        }
    }
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
    let prefix = prefix.unwrap_or_default();
    let path = format!("/v1/sandboxes/{}/logs?{query}", encode(name));
    client
        .lines(&path, |line| {
            if json_out {
                std::io::stdout().write_all(line)?;
                return Ok(());
            }
            let Ok(line) = serde_json::from_slice::<LogLine>(line) else { return Ok(()) };
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
            Ok(std::io::stdout().flush()?)
        })
        .await
}
