//! `spore`: WebAssembly containers. This file is the edge of the program — argument parsing,
//! logging, and the mapping from outcomes to exit codes; each command lives in its own module.

mod compile;
mod flags;
mod paths;
mod run;

use clap::{Parser, Subcommand};
use spore_sandbox::exit_code;
use std::path::PathBuf;
use std::process::ExitCode;

const EXAMPLES: &str = "\
Examples:
  spore run hello.wasm                       run a WASI command (module or component)
  spore run --dir ./data:/data:ro app.wasm   map a host directory, read-only
  spore run --memory 64M --timeout 5s app.wasm arg1 arg2
  spore run --invoke add calc.wasm 2 3       call an exported function of a reactor
  spore compile app.wasm                     precompile into the cache

Exit codes: the guest's own code; 134 trap; 137 memory limit; 152 CPU-time limit;
124 wall-clock timeout; 125 Spore could not run the program (bad flag, file or link).";

/// WebAssembly containers: build, ship and run wasm apps as sandboxes.
#[derive(Parser)]
#[command(name = "spore", version, about, after_help = EXAMPLES, max_term_width = 100)]
struct Cli {
    /// Compile cache directory [default: $XDG_CACHE_HOME/spore/compiled].
    #[arg(long, global = true, env = "SPORE_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once per process; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    Run(run::RunArgs),
    Compile(compile::CompileArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { ExitCode::from(exit_code::SPORE_ERROR as u8) } else { ExitCode::SUCCESS };
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SPORE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
    let cache_dir = paths::cache_dir(cli.cache_dir);
    let result = match cli.command {
        Command::Run(args) => run::run(args, cache_dir),
        Command::Compile(args) => compile::compile(args, cache_dir),
    };
    match result {
        Ok(code) => exit(code),
        Err(err) => {
            eprintln!("spore: {err:#}");
            exit(exit_code::SPORE_ERROR)
        }
    }
}

/// Process exit codes are 8 bits on Unix; a guest's `exit(n)` is reported modulo 256, as a
/// shell would see it.
fn exit(code: i32) -> ExitCode {
    ExitCode::from((code & 0xff) as u8)
}
