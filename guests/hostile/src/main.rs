//! The hostile guest: one mode per attack a bad vendor's app would try, so the tests can show
//! each one contained. Every mode says what it got on stdout, so a test sees exactly how far
//! it went.
//!
//! - `empty-lines`: writes empty lines forever, 64 KiB of `\n` per write (the log flood that
//!   costs no bytes).
//! - `fd-bomb PATH`: opens PATH again and again without closing, until refused; prints how
//!   many it held and why it stopped, then keeps them open for a second.
//! - `proc`: tries the container runtime's `/proc` (`/proc/self/mem` for writing,
//!   `/proc/self/maps`, `/proc/1/environ`) and to create `/pwned`; prints each outcome.
//! - `swap DIR`: replaces `DIR/sub` by a symlink climbing out of every mount, then exits 1
//!   (so a restart policy brings it back to see what `/sub` shows).
//! - `swap-dir DIR`: replaces `DIR/sub` by another, new directory, then exits 1.
//! - `ls DIR`: lists DIR.
//! - `stat-storm DIR`: stats DIR forever (filesystem calls run off the guest's thread unless
//!   the host keeps them on it).
//! - `read-storm FILE [BYTES]`: reads FILE from its start, BYTES (default 4096) at a time,
//!   forever (reads of an opened file, the same question).
//!
//! Built for WASI p1 (`hostile.wasm`, a module) and WASI p2 (`hostile-p2.wasm`, a component),
//! whose file calls take different paths through the host.
use std::io::Write;
use std::process::exit;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_else(|| usage());
    match args.get(1).map(String::as_str) {
        Some("empty-lines") => {
            let newlines = vec![b'\n'; 64 << 10];
            let mut out = std::io::stdout().lock();
            loop {
                let _ = out.write_all(&newlines);
            }
        }
        Some("fd-bomb") => {
            let mut held = Vec::new();
            let why = loop {
                match std::fs::File::open(arg(2)) {
                    Ok(f) => held.push(f),
                    Err(e) => break e,
                }
                if held.len() >= 10_000_000 {
                    break std::io::Error::other("gave up at 10M");
                }
            };
            println!("held {} then: {why}", held.len());
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        Some("proc") => {
            let try_open = |what: &str, r: std::io::Result<std::fs::File>| match r {
                Ok(_) => println!("{what}: OPENED"),
                Err(e) => println!("{what}: refused ({e})"),
            };
            try_open("write /proc/self/mem", std::fs::OpenOptions::new().write(true).open("/proc/self/mem"));
            try_open("read /proc/self/maps", std::fs::File::open("/proc/self/maps"));
            try_open("read /proc/1/environ", std::fs::File::open("/proc/1/environ"));
            try_open("create /pwned", std::fs::File::create("/pwned"));
        }
        Some("swap") => {
            let dir = arg(2);
            std::fs::rename(format!("{dir}/sub"), format!("{dir}/sub-away")).unwrap_or_else(|e| fail("rename", e));
            symlink_in(dir, "../../../../../../../../../../..", "sub").unwrap_or_else(|e| fail("symlink", e));
            println!("swapped {dir}/sub for a symlink");
            exit(1);
        }
        Some("swap-dir") => {
            let dir = arg(2);
            std::fs::rename(format!("{dir}/sub"), format!("{dir}/sub-away")).unwrap_or_else(|e| fail("rename", e));
            std::fs::create_dir(format!("{dir}/sub")).unwrap_or_else(|e| fail("mkdir", e));
            std::fs::write(format!("{dir}/sub/planted"), "planted").unwrap_or_else(|e| fail("write", e));
            println!("swapped {dir}/sub for another directory");
            exit(1);
        }
        Some("ls") => match std::fs::read_dir(arg(2)) {
            Ok(entries) => {
                let mut names: Vec<String> =
                    entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
                names.sort();
                println!("{}", names.join(" "));
            }
            Err(e) => fail("ls", e),
        },
        Some("stat-storm") => loop {
            let _ = std::fs::metadata(arg(2));
        },
        Some("read-storm") => {
            use std::io::{Read, Seek};
            let mut file = std::fs::File::open(arg(2)).unwrap_or_else(|e| fail("open", e));
            let mut buf = vec![0u8; args.get(3).and_then(|n| n.parse().ok()).unwrap_or(4096)];
            loop {
                if file.read(&mut buf).unwrap_or_else(|e| fail("read", e)) == 0 {
                    file.rewind().unwrap_or_else(|e| fail("rewind", e));
                }
            }
        }
        _ => usage(),
    }
}

/// `symlinkat(target, DIR, name)` through WASI's `path_symlink` (std's wrapper is unstable).
fn symlink_in(dir: &str, target: &str, name: &str) -> std::io::Result<()> {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        fn path_symlink(old: *const u8, old_len: usize, fd: i32, new: *const u8, new_len: usize) -> u16;
    }
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(dir)?;
    // SAFETY: both buffers are valid for their lengths; the fd is open for the call's duration.
    let errno = unsafe { path_symlink(target.as_ptr(), target.len(), dir.as_raw_fd(), name.as_ptr(), name.len()) };
    match errno {
        0 => Ok(()),
        e => Err(std::io::Error::other(format!("errno {e}"))),
    }
}

fn fail(what: &str, e: std::io::Error) -> ! {
    println!("{what}: {e}");
    exit(3);
}

fn usage() -> ! {
    eprintln!("usage: hostile empty-lines | fd-bomb PATH | proc | swap DIR | swap-dir DIR | ls DIR | stat-storm DIR | read-storm FILE [BYTES]");
    exit(2);
}
