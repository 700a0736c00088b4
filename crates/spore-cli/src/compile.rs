//! `spore compile`: fill the compile cache ahead of time, so the first run starts warm.

use anyhow::Context;
use clap::Args;
use spore_engine::{CacheOutcome, EngineConfig, SporeEngine};
use std::path::PathBuf;

/// Precompile wasm files into the compile cache (runs then compile nothing).
#[derive(Args)]
#[command(
    after_help = "Examples:\n  spore compile app.wasm other.wasm\n  spore compile --init --dir ./assets:/assets app.wasm -o app.init.wasm"
)]
pub struct CompileArgs {
    /// The .wasm files (modules or components).
    #[arg(required = true, value_name = "FILE.wasm")]
    files: Vec<PathBuf>,
    /// Print one JSON object per file instead of text.
    #[arg(long)]
    json: bool,
    /// Pre-initialise the (one) module first: run EXPORT (default `wizer.initialize`) and keep
    /// the state it leaves; the result is written to -o and compiled.
    #[arg(long, value_name = "EXPORT", num_args = 0..=1, require_equals = true, default_missing_value = spore_sandbox::DEFAULT_INIT_EXPORT, requires = "output")]
    init: Option<String>,
    /// Where --init writes the pre-initialised module.
    #[arg(short, long, value_name = "OUT.wasm", requires = "init")]
    output: Option<PathBuf>,
    /// A directory the init may read: HOST[:GUEST] (always read-only); repeatable.
    #[arg(long = "dir", value_name = "HOST[:GUEST]", value_parser = crate::flags::parse_dir, requires = "init")]
    dirs: Vec<spore_sandbox::Mount>,
}

pub fn compile(args: CompileArgs, cache_dir: PathBuf, store_dir: &std::path::Path) -> anyhow::Result<i32> {
    let config =
        EngineConfig::one_shot(Some(cache_dir), args.init.is_some()).with_data_dirs(crate::paths::data_dirs(store_dir));
    let engine = SporeEngine::new(config)?;
    let cache = engine.cache().expect("configured with a cache dir");
    // With --init, what is compiled is the pre-initialised module, written first.
    let files = match (&args.init, &args.output) {
        (Some(export), Some(output)) => {
            let [file] = args.files.as_slice() else {
                anyhow::bail!("--init pre-initialises one module at a time; give one FILE.wasm");
            };
            let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let name = file.display().to_string();
            let snapshot =
                crate::preinit::snapshot(&engine, &bytes, &name, args.dirs.clone(), Default::default(), export)
                    .with_context(|| format!("--init={export}"))?;
            std::fs::write(output, &snapshot).with_context(|| format!("cannot write -o {}", output.display()))?;
            vec![output.clone()]
        }
        _ => args.files.clone(),
    };
    for file in &files {
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
