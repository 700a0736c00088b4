//! The runner: one [`Runner`] holds the engines, the module store and the apps; each link gets
//! a session thread that speaks the protocol; each run gets a thread of its own, so one app's
//! spinning never holds up another or the protocol.
//!
//! State under the data directory: `id` (the runner's stable id), `modules/<sha256>.<kind>`
//! (verified modules and artifacts), `uploads/<sha256>.part` (interrupted uploads, resumed at
//! their length), `apps/<name>.app` (apps marked to start at boot).

mod apps;
mod engines;
mod session;
mod store;

use crate::link::Listener;
use apps::Apps;
use engines::Engines;
use spore_wire::{BackendKind, ErrorCode, Message};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use store::Store;

/// What a runner is given at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where its state lives.
    pub data_dir: PathBuf,
    /// The bearer token a TCP link must give (`None`: TCP links are refused).
    pub token: Option<String>,
    /// The engines it offers.
    pub backends: Vec<BackendKind>,
    /// Largest module or artifact it stores.
    pub max_module_bytes: u64,
    /// Memory all its apps may have together (the sum of their limits).
    pub memory_bytes: u64,
    /// Apps it holds at once.
    pub max_instances: u32,
    /// Largest frame payload it accepts.
    pub max_payload: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("spore-runner"),
            token: None,
            backends: vec![BackendKind::Native, BackendKind::Pulley, BackendKind::Wasmi],
            max_module_bytes: 64 << 20,
            memory_bytes: 1 << 30,
            max_instances: 64,
            max_payload: spore_wire::DEFAULT_MAX_PAYLOAD,
        }
    }
}

/// A request refused: the code and the message of the `ERROR` that answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Its code.
    pub code: ErrorCode,
    /// What was wrong and what to do.
    pub message: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal { code, message: message.into() }
    }

    fn into_message(self) -> Message {
        Message::Error(spore_wire::Error { code: self.code, message: self.message })
    }
}

/// A runner: its engines, modules and apps.
pub struct Runner {
    config: Config,
    id: String,
    started: Instant,
    engines: Engines,
    store: Store,
    apps: Apps,
}

impl Runner {
    /// Opens the data directory (making it if need be), the engines, and starts the apps
    /// marked to start at boot.
    pub fn open(config: Config) -> Result<Arc<Runner>, String> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot make the data directory {}: {e}", dir.display()))?;
        let id = runner_id(dir)?;
        let engines = Engines::new(&config.backends)?;
        let store = Store::open(dir, config.max_module_bytes)?;
        let apps = Apps::open(dir)?;
        let runner = Arc::new(Runner { config, id, started: Instant::now(), engines, store, apps });
        apps::start_boot_apps(&runner);
        Ok(runner)
    }

    /// Serves links from `listener` until it fails; each link on a thread of its own (a serial
    /// line's one after another).
    pub fn serve(self: &Arc<Runner>, listener: Listener) -> std::io::Result<()> {
        let needs_token = listener.needs_token();
        loop {
            let (reader, writer, peer) = match listener.accept() {
                Ok(link) => link,
                Err(e) if listener.is_serial() => return Err(e),
                Err(e) => {
                    eprintln!("spore-runner: accepting a link: {e}");
                    continue;
                }
            };
            let runner = self.clone();
            if listener.is_serial() {
                session::serve(runner, reader, writer, &peer, needs_token);
                continue;
            }
            let spawned = std::thread::Builder::new()
                .name("spore-runner-link".into())
                .spawn(move || session::serve(runner, reader, writer, &peer, needs_token));
            if let Err(e) = spawned {
                eprintln!("spore-runner: cannot start a thread for a link: {e}");
            }
        }
    }

    /// The runner's stable id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The id kept under the data directory, made on first start.
fn runner_id(dir: &std::path::Path) -> Result<String, String> {
    let path = dir.join("id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let mut bytes = [0u8; 8];
    fill_random(&mut bytes);
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    store::write_atomic(&path, id.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(id)
}

/// Fills `buf` from the kernel's entropy source.
pub(crate) fn fill_random(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: writes at most the rest of `buf`, which we own.
        let n = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n > 0 {
            filled += n as usize;
        }
    }
}
