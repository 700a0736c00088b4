//! `spore` as the agent of an edge runner: the real `spore` and `spore-runner` binaries over a
//! Unix socket, the commands a user types, their output and exit codes.

use crate::support::{PtyPair, Seen, echo_conversation, guest, serial_plugin, spore, spore_with_cache};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A runner process on a temporary data directory, killed when the test ends.
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

/// `spore-runner`, built beside `spore` by the workspace's test build.
fn runner_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_spore")).with_file_name("spore-runner");
    assert!(
        path.exists(),
        "{} is missing: cargo test --workspace builds it (or cargo build -p spore-runner)",
        path.display()
    );
    path
}

/// `spore-runner` cross-built for another Linux (scripts/test builds it for aarch64 and
/// riscv64; docs/edge.md, "Other targets"), run under qemu-user as the foreign machine.
fn foreign_runner(target: &str) -> Command {
    let target_dir = Path::new(env!("CARGO_BIN_EXE_spore")).parent().unwrap().parent().unwrap();
    let path = target_dir.join("runner").join(target).join("debug/spore-runner");
    assert!(
        path.exists(),
        "{} is missing: scripts/test cross-builds it (cargo build --manifest-path runner/Cargo.toml --target {target} --target-dir <target>/runner)",
        path.display()
    );
    let arch = target.split('-').next().unwrap().trim_end_matches("gc");
    let mut command = Command::new(format!("qemu-{arch}"));
    command.env("QEMU_LD_PREFIX", format!("/usr/{arch}-linux-gnu")).arg(path);
    command
}

impl Runner {
    fn start(extra: &[&str]) -> Runner {
        Runner::spawn(Command::new(runner_binary()), extra)
    }

    fn spawn(mut command: Command, extra: &[&str]) -> Runner {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("r.sock");
        let child = command
            .arg("--socket")
            .arg(&socket)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        // Ready when it accepts, not when the file appears (bind comes before listen).
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "the runner did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Runner { child, dir }
    }

    fn host(&self) -> String {
        format!("runner+unix://{}", self.dir.path().join("r.sock").display())
    }

    fn spore(&self, args: &[&str]) -> Seen {
        let out = spore().arg("--host").arg(self.host()).args(args).output().unwrap();
        Seen::from(out)
    }
}

fn path(name: &str) -> String {
    guest(name).display().to_string()
}

#[test]
fn run_at_a_runner_streams_output_and_exits_with_the_guests_code_on_every_engine() {
    let runner = Runner::start(&[]);
    for engine in ["native", "pulley", "wasmi"] {
        let seen = runner.spore(&["run", "--engine", engine, &path("hello")]);
        assert_eq!((seen.code, seen.stdout.as_str()), (0, "Hello from Spore!\n"), "{engine}: {seen:?}");
        let seen = runner.spore(&["run", "--engine", engine, &path("exit-code"), "7"]);
        assert_eq!((seen.code, seen.stdout.as_str()), (7, "exiting with 7\n"), "{engine}: {seen:?}");
        let seen = runner.spore(&["run", "--engine", engine, "-e", "GREETING=hi", &path("args-env"), "a b"]);
        assert_eq!(seen.stdout, "arg[0]=args-env.wasm\narg[1]=a b\nenv GREETING=hi\n", "{engine}: {seen:?}");
    }
    // Exit codes as `spore run` has them, with the flag to raise.
    let seen = runner.spore(&["run", &path("trap")]);
    assert_eq!(seen.code, 134, "{seen:?}");
    assert!(seen.stderr.contains("unreachable"), "{seen:?}");
    let seen = runner.spore(&["run", "--memory", "16M", &path("membomb")]);
    assert_eq!(seen.code, 137, "{seen:?}");
    assert!(seen.stderr.contains("memory limit") && seen.stderr.contains("--memory"), "{seen:?}");
    let seen = runner.spore(&["run", "--timeout", "300ms", "--engine", "wasmi", &path("spin")]);
    assert_eq!(seen.code, 124, "{seen:?}");
    let seen = runner.spore(&["run", "--cpu-time", "200ms", "--engine", "pulley", &path("spin")]);
    assert_eq!(seen.code, 152, "{seen:?}");

    // A run leaves nothing behind at the runner.
    let seen = runner.spore(&["ps", "-a", "-q"]);
    assert_eq!((seen.code, seen.stdout.as_str()), (0, ""), "{seen:?}");
}

#[test]
fn runners_on_other_architectures_run_native_code_compiled_here_for_them() {
    // The ELF machine of each one's code: EM_AARCH64, EM_RISCV.
    for (target, machine) in [("aarch64-unknown-linux-gnu", 183), ("riscv64gc-unknown-linux-gnu", 243)] {
        let runner = Runner::spawn(foreign_runner(target), &[]);
        let cache = tempfile::tempdir().unwrap();
        let spore = |args: &[&str]| {
            let out = spore_with_cache(cache.path()).arg("--host").arg(runner.host()).args(args).output().unwrap();
            Seen::from(out)
        };
        for engine in ["native", "pulley", "wasmi"] {
            let seen = spore(&["run", "--engine", engine, &path("exit-code"), "7"]);
            assert_eq!((seen.code, seen.stdout.as_str()), (7, "exiting with 7\n"), "{target} {engine}: {seen:?}");
        }
        let seen = spore(&["run", "--engine", "native", "--memory", "16M", &path("membomb")]);
        assert_eq!(seen.code, 137, "{target}: {seen:?}");
        // The agent's own choice is native code for the runner's machine; n-body's energies
        // are the ones the reference computes on this one.
        let seen = spore(&["run", &path("nbody"), "1000"]);
        assert_eq!((seen.code, seen.stdout.as_str()), (0, "-0.169075164\n-0.169087605\n"), "{target}: {seen:?}");
        // What was uploaded as native code is the runner's machine code, not this machine's.
        let machines: Vec<u16> = std::fs::read_dir(cache.path().join("edge"))
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .filter(|bytes| bytes.starts_with(b"\x7fELF"))
            .map(|bytes| u16::from_le_bytes([bytes[18], bytes[19]]))
            .collect();
        assert!(machines.contains(&machine), "{target}: {machines:?}");
        assert!(!machines.contains(&62), "{target}: x86_64 code was compiled: {machines:?}");
    }
}

#[test]
fn ctrl_c_kills_the_run_at_the_runner() {
    let runner = Runner::start(&[]);
    let child = spore()
        .arg("--host")
        .arg(runner.host())
        .args(["run", &path("spin")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the run is under way at the runner.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !runner.spore(&["ps"]).stdout.contains("running") {
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signals our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    let seen = Seen::from(out);
    assert_eq!(seen.code, 137, "{seen:?}");
    assert!(seen.stderr.contains("killed"), "{seen:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn deploy_ps_logs_stop_rm_at_a_runner() {
    let runner = Runner::start(&[]);
    let seen = runner.spore(&["deploy", "--name", "greeter", &path("hello")]);
    assert_eq!((seen.code, seen.stdout.as_str()), (0, "greeter\n"), "{seen:?}");
    let seen = runner.spore(&["deploy", "--name", "spinner", &path("spin")]);
    assert_eq!(seen.code, 0, "{seen:?}");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ps = runner.spore(&["ps", "-a"]);
        if ps.stdout.contains("exited (0)") {
            assert!(ps.stdout.contains("greeter") && ps.stdout.contains("spinner"), "{ps:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{ps:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ps = runner.spore(&["ps"]);
    assert!(ps.stdout.contains("spinner") && !ps.stdout.contains("greeter"), "running only: {ps:?}");

    let logs = runner.spore(&["logs", "greeter"]);
    assert_eq!((logs.code, logs.stdout.as_str()), (0, "Hello from Spore!\n"), "{logs:?}");
    let logs = runner.spore(&["logs", "--follow", "greeter"]);
    assert_eq!(logs.code, 125, "{logs:?}");
    assert!(logs.stderr.contains("--follow is the daemon's"), "{logs:?}");

    let rm = runner.spore(&["rm", "spinner"]);
    assert_eq!(rm.code, 1, "a running app needs --force: {rm:?}");
    assert!(rm.stderr.contains("rm --force"), "{rm:?}");
    let stop = runner.spore(&["stop", "spinner"]);
    assert_eq!((stop.code, stop.stdout.as_str()), (0, "spinner\n"), "{stop:?}");
    let rm = runner.spore(&["rm", "spinner", "greeter"]);
    assert_eq!(rm.code, 0, "{rm:?}");
    let missing = runner.spore(&["rm", "nope"]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(missing.stderr.contains("no app \"nope\" on this runner"), "{missing:?}");
    assert_eq!(runner.spore(&["ps", "-a", "-q"]).stdout, "");
}

#[test]
fn what_a_runner_cannot_do_is_named() {
    let runner = Runner::start(&["--backend", "wasmi"]);
    for (args, says) in [
        (vec!["run", "--dir", "/tmp", &path("hello")], "--dir is for the daemon"),
        (
            vec!["run", "--engine", "native", &path("hello")],
            "--engine native: the runner has no such engine; it has wasmi",
        ),
        (vec!["run", "docker.io/library/hello:1"], "a runner takes a wasm file"),
        (vec!["deploy", "--replicas", "2", &path("hello")], "--replicas is the daemon's"),
        (vec!["start", "x"], "it does run, deploy, ps, logs, stop, kill, rm and stats"),
    ] {
        let seen = runner.spore(&args);
        assert_eq!(seen.code, 125, "{args:?}: {seen:?}");
        assert!(seen.stderr.contains(says), "{args:?}: {seen:?}");
    }
    let seen = spore().args(["--host", "serial:///dev/spore-no-such-tty", "ps"]).output().unwrap();
    let seen = Seen::from(seen);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("/dev/spore-no-such-tty") && seen.stderr.contains("device exists"), "{seen:?}");
    let seen = Seen::from(spore().args(["--host", "serial://x?baud=7", "ps"]).output().unwrap());
    assert!(seen.stderr.contains("baud=7 is not a speed"), "{seen:?}");
    // Here, wasmi is a runner's engine only.
    let seen = Seen::from(spore().args(["run", "--engine", "wasmi", &path("hello")]).output().unwrap());
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("here: native or pulley"), "{seen:?}");
}

#[test]
fn a_serial_port_plugin_serves_the_uart_interface_to_the_apps_granted_it() {
    let pty = PtyPair::new();
    let plugin = format!("uart1={},{}", serial_plugin().display(), pty.device.display());
    let runner = Runner::start(&["--plugin", &plugin]);
    // Denied by default, naming the grant; a device the runner lacks named with what it has.
    let seen = runner.spore(&["run", &path("uart")]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("imports spore:device/uart@0.1::"), "{seen:?}");
    assert!(seen.stderr.contains("; grant it with --device uart1"), "{seen:?}");
    let seen = runner.spore(&["run", "--device", "gpio", &path("gpio"), "blink", "0", "1", "0"]);
    assert!(seen.stderr.contains("this runner has no device \"gpio\"; it has: uart1"), "{seen:?}");

    // The same app as on a board's second UART, talked to from our end of the pty.
    let ours = std::fs::OpenOptions::new().read(true).write(true).open(&pty.ours).unwrap();
    let seen = runner.spore(&["deploy", "--name", "echo", "--device", "uart1", &path("uart")]);
    assert_eq!(seen.code, 0, "{seen:?}");
    echo_conversation(&ours, "hello linux");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !runner.spore(&["ps", "-a"]).stdout.lines().any(|l| l.contains("echo") && l.contains("exited (0)")) {
        assert!(Instant::now() < deadline, "the echo app did not end: {:?}", runner.spore(&["ps", "-a"]));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(runner.spore(&["logs", "echo"]).stdout, "read hello linux\nread bye\n");

    // An app waiting on the port is still killed at once.
    let seen = runner.spore(&["deploy", "--name", "waiter", "--device", "uart1", &path("uart")]);
    assert_eq!(seen.code, 0, "{seen:?}");
    let killed = Instant::now();
    let seen = runner.spore(&["stop", "waiter"]);
    assert_eq!(seen.code, 0, "{seen:?}");
    assert!(killed.elapsed() < Duration::from_secs(5), "{:?}", killed.elapsed());
}

#[test]
fn a_plugin_that_does_not_load_or_open_stops_the_runner_at_start_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let start = |plugin: &str| {
        let out = Command::new(runner_binary())
            .arg("--socket")
            .arg(dir.path().join("r.sock"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--plugin", plugin])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let missing = dir.path().join("libnothing.so");
    let (code, stderr) = start(&format!("uart1={}", missing.display()));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("plugin uart1 (") && stderr.contains("cannot load it"), "{stderr}");
    let nowhere = dir.path().join("no-such-tty");
    let (code, stderr) = start(&format!("uart1={},{}", serial_plugin().display(), nowhere.display()));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("its device did not open with") && stderr.contains("No such file"), "{stderr}");
    let (code, stderr) = start("uart1");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("give NAME=LIB[,CONFIG]"), "{stderr}");
}
