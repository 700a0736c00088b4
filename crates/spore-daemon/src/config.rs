//! The daemon's configuration: command-line flags over an optional TOML file over defaults.

use serde::{Deserialize, Serialize};
use spore_types::{ByteSize, HumanDuration};
use std::path::{Path, PathBuf};

use spore_api::model::RestartPolicy;
pub use spore_api::policy::PolicySection;

/// Everything the daemon needs to start. Loaded from TOML (`--config`), then overridden by flags.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// Unix socket of the API (mode 0600). Left empty, the binary puts the user's (or root's)
    /// default here before the daemon runs.
    pub socket: PathBuf,
    /// State database, programs, logs and compile cache live here (empty: as `socket`).
    pub data_dir: PathBuf,
    /// Optional TCP address; requires `token_file`.
    pub listen: Option<String>,
    /// File holding the bearer token TCP clients must send.
    pub token_file: Option<PathBuf>,
    /// PEM certificate chain for TLS on the TCP API (with `tls_key`); required unless the TCP
    /// address is loopback.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Sizes of the instance pool: the daemon's capacity.
    pub pool: PoolSection,
    /// Per-sandbox log files.
    pub logs: LogSection,
    /// Engine tuning.
    pub engine: EngineSection,
    /// What a create that does not say gets.
    pub defaults: DefaultsSection,
    /// How images named in creates are fetched.
    pub registries: RegistriesSection,
    /// What an API client may ask for.
    pub policy: PolicySection,
    /// How the API's listeners hold connections.
    pub api: ApiSection,
    /// Where key-value stores live (Spin's runtime-config.toml); `default` is embedded in the
    /// data dir without one.
    pub runtime_config: Option<PathBuf>,
    /// `[devices.NAME]`: host-function plugins loaded at start, each the device `NAME` a
    /// sandbox may be granted (docs/devices.md).
    pub devices: std::collections::BTreeMap<String, DeviceSection>,
}

/// `[devices.NAME]`: one plugin.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceSection {
    /// The plugin's shared library.
    pub library: PathBuf,
    /// Its own configuration string (a serial port's path).
    pub config: String,
}

/// `[registries]`: registries reached over plain HTTP (loopback ones always are).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistriesSection {
    /// `host[:port]` of each insecure registry.
    pub insecure: Vec<String>,
    /// Spore's registry credentials (`spore login`'s file; empty: the binary's default).
    pub auth_file: PathBuf,
    /// Docker's `config.json`, read for credentials too (empty: none).
    pub docker_config: PathBuf,
}

/// `[defaults]`: limits and restart policy for sandboxes whose create request leaves them
/// unset — so an operator can cap every vendor's app without trusting each deploy.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DefaultsSection {
    /// Memory limit, e.g. "16M".
    pub memory: Option<ByteSize>,
    /// CPU-time limit, e.g. "10s".
    pub cpu_time: Option<HumanDuration>,
    /// Wall-clock limit, e.g. "1h".
    pub timeout: Option<HumanDuration>,
    /// Restart policy: no, always, on-failure, on-failure:N.
    pub restart: Option<RestartPolicy>,
}

/// `[api]`: the API's front doors (the Unix socket and TCP), each on its own: a client must
/// send a request's headers within `header_read_timeout` (also the idle limit between
/// requests), and at most `max_connections` are open.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    /// e.g. "30s".
    pub header_read_timeout: HumanDuration,
    /// Connections open at once, per listener.
    pub max_connections: usize,
}

impl Default for ApiSection {
    fn default() -> Self {
        let door = spore_serve::door::Door::default();
        ApiSection {
            header_read_timeout: HumanDuration(door.header_read_timeout),
            max_connections: door.max_connections,
        }
    }
}

/// `[pool]`: how many sandboxes may be alive at once, and how big each may get.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSection {
    /// Live sandboxes at once (instance slots). Creates beyond it get 429.
    pub sandboxes: u32,
    /// Largest linear memory of any sandbox, e.g. "64M"; also each slot's address reservation.
    pub max_memory: ByteSize,
    /// Stack of each sandbox's fiber, e.g. "256K"; the deepest wasm stack is half of it.
    pub stack: ByteSize,
}

/// `[logs]`: rotation of per-sandbox logs and the flood bound.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// Rotate a sandbox's log when it reaches this size, e.g. "1M".
    pub max_size: ByteSize,
    /// Rotated files kept per sandbox.
    pub max_files: u32,
    /// Bytes one sandbox may have waiting to be written; beyond it output is dropped and counted.
    pub buffer_per_sandbox: ByteSize,
}

/// `[engine]`: preemption slice, and what guests are compiled to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSection {
    /// Epoch tick, e.g. "10ms".
    pub epoch_tick: HumanDuration,
    /// "native" (Cranelift machine code) or "pulley" (wasmtime's bytecode interpreter: no
    /// executable memory is mapped, for hosts that forbid it; much slower on compute).
    pub code: spore_engine::CodeKind,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket: PathBuf::new(),
            data_dir: PathBuf::new(),
            listen: None,
            token_file: None,
            tls_cert: None,
            tls_key: None,
            pool: PoolSection::default(),
            logs: LogSection::default(),
            engine: EngineSection::default(),
            defaults: DefaultsSection::default(),
            registries: RegistriesSection::default(),
            policy: PolicySection::default(),
            api: ApiSection::default(),
            runtime_config: None,
            devices: Default::default(),
        }
    }
}

impl Default for PoolSection {
    fn default() -> Self {
        PoolSection { sandboxes: 10_000, max_memory: ByteSize(64 << 20), stack: ByteSize(256 << 10) }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection { max_size: ByteSize(1 << 20), max_files: 2, buffer_per_sandbox: ByteSize(256 << 10) }
    }
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineSection {
            epoch_tick: HumanDuration(std::time::Duration::from_millis(10)),
            code: spore_engine::CodeKind::Native,
        }
    }
}

/// The configuration file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Missing or unreadable.
    #[error("config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML, or a key Spore does not read, or a value of the wrong form (the message
    /// names the key and the line).
    #[error("config {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Where and why.
        source: Box<toml::de::Error>,
    },
}

impl DaemonConfig {
    /// Reads a TOML config file; unknown keys are an error naming the key.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: shown, source: Box::new(source) })
    }
}
