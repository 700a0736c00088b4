//! The runner's state, all in RAM: modules by digest (validated and translated by wasmi when
//! committed), uploads a new agent may resume, apps and their runs. Runs go on in slices of
//! fuel from [`Bare::step`], one app after another; what they write goes out within the
//! credit their agent gave. A guest that sleeps, or writes more than may wait for credit, is
//! parked in its WASI call (`Stop::Park`) and not run again until its time has come or its
//! output has gone out: nothing spins, nothing is lost.

use crate::board::Board;
use crate::devices::{self, Granted};
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use spin::Mutex;
use spore_edge::interpreter::{Bounds, Interpreted, Interpreter};
use spore_edge::{Call, Engine, Instance as _, Interrupt, Step, Wasi};
use spore_session::{Description, Entry, Refusal};
use spore_wasip1::{Clock, Guest, Host, Import, Stop, Stream, Taken};
use spore_wire::{
    Backend, BackendKind, Chunk, ChunkAck, Digest, ErrorCode, Exit, Have, InstanceInfo, InstanceState, Instantiate,
    Interface, Message, ModuleBegin, ModuleKind, Outcome, Output, RunnerLimits, SendFrom, Stats, StreamKind,
};

/// The time an app's slice aims at: the link and the other apps wait at most about this long.
/// Fuel is work, not time, and boards differ by orders of magnitude, so the fuel of a slice
/// follows what the last ones took (between [`MIN_SLICE`] and [`MAX_SLICE`]).
const SLICE_NS: u64 = 2_000_000;
const MIN_SLICE: u64 = 5_000;
const MAX_SLICE: u64 = 2_000_000;

/// The largest frame payload this runner takes: a UART's frames are short, so a damaged one
/// costs little to send again (4 KiB is 0.36 s at 115200 baud).
pub const MAX_PAYLOAD: u32 = 4096;

/// Output kept per app for `LOGS` (bytes and pieces, see [`Pieces`]).
const KEPT_OUTPUT: usize = 16 << 10;

/// Output an app may have waiting for credit before it is paused (as [`KEPT_OUTPUT`]).
const BACKLOG: usize = 16 << 10;

/// What a piece of output costs beside its bytes: its allocation and its place in a queue.
const PIECE_COST: usize = 64;

/// wasmi's value stack, per run: the frames of a recursion 1000 deep with a few dozen locals.
const MAX_STACK: usize = 128 << 10;

/// Kept output is in pieces of at most this, so trimming the oldest loses little of it.
const KEPT_PIECE: usize = 1 << 10;

/// Host RAM an app holds beside its linear memory, admitted with it: its value stack (twice:
/// wasmi may reserve up to double while it grows it), its output waiting and kept, and its
/// instance (a generous allowance for wasmi's store).
const APP_OVERHEAD: u64 = (2 * MAX_STACK + BACKLOG + KEPT_OUTPUT + (32 << 10)) as u64;

/// Output in order, joined while it comes from one stream, with what it holds of the board's
/// RAM: its pieces' allocations (their capacity, not only their bytes) and [`PIECE_COST`] a
/// piece. A guest writing a byte at a time holds no more than one writing the same bytes at
/// once.
#[derive(Default)]
struct Pieces {
    queue: VecDeque<(StreamKind, Vec<u8>)>,
    cost: usize,
}

impl Pieces {
    /// Appends `bytes`, to the last piece while it is of `stream` and shorter than `max`.
    fn push(&mut self, stream: StreamKind, mut bytes: &[u8], max: usize) {
        while !bytes.is_empty() {
            let room = match self.queue.back() {
                Some((s, last)) if *s == stream && last.len() < max => max - last.len(),
                _ => {
                    self.queue.push_back((stream, Vec::new()));
                    self.cost += PIECE_COST;
                    max
                }
            };
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            if let Some((_, last)) = self.queue.back_mut() {
                let before = last.capacity();
                last.extend_from_slice(now);
                self.cost += last.capacity() - before;
            }
            bytes = rest;
        }
    }

    fn pop_front(&mut self) -> Option<(StreamKind, Vec<u8>)> {
        let piece = self.queue.pop_front()?;
        self.cost -= piece.1.capacity() + PIECE_COST;
        Some(piece)
    }

    fn clear(&mut self) {
        self.queue.clear();
        self.cost = 0;
    }
}

/// An upload under way: the bytes so far.
pub struct Upload {
    size: u64,
    bytes: Vec<u8>,
}

/// What the apps' hosts share with the loop.
#[derive(Default)]
struct Shared {
    /// Written by the guest, not yet taken by the loop.
    written: Pieces,
    /// CPU time of earlier slices, and when this one began.
    cpu_ns: u64,
    slice_started: u64,
    /// What the output waiting for the agent's credit costs (the loop keeps it up to date).
    waiting: usize,
    /// The run's first slice has begun: before it, the module's start function runs inside
    /// instantiation, which cannot suspend the guest, so its turn is never over.
    sliced: bool,
}

impl Shared {
    /// Room for more output before the app waits for credit.
    fn room(&self) -> usize {
        BACKLOG.saturating_sub(self.waiting + self.written.cost)
    }
}

/// An app's WASI host on this board.
struct AppHost<B: Board> {
    board: B,
    shared: Arc<Mutex<Shared>>,
    /// The devices granted to it.
    devices: Granted,
    /// The arguments of the device call it is parked in, to call again at each wake.
    parked_args: Vec<u64>,
}

impl<B: Board> Host for AppHost<B> {
    fn write(&mut self, stream: Stream, bytes: &[u8]) -> Result<Taken, Stop> {
        let kind = match stream {
            Stream::Stdout => StreamKind::Stdout,
            Stream::Stderr => StreamKind::Stderr,
        };
        let mut shared = self.shared.lock();
        // What there is room for (a guest only runs with some: it waits while there is none);
        // once the room is gone the guest waits until its output has gone out.
        let n = bytes.len().min(shared.room().saturating_sub(PIECE_COST)).max(1);
        shared.written.push(kind, &bytes[..n], usize::MAX);
        Ok(match shared.room() <= PIECE_COST {
            true => Taken::Full(n),
            false => Taken::All,
        })
    }

    fn now(&mut self, clock: Clock) -> Option<u64> {
        let now = self.board.now_ns();
        match clock {
            // The board has no calendar: its wall clock counts from boot, as it says in docs/edge.md.
            Clock::Monotonic | Clock::Realtime => Some(now),
            // The app's own slices: the loop runs one app at a time.
            Clock::ThreadCputime | Clock::ProcessCputime => {
                let shared = self.shared.lock();
                Some(shared.cpu_ns + now.saturating_sub(shared.slice_started))
            }
        }
    }

    fn resolution(&mut self, _: Clock) -> Option<u64> {
        Some(100)
    }

    fn random(&mut self, buf: &mut [u8]) {
        self.board.random(buf);
    }

    fn sleep_until(&mut self, deadline: u64) -> Result<(), Stop> {
        // Parked: the loop runs the others and comes back once the deadline has passed.
        match self.board.now_ns() >= deadline {
            true => Ok(()),
            false => Err(Stop::Park { until: Some(deadline) }),
        }
    }

    fn yield_now(&mut self) -> Result<(), Stop> {
        Ok(())
    }

    fn preempt(&mut self) -> bool {
        // A host call that took the slice past its time (fuel counts the guest's work only).
        let shared = self.shared.lock();
        shared.sliced && self.board.now_ns().saturating_sub(shared.slice_started) >= SLICE_NS
    }

    fn functions(&self) -> &[Import] {
        self.devices.functions()
    }

    fn call_function(&mut self, index: usize, memory: &mut Guest<'_>, args: &[u64]) -> Result<i32, Stop> {
        let answer = self.devices.call(&mut self.board, index, memory, args);
        if let Err(Stop::Park { .. }) = answer {
            self.parked_args = args.to_vec();
        }
        answer
    }

    fn finish_function(&mut self, index: usize, memory: &mut Guest<'_>) -> Result<i32, Stop> {
        // Waiting for a device: look again (and park again if it has not come).
        let args = core::mem::take(&mut self.parked_args);
        let answer = self.devices.call(&mut self.board, index, memory, &args);
        self.parked_args = args;
        answer
    }
}

/// A run under way, or ended with output still to send.
struct Run<B: Board> {
    instance: Option<Interpreted<AppHost<B>>>,
    interrupt: Interrupt,
    /// What to call, until the first slice.
    entry: Option<Entry>,
    /// Parked in a WASI call: until this monotonic time, or (`Some(None)`) until its output
    /// has gone out.
    parked: Option<Option<u64>>,
    request: u32,
    shared: Arc<Mutex<Shared>>,
    /// Output the agent has no credit for yet, in pieces of at most `chunk`.
    backlog: Pieces,
    credit: u64,
    chunk: usize,
    /// The agent is gone: output is only kept.
    unwatched: bool,
    started: u64,
    /// When its wall-clock limit ends it: then it runs (to be ended) even while it waits for
    /// credit or its time, as the Linux runner stops waiting for credit at the limit.
    wall_deadline: Option<u64>,
    /// How it ended, sent once the backlog is.
    exit: Option<Exit>,
    /// Fuel of its next slice: what took about [`SLICE_NS`] last time.
    slice: u64,
}

/// An app.
struct App<B: Board> {
    spec: Instantiate,
    state: InstanceState,
    /// Its last run's output, its last [`KEPT_OUTPUT`].
    kept: Pieces,
    cpu_us: u64,
    memory_bytes: u64,
    run: Option<Run<B>>,
}

impl<B: Board> App<B> {
    fn keep(&mut self, stream: StreamKind, bytes: &[u8]) {
        // Of a write larger than all that is kept, its end.
        let bytes = &bytes[bytes.len().saturating_sub(KEPT_OUTPUT)..];
        self.kept.push(stream, bytes, KEPT_PIECE);
        while self.kept.cost > KEPT_OUTPUT && self.kept.pop_front().is_some() {}
    }
}

/// The runner on a board.
pub struct Bare<B: Board> {
    board: B,
    engine: Interpreter,
    booted: u64,
    /// Modules by digest, with their size in bytes.
    modules: BTreeMap<Digest, (<Interpreter as Engine>::Module, u64)>,
    /// Bytes of the stored modules and of the uploads granted (under way or parked): RAM the
    /// apps' budget does not count, so it has a cap of its own ([`Bare::store_cap`]).
    store_bytes: u64,
    /// Uploads a link gave up, for the next agent to resume.
    parked: BTreeMap<Digest, Upload>,
    apps: BTreeMap<u32, App<B>>,
    next_id: u32,
    /// The app that ran last, so the next slice goes to the one after it.
    last: u32,
    limits: RunnerLimits,
    /// Frames the runs send, in order: `ACCEPTED`, `OUTPUT`, `EXIT`.
    pub outgoing: VecDeque<(u32, Message)>,
}

impl<B: Board> Bare<B> {
    /// A runner with `memory_bytes` of RAM for its modules and apps.
    pub fn new(board: B, memory_bytes: u64) -> Bare<B> {
        let booted = board.now_ns();
        Bare {
            board,
            // A start function runs in one go, holding the link: at most a slice's fuel.
            engine: Interpreter::new(Bounds { start_fuel: MAX_SLICE, max_stack_bytes: MAX_STACK, cached_stacks: 0 }),
            booted,
            modules: BTreeMap::new(),
            store_bytes: 0,
            parked: BTreeMap::new(),
            apps: BTreeMap::new(),
            next_id: 1,
            last: 0,
            limits: RunnerLimits { max_module_bytes: memory_bytes / 4, memory_bytes, max_instances: 16 },
            outgoing: VecDeque::new(),
        }
    }

    /// What the stored modules and the uploads may take together: half the apps' budget (their
    /// translations take more again, from the rest of the heap).
    fn store_cap(&self) -> u64 {
        self.limits.memory_bytes / 2
    }

    /// Whether some app has work to do now.
    pub fn busy(&self) -> bool {
        let now = self.board.now_ns();
        self.apps.values().any(|a| a.run.as_ref().is_some_and(|r| r.runnable(now)))
    }

    /// The earliest time a parked app is due to go on.
    #[cfg_attr(not(target_os = "none"), allow(dead_code))]
    pub fn next_wake(&self) -> Option<u64> {
        self.apps.values().filter_map(|a| a.run.as_ref()?.parked?).min()
    }

    /// Runs one slice of the next app that can run, and moves what runs wrote to `outgoing`.
    pub fn step(&mut self) {
        let now = self.board.now_ns();
        let next = self
            .apps
            .range(self.last.saturating_add(1)..)
            .chain(self.apps.range(..=self.last))
            .find(|(_, a)| a.run.as_ref().is_some_and(|r| r.runnable(now)))
            .map(|(id, _)| *id);
        if let Some(id) = next {
            self.last = id;
            self.slice(id);
        }
        for id in self.apps.keys().copied().collect::<Vec<_>>() {
            self.flush(id);
        }
    }

    fn slice(&mut self, id: u32) {
        let Some(app) = self.apps.get_mut(&id) else { return };
        let Some(run) = app.run.as_mut() else { return };
        let Some(instance) = run.instance.as_mut() else { return };
        let began = self.board.now_ns();
        {
            let mut shared = run.shared.lock();
            shared.slice_started = began;
            shared.sliced = true;
        }
        run.parked = None;
        let fuel = run.slice;
        let step = match run.entry.take() {
            Some(Entry::Start) => instance.start(Call::Start, Some(fuel)),
            Some(Entry::Export(name, args)) => instance.start(Call::Export { name: &name, args: &args }, Some(fuel)),
            None => instance.resume(Some(fuel)),
        };
        let spent = self.board.now_ns().saturating_sub(began);
        // A whole slice that took too long or too short sets the next one's fuel.
        if step == Step::Paused {
            run.slice = match spent {
                t if t > 2 * SLICE_NS => (fuel / 2).max(MIN_SLICE),
                t if t < SLICE_NS / 2 => (fuel * 2).min(MAX_SLICE),
                _ => fuel,
            };
        }
        let cpu_ns = {
            let mut shared = run.shared.lock();
            shared.cpu_ns += spent;
            shared.cpu_ns
        };
        app.cpu_us = cpu_ns / 1000;
        app.memory_bytes = instance.memory_bytes();
        if let Step::Parked { until } = step {
            run.parked = Some(until);
        }
        if let Step::Ended(outcome) = step {
            let fuel = instance.fuel_used();
            let wall_us = self.board.now_ns().saturating_sub(run.started) / 1000;
            run.instance = None;
            run.exit = Some(Exit {
                instance: id,
                outcome: spore_session::short(outcome),
                fuel_used: Some(fuel),
                cpu_us: app.cpu_us,
                wall_us,
            });
        }
    }

    /// Moves `id`'s written output to its backlog and kept output, then sends what credit
    /// allows, then its exit once nothing is left before it.
    fn flush(&mut self, id: u32) {
        let Some(app) = self.apps.get_mut(&id) else { return };
        let Some(mut run) = app.run.take() else { return };
        let written = core::mem::take(&mut run.shared.lock().written);
        for (stream, bytes) in written.queue {
            app.keep(stream, &bytes);
            if !run.unwatched {
                run.backlog.push(stream, &bytes, run.chunk);
            }
        }
        while let Some((_, bytes)) = run.backlog.queue.front()
            && bytes.len() as u64 <= run.credit
            && let Some((stream, bytes)) = run.backlog.pop_front()
        {
            run.credit -= bytes.len() as u64;
            self.outgoing.push_back((run.request, Message::Output(Output { instance: id, stream, bytes })));
        }
        run.shared.lock().waiting = run.backlog.cost;
        // Past its wall limit an ended run's exit does not wait for credit any more: what the
        // agent had no room for is dropped from the stream (LOGS still has it).
        if run.exit.is_some() && run.wall_deadline.is_some_and(|d| self.board.now_ns() >= d) {
            run.backlog.clear();
        }
        match run.exit.take() {
            Some(exit) if run.backlog.queue.is_empty() => {
                app.state = InstanceState::Ended(exit.outcome.clone());
                if !run.unwatched {
                    self.outgoing.push_back((run.request, Message::Exit(exit)));
                }
            }
            exit => {
                run.exit = exit;
                app.run = Some(run);
            }
        }
    }

    fn app(&mut self, id: u32) -> Result<&mut App<B>, Refusal> {
        self.apps.get_mut(&id).ok_or_else(|| {
            Refusal::new(ErrorCode::UNKNOWN_INSTANCE, format!("no instance {id} on this runner; `spore ps` lists them"))
        })
    }

    /// Ends `id`'s run and sends its exit now, without the output the agent has had no credit
    /// for (`LOGS` keeps it): what `KILL` and `DROP` do, so the agent waiting on the run hears
    /// how it ended before their `DONE`.
    fn end_now(&mut self, id: u32) {
        self.stop_instance(id);
        if let Some(run) = self.apps.get_mut(&id).and_then(|a| a.run.as_mut()) {
            run.backlog.clear();
        }
        self.flush(id);
    }

    /// Ends `id`'s instance, if it still runs, as killed (its exit waits to be sent).
    fn stop_instance(&mut self, id: u32) {
        let now = self.board.now_ns();
        if let Some(run) = self.apps.get_mut(&id).and_then(|a| a.run.as_mut())
            && let Some(instance) = run.instance.take()
        {
            run.interrupt.interrupt();
            let cpu_us = run.shared.lock().cpu_ns / 1000;
            let wall_us = now.saturating_sub(run.started) / 1000;
            run.exit = Some(Exit {
                instance: id,
                outcome: Outcome::Killed,
                fuel_used: Some(instance.fuel_used()),
                cpu_us,
                wall_us,
            });
        }
    }
}

impl<B: Board> Run<B> {
    /// Has a slice to run at `now`: not waiting for its time, and with room for its output.
    fn runnable(&self, now: u64) -> bool {
        let room = self.shared.lock().room() > PIECE_COST;
        let out_of_time = self.wall_deadline.is_some_and(|d| now >= d);
        self.instance.is_some()
            && (out_of_time
                || match self.parked {
                    Some(Some(until)) => now >= until,
                    _ => room,
                })
    }
}

impl<B: Board> spore_session::Runner for Bare<B> {
    type Upload = Upload;

    fn describe(&self) -> Description {
        Description {
            runner: self.board.id(),
            backends: vec![Backend {
                kind: BackendKind::Wasmi,
                target: B::TARGET.to_string(),
                engine: "wasmi 2".to_string(),
                compat: String::new(),
            }],
            limits: self.limits,
            interfaces: vec![Interface { name: spore_wasip1::MODULE.to_string(), version: "1".to_string() }],
            devices: devices::available(&self.board).into_iter().map(devices::described).collect(),
            max_payload: MAX_PAYLOAD,
        }
    }

    fn token_matches(&self, _: &str) -> bool {
        // A UART has no token: the wire is the authority.
        true
    }

    fn begin(&mut self, m: &ModuleBegin) -> Result<(Message, Option<Upload>), Refusal> {
        if m.kind != ModuleKind::Wasm {
            return Err(Refusal::new(
                ErrorCode::WRONG_ENGINE,
                format!("this board runs plain wasm on wasmi, not {:?} artifacts; use --engine wasmi", m.kind),
            ));
        }
        if m.size > self.limits.max_module_bytes {
            return Err(Refusal::new(
                ErrorCode::TOO_LARGE,
                format!(
                    "a module of {} bytes; this board holds modules of at most {} bytes",
                    m.size, self.limits.max_module_bytes
                ),
            ));
        }
        if self.modules.contains_key(&m.digest) {
            return Ok((Message::Have(Have { digest: m.digest }), None));
        }
        let upload = match self.parked.remove(&m.digest) {
            Some(up) if up.size == m.size => up,
            other => {
                if let Some(stale) = other {
                    self.store_bytes -= stale.size;
                }
                if self.store_bytes + m.size > self.store_cap() {
                    return Err(Refusal::new(
                        ErrorCode::EXHAUSTED,
                        format!(
                            "a module of {} bytes; this board's modules and uploads take {} of their {} bytes: remove a module first",
                            m.size,
                            self.store_bytes,
                            self.store_cap()
                        ),
                    ));
                }
                self.store_bytes += m.size;
                Upload { size: m.size, bytes: Vec::new() }
            }
        };
        let offset = upload.bytes.len() as u64;
        Ok((Message::SendFrom(SendFrom { digest: m.digest, offset }), Some(upload)))
    }

    fn received(&self, upload: &Upload) -> u64 {
        upload.bytes.len() as u64
    }

    fn chunk(&mut self, up: &mut Upload, c: &Chunk) -> Result<ChunkAck, Refusal> {
        if spore_session::place(up.bytes.len() as u64, up.size, c.offset, c.bytes.len())?
            == spore_session::Placement::Append
        {
            up.bytes.extend_from_slice(&c.bytes);
        }
        Ok(ChunkAck { digest: c.digest, received: up.bytes.len() as u64 })
    }

    fn complete(&mut self, up: &Upload) -> Result<(), Refusal> {
        spore_session::complete(up.bytes.len() as u64, up.size)
    }

    fn commit(&mut self, up: Upload, digest: Digest) -> Result<(), Refusal> {
        let loaded = spore_session::verify(&up.bytes, &digest).and_then(|()| {
            self.engine.load(&up.bytes).map_err(|e| Refusal::new(ErrorCode::INVALID_MODULE, e.to_string()))
        });
        match loaded {
            Ok(module) => {
                self.modules.insert(digest, (module, up.size));
                Ok(())
            }
            // The upload is gone: its bytes are no longer held.
            Err(refusal) => {
                self.store_bytes -= up.size;
                Err(refusal)
            }
        }
    }

    fn release(&mut self, digest: &Digest, upload: Upload) {
        // Kept in RAM for the next agent's MODULE_BEGIN to resume at its length.
        self.parked.insert(*digest, upload);
        while self.parked.len() > spore_session::UPLOADS_PER_LINK {
            if let Some((_, evicted)) = self.parked.pop_first() {
                self.store_bytes -= evicted.size;
            }
        }
    }

    fn instantiate(&mut self, mut spec: Instantiate) -> Result<u32, Refusal> {
        if self.apps.len() >= self.limits.max_instances as usize {
            return Err(Refusal::new(
                ErrorCode::EXHAUSTED,
                format!("this board holds {} apps; remove one first", self.limits.max_instances),
            ));
        }
        if self.apps.values().any(|a| a.spec.name == spec.name) {
            return Err(Refusal::new(ErrorCode::CONFLICT, format!("an app named {} is here already", spec.name)));
        }
        let (module, _) = self
            .modules
            .get(&spec.module)
            .ok_or_else(|| Refusal::new(ErrorCode::UNKNOWN_MODULE, "no such module on this runner; upload it first"))?;
        // Every app's memory is counted against the board's: an app without a limit gets a
        // share of it (a quarter, its host side included), never the engine's 64 MiB default a
        // board may not have.
        let budget = self.limits.memory_bytes;
        let share = spore_edge::DEFAULT_MEMORY.min((budget / 4).saturating_sub(APP_OVERHEAD) & !0xFFFF);
        let wanted = spec.limits.memory_bytes.unwrap_or(share);
        // Each app's host side (its stack, its output) counts as well as its linear memory.
        let held: u64 = self.apps.values().filter_map(|a| a.spec.limits.memory_bytes).map(|m| m + APP_OVERHEAD).sum();
        spore_session::admit_memory(wanted, APP_OVERHEAD, held, budget)?;
        spec.limits.memory_bytes = Some(wanted);
        let granted = Granted::new(spec.devices.iter().map(String::as_str), &devices::available(&self.board));
        self.engine.check(module, &spec.limits, granted.functions()).map_err(|e| match e {
            spore_edge::EdgeError::Import { import } => spore_session::ungranted(&import, &self.describe().devices),
            e => Refusal::new(ErrorCode::INVALID_MODULE, e.to_string()),
        })?;
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).ok_or_else(|| {
            Refusal::new(ErrorCode::EXHAUSTED, "this board has used every app id; reset it to start again")
        })?;
        let app =
            App { spec, state: InstanceState::Created, kept: Pieces::default(), cpu_us: 0, memory_bytes: 0, run: None };
        self.apps.insert(id, app);
        Ok(id)
    }

    fn run(&mut self, request: u32, id: u32, entry: Entry, max_payload: u32) -> Result<(), Refusal> {
        let board = self.board.clone();
        let now = board.now_ns();
        let app = self.app(id)?;
        if app.run.is_some() {
            return Err(Refusal::new(
                ErrorCode::CONFLICT,
                format!("{} is running; kill it or wait for its exit", app.spec.name),
            ));
        }
        let spec = app.spec.clone();
        let (module, _) = self.modules.get(&spec.module).ok_or_else(|| {
            Refusal::new(ErrorCode::UNKNOWN_MODULE, "the app's module is gone from this runner; upload it again")
        })?;
        // The app's CPU clock starts at 0 now, before its limits are read off it.
        let shared = Arc::new(Mutex::new(Shared { slice_started: now, ..Shared::default() }));
        let devices = Granted::new(spec.devices.iter().map(String::as_str), &devices::available(&board));
        let host = AppHost { board, shared: shared.clone(), devices, parked_args: Vec::new() };
        let wasi = Wasi::new(
            spec.args.iter().map(String::as_str),
            spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            host,
        );
        let interrupt = Interrupt::new();
        let instance = self
            .engine
            .instantiate(module, wasi, &spec.limits, interrupt.clone())
            .map_err(|e| Refusal::new(ErrorCode::INVALID_MODULE, e.to_string()))?;
        let app = self.app(id)?;
        app.kept.clear();
        app.state = InstanceState::Running;
        app.run = Some(Run {
            instance: Some(instance),
            interrupt,
            entry: Some(entry),
            parked: None,
            request,
            shared,
            backlog: Pieces::default(),
            credit: 4 * u64::from(max_payload),
            chunk: max_payload.saturating_sub(64).max(64) as usize,
            unwatched: false,
            started: now,
            wall_deadline: spec.limits.wall_ms.map(|ms| now.saturating_add(ms.saturating_mul(1_000_000))),
            exit: None,
            slice: MIN_SLICE * 20,
        });
        self.outgoing.push_back((request, Message::Accepted(spore_wire::Accepted { instance: id })));
        Ok(())
    }

    fn credit(&mut self, id: u32, bytes: u32) {
        if let Some(run) = self.apps.get_mut(&id).and_then(|a| a.run.as_mut()) {
            run.credit = run.credit.saturating_add(u64::from(bytes));
        }
    }

    fn kill(&mut self, id: u32) -> Result<(), Refusal> {
        // A run that has ended but whose exit waits behind its output is still the agent's to
        // end: its exit goes out now.
        let app = self.app(id)?;
        if app.run.is_none() {
            return Err(Refusal::new(ErrorCode::CONFLICT, format!("{} is not running", app.spec.name)));
        }
        self.end_now(id);
        Ok(())
    }

    fn drop_instance(&mut self, id: u32) -> Result<(), Refusal> {
        self.app(id)?;
        self.end_now(id);
        self.apps.remove(&id);
        Ok(())
    }

    fn drop_module(&mut self, digest: &Digest) -> Result<(), Refusal> {
        let users: Vec<&str> =
            self.apps.values().filter(|a| &a.spec.module == digest).map(|a| a.spec.name.as_str()).collect();
        if !users.is_empty() {
            return Err(Refusal::new(
                ErrorCode::CONFLICT,
                format!("apps use this module ({}); remove them first", users.join(", ")),
            ));
        }
        match self.modules.remove(digest) {
            Some((_, size)) => {
                self.store_bytes -= size;
                Ok(())
            }
            None => Err(Refusal::new(ErrorCode::UNKNOWN_MODULE, "no such module on this runner")),
        }
    }

    fn kept(&self, id: u32, tail: u32) -> Result<Vec<(StreamKind, Vec<u8>)>, Refusal> {
        let app = self.apps.get(&id).ok_or_else(|| {
            Refusal::new(ErrorCode::UNKNOWN_INSTANCE, format!("no instance {id} on this runner; `spore ps` lists them"))
        })?;
        let mut out = Vec::new();
        let mut left = if tail == 0 { usize::MAX } else { tail as usize };
        for (stream, bytes) in app.kept.queue.iter().rev() {
            if left == 0 {
                break;
            }
            let take = bytes.len().min(left);
            out.push((*stream, bytes[bytes.len() - take..].to_vec()));
            left -= take;
        }
        out.reverse();
        Ok(out)
    }

    fn stats(&self) -> Stats {
        let instances: Vec<InstanceInfo> = self
            .apps
            .iter()
            .map(|(id, a)| InstanceInfo {
                id: *id,
                name: a.spec.name.clone(),
                module: a.spec.module,
                state: a.state.clone(),
                memory_bytes: a.memory_bytes,
                cpu_us: a.cpu_us,
                boot: a.spec.boot,
            })
            .collect();
        Stats {
            uptime_ms: self.board.now_ns().saturating_sub(self.booted) / 1_000_000,
            memory_bytes: instances.iter().map(|i| i.memory_bytes).sum(),
            modules: self.modules.len() as u32,
            instances,
        }
    }

    fn unwatch(&mut self) {
        for app in self.apps.values_mut() {
            if let Some(run) = app.run.as_mut() {
                run.unwatched = true;
                run.backlog.clear();
            }
        }
    }
}
