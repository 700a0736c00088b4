//! Pre-initialisation from the command line (`spore build --init`, a Sporefile's `INIT`): the
//! entrypoint's init export run in a sandbox whose `/` is the image's own files, read-only,
//! and its snapshot put in the image in place of the entrypoint.

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

/// Replaces `planned`'s entrypoint with its snapshot after `export`; says how long it took.
pub fn apply(engine: &SporeEngine, planned: &mut Planned, export: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let root = tempfile::Builder::new().prefix("spore-init-").tempdir().context("a directory for the init's files")?;
    spore_build::write_root(&planned.image, root.path())
        .with_context(|| format!("writing the image's files for the init into {}", root.path().display()))?;
    let program = engine.load(&planned.entry_wasm).context("compiling the entrypoint")?;
    let runnable = Runnable::new(engine, program, &planned.entry_path)?;
    let env = planned.image.env.iter().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into()));
    let spec = SandboxSpec {
        program: ProgramSource::Path(PathBuf::from(&planned.entry_path)),
        argv0: Some(planned.entry_path.clone()),
        env: env.collect(),
        mounts: vec![Mount { host: root.path().to_path_buf(), guest: "/".into(), read_only: true, pin: None }],
        // What the init prints is build output.
        stdio: StdioSpec { stdin: Input::Null, stdout: Output::Inherit, stderr: Output::Inherit },
        limits: Limits { timeout_ms: Some(INIT_TIMEOUT_MS), ..Default::default() },
        ..Default::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let snapshot = runtime.block_on(runnable.preinit(&planned.entry_wasm, &spec, export))?;
    eprintln!(
        "pre-initialised {} with `{export}` in {:.0?} ({} -> {} bytes)",
        planned.entry_path,
        started.elapsed(),
        planned.entry_wasm.len(),
        snapshot.len()
    );
    if let Some((bytes, _)) = planned.image.files.get_mut(&planned.entry_path) {
        bytes.clone_from(&snapshot);
    }
    planned.entry_wasm = snapshot;
    planned.image.labels.insert(LABEL.into(), export.into());
    Ok(())
}
