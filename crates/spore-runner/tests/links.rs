//! The runner as a process, driven by the agent's client over real links: a Unix socket, TCP,
//! and a serial line made of pty pairs (Debian's socat). Every test starts its own runner on a
//! temporary data directory and stops it by PID, even when it fails.

use spore_edge::compiled::{Compiled, compat, precompile};
use spore_runner::client::{Client, ClientError};
use spore_runner::link::{Address, open_serial};
use spore_wire::{
    BackendKind, DropTarget, ErrorCode, Exit, InstanceState, Instantiate, LimitKind, Limits, Message, ModuleKind,
    Outcome, StreamKind,
};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A runner process, killed and reaped when the test ends.
struct Runner {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Runner {
    fn start(extra: &[&str]) -> Runner {
        let dir = tempfile::tempdir().unwrap();
        Runner::start_in(dir, extra)
    }

    fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Runner {
        let socket = dir.path().join("runner.sock");
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(env!("CARGO_BIN_EXE_spore-runner"))
            .arg("--socket")
            .arg(&socket)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let runner = Runner { child, dir };
        // Ready when it listens, not when the file appears (bind comes before listen); asked of
        // the kernel, so no link of the test's takes one of the runner's places.
        wait_for(|| listening(&socket));
        runner
    }

    fn socket(&self) -> Address {
        Address::Unix(self.dir.path().join("runner.sock"))
    }

    fn client(&self) -> Client {
        Client::connect(&self.socket(), "spore-test", "").unwrap()
    }

    /// Restarts on the same data directory.
    fn restart(mut self, extra: &[&str]) -> Runner {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::TempDir::new().unwrap();
        let old = std::mem::replace(&mut self.dir, dir);
        std::mem::forget(self);
        Runner::start_in(old, extra)
    }
}

/// Whether a Unix socket at `path` is listening (`/proc/net/unix`: flag `__SO_ACCEPTCON`).
fn listening(path: &Path) -> bool {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    let path = path.to_string_lossy();
    table.lines().any(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        fields.len() >= 8 && fields[7] == path && fields[3] == "00010000"
    })
}

fn wait_for(mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn guest(name: &str) -> Vec<u8> {
    let path = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../guests/out")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; build the guests with guests/build.sh", path.display()))
}

/// A module as the agent sends it for `kind`: plain wasm, or an artifact compiled for it.
fn prepared(kind: BackendKind, wasm: &[u8]) -> (Vec<u8>, ModuleKind, String) {
    match kind {
        BackendKind::Wasmi => (wasm.to_vec(), ModuleKind::Wasm, String::new()),
        BackendKind::Native => {
            let target = spore_edge::TARGET;
            (precompile(kind, target, wasm).unwrap(), ModuleKind::Native, compat(kind, target))
        }
        BackendKind::Pulley => {
            let target = Compiled::new(kind).unwrap().target();
            (precompile(kind, target, wasm).unwrap(), ModuleKind::Pulley, compat(kind, target))
        }
    }
}

fn spec(module: [u8; 32], name: &str, args: &[&str], limits: Limits) -> Instantiate {
    Instantiate {
        module,
        name: name.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: vec![("GREETING".into(), "hi".into())],
        limits,
        boot: false,
        devices: vec![],
    }
}

/// Deploys and runs a guest; its exit and its stdout.
fn run(client: &mut Client, kind: BackendKind, name: &str, args: &[&str], limits: Limits) -> (Exit, String) {
    let (bytes, module_kind, compat) = prepared(kind, &guest(name));
    let digest = client.upload(&bytes, module_kind, &compat, |_, _| true).unwrap();
    let app = format!("{name}-{}", args.len());
    let id = client.instantiate(spec(digest, &app, args, limits)).unwrap();
    let mut out = Vec::new();
    let exit = client
        .run(id, &AtomicBool::new(false), |o| {
            if o.stream == StreamKind::Stdout {
                out.extend_from_slice(&o.bytes);
            }
        })
        .unwrap();
    client.remove(DropTarget::Instance(id)).unwrap();
    (exit, String::from_utf8_lossy(&out).into_owned())
}

/// The guests' behaviours on one engine, over one link.
fn guests_behave(client: &mut Client, kind: BackendKind) {
    let (exit, out) = run(client, kind, "hello", &["hello"], Limits::default());
    assert_eq!((exit.outcome, out.as_str()), (Outcome::Exited(0), "Hello from Spore!\n"), "{kind:?}");

    let (exit, out) = run(client, kind, "args-env", &["args-env", "one", "two words"], Limits::default());
    assert_eq!(exit.outcome, Outcome::Exited(0));
    assert_eq!(out, "arg[0]=args-env\narg[1]=one\narg[2]=two words\nenv GREETING=hi\n", "{kind:?}");

    let (exit, out) = run(client, kind, "exit-code", &["exit-code", "7"], Limits::default());
    assert_eq!((exit.outcome, out.as_str()), (Outcome::Exited(7), "exiting with 7\n"), "{kind:?}");

    // The energies native n-body prints (guests/nbody, the Benchmarks Game's reference).
    let (exit, out) = run(client, kind, "nbody", &["nbody", "1000"], Limits::default());
    assert_eq!((exit.outcome, out.as_str()), (Outcome::Exited(0), "-0.169075164\n-0.169087605\n"), "{kind:?}");

    let (exit, _) = run(client, kind, "trap", &["trap"], Limits::default());
    assert!(matches!(&exit.outcome, Outcome::Trapped(m) if m.contains("unreachable")), "{kind:?} {exit:?}");

    let limits = Limits { memory_bytes: Some(16 << 20), ..Limits::default() };
    let (exit, _) = run(client, kind, "membomb", &["membomb"], limits);
    assert!(matches!(exit.outcome, Outcome::Limit { limit: LimitKind::Memory, .. }), "{kind:?} {exit:?}");

    // Long enough for the slowest engine under a loaded test run to print before it spins.
    let limits = Limits { wall_ms: Some(500), ..Limits::default() };
    let (exit, out) = run(client, kind, "spin", &["spin"], limits);
    assert_eq!(out, "spinning\n");
    assert!(matches!(exit.outcome, Outcome::Limit { limit: LimitKind::Wall, .. }), "{kind:?} {exit:?}");
    assert!(exit.wall_us >= 500_000 && exit.cpu_us > 100_000, "{exit:?}");
}

#[test]
fn over_a_unix_socket_every_engine_runs_the_guests() {
    let runner = Runner::start(&[]);
    let mut client = runner.client();
    let kinds: Vec<_> = client.ack.backends.iter().map(|b| b.kind).collect();
    assert_eq!(kinds, [BackendKind::Native, BackendKind::Pulley, BackendKind::Wasmi]);
    for kind in kinds {
        guests_behave(&mut client, kind);
    }
}

/// Over a Unix socket each end checks the other is its own user or root: an agent does not
/// hand its apps to a runner another user planted at the path.
#[test]
fn an_agent_refuses_a_runner_socket_held_by_another_user() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = dir.path().join("r.sock");
    let child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_spore-runner"))
        .arg("--socket")
        .arg(&socket)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _runner = Runner { child, dir };
    wait_for(|| listening(&socket));
    let err = Client::connect(&Address::Unix(socket.clone()), "spore-test", "").err().expect("refused").to_string();
    assert!(err.contains("is held by user 65534, neither this user") && err.contains("refused"), "{err}");
}

#[test]
fn over_tcp_with_its_token_and_not_without() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    // A guessable token is refused: the runner does not start.
    std::fs::write(&token, "s3cret\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_spore-runner"))
        .args(["--listen", "127.0.0.1:0", "--token-file", token.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("the token must be at least 16 characters"), "{out:?}");
    std::fs::write(&token, "s3cret-s3cret-s3cret\n").unwrap();
    let port = free_port();
    let at = format!("127.0.0.1:{port}");
    let runner = Runner::start(&["--listen", &at, "--token-file", token.to_str().unwrap()]);
    let address = Address::Tcp(at);
    wait_for(|| std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok());

    let err = Client::connect(&address, "spore-test", "wrong").err().unwrap();
    assert!(matches!(err, ClientError::Refused(ErrorCode::UNAUTHORIZED, _)), "{err}");
    let err = Client::connect(&address, "spore-test", "").err().unwrap();
    assert!(matches!(err, ClientError::Refused(ErrorCode::UNAUTHORIZED, _)), "{err}");

    // A wrong token ends the link: one guess per connection.
    let mut raw = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(&hello_frame("guess")).unwrap();
    let (_, answer) = read_answer(&mut raw);
    assert!(matches!(answer, Message::Error(e) if e.code == ErrorCode::UNAUTHORIZED));
    assert_eq!(raw.read(&mut [0u8; 16]).unwrap(), 0, "closed after the refusal");

    let mut client = Client::connect(&address, "spore-test", "s3cret-s3cret-s3cret").unwrap();
    guests_behave(&mut client, BackendKind::Pulley);
    drop(runner);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn a_spinning_guest_is_killed_and_others_keep_running() {
    let runner = Runner::start(&[]);
    let mut client = runner.client();
    let (bytes, kind, compat) = prepared(BackendKind::Native, &guest("spin"));
    let digest = client.upload(&bytes, kind, &compat, |_, _| true).unwrap();
    let spinner = client.instantiate(spec(digest, "spinner", &["spin"], Limits::default())).unwrap();

    // Ctrl-C at the agent: the client kills the run and still reports its exit.
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        flag.store(true, Ordering::Release);
    });
    let exit = client.run(spinner, &interrupted, |_| {}).unwrap();
    assert_eq!(exit.outcome, Outcome::Killed);

    // A second link runs hello while the first runs a spinner.
    let again = client.instantiate(spec(digest, "spinner2", &["spin"], Limits::default())).unwrap();
    let mut other = runner.client();
    let handle = std::thread::spawn(move || {
        let (exit, out) = run(&mut other, BackendKind::Wasmi, "hello", &["hello"], Limits::default());
        (exit.outcome, out, other)
    });
    let (bytes, kind, compat) = prepared(BackendKind::Native, &guest("spin"));
    client.upload(&bytes, kind, &compat, |_, _| true).unwrap();
    let killer = std::thread::spawn({
        let address = runner.socket();
        move || {
            std::thread::sleep(Duration::from_millis(300));
            let mut c = Client::connect(&address, "spore-test", "").unwrap();
            c.kill(again).unwrap();
            // DONE to KILL means the run has ended, not only that it was asked to.
            let info = c.stats().unwrap().instances.into_iter().find(|i| i.id == again).unwrap();
            assert_ne!(info.state, InstanceState::Running, "{info:?}");
            // Killing what does not run, or does not exist, is refused by name.
            let err = c.kill(again + 1000).err().unwrap();
            assert!(matches!(err, ClientError::Refused(ErrorCode::UNKNOWN_INSTANCE, _)), "{err}");
        }
    });
    let exit = client.run(again, &AtomicBool::new(false), |_| {}).unwrap();
    assert_eq!(exit.outcome, Outcome::Killed);
    killer.join().unwrap();
    let (outcome, out, _) = handle.join().unwrap();
    assert_eq!((outcome, out.as_str()), (Outcome::Exited(0), "Hello from Spore!\n"));
}

#[test]
fn uploads_are_cached_by_digest_verified_and_resumed_after_a_cut() {
    let runner = Runner::start(&[]);
    // A module of 1.5 MB: a data segment that big, and a _start that prints.
    let big = big_module(1_500_000);
    let mut client = runner.client();
    let err = client.upload(&big, ModuleKind::Wasm, "", |held, _| held < 600_000).err().unwrap();
    assert!(matches!(err, ClientError::Stopped(n) if n >= 600_000), "{err}");
    drop(client);

    // A new link resumes where the cut one stopped, and the runner checks the whole.
    let mut client = runner.client();
    let mut first = None;
    let digest = client
        .upload(&big, ModuleKind::Wasm, "", |held, _| {
            first.get_or_insert(held);
            true
        })
        .unwrap();
    assert!(first.unwrap() >= 600_000, "resumed from {first:?}");
    let id = client.instantiate(spec(digest, "big", &["big"], Limits::default())).unwrap();
    let mut out = Vec::new();
    let exit = client.run(id, &AtomicBool::new(false), |o| out.extend_from_slice(&o.bytes)).unwrap();
    assert_eq!((exit.outcome, out.as_slice()), (Outcome::Exited(0), &b"big\n"[..]));

    // Uploaded again: nothing sent.
    let mut calls = 0;
    client
        .upload(&big, ModuleKind::Wasm, "", |_, _| {
            calls += 1;
            true
        })
        .unwrap();
    assert_eq!(calls, 1, "a cached module is not sent again");

    // Kept across a restart, with no upload.
    let runner = runner.restart(&[]);
    let mut client = runner.client();
    assert_eq!(client.stats().unwrap().modules, 1);
    let id = client.instantiate(spec(digest, "big", &["big"], Limits::default())).unwrap();
    let exit = client.run(id, &AtomicBool::new(false), |_| {}).unwrap();
    assert_eq!(exit.outcome, Outcome::Exited(0));

    // The store is the runner's alone, and a stored file changed on disk is not loaded again.
    use std::os::unix::fs::PermissionsExt;
    let modules = runner.dir.path().join("data/modules");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&modules), 0o700);
    let stored = std::fs::read_dir(&modules).unwrap().next().unwrap().unwrap().path();
    assert_eq!(mode(&stored), 0o600);
    let mut bytes = std::fs::read(&stored).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= b'a' ^ b'b';
    std::fs::write(&stored, bytes).unwrap();
    drop(client);
    let runner = runner.restart(&[]);
    let mut client = runner.client();
    let err = client.instantiate(spec(digest, "big", &["big"], Limits::default())).unwrap_err().to_string();
    assert!(err.contains("changed on disk since it was uploaded"), "{err}");
}

/// A wasm command of at least `size` bytes that prints "big".
fn big_module(size: usize) -> Vec<u8> {
    let filler = "a".repeat(size);
    let wat = format!(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 32)
            (data (i32.const 0) "\08\00\00\00\04\00\00\00big\n")
            (data (i32.const 65536) "{filler}")
            (func (export "_start") (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))"#
    );
    let wasm = wat::parse_str(wat).unwrap();
    assert!(wasm.len() >= size);
    wasm
}

#[test]
fn bad_uploads_and_requests_are_refused_by_name_and_the_runner_goes_on() {
    let runner = Runner::start(&["--backend", "native,wasmi", "--max-module", "2MiB"]);
    let mut client = runner.client();

    // An artifact for another engine: refused before any byte is sent, naming both.
    let (bytes, kind, theirs) = prepared(BackendKind::Pulley, &guest("hello"));
    let err = client.upload(&bytes, kind, &theirs, |_, _| true).err().unwrap();
    assert!(
        matches!(&err, ClientError::Refused(ErrorCode::WRONG_ENGINE, m) if m.contains("no Pulley engine")),
        "{err}"
    );
    let ours = compat(BackendKind::Native, spore_edge::TARGET);
    let (bytes, kind, _) = prepared(BackendKind::Native, &guest("hello"));
    let err =
        client.upload(&bytes, kind, "wasmtime 47.0.0 x86_64-unknown-linux-gnu settings 1", |_, _| true).err().unwrap();
    let ClientError::Refused(ErrorCode::WRONG_ENGINE, message) = &err else { panic!("{err}") };
    assert!(message.contains("wasmtime 47.0.0") && message.contains(&ours), "{message}");

    // Bytes that are not what they claim: a wasm module sent as a native artifact.
    let err = client.upload(&guest("hello"), ModuleKind::Native, &ours, |_, _| true).err().unwrap();
    assert!(
        matches!(&err, ClientError::Refused(ErrorCode::INVALID_MODULE, m) if m.contains("not a wasmtime artifact")),
        "{err}"
    );

    // Too large for this runner.
    let err = client.upload(&big_module(2_200_000), ModuleKind::Wasm, "", |_, _| true).err().unwrap();
    assert!(matches!(&err, ClientError::Refused(ErrorCode::TOO_LARGE, m) if m.contains("--max-module")), "{err}");

    // A module that imports what the runner lacks: refused when made, naming the import.
    let kv = wat::parse_str(r#"(module (import "spin:kv" "get" (func)) (func (export "_start")))"#).unwrap();
    let digest = client.upload(&kv, ModuleKind::Wasm, "", |_, _| true).unwrap();
    let err = client.instantiate(spec(digest, "kv", &[], Limits::default())).err().unwrap();
    assert!(matches!(&err, ClientError::Refused(ErrorCode::INVALID_MODULE, m) if m.contains("spin:kv::get")), "{err}");

    // Names are file names on the runner: a path is refused.
    let hello = client.upload(&guest("hello"), ModuleKind::Wasm, "", |_, _| true).unwrap();
    let err = client.instantiate(spec(hello, "../../etc/x", &[], Limits::default())).err().unwrap();
    assert!(matches!(err, ClientError::Refused(ErrorCode::BAD_PAYLOAD, _)), "{err}");
    let id = client.instantiate(spec(hello, "hello", &["hello"], Limits::default())).unwrap();
    let err = client.instantiate(spec(hello, "hello", &["hello"], Limits::default())).err().unwrap();
    assert!(matches!(err, ClientError::Refused(ErrorCode::CONFLICT, _)), "{err}");
    let err = client.remove(DropTarget::Module(hello)).err().unwrap();
    assert!(matches!(&err, ClientError::Refused(ErrorCode::CONFLICT, m) if m.contains("hello")), "{err}");

    // Raw frames a hostile agent might send, on a link of their own: each answered by an
    // ERROR naming it, and the runner still serves the client above.
    let connect = || {
        let raw = std::os::unix::net::UnixStream::connect(runner.dir.path().join("runner.sock")).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        raw
    };
    let mut raw = connect();
    let answer = |raw: &mut std::os::unix::net::UnixStream, bytes: &[u8]| -> (u32, Message) {
        raw.write_all(bytes).unwrap();
        read_answer(raw)
    };
    let code = |m: Message| match m {
        Message::Error(e) => e.code,
        other => panic!("{other:?}"),
    };
    let stats = spore_wire::to_stream(5, 0, &Message::StatsRequest(()));
    assert_eq!(code(answer(&mut raw, &stats).1), ErrorCode::UNAUTHORIZED, "before HELLO");
    // ... and the link is closed: no second guess.
    assert_eq!(raw.read(&mut [0u8; 16]).unwrap(), 0);
    let mut raw = connect();
    let hello_msg = Message::Hello(spore_wire::Hello {
        min_version: spore_wire::VERSION,
        max_version: spore_wire::VERSION,
        max_payload: 4096,
        agent: "raw".into(),
        token: String::new(),
    });
    assert!(matches!(answer(&mut raw, &spore_wire::to_stream(1, 0, &hello_msg)).1, Message::HelloAck(_)));
    let mut bad_crc = spore_wire::encode(6, 0, &Message::StatsRequest(()));
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x40;
    assert_eq!(code(answer(&mut raw, &spore_wire::delimit(&bad_crc)).1), ErrorCode::BAD_FRAME);
    let mut unknown = spore_wire::encode(7, 0, &Message::StatsRequest(()));
    unknown[3] = 0x77;
    let crc = crc32c(&unknown[..unknown.len() - 4]);
    let n = unknown.len();
    unknown[n - 4..].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        answer(&mut raw, &spore_wire::delimit(&unknown)),
        (
            7,
            Message::Error(spore_wire::Error {
                code: ErrorCode::UNKNOWN_TYPE,
                message: "unknown message type 0x77".into(),
            })
        )
    );
    let mut version = spore_wire::encode(8, 0, &Message::StatsRequest(()));
    version[2] = 9;
    let crc = crc32c(&version[..version.len() - 4]);
    let n = version.len();
    version[n - 4..].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(code(answer(&mut raw, &spore_wire::delimit(&version)).1), ErrorCode::VERSION);
    let chunk = Message::Chunk(spore_wire::Chunk { digest: hello, offset: 0, bytes: vec![7; 8000] });
    assert_eq!(
        code(answer(&mut raw, &spore_wire::to_stream(10, 0, &chunk)).1),
        ErrorCode::TOO_LARGE,
        "over the negotiated 4 KiB"
    );
    let chunk =
        spore_wire::to_stream(11, 0, &Message::Chunk(spore_wire::Chunk { digest: hello, offset: 99, bytes: vec![1] }));
    assert_eq!(code(answer(&mut raw, &chunk).1), ErrorCode::UNKNOWN_MODULE, "a chunk with no upload begun");
    let kill = spore_wire::to_stream(12, 0, &Message::Kill(spore_wire::Kill { instance: 4242 }));
    assert_eq!(code(answer(&mut raw, &kill).1), ErrorCode::UNKNOWN_INSTANCE);
    let ping = spore_wire::to_stream(9, 0, &Message::Ping(spore_wire::Ping { nonce: 1 }));
    assert!(matches!(answer(&mut raw, &ping), (9, Message::Pong(_))));

    let mut out = Vec::new();
    let exit = client.run(id, &AtomicBool::new(false), |o| out.extend_from_slice(&o.bytes)).unwrap();
    assert_eq!((exit.outcome, out.as_slice()), (Outcome::Exited(0), &b"Hello from Spore!\n"[..]));
}

/// CRC-32C as frames carry it, computed independently of spore-wire.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn boot_apps_come_back_after_a_restart_and_digests_are_checked() {
    let runner = Runner::start(&[]);
    let mut client = runner.client();
    let digest = client.upload(&guest("hello"), ModuleKind::Wasm, "", |_, _| true).unwrap();
    let mut boot = spec(digest, "greeter", &["hello"], Limits::default());
    boot.boot = true;
    client.instantiate(boot).unwrap();
    client.instantiate(spec(digest, "once", &["hello"], Limits::default())).unwrap();
    drop(client);

    let runner = runner.restart(&[]);
    let mut client = runner.client();
    let mut seen = None;
    wait_for(|| {
        let stats = client.stats().unwrap();
        seen = Some(stats.instances.clone());
        stats.instances.iter().any(|i| matches!(i.state, InstanceState::Ended(_)))
    });
    let instances = seen.unwrap();
    assert_eq!(instances.len(), 1, "only the boot app comes back: {instances:?}");
    assert_eq!(
        (instances[0].name.as_str(), &instances[0].state),
        ("greeter", &InstanceState::Ended(Outcome::Exited(0)))
    );
    let logs = client.logs(instances[0].id, 4096).unwrap();
    let stdout: Vec<u8> =
        logs.iter().filter(|o| o.stream == StreamKind::Stdout).flat_map(|o| o.bytes.clone()).collect();
    assert_eq!(stdout, b"Hello from Spore!\n");

    // Removed, it stays gone after the next restart.
    client.remove(DropTarget::Instance(instances[0].id)).unwrap();
    drop(client);
    let runner = runner.restart(&[]);
    let mut client = runner.client();
    std::thread::sleep(Duration::from_millis(200));
    assert!(client.stats().unwrap().instances.is_empty());
    assert!(data_files(&runner.dir.path().join("data/apps")).is_empty());
}

fn data_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect()).unwrap_or_default()
}

/// Two pty pairs made by socat: (agent's end, proxy's agent side, proxy's runner side, runner's end).
struct SerialLine {
    socats: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Drop for SerialLine {
    fn drop(&mut self) {
        for s in &mut self.socats {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

impl SerialLine {
    fn new() -> SerialLine {
        let dir = tempfile::tempdir().unwrap();
        let mut socats = Vec::new();
        for (a, b) in [("agent", "proxy-a"), ("proxy-r", "runner")] {
            let child = Command::new("socat")
                .arg(format!("pty,rawer,link={}", dir.path().join(a).display()))
                .arg(format!("pty,rawer,link={}", dir.path().join(b).display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("socat (apt install socat; scripts/setup installs it)");
            socats.push(child);
        }
        let line = SerialLine { socats, dir };
        wait_for(|| ["agent", "proxy-a", "proxy-r", "runner"].iter().all(|p| line.path(p).exists()));
        line
    }

    fn path(&self, end: &str) -> PathBuf {
        self.dir.path().join(end)
    }
}

/// Copies bytes one way between the pty pairs, damaging one byte of the `damage`-th frame (its
/// COBS bytes: the receiver sees a bad CRC or a broken frame). Counts the frames it damaged.
fn pipe(from: std::fs::File, mut to: std::fs::File, damage: usize, damaged: Arc<AtomicUsize>) {
    let mut from = from;
    std::thread::spawn(move || {
        let mut frames = 0;
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut bytes = buf[..n].to_vec();
            for b in bytes.iter_mut() {
                if *b == 0 {
                    frames += 1;
                } else if frames + 1 == damage && damaged.load(Ordering::Relaxed) == 0 {
                    *b = if *b ^ 0x10 == 0 { 0x7f } else { *b ^ 0x10 };
                    damaged.store(1, Ordering::Relaxed);
                }
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
    });
}

/// The proxy between agent and runner: damages the `to_runner`-th frame the agent sends and the
/// `to_agent`-th the runner sends. How many it damaged each way.
fn proxy(line: &SerialLine, to_runner: usize, to_agent: usize) -> (Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let a = open_serial(&line.path("proxy-a"), 115_200).unwrap();
    let r = open_serial(&line.path("proxy-r"), 115_200).unwrap();
    let counts = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    pipe(a.try_clone().unwrap(), r.try_clone().unwrap(), to_runner, counts.0.clone());
    pipe(r, a, to_agent, counts.1.clone());
    counts
}

#[test]
fn over_a_serial_line_a_damaged_frame_is_sent_again_not_run() {
    let line = SerialLine::new();
    // Damaged on the way: the agent's 4th frame (HELLO, MODULE_BEGIN, CHUNK, COMMIT), so the
    // runner must not act on it; and the runner's 5th (HELLO_ACK, SEND_FROM, CHUNK_ACK, DONE,
    // INSTANCE), so the agent sends INSTANTIATE again and the runner must not make a second
    // app of it (a second "hello" would be refused as a conflict).
    let (to_runner, to_agent) = proxy(&line, 4, 5);
    let runner_end = line.path("runner");
    let runner = Runner::start(&["--serial", runner_end.to_str().unwrap(), "--baud", "115200"]);
    let address = Address::parse(&format!("serial://{}?baud=115200", line.path("agent").display())).unwrap().unwrap();
    let mut client = Client::connect(&address, "spore-test", "").unwrap();
    let (exit, out) = run(&mut client, BackendKind::Wasmi, "hello", &["hello"], Limits::default());
    assert_eq!((exit.outcome, out.as_str()), (Outcome::Exited(0), "Hello from Spore!\n"));
    assert_eq!((to_runner.load(Ordering::Relaxed), to_agent.load(Ordering::Relaxed)), (1, 1), "damaged on the way");
    // Made once: one app, not two.
    let stats = client.stats().unwrap();
    assert!(stats.instances.is_empty(), "the one app was removed: {:?}", stats.instances);
    let (exit, out) = run(&mut client, BackendKind::Pulley, "nbody", &["nbody", "1000"], Limits::default());
    assert_eq!((exit.outcome, out.as_str()), (Outcome::Exited(0), "-0.169075164\n-0.169087605\n"));
    // An agent that stops mid-upload, and the next agent on the same line resumes it: a HELLO
    // starts the line afresh, nothing of the first agent's held against the second.
    let big = big_module(300_000);
    drop(client);
    let mut first = Client::connect(&address, "spore-test", "").unwrap();
    let err = first.upload(&big, ModuleKind::Wasm, "", |held, _| held < 100_000).err().unwrap();
    assert!(matches!(err, ClientError::Stopped(_)), "{err}");
    drop(first);
    let mut client = Client::connect(&address, "spore-test", "").unwrap();
    let mut resumed_at = None;
    client
        .upload(&big, ModuleKind::Wasm, "", |held, _| {
            resumed_at.get_or_insert(held);
            true
        })
        .unwrap();
    assert!(resumed_at.unwrap() >= 100_000, "{resumed_at:?}");
    drop(runner);
}

#[test]
fn the_agents_mistakes_get_one_line_naming_them() {
    for (host, says) in [
        ("serial://", "needs the device"),
        ("serial:///dev/ttyS9?baud=12", "not a speed"),
        ("serial:///dev/ttyS9?parity=odd", "unknown option"),
        ("runner+tcp://nohost", "HOST:PORT"),
        ("runner+unix://", "socket's path"),
    ] {
        let err = Address::parse(host).unwrap().err().unwrap();
        assert!(err.contains(says), "{host}: {err}");
    }
    assert_eq!(Address::parse("unix:///run/spore.sock"), None, "a daemon address is not a runner's");

    let missing = Address::parse("serial:///dev/spore-no-such-tty").unwrap().unwrap();
    let err = Client::connect(&missing, "spore-test", "").err().unwrap().to_string();
    assert!(err.contains("/dev/spore-no-such-tty") && err.contains("device exists"), "{err}");

    // Something that takes the link and never answers HELLO.
    let dir = tempfile::tempdir().unwrap();
    let silent = std::os::unix::net::UnixListener::bind(dir.path().join("silent.sock")).unwrap();
    let _held = std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(1).collect();
        std::thread::sleep(Duration::from_secs(30));
        drop(held);
    });
    let started = Instant::now();
    let err = Client::connect(&Address::Unix(dir.path().join("silent.sock")), "spore-test", "").err().unwrap();
    assert!(matches!(err, ClientError::Timeout(_)), "{err}");
    assert!(err.to_string().contains("no answer from the runner to Hello"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
}

/// A HELLO frame as an agent sends it, with `token`.
fn hello_frame(token: &str) -> Vec<u8> {
    let hello = spore_wire::Hello {
        min_version: spore_wire::VERSION,
        max_version: spore_wire::VERSION,
        max_payload: 64 << 10,
        agent: "raw".into(),
        token: token.into(),
    };
    spore_wire::to_stream(1, 0, &Message::Hello(hello))
}

/// The next whole frame on a raw link.
fn read_answer(raw: &mut impl Read) -> (u32, Message) {
    let mut frames = spore_wire::Deframer::new(1 << 20);
    let mut buf = [0u8; 4096];
    loop {
        let n = raw.read(&mut buf).unwrap();
        assert!(n > 0, "the runner closed the link");
        if let Some(frame) = frames.feed(&buf[..n]).next() {
            let (h, m) = spore_wire::decode(&frame.unwrap(), 1 << 20).unwrap();
            return (h.request_id, m);
        }
    }
}

#[test]
fn idle_and_surplus_links_are_refused_and_closed() {
    let runner = Runner::start(&["--max-links", "2"]);
    let socket = runner.dir.path().join("runner.sock");
    let connect = || {
        let raw = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        raw
    };
    // Two links that never say HELLO take the runner's two places...
    let (mut idle1, mut idle2) = (connect(), connect());
    std::thread::sleep(Duration::from_millis(200));
    // ... a third is told so and closed.
    let mut third = connect();
    let (_, answer) = read_answer(&mut third);
    assert!(matches!(&answer, Message::Error(e) if e.code == ErrorCode::EXHAUSTED), "{answer:?}");
    assert_eq!(third.read(&mut [0u8; 16]).unwrap(), 0);
    // The idle ones are closed at the HELLO deadline, and the places are free again.
    let started = Instant::now();
    assert_eq!(idle1.read(&mut [0u8; 16]).unwrap(), 0);
    assert_eq!(idle2.read(&mut [0u8; 16]).unwrap(), 0);
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    runner.client().ping(7).unwrap();
}

#[test]
fn output_comes_in_frames_the_agent_accepts_and_the_store_has_a_quota() {
    // The runner takes frames of 1 MiB, the agent of 64 KiB: a guest's 200 KB write reaches
    // the agent whole, in pieces of the size both agreed.
    let runner = Runner::start(&["--max-payload", "1MiB", "--max-store", "2MiB"]);
    let mut client = runner.client();
    assert_eq!(client.ack.max_payload, 64 << 10);
    let writer = wat::parse_str(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 4)
            (func (export "_start")
              (i32.store (i32.const 0) (i32.const 1024))
              (i32.store (i32.const 4) (i32.const 200000))
              (memory.fill (i32.const 1024) (i32.const 120) (i32.const 200000))
              (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))"#,
    )
    .unwrap();
    let digest = client.upload(&writer, ModuleKind::Wasm, "", |_, _| true).unwrap();
    let id = client.instantiate(spec(digest, "writer", &["writer"], Limits::default())).unwrap();
    let mut got = 0;
    let mut largest = 0;
    let exit = client
        .run(id, &AtomicBool::new(false), |o| {
            got += o.bytes.len();
            largest = largest.max(o.bytes.len());
        })
        .unwrap();
    assert_eq!((exit.outcome, got), (Outcome::Exited(0), 200_000));
    assert!(largest <= 64 << 10, "{largest}");

    // 1.5 MB stored; another 1.5 MB would pass the 2 MiB the store may hold.
    client.upload(&big_module(1_500_000), ModuleKind::Wasm, "", |_, _| true).unwrap();
    let mut other = big_module(1_500_000);
    other.extend_from_slice(b"\0\x04name\0"); // a custom section: other bytes, other digest
    let err = client.upload(&other, ModuleKind::Wasm, "", |_, _| true).err().unwrap();
    assert!(matches!(&err, ClientError::Refused(ErrorCode::EXHAUSTED, m) if m.contains("--max-store")), "{err}");
}

#[test]
fn a_socket_path_that_is_not_a_socket_is_left_alone() {
    // The runner replaces a stale socket of its own, but never removes another file.
    let dir = tempfile::tempdir().unwrap();
    let precious = dir.path().join("precious.txt");
    std::fs::write(&precious, "keep me").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_spore-runner"))
        .arg("--socket")
        .arg(&precious)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a socket"), "{out:?}");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");

    // A socket left by a runner that is gone is replaced, and made the owner's alone.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let runner = Command::new(env!("CARGO_BIN_EXE_spore-runner"))
        .arg("--socket")
        .arg(&stale)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let runner = Runner { child: runner, dir: tempfile::tempdir().unwrap() };
    wait_for(|| Client::connect(&Address::Unix(stale.clone()), "spore-test", "").is_ok());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&stale).unwrap().permissions().mode() & 0o777, 0o600);
    drop(runner);
}
