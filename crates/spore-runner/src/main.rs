//! `spore-runner`: holds and runs the apps a `spore` agent sends it, over a Unix socket, TCP or
//! a serial line. Flags only; everything it keeps is under `--data-dir`. With an app attached
//! to its executable (a bundle, `spore bundle`), it runs that app instead.

use spore_runner::link::{DEFAULT_BAUD, Listener};
use spore_runner::server::{Config, Plugin, Runner};
use spore_types::ByteSize;
use spore_wire::BackendKind;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
spore-runner: runs the apps a spore agent deploys to it; never compiles.

usage: spore-runner [LINKS] [OPTIONS]

links (at least one):
  --socket PATH          a Unix socket (mode 0600)
  --listen HOST:PORT     TCP; needs --token-file
  --token-file FILE      the bearer token TCP links must give
  --serial DEVICE        a serial line (COBS frames, CRC, retransmission)
  --baud N               its speed [115200]

options:
  --data-dir DIR         modules, uploads, boot apps [./spore-runner]
  --backend LIST         engines offered, of native,pulley,wasmi [all it was built with]
  --max-module SIZE      largest module stored [64MiB]
  --memory SIZE          memory all apps may have together [1GiB]
  --max-instances N      apps held at once [64]
  --max-payload SIZE     largest frame payload [64KiB]
  --max-store SIZE       disk for modules and uploads [1GiB]
  --max-links N          links served at once [32]
  --plugin NAME=LIB[,CONFIG]
                         a host-function plugin (a shared library, docs/devices.md) as the
                         device NAME apps may be granted (spore … --device NAME); CONFIG is
                         its own (a serial port's path). Repeatable; a plugin that does not
                         load or declares a bad function stops the runner at start
  --version, --help
";

struct Args {
    config: Config,
    socket: Option<PathBuf>,
    listen: Option<String>,
    serial: Option<PathBuf>,
    baud: u32,
}

fn parse() -> Result<Option<Args>, String> {
    use lexopt::prelude::*;
    let mut config = Config::default();
    let (mut socket, mut listen, mut serial, mut baud, mut token_file) = (None, None, None, DEFAULT_BAUD, None);
    let mut parser = lexopt::Parser::from_env();
    let size = |p: &mut lexopt::Parser, flag: &str| -> Result<u64, String> {
        let v = p.value().map_err(|e| e.to_string())?.string().map_err(|e| e.to_string())?;
        v.parse::<ByteSize>().map(ByteSize::bytes).map_err(|e| format!("{flag} {v}: {e}"))
    };
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        let value = |p: &mut lexopt::Parser| -> Result<String, String> {
            p.value().map_err(|e| e.to_string())?.string().map_err(|e| e.to_string())
        };
        match arg {
            Long("socket") => socket = Some(PathBuf::from(value(&mut parser)?)),
            Long("listen") => listen = Some(value(&mut parser)?),
            Long("token-file") => token_file = Some(PathBuf::from(value(&mut parser)?)),
            Long("serial") => serial = Some(PathBuf::from(value(&mut parser)?)),
            Long("baud") => {
                let v = value(&mut parser)?;
                baud = v.parse().map_err(|_| format!("--baud {v}: give a speed such as 115200"))?;
            }
            Long("data-dir") => config.data_dir = PathBuf::from(value(&mut parser)?),
            Long("backend") => {
                let v = value(&mut parser)?;
                config.backends = v.split(',').map(backend).collect::<Result<_, _>>()?;
            }
            Long("max-module") => config.max_module_bytes = size(&mut parser, "--max-module")?,
            Long("memory") => config.memory_bytes = size(&mut parser, "--memory")?,
            Long("max-store") => config.max_store = size(&mut parser, "--max-store")?,
            Long("max-links") => {
                let v = value(&mut parser)?;
                config.max_links = v.parse().map_err(|_| format!("--max-links {v}: give a whole number"))?;
            }
            Long("max-instances") => {
                let v = value(&mut parser)?;
                config.max_instances = v.parse().map_err(|_| format!("--max-instances {v}: give a whole number"))?;
            }
            Long("plugin") => {
                let v = value(&mut parser)?;
                let plugin = plugin(&v, &config.plugins)?;
                config.plugins.push(std::sync::Arc::new(plugin));
            }
            Long("max-payload") => {
                let bytes = size(&mut parser, "--max-payload")?;
                config.max_payload = u32::try_from(bytes)
                    .ok()
                    .filter(|b| *b >= spore_wire::frame::MIN_MAX_PAYLOAD)
                    .ok_or_else(|| format!("--max-payload: between 1KiB and 4GiB, not {bytes} bytes"))?;
            }
            Long("version") => {
                println!("spore-runner {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            Short('h') | Long("help") => {
                print!("{USAGE}");
                return Ok(None);
            }
            other => return Err(format!("{}; see spore-runner --help", other.unexpected())),
        }
    }
    if socket.is_none() && listen.is_none() && serial.is_none() {
        return Err("give at least one link: --socket PATH, --listen HOST:PORT or --serial DEVICE".into());
    }
    match (&listen, token_file) {
        (Some(_), None) => return Err("--listen needs --token-file: TCP links must give a token".into()),
        (_, Some(file)) => {
            let token = std::fs::read_to_string(&file).map_err(|e| format!("--token-file {}: {e}", file.display()))?;
            let token = token.trim().to_string();
            spore_types::check_token(&token, &format!("--token-file {}", file.display()))?;
            config.token = Some(token);
        }
        (None, None) => {}
    }
    Ok(Some(Args { config, socket, listen, serial, baud }))
}

/// `NAME=LIB[,CONFIG]`, loaded and checked.
fn plugin(v: &str, loaded: &[std::sync::Arc<Plugin>]) -> Result<Plugin, String> {
    let Some((name, rest)) = v.split_once('=') else {
        return Err(format!(
            "--plugin {v}: give NAME=LIB[,CONFIG], e.g. uart1=./libspore_plugin_serial.so,/dev/ttyUSB0"
        ));
    };
    let (library, config) = rest.split_once(',').unwrap_or((rest, ""));
    let plugin = Plugin::load(name, std::path::Path::new(library), config).map_err(|e| format!("--plugin: {e}"))?;
    match spore_runner::server::plugin_conflict(loaded, &plugin) {
        Some(why) => Err(format!("--plugin {v}: {why}")),
        None => Ok(plugin),
    }
}

fn backend(name: &str) -> Result<BackendKind, String> {
    match name.trim() {
        "native" => Ok(BackendKind::Native),
        "pulley" => Ok(BackendKind::Pulley),
        "wasmi" => Ok(BackendKind::Wasmi),
        other => Err(format!("--backend: {other:?} is not an engine; give some of native,pulley,wasmi")),
    }
}

fn main() -> ExitCode {
    // A bundle (an app attached to this executable by `spore bundle`) runs its app instead.
    match spore_runner::bundle::attached() {
        Ok(Some(payload)) => std::process::exit(spore_runner::bundle::run(payload) & 0xff),
        Ok(None) => {}
        Err(e) => {
            eprintln!("spore-runner: {e}");
            return ExitCode::from(spore_types::exit_code::SPORE_ERROR as u8);
        }
    }
    let args = match parse() {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spore-runner: {e}");
            return ExitCode::from(2);
        }
    };
    let mut listeners = Vec::new();
    let opened = [
        args.socket.as_ref().map(|p| Listener::unix(p).map_err(|e| format!("--socket {}: {e}", p.display()))),
        args.listen.as_ref().map(|a| Listener::tcp(a).map_err(|e| format!("--listen {a}: {e}"))),
        args.serial
            .as_ref()
            .map(|p| Listener::serial(p, args.baud).map_err(|e| format!("--serial {}: {e}", p.display()))),
    ];
    for listener in opened.into_iter().flatten() {
        match listener {
            Ok(l) => listeners.push(l),
            Err(e) => {
                eprintln!("spore-runner: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let runner = match Runner::open(args.config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("spore-runner: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("spore-runner {} ({}) ready", env!("CARGO_PKG_VERSION"), runner.id());
    // Each listener serves until the process ends; failures are reported and retried there.
    let threads: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            let runner = runner.clone();
            std::thread::spawn(move || runner.serve(l))
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    ExitCode::SUCCESS
}
