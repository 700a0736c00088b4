//! The supervisor: every sandbox's record in memory, one async task per running sandbox, the
//! restart policy, and the one place state changes are made (then persisted and announced).
//!
//! Persistence rule: what the *operator* asked for (create, start, stop, remove) is committed
//! before the API answers; how runs *ended* (exited, restarted, killed) is queued and
//! group-committed; starts are not written at all. After a crash the daemon therefore knows
//! every sandbox and what should be running, and runs exactly those again — at worst it re-runs
//! a guest whose exit had not been committed yet.
//!
//! The record's transitions are `SandboxRecord`'s own methods (spore-api); this module holds
//! the in-memory state and reads, [`create`] the create plan, [`lifecycle`] the operator's
//! start/stop/kill/remove and the run loop, [`linked`] the programs linked in memory, and
//! [`lookup`] the index of entries with its lock order.

mod create;
mod lifecycle;
mod linked;
mod lookup;

use crate::db::Db;
use crate::locks::{lock, read};
use crate::logs::{LogHub, SandboxLog};
use crate::model::*;
use crate::programs::{ProgramError, ProgramStore};
use spore_engine::SporeEngine;
use spore_sandbox::launch::Prepared;
use spore_sandbox::{Meter, SandboxSpec};
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;

use create::Reserved;

/// Why a request could not be carried out; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum SupError {
    /// No sandbox by that id, prefix or name.
    #[error("no sandbox {0:?}; list them with `spore ps -a`")]
    NotFound(String),
    /// A prefix matching several sandboxes.
    #[error("{0:?} matches several sandboxes; give more of the id or the name")]
    Ambiguous(String),
    /// Name taken.
    #[error("the name {0:?} is already in use; remove that sandbox or choose another name")]
    NameTaken(String),
    /// Request content is wrong.
    #[error("{0}")]
    Invalid(String),
    /// Program problems (missing, bad digest).
    #[error(transparent)]
    Program(#[from] ProgramError),
    /// The program does not compile or link.
    #[error("{0}")]
    Compile(String),
    /// Not in a state that allows the operation.
    #[error("{0}")]
    Conflict(String),
    /// The operator's policy refuses it.
    #[error(transparent)]
    Refused(#[from] crate::policy::Refusal),
    /// The daemon keeps as many sandboxes as its policy allows.
    #[error(
        "the daemon keeps at most {max} sandboxes ([policy] max_sandboxes) and has {kept}; remove some (spore rm), or raise the limit"
    )]
    TooMany {
        /// Sandboxes kept now.
        kept: usize,
        /// The policy's maximum.
        max: usize,
    },
    /// The daemon is at capacity.
    #[error(
        "at capacity: {live} of {capacity} sandbox slots are taken (an HTTP app takes one for each request it may run at once, spec.http.concurrency); stop some, or raise [pool] sandboxes in the daemon config"
    )]
    Capacity {
        /// Slots taken now.
        live: usize,
        /// Configured capacity.
        capacity: usize,
    },
    /// The state database failed.
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    /// Disk trouble elsewhere.
    #[error("{0}")]
    Storage(String),
}

impl spore_api::Classified for SupError {
    fn kind(&self) -> spore_api::ErrorKind {
        use spore_api::ErrorKind;
        match self {
            SupError::NotFound(_) => ErrorKind::NotFound,
            SupError::Ambiguous(_) | SupError::Invalid(_) => ErrorKind::Invalid,
            SupError::Program(e) => e.kind(),
            SupError::Compile(_) => ErrorKind::Unrunnable,
            SupError::NameTaken(_) | SupError::Conflict(_) => ErrorKind::Conflict,
            SupError::Capacity { .. } | SupError::TooMany { .. } => ErrorKind::Exhausted,
            SupError::Refused(e) => e.kind(),
            SupError::Storage(_) | SupError::Db(_) => ErrorKind::Internal,
        }
    }
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    /// Guest runs started.
    pub starts: AtomicU64,
    /// Guest runs ended.
    pub exits: AtomicU64,
    /// Restarts made by policies.
    pub restarts: AtomicU64,
}

struct Running {
    task: JoinHandle<()>,
    /// Pool slots it takes (see [`slots`]).
    slots: usize,
    stop: Arc<Notify>,
    meter: Arc<Meter>,
    /// Start of the current run (for uptime).
    since: Instant,
    /// When the create or start request launched it (for create→running latency).
    launched: Instant,
}

struct Entry {
    record: Mutex<SandboxRecord>,
    log: Arc<SandboxLog>,
    running: Mutex<Option<Running>>,
    /// Usage of the last finished run, kept for stats.
    last: Mutex<Arc<Meter>>,
    /// Held by an operator's request (start, stop, kill, remove, replace) from its check to its
    /// commit, so two on one sandbox cannot interleave: a start's record written after a
    /// remove's deletion would bring the sandbox back at the next daemon start.
    op: Arc<tokio::sync::Mutex<()>>,
    /// Set once the record is deleted; a request that waited for `op` then finds no sandbox.
    removed: std::sync::atomic::AtomicBool,
}

/// What the daemon allows: how many sandboxes run at once, what a client may ask for, and
/// what a create gets by default.
pub struct Settings {
    /// Live sandboxes at once.
    pub capacity: usize,
    /// The operator's policy for what a create may ask.
    pub policy: crate::policy::Policy,
    /// Applied to creates that leave limits or the restart policy unset.
    pub defaults: Defaults,
    /// Key-value stores offered to sandboxes that are granted them.
    pub kv_stores: Arc<spore_sandbox::KvStores>,
    /// Devices (plugins) offered to sandboxes that are granted them.
    pub devices: Arc<spore_sandbox::Devices>,
}

/// The daemon's sandboxes.
pub struct Supervisor {
    engine: SporeEngine,
    programs: ProgramStore,
    db: Db,
    logs: Arc<LogHub>,
    events: broadcast::Sender<Event>,
    runnables: Mutex<HashMap<String, Prepared>>,
    entries: RwLock<HashMap<String, Arc<Entry>>>,
    names: RwLock<HashMap<String, String>>,
    settings: Settings,
    /// Sandboxes being created now: counted toward `max_sandboxes`, their names taken (see
    /// [`Supervisor::reserve`]).
    reserved: Mutex<Reserved>,
    /// Held shared by every create from its first look at a program until its records are
    /// committed, and exclusively by a prune of the program store: a prune never deletes a
    /// program a create in flight is about to record.
    prune_gate: tokio::sync::RwLock<()>,
    live: std::sync::atomic::AtomicUsize,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
}

impl Supervisor {
    /// Builds the supervisor from stored records and brings back every sandbox that should run.
    pub fn start(
        engine: SporeEngine,
        programs: ProgramStore,
        db: Db,
        logs: Arc<LogHub>,
        stored: crate::db::Stored,
        settings: Settings,
    ) -> Arc<Supervisor> {
        let records = stored.records;
        let sup = Arc::new(Supervisor {
            engine,
            programs,
            db,
            logs,
            events: broadcast::channel(4096).0,
            runnables: Mutex::new(HashMap::new()),
            prune_gate: tokio::sync::RwLock::new(()),
            entries: RwLock::new(HashMap::new()),
            names: RwLock::new(HashMap::new()),
            settings,
            reserved: Mutex::new(Reserved { count: 0, names: stored.unreadable_names.into_iter().collect() }),
            live: Default::default(),
            metrics: Metrics::default(),
        });
        let mut to_start = Vec::new();
        for mut record in records {
            if record.recovered_after_crash(now_ms()) {
                to_start.push(record.id.clone());
            }
            sup.insert_entry(record, true);
        }
        let restored = to_start.len();
        for id in to_start {
            if let Err(err) = sup.launch(&id) {
                tracing::error!(sandbox = %id, "cannot restart after daemon restart: {err}");
            }
        }
        if restored > 0 {
            tracing::info!("brought back {restored} sandboxes");
        }
        sup
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn announce(&self, record: &SandboxRecord, kind: EventKind) {
        let exit = if kind == EventKind::Exited { record.exit.clone() } else { None };
        let _ =
            self.events.send(Event { time: now_ms(), id: record.id.clone(), name: record.name.clone(), kind, exit });
    }

    /// The operator's policy.
    pub fn policy(&self) -> &crate::policy::Policy {
        &self.settings.policy
    }

    /// The program store.
    pub fn programs(&self) -> &ProgramStore {
        &self.programs
    }

    /// The log hub.
    pub fn logs(&self) -> &Arc<LogHub> {
        &self.logs
    }

    /// A sandbox's record.
    pub fn inspect(&self, key: &str) -> Result<SandboxRecord, SupError> {
        Ok(lock(&self.find(key)?.record).clone())
    }

    /// All records matching the label and state filters, oldest first.
    pub fn list(&self, labels: &[(String, String)], state: Option<State>) -> Vec<SandboxRecord> {
        let entries = read(&self.entries);
        let mut out: Vec<SandboxRecord> = entries
            .values()
            .map(|e| lock(&e.record).clone())
            .filter(|r| labels.iter().all(|(k, v)| r.labels.get(k) == Some(v)))
            .filter(|r| state.is_none_or(|s| r.state == s))
            .collect();
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.name.cmp(&b.name)));
        out
    }

    /// Number of sandboxes by state, for `/metrics` and health.
    pub fn counts(&self) -> HashMap<State, usize> {
        let entries = read(&self.entries);
        let mut counts = HashMap::new();
        for e in entries.values() {
            *counts.entry(lock(&e.record).state).or_insert(0) += 1;
        }
        counts
    }

    /// Live figures of one sandbox.
    pub fn stats(&self, key: &str) -> Result<Stats, SupError> {
        let entry = self.find(key)?;
        let record = lock(&entry.record).clone();
        let (meter, uptime) = match &*lock(&entry.running) {
            Some(r) if record.state == State::Running => (r.meter.clone(), r.since.elapsed().as_millis() as u64),
            _ => (lock(&entry.last).clone(), 0),
        };
        Ok(Stats {
            id: record.id,
            name: record.name,
            state: record.state,
            memory_bytes: meter.memory_bytes(),
            cpu_ms: meter.cpu_ns() as f64 / 1e6,
            uptime_ms: uptime,
            restarts: record.restarts,
            log_dropped_bytes: entry.log.dropped(),
            log_dropped_lines: entry.log.dropped_lines(),
        })
    }

    /// Create→running latencies of the running sandboxes' first runs (launch to guest code
    /// entered), sorted; what `/metrics` summarises.
    pub fn start_latencies(&self) -> Vec<Duration> {
        let entries = read(&self.entries);
        let mut out: Vec<Duration> = entries
            .values()
            .filter_map(|e| {
                let running = lock(&e.running);
                let r = running.as_ref()?;
                (r.since == r.launched).then_some(())?;
                Some(r.meter.entered()?.saturating_duration_since(r.launched))
            })
            .collect();
        out.sort();
        out
    }

    /// Stops every running guest (daemon shutdown). Records keep `desired`, so they come back.
    pub async fn shutdown(&self) {
        let entries: Vec<Arc<Entry>> = read(&self.entries).values().cloned().collect();
        for entry in entries {
            self.kill_entry(&entry, "the daemon shut down".into()).await;
        }
    }
}

/// Requests an HTTP app of the daemon runs at once unless its spec says otherwise.
pub const DEFAULT_HTTP_CONCURRENCY: usize = 16;

/// Pool slots a sandbox takes while it runs: one for a command; one per request an HTTP app
/// may run at once, since each request's instance is a guest of the pool until it ends.
fn slots(spec: &SandboxSpec) -> usize {
    spec.http.as_ref().map_or(1, |h| h.concurrency.unwrap_or(DEFAULT_HTTP_CONCURRENCY).max(1))
}
