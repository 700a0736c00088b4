//! A bundle: the runner's executable with one app attached (`spore bundle`; layout in
//! [`spore_wire::bundle`]). Started as `./app ARGS`, the runner finds the app at its own end
//! and runs it once in the foreground — on the same engines, WASI and limits as the apps it
//! holds — with the image's files as a read-only `/`, and exits as `spore run` would.
//!
//! Nothing outside the executable is read: no data directory, no cache, no Spore install.

mod flags;
mod host;
mod payload;

pub use payload::{Payload, attached};

use crate::server::engines::Engines;
use crate::system::Clocks;
use flags::{Flags, PREFIX};
use host::BundleHost;
use spore_edge::{Call, Interrupt, Limits, Wasi};
use spore_types::exit_code;
use spore_wasip1::Tree;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Memory an app gets unless the bundle or `--spore-memory` says otherwise: all a 32-bit
/// memory can address, as `spore run` gives it.
const DEFAULT_MEMORY: u64 = 4 << 30;

/// Runs the attached app with this process's arguments; returns the process's exit code.
pub fn run(payload: Payload) -> i32 {
    let started = Instant::now();
    let header = &payload.header;
    let name = header.argv.first().cloned().unwrap_or_else(|| header.image.clone());
    let flags = match flags::parse(std::env::args_os().skip(1), |k| std::env::var(k).ok()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{name}: {e}");
            return exit_code::SPORE_ERROR;
        }
    };
    if flags.help {
        print!("{} (a Spore bundle of {})\n\n{}", name, header.image, flags::USAGE);
        return 0;
    }
    if flags.info {
        print!("{}", info(&payload));
        return 0;
    }
    let limits = Limits {
        memory_bytes: flags.memory.or(header.limits.memory_bytes).or(Some(DEFAULT_MEMORY)),
        cpu_ms: flags.cpu_ms.or(header.limits.cpu_ms),
        wall_ms: flags.wall_ms.or(header.limits.wall_ms),
        fuel: header.limits.fuel,
    };
    if let Some(ms) = limits.wall_ms {
        watchdog(name.clone(), ms, started);
    }
    let ended = start(&payload, &flags, &limits, started);
    if ENDED.swap(true, Ordering::AcqRel) {
        // The watchdog is telling the end and exiting.
        loop {
            std::thread::park();
        }
    }
    match ended {
        Ok(outcome) => {
            let (code, why) = crate::ending::exit_code(&outcome, PREFIX);
            if let Some(why) = why {
                eprintln!("{name}: {why}");
            }
            code
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            exit_code::SPORE_ERROR
        }
    }
}

/// Loads the app and runs it to its end.
fn start(payload: &Payload, flags: &Flags, limits: &Limits, started: Instant) -> Result<spore_edge::Outcome, String> {
    let header = &payload.header;
    let artifact = payload.at(header.artifact);
    let engines = Engines::for_mapped(header.kind, artifact)?;
    engines.accepts(header.kind, &header.compat).map_err(|r| r.message)?;
    // SAFETY: the payload is this process's read-only private mapping of its own executable,
    // kept for the rest of the process: its pages are trusted as the runner's own text, which
    // the kernel pages in from the same file.
    let module = unsafe { engines.load_mapped(header.kind, artifact) }.map_err(|r| r.message)?;
    let args = argv(header, &flags.args);
    // The image's environment, then the command line's over it.
    let env: BTreeMap<&str, &str> =
        header.env.iter().chain(&flags.env).map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let interrupt = Interrupt::new();
    let host = BundleHost { clocks: Clocks::from(started), interrupt: interrupt.clone() };
    let wasi = Wasi::new(args.iter().map(String::as_str), env, host).with_root(root(payload));
    let ended = engines.run(&module, wasi, limits, interrupt, Call::Start).map_err(|e| e.to_string())?;
    Ok(ended.outcome)
}

/// Whether the end of the run has been told: by the main thread when the engine returns, or by
/// the watchdog; whoever comes first, once.
static ENDED: AtomicBool = AtomicBool::new(false);

/// How long past the deadline the watchdog leaves the engine to stop the app itself.
const GRACE: Duration = Duration::from_millis(100);

/// The wall-clock limit where the engine cannot see it. The engine checks the deadline at its
/// epoch ticks and when a host call returns, but a read of a stdin nobody writes to, or a
/// write to a pipe nobody reads, does not return. Still running a moment past the deadline,
/// the process ends here as the engine would have ended it: the same words, exit code 124.
fn watchdog(name: String, ms: u64, started: Instant) {
    let Some(deadline) = Duration::from_millis(ms).checked_add(GRACE).and_then(|d| started.checked_add(d)) else {
        return;
    };
    std::thread::spawn(move || {
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        if ENDED.swap(true, Ordering::AcqRel) {
            return;
        }
        let (code, why) = crate::ending::exit_code(&spore_edge::past_wall_limit(ms), PREFIX);
        let line = format!("{name}: {}\n", why.unwrap_or_default());
        // Not through `eprintln!` (the app's own write, stuck on a full stderr, may hold its
        // lock), and only if stderr takes it now: a full pipe there is what may have stuck the
        // app.
        let mut stderr = libc::pollfd { fd: 2, events: libc::POLLOUT, revents: 0 };
        // SAFETY: polls one descriptor, `stderr`, for the call; then writes `line`'s bytes,
        // which it borrows for the call, to descriptor 2.
        unsafe {
            if libc::poll(&mut stderr, 1, 0) == 1 && stderr.revents & libc::POLLOUT != 0 {
                let _ = libc::write(2, line.as_ptr().cast(), line.len());
            }
        }
        // Not `std::process::exit`: the app's thread is still running; nothing is left to
        // flush or clean up that the kernel does not.
        // SAFETY: ends the process at once.
        unsafe { libc::_exit(code & 0xff) }
    });
}

/// The app's argv as `spore run IMAGE ARGS` makes it: the image's Entrypoint, then `args` if
/// any were given, else the image's Cmd.
fn argv(header: &spore_wire::bundle::Bundle, args: &[String]) -> Vec<String> {
    let program = header.argv.first().unwrap_or(&header.image).clone();
    let rest = spore_types::image_args(&header.argv, header.entrypoint_len as usize, args.to_vec());
    std::iter::once(program).chain(rest).collect()
}

/// The image's files as the app's read-only `/`.
fn root(payload: &Payload) -> Tree {
    let mut tree = Tree::new();
    for file in &payload.header.files {
        match file.data {
            Some(span) => tree.file(&file.path, payload.at(span)),
            None => tree.dir(&file.path),
        }
    }
    tree
}

/// What `--spore-info` prints.
fn info(payload: &Payload) -> String {
    let h = &payload.header;
    let bytes: u64 = h.files.iter().filter_map(|f| f.data).map(|s| s.len).sum();
    let limit = |v: Option<u64>, unit: &str| v.map_or("none".to_string(), |v| format!("{v}{unit}"));
    let env: Vec<String> = h.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "image:      {}\ndigest:     {}\nengine:     {:?} ({})\napp:        {} bytes\nentrypoint: {:?}\ncmd:        {:?}\nenv:        {}\nfiles:      {} entries, {} bytes\nlimits:     memory {}, cpu-time {}, timeout {}\n",
        h.image,
        h.digest,
        h.kind,
        h.compat,
        h.artifact.len,
        &h.argv[..(h.entrypoint_len as usize).min(h.argv.len())],
        &h.argv[(h.entrypoint_len as usize).min(h.argv.len())..],
        env.join(" "),
        h.files.len(),
        bytes,
        limit(h.limits.memory_bytes, " bytes"),
        limit(h.limits.cpu_ms, " ms"),
        limit(h.limits.wall_ms, " ms"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use spore_wire::ModuleKind;
    use spore_wire::bundle::{Bundle, Span};

    fn header(argv: &[&str], entrypoint_len: u32) -> Bundle {
        Bundle {
            image: "hello:1".into(),
            digest: "sha256:00".into(),
            kind: ModuleKind::Native,
            compat: String::new(),
            artifact: Span { offset: 0, len: 0 },
            argv: argv.iter().map(|s| s.to_string()).collect(),
            entrypoint_len,
            env: vec![],
            limits: Limits::default(),
            files: vec![],
        }
    }

    #[test]
    fn arguments_replace_the_cmd_and_keep_the_entrypoint() {
        let h = header(&["/app.wasm", "--serve", "--default"], 2);
        assert_eq!(argv(&h, &[]), ["/app.wasm", "--serve", "--default"]);
        assert_eq!(argv(&h, &["x".into()]), ["/app.wasm", "--serve", "x"]);
        // Cmd alone: its first word is the program, the rest is replaced.
        let h = header(&["/app.wasm", "a"], 0);
        assert_eq!(argv(&h, &["b".into()]), ["/app.wasm", "b"]);
        // A wasm-layer image with no argv at all is named after the image.
        assert_eq!(argv(&header(&[], 0), &["b".into()]), ["hello:1", "b"]);
    }
}
