//! [`SporeEngine`]: the process's one wasmtime engine plus its compile cache.

use crate::cache::{CacheKey, CompileCache, Lookup};
use crate::config::{Allocation, CodeKind, EngineConfig, PoolConfig};
use crate::detect::detect;
use crate::error::{EngineError, LoadError};
use crate::program::{CacheOutcome, Program, ProgramCode};
use crate::ticker;
use spore_types::{Digest, Wasm, WasmFileError, WasmKind};
use std::borrow::Cow;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Module, PoolingAllocationConfig};

/// One guest's share of an engine's pool (see [`SporeEngine::pool_share`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolShare {
    /// Core instances.
    pub instances: usize,
    /// Linear memories.
    pub memories: usize,
    /// Tables.
    pub tables: usize,
    /// Elements in any one table (the pool's slot size).
    pub table_elements: usize,
}

/// The one engine of a Spore process.
#[derive(Clone)]
pub struct SporeEngine {
    engine: Engine,
    cache: Option<CompileCache>,
    config: EngineConfig,
    /// See [`SporeEngine::protected_paths`]; decided once, read at every sandbox start.
    protected: std::sync::Arc<[std::path::PathBuf]>,
}

impl SporeEngine {
    /// Builds the engine and starts its epoch ticker.
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        let engine = Engine::new(&wasmtime_config(&config)?).map_err(EngineError::Config)?;
        let cache = match &config.cache_dir {
            Some(root) => {
                let key = match &config.cache_key {
                    Some(key) => key.clone(),
                    None => {
                        let path = CacheKey::default_path(root);
                        CacheKey::load_or_create(&path).map_err(|e| EngineError::cache_key(path, e))?
                    }
                };
                Some(
                    CompileCache::new(root, &engine, key)
                        .map_err(|source| EngineError::CacheDir { path: root.clone(), source })?,
                )
            }
            None => None,
        };
        if let Some(tick) = config.epoch_tick {
            ticker::start(engine.weak(), tick);
        }
        let protected = match (&cache, &config.cache_key) {
            (Some(cache), None) => vec![cache.root().to_owned(), CacheKey::default_path(cache.root())],
            (Some(cache), Some(_)) => vec![cache.root().to_owned()],
            (None, _) => Vec::new(),
        };
        Ok(SporeEngine { engine, cache, config, protected: protected.into() })
    }

    /// The underlying wasmtime engine, for linkers and stores.
    pub fn wasmtime(&self) -> &Engine {
        &self.engine
    }

    /// The configuration this engine was built from.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// What one sandbox may take of the pool, where instances come from one: the pool's
    /// slots divided by the guests it runs at once (its stacks). A sandbox held to this share
    /// cannot take the slots its neighbours need.
    pub fn pool_share(&self) -> Option<PoolShare> {
        let Allocation::Pooling(pool) = &self.config.allocation else { return None };
        let guests = pool.stacks.max(1);
        let share = |n: u32| (n / guests).max(1) as usize;
        Some(PoolShare {
            instances: share(pool.instances),
            memories: share(pool.memories),
            tables: share(pool.tables),
            table_elements: pool.max_table_elements,
        })
    }

    /// Host paths no sandbox may be given, since whoever writes them chooses the native code
    /// this engine runs: the compile cache and its key file.
    pub fn protected_paths(&self) -> &[std::path::PathBuf] {
        &self.protected
    }

    /// Spore's own data directories, which no mount may contain (a mount of one's parent, a
    /// home directory, would hand a guest every app's stores and the unpacked images other
    /// sandboxes start from). A mount inside one is an explicit choice and allowed: an
    /// image's own root is one, read-only.
    pub fn data_paths(&self) -> &[std::path::PathBuf] {
        &self.config.data_dirs
    }

    /// The compile cache, when one is configured.
    pub fn cache(&self) -> Option<&CompileCache> {
        self.cache.as_ref()
    }

    /// Turns wasm bytes into a [`Program`]: from the cache when a trusted entry exists,
    /// otherwise compiled (and cached). Never executes an entry it could not verify.
    pub fn load(&self, bytes: &[u8]) -> Result<Program, LoadError> {
        self.load_as(detect(bytes)?, Digest::of(bytes), || Ok(bytes.into()))
    }

    /// [`SporeEngine::load`] for a [`Wasm`] as a front end holds it: a file with a recorded
    /// digest is read whole only when its compiled code is not cached (and then must still
    /// hash to that digest).
    pub fn load_wasm(&self, wasm: &Wasm) -> Result<Program, LoadError> {
        match wasm {
            Wasm::Bytes(bytes) => self.load(bytes),
            Wasm::File { digest, .. } => self.load_as(wasm.kind()?, *digest, || wasm.bytes()),
        }
    }

    /// Loads the program `digest` of `kind`, whose bytes `read` gives when it must be compiled.
    fn load_as<'a>(
        &self,
        kind: WasmKind,
        digest: Digest,
        read: impl FnOnce() -> Result<Cow<'a, [u8]>, WasmFileError>,
    ) -> Result<Program, LoadError> {
        let Some(cache) = &self.cache else {
            let code = self.compile_in_memory(kind, &read()?)?;
            return Ok(Program { digest, kind, code, outcome: CacheOutcome::Compiled });
        };
        let outcome = match cache.lookup(&self.engine, kind, &digest) {
            Lookup::Hit(code) => {
                tracing::debug!(%digest, "compile cache hit");
                return Ok(Program { digest, kind, code, outcome: CacheOutcome::Hit });
            }
            Lookup::Miss => CacheOutcome::Compiled,
            Lookup::Untrusted(reason) => {
                tracing::warn!(%digest, dir = %cache.dir().display(), "compile cache entry rejected ({reason}); recompiling");
                cache.evict(&digest);
                CacheOutcome::Rebuilt { reason }
            }
        };
        let bytes = read()?;
        let started = std::time::Instant::now();
        let artifact = match kind {
            WasmKind::Module => self.engine.precompile_module(&bytes),
            WasmKind::Component => self.engine.precompile_component(&bytes),
        }
        .map_err(|err| invalid(kind, err))?;
        tracing::debug!(%digest, elapsed = ?started.elapsed(), "compiled");
        if let Err(err) = cache.store(&digest, &artifact) {
            // The run can proceed from memory; only the next start loses the shortcut.
            tracing::warn!(dir = %cache.dir().display(), "cannot write the compile cache ({err}); continuing without it");
        }
        // SAFETY: `artifact` was produced by this very engine a moment ago.
        let code = unsafe {
            match kind {
                WasmKind::Module => Module::deserialize(&self.engine, &artifact).map(ProgramCode::Module),
                WasmKind::Component => Component::deserialize(&self.engine, &artifact).map(ProgramCode::Component),
            }
        }
        .map_err(|err| invalid(kind, err))?;
        Ok(Program { digest, kind, code, outcome })
    }

    fn compile_in_memory(&self, kind: WasmKind, bytes: &[u8]) -> Result<ProgramCode, LoadError> {
        match kind {
            WasmKind::Module => Module::from_binary(&self.engine, bytes).map(ProgramCode::Module),
            WasmKind::Component => Component::from_binary(&self.engine, bytes).map(ProgramCode::Component),
        }
        .map_err(|err| invalid(kind, err))
    }
}

fn invalid(kind: WasmKind, err: wasmtime::Error) -> LoadError {
    LoadError::Invalid { kind: kind.as_str(), message: format!("{err:#}") }
}

/// The wasmtime settings every Spore engine shares; only allocation, stack sizes and the kind
/// of code vary. Pulley's artifacts have their own compatibility hash, so the compile cache
/// keeps them apart from native code.
fn wasmtime_config(config: &EngineConfig) -> Result<Config, EngineError> {
    let mut c = Config::new();
    if config.code == CodeKind::Pulley {
        let pulley = if cfg!(target_pointer_width = "64") { "pulley64" } else { "pulley32" };
        c.target(pulley).map_err(EngineError::Config)?;
    }
    // WASI 0.3 components use the component model's async ABI.
    c.wasm_component_model_async(true);
    c.epoch_interruption(true)
        .memory_init_cow(true)
        .async_stack_size(config.async_stack_size)
        .max_wasm_stack(config.max_wasm_stack);
    if let Allocation::Pooling(pool) = &config.allocation {
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(pool)));
        // With a pool, each memory slot reserves exactly what it may grow to: address space
        // planned from the ceiling, not wasmtime's 4 GiB default.
        c.memory_reservation(pool.max_memory_bytes);
    }
    Ok(c)
}

fn pooling(pool: &PoolConfig) -> PoolingAllocationConfig {
    let mut p = PoolingAllocationConfig::new();
    p.total_core_instances(pool.instances)
        .total_component_instances(pool.component_instances)
        .total_memories(pool.memories)
        .total_tables(pool.tables)
        .total_stacks(pool.stacks)
        .max_memory_size(pool.max_memory_bytes as usize)
        .table_elements(pool.max_table_elements)
        .max_memories_per_module(pool.max_memories_per_module)
        .max_tables_per_module(pool.max_tables_per_module)
        .linear_memory_keep_resident(pool.memory_keep_resident)
        .decommit_batch_size(pool.decommit_batch.max(1));
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// `(module (func (export "_start")))`
    const EMPTY_COMMAND: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02, 0x01, 0x00,
        0x07, 0x0a, 0x01, 0x06, 0x5f, 0x73, 0x74, 0x61, 0x72, 0x74, 0x00, 0x00, 0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b,
    ];

    fn engine(cache: &Path) -> SporeEngine {
        SporeEngine::new(EngineConfig { cache_dir: Some(cache.to_owned()), ..EngineConfig::default() }).unwrap()
    }

    #[test]
    fn second_load_hits_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        assert_eq!(e.load(EMPTY_COMMAND).unwrap().outcome, CacheOutcome::Compiled);
        assert_eq!(e.load(EMPTY_COMMAND).unwrap().outcome, CacheOutcome::Hit);
    }

    #[test]
    fn corrupt_truncated_and_foreign_entries_are_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let program = e.load(EMPTY_COMMAND).unwrap();
        let path = e.cache().unwrap().artifact_path(&program.digest).unwrap();
        let good = std::fs::read(&path).unwrap();

        // A flipped byte in the middle (machine code or metadata).
        let mut flipped = good.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0xff;
        std::fs::write(&path, &flipped).unwrap();
        assert!(matches!(e.load(EMPTY_COMMAND).unwrap().outcome, CacheOutcome::Rebuilt { .. }));
        assert_eq!(std::fs::read(&path).unwrap(), good, "the entry is replaced by a good one");

        // Truncated.
        std::fs::write(&path, &good[..good.len() / 3]).unwrap();
        assert!(matches!(e.load(EMPTY_COMMAND).unwrap().outcome, CacheOutcome::Rebuilt { .. }));

        // Foreign: a valid artifact made with another key (another host, or a forger who does
        // not have this host's key), under a name and ref that match it.
        let elsewhere = tempfile::tempdir().unwrap();
        let other = SporeEngine::new(EngineConfig {
            cache_dir: Some(elsewhere.path().to_owned()),
            cache_key: Some(CacheKey::from_bytes([7; 32])),
            ..EngineConfig::default()
        })
        .unwrap();
        other.load(EMPTY_COMMAND).unwrap();
        let forged = other.cache().unwrap().artifact_path(&program.digest).unwrap();
        let mine = e.cache().unwrap();
        std::fs::copy(&forged, mine.dir().join(forged.file_name().unwrap())).unwrap();
        let name = forged.file_stem().unwrap().to_str().unwrap().to_owned();
        std::fs::write(mine.dir().join(format!("{}.ref", program.digest.hex())), name).unwrap();
        let outcome = e.load(EMPTY_COMMAND).unwrap().outcome;
        assert!(
            matches!(&outcome, CacheOutcome::Rebuilt { reason } if reason.contains("not made by this host")),
            "{outcome:?}"
        );
        assert_eq!(e.load(EMPTY_COMMAND).unwrap().outcome, CacheOutcome::Hit);
    }

    #[test]
    fn the_key_is_made_once_owner_only_and_beside_the_cache() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("compiled");
        let a = engine(&root);
        let key = dir.path().join("compiled.key");
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        let program = a.load(EMPTY_COMMAND).unwrap();
        // A second process reads the same key and trusts the first one's artifact.
        assert_eq!(engine(&root).load(EMPTY_COMMAND).unwrap().outcome, CacheOutcome::Hit);
        assert_eq!(a.protected_paths(), [root.clone(), key.clone()]);
        // A new key (the file deleted) trusts nothing of the old one's.
        std::fs::remove_file(&key).unwrap();
        let b = engine(&root);
        assert!(matches!(b.load(EMPTY_COMMAND).unwrap().outcome, CacheOutcome::Rebuilt { .. }), "{program:?}");
    }

    #[test]
    fn concurrent_loads_of_one_wasm_leave_a_valid_entry() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| e.load(EMPTY_COMMAND).unwrap());
            }
        });
        assert_eq!(e.load(EMPTY_COMMAND).unwrap().outcome, CacheOutcome::Hit);
    }

    #[test]
    fn invalid_wasm_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let err = e.load(&EMPTY_COMMAND[..20]).unwrap_err().to_string();
        assert!(err.starts_with("invalid WebAssembly module"), "{err}");
    }
}
