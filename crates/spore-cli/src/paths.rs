//! Where Spore keeps things on disk: XDG directories for users, `/var/lib/spore` for root.
//! The binary is the one place that reads the environment for them; the libraries are given
//! paths.

use spore_registry::AuthFiles;
use std::path::PathBuf;

fn var(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// `$HOME`, or `fallback` without one.
fn home_or(fallback: &str) -> PathBuf {
    var("HOME").unwrap_or_else(|| PathBuf::from(fallback))
}

/// The daemon's API socket and data directory: `$XDG_RUNTIME_DIR/spore/spore.sock` and
/// `$XDG_DATA_HOME/spore` for users; `/run/spore/spore.sock` and `/var/lib/spore` for root.
/// `SPORE_DATA_DIR` overrides the data directory (the image store, key-value stores and the
/// daemon's state live there).
pub fn daemon_paths() -> (PathBuf, PathBuf) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let (socket, data) = if unsafe { libc::geteuid() } == 0 {
        (PathBuf::from("/run/spore/spore.sock"), PathBuf::from("/var/lib/spore"))
    } else {
        let runtime = var("XDG_RUNTIME_DIR").unwrap_or_else(std::env::temp_dir);
        let data = var("XDG_DATA_HOME").unwrap_or_else(|| home_or(".").join(".local/share"));
        (runtime.join("spore/spore.sock"), data.join("spore"))
    };
    (socket, var("SPORE_DATA_DIR").unwrap_or(data))
}

/// Spore's own data, which no sandbox's mount may contain: the image store `store_dir` and the
/// data directory (key-value stores, SQLite databases, the daemon's state).
pub fn data_dirs(store_dir: &std::path::Path) -> Vec<PathBuf> {
    vec![store_dir.to_owned(), daemon_paths().1]
}

/// Spore's credentials file (`$SPORE_AUTH_FILE`, else `$XDG_CONFIG_HOME/spore/auth.json`) and
/// Docker's (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).
pub fn auth_files() -> AuthFiles {
    let spore = var("SPORE_AUTH_FILE").unwrap_or_else(|| {
        var("XDG_CONFIG_HOME").unwrap_or_else(|| home_or("/").join(".config")).join("spore/auth.json")
    });
    let docker =
        var("DOCKER_CONFIG").map_or_else(|| home_or("/").join(".docker/config.json"), |d| d.join("config.json"));
    AuthFiles::new(spore, Some(docker))
}

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
