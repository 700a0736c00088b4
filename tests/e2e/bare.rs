//! `spore` deploying to the bare-metal runner: the firmware (`spore-runner-bare`, built by
//! scripts/test) booted on QEMU's riscv64 `virt` board with its UART on a pty, driven with
//! `spore --host serial://PTY` exactly as a Linux runner on a serial line.

use crate::support::{Seen, guest, spore};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A QEMU board running the firmware, stopped (by PID) when the test ends.
struct Board {
    qemu: Child,
    pty: String,
}

impl Drop for Board {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
    }
}

fn firmware() -> PathBuf {
    let target_dir = Path::new(env!("CARGO_BIN_EXE_spore")).parent().unwrap().parent().unwrap();
    let path = target_dir.join("riscv64gc-unknown-none-elf/release/spore-runner-bare");
    assert!(
        path.exists(),
        "{} is missing: scripts/test builds it (cargo build --release --target riscv64gc-unknown-none-elf -p spore-runner-bare)",
        path.display()
    );
    path
}

impl Board {
    fn boot() -> Board {
        let mut qemu = Command::new("qemu-system-riscv64")
            .args(["-machine", "virt", "-m", "128M", "-bios", "none", "-display", "none", "-monitor", "none"])
            .args(["-serial", "pty", "-kernel"])
            .arg(firmware())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("qemu-system-riscv64 (scripts/setup installs it)");
        // QEMU names the pty on stdout: "char device redirected to /dev/pts/N (label serial0)".
        let mut line = String::new();
        BufReader::new(qemu.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let pty = line.split_whitespace().find(|w| w.starts_with("/dev/pts/")).map(str::to_string);
        let Some(pty) = pty else {
            let _ = qemu.kill();
            panic!("QEMU did not give a pty: {line:?}");
        };
        Board { qemu, pty }
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
    let board = Board::boot();
    let seen = board.spore(&["run", &path("hello")]);
    assert_eq!((seen.code, seen.stdout.as_str()), (0, "Hello from Spore!\n"), "{seen:?}");
    let seen = board.spore(&["run", &path("exit-code"), "7"]);
    assert_eq!((seen.code, seen.stdout.as_str()), (7, "exiting with 7\n"), "{seen:?}");
    let seen = board.spore(&["run", "-e", "GREETING=hi", &path("args-env"), "a b"]);
    assert_eq!(seen.stdout, "arg[0]=args-env.wasm\narg[1]=a b\nenv GREETING=hi\n", "{seen:?}");
    // n-body's energies are the reference's, computed on wasmi on the board.
    let seen = board.spore(&["run", &path("nbody"), "1000"]);
    assert_eq!((seen.code, seen.stdout.as_str()), (0, "-0.169075164\n-0.169087605\n"), "{seen:?}");
    let seen = board.spore(&["run", &path("trap")]);
    assert_eq!(seen.code, 134, "{seen:?}");
    assert!(seen.stderr.contains("unreachable"), "{seen:?}");
    let seen = board.spore(&["run", "--memory", "16M", &path("membomb")]);
    assert_eq!(seen.code, 137, "{seen:?}");
    assert!(seen.stderr.contains("memory limit"), "{seen:?}");
    let seen = board.spore(&["run", "--timeout", "500ms", &path("spin")]);
    assert_eq!(seen.code, 124, "{seen:?}");
    // Native code is not for a board: it says what it has.
    let seen = board.spore(&["run", "--engine", "native", &path("hello")]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("it has wasmi"), "{seen:?}");
}

#[test]
fn a_spinning_app_on_the_board_is_killed_while_another_keeps_running() {
    let board = Board::boot();
    let seen = board.spore(&["deploy", "--name", "spinner", &path("spin")]);
    assert_eq!(seen.code, 0, "{seen:?}");
    // While it spins, the link answers and another app runs to its end.
    let started = Instant::now();
    let seen = board.spore(&["run", &path("hello")]);
    assert_eq!((seen.code, seen.stdout.as_str()), (0, "Hello from Spore!\n"), "{seen:?}");
    assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
    let ps = board.spore(&["ps"]);
    assert!(ps.stdout.contains("spinner") && ps.stdout.contains("running"), "{ps:?}");
    let stop = board.spore(&["stop", "spinner"]);
    assert_eq!((stop.code, stop.stdout.as_str()), (0, "spinner\n"), "{stop:?}");
    let ps = board.spore(&["ps", "-a"]);
    assert!(ps.stdout.contains("killed"), "{ps:?}");
    let rm = board.spore(&["rm", "spinner"]);
    assert_eq!(rm.code, 0, "{rm:?}");
}
