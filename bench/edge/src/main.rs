//! The edge runner's figures for `bench/edge.sh`: cold start on each engine (in process, bytes
//! in memory to the guest's first instruction and back), upload throughput over a Unix socket
//! and TCP, kill latency, n-body on each engine against native, and the runner's memory. The
//! runner is the release build under test, started here as a process; prints markdown.
//!
//! usage: spore-edge-bench RUNNER NBODY.wasm NATIVE-NBODY STEPS

use spore_edge::compiled::{Compiled, precompile};
use spore_edge::interpreter::Interpreter;
use spore_edge::{BackendKind, Call, Engine, Instance, Interrupt, Limits, Stop, Wasi};
use spore_runner::client::Client;
use spore_runner::link::Address;
use spore_wasip1::{Clock, Host, Stream, Taken};
use spore_wire::{Instantiate, ModuleKind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// A host that does nothing: cold start measures the engine, not a platform.
struct Null;

impl Host for Null {
    fn write(&mut self, _: Stream, _: &[u8]) -> Result<Taken, Stop> {
        Ok(Taken::All)
    }
    fn now(&mut self, _: Clock) -> Option<u64> {
        Some(0)
    }
    fn resolution(&mut self, _: Clock) -> Option<u64> {
        Some(1)
    }
    fn random(&mut self, _: &mut [u8]) {}
    fn sleep_until(&mut self, _: u64) -> Result<(), Stop> {
        Ok(())
    }
    fn yield_now(&mut self) -> Result<(), Stop> {
        Ok(())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// Bytes in memory → loaded → instantiated → `_start` entered and returned, `n` times.
fn cold_start<E: Engine>(engine: &E, bytes: &[u8], n: usize) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            let module = engine.load(bytes).unwrap();
            let mut i =
                engine.instantiate(&module, Wasi::new(["x"], [], Null), &Limits::default(), Interrupt::new()).unwrap();
            let _ = i.start(Call::Start, None);
            t.elapsed()
        })
        .collect();
    times.sort();
    times
}

/// The runner process under test, on a Unix socket and TCP, killed at the end.
struct Runner {
    child: Child,
    dir: PathBuf,
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, runner_bin, nbody, native_nbody, steps] = &args[..] else {
        eprintln!("usage: spore-edge-bench RUNNER NBODY.wasm NATIVE-NBODY STEPS");
        std::process::exit(2);
    };
    let runner_size = std::fs::metadata(runner_bin).map(|m| m.len()).unwrap_or(0);
    println!("| what | figure | goal |");
    println!("|---|---|---|");
    println!(
        "| runner size, stripped | {:.2} MiB ({runner_size} bytes) | ≤ 2 MB |",
        runner_size as f64 / (1 << 20) as f64
    );

    // Cold start, per engine.
    let empty = wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#).unwrap();
    let native = Compiled::new(BackendKind::Native).unwrap();
    let pulley = Compiled::new(BackendKind::Pulley).unwrap();
    let native_bytes = precompile(BackendKind::Native, native.target(), &empty).unwrap();
    let pulley_bytes = precompile(BackendKind::Pulley, pulley.target(), &empty).unwrap();
    for (name, times) in [
        ("native", cold_start(&native, &native_bytes, 2000)),
        ("Pulley", cold_start(&pulley, &pulley_bytes, 2000)),
        ("wasmi", cold_start(&Interpreter::default(), &empty, 2000)),
    ] {
        println!(
            "| cold start, {name}: bytes in memory → `_start` returned, p50 / p99 | {} / {} | ≤ 150 µs p50 |",
            us(percentile(&times, 0.5)),
            us(percentile(&times, 0.99))
        );
    }

    // The runner as a process.
    let dir = std::env::temp_dir().join(format!("spore-edge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), "bench-token-of-24-chars").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let socket = dir.join("r.sock");
    let child = Command::new(runner_bin)
        .args(["--socket", socket.to_str().unwrap(), "--data-dir", dir.join("data").to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--token-file", dir.join("token").to_str().unwrap()])
        .args(["--max-module", "256MiB", "--max-store", "2GiB", "--max-instances", "2000", "--memory", "100GiB"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let runner = Runner { child, dir: dir.clone() };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "the runner did not start (its message is above)");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let idle = rss_kib(runner.child.id());
    let unix = Address::Unix(socket.clone());
    let tcp = Address::Tcp(format!("127.0.0.1:{port}"));

    // Upload throughput: a 32 MiB module, a new digest each time (commit included: sha256 and
    // wasmi's validation).
    for (name, address, token) in [("Unix socket", &unix, ""), ("TCP", &tcp, "bench-token-of-24-chars")] {
        let mut client = Client::connect(address, "bench", token).unwrap();
        let mut best = f64::MAX;
        for round in 0..3 {
            let module = big_module(32 << 20, &format!("{name}{round}"));
            let t = Instant::now();
            client.upload(&module, ModuleKind::Wasm, "", |_, _| true).unwrap();
            best = best.min(t.elapsed().as_secs_f64());
            let _ = round;
        }
        println!("| upload over {name}, 32 MiB (best of 3) | {:.0} MB/s | ≥ 10 MB/s |", 32.0 * 1.048576 / best);
    }

    // Kill: KILL sent on one link → EXIT read on the link that runs the spinner.
    let spin =
        wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start") (loop (br 0))))"#).unwrap();
    let mut runs = Client::connect(&unix, "bench", "").unwrap();
    let artifact = precompile(BackendKind::Native, native.target(), &spin).unwrap();
    let digest = runs.upload(&artifact, ModuleKind::Native, &native.compat(), |_, _| true).unwrap();
    let spinner = runs.instantiate(app(digest, "spinner")).unwrap();
    let mut kills = Vec::new();
    for _ in 0..100 {
        let killer = std::thread::spawn({
            let unix = unix.clone();
            move || {
                let mut c = Client::connect(&unix, "bench", "").unwrap();
                std::thread::sleep(Duration::from_millis(20));
                let t = Instant::now();
                c.kill(spinner).unwrap();
                t
            }
        });
        runs.run(spinner, &AtomicBool::new(false), |_| {}).unwrap();
        let ended = Instant::now();
        kills.push(ended - killer.join().unwrap());
    }
    kills.sort();
    println!(
        "| kill of a spinning guest, KILL sent → EXIT read, p50 / p99 (100 kills) | {} / {} | ≤ 10 ms p99 |",
        us(percentile(&kills, 0.5)),
        us(percentile(&kills, 0.99))
    );

    // n-body on each engine, run at the runner; native the same source compiled natively.
    let t = Instant::now();
    let ok = Command::new(native_nbody).arg(steps).stdout(Stdio::null()).status().unwrap().success();
    assert!(ok);
    let native_time = t.elapsed().as_secs_f64();
    println!("| n-body {steps}: native binary | {native_time:.3} s | 1.00× |");
    let wasm = std::fs::read(nbody).unwrap();
    for (name, kind, bytes, compat) in [
        (
            "Cranelift artifact",
            ModuleKind::Native,
            precompile(BackendKind::Native, native.target(), &wasm).unwrap(),
            native.compat(),
        ),
        (
            "Pulley",
            ModuleKind::Pulley,
            precompile(BackendKind::Pulley, pulley.target(), &wasm).unwrap(),
            pulley.compat(),
        ),
        ("wasmi", ModuleKind::Wasm, wasm.clone(), String::new()),
    ] {
        let digest = runs.upload(&bytes, kind, &compat, |_, _| true).unwrap();
        let mut spec = app(digest, &format!("nbody-{kind:?}"));
        spec.args = vec!["nbody".into(), steps.clone()];
        let id = runs.instantiate(spec).unwrap();
        let exit = runs.run(id, &AtomicBool::new(false), |_| {}).unwrap();
        let secs = exit.wall_us as f64 / 1e6;
        println!("| n-body {steps}: {name} at the runner | {secs:.3} s | {:.2}× native |", secs / native_time);
    }

    // Memory: the idle runner; each app it holds, made and not running; each app running a
    // guest that sleeps (its thread, its instance, its linear memory of one page).
    println!("| RSS of the idle runner | {idle} KiB | published |");
    let hello = runs.upload(&empty, ModuleKind::Wasm, "", |_, _| true).unwrap();
    let before = rss_kib(runner.child.id());
    for i in 0..1000 {
        runs.instantiate(app(hello, &format!("idle-{i}"))).unwrap();
    }
    let after = rss_kib(runner.child.id());
    println!(
        "| RSS per app held, not running (1000 made) | {:.2} KiB | published |",
        after.saturating_sub(before) as f64 / 1000.0
    );
    let sleeper = wat::parse_str(
        r#"(module
            (import "wasi_snapshot_preview1" "poll_oneoff" (func $p (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "_start")
              (i32.store (i32.const 16) (i32.const 1))
              (i64.store (i32.const 24) (i64.const 3600000000000))
              (drop (call $p (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 200)))))"#,
    )
    .unwrap();
    for (name, kind, bytes, compat) in [
        (
            "native",
            ModuleKind::Native,
            precompile(BackendKind::Native, native.target(), &sleeper).unwrap(),
            native.compat(),
        ),
        ("wasmi", ModuleKind::Wasm, sleeper.clone(), String::new()),
    ] {
        let digest = runs.upload(&bytes, kind, &compat, |_, _| true).unwrap();
        let before = rss_kib(runner.child.id());
        for i in 0..100 {
            let id = runs.instantiate(app(digest, &format!("sleep-{name}-{i}"))).unwrap();
            runs.start(id).unwrap();
        }
        std::thread::sleep(Duration::from_millis(500));
        let after = rss_kib(runner.child.id());
        println!(
            "| RSS per app running a sleeping guest, {name} (100) | {:.1} KiB | published |",
            after.saturating_sub(before) as f64 / 100.0
        );
    }
    drop(runs);
    let _ = Path::new(&dir);
}

fn app(module: [u8; 32], name: &str) -> Instantiate {
    Instantiate {
        module,
        name: name.into(),
        args: vec![name.into()],
        env: vec![],
        limits: Limits::default(),
        boot: false,
        devices: vec![],
    }
}

/// A wasm module of about `size` bytes (one data segment), distinct by `tag`.
fn big_module(size: usize, tag: &str) -> Vec<u8> {
    let wat = format!(
        r#"(module (memory (export "memory") {pages}) (data (i32.const 0) "{tag}") (data (i32.const 64) "{fill}") (func (export "_start")))"#,
        pages = size / 65536 + 2,
        fill = "a".repeat(size)
    );
    wat::parse_str(wat).unwrap()
}
