//! Shared helpers for the end-to-end tests: the real `spore` binary, the real guests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Path of a built test guest. Guests are built by `guests/build.sh` (the test script runs it).
pub fn guest(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guests/out").join(format!("{name}.wasm"));
    assert!(path.exists(), "test guest {} is missing: run guests/build.sh first (scripts/test does)", path.display());
    path
}

/// A compile cache shared by the tests that do not examine the cache itself, so each guest is
/// compiled once per test run.
pub fn shared_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("spore-test-cache")
}

/// `spore` with a given cache directory and no stdin.
pub fn spore_with_cache(cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spore"));
    cmd.env("SPORE_CACHE_DIR", cache).env_remove("SPORE_LOG").stdin(Stdio::null());
    cmd
}

/// `spore` with the shared cache.
pub fn spore() -> Command {
    spore_with_cache(&shared_cache())
}

/// What a finished `spore` process showed its user.
pub struct Seen {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Seen {
    pub fn from(out: Output) -> Seen {
        Seen {
            code: out.status.code().expect("spore was killed by a signal"),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Runs `spore ARGS` to completion.
pub fn spore_run<I, S>(args: I) -> Seen
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Seen::from(spore().args(args).output().expect("cannot start spore"))
}

/// Writes `wat` text as a binary module into `dir` and returns its path.
pub fn wat_file(dir: &Path, name: &str, wat: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, wat::parse_str(wat).expect("test WAT must parse")).unwrap();
    path
}
