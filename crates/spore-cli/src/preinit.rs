//! Pre-initialisation from the command line: `spore build --init` and a Sporefile's `INIT`
//! (the entrypoint's init export run in a sandbox whose `/` is the image's own files,
//! read-only, its snapshot put in the image in place of the entrypoint), and `spore compile
//! --init` (a wasm file's, with the directories given, read-only).

use anyhow::Context;
use spore_build::Planned;
use spore_engine::SporeEngine;
use spore_sandbox::{Input, Limits, Mount, Output, ProgramSource, Runnable, SandboxSpec, StdioSpec};
use std::path::PathBuf;
use std::time::Instant;

/// The image label that records an image's entrypoint as pre-initialised, and with which
/// export: front ends run it like any other image; it tells people and tools what it is.
pub const LABEL: &str = "dev.spore.preinit";

/// How long an init may run at build time before the build gives up on it.
const INIT_TIMEOUT_MS: u64 = 300_000;

/// Replaces `planned`'s entrypoint with its snapshot after `export`, its init seeing the
/// image's files at `/`.
pub fn apply(engine: &SporeEngine, planned: &mut Planned, export: &str) -> anyhow::Result<()> {
    let root = tempfile::Builder::new().prefix("spore-init-").tempdir().context("a directory for the init's files")?;
    spore_build::write_root(&planned.image, root.path())
        .with_context(|| format!("writing the image's files for the init into {}", root.path().display()))?;
    let mounts = vec![Mount { host: root.path().to_path_buf(), guest: "/".into(), read_only: true, pin: None }];
    let env = planned.image.env.iter().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into()));
    let snapshot = snapshot(engine, &planned.entry_wasm, &planned.entry_path, mounts, env.collect(), export)?;
    if let Some((bytes, _)) = planned.image.files.get_mut(&planned.entry_path) {
        bytes.clone_from(&snapshot);
    }
    planned.entry_wasm = snapshot;
    planned.image.labels.insert(LABEL.into(), export.into());
    Ok(())
}

/// `wasm` (called `name`) after its `export` ran with `mounts` (read-only) and `env`; says
/// on stderr how long it took and what it weighs.
pub fn snapshot(
    engine: &SporeEngine,
    wasm: &[u8],
    name: &str,
    mounts: Vec<Mount>,
    env: std::collections::BTreeMap<String, String>,
    export: &str,
) -> anyhow::Result<Vec<u8>> {
    let started = Instant::now();
    let program = engine.load(wasm).with_context(|| format!("compiling {name}"))?;
    let runnable = Runnable::new(engine, program, name)?;
    let spec = SandboxSpec {
        program: ProgramSource::Path(PathBuf::from(name)),
        argv0: Some(name.to_owned()),
        env,
        mounts: mounts.into_iter().map(|m| Mount { read_only: true, ..m }).collect(),
        // What the init prints is build output.
        stdio: StdioSpec { stdin: Input::Null, stdout: Output::Inherit, stderr: Output::Inherit },
        limits: Limits { timeout_ms: Some(INIT_TIMEOUT_MS), ..Default::default() },
        ..Default::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let snapshot = runtime.block_on(runnable.preinit(wasm, &spec, export))?;
    eprintln!(
        "pre-initialised {name} with `{export}` in {:.0?} ({} -> {} bytes)",
        started.elapsed(),
        wasm.len(),
        snapshot.len()
    );
    Ok(snapshot)
}
