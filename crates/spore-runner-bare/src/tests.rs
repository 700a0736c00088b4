//! The firmware's loop on a board made of memory: frames in as an agent sends them, frames out
//! as it reads them. What QEMU boards add (the UART, the clock, the boot) is tested by
//! `tests/e2e/bare.rs`.

use crate::board::Board;
use crate::serve::Firmware;
use sha2::Digest as _;
use spore_wire::{
    Chunk, Commit, Credit, Deframer, Digest, ErrorCode, Hello, Instantiate, Kill, Limits, Message, ModuleBegin,
    ModuleKind, Outcome, Run, VERSION,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The heap this thread holds: its live allocations' bytes, and their number. Each test's
/// firmware runs on its own thread, so this is what the board's RAM would hold of it.
struct Counting;

thread_local! {
    static LIVE: Cell<(isize, isize)> = const { Cell::new((0, 0)) };
}

fn count(bytes: isize, allocations: isize) {
    let _ = LIVE.try_with(|l| {
        let (b, n) = l.get();
        l.set((b + bytes, n + allocations));
    });
}

// SAFETY: every call is passed to the system allocator unchanged; only counted beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the caller promised us.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize, 1);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: as the caller promised us.
        unsafe { System.dealloc(p, layout) };
        count(-(layout.size() as isize), -1);
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        // SAFETY: as the caller promised us.
        let q = unsafe { System.realloc(p, layout, size) };
        if !q.is_null() {
            count(size as isize - layout.size() as isize, 0);
        }
        q
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// What this thread's live heap costs a board: its bytes, and 16 a block for the allocator's
/// own bookkeeping (what a small allocator such as the boards' spends).
fn heap_held() -> isize {
    LIVE.with(|l| {
        let (bytes, blocks) = l.get();
        bytes + 16 * blocks
    })
}

#[derive(Clone)]
struct Memory {
    to_board: Arc<Mutex<VecDeque<u8>>>,
    from_board: Arc<Mutex<Vec<u8>>>,
    started: Instant,
    /// How long the board had been up when the test began.
    uptime: u64,
    /// Its entropy source takes 5 ms a call (as a slow device would).
    slow_random: Arc<AtomicBool>,
    /// Calls of its entropy source.
    random_calls: Arc<AtomicU32>,
    /// Its four GPIO pins, a bit each.
    pins: Arc<AtomicU32>,
    /// Its second UART: what came in, what went out.
    uart1_in: Arc<Mutex<VecDeque<u8>>>,
    uart1_out: Arc<Mutex<Vec<u8>>>,
}

impl Board for Memory {
    const TARGET: &'static str = "test";

    fn read(&mut self) -> Option<u8> {
        self.to_board.lock().unwrap().pop_front()
    }
    fn write(&mut self, bytes: &[u8]) {
        self.from_board.lock().unwrap().extend_from_slice(bytes);
    }
    fn now_ns(&self) -> u64 {
        self.uptime + self.started.elapsed().as_nanos() as u64
    }
    fn random(&mut self, buf: &mut [u8]) {
        self.random_calls.fetch_add(1, Ordering::Relaxed);
        if self.slow_random.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
        }
        buf.fill(4);
    }
    fn idle(&mut self, _: Option<u64>) {}
    fn gpio_pins(&self) -> u32 {
        4
    }
    fn gpio_set(&mut self, pin: u32, high: bool) {
        match high {
            true => self.pins.fetch_or(1 << pin, Ordering::Relaxed),
            false => self.pins.fetch_and(!(1 << pin), Ordering::Relaxed),
        };
    }
    fn gpio_get(&self, pin: u32) -> bool {
        self.pins.load(Ordering::Relaxed) & (1 << pin) != 0
    }
    fn has_uart1(&self) -> bool {
        true
    }
    fn uart1_write(&mut self, bytes: &[u8]) -> usize {
        // Room for 2 bytes at a time: the app's write goes out in short pieces.
        let n = bytes.len().min(2);
        self.uart1_out.lock().unwrap().extend_from_slice(&bytes[..n]);
        n
    }
    fn uart1_read(&mut self, buf: &mut [u8]) -> usize {
        let mut input = self.uart1_in.lock().unwrap();
        let n = buf.len().min(input.len());
        for (slot, byte) in buf.iter_mut().zip(input.drain(..n)) {
            *slot = byte;
        }
        n
    }
    fn id(&self) -> String {
        "memory".into()
    }
}

/// An agent's HELLO, as `spore` says it on a board's line.
fn hello() -> Message {
    Message::Hello(Hello {
        min_version: VERSION,
        max_version: VERSION,
        max_payload: 4096,
        agent: "t".into(),
        token: String::new(),
    })
}

/// The agent's end of the link.
struct Agent {
    board: Memory,
    firmware: Firmware<Memory>,
    deframer: Deframer,
    next: u32,
}

impl Agent {
    fn new(memory: u64) -> Agent {
        Agent::after(memory, 0)
    }

    /// An agent of a board that has been up `uptime` nanoseconds.
    fn after(memory: u64, uptime: u64) -> Agent {
        let board = Memory {
            to_board: Arc::default(),
            from_board: Arc::default(),
            started: Instant::now(),
            uptime,
            slow_random: Arc::default(),
            random_calls: Arc::default(),
            pins: Arc::default(),
            uart1_in: Arc::default(),
            uart1_out: Arc::default(),
        };
        let firmware = Firmware::new(board.clone(), memory);
        let mut agent = Agent { board, firmware, deframer: Deframer::new(65536), next: 1 };
        assert!(matches!(agent.ask(hello()).as_slice(), [(_, Message::HelloAck(_))]));
        agent
    }

    fn send(&mut self, message: &Message) -> u32 {
        let id = self.next;
        self.next += 1;
        self.board.to_board.lock().unwrap().extend(spore_wire::to_stream(id, 0, message));
        id
    }

    /// Turns the loop until it is idle (or a few hundred times, with a spinner); what came out.
    fn pump(&mut self) -> Vec<(u32, Message)> {
        for _ in 0..300 {
            if !self.firmware.turn() {
                break;
            }
        }
        self.pump_once()
    }

    /// What came out so far, without turning the loop.
    fn pump_once(&mut self) -> Vec<(u32, Message)> {
        let bytes = std::mem::take(&mut *self.board.from_board.lock().unwrap());
        self.deframer
            .feed(&bytes)
            .map(|f| {
                let (header, message) = spore_wire::decode(&f.unwrap(), 65536).unwrap();
                (header.request_id, message)
            })
            .collect()
    }

    fn ask(&mut self, message: Message) -> Vec<(u32, Message)> {
        self.send(&message);
        self.pump()
    }

    fn upload(&mut self, wasm: &[u8]) -> Digest {
        let digest: Digest = sha2::Sha256::digest(wasm).into();
        let begin = ModuleBegin { digest, size: wasm.len() as u64, kind: ModuleKind::Wasm, compat: String::new() };
        self.ask(Message::ModuleBegin(begin));
        for (i, piece) in wasm.chunks(4000).enumerate() {
            let chunk = Chunk { digest, offset: (i * 4000) as u64, bytes: piece.to_vec() };
            self.ask(Message::Chunk(chunk));
        }
        assert_eq!(self.ask(Message::Commit(Commit { digest })).first().map(|(_, m)| m), Some(&Message::Done(())));
        digest
    }

    fn app(&mut self, module: Digest, name: &str) -> u32 {
        self.app_with(module, name, Limits::default())
    }

    fn app_with(&mut self, module: Digest, name: &str, limits: Limits) -> u32 {
        let spec = Instantiate {
            module,
            name: name.into(),
            args: vec![name.into()],
            env: Vec::new(),
            limits,
            boot: false,
            devices: Vec::new(),
        };
        match self.ask(Message::Instantiate(spec)).as_slice() {
            [(_, Message::Instance(i))] => i.id,
            other => panic!("{other:?}"),
        }
    }
}

/// A command that writes `line` `times` times (one `fd_write` each), then spins for ever if
/// `spin`.
fn writer(line: &str, times: u32, spin: bool) -> Vec<u8> {
    let len = line.len();
    let line = line.replace('\n', "\\n");
    wat::parse_str(format!(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 16) "{line}")
            (func (export "_start") (local $i i32)
                (i32.store (i32.const 0) (i32.const 16))
                (i32.store (i32.const 4) (i32.const {len}))
                (block $done (loop $again
                    (br_if $done (i32.ge_u (local.get $i) (i32.const {times})))
                    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br $again)))
                {spin}))"#,
        spin = if spin { "(loop $s (br $s))" } else { "" }
    ))
    .unwrap()
}

fn exits(out: &[(u32, Message)]) -> Vec<(u32, Outcome)> {
    out.iter()
        .filter_map(|(_, m)| match m {
            Message::Exit(e) => Some((e.instance, e.outcome.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_spinning_app_does_not_hold_up_another_or_the_link_and_is_killed() {
    let mut agent = Agent::new(64 << 20);
    let spin = agent.upload(&writer("spinning\n", 1, true));
    let hello = agent.upload(&writer("hello\n", 1, false));
    let spinner = agent.app(spin, "spinner");
    let greeter = agent.app(hello, "greeter");
    agent.send(&Message::Run(Run { instance: spinner }));
    let run = agent.send(&Message::Run(Run { instance: greeter }));
    let out = agent.pump();
    assert_eq!(exits(&out), vec![(greeter, Outcome::Exited(0))], "{out:?}");
    assert!(out.iter().any(|(id, m)| *id == run && matches!(m, Message::Output(o) if o.bytes == b"hello\n")));
    // The spinner still runs, and the link still answers.
    assert!(agent.firmware.turn(), "the spinner has slices left");
    let out = agent.ask(Message::Kill(Kill { instance: spinner }));
    assert_eq!(exits(&out), vec![(spinner, Outcome::Killed)], "{out:?}");
    assert!(matches!(out.last(), Some((_, Message::Done(())))), "DONE after the run has ended: {out:?}");
    assert!(!agent.firmware.turn(), "nothing runs any more");
}

#[test]
fn output_goes_out_within_the_agents_credit_and_none_is_lost() {
    let mut agent = Agent::new(64 << 20);
    let line = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";
    let module = agent.upload(&writer(line, 2000, false));
    let app = agent.app(module, "chatty");
    agent.send(&Message::Run(Run { instance: app }));
    let mut got = 0;
    let mut exited = false;
    for _ in 0..1000 {
        let out = agent.pump();
        let bytes: usize = out.iter().map(|(_, m)| if let Message::Output(o) = m { o.bytes.len() } else { 0 }).sum();
        // The window is four payloads; the agent gives it back as it reads.
        assert!(bytes <= 4 * 4096, "{bytes} bytes past the credit");
        got += bytes;
        exited |= !exits(&out).is_empty();
        if exited {
            break;
        }
        agent.send(&Message::Credit(Credit { instance: app, bytes: bytes as u32 }));
    }
    assert!(exited);
    assert_eq!(got, 2000 * line.len());
}

#[test]
fn a_module_too_large_for_the_board_is_refused_naming_both_sizes() {
    let mut agent = Agent::new(1 << 20);
    let begin = ModuleBegin { digest: [7; 32], size: 5 << 20, kind: ModuleKind::Wasm, compat: String::new() };
    let out = agent.ask(Message::ModuleBegin(begin));
    let [(_, Message::Error(e))] = out.as_slice() else { panic!("{out:?}") };
    assert_eq!(e.code, ErrorCode::TOO_LARGE);
    assert!(e.message.contains("5242880") && e.message.contains("262144"), "{}", e.message);
    let native = ModuleBegin { digest: [7; 32], size: 10, kind: ModuleKind::Native, compat: String::new() };
    let out = agent.ask(Message::ModuleBegin(native));
    assert!(matches!(out.as_slice(), [(_, Message::Error(e))] if e.code == ErrorCode::WRONG_ENGINE), "{out:?}");
}

#[test]
fn an_upload_cut_by_a_new_agent_is_resumed_where_it_stopped() {
    let mut agent = Agent::new(64 << 20);
    let wasm = writer("x\n", 1, false);
    let digest: Digest = sha2::Sha256::digest(&wasm).into();
    let begin = ModuleBegin { digest, size: wasm.len() as u64, kind: ModuleKind::Wasm, compat: String::new() };
    agent.ask(Message::ModuleBegin(begin.clone()));
    agent.ask(Message::Chunk(Chunk { digest, offset: 0, bytes: wasm[..10].to_vec() }));
    // The next agent says HELLO on the same line.
    agent.ask(hello());
    let out = agent.ask(Message::ModuleBegin(begin));
    assert!(matches!(out.as_slice(), [(_, Message::SendFrom(s))] if s.offset == 10), "{out:?}");
}

/// A command that sleeps `ms` (one clock poll), then writes "woke\n".
fn sleeper(ms: u64) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 16) "woke\n")
            (func (export "_start")
                (i32.store8 (i32.const 108) (i32.const 0))
                (i32.store (i32.const 116) (i32.const 1))
                (i64.store (i32.const 124) (i64.const {ns}))
                (drop (call $poll (i32.const 100) (i32.const 200) (i32.const 1) (i32.const 300)))
                (i32.store (i32.const 0) (i32.const 16))
                (i32.store (i32.const 4) (i32.const 5))
                (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
        ns = ms * 1_000_000
    ))
    .unwrap()
}

#[test]
fn a_sleeping_app_is_parked_not_spinning_and_wakes_when_its_time_has_come() {
    let mut agent = Agent::new(64 << 20);
    let sleep = agent.upload(&sleeper(300));
    let hello = agent.upload(&writer("hello\n", 1, false));
    let sleeper = agent.app(sleep, "sleeper");
    let greeter = agent.app(hello, "greeter");
    let started = Instant::now();
    agent.send(&Message::Run(Run { instance: sleeper }));
    agent.send(&Message::Run(Run { instance: greeter }));
    let out = agent.pump();
    assert_eq!(exits(&out), vec![(greeter, Outcome::Exited(0))], "the other app ran: {out:?}");
    // Parked: the loop has nothing to do (the board may wait) until the sleep is over.
    assert!(!agent.firmware.turn(), "a sleeping app is not run");
    while started.elapsed() < Duration::from_millis(300) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = agent.pump();
    assert_eq!(exits(&out), vec![(sleeper, Outcome::Exited(0))], "{out:?}");
    assert!(out.iter().any(|(_, m)| matches!(m, Message::Output(o) if o.bytes == b"woke\n")), "{out:?}");
}

#[test]
fn apps_share_the_boards_memory_and_one_past_it_is_refused_with_what_is_left() {
    let mut agent = Agent::new(8 << 20);
    let module = agent.upload(&writer("x\n", 1, false));
    // Without a limit an app gets a quarter of the board's memory for apps.
    for name in ["a", "b", "c", "d"] {
        agent.app(module, name);
    }
    let spec = Instantiate {
        module,
        name: "e".into(),
        args: Vec::new(),
        env: Vec::new(),
        limits: Limits::default(),
        boot: false,
        devices: Vec::new(),
    };
    let out = agent.ask(Message::Instantiate(spec));
    let [(_, Message::Error(e))] = out.as_slice() else { panic!("{out:?}") };
    assert_eq!(e.code, ErrorCode::EXHAUSTED);
    assert!(e.message.contains("has 0 of its 8388608 left"), "{}", e.message);
}

#[test]
fn modules_and_uploads_together_stay_within_the_boards_store_and_a_drop_frees_it() {
    // 8 MiB for apps: 2 MiB the largest module, 4 MiB all modules and uploads together.
    let mut agent = Agent::new(8 << 20);
    let begin = |d: u8| ModuleBegin { digest: [d; 32], size: 2 << 20, kind: ModuleKind::Wasm, compat: String::new() };
    let out = agent.ask(Message::ModuleBegin(begin(1)));
    assert!(matches!(out.as_slice(), [(_, Message::SendFrom(_))]), "{out:?}");
    let small = agent.upload(&writer("x\n", 1, false));
    // A second large upload would pass the store by the small module's bytes.
    let out = agent.ask(Message::ModuleBegin(begin(2)));
    let [(_, Message::Error(e))] = out.as_slice() else { panic!("{out:?}") };
    assert_eq!(e.code, ErrorCode::EXHAUSTED);
    assert!(e.message.contains("of their 4194304 bytes: remove a module first"), "{}", e.message);
    // Dropping the small module frees its bytes.
    let out = agent.ask(Message::Drop(spore_wire::DropTarget::Module(small)));
    assert_eq!(out.first().map(|(_, m)| m), Some(&Message::Done(())), "{out:?}");
    let out = agent.ask(Message::ModuleBegin(begin(2)));
    assert!(matches!(out.as_slice(), [(_, Message::SendFrom(_))]), "{out:?}");
}

/// Pumps until `app` exits (at most `secs` seconds); its outcome.
fn until_exit(agent: &mut Agent, app: u32, secs: u64) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Some((_, outcome)) = exits(&agent.pump()).into_iter().find(|(id, _)| *id == app) {
            return outcome;
        }
    }
    panic!("app {app} did not exit within {secs} s");
}

#[test]
fn a_cpu_limit_counts_the_apps_own_time_however_long_the_board_has_been_up() {
    // Up for an hour: the app's CPU clock must start at its start, not the board's.
    let mut agent = Agent::after(64 << 20, 3_600_000_000_000);
    let spin = agent.upload(&writer("spinning\n", 1, true));
    let app = agent.app_with(spin, "spinner", Limits { cpu_ms: Some(100), ..Limits::default() });
    agent.send(&Message::Run(Run { instance: app }));
    let outcome = until_exit(&mut agent, app, 10);
    assert!(matches!(outcome, Outcome::Limit { limit: spore_wire::LimitKind::Cpu, .. }), "{outcome:?}");
}

#[test]
fn a_run_waiting_for_credit_still_ends_at_its_wall_limit() {
    let mut agent = Agent::new(64 << 20);
    let line = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";
    let module = agent.upload(&writer(line, 100_000, false));
    let app = agent.app_with(module, "chatty", Limits { wall_ms: Some(300), ..Limits::default() });
    agent.send(&Message::Run(Run { instance: app }));
    // The agent gives no credit back: the run waits for it, until its limit ends it.
    let outcome = until_exit(&mut agent, app, 10);
    assert!(matches!(outcome, Outcome::Limit { limit: spore_wire::LimitKind::Wall, .. }), "{outcome:?}");
}

/// A command that writes one byte `times` times, to stdout and stderr in turn (so no two
/// writes in a row can be joined).
fn byte_writer(times: u32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 16) "x")
            (func (export "_start") (local $i i32)
                (i32.store (i32.const 0) (i32.const 16))
                (i32.store (i32.const 4) (i32.const 1))
                (block $done (loop $again
                    (br_if $done (i32.ge_u (local.get $i) (i32.const {times})))
                    (drop (call $w (i32.add (i32.const 1) (i32.and (local.get $i) (i32.const 1)))
                                   (i32.const 0) (i32.const 1) (i32.const 8)))
                    (local.set $i (i32.add (local.get $i) (i32.const 1)))
                    (br $again)))))"#
    ))
    .unwrap()
}

#[test]
fn a_guests_output_holds_a_bounded_part_of_the_boards_heap_however_it_writes() {
    let mut agent = Agent::new(64 << 20);
    let module = agent.upload(&byte_writer(200_000));
    let app = agent.app(module, "bytes");
    let before = heap_held();
    agent.send(&Message::Run(Run { instance: app }));
    // The agent gives no credit back: the run writes until its output is all it may hold.
    for _ in 0..50 {
        agent.pump();
    }
    assert!(!agent.firmware.turn(), "the writer waits for credit");
    let held = heap_held() - before;
    // Its instance (a page of memory, wasmi's store and stack) and 16 KiB of waiting and 16 KiB
    // of kept output, each in pieces that cost their bytes and 64 more.
    assert!(held < 192 << 10, "the writer's run holds {held} bytes of heap");
    let out = agent.ask(Message::Kill(Kill { instance: app }));
    assert_eq!(exits(&out), vec![(app, Outcome::Killed)], "{out:?}");
}

#[test]
fn a_host_call_past_its_slices_time_lets_the_next_app_run() {
    let mut agent = Agent::new(64 << 20);
    // A guest that asks for entropy without end, from a source that takes 5 ms a call.
    let drinker = wat::parse_str(
        r#"(module
            (import "wasi_snapshot_preview1" "random_get" (func $r (param i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "_start") (loop $again (drop (call $r (i32.const 0) (i32.const 16))) (br $again))))"#,
    )
    .unwrap();
    let drinker = agent.upload(&drinker);
    let hello = agent.upload(&writer("hello\n", 1, false));
    let drinker = agent.app(drinker, "drinker");
    let greeter = agent.app(hello, "greeter");
    agent.board.slow_random.store(true, Ordering::Relaxed);
    agent.send(&Message::Run(Run { instance: drinker }));
    agent.send(&Message::Run(Run { instance: greeter }));
    // Fuel counts the guest's calls as cheap: only the time they took gives the turn over.
    let mut exited = Vec::new();
    for _ in 0..20 {
        agent.firmware.turn();
        exited.extend(exits(&agent.pump_once()));
        if !exited.is_empty() {
            break;
        }
    }
    assert_eq!(exited, vec![(greeter, Outcome::Exited(0))]);
    // One call a turn: each took the drinker past its slice's time.
    let calls = agent.board.random_calls.load(Ordering::Relaxed);
    assert!(calls <= 3, "the drinker made {calls} calls before the greeter ran");
    let out = agent.ask(Message::Kill(Kill { instance: drinker }));
    assert_eq!(exits(&out), vec![(drinker, Outcome::Killed)], "{out:?}");
}

#[test]
fn a_spinning_start_function_is_refused_without_holding_the_link() {
    let mut agent = Agent::new(64 << 20);
    let spins = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func $s (loop (br 0))) (start $s) (func (export "_start")))"#,
    )
    .unwrap();
    let module = agent.upload(&spins);
    let app = agent.app(module, "starter");
    let asked = Instant::now();
    let out = agent.ask(Message::Run(Run { instance: app }));
    let [(_, Message::Error(e))] = out.as_slice() else { panic!("{out:?}") };
    assert_eq!(e.code, ErrorCode::INVALID_MODULE);
    assert!(e.message.contains("start function needs more than the 2000000 fuel"), "{}", e.message);
    // A slice's fuel, not a billion: the link was held for a moment.
    assert!(asked.elapsed() < Duration::from_secs(2), "{:?}", asked.elapsed());
}

#[test]
fn kill_and_drop_of_a_run_whose_exit_waits_behind_its_output_send_the_exit_first() {
    let line = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";
    for drop in [false, true] {
        let mut agent = Agent::new(64 << 20);
        // 25 KiB: the 16 KiB of credit go out, the rest waits; the run itself has ended.
        let module = agent.upload(&writer(line, 400, false));
        let app = agent.app(module, "chatty");
        agent.send(&Message::Run(Run { instance: app }));
        let out = agent.pump();
        assert!(exits(&out).is_empty(), "the exit waits for credit: {out:?}");
        let request = match drop {
            false => Message::Kill(Kill { instance: app }),
            true => Message::Drop(spore_wire::DropTarget::Instance(app)),
        };
        let out = agent.ask(request);
        assert_eq!(exits(&out), vec![(app, Outcome::Exited(0))], "drop {drop}: {out:?}");
        assert!(matches!(out.last(), Some((_, Message::Done(())))), "drop {drop}: {out:?}");
    }
}

/// A command that drives the board's devices: pin 1 high, a refused pin 9 (exit 2 if it is
/// not refused), "hi\n" on the second UART (in two writes), then waits for pin 0 to go high and for bytes on
/// the UART, and prints those bytes.
const DEVICES: &str = r#"(module
    (import "spore:device/gpio@0.1" "set" (func $set (param i32 i32) (result i32)))
    (import "spore:device/gpio@0.1" "watch" (func $watch (param i32 i32) (result i32)))
    (import "spore:device/uart@0.1" "write" (func $uwrite (param i32 i32) (result i32)))
    (import "spore:device/uart@0.1" "read" (func $uread (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
    (memory (export "memory") 1)
    (data (i32.const 16) "hi\n")
    (func (export "_start") (local $n i32)
        (drop (call $set (i32.const 1) (i32.const 1)))
        (if (i32.ne (call $set (i32.const 9) (i32.const 1)) (i32.const -28)) (then (call $exit (i32.const 2))))
        ;; The UART has room for two bytes at a time: a short write, then the rest.
        (if (i32.ne (call $uwrite (i32.const 16) (i32.const 3)) (i32.const 2)) (then (call $exit (i32.const 4))))
        (drop (call $uwrite (i32.const 18) (i32.const 1)))
        (if (i32.ne (call $watch (i32.const 0) (i32.const 0)) (i32.const 1)) (then (call $exit (i32.const 3))))
        (local.set $n (call $uread (i32.const 64) (i32.const 16)))
        (i32.store (i32.const 0) (i32.const 64))
        (i32.store (i32.const 4) (local.get $n))
        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

fn granted(module: Digest, name: &str, devices: &[&str]) -> Message {
    Message::Instantiate(Instantiate {
        module,
        name: name.into(),
        args: vec![name.into()],
        env: Vec::new(),
        limits: Limits::default(),
        boot: false,
        devices: devices.iter().map(|d| d.to_string()).collect(),
    })
}

fn refusal(out: &[(u32, Message)]) -> &spore_wire::Error {
    match out {
        [(_, Message::Error(e))] => e,
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_app_drives_the_devices_it_was_granted_and_no_others() {
    let mut agent = Agent::new(64 << 20);
    let module = agent.upload(&wat::parse_str(DEVICES).unwrap());
    // Denied by default, naming the grant; a device the board lacks named with what it has.
    let out = agent.ask(granted(module, "blinky", &[]));
    let e = refusal(&out);
    assert_eq!(e.code, ErrorCode::INVALID_MODULE);
    assert_eq!(e.message, "the module imports spore:device/gpio@0.1::set; grant it with --device gpio");
    let out = agent.ask(granted(module, "blinky", &["gpio"]));
    assert!(refusal(&out).message.ends_with("uart@0.1::write; grant it with --device uart1"), "{out:?}");
    let out = agent.ask(granted(module, "blinky", &["gpio", "uart7"]));
    assert_eq!(refusal(&out).message, "this runner has no device \"uart7\"; it has: gpio, uart1");

    let out = agent.ask(granted(module, "blinky", &["gpio", "uart1"]));
    let [(_, Message::Instance(app))] = out.as_slice() else { panic!("{out:?}") };
    let app = app.id;
    agent.send(&Message::Run(Run { instance: app }));
    let out = agent.pump();
    assert!(exits(&out).is_empty(), "it waits for pin 0: {out:?}");
    // Seen from outside the app: the pin it set, and its bytes on the second UART.
    assert_eq!(agent.board.pins.load(Ordering::Relaxed), 0b10);
    assert_eq!(agent.board.uart1_out.lock().unwrap().as_slice(), b"hi\n");
    // Parked, not spinning: the loop only looks again every millisecond.
    agent.board.pins.fetch_or(1, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(5));
    let out = agent.pump();
    assert!(exits(&out).is_empty(), "it waits for the UART: {out:?}");
    agent.board.uart1_in.lock().unwrap().extend(b"ping\n");
    std::thread::sleep(Duration::from_millis(5));
    let out = agent.pump();
    assert_eq!(exits(&out), vec![(app, Outcome::Exited(0))], "{out:?}");
    assert!(out.iter().any(|(_, m)| matches!(m, Message::Output(o) if o.bytes == b"ping\n")), "{out:?}");
}

#[test]
fn a_device_function_imported_with_another_type_is_refused_naming_both() {
    let mut agent = Agent::new(64 << 20);
    let wrong = r#"(module (import "spore:device/gpio@0.1" "set" (func (param i64) (result i32)))
                          (memory (export "memory") 1) (func (export "_start")))"#;
    let module = agent.upload(&wat::parse_str(wrong).unwrap());
    let out = agent.ask(granted(module, "wrong", &["gpio"]));
    assert_eq!(
        refusal(&out).message,
        "the module imports spore:device/gpio@0.1::set as (i64) -> i32; this runner's is (i32, i32) -> i32"
    );
}

#[test]
fn logs_keep_the_end_of_a_long_output_however_it_was_joined() {
    let mut agent = Agent::new(64 << 20);
    let line = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";
    let module = agent.upload(&writer(line, 300, false));
    let app = agent.app(module, "chatty");
    agent.send(&Message::Run(Run { instance: app }));
    agent.send(&Message::Credit(Credit { instance: app, bytes: 1 << 20 }));
    assert_eq!(until_exit(&mut agent, app, 10), Outcome::Exited(0));
    let out = agent.ask(Message::Logs(spore_wire::Logs { instance: app, tail: 0 }));
    let kept: Vec<u8> = out
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Output(o) => Some(o.bytes.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    // 19,200 bytes written: LOGS has most of the last 16 KiB, ending with the last line.
    assert!(kept.len() >= 14 << 10, "LOGS kept {} bytes", kept.len());
    assert!(kept.ends_with(line.as_bytes()));
}

#[test]
fn a_start_function_that_takes_its_time_in_host_calls_is_not_cut_short() {
    let mut agent = Agent::new(64 << 20);
    // A start function that asks a 5 ms entropy source twice: past a slice's time, in a place
    // where the guest cannot be suspended.
    let starter = wat::parse_str(
        r#"(module
            (import "wasi_snapshot_preview1" "random_get" (func $r (param i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func $init (drop (call $r (i32.const 0) (i32.const 8))) (drop (call $r (i32.const 0) (i32.const 8))))
            (start $init)
            (func (export "_start")))"#,
    )
    .unwrap();
    let module = agent.upload(&starter);
    let app = agent.app(module, "starter");
    agent.board.slow_random.store(true, Ordering::Relaxed);
    agent.send(&Message::Run(Run { instance: app }));
    assert_eq!(until_exit(&mut agent, app, 10), Outcome::Exited(0));
}
