//! The runner: one [`Runner`] holds the engines, the module store and the apps; each link gets
//! a session thread that speaks the protocol; each run gets a thread of its own, so one app's
//! spinning never holds up another or the protocol.
//!
//! State under the data directory: `id` (the runner's stable id), `modules/<sha256>.<kind>`
//! (verified modules and artifacts), `uploads/<sha256>.part` (interrupted uploads, resumed at
//! their length), `apps/<name>.app` (apps marked to start at boot).

#[cfg(not(all(feature = "wasmtime", feature = "wasmi")))]
mod absent;
mod apps;
pub(crate) mod engines;
mod session;
mod store;

use crate::link::Listener;
use apps::Apps;
use engines::Engines;
pub use engines::built_in;
pub use spore_plugin::{Plugin, conflict as plugin_conflict};
pub use spore_session::Refusal;
use spore_wire::{BackendKind, ErrorCode};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
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
    /// What stored modules and uploads may take on disk together.
    pub max_store: u64,
    /// Links served at once (a serial line is one).
    pub max_links: u32,
    /// Host-function plugins, loaded at start: the devices it can grant apps.
    pub plugins: Vec<Arc<Plugin>>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("spore-runner"),
            token: None,
            backends: built_in(),
            max_module_bytes: 64 << 20,
            memory_bytes: 1 << 30,
            max_instances: 64,
            max_payload: spore_wire::DEFAULT_MAX_PAYLOAD,
            max_store: 1 << 30,
            max_links: 32,
            plugins: Vec::new(),
        }
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
    /// Links being served now.
    links: AtomicU32,
}

impl Runner {
    /// The devices it can grant, as `HELLO_ACK` lists them.
    pub(crate) fn devices(&self) -> Vec<spore_wire::Device> {
        let plugins = &self.config.plugins;
        plugins.iter().map(|p| spore_wire::Device { name: p.name().into(), interface: p.interface().into() }).collect()
    }

    /// The plugins of the devices `names` (each the runner's: the session checked them).
    pub(crate) fn granted(&self, names: &[String]) -> Vec<Arc<Plugin>> {
        self.config.plugins.iter().filter(|p| names.iter().any(|n| n == p.name())).cloned().collect()
    }
}

impl Runner {
    /// Opens the data directory (making it if need be), the engines, and starts the apps
    /// marked to start at boot.
    pub fn open(config: Config) -> Result<Arc<Runner>, String> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot make the data directory {}: {e}", dir.display()))?;
        let id = runner_id(dir)?;
        let engines = Engines::new(&config.backends)?;
        let store = Store::open(dir, config.max_module_bytes, config.max_store)?;
        let apps = Apps::open(dir)?;
        let links = AtomicU32::new(0);
        let runner = Arc::new(Runner { config, id, started: Instant::now(), engines, store, apps, links });
        apps::start_boot_apps(&runner);
        Ok(runner)
    }

    /// Serves links from `listener`, each on a thread of its own — at most `max_links` at once
    /// over all listeners; a serial line's one after another, opened again (with a growing
    /// pause) when it fails, so a device unplugged and back is served again.
    pub fn serve(self: &Arc<Runner>, listener: Listener) {
        let kind = session::LinkKind { needs_token: listener.needs_token(), serial: listener.is_serial() };
        let mut pause = Duration::from_millis(100);
        loop {
            let (reader, writer, peer) = match listener.accept() {
                Ok(link) => {
                    pause = Duration::from_millis(100);
                    link
                }
                Err(e) => {
                    // Out of descriptors, a device gone: say so, wait, try again — not a busy loop.
                    eprintln!("spore-runner: {}: {e}; trying again in {pause:?}", listener.describe());
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            if self.links.fetch_add(1, Ordering::AcqRel) >= self.config.max_links {
                self.links.fetch_sub(1, Ordering::AcqRel);
                let busy =
                    Refusal::new(ErrorCode::EXHAUSTED, "the runner serves as many links as it may; try again later");
                let _ = crate::link::FrameWriter::new(writer).send(0, 0, &busy.into_message());
                continue;
            }
            let runner = self.clone();
            let serve = move || {
                session::serve(runner.clone(), reader, writer, &peer, kind);
                runner.links.fetch_sub(1, Ordering::AcqRel);
            };
            if kind.serial {
                serve();
                continue;
            }
            if let Err(e) = std::thread::Builder::new().name("spore-runner-link".into()).spawn(serve) {
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
    crate::system::fill_random(&mut bytes);
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    store::write_atomic(&path, id.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(id)
}
