//! Shared helpers for the end-to-end tests: the real `spore` binary, the real guests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub mod peers;
pub mod served;

/// A file of the source tree, found from where `cargo test` runs this (read at run time, not
/// built in: a test binary another checkout built and cargo kept as fresh must not read that
/// checkout's files).
pub fn source(path: &str) -> PathBuf {
    Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../..").join(path)
}

/// Path of a built test guest. Guests are built by `guests/build.sh` (the test script runs it).
pub fn guest(name: &str) -> PathBuf {
    let path = source("guests/out").join(format!("{name}.wasm"));
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

/// A command run to completion and what it showed: `spore().args([...]).seen()`.
pub trait RunSeen {
    /// Runs it, waits, and keeps its exit code and output.
    fn seen(&mut self) -> Seen;
}

impl RunSeen for Command {
    fn seen(&mut self) -> Seen {
        Seen::from(self.output().expect("cannot start the command"))
    }
}

/// Runs `spore ARGS` to completion.
pub fn spore_run<I, S>(args: I) -> Seen
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    spore().args(args).seen()
}

/// Writes `wat` text as a binary module into `dir` and returns its path.
pub fn wat_file(dir: &Path, name: &str, wat: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, wat::parse_str(wat).expect("test WAT must parse")).unwrap();
    path
}

/// A real `spore daemon` on a socket in a temp dir; killed (by PID) when dropped.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub child: Option<std::process::Child>,
    pub extra: Vec<String>,
}

impl Daemon {
    /// Starts a daemon with `extra` flags and waits until its API answers.
    pub fn start(extra: &[&str]) -> Daemon {
        Daemon::start_with_config("", extra)
    }

    /// Starts a daemon with the config file `toml` (when not empty) and `extra` flags.
    pub fn start_with_config(toml: &str, extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if !toml.is_empty() {
            let config = dir.path().join("daemon.toml");
            std::fs::write(&config, toml).unwrap();
            args.extend(["--config".to_owned(), config.display().to_string()]);
        }
        let mut d = Daemon { dir, child: None, extra: args };
        d.spawn();
        d
    }

    /// Starts a daemon whose policy lets sandboxes mount the system's temporary directory
    /// (where the tests' directories are).
    pub fn start_allowing_temp_mounts(extra: &[&str]) -> Daemon {
        let temp = std::env::temp_dir().display().to_string();
        Daemon::start_with_config(&format!("[policy]\nmount_roots = [{temp:?}]\n"), extra)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("spore.sock")
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// (Re)starts the daemon process on the same socket and data dir.
    pub fn spawn(&mut self) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("daemon.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_spore"))
            .arg("daemon")
            .arg("--socket")
            .arg(self.socket())
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start spore daemon");
        self.child = Some(child);
        for _ in 0..500 {
            if http(&self.socket(), "GET", "/v1/health", None).0 == 200 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("the daemon did not come up; its log:\n{}", self.log());
    }

    /// The daemon process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the daemon is running").id()
    }

    /// The daemon's own stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// SIGKILLs the daemon, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// `spore --host <this daemon> ARGS`.
    pub fn cli(&self) -> Command {
        let mut cmd = spore();
        cmd.env("SPORE_HOST", self.host());
        cmd
    }

    /// Runs `spore ARGS` against this daemon.
    pub fn run<I, S>(&self, args: I) -> Seen
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Seen::from(self.cli().args(args).output().unwrap())
    }

    /// `inspect` as JSON.
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let (status, body) = http(&self.socket(), "GET", &format!("/v1/sandboxes/{name}"), None);
        assert_eq!(status, 200, "inspect {name}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Polls `inspect` until `pred` holds (or fails after `secs`).
    pub fn wait_for(&self, name: &str, secs: u64, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let record = self.inspect(name);
            if pred(&record) {
                return record;
            }
            assert!(std::time::Instant::now() < deadline, "{name} never reached the expected state: {record:#}");
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> std::time::Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    std::time::Duration::from_millis(ticks * 1000 / hz)
}

/// CPU time a process uses over `window`: whether something in it is still busy.
pub fn cpu_used_over(pid: u32, window: std::time::Duration) -> std::time::Duration {
    let before = cpu_time(pid);
    std::thread::sleep(window);
    cpu_time(pid).saturating_sub(before)
}

/// Peak resident memory of a process (`VmHWM`), in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/PID/status");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Descriptors a process holds open now.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// The `error` message of an API error body.
pub fn error_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// One HTTP/1.1 request over a Unix socket, answered with (status, body); 0 when unreachable.
pub fn http(socket: &Path, method: &str, path: &str, body: Option<(&str, &[u8])>) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(socket) else { return (0, String::new()) };
    let (ctype, bytes) = body.unwrap_or(("application/json", b""));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: spore\r\nConnection: close\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
        bytes.len()
    );
    let mut raw = Vec::new();
    if stream.write_all(head.as_bytes()).is_err() {
        return (0, String::new());
    }
    // A server may answer before it has read the whole body (a 413) and close: its answer is
    // still there to read.
    let _ = stream.write_all(bytes);
    let _ = stream.read_to_end(&mut raw);
    parse_response(&raw)
}

/// Status and (de-chunked) body of a raw HTTP/1.1 response.
pub fn parse_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_owned() };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The serial-port plugin, built beside `spore` by the workspace's test build.
pub fn serial_plugin() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_spore")).with_file_name("libspore_plugin_serial.so");
    assert!(path.exists(), "{} is missing: cargo test --workspace builds it", path.display());
    path
}

/// A pty pair made by socat, stopped (by PID) when the test ends: the device's end and ours.
pub struct PtyPair {
    socat: std::process::Child,
    pub device: PathBuf,
    pub ours: PathBuf,
    _dir: tempfile::TempDir,
}

impl PtyPair {
    pub fn new() -> PtyPair {
        let dir = tempfile::tempdir().unwrap();
        let (device, ours) = (dir.path().join("device"), dir.path().join("ours"));
        let socat = Command::new("socat")
            .arg(format!("pty,rawer,link={}", device.display()))
            .arg(format!("pty,rawer,link={}", ours.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat (scripts/setup installs it)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !(device.exists() && ours.exists()) {
            assert!(std::time::Instant::now() < deadline, "socat made no ptys");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        PtyPair { socat, device, ours, _dir: dir }
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.socat.kill();
        let _ = self.socat.wait();
    }
}

/// Talks to guests/uart's echo app from the far end of its serial line: waits for "ready",
/// sends `greeting` and expects it back in capitals, then says "bye" (the app ends).
pub fn echo_conversation<P>(mut port: &P, greeting: &str)
where
    for<'a> &'a P: std::io::Read + std::io::Write,
{
    use std::io::{BufRead, Write};
    let mut lines = std::io::BufReader::new(port);
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    port.write_all(format!("{greeting}\n").as_bytes()).unwrap();
    line.clear();
    lines.read_line(&mut line).unwrap();
    assert_eq!(line, format!("{}\n", greeting.to_uppercase()));
    port.write_all(b"bye\n").unwrap();
}
