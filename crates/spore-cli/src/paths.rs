//! Where Spore keeps things on disk: XDG directories for users, `/var/lib/spore` for root.

use std::path::PathBuf;

/// The compile cache root: `$SPORE_CACHE_DIR`, else `$XDG_CACHE_HOME/spore/compiled`
/// (`~/.cache/spore/compiled`), or `/var/lib/spore/compiled` for root without a home.
pub fn cache_dir(flag: Option<PathBuf>) -> PathBuf {
    if let Some(dir) = flag {
        return dir;
    }
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("spore/compiled");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache/spore/compiled"),
        None => PathBuf::from("/var/lib/spore/compiled"),
    }
}
