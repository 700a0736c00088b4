//! What the backends' tests share: a host as a Linux runner would have it, the test guests
//! (built by guests/build.sh), and the behaviours every engine must have — the same assertions
//! for wasmi, native and Pulley, so a limit cannot hold on one and not another.

#![allow(dead_code)]

use spore_edge::{
    Call, EdgeError, Engine, Host, Instance, Interrupt, LimitKind, Limits, Outcome, Step, Stop, Value, Wasi,
};
use spore_wasip1::{Clock, Stream, Taken};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A host as a Linux runner would have it, keeping the output.
pub struct Kept {
    pub out: Vec<u8>,
    pub err: Vec<u8>,
    start: Instant,
    seed: u64,
    /// Set at the guest's first write, for a test that acts once the guest is under way.
    pub wrote: Arc<AtomicBool>,
}

fn thread_cpu_ns() -> Option<u64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the one we pass.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
    ok.then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

impl Host for Kept {
    fn write(&mut self, stream: Stream, bytes: &[u8]) -> Result<Taken, Stop> {
        self.wrote.store(true, Ordering::Release);
        match stream {
            Stream::Stdout => self.out.extend_from_slice(bytes),
            Stream::Stderr => self.err.extend_from_slice(bytes),
        }
        Ok(Taken::All)
    }
    fn now(&mut self, clock: Clock) -> Option<u64> {
        match clock {
            Clock::Monotonic => Some(self.start.elapsed().as_nanos() as u64),
            Clock::Realtime => Some(SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_nanos() as u64),
            Clock::ThreadCputime => thread_cpu_ns(),
            Clock::ProcessCputime => None,
        }
    }
    fn resolution(&mut self, _: Clock) -> Option<u64> {
        Some(1)
    }
    fn random(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.seed ^= self.seed << 13;
            self.seed ^= self.seed >> 7;
            self.seed ^= self.seed << 17;
            *b = self.seed as u8;
        }
    }
    fn sleep_until(&mut self, deadline: u64) -> Result<(), Stop> {
        let now = self.start.elapsed().as_nanos() as u64;
        std::thread::sleep(Duration::from_nanos(deadline.saturating_sub(now)));
        Ok(())
    }
    fn yield_now(&mut self) -> Result<(), Stop> {
        Ok(())
    }
}

pub fn guest(name: &str) -> Vec<u8> {
    let path = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../guests/out")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; build the guests with guests/build.sh", path.display()))
}

pub fn wasi(args: &[&str], env: &[(&str, &str)]) -> Wasi<Kept> {
    let host = Kept {
        out: Vec::new(),
        err: Vec::new(),
        start: Instant::now(),
        seed: 0x9e37_79b9_7f4a_7c15,
        wrote: Arc::default(),
    };
    Wasi::new(args.iter().copied(), env.iter().copied(), host)
}

/// An engine and how a wasm module becomes what it loads (itself, or a compiled artifact).
pub struct Backend<E: Engine> {
    pub engine: E,
    pub prepare: fn(&[u8]) -> Vec<u8>,
}

impl<E: Engine> Backend<E> {
    pub fn load(&self, wasm: &[u8]) -> Result<E::Module, EdgeError> {
        self.engine.load(&(self.prepare)(wasm))
    }

    pub fn instance(
        &self,
        wasm: &[u8],
        wasi: Wasi<Kept>,
        limits: Limits,
        interrupt: Interrupt,
    ) -> Result<E::Instance<Kept>, EdgeError> {
        self.engine.instantiate(&self.load(wasm)?, wasi, &limits, interrupt)
    }

    /// Runs a guest command to its end in slices of `slice`; how it ended, its stdout, and how
    /// many times it paused.
    pub fn run(&self, name: &str, args: &[&str], limits: Limits, slice: Option<u64>) -> (Outcome, String, u32)
    where
        E::Instance<Kept>: Output,
    {
        self.run_with(name, args, limits, slice, Interrupt::new())
    }

    pub fn run_with(
        &self,
        name: &str,
        args: &[&str],
        limits: Limits,
        slice: Option<u64>,
        interrupt: Interrupt,
    ) -> (Outcome, String, u32)
    where
        E::Instance<Kept>: Output,
    {
        let mut instance = self.instance(&guest(name), wasi(args, &[]), limits, interrupt).unwrap();
        let mut step = instance.start(Call::Start, slice);
        let mut pauses = 0;
        while step == Step::Paused {
            pauses += 1;
            step = instance.resume(slice);
        }
        let Step::Ended(outcome) = step else { unreachable!() };
        (outcome, String::from_utf8_lossy(instance.out()).into_owned(), pauses)
    }
}

/// The stdout a test host kept, whichever backend's instance holds it.
pub trait Output {
    fn out(&self) -> &[u8];
}

impl Output for spore_edge::interpreter::Interpreted<Kept> {
    fn out(&self) -> &[u8] {
        &self.host().out
    }
}

#[cfg(feature = "wasmtime")]
impl Output for spore_edge::compiled::Run<Kept> {
    fn out(&self) -> &[u8] {
        &self.host().out
    }
}

/// Every behaviour an engine must have, asserted the same way for each.
pub fn behaves<E: Engine>(b: &Backend<E>)
where
    E::Instance<Kept>: Output,
{
    commands_run_to_their_ends(b);
    nbody_matches_the_reference(b);
    a_trap_is_reported_with_its_cause(b);
    a_memory_bomb_meets_its_limit(b);
    exports_take_and_return_plain_values(b);
    what_a_runner_cannot_give_is_named(b);
    a_spinning_guest_is_killed_from_another_thread(b);
    wall_and_cpu_limits_end_a_spinning_guest(b);
    limits_hold_inside_host_calls(b);
}

fn commands_run_to_their_ends<E: Engine>(b: &Backend<E>)
where
    E::Instance<Kept>: Output,
{
    let (outcome, out, _) = b.run("hello", &["hello"], Limits::default(), None);
    assert_eq!((outcome, out.as_str()), (Outcome::Exited(0), "Hello from Spore!\n"));

    let mut i = b
        .instance(
            &guest("args-env"),
            wasi(&["args-env", "one", "two words"], &[("K", "v=1")]),
            Limits::default(),
            Interrupt::new(),
        )
        .unwrap();
    assert_eq!(i.start(Call::Start, None), Step::Ended(Outcome::Exited(0)));
    assert_eq!(String::from_utf8_lossy(i.out()), "arg[0]=args-env\narg[1]=one\narg[2]=two words\nenv K=v=1\n");

    let (outcome, out, _) = b.run("exit-code", &["exit-code", "7"], Limits::default(), None);
    assert_eq!((outcome, out.as_str()), (Outcome::Exited(7), "exiting with 7\n"));
}

fn nbody_matches_the_reference<E: Engine>(b: &Backend<E>)
where
    E::Instance<Kept>: Output,
{
    let (outcome, out, _) = b.run("nbody", &["nbody", "1000"], Limits::default(), Some(10_000));
    assert_eq!((outcome, out.as_str()), (Outcome::Exited(0), "-0.169075164\n-0.169087605\n"));
}

fn a_trap_is_reported_with_its_cause<E: Engine>(b: &Backend<E>)
where
    E::Instance<Kept>: Output,
{
    let (outcome, out, _) = b.run("trap", &["trap"], Limits::default(), None);
    assert_eq!(out, "about to trap\n");
    let Outcome::Trapped(message) = outcome else { panic!("{outcome:?}") };
    assert!(message.contains("unreachable"), "{message}");
}

fn a_memory_bomb_meets_its_limit<E: Engine>(b: &Backend<E>)
where
    E::Instance<Kept>: Output,
{
    let limits = Limits { memory_bytes: Some(16 << 20), ..Limits::default() };
    let (outcome, _, _) = b.run("membomb", &["membomb"], limits, None);
    assert!(matches!(outcome, Outcome::Limit { limit: LimitKind::Memory, .. }), "{outcome:?}");
}

fn exports_take_and_return_plain_values<E: Engine>(b: &Backend<E>) {
    let wasm = wat::parse_str(
        r#"(module
            (func (export "add") (param i32 i64) (result i64)
              local.get 1 local.get 0 i64.extend_i32_s i64.add)
            (func (export "half") (param f64) (result f64) local.get 0 f64.const 0.5 f64.mul))"#,
    )
    .unwrap();
    let mut i = b.instance(&wasm, wasi(&[], &[]), Limits::default(), Interrupt::new()).unwrap();
    let args = [Value::I32(-2), Value::I64(1 << 40)];
    assert_eq!(
        i.start(Call::Export { name: "add", args: &args }, None),
        Step::Ended(Outcome::Returned(vec![Value::I64((1 << 40) - 2)]))
    );
    let mut i = b.instance(&wasm, wasi(&[], &[]), Limits::default(), Interrupt::new()).unwrap();
    let args = [Value::F64(3.0f64.to_bits())];
    assert_eq!(
        i.start(Call::Export { name: "half", args: &args }, None),
        Step::Ended(Outcome::Returned(vec![Value::F64(1.5f64.to_bits())]))
    );
    let mut i = b.instance(&wasm, wasi(&[], &[]), Limits::default(), Interrupt::new()).unwrap();
    let Step::Ended(Outcome::Trapped(message)) = i.start(Call::Export { name: "nope", args: &[] }, None) else {
        panic!()
    };
    assert!(message.contains("no function \"nope\""), "{message}");
}

fn what_a_runner_cannot_give_is_named<E: Engine>(b: &Backend<E>) {
    let wasm = wat::parse_str(r#"(module (import "spin:kv" "get" (func)) (func (export "_start")))"#).unwrap();
    let err = b.instance(&wasm, wasi(&[], &[]), Limits::default(), Interrupt::new()).err().unwrap();
    assert_eq!(err, EdgeError::Import { import: "spin:kv::get".into() });
    assert!(err.to_string().contains("imports spin:kv::get, which this runner does not provide"));

    let big = wat::parse_str(r#"(module (memory (export "memory") 1000))"#).unwrap();
    let limits = Limits { memory_bytes: Some(1 << 20), ..Limits::default() };
    let err = b.instance(&big, wasi(&[], &[]), limits, Interrupt::new()).err().unwrap();
    assert!(matches!(err, EdgeError::Limit(_)), "{err:?}");

    assert!(matches!(b.engine.load(b"\0asm\x01\0\0\0garbage"), Err(EdgeError::Invalid(_))));
}

fn a_spinning_guest_is_killed_from_another_thread<E: Engine>(b: &Backend<E>)
where
    E::Instance<Kept>: Output,
{
    // Killed once it is spinning (it has written its line), however slowly it got there.
    let interrupt = Interrupt::new();
    let killer = interrupt.clone();
    let spinner = wasi(&["spin"], &[]);
    let wrote = spinner.host.wrote.clone();
    let started = Instant::now();
    let kill = std::thread::spawn(move || {
        while !wrote.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        killer.interrupt();
    });
    let mut i = b.instance(&guest("spin"), spinner, Limits::default(), interrupt).unwrap();
    let mut step = i.start(Call::Start, None);
    while step == Step::Paused {
        step = i.resume(None);
    }
    kill.join().unwrap();
    assert_eq!((step, String::from_utf8_lossy(i.out()).as_ref()), (Step::Ended(Outcome::Killed), "spinning\n"));
    // Ended by the kill, not by something else long after it.
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    // A kill before the run ends it before it starts.
    let interrupt = Interrupt::new();
    interrupt.interrupt();
    let (outcome, out, _) = b.run_with("hello", &["hello"], Limits::default(), None, interrupt);
    assert_eq!((outcome, out.as_str()), (Outcome::Killed, ""));
}

fn wall_and_cpu_limits_end_a_spinning_guest<E: Engine>(b: &Backend<E>)
where
    E::Instance<Kept>: Output,
{
    let limits = Limits { wall_ms: Some(100), ..Limits::default() };
    let started = Instant::now();
    let (outcome, _, _) = b.run("spin", &["spin"], limits, None);
    assert!(matches!(outcome, Outcome::Limit { limit: LimitKind::Wall, .. }), "{outcome:?}");
    assert!(started.elapsed() >= Duration::from_millis(100), "{:?}", started.elapsed());

    let limits = Limits { cpu_ms: Some(100), ..Limits::default() };
    let cpu = thread_cpu_ns().unwrap();
    let (outcome, _, _) = b.run("spin", &["spin"], limits, None);
    assert!(matches!(outcome, Outcome::Limit { limit: LimitKind::Cpu, .. }), "{outcome:?}");
    assert!(thread_cpu_ns().unwrap() - cpu >= 100_000_000);
}

/// Runs `wat`'s `_start` with `limits`, in slices when `slice` is given; how it ended, and when.
fn run_wat<E: Engine>(b: &Backend<E>, wat: &str, limits: Limits, interrupt: Interrupt) -> (Outcome, Duration) {
    let wasm = wat::parse_str(wat).unwrap();
    let started = Instant::now();
    let mut i = b.instance(&wasm, wasi(&["wat"], &[]), limits, interrupt).unwrap();
    let mut step = i.start(Call::Start, None);
    while step == Step::Paused {
        step = i.resume(None);
    }
    let Step::Ended(outcome) = step else { unreachable!() };
    (outcome, started.elapsed())
}

/// A guest that spends its time in host calls (few instructions, much work per call) or
/// asleep is held to its limits all the same: they are looked at around every host call, and
/// a sleep ends at the wall-clock deadline.
fn limits_hold_inside_host_calls<E: Engine>(b: &Backend<E>) {
    let random_loop = r#"(module
        (import "wasi_snapshot_preview1" "random_get" (func $r (param i32 i32) (result i32)))
        (memory (export "memory") 256)
        (func (export "_start") (loop (drop (call $r (i32.const 0) (i32.const 4194304))) (br 0))))"#;
    let limits = Limits { wall_ms: Some(200), ..Limits::default() };
    let (outcome, took) = run_wat(b, random_loop, limits, Interrupt::new());
    assert!(matches!(outcome, Outcome::Limit { limit: LimitKind::Wall, .. }), "{outcome:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    let interrupt = Interrupt::new();
    let killer = interrupt.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        killer.interrupt();
    });
    let (outcome, took) = run_wat(b, random_loop, Limits::default(), interrupt);
    assert_eq!(outcome, Outcome::Killed);
    assert!(took < Duration::from_secs(5), "{took:?}");

    // An hour's sleep (one monotonic clock subscription) under a 200 ms wall-clock limit.
    let sleeper = r#"(module
        (import "wasi_snapshot_preview1" "poll_oneoff" (func $p (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "_start")
          (i32.store (i32.const 16) (i32.const 1))
          (i64.store (i32.const 24) (i64.const 3600000000000))
          (drop (call $p (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 200)))))"#;
    let limits = Limits { wall_ms: Some(200), ..Limits::default() };
    let (outcome, took) = run_wat(b, sleeper, limits, Interrupt::new());
    assert!(matches!(outcome, Outcome::Limit { limit: LimitKind::Wall, .. }), "{outcome:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}
