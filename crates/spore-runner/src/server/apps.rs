//! The apps a runner holds: what each was made with, its state, its kept output, and its runs —
//! each on a thread of its own, with a WASI host that streams output to the link that started
//! the run, within that link's credit.

use super::engines::{Ended, Loaded};
use super::store::write_atomic;
use super::{Refusal, Runner};
use spore_edge::{Call, Interrupt, Outcome, Stop, Wasi};
use spore_plugin::Plugin;
pub(crate) use spore_session::Entry;
use spore_wasip1::{Clock, Guest, Host, Import, Stream, Taken};
use spore_wire::{ErrorCode, Exit, InstanceInfo, InstanceState, Instantiate, Message, Output, StreamKind};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::link::FrameWriter;
use crate::system::Clocks;

/// Output an app keeps for `logs`, bytes.
const KEPT_OUTPUT: usize = 64 << 10;

/// Memory an app is counted for when its limits leave it unset (the engines' default).
const DEFAULT_MEMORY: u64 = spore_edge::DEFAULT_MEMORY;

/// The link a run's output and exit go to, and the credit it gave.
pub(crate) struct Watcher {
    writer: Arc<FrameWriter>,
    request_id: u32,
    /// Largest output piece: the negotiated payload, less the `OUTPUT` fields around it.
    chunk: usize,
    credit: Mutex<u64>,
    changed: Condvar,
    gone: AtomicBool,
}

impl Watcher {
    /// A watcher for a link that negotiated `max_payload`; the run starts with four payloads of
    /// credit, as the protocol says.
    pub(crate) fn new(writer: Arc<FrameWriter>, request_id: u32, max_payload: u32) -> Arc<Watcher> {
        Arc::new(Watcher {
            writer,
            request_id,
            chunk: max_payload.saturating_sub(64).max(64) as usize,
            credit: Mutex::new(4 * u64::from(max_payload)),
            changed: Condvar::new(),
            gone: AtomicBool::new(false),
        })
    }

    pub(crate) fn add_credit(&self, bytes: u32) {
        let mut credit = self.credit.lock().unwrap_or_else(PoisonError::into_inner);
        *credit = credit.saturating_add(u64::from(bytes));
        self.changed.notify_all();
    }

    /// The link went away: runs go on, their output only kept.
    pub(crate) fn close(&self) {
        self.gone.store(true, Ordering::Release);
        self.changed.notify_all();
    }

    /// Waits for `n` bytes of credit; the guest waits with it. Ends when the run is killed, and
    /// at its wall-clock deadline (without sending: the engine then ends the run at its limit).
    fn take(&self, n: u64, interrupt: &Interrupt, deadline: Option<Instant>) -> Result<bool, Stop> {
        let mut credit = self.credit.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if interrupt.is_interrupted() {
                return Err(Stop::Interrupted);
            }
            if self.gone.load(Ordering::Acquire) || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            if *credit >= n {
                *credit -= n;
                return Ok(true);
            }
            credit =
                self.changed.wait_timeout(credit, Duration::from_millis(20)).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    fn send(&self, message: &Message) {
        if self.gone.load(Ordering::Acquire) {
            return;
        }
        if self.writer.send(self.request_id, 0, message).is_err() {
            self.close();
        }
    }
}

/// One app.
pub(crate) struct App {
    pub(crate) id: u32,
    pub(crate) spec: Instantiate,
    module: Arc<Loaded>,
    /// Locked before `interrupt` whenever both are: a run's interrupt is in place before the
    /// state says Running, so a kill that sees Running reaches the run.
    state: Mutex<InstanceState>,
    interrupt: Mutex<Interrupt>,
    watcher: Mutex<Option<Arc<Watcher>>>,
    kept: Mutex<VecDeque<(StreamKind, Vec<u8>)>>,
    cpu_us: AtomicU64,
    memory_bytes: AtomicU64,
}

impl App {
    /// Keeps the last [`KEPT_OUTPUT`] bytes of output, in runs of one stream (so a guest
    /// writing a byte at a time costs bytes, not entries).
    fn keep(&self, stream: StreamKind, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(KEPT_OUTPUT)..];
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        match kept.back_mut() {
            Some((last, run)) if *last == stream => run.extend_from_slice(bytes),
            _ => kept.push_back((stream, bytes.to_vec())),
        }
        let mut total: usize = kept.iter().map(|(_, b)| b.len()).sum();
        while total > KEPT_OUTPUT {
            let Some((_, first)) = kept.front_mut() else { break };
            let cut = (total - KEPT_OUTPUT).min(first.len());
            first.drain(..cut);
            total -= cut;
            if first.is_empty() {
                kept.pop_front();
            }
        }
    }

    /// The output kept from its runs, the last `tail` bytes of it.
    pub(crate) fn kept(&self, tail: u32) -> Vec<(StreamKind, Vec<u8>)> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let mut left = tail as usize;
        let mut out = Vec::new();
        for (stream, bytes) in kept.iter().rev() {
            if left == 0 {
                break;
            }
            let from = bytes.len().saturating_sub(left);
            out.push((*stream, bytes[from..].to_vec()));
            left -= bytes.len() - from;
        }
        out.reverse();
        out
    }

    pub(crate) fn info(&self) -> InstanceInfo {
        InstanceInfo {
            id: self.id,
            name: self.spec.name.clone(),
            module: self.spec.module,
            state: self.state.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            memory_bytes: self.memory_bytes.load(Ordering::Relaxed),
            cpu_us: self.cpu_us.load(Ordering::Relaxed),
            boot: self.spec.boot,
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) == InstanceState::Running
    }

    /// Ends its run, if it has one.
    pub(crate) fn kill(&self) {
        self.interrupt.lock().unwrap_or_else(PoisonError::into_inner).interrupt();
        if let Some(w) = self.watcher.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            w.changed.notify_all();
        }
    }

    /// Ends its run and waits, a bounded time, until it has ended: after a `DONE` to `KILL`
    /// or `DROP` the app is no longer running, as `docker stop` promises.
    pub(crate) fn kill_and_wait(&self) -> Result<(), Refusal> {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.is_running() {
            if Instant::now() >= deadline {
                return Err(Refusal::new(
                    ErrorCode::CONFLICT,
                    format!("{} is still ending; try again", self.spec.name),
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    fn memory_limit(&self) -> u64 {
        self.spec.limits.memory_bytes.unwrap_or(DEFAULT_MEMORY)
    }
}

/// The apps, by id; boot apps also on disk.
pub(crate) struct Apps {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    next: u32,
    by_id: BTreeMap<u32, Arc<App>>,
}

impl Apps {
    pub(crate) fn open(data: &Path) -> Result<Apps, String> {
        let dir = data.join("apps");
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        Ok(Apps { dir, inner: Mutex::new(Inner { next: 1, by_id: BTreeMap::new() }) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, id: u32) -> Result<Arc<App>, Refusal> {
        self.lock().by_id.get(&id).cloned().ok_or_else(|| {
            Refusal::new(ErrorCode::UNKNOWN_INSTANCE, format!("no instance {id} on this runner; `spore ps` lists them"))
        })
    }

    pub(crate) fn all(&self) -> Vec<Arc<App>> {
        self.lock().by_id.values().cloned().collect()
    }

    pub(crate) fn uses(&self, digest: &spore_wire::Digest) -> Vec<String> {
        self.lock().by_id.values().filter(|a| &a.spec.module == digest).map(|a| a.spec.name.clone()).collect()
    }

    fn boot_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.app"))
    }

    /// Forgets an app (killing its run first) and its boot mark. The app is counted — its
    /// name, its memory — until its run has ended, so a run that does not end in time leaves
    /// it in place.
    pub(crate) fn remove(&self, id: u32) -> Result<(), Refusal> {
        let app = self.get(id)?;
        app.kill_and_wait()?;
        let mut inner = self.lock();
        inner.by_id.remove(&id);
        // Under the lock, so a new app of the same name cannot lose its boot mark to this.
        match std::fs::remove_file(self.boot_file(&app.spec.name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Refusal::new(ErrorCode::INTERNAL, format!("cannot remove the app's boot mark: {e}")))
            }
            _ => Ok(()),
        }
    }
}

/// Makes an app: checks its name, that its module can be made with its limits (without
/// running anything), and the runner's room; marks it to start at boot if asked.
pub(crate) fn instantiate(runner: &Runner, spec: Instantiate) -> Result<Arc<App>, Refusal> {
    // The session checked it too; here because the name becomes a file name under `apps/`.
    spore_session::check_name(&spec.name)?;
    let module = runner.store.module(&spec.module, &runner.engines)?;
    let functions = Granted::new(runner.granted(&spec.devices));
    runner.engines.check(&module, &spec.limits, functions.functions(), &runner.devices())?;
    let mut inner = runner.apps.lock();
    // Under the lock from here: two links cannot both take the last room, or one name.
    if inner.by_id.values().any(|a| a.spec.name == spec.name) {
        return Err(Refusal::new(
            ErrorCode::CONFLICT,
            format!("an app named {:?} exists on this runner; remove it first or choose another name", spec.name),
        ));
    }
    if inner.by_id.len() >= runner.config.max_instances as usize {
        return Err(Refusal::new(
            ErrorCode::EXHAUSTED,
            format!("this runner holds {} apps, its most; remove one first", inner.by_id.len()),
        ));
    }
    let wanted = spec.limits.memory_bytes.unwrap_or(DEFAULT_MEMORY);
    let held: u64 = inner.by_id.values().map(|a| a.memory_limit()).sum();
    spore_session::admit_memory(wanted, 0, held, runner.config.memory_bytes)?;
    // Dropped since it was looked up: an app must not outlive its module's file.
    if !runner.store.has(&spec.module) {
        return Err(Refusal::new(ErrorCode::UNKNOWN_MODULE, "the module was removed meanwhile; upload it again"));
    }
    let id = inner.next;
    inner.next = id
        .checked_add(1)
        .ok_or_else(|| Refusal::new(ErrorCode::EXHAUSTED, "this runner has given out every instance id; restart it"))?;
    if spec.boot {
        write_atomic(&runner.apps.boot_file(&spec.name), &Message::Instantiate(spec.clone()).payload())
            .map_err(|e| Refusal::new(ErrorCode::INTERNAL, format!("cannot keep the app for boot: {e}")))?;
    }
    let app = Arc::new(App {
        id,
        spec,
        module,
        state: Mutex::new(InstanceState::Created),
        interrupt: Mutex::new(Interrupt::new()),
        watcher: Mutex::new(None),
        kept: Mutex::new(VecDeque::new()),
        cpu_us: AtomicU64::new(0),
        memory_bytes: AtomicU64::new(0),
    });
    inner.by_id.insert(id, app.clone());
    Ok(app)
}

fn wasi_for(spec: &Instantiate, host: RunnerHost) -> Wasi<RunnerHost> {
    Wasi::new(spec.args.iter().map(String::as_str), spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())), host)
}

/// Starts a run of `app` on a thread of its own; its output and exit go to `watcher`.
/// `accepted` is called on that thread before the run starts, so nothing the run writes comes
/// before it (and it is not called if the thread cannot start).
pub(crate) fn run(
    runner: &Arc<Runner>,
    app: &Arc<App>,
    entry: Entry,
    watcher: Option<Arc<Watcher>>,
    accepted: impl FnOnce() + Send + 'static,
) -> Result<(), Refusal> {
    let interrupt = Interrupt::new();
    let before = {
        let mut state = app.state.lock().unwrap_or_else(PoisonError::into_inner);
        if *state == InstanceState::Running {
            return Err(Refusal::new(
                ErrorCode::CONFLICT,
                format!("{} is running; kill it or wait for its exit", app.spec.name),
            ));
        }
        *app.interrupt.lock().unwrap_or_else(PoisonError::into_inner) = interrupt.clone();
        std::mem::replace(&mut *state, InstanceState::Running)
    };
    *app.watcher.lock().unwrap_or_else(PoisonError::into_inner) = watcher.clone();
    let (thread_runner, thread_app) = (runner.clone(), app.clone());
    let spawned = std::thread::Builder::new().name(format!("app-{}", app.id)).spawn(move || {
        accepted();
        run_to_end(&thread_runner, &thread_app, entry, watcher, interrupt);
    });
    if let Err(e) = spawned {
        *app.watcher.lock().unwrap_or_else(PoisonError::into_inner) = None;
        *app.state.lock().unwrap_or_else(PoisonError::into_inner) = before;
        return Err(Refusal::new(ErrorCode::EXHAUSTED, format!("cannot start a thread for the run: {e}")));
    }
    Ok(())
}

fn run_to_end(runner: &Runner, app: &Arc<App>, entry: Entry, watcher: Option<Arc<Watcher>>, interrupt: Interrupt) {
    let started = Instant::now();
    let host = RunnerHost {
        app: Some(app.clone()),
        watcher: watcher.clone(),
        interrupt: interrupt.clone(),
        clocks: Clocks::from(started),
        deadline: app.spec.limits.wall_ms.map(|ms| started + Duration::from_millis(ms)),
        devices: Granted::new(runner.granted(&app.spec.devices)),
    };
    let cpu_before = crate::system::thread_cpu_ns().unwrap_or(0);
    let call = match &entry {
        Entry::Start => Call::Start,
        Entry::Export(name, args) => Call::Export { name, args },
    };
    let ended = runner.engines.run(&app.module, wasi_for(&app.spec, host), &app.spec.limits, interrupt, call);
    let Ended { outcome, fuel_used, memory_bytes } =
        ended.unwrap_or_else(|e| Ended { outcome: Outcome::Trapped(e.to_string()), fuel_used: None, memory_bytes: 0 });
    let outcome = spore_session::short(outcome);
    let cpu_us = crate::system::thread_cpu_ns().unwrap_or(0).saturating_sub(cpu_before) / 1000;
    app.cpu_us.fetch_add(cpu_us, Ordering::Relaxed);
    app.memory_bytes.store(memory_bytes, Ordering::Relaxed);
    *app.state.lock().unwrap_or_else(PoisonError::into_inner) = InstanceState::Ended(outcome.clone());
    let exit = Exit { instance: app.id, outcome, fuel_used, cpu_us, wall_us: started.elapsed().as_micros() as u64 };
    app.keep(StreamKind::Log, format!("{:?}\n", exit.outcome).as_bytes());
    if let Some(w) = watcher {
        w.send(&Message::Exit(exit));
    }
    *app.watcher.lock().unwrap_or_else(PoisonError::into_inner) = None;
}

/// Starts the apps marked to start at boot; one that no longer loads is logged and left.
pub(crate) fn start_boot_apps(runner: &Arc<Runner>) {
    let Ok(dir) = std::fs::read_dir(&runner.apps.dir) else { return };
    let mut files: Vec<PathBuf> =
        dir.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "app")).collect();
    files.sort();
    for path in files {
        let spec = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| Message::decode(0x20, &b).map_err(|e| e.to_string()));
        let started = match spec {
            Ok(Message::Instantiate(spec)) => instantiate(runner, spec)
                .and_then(|app| run(runner, &app, Entry::Start, None, || {}))
                .map_err(|r| r.message),
            Ok(_) => Err("not an app".to_string()),
            Err(e) => Err(e),
        };
        if let Err(e) = started {
            eprintln!("spore-runner: the boot app {} does not start: {e}", path.display());
        }
    }
}

/// WASI on a Linux runner: output to the kept log and the watching link, the system's clocks
/// and entropy, sleeps that a kill ends.
struct RunnerHost {
    app: Option<Arc<App>>,
    watcher: Option<Arc<Watcher>>,
    interrupt: Interrupt,
    clocks: Clocks,
    /// The run's wall-clock deadline: waits for credit end there.
    deadline: Option<Instant>,
    /// The devices granted to it.
    devices: Granted,
}

/// The functions of an app's granted devices (plugins), in the order its host numbers them.
struct Granted {
    functions: Vec<Import>,
    /// Each function's plugin and its place there.
    calls: Vec<(Arc<Plugin>, usize)>,
}

impl Granted {
    fn new(plugins: Vec<Arc<Plugin>>) -> Granted {
        let (mut functions, mut calls) = (Vec::new(), Vec::new());
        for plugin in plugins {
            for (i, f) in plugin.functions().iter().enumerate() {
                functions.push(*f);
                calls.push((plugin.clone(), i));
            }
        }
        Granted { functions, calls }
    }

    fn functions(&self) -> &[Import] {
        &self.functions
    }
}

impl Host for RunnerHost {
    fn write(&mut self, stream: Stream, bytes: &[u8]) -> Result<Taken, Stop> {
        let stream = match stream {
            Stream::Stdout => StreamKind::Stdout,
            Stream::Stderr => StreamKind::Stderr,
        };
        // Looked at on every write, watched or not: a guest writing without end is still killed.
        if self.interrupt.is_interrupted() {
            return Err(Stop::Interrupted);
        }
        let Some(app) = &self.app else { return Ok(Taken::All) };
        app.keep(stream, bytes);
        let Some(w) = &self.watcher else { return Ok(Taken::All) };
        for piece in bytes.chunks(w.chunk) {
            if w.take(piece.len() as u64, &self.interrupt, self.deadline)? {
                w.send(&Message::Output(Output { instance: app.id, stream, bytes: piece.to_vec() }));
            }
        }
        Ok(Taken::All)
    }

    fn now(&mut self, clock: Clock) -> Option<u64> {
        self.clocks.now(clock)
    }

    fn resolution(&mut self, _: Clock) -> Option<u64> {
        Some(1)
    }

    fn random(&mut self, buf: &mut [u8]) {
        crate::system::fill_random(buf);
    }

    fn sleep_until(&mut self, deadline: u64) -> Result<(), Stop> {
        self.clocks.sleep_until(deadline, &self.interrupt)
    }

    fn yield_now(&mut self) -> Result<(), Stop> {
        crate::system::yield_now(&self.interrupt)
    }
    fn functions(&self) -> &[Import] {
        self.devices.functions()
    }

    fn call_function(&mut self, index: usize, memory: &mut Guest<'_>, args: &[u64]) -> Result<i32, Stop> {
        let Some((plugin, function)) = self.devices.calls.get(index) else { return Ok(-spore_wasip1::errno::NOSYS) };
        // The run has a thread of its own: a device with nothing yet is asked again here,
        // every millisecond, until it answers, the run is killed or its time is up (then the
        // app gets SPORE_AGAIN and the limit ends it after the call).
        loop {
            let answer = plugin.call(*function, memory.0, args);
            if answer != spore_plugin::AGAIN || self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(answer);
            }
            if self.interrupt.is_interrupted() {
                return Err(Stop::Interrupted);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
