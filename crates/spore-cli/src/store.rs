//! The local image store and fetching into it: opening it, resolving a reference there, and
//! pulling what is missing as `--pull` says — what `run`, `serve`, `up`, `build` and the image
//! and registry commands share.

use anyhow::{Context, bail};
use clap::builder::TypedValueParser as _;
use spore_image::{ContentStore, Reference, open_image};
use spore_registry::{Progress, PullPolicy, Registry, RegistryOptions, Transferred};
use std::path::Path;

/// The store at `dir`.
pub fn open_store(dir: &Path) -> anyhow::Result<ContentStore> {
    ContentStore::open(dir).with_context(|| format!("cannot open the image store at {}", dir.display()))
}

/// `--pull missing|always|never`, parsed into the registry crate's own [`PullPolicy`] (one
/// enum for the CLI, the daemon's API and the registry client); help lists the three values.
pub fn pull_flag() -> impl clap::builder::TypedValueParser<Value = PullPolicy> {
    clap::builder::PossibleValuesParser::new(["missing", "always", "never"])
        .map(|s| s.parse::<PullPolicy>().expect("one of the possible values"))
}

/// The registry client, with the insecure registries the user named.
pub fn registry(insecure: &[String]) -> Registry {
    Registry::new(RegistryOptions {
        insecure: insecure.to_vec(),
        auth: crate::paths::auth_files(),
        limits: Default::default(),
        reach: Default::default(),
    })
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

pub fn summary(reference: &Reference, done: &Transferred) {
    eprintln!(
        "Pulled {reference} ({}; {} blob(s), {}; {} already here)",
        done.digest,
        done.moved,
        spore_sandbox::human_bytes(done.bytes),
        done.skipped
    );
}

/// The manifest `image` names locally, pulling it first as `policy` says.
pub fn ensure(
    store: &ContentStore,
    image: &str,
    store_dir: &Path,
    policy: PullPolicy,
    insecure: &[String],
) -> anyhow::Result<spore_engine::Digest> {
    let reference: Reference = image.parse()?;
    let (digest, pulled) = runtime()?
        .block_on(registry(insecure).ensure(store, &reference, policy, &Progress::stderr()))
        .with_context(|| format!("{image} is not a file here and not in the local store, so Spore tried to pull it"))?;
    if let Some(done) = &pulled {
        summary(&reference, done);
    }
    match digest {
        Some(d) => Ok(d),
        None => Ok(resolve(store, image, store_dir)?.1),
    }
}

/// A reference and the manifest it names in the local store, or a message saying how to get it.
pub fn resolve(
    store: &ContentStore,
    image: &str,
    store_dir: &Path,
) -> anyhow::Result<(Reference, spore_engine::Digest)> {
    let reference: Reference = image.parse()?;
    if let Some(digest) = reference.digest
        && store.has(&digest)
    {
        return Ok((reference, digest));
    }
    match store.resolve(&reference)? {
        Some(digest) => Ok((reference, digest)),
        None => bail!(
            "{image}: no such file, and no image {reference} in the local store ({}); pull it with `spore pull {reference}` or load one with `spore load -i LAYOUT`",
            store_dir.display()
        ),
    }
}

/// The wasm `spore run IMAGE` (and `serve`, `up`) runs, with the image's settings put under
/// `spec` by the launch path: the image is taken from the local store, or pulled as `pull`
/// says.
pub fn for_run(
    image: &str,
    store_dir: &Path,
    pull: PullPolicy,
    insecure: &[String],
    spec: &mut spore_sandbox::SandboxSpec,
) -> anyhow::Result<spore_sandbox::Wasm> {
    let store = open_store(store_dir)?;
    let manifest = ensure(&store, image, store_dir, pull, insecure)?;
    let opened = open_image(&store, manifest)?;
    spore_sandbox::launch::from_image(&store, &opened, spec).with_context(|| image.to_owned())
}
