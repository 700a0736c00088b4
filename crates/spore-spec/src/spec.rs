//! [`SandboxSpec`]: everything needed to run one guest, and nothing that depends on where it
//! runs. It is plain data (serde) so the daemon can store it, the API can accept it, and the CLI
//! can print it with `--json`.

use crate::net::NetworkPolicy;
use crate::stdio::StdioSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The one description of a sandbox.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxSpec {
    /// Which wasm to run.
    pub program: ProgramSource,
    /// `argv[0]` as the guest sees it; defaults to the program's file name.
    pub argv0: Option<String>,
    /// Arguments after `argv[0]`.
    pub args: Vec<String>,
    /// Environment variables; the guest sees nothing of the host's environment.
    pub env: BTreeMap<String, String>,
    /// Host directories made visible to the guest. Nothing else of the host filesystem is.
    pub mounts: Vec<Mount>,
    /// Where stdin comes from and stdout/stderr go.
    pub stdio: StdioSpec,
    /// Resource ceilings; `None` fields are unlimited.
    pub limits: Limits,
    /// Which sockets the guest may open. Empty means none.
    pub network: NetworkPolicy,
    /// Run a named export instead of the command entry point (reactors, libraries).
    pub invoke: Option<Invoke>,
    /// Host capabilities granted beyond WASI's CLI, filesystem and sockets (key-value, config,
    /// outbound HTTP).
    pub capabilities: Capabilities,
    /// For an HTTP app (a `wasi:http` proxy component) run as a long-lived sandbox: where it
    /// is served. Each request runs in a fresh instance under this spec.
    pub http: Option<HttpSpec>,
    /// Whether the network grants (sockets and outbound HTTP) reach public addresses only,
    /// whatever they name — loopback, private, link-local and other non-public addresses
    /// refused even where a rule or an exact host names them. Set by a host whose operator
    /// keeps the box's own and its LAN's services from sandboxes (the daemon, unless its
    /// `[policy] private_network` allows them), never by a client: not part of the stored or
    /// submitted spec.
    #[serde(skip)]
    pub public_network_only: bool,
}

/// Where a sandbox's HTTP app listens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// `ADDR:PORT` to listen on.
    pub listen: String,
    /// Instances of the app running at once (one per request in flight, until it ends); more
    /// requests wait. Where sandboxes share a pool (the daemon), each counts as one sandbox
    /// toward its capacity. Unset: the host's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
}

/// Where the program's bytes come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgramSource {
    /// A `.wasm` file on the host running the sandbox.
    Path(PathBuf),
    /// A program the daemon stores by content, named by its digest (`sha256:<hex>`).
    Digest(String),
    /// An image reference: whoever runs the sandbox (CLI or daemon) resolves it to the
    /// image's wasm, files and settings first.
    Image(String),
}

impl Default for ProgramSource {
    fn default() -> Self {
        ProgramSource::Path(PathBuf::new())
    }
}

/// A host directory mapped into the guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// Directory on the host.
    pub host: PathBuf,
    /// Path the guest opens it by.
    pub guest: String,
    /// Whether the guest may create, write or delete under it.
    #[serde(default)]
    pub read_only: bool,
    /// The directory `host` named when the sandbox was created; every start checks it is still
    /// that one (see [`SandboxSpec::pin_mounts`]). Set by whoever creates the sandbox; a value
    /// a client sends is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<MountPin>,
}

/// The identity of a mount's host directory, recorded when the sandbox is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountPin {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

/// Ceilings on what one sandbox may consume. Hitting one ends that sandbox alone, with its
/// own exit status ([`crate::ExitStatus::LimitExceeded`]).
///
/// The counts (`max_*`) left unset take the host's ceiling: [`Counts::DEFAULT`] where instances
/// are allocated on demand, and the sandbox's share of the pool where there is one, so that
/// no sandbox can take the slots its neighbours need ([`Counts::within`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Linear memory, all memories together, plus the host memory of the guest's tables, in
    /// bytes.
    pub memory_bytes: Option<u64>,
    /// CPU time the guest may burn, in milliseconds (sleeping does not count).
    pub cpu_time_ms: Option<u64>,
    /// Wall-clock time from start to exit, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Core instances (a component may contain several).
    pub max_instances: Option<usize>,
    /// Tables across all instances.
    pub max_tables: Option<usize>,
    /// Elements in any one table.
    pub max_table_elements: Option<usize>,
    /// Linear memories across all instances.
    pub max_memories: Option<usize>,
    /// Host handles the guest may hold at once: open files and directories, sockets, streams,
    /// pollables, HTTP requests and bodies — every entry of its WASI resource table. Each open
    /// file or socket is a host descriptor, so this is also the sandbox's share of the
    /// process's descriptors; reaching it ends the guest
    /// ([`LimitKind::OpenFiles`](crate::LimitKind::OpenFiles)). Unset: 1024.
    pub max_open_files: Option<usize>,
}

/// Default of [`Limits::max_open_files`]: the soft `RLIMIT_NOFILE` most Linux systems give a
/// process.
pub const DEFAULT_MAX_OPEN_FILES: usize = 1024;

impl Limits {
    /// The open-handle ceiling that applies.
    pub fn open_files(&self) -> usize {
        self.max_open_files.unwrap_or(DEFAULT_MAX_OPEN_FILES)
    }

    /// The instance, table and memory counts that apply under the host's ceiling `host`.
    pub fn counts(&self, host: Counts) -> Counts {
        Counts {
            instances: self.max_instances.map_or(host.instances, |n| n.min(host.instances)),
            tables: self.max_tables.map_or(host.tables, |n| n.min(host.tables)),
            table_elements: self.max_table_elements.map_or(host.table_elements, |n| n.min(host.table_elements)),
            memories: self.max_memories.map_or(host.memories, |n| n.min(host.memories)),
        }
    }
}

/// Per-sandbox ceilings on instances, tables and memories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Core instances.
    pub instances: usize,
    /// Tables.
    pub tables: usize,
    /// Elements in any one table.
    pub table_elements: usize,
    /// Linear memories.
    pub memories: usize,
}

impl Counts {
    /// Where instances are allocated on demand: generous, since each costs only its own memory
    /// (and tables are charged to the memory limit).
    pub const DEFAULT: Counts = Counts { instances: 100, tables: 100, table_elements: 1_000_000, memories: 100 };

    /// The first count `limits` asks for above these ceilings: `(spec field, asked, ceiling)`.
    pub fn exceeded_by(&self, limits: &Limits) -> Option<(&'static str, usize, usize)> {
        [
            ("max_instances", limits.max_instances, self.instances),
            ("max_tables", limits.max_tables, self.tables),
            ("max_table_elements", limits.max_table_elements, self.table_elements),
            ("max_memories", limits.max_memories, self.memories),
        ]
        .into_iter()
        .find_map(|(name, asked, cap)| asked.filter(|&n| n > cap).map(|n| (name, n, cap)))
    }
}

/// A named export to call, with its arguments in text form (parsed by the export's types).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invoke {
    /// Export name.
    pub export: String,
    /// Arguments, one per parameter.
    #[serde(default)]
    pub args: Vec<String>,
}

/// Capabilities granted to the sandbox beyond WASI's CLI, filesystem and sockets. Everything
/// is denied unless named here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Capabilities {
    /// Where `wasi:http/outgoing-handler` may send requests, as Spin writes it:
    /// `https://api.example.com`, `http://10.0.0.5:8080`, `https://*.example.com:443`, `*://*:*`.
    /// Private and loopback addresses are refused unless an entry names them exactly.
    pub allowed_outbound_hosts: Vec<String>,
    /// `wasi:keyvalue` stores the guest may open, by name (`default`, …); the host decides
    /// where each lives.
    pub key_value_stores: Vec<String>,
    /// SQLite databases (`spin:sqlite`) the guest may open, by label (`default`, …), as in
    /// Spin's `sqlite_databases`; each app has its own database of a label.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sqlite_databases: Vec<String>,
    /// The variables the guest can read (`wasi:config`, Spin's variables).
    pub variables: BTreeMap<String, String>,
    /// The host's devices (plugins its operator loaded, docs/devices.md) whose functions the
    /// guest may import, by name: `uart1`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Whose stores (key-value and SQLite) a granted name opens: the app the host runs this sandbox for (the daemon
    /// gives each app its own `default`, as Spin does), or `None` where one app has the host
    /// to itself (`spore serve`, `up`). Set by the host, never by a client: not part of the
    /// stored or submitted spec.
    #[serde(skip)]
    pub key_value_namespace: Option<String>,
}

/// A spec that cannot run as written.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// An outbound HTTP grant that does not parse.
    #[error(transparent)]
    Outbound(#[from] crate::outbound::OutboundError),
    /// A device granted that the host does not have.
    #[error("this host has no device {name:?}; it has: {has} (the daemon's come from [devices] in its configuration)")]
    NoDevice {
        /// The name granted.
        name: String,
        /// What it has.
        has: String,
    },
    /// The program imports a device's function without the grant.
    #[error("the program imports {import}; grant it with --device {device}")]
    Ungranted {
        /// `module::name`.
        import: String,
        /// The device that has it.
        device: String,
    },
    /// A device name that is not a plain name.
    #[error("device {name:?}: a device's name is letters, digits, '-' and '_' (at most 64)")]
    DeviceName {
        /// The name.
        name: String,
    },
    /// A key-value store or SQLite database label that is not a plain name.
    #[error(
        "{what} {label:?}: a label is letters, digits, '-' and '_' (at most 64), as in Spin's key_value_stores and sqlite_databases"
    )]
    StoreLabel {
        /// "key-value store" or "SQLite database".
        what: &'static str,
        /// The label.
        label: String,
    },
    /// A mount's host directory is missing or not a directory.
    #[error("mount {host}: {problem}; create it or fix the path")]
    MountHost {
        /// Host path as given.
        host: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A mount's host directory is no longer the one the sandbox was created with: something
    /// (a guest with a writable mount over it, say) replaced it by a symlink or another
    /// directory.
    #[error(
        "mount {guest}: host directory {host} changed since the sandbox was created: {problem}; nothing was started. Restore it, or create the sandbox again to mount what is there now"
    )]
    MountChanged {
        /// Guest path.
        guest: String,
        /// Host path, as resolved at create.
        host: String,
        /// What is there now.
        problem: String,
    },
    /// A mount would give the guest the compile cache (or its key), whose contents every
    /// sandbox runs as native code.
    #[error(
        "mount {guest}: host directory {host} would expose Spore's compiled code or its key ({protected}), which every sandbox runs as native code; mount a directory that neither contains it nor lies inside it"
    )]
    MountExposesCache {
        /// Guest path.
        guest: String,
        /// Host path.
        host: String,
        /// The protected path it overlaps.
        protected: String,
    },
    /// A mount would hand the guest all of Spore's own data (image store, key-value stores,
    /// databases, state): every app's data, and the unpacked images other sandboxes start.
    #[error(
        "mount {guest}: host directory {host} contains Spore's data ({data}: its images, every app's key-value stores and databases), which no sandbox may be given; mount a directory that does not contain it"
    )]
    MountExposesData {
        /// Guest path.
        guest: String,
        /// Host path.
        host: String,
        /// The data directory it contains.
        data: String,
    },
    /// A mount's guest path is empty or relative in a way WASI cannot express.
    #[error("mount {host}: guest path {guest:?} must be absolute (e.g. /data) or `.`")]
    MountGuest {
        /// Host path as given.
        host: String,
        /// Guest path as given.
        guest: String,
    },
    /// An environment variable name is empty or contains `=` or NUL.
    #[error("environment variable {name:?}: names must be non-empty and contain no `=` or NUL")]
    EnvName {
        /// The offending name.
        name: String,
    },
    /// A limit of zero would stop the guest before it starts.
    #[error("limit {name} must be greater than zero")]
    ZeroLimit {
        /// Which limit.
        name: &'static str,
    },
}

/// Whether `label` is a key-value store label Spore accepts: 1–64 ASCII letters, digits, `-`
/// or `_`.
pub fn valid_store_label(label: &str) -> bool {
    spore_types::plain_name(label)
}

impl SandboxSpec {
    /// Checks what can be checked before anything is instantiated, so a bad spec fails with a
    /// message about the spec rather than an error from deep inside WASI.
    pub fn validate(&self) -> Result<(), SpecError> {
        for m in &self.mounts {
            let host = m.host.display().to_string();
            match std::fs::metadata(&m.host) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Err(SpecError::MountHost { host, problem: "is not a directory".into() }),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    return Err(SpecError::MountHost { host, problem: "host path does not exist".into() });
                }
                Err(err) => return Err(SpecError::MountHost { host, problem: err.to_string() }),
            }
            if m.guest.is_empty() || !(m.guest.starts_with('/') || m.guest.starts_with('.')) {
                return Err(SpecError::MountGuest { host, guest: m.guest.clone() });
            }
        }
        for name in self.env.keys() {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(SpecError::EnvName { name: name.clone() });
            }
        }
        crate::outbound::OutboundPolicy::parse(&self.capabilities.allowed_outbound_hosts)
            .map_err(SpecError::Outbound)?;
        let caps = &self.capabilities;
        for (what, labels) in [("key-value store", &caps.key_value_stores), ("SQLite database", &caps.sqlite_databases)]
        {
            if let Some(label) = labels.iter().find(|l| !valid_store_label(l)) {
                return Err(SpecError::StoreLabel { what, label: label.clone() });
            }
        }
        if let Some(name) = self.capabilities.devices.iter().find(|d| !spore_types::plain_name(d)) {
            return Err(SpecError::DeviceName { name: name.clone() });
        }
        let l = &self.limits;
        for (name, value) in
            [("memory_bytes", l.memory_bytes), ("cpu_time_ms", l.cpu_time_ms), ("timeout_ms", l.timeout_ms)]
        {
            if value == Some(0) {
                return Err(SpecError::ZeroLimit { name });
            }
        }
        for (name, value) in [
            ("max_instances", l.max_instances),
            ("max_tables", l.max_tables),
            ("max_table_elements", l.max_table_elements),
            ("max_memories", l.max_memories),
            ("max_open_files", l.max_open_files),
        ] {
            if value == Some(0) {
                return Err(SpecError::ZeroLimit { name });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json_and_rejects_unknown_fields() {
        let mut spec = SandboxSpec { program: ProgramSource::Path("app.wasm".into()), ..Default::default() };
        spec.args = vec!["a".into()];
        spec.env.insert("K".into(), "V".into());
        spec.limits.memory_bytes = Some(1 << 20);
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<SandboxSpec>(&json).unwrap(), spec);
        let err = serde_json::from_str::<SandboxSpec>(r#"{"programm": {"path": "x"}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `programm`"), "{err}");
    }

    #[test]
    fn validate_names_the_missing_mount() {
        let spec = SandboxSpec {
            mounts: vec![Mount {
                host: "/definitely/not/here".into(),
                guest: "/data".into(),
                read_only: false,
                pin: None,
            }],
            ..Default::default()
        };
        let err = spec.validate().unwrap_err().to_string();
        assert!(err.contains("/definitely/not/here") && err.contains("does not exist"), "{err}");
    }
}
