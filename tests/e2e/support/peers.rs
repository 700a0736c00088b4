//! Real peers for the image tests, each started on 127.0.0.1 in its own temp dir and stopped by
//! PID when dropped: an OCI registry (Debian's `docker-registry`, distribution 2.8) and
//! containerd 1.6. `scripts/setup` installs them; a missing one fails the test, naming it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on right now (the kernel's choice; released before the peer binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An HTTP upstream on 127.0.0.1 answering every request `200 upstream ok` (for outbound
/// calls); it lives as long as the test process.
pub fn upstream() -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\nconnection: close\r\n\r\nupstream ok");
        }
    });
    (port, handle)
}

fn require(tool: &str) {
    let found =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file())).unwrap_or(false);
    assert!(found, "{tool} is not installed: run scripts/setup (it installs docker-registry, skopeo and containerd)");
}

fn wait_until(what: &str, log: &Path, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not come up; its log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A registry: `distribution` serving from a temp dir on 127.0.0.1.
pub struct Registry {
    pub dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`, as image references name it.
    pub addr: String,
    child: Child,
}

impl Registry {
    /// Starts a registry; with `user` (name, password), it demands HTTP basic auth.
    pub fn start(user: Option<(&str, &str)>) -> Registry {
        require("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let auth = match user {
            Some((name, password)) => {
                let hash = bcrypt::hash(password, 4).unwrap();
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, format!("{name}:{hash}\n")).unwrap();
                format!("auth:\n  htpasswd:\n    realm: spore-test\n    path: {}\n", file.display())
            }
            None => String::new(),
        };
        // Our own config: the packaged one listens on every interface.
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: spore-test-secret\n{auth}",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = dir.path().join("registry.log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .spawn()
            .expect("cannot start docker-registry");
        let probe = addr.clone();
        wait_until("docker-registry", &log, || std::net::TcpStream::connect(&probe).is_ok());
        Registry { dir, addr, child }
    }

    /// Where the registry keeps a blob's bytes (distribution's filesystem layout).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir.path().join("data/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// containerd with its own config, root, state and socket in a temp dir, and its own namespace
/// (CRI's `k8s.io` when the CRI plugin is on). What it leaves under `/run/containerd` (where
/// containerd 1.6 and runwasi's shims still write) is removed when it is dropped: only the
/// entries that appeared while it ran, so nobody else's are touched.
pub struct Containerd {
    pub dir: tempfile::TempDir,
    /// The containerd namespace every `ctr` call uses.
    pub namespace: String,
    child: Child,
    run_before: Vec<PathBuf>,
    /// Held while it lives: its cleanup removes the shim sockets that appeared meanwhile
    /// (`/run/containerd/s/HASH`, which name no owner), so two at once would remove each
    /// other's live sockets.
    _alone: std::sync::MutexGuard<'static, ()>,
}

/// One containerd of this test process at a time (see `Containerd::_alone`).
static ONE_CONTAINERD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The CRI plugin's settings for [`Containerd::start_cri`].
pub struct Cri<'a> {
    /// The pod sandbox ("pause") image, pulled from `registry` when a pod first needs it.
    pub sandbox_image: &'a str,
    /// A plain-HTTP registry (`127.0.0.1:PORT`) the CRI plugin may pull from.
    pub registry: &'a str,
    /// `(handler, runtime_type)`: the runtime handlers a pod's RuntimeClass may name; the
    /// first is the default.
    pub runtimes: &'a [(&'a str, &'a str)],
}

/// Everything down to `/run/containerd/<dir>/<namespace>/<id>` now (containerd 1.6's and the
/// shims' fixed runtime dirs).
fn run_entries() -> Vec<PathBuf> {
    fn collect(dir: &Path, depth: u32, all: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            all.push(e.path());
            if depth > 0 && e.file_type().is_ok_and(|t| t.is_dir()) {
                collect(&e.path(), depth - 1, all);
            }
        }
    }
    let mut all = Vec::new();
    collect(Path::new("/run/containerd"), 2, &mut all);
    all
}

impl Containerd {
    pub fn start() -> Containerd {
        Containerd::start_with_path(Path::new("/nonexistent"))
    }

    /// Starts containerd (no CRI plugin) with `shims` first on its PATH (where it finds runtime
    /// shims).
    pub fn start_with_path(shims: &Path) -> Containerd {
        Containerd::launch(shims, None, |_| "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n".into())
    }

    /// Starts containerd with the CRI plugin (`CriClient` talks to it on [`Self::socket`]), as a
    /// kubelet's node has it: pods on the host network (no CNI here), the given runtime
    /// handlers, `restrict_oom_score_adj` (this machine's containers may not lower it).
    pub fn start_cri(shims: &Path, cri: &Cri) -> Containerd {
        Containerd::launch(shims, Some("k8s.io"), |dir| {
            let d = dir.display();
            let hosts = dir.join("certs.d").join(cri.registry);
            std::fs::create_dir_all(&hosts).unwrap();
            std::fs::write(
                hosts.join("hosts.toml"),
                format!(
                    "server = \"http://{0}\"\n[host.\"http://{0}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
                    cri.registry
                ),
            )
            .unwrap();
            let p = "plugins.\"io.containerd.grpc.v1.cri\"";
            let mut c = format!(
                "[{p}]\n  sandbox_image = \"{}\"\n  restrict_oom_score_adj = true\n  disable_apparmor = true\n\
                 [{p}.cni]\n  bin_dir = \"{d}/cni/bin\"\n  conf_dir = \"{d}/cni/conf\"\n\
                 [{p}.registry]\n  config_path = \"{d}/certs.d\"\n",
                cri.sandbox_image
            );
            // Naming runtimes replaces containerd's own list, runc included: the first is the default.
            c += &format!("[{p}.containerd]\n  default_runtime_name = \"{}\"\n", cri.runtimes[0].0);
            for (handler, runtime_type) in cri.runtimes {
                c += &format!("[{p}.containerd.runtimes.{handler}]\n  runtime_type = \"{runtime_type}\"\n");
            }
            c
        })
    }

    fn launch(shims: &Path, namespace: Option<&str>, plugins: impl FnOnce(&Path) -> String) -> Containerd {
        require("containerd");
        require("ctr");
        // A test that failed while holding it poisons it; the next one may still go.
        let alone = ONE_CONTAINERD.lock().unwrap_or_else(|p| p.into_inner());
        let run_before = run_entries();
        // Short: the socket path must fit a sockaddr_un.
        let dir = tempfile::Builder::new().prefix("ctd").tempdir_in("/tmp").unwrap();
        let d = dir.path().display();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n{}\
             [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n[debug]\n  address = \"{d}/d.sock\"\n",
            plugins(dir.path())
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let log = dir.path().join("containerd.log");
        let path = format!("{}:{}", shims.display(), std::env::var("PATH").unwrap_or_default());
        let child = Command::new("containerd")
            .env("PATH", path)
            // Spore's shim keeps its compile cache here (containerd passes its env to shims).
            .env("SPORE_SHIM_CACHE_DIR", dir.path().join("shim-cache"))
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .spawn()
            .expect("cannot start containerd");
        let namespace = namespace.map(str::to_owned).unwrap_or_else(|| {
            format!("spore-test-{}", dir.path().file_name().unwrap().to_string_lossy().to_lowercase())
        });
        let c = Containerd { dir, namespace, child, run_before, _alone: alone };
        wait_until("containerd", &log, || c.ctr(&["version"]).status.success());
        c
    }

    /// containerd's gRPC socket (containerd's API and, when on, the CRI).
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    /// containerd's own log so far (shims log there too).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr -a <socket> ARGS`.
    pub fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .arg("-a")
            .arg(self.socket())
            .arg("-n")
            .arg(&self.namespace)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run ctr")
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // What a failing test left running (a looping guest, a pod) must not outlive it: its
        // shim would keep it alive after containerd is gone.
        let tasks = self.ctr(&["tasks", "ls", "-q"]);
        for id in String::from_utf8_lossy(&tasks.stdout).lines() {
            self.ctr(&["tasks", "delete", "-f", id]);
        }
        stop(&mut self.child);
        // Deepest first, and only what appeared while this one ran: in its namespace, and the
        // shims' sockets (named by a hash of namespace and id).
        let ns = std::ffi::OsStr::new(&self.namespace);
        let sockets = Path::new("/run/containerd/s");
        let mut new: Vec<PathBuf> = run_entries()
            .into_iter()
            .filter(|p| !self.run_before.contains(p) && (p.iter().any(|c| c == ns) || p.parent() == Some(sockets)))
            .collect();
        new.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in new {
            let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
        }
    }
}

/// A redis-server on a loopback port in a temp dir.
pub struct RedisServer {
    pub port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

impl RedisServer {
    /// Starts one on `port` (0: a free one).
    pub fn start(port: u16) -> RedisServer {
        require("redis-server");
        let port = if port == 0 { free_port() } else { port };
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("cannot start redis-server");
        wait_until("redis-server", &log, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        RedisServer { port, _dir: dir, child }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
