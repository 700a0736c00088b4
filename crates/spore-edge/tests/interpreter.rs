//! The wasmi backend with the test guests (built by guests/build.sh), as a runner uses it:
//! WASI commands to their ends, runs in fuel slices, limits, exports with plain values.

use spore_edge::interpreter::Interpreter;
use spore_edge::{Call, EdgeError, Engine, Host, Instance, LimitKind, Limits, Outcome, Step, Stop, Value, Wasi};
use spore_wasip1::{Clock, Stream};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A host as a Linux runner would have it, keeping the output.
struct Kept {
    out: Vec<u8>,
    err: Vec<u8>,
    start: Instant,
    seed: u64,
}

impl Host for Kept {
    fn write(&mut self, stream: Stream, bytes: &[u8]) -> Result<(), Stop> {
        match stream {
            Stream::Stdout => self.out.extend_from_slice(bytes),
            Stream::Stderr => self.err.extend_from_slice(bytes),
        }
        Ok(())
    }
    fn now(&mut self, clock: Clock) -> Option<u64> {
        match clock {
            Clock::Monotonic => Some(self.start.elapsed().as_nanos() as u64),
            Clock::Realtime => Some(SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_nanos() as u64),
            _ => None,
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

fn guest(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../guests/out").join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; build the guests with guests/build.sh", path.display()))
}

fn wasi(args: &[&str], env: &[(&str, &str)]) -> Wasi<Kept> {
    let host = Kept { out: Vec::new(), err: Vec::new(), start: Instant::now(), seed: 0x9e37_79b9_7f4a_7c15 };
    Wasi::new(args.iter().copied(), env.iter().copied(), host)
}

/// Runs a command to its end in slices of `slice` fuel; returns how it ended and its stdout.
fn run(name: &str, args: &[&str], limits: Limits, slice: Option<u64>) -> (Outcome, String, u32) {
    let engine = Interpreter::default();
    let module = engine.load(&guest(name)).unwrap();
    let mut instance = engine.instantiate(&module, wasi(args, &[]), &limits).unwrap();
    let mut step = instance.start(Call::Start, slice);
    let mut pauses = 0;
    while step == Step::Paused {
        pauses += 1;
        step = instance.resume(slice);
    }
    let Step::Ended(outcome) = step else { unreachable!() };
    (outcome, String::from_utf8_lossy(&instance.host().out).into_owned(), pauses)
}

#[test]
fn commands_run_to_their_ends_with_args_env_and_exit_codes() {
    let (outcome, out, _) = run("hello", &["hello"], Limits::default(), None);
    assert_eq!((outcome, out.as_str()), (Outcome::Exited(0), "Hello from Spore!\n"));

    let engine = Interpreter::default();
    let module = engine.load(&guest("args-env")).unwrap();
    let mut i = engine
        .instantiate(&module, wasi(&["args-env", "one", "two words"], &[("K", "v=1")]), &Limits::default())
        .unwrap();
    assert_eq!(i.start(Call::Start, None), Step::Ended(Outcome::Exited(0)));
    assert_eq!(String::from_utf8_lossy(&i.host().out), "arg[0]=args-env\narg[1]=one\narg[2]=two words\nenv K=v=1\n");

    let (outcome, out, _) = run("exit-code", &["exit-code", "7"], Limits::default(), None);
    assert_eq!((outcome, out.as_str()), (Outcome::Exited(7), "exiting with 7\n"));
}

#[test]
fn nbody_computes_the_reference_energies_in_slices() {
    let (outcome, out, pauses) = run("nbody", &["nbody", "1000"], Limits::default(), Some(10_000));
    assert_eq!((outcome, out.as_str()), (Outcome::Exited(0), "-0.169075164\n-0.169087605\n"));
    // A thousand steps of five bodies take many slices: the run was preemptible throughout.
    assert!(pauses > 10, "{pauses} pauses");
}

#[test]
fn a_trap_is_reported_with_its_cause() {
    let (outcome, out, _) = run("trap", &["trap"], Limits::default(), None);
    assert_eq!(out, "about to trap\n");
    let Outcome::Trapped(message) = outcome else { panic!("{outcome:?}") };
    assert!(message.contains("unreachable"), "{message}");
}

#[test]
fn a_spinning_guest_pauses_at_every_slice_and_ends_at_its_fuel_budget() {
    let limits = Limits { fuel: Some(5_000_000), ..Limits::default() };
    let (outcome, out, pauses) = run("spin", &["spin"], limits, Some(100_000));
    assert_eq!(out, "spinning\n");
    assert!(matches!(outcome, Outcome::Limit { limit: LimitKind::Fuel, .. }), "{outcome:?}");
    assert!((45..=50).contains(&pauses), "{pauses} pauses of 100,000 in a budget of 5,000,000");
}

#[test]
fn a_memory_bomb_meets_its_limit() {
    let limits = Limits { memory_bytes: Some(16 << 20), ..Limits::default() };
    let (outcome, _, _) = run("membomb", &["membomb"], limits, None);
    assert!(matches!(outcome, Outcome::Limit { limit: LimitKind::Memory, .. }), "{outcome:?}");
}

#[test]
fn exports_take_and_return_plain_values() {
    let wasm = wat::parse_str(
        r#"(module
            (func (export "add") (param i32 i64) (result i64)
              local.get 1 local.get 0 i64.extend_i32_s i64.add)
            (func (export "half") (param f64) (result f64) local.get 0 f64.const 0.5 f64.mul))"#,
    )
    .unwrap();
    let engine = Interpreter::default();
    let module = engine.load(&wasm).unwrap();
    let mut i = engine.instantiate(&module, wasi(&[], &[]), &Limits::default()).unwrap();
    let args = [Value::I32(-2), Value::I64(1 << 40)];
    assert_eq!(
        i.start(Call::Export { name: "add", args: &args }, None),
        Step::Ended(Outcome::Returned(vec![Value::I64((1 << 40) - 2)]))
    );
    let mut i = engine.instantiate(&module, wasi(&[], &[]), &Limits::default()).unwrap();
    let args = [Value::F64(3.0f64.to_bits())];
    assert_eq!(
        i.start(Call::Export { name: "half", args: &args }, None),
        Step::Ended(Outcome::Returned(vec![Value::F64(1.5f64.to_bits())]))
    );
}

#[test]
fn what_a_runner_cannot_give_is_named_before_anything_runs() {
    let engine = Interpreter::default();
    let wasm = wat::parse_str(r#"(module (import "spin:kv" "get" (func)) (func (export "_start")))"#).unwrap();
    let module = engine.load(&wasm).unwrap();
    let err = engine.instantiate(&module, wasi(&[], &[]), &Limits::default()).err().unwrap();
    assert_eq!(err, EdgeError::Import { import: "spin:kv::get".into() });
    assert!(err.to_string().contains("imports spin:kv::get, which this runner does not provide"));

    let big = wat::parse_str(r#"(module (memory (export "memory") 1000))"#).unwrap();
    let module = engine.load(&big).unwrap();
    let limits = Limits { memory_bytes: Some(1 << 20), ..Limits::default() };
    assert!(matches!(engine.instantiate(&module, wasi(&[], &[]), &limits), Err(EdgeError::Limit(_))));

    assert!(matches!(engine.load(b"\0asm\x01\0\0\0garbage"), Err(EdgeError::Invalid(_))));
}
