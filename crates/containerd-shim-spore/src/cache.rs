//! The node's compile cache, shared by every container the shim runs, and the engine each
//! container gets.

use spore_engine::{CacheKey, EngineConfig, SporeEngine};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The node's compile cache: one directory for every container this shim runs, so a wasm is
/// compiled once per node (per engine version), not once per container start.
///
/// A container sees only its own root, so the directory is opened here, before runwasi forks
/// its zygote and, from it, the containers: each container process inherits the descriptor
/// (the wasm runs in that process, nothing is exec'd, so it stays open) and reaches the
/// directory as `/proc/self/fd/N`. Only Spore's runtime uses it: a guest's filesystem is the
/// container's root, and WASI path resolution does not follow `/proc`'s magic links out of it.
///
/// The cache's key (which authenticates every artifact, see [`spore_engine::CacheKey`]) is read
/// here too, from the node's key file beside the directory, and stays in memory: no container
/// can reach the file, so a container that could write the shared directory still could not
/// make an artifact another pod's runtime would accept.
pub(crate) static CACHE_DIR: OnceLock<Option<(File, CacheKey)>> = OnceLock::new();

/// The node's compile cache at `dir` and its key; `None` (compile in memory) when either
/// cannot be had.
pub(crate) fn open_cache_dir(dir: &Path) -> Option<(File, CacheKey)> {
    let key = CacheKey::load_or_create(&CacheKey::default_path(dir)).ok()?;
    let file = std::fs::create_dir_all(dir).and_then(|_| File::open(dir)).ok()?;
    Some((file, key))
}

/// The engine for one container: with the node's compile cache when it is reachable and
/// writable by this container's user, in memory otherwise.
pub(crate) fn engine() -> anyhow::Result<SporeEngine> {
    if let Some(Some((dir, key))) = CACHE_DIR.get() {
        let cache_dir = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        let config = EngineConfig::one_shot(Some(cache_dir), true).with_cache_key(key.clone());
        if let Ok(engine) = SporeEngine::new(config) {
            return Ok(engine);
        }
    }
    Ok(SporeEngine::new(EngineConfig::one_shot(None, true))?)
}
