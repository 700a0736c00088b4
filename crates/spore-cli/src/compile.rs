//! `spore compile`: fill the compile cache ahead of time, so the first run starts warm.

use anyhow::Context;
use clap::Args;
use spore_engine::{CacheOutcome, EngineConfig, SporeEngine};
use std::path::PathBuf;

/// Precompile wasm files into the compile cache (runs then compile nothing).
#[derive(Args)]
#[command(after_help = "Example:\n  spore compile app.wasm other.wasm")]
pub struct CompileArgs {
    /// The .wasm files (modules or components).
    #[arg(required = true, value_name = "FILE.wasm")]
    files: Vec<PathBuf>,
    /// Print one JSON object per file instead of text.
    #[arg(long)]
    json: bool,
}

pub fn compile(args: CompileArgs, cache_dir: PathBuf) -> anyhow::Result<i32> {
    let engine = SporeEngine::new(EngineConfig::one_shot(Some(cache_dir), false))?;
    let cache = engine.cache().expect("configured with a cache dir");
    for file in &args.files {
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let started = std::time::Instant::now();
        let program = engine.load(&bytes).with_context(|| file.display().to_string())?;
        let elapsed = started.elapsed();
        let artifact = cache.artifact_path(&program.digest).unwrap_or_default();
        let outcome = match &program.outcome {
            CacheOutcome::Hit => "cached",
            CacheOutcome::Compiled => "compiled",
            CacheOutcome::Rebuilt { .. } => "rebuilt",
        };
        if args.json {
            let line = serde_json::json!({
                "file": file, "kind": program.kind.as_str(), "digest": program.digest.to_string(),
                "outcome": outcome, "artifact": artifact, "millis": elapsed.as_secs_f64() * 1e3,
            });
            println!("{line}");
        } else if program.outcome == CacheOutcome::Hit {
            println!("{}: already compiled ({} {})", file.display(), program.kind.as_str(), program.digest);
        } else {
            println!(
                "{}: {outcome} {} {} in {:.0?} -> {}",
                file.display(),
                program.kind.as_str(),
                program.digest,
                elapsed,
                artifact.display()
            );
        }
    }
    Ok(0)
}
