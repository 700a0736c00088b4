//! `spore deploy`: upload a program (unless the daemon has it) and create its sandboxes,
//! replacing an earlier deploy of the same name.

use crate::client::short_id;
use crate::client::{Client, encode, server_error};
use crate::common::SpecArgs;
use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use spore_daemon::model::{APP_LABEL, BatchRequest, CreateRequest, Created, RestartPolicy, SandboxRecord};
use spore_engine::Digest;
use spore_sandbox::ProgramSource;

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

impl DeployArgs {
    /// What a runner needs of the flags (the sandbox's, and the app's name); the first flag
    /// only the daemon has, if one is given.
    pub fn for_runner(&self) -> Result<(&SpecArgs, Option<&str>), &'static str> {
        if self.restart.is_some() {
            return Err("--restart");
        }
        if self.replicas != 1 {
            return Err("--replicas");
        }
        if !self.labels.is_empty() {
            return Err("--label");
        }
        if self.http.is_some() {
            return Err("--http");
        }
        Ok((&self.spec, self.name.as_deref()))
    }
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: write KEY=VALUE")),
    }
}

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
