//! `spore` deploying to the bare-metal runner: the firmware (`spore-runner-bare`, built by
//! scripts/test) booted on QEMU's riscv64 `virt` board and its Cortex-M4F `mps2-an386`, with
//! the UART on a pty, driven with `spore --host serial://PTY` exactly as a Linux runner on a
//! serial line.

use crate::support::{Seen, echo_conversation, guest, spore};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A QEMU board running the firmware, stopped (by PID) when the test ends.
struct Board {
    qemu: Child,
    pty: String,
    /// The pty held open for the board's life: QEMU looks for a reconnected pty only once a
    /// second, so each command would otherwise wait for it.
    _held: std::fs::File,
    /// QEMU's machine protocol (QMP) socket, for what a test does to the board from outside.
    dir: tempfile::TempDir,
}

impl Drop for Board {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
    }
}

/// The boards the firmware is built for.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// `qemu-system-riscv64 -machine virt`, 128 MiB.
    Virt,
    /// `qemu-system-arm -machine mps2-an386`: a microcontroller, 8 MiB for apps.
    Mps2,
}

fn firmware(target: &str) -> PathBuf {
    let target_dir = Path::new(env!("CARGO_BIN_EXE_spore")).parent().unwrap().parent().unwrap();
    let path = target_dir.join(target).join("release/spore-runner-bare");
    assert!(
        path.exists(),
        "{} is missing: scripts/test builds it (cargo build --release --target {target} -p spore-runner-bare)",
        path.display()
    );
    path
}

impl Board {
    fn boot(kind: Kind) -> Board {
        Board::boot_with(kind, &[])
    }

    /// A board with more of QEMU's devices (`extra` arguments).
    fn boot_with(kind: Kind, extra: &[&str]) -> Board {
        let mut command = match kind {
            Kind::Virt => {
                let mut c = Command::new("qemu-system-riscv64");
                c.args(["-machine", "virt", "-m", "128M", "-bios", "none"]);
                c.arg("-kernel").arg(firmware("riscv64gc-unknown-none-elf"));
                c
            }
            Kind::Mps2 => {
                let mut c = Command::new("qemu-system-arm");
                c.args(["-machine", "mps2-an386"]);
                c.arg("-kernel").arg(firmware("thumbv7em-none-eabihf"));
                c
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let qmp = format!("unix:{},server=on,wait=off", dir.path().join("qmp.sock").display());
        let mut qemu = command
            .args(["-display", "none", "-monitor", "none", "-serial", "pty", "-qmp", &qmp])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("QEMU's system emulators (scripts/setup installs them)");
        // QEMU names the pty on stdout: "char device redirected to /dev/pts/N (label serial0)".
        let mut line = String::new();
        BufReader::new(qemu.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let pty = line.split_whitespace().find(|w| w.starts_with("/dev/pts/")).map(str::to_string);
        let Some(pty) = pty else {
            let _ = qemu.kill();
            panic!("QEMU did not give a pty: {line:?}");
        };
        let held = std::fs::OpenOptions::new().read(true).write(true).open(&pty).unwrap();
        Board { qemu, pty, _held: held, dir }
    }

    /// Presses the board's reset button (QMP `system_reset`).
    fn reset(&self) {
        self.qmp(r#"{"execute": "system_reset"}"#);
    }

    /// A word of the board's memory or registers at `address`, read by QEMU's monitor from
    /// outside the firmware (HMP `xp` through QMP).
    fn word(&self, address: u32) -> u32 {
        let command = format!(
            r#"{{"execute": "human-monitor-command", "arguments": {{"command-line": "xp /1wx {address:#x}"}}}}"#
        );
        let answer = self.qmp(&command);
        // {"return": "0000000040028000: 0x00000002\r\n"}
        let value = answer.rsplit("0x").next().and_then(|v| v.get(..8)).unwrap_or_default();
        u32::from_str_radix(value, 16).unwrap_or_else(|_| panic!("xp answered {answer}"))
    }

    /// Sends one QMP command (after the handshake); its answer line.
    fn qmp(&self, command: &str) -> String {
        let stream = std::os::unix::net::UnixStream::connect(self.dir.path().join("qmp.sock")).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap(); // the greeting
        for command in [r#"{"execute": "qmp_capabilities"}"#, command] {
            writeln!(&stream, "{command}").unwrap();
            // Events (RESET) may come before the answer.
            loop {
                line.clear();
                assert!(reader.read_line(&mut line).unwrap() > 0, "QMP closed at {command}");
                assert!(!line.contains("\"error\""), "{command}: {line}");
                if line.contains("\"return\"") {
                    break;
                }
            }
        }
        line
    }

    fn spore(&self, args: &[&str]) -> Seen {
        let host = format!("serial://{}?baud=115200", self.pty);
        Seen::from(spore().arg("--host").arg(host).args(args).output().unwrap())
    }
}

fn path(name: &str) -> String {
    guest(name).display().to_string()
}

#[test]
fn the_test_guests_run_on_a_riscv_board_with_no_operating_system() {
    runs_the_test_guests(Kind::Virt);
}

#[test]
fn the_test_guests_run_on_a_microcontroller() {
    runs_the_test_guests(Kind::Mps2);
}

fn runs_the_test_guests(kind: Kind) {
    let board = Board::boot(kind);
    let seen = board.spore(&["run", &path("hello")]);
    assert_eq!((seen.code, seen.stdout.as_str()), (0, "Hello from Spore!\n"), "{kind:?}: {seen:?}");
    let seen = board.spore(&["run", &path("exit-code"), "7"]);
    assert_eq!((seen.code, seen.stdout.as_str()), (7, "exiting with 7\n"), "{kind:?}: {seen:?}");
    let seen = board.spore(&["run", "-e", "GREETING=hi", &path("args-env"), "a b"]);
    assert_eq!(seen.stdout, "arg[0]=args-env.wasm\narg[1]=a b\nenv GREETING=hi\n", "{kind:?}: {seen:?}");
    // n-body's energies are the reference's, computed on wasmi on the board.
    let seen = board.spore(&["run", &path("nbody"), "1000"]);
    assert_eq!((seen.code, seen.stdout.as_str()), (0, "-0.169075164\n-0.169087605\n"), "{kind:?}: {seen:?}");
    let seen = board.spore(&["run", &path("trap")]);
    assert_eq!(seen.code, 134, "{kind:?}: {seen:?}");
    assert!(seen.stderr.contains("unreachable"), "{kind:?}: {seen:?}");
    // A memory bomb stops at its limit, and the runner goes on.
    let seen = board.spore(&["run", "--memory", "2M", &path("membomb")]);
    assert_eq!(seen.code, 137, "{kind:?}: {seen:?}");
    assert!(seen.stderr.contains("memory limit of 2097152"), "{kind:?}: {seen:?}");
    let seen = board.spore(&["run", "--timeout", "500ms", &path("spin")]);
    assert_eq!(seen.code, 124, "{kind:?}: {seen:?}");
    // More memory than the board has for apps is refused, naming what it has.
    let seen = board.spore(&["run", "--memory", "1G", &path("hello")]);
    assert_eq!(seen.code, 125, "{kind:?}: {seen:?}");
    assert!(seen.stderr.contains("the app may use 1073741824 bytes of memory"), "{kind:?}: {seen:?}");
    // Native code is not for a board: it says what it has.
    let seen = board.spore(&["run", "--engine", "native", &path("hello")]);
    assert_eq!(seen.code, 125, "{kind:?}: {seen:?}");
    assert!(seen.stderr.contains("it has wasmi"), "{kind:?}: {seen:?}");
    let seen = board.spore(&["run", &path("hello")]);
    assert_eq!((seen.code, seen.stdout.as_str()), (0, "Hello from Spore!\n"), "{kind:?}: still serving: {seen:?}");
}

/// The ticks an app has printed (`tick N` lines).
fn ticks(board: &Board, name: &str) -> usize {
    board.spore(&["logs", name]).stdout.lines().filter(|l| l.starts_with("tick ")).count()
}

#[test]
fn apps_on_a_microcontroller_share_it_a_spinner_is_killed_and_a_reset_forgets_everything() {
    let board = Board::boot(Kind::Mps2);
    // Two apps that print a line a second (sleeping, parked, in between) and one that spins.
    for name in ["ticker-a", "ticker-b"] {
        let seen = board.spore(&["deploy", "--name", name, &path("refdaemon"), "1"]);
        assert_eq!(seen.code, 0, "{seen:?}");
    }
    let seen = board.spore(&["deploy", "--name", "spinner", &path("spin")]);
    assert_eq!(seen.code, 0, "{seen:?}");
    // Both tickers go on, side by side, while the spinner spins; the link answers.
    let deadline = Instant::now() + Duration::from_secs(60);
    while ticks(&board, "ticker-a") < 3 || ticks(&board, "ticker-b") < 3 {
        assert!(Instant::now() < deadline, "the tickers stalled");
        std::thread::sleep(Duration::from_millis(500));
    }
    let ps = board.spore(&["ps"]);
    assert!(ps.stdout.contains("spinner") && ps.stdout.contains("running"), "{ps:?}");
    let stop = board.spore(&["stop", "spinner"]);
    assert_eq!((stop.code, stop.stdout.as_str()), (0, "spinner\n"), "{stop:?}");
    let ps = board.spore(&["ps", "-a"]);
    assert!(ps.stdout.contains("killed"), "{ps:?}");
    // The tickers did not stop with it.
    let before = ticks(&board, "ticker-a");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ticks(&board, "ticker-a") <= before {
        assert!(Instant::now() < deadline, "ticker-a stopped with the spinner");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Another app runs to its end beside them.
    let seen = board.spore(&["run", &path("hello")]);
    assert_eq!((seen.code, seen.stdout.as_str()), (0, "Hello from Spore!\n"), "{seen:?}");

    // After a reset the board holds nothing; a deploy uploads again and runs.
    board.reset();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ps = board.spore(&["ps", "-a", "-q"]);
        if ps.code == 0 && ps.stdout.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the board did not come back empty: {ps:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let seen = board.spore(&["run", &path("hello")]);
    assert_eq!((seen.code, seen.stdout.as_str()), (0, "Hello from Spore!\n"), "{seen:?}");
}

/// Copies bytes one way, damaging one byte of the `damage`-th frame (counted by its
/// delimiters); sets `damaged` once it has.
fn damaging_pipe(mut from: std::fs::File, mut to: std::fs::File, damage: usize, damaged: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let (mut frames, mut buf) = (0, [0u8; 4096]);
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            for b in buf[..n].iter_mut() {
                if *b == 0 {
                    frames += 1;
                } else if frames + 1 == damage && !damaged.swap(true, Ordering::Relaxed) {
                    *b = if *b ^ 0x10 == 0 { 0x7f } else { *b ^ 0x10 };
                }
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
}

#[test]
fn a_frame_damaged_on_the_boards_uart_is_sent_again_and_not_carried_out_twice() {
    let board = Board::boot(Kind::Virt);
    // The agent's end of a pty pair; the other end is the proxy's, which copies to the board.
    let dir = tempfile::tempdir().unwrap();
    let (agent, proxy) = (dir.path().join("agent"), dir.path().join("proxy"));
    let socat = Command::new("socat")
        .arg(format!("pty,rawer,link={}", agent.display()))
        .arg(format!("pty,rawer,link={}", proxy.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("socat (scripts/setup installs it)");
    let _socat = Stopped(socat);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(agent.exists() && proxy.exists()) {
        assert!(Instant::now() < deadline, "socat made no ptys");
        std::thread::sleep(Duration::from_millis(20));
    }
    let open = |p: &Path| std::fs::OpenOptions::new().read(true).write(true).open(p).unwrap();
    let (to_board, from_board) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    // Agent to board: the third frame (after HELLO and MODULE_BEGIN, the first CHUNK);
    // board to agent: the second (the answer to MODULE_BEGIN).
    damaging_pipe(open(&proxy), open(Path::new(&board.pty)), 3, to_board.clone());
    damaging_pipe(open(Path::new(&board.pty)), open(&proxy), 2, from_board.clone());
    let host = format!("serial://{}", agent.display());
    let deploy = spore().args(["--host", &host, "deploy", "--name", "once", &path("exit-code"), "3"]).output().unwrap();
    let seen = Seen::from(deploy);
    assert_eq!(seen.code, 0, "{seen:?}");
    assert!(to_board.load(Ordering::Relaxed) && from_board.load(Ordering::Relaxed), "both frames were damaged");
    // Exactly one app, which ran once.
    let ps = Seen::from(spore().args(["--host", &host, "ps", "-a"]).output().unwrap());
    assert_eq!(ps.stdout.lines().filter(|l| l.contains("once")).count(), 1, "{ps:?}");
    let logs = Seen::from(spore().args(["--host", &host, "logs", "once"]).output().unwrap());
    assert_eq!(logs.stdout, "exiting with 3\n", "{logs:?}");
}

/// A helper process stopped (by PID) when the test ends, however it ends.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn random_bytes_come_from_the_boards_entropy_device_when_it_has_one() {
    // An entropy device fed from /dev/zero: what the guest gets shows where it came from.
    let device = ["-object", "rng-random,filename=/dev/zero,id=rng0", "-device", "virtio-rng-device,rng=rng0"];
    // The bytes raw (they are not text).
    let random = |board: &Board| {
        let host = format!("serial://{}", board.pty);
        let out = spore().args(["--host", &host, "run", &path("random")]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        out.stdout
    };
    let board = Board::boot_with(Kind::Virt, &device);
    assert_eq!(random(&board), [0u8; 16]);
    // Without one, the seeded generator (docs/edge.md says so): not the device's zeros.
    let board = Board::boot(Kind::Virt);
    let bytes = random(&board);
    assert_eq!(bytes.len(), 16);
    assert_ne!(bytes, [0u8; 16]);
}

#[test]
fn apps_drive_the_microcontrollers_leds_and_second_uart_when_granted_and_only_then() {
    // The second UART on a socket this test holds: what the app sends, the test reads.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("uart1.sock");
    let uart1 = format!("unix:{},server=on,wait=off", socket.display());
    let board = Board::boot_with(Kind::Mps2, &["-serial", &uart1]);
    let (gpio, uart) = (path("gpio"), path("uart"));
    // Denied by default, naming the grant.
    let seen = board.spore(&["run", &gpio, "blink", "1", "1", "0"]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("imports spore:device/gpio@0.1::"), "{seen:?}");
    assert!(seen.stderr.contains("; grant it with --device gpio"), "{seen:?}");
    let seen = board.spore(&["run", "--device", "gpio", "--device", "spi0", &gpio, "blink", "1", "1", "0"]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("this runner has no device \"spi0\"; it has: gpio, uart1"), "{seen:?}");

    // LED 1 blinks and stays on: QEMU's monitor sees the FPGA's LED register from outside.
    let grants = ["--device", "gpio", "--device", "uart1"];
    assert_eq!(board.word(0x4002_8000) & 0b10, 0, "LED 1 starts off");
    let seen = board.spore(&[&["run"][..], &grants, &[gpio.as_str(), "blink", "1", "3", "50"]].concat());
    assert_eq!((seen.code, seen.stdout.as_str()), (0, "pin 1 1\npin 1 0\npin 1 1\n"), "{seen:?}");
    assert_eq!(board.word(0x4002_8000) & 0b10, 0b10, "LED 1 is on");
    // A pin past the board's two LEDs is an error the app sees.
    let seen = board.spore(&[&["run"][..], &grants, &[gpio.as_str(), "blink", "7", "1", "0"]].concat());
    assert_eq!(seen.code, 1, "{seen:?}");
    assert!(seen.stderr.contains("gpio.set: errno 28"), "{seen:?}");

    // One app waits for LED 0 to change (parked); another switches it on.
    let watcher =
        board.spore(&[&["deploy", "--name", "watcher"][..], &grants, &[gpio.as_str(), "watch", "0"]].concat());
    assert_eq!(watcher.code, 0, "{watcher:?}");
    let seen = board.spore(&[&["run"][..], &grants, &[gpio.as_str(), "blink", "0", "1", "0"]].concat());
    assert_eq!(seen.code, 0, "{seen:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while board.spore(&["logs", "watcher"]).stdout != "pin 0 went from 0 to 1\n" {
        assert!(Instant::now() < deadline, "the watcher did not see LED 0 change");
        std::thread::sleep(Duration::from_millis(200));
    }

    // The echo app on the second UART, talked to from the host's end of it.
    let line_end = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    line_end.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let seen = board.spore(&[&["deploy", "--name", "echo"][..], &grants, &[uart.as_str()]].concat());
    assert_eq!(seen.code, 0, "{seen:?}");
    echo_conversation(&line_end, "hello board");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !board.spore(&["ps", "-a"]).stdout.lines().any(|l| l.contains("echo") && l.contains("exited (0)")) {
        assert!(Instant::now() < deadline, "the echo app did not end: {:?}", board.spore(&["ps", "-a"]));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(board.spore(&["logs", "echo"]).stdout, "read hello board\nread bye\n");
}

#[test]
fn a_board_without_devices_refuses_a_grant_naming_what_it_has() {
    let board = Board::boot(Kind::Virt);
    let seen = board.spore(&["run", "--device", "gpio", &path("gpio"), "blink", "0", "1", "0"]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("this runner has no device \"gpio\"; it has: none"), "{seen:?}");
    let seen = board.spore(&["run", &path("gpio"), "blink", "0", "1", "0"]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("which this runner does not have (WASI preview 1, and devices: none)"), "{seen:?}");
}
