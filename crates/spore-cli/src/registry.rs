//! Registries from the command line: `pull`, `push`, `login`, `logout`, and the `--pull`
//! policy that `run` and `deploy` share.

use crate::store::{open_store, registry, resolve, runtime, summary};
use anyhow::{Context, bail};
use clap::Args;
use spore_image::Reference;
use spore_registry::Progress;
use std::io::BufRead;
use std::path::Path;

/// Pull an image from a registry into the local store.
#[derive(Args)]
#[command(after_help = "\
Examples:
  spore pull ghcr.io/acme/hello:1.0
  spore pull localhost:5000/hello            # loopback registries are plain HTTP
  spore --insecure-registry reg.lan:5000 pull reg.lan:5000/app@sha256:...")]
pub struct PullArgs {
    /// Refuse any blob larger than this (e.g. 64M) [default: 1G].
    #[arg(long, value_name = "SIZE", value_parser = crate::flags::parse_size)]
    max_blob_size: Option<u64>,
    /// The image: [REGISTRY/]REPOSITORY[:TAG][@DIGEST].
    image: String,
}

pub fn pull(args: PullArgs, store_dir: &Path, insecure: &[String]) -> anyhow::Result<i32> {
    let mut store = open_store(store_dir)?;
    if let Some(cap) = args.max_blob_size {
        store = store.with_max_blob(cap);
    }
    let reference: Reference = args.image.parse()?;
    let done = runtime()?.block_on(registry(insecure).pull(&store, &reference, &Progress::stderr()))?;
    summary(&reference, &done);
    println!("{reference}@{}", done.digest);
    Ok(0)
}

/// Push an image from the local store to a registry.
#[derive(Args)]
#[command(after_help = "\
Examples:
  spore push localhost:5000/hello:v1
  spore push hello:v1 ghcr.io/acme/hello:v1   # push under another name")]
pub struct PushArgs {
    /// The local image.
    image: String,
    /// Where to push it [default: the image's own name].
    destination: Option<String>,
}

pub fn push(args: PushArgs, store_dir: &Path, insecure: &[String]) -> anyhow::Result<i32> {
    let store = open_store(store_dir)?;
    let (name, manifest) = resolve(&store, &args.image, store_dir)?;
    let target: Reference = match &args.destination {
        Some(d) => d.parse()?,
        None => name,
    };
    let registry = registry(insecure);
    let done = runtime()?.block_on(registry.push(&store, manifest, &target, &Progress::stderr()))?;
    eprintln!(
        "Pushed {target} ({} blob(s), {}; {} already there)",
        done.moved,
        spore_sandbox::human_bytes(done.bytes),
        done.skipped
    );
    println!("{target}@{}", done.digest);
    Ok(0)
}

/// Log in to a registry; the credentials are checked, then kept for pull and push.
#[derive(Args)]
#[command(after_help = "\
Credentials go to $SPORE_AUTH_FILE or ~/.config/spore/auth.json (mode 0600, Docker's format).
Docker's ~/.docker/config.json is read too, so `docker login` is enough where Docker is.

Examples:
  spore login -u alice ghcr.io
  echo \"$TOKEN\" | spore login -u alice --password-stdin ghcr.io")]
pub struct LoginArgs {
    /// User name.
    #[arg(short, long)]
    username: Option<String>,
    /// Password (visible to other users in the process list: prefer --password-stdin).
    #[arg(short, long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
    /// The registry: HOST[:PORT].
    registry: String,
}

pub fn login(args: LoginArgs, insecure: &[String]) -> anyhow::Result<i32> {
    let registry_name = registry_host(&args.registry)?;
    let username = match args.username {
        Some(u) => u,
        None => prompt("Username: ")?,
    };
    let password = match (args.password, args.password_stdin) {
        (Some(p), _) => p,
        (None, true) => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
        (None, false) => rpassword::prompt_password("Password: ").context("reading the password")?,
    };
    if username.is_empty() || password.is_empty() {
        bail!("a user name and a password are needed to log in to {registry_name}");
    }
    runtime()?.block_on(registry(insecure).login(&registry_name, &username, &password))?;
    println!("Login Succeeded");
    Ok(0)
}

/// Forget the credentials Spore stored for a registry.
#[derive(Args)]
pub struct LogoutArgs {
    /// The registry: HOST[:PORT].
    registry: String,
}

pub fn logout(args: LogoutArgs) -> anyhow::Result<i32> {
    let registry_name = registry_host(&args.registry)?;
    if registry(&[]).logout(&registry_name)? {
        println!("Removed login credentials for {registry_name}");
    } else {
        println!("Not logged in to {registry_name}");
    }
    Ok(0)
}

/// `ghcr.io`, `https://ghcr.io/`, `localhost:5000` → the registry host as references name it.
fn registry_host(arg: &str) -> anyhow::Result<String> {
    let host = arg.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
    let host = host.split('/').next().unwrap_or(host);
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')) {
        bail!("{arg:?} is not a registry; write HOST or HOST:PORT, e.g. ghcr.io or localhost:5000");
    }
    Ok(match host {
        "index.docker.io" | "registry-1.docker.io" => spore_image::DEFAULT_REGISTRY.to_owned(),
        h => h.to_owned(),
    })
}

fn prompt(label: &str) -> anyhow::Result<String> {
    eprint!("{label}");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}
