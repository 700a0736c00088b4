//! How the one engine of a process is shaped. The defaults suit a one-shot `spore run`; the
//! daemon sizes a pool from its own configuration.

use std::path::PathBuf;
use std::time::Duration;

/// Where instance memories, tables and fiber stacks come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Allocation {
    /// mmap per instance. Cheapest when a process runs one or a few instances (`spore run`).
    OnDemand,
    /// Preallocated slots, reused across instances. Cheapest per instance when many run,
    /// and the only way to make instantiation a few microseconds.
    Pooling(PoolConfig),
}

/// Capacity of the pooling allocator. Every number is a hard ceiling: the pool reserves address
/// space for `instances × max_memory_bytes` up front, so size it from real needs.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// Live instances at once (core instances; a component counts each core instance inside).
    pub instances: u32,
    /// Linear memories across all instances.
    pub memories: u32,
    /// Tables across all instances.
    pub tables: u32,
    /// Component instances (each may hold several core instances).
    pub component_instances: u32,
    /// Fiber stacks: one per guest running at once.
    pub stacks: u32,
    /// Largest linear memory any instance may grow to; also the per-slot address reservation.
    pub max_memory_bytes: u64,
    /// Largest table (elements).
    pub max_table_elements: usize,
    /// Memories per core module.
    pub max_memories_per_module: u32,
    /// Tables per core module.
    pub max_tables_per_module: u32,
    /// Resident bytes of each memory kept after an instance ends, so the next one skips faults.
    pub memory_keep_resident: usize,
    /// Slots whose memory is given back to the kernel together, in one batch: fewer
    /// `madvise` calls and cross-core TLB flushes when instances live for one request.
    pub decommit_batch: usize,
}

impl PoolConfig {
    /// A pool for `sandboxes` live guests of at most `max_memory_bytes` each, with room for
    /// components (several core instances, memories and tables each).
    pub fn for_sandboxes(sandboxes: u32, max_memory_bytes: u64) -> Self {
        PoolConfig {
            instances: sandboxes.saturating_mul(4),
            memories: sandboxes.saturating_mul(2),
            tables: sandboxes.saturating_mul(4),
            component_instances: sandboxes,
            stacks: sandboxes,
            max_memory_bytes,
            ..PoolConfig::default()
        }
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            instances: 1000,
            memories: 1000,
            tables: 1000,
            component_instances: 1000,
            stacks: 1000,
            max_memory_bytes: 64 << 20,
            max_table_elements: 20_000,
            max_memories_per_module: 1,
            max_tables_per_module: 4,
            memory_keep_resident: 0,
            decommit_batch: 1,
        }
    }
}

/// What guests are compiled to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodeKind {
    /// Machine code for this host (Cranelift): the fastest.
    #[default]
    Native,
    /// Pulley, wasmtime's portable bytecode, interpreted: no executable memory is ever mapped,
    /// for hosts whose policy forbids it (W^X, no JIT); much slower on compute.
    Pulley,
}

impl std::str::FromStr for CodeKind {
    type Err = String;

    fn from_str(s: &str) -> Result<CodeKind, String> {
        match s {
            "native" => Ok(CodeKind::Native),
            "pulley" => Ok(CodeKind::Pulley),
            other => Err(format!("{other:?} is not an engine here: native or pulley")),
        }
    }
}

impl std::fmt::Display for CodeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CodeKind::Native => "native",
            CodeKind::Pulley => "pulley",
        })
    }
}

/// Everything that shapes the process's engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Instance allocation strategy.
    pub allocation: Allocation,
    /// Where compiled code is cached; `None` compiles in memory every time.
    pub cache_dir: Option<PathBuf>,
    /// The key that authenticates the cache's artifacts; `None` reads (or makes) the key file
    /// beside the cache directory ([`crate::CacheKey::default_path`]).
    pub cache_key: Option<crate::CacheKey>,
    /// Period of the epoch ticker: the preemption slice, and the resolution of CPU-time limits
    /// and timeouts. `None` starts no ticker: guests are then never preempted, which only suits
    /// a process running one guest without time limits (a plain `spore run`).
    pub epoch_tick: Option<Duration>,
    /// Stack of each async fiber a guest runs on. Smaller fits more sandboxes; must exceed
    /// `max_wasm_stack` plus host-call headroom.
    pub async_stack_size: usize,
    /// Deepest wasm stack a guest may use before a stack-overflow trap.
    pub max_wasm_stack: usize,
    /// What guests are compiled to.
    pub code: CodeKind,
    /// Spore's own data directories (image store, key-value and SQLite data, the daemon's
    /// state), which no mount may contain: see [`crate::SporeEngine::data_paths`].
    pub data_dirs: Vec<PathBuf>,
}

/// The engine profiles Spore's front ends use: each process picks the one that fits how many
/// guests it runs and for how long, instead of assembling its own.
impl EngineConfig {
    /// One guest in the foreground (`spore run`, `compile`, `build`, a pod's container):
    /// instances allocated on demand, and the epoch ticker only when a time limit needs it
    /// (without one the guest is never preempted, which one guest in a process does not need).
    pub fn one_shot(cache_dir: Option<PathBuf>, timed: bool) -> Self {
        EngineConfig {
            cache_dir,
            epoch_tick: timed.then(|| EngineConfig::default().epoch_tick).flatten(),
            ..EngineConfig::default()
        }
    }

    /// A server of short-lived instances (`spore serve`, `spore up`): a pool for `slots`
    /// instances at once of at most `max_memory` each. Instances live for one request, so
    /// slots are returned all the time: their memory goes back to the kernel in batches of up
    /// to 64, which saves most `madvise` calls and cross-core TLB flushes (measured: ~9.8k →
    /// ~11.9k req/s for hello on 2 cores; keeping pages resident, reset by memset, measured
    /// slower for a Rust guest's ~1 MiB memory).
    pub fn server(cache_dir: PathBuf, slots: u32, max_memory: u64) -> Self {
        let slots = slots.max(1);
        let pool = PoolConfig {
            decommit_batch: 64.min(slots as usize / 2).max(1),
            ..PoolConfig::for_sandboxes(slots, max_memory)
        };
        EngineConfig { allocation: Allocation::Pooling(pool), cache_dir: Some(cache_dir), ..EngineConfig::default() }
    }

    /// The daemon: a pool for `sandboxes` long-lived guests of at most `max_memory` each,
    /// preempted every `tick`, on fiber stacks of `stack` bytes (half of it for wasm frames).
    pub fn daemon(cache_dir: PathBuf, sandboxes: u32, max_memory: u64, tick: Duration, stack: usize) -> Self {
        EngineConfig {
            allocation: Allocation::Pooling(PoolConfig::for_sandboxes(sandboxes, max_memory)),
            cache_dir: Some(cache_dir),
            cache_key: None,
            epoch_tick: Some(tick),
            async_stack_size: stack,
            max_wasm_stack: stack / 2,
            code: CodeKind::Native,
            data_dirs: Vec::new(),
        }
    }

    /// The same, compiling guests to `code`.
    pub fn with_code(mut self, code: CodeKind) -> Self {
        self.code = code;
        self
    }

    /// The same, keeping mounts from containing `dirs`, Spore's own data.
    pub fn with_data_dirs(mut self, dirs: Vec<PathBuf>) -> Self {
        self.data_dirs = dirs;
        self
    }

    /// The same, with the compile cache authenticated by `key` instead of the key file beside
    /// it (the shim keeps the node's key in memory).
    pub fn with_cache_key(mut self, key: crate::CacheKey) -> Self {
        self.cache_key = Some(key);
        self
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            allocation: Allocation::OnDemand,
            cache_dir: None,
            cache_key: None,
            epoch_tick: Some(Duration::from_millis(10)),
            async_stack_size: 2 << 20,
            max_wasm_stack: 1 << 20,
            code: CodeKind::Native,
            data_dirs: Vec::new(),
        }
    }
}
