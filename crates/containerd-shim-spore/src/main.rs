//! `containerd-shim-spore-v1`: the containerd runtime `io.containerd.spore.v1` (see the
//! library's documentation). Its environment, which containerd passes on, is read here.

use std::path::PathBuf;

fn main() {
    let cache_dir = std::env::var_os("SPORE_SHIM_CACHE_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(containerd_shim_spore::DEFAULT_CACHE_DIR), PathBuf::from);
    let unconfined = std::env::var_os("SPORE_SHIM_UNCONFINED").is_some_and(|v| v == "1");
    containerd_shim_spore::main(containerd_shim_spore::Settings { cache_dir, unconfined });
}
