//! `spore daemon`: the daemon in the foreground, its configuration merged from its file, its
//! flags and this user's environment.

use anyhow::Context;
use clap::Args;
use spore_daemon::config::DaemonConfig;
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
    let auth = crate::paths::auth_files();
    if empty(&config.registries.auth_file) {
        config.registries.auth_file = auth.spore().to_owned();
    }
    if empty(&config.registries.docker_config) {
        config.registries.docker_config = auth.docker().map(std::path::Path::to_path_buf).unwrap_or_default();
    }
    if args.print_config {
        print!("{}", toml::to_string_pretty(&config).context("printing the configuration")?);
        return Ok(0);
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    // Flattened: each error's message already names its cause.
    runtime.block_on(spore_daemon::run(config)).map_err(anyhow::Error::msg)?;
    Ok(0)
}
