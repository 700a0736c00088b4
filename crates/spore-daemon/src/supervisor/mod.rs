//! The supervisor: every sandbox's record in memory, one async task per running sandbox, the
//! restart policy, and the one place state changes are made (then persisted and announced).
//!
//! Persistence rule: what the *operator* asked for (create, start, stop, remove) is committed
//! before the API answers; how runs *ended* (exited, restarted, killed) is queued and
//! group-committed; starts are not written at all. After a crash the daemon therefore knows every sandbox and what should be
//! running, and runs exactly those again — at worst it re-runs a guest whose exit had not
//! been committed yet.

use crate::db::{Change, Db};
mod lookup;

use crate::locks::{lock, read, write};
use crate::logs::{LogHub, SandboxLog, Stream};
use crate::model::*;
use crate::programs::{ProgramError, ProgramStore};
use spore_engine::SporeEngine;
use spore_sandbox::launch::{self, AppKind, LaunchError, Prepared};
use spore_sandbox::{ExitStatus, Meter, ProgramSource, Runnable, SandboxSpec, Sinks};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;

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

    /// Programs linked in memory now (for `/metrics`).
    pub fn programs_linked(&self) -> usize {
        lock(&self.runnables).len()
    }

    /// Deletes the stored programs no sandbox uses and nobody uploaded or used for `grace`,
    /// with their linked form and compiled code; returns each one's digest and size.
    pub async fn prune_programs(self: &Arc<Self>, grace: Duration) -> Result<Vec<(String, u64)>, SupError> {
        let _creates_done = self.prune_gate.write().await;
        let used: HashSet<String> = {
            let entries = read(&self.entries);
            entries
                .values()
                .filter_map(|e| match &lock(&e.record).spec.program {
                    ProgramSource::Digest(d) => Some(d.clone()),
                    _ => None,
                })
                .collect()
        };
        let this = self.clone();
        let deleted = tokio::task::spawn_blocking(move || this.programs.prune(&used, grace))
            .await
            .map_err(|e| SupError::Storage(format!("pruning the program store: {e}")))??;
        for (digest, _) in &deleted {
            lock(&self.runnables).remove(digest);
            if let (Some(cache), Ok(d)) = (self.engine.cache(), spore_image::ContentStore::digest(digest)) {
                cache.evict(&d);
            }
        }
        Ok(deleted)
    }

    /// Compiles (or fetches from cache) and links a stored program, once per digest.
    pub fn runnable(&self, digest: &str) -> Result<Prepared, SupError> {
        if let Some(r) = lock(&self.runnables).get(digest) {
            return Ok(r.clone());
        }
        let bytes = self.programs.get(digest)?;
        let prepared = launch::link(&self.engine, &short(digest), &bytes, self.settings.kv_stores.clone())
            .map_err(|e| SupError::Compile(e.to_string()))?;
        lock(&self.runnables).insert(digest.to_owned(), prepared.clone());
        Ok(prepared)
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

    /// Creates sandboxes from requests in one durable transaction, then starts those asked to.
    ///
    /// `replace` names sandboxes the new ones take the place of (a redeploy): everything about
    /// the new ones is checked first — policy, image, program, names, capacity — and only then,
    /// in the same transaction, are the old ones removed (stopped at once) and the new ones
    /// recorded. A create that fails leaves the old ones as they were.
    pub async fn create(
        self: &Arc<Self>,
        mut requests: Vec<CreateRequest>,
        replace: &[String],
    ) -> Result<Vec<Created>, SupError> {
        let policy = &self.settings.policy;
        let (replaced, _ops) = self.hold(replace).await?;
        // What the client asks is judged before anything is fetched or compiled.
        for req in &mut requests {
            policy.admit_request(&mut req.spec)?;
        }
        let mut reservation = self.reserve(requests.len().saturating_sub(replaced.len()))?;
        let starting = requests.iter().filter(|r| r.start).fold(0usize, |n, r| n.saturating_add(slots(&r.spec)));
        let freed = replaced.iter().filter_map(|e| lock(&e.running).as_ref().map(|r| r.slots)).sum::<usize>();
        self.check_capacity(starting.saturating_sub(freed))?;
        let images = self.resolve_images(&mut requests).await?;
        // From here until its records are committed, no prune deletes a program this create
        // names. (Not while pulling: a slow registry must not hold prunes, and the creates
        // queued behind a waiting prune, off; a program an image gave was stored just now.)
        let _no_prune = self.prune_gate.read().await;
        let linked = self.link_programs(&requests).await?;
        let records = self.records(requests, images, &linked, &replaced, &mut reservation)?;
        self.commit_replacing(&replaced, &records).await?;
        let created = self.start_created(records)?;
        for entry in &replaced {
            self.release_program(entry);
        }
        Ok(created)
    }

    /// The sandboxes a create replaces, held (in id order, so two creates never wait on each
    /// other) until the create is done with them.
    async fn hold(
        &self,
        replace: &[String],
    ) -> Result<(Vec<Arc<Entry>>, Vec<tokio::sync::OwnedMutexGuard<()>>), SupError> {
        let mut ids: Vec<String> =
            replace.iter().map(|key| self.find(key).map(|e| lock(&e.record).id.clone())).collect::<Result<_, _>>()?;
        ids.sort();
        ids.dedup();
        let (mut replaced, mut ops) = (Vec::new(), Vec::new());
        for id in &ids {
            let (entry, op) = self.exclusive(id).await?;
            ops.push(op);
            replaced.push(entry);
        }
        Ok((replaced, ops))
    }

    /// Images become stored programs first; a batch names one image many times, and after the
    /// first request resolved it the rest reuse that spec. An image with files puts its root in
    /// front of the client's mounts: the second of each pair counts those (the policy's mount
    /// roots do not judge them); the first is the image's manifest digest.
    async fn resolve_images(&self, requests: &mut [CreateRequest]) -> Result<Vec<(Option<String>, usize)>, SupError> {
        let mut resolved: Vec<(SandboxSpec, SandboxSpec, Option<String>)> = Vec::new();
        let mut images = Vec::with_capacity(requests.len());
        for req in requests.iter_mut() {
            let asked_mounts = req.spec.mounts.len();
            let image = match &req.spec.program {
                ProgramSource::Image(_) => match resolved.iter().find(|(asked, ..)| *asked == req.spec) {
                    Some((_, spec, image)) => {
                        req.spec = spec.clone();
                        image.clone()
                    }
                    None => {
                        let asked = req.spec.clone();
                        let image = self.programs.resolve_image(&mut req.spec, req.pull).await?;
                        resolved.push((asked, req.spec.clone(), image.clone()));
                        image
                    }
                },
                _ => None,
            };
            images.push((image, req.spec.mounts.len() - asked_mounts));
        }
        Ok(images)
    }

    /// Each program compiled (or fetched from the cache) and linked before anything is
    /// committed — a bad program is an error now, not a crash loop — on the blocking pool:
    /// compiling is CPU work that would stall every guest and the API on the runtime's
    /// workers. Kept by the create, not looked up again: a removal meanwhile may drop it from
    /// the cache.
    async fn link_programs(
        self: &Arc<Self>,
        requests: &[CreateRequest],
    ) -> Result<HashMap<String, Prepared>, SupError> {
        let mut digests: Vec<String> = requests
            .iter()
            .filter_map(|r| match &r.spec.program {
                ProgramSource::Digest(d) => Some(d.clone()),
                _ => None,
            })
            .collect();
        digests.dedup();
        let mut linked: HashMap<String, Prepared> = HashMap::new();
        for digest in digests {
            // Programs already linked (the common case: a redeploy, a batch, an upload that
            // compiled it) need no trip to the blocking pool.
            let cached = lock(&self.runnables).get(&digest).cloned();
            let prepared = match cached {
                Some(p) => p,
                None => {
                    let (this, d) = (self.clone(), digest.clone());
                    tokio::task::spawn_blocking(move || this.runnable(&d))
                        .await
                        .map_err(|e| SupError::Compile(format!("compiling failed: {e}")))??
                }
            };
            linked.insert(digest, prepared);
        }
        Ok(linked)
    }

    /// The records of a create: each spec given the operator's defaults and caps, admitted
    /// through the launch path, its mounts judged where they lead, its name checked and taken
    /// (under the reservation's lock: of two creates of one name side by side, exactly one
    /// gets it).
    fn records(
        &self,
        requests: Vec<CreateRequest>,
        images: Vec<(Option<String>, usize)>,
        linked: &HashMap<String, Prepared>,
        replaced: &[Arc<Entry>],
        reservation: &mut Reservation<'_>,
    ) -> Result<Vec<SandboxRecord>, SupError> {
        let policy = &self.settings.policy;
        let replaced_names: Vec<String> = replaced.iter().map(|e| lock(&e.record).name.clone()).collect();
        let mut records = Vec::with_capacity(requests.len());
        {
            let names = read(&self.names);
            // Names are checked and taken under the reservation's lock: of two creates of one
            // name side by side, exactly one gets it (the other's check sees it taken).
            let mut reserved = lock(&self.reserved);
            let mut seen = HashSet::new();
            for (mut req, (image, own)) in requests.into_iter().zip(images) {
                self.settings.defaults.apply(&mut req);
                policy.fill_unset(&mut req.spec.limits);
                let ProgramSource::Digest(digest) = req.spec.program.clone() else {
                    return Err(SupError::Invalid(
                        "spec.program must be {\"digest\": \"sha256:...\"} naming an uploaded program, or {\"image\": \"REF\"}".into(),
                    ));
                };
                if req.spec.http.as_ref().is_some_and(|h| h.concurrency == Some(0)) {
                    return Err(SupError::Invalid("spec.http.concurrency must be at least 1".into()));
                }
                if !self.programs.has(&digest)? {
                    return Err(ProgramError::Missing(digest.clone()).into());
                }
                // Linked above; the spec admitted through the launch path every front end
                // shares: valid, mounts pinned (a restart opens these very directories or
                // fails) and clear of the compile cache, counts within the pool's share, the
                // program of the kind the spec runs.
                let prepared = linked.get(&digest).cloned().ok_or_else(|| ProgramError::Missing(digest.clone()))?;
                let wanted = if req.spec.http.is_some() { AppKind::Http } else { AppKind::Command };
                launch::admit(&prepared, &mut req.spec, Some(wanted)).map_err(refused)?;
                // Judged where they lead once resolved and pinned, so a symlink cannot carry a
                // mount out of the operator's roots.
                policy.check_mounts(&req.spec.mounts[own..])?;
                let id = uuid::Uuid::new_v4().simple().to_string();
                let name = match req.name {
                    Some(name) => {
                        check_name(&name).map_err(|e| SupError::Invalid(e.to_string()))?;
                        name
                    }
                    // Twelve hex digits, as docker shows ids; the whole id (unique) if even
                    // that is taken, so a generated name never collides.
                    None => match format!("sandbox-{}", &id[..12]) {
                        short if !names.contains_key(&short) && !seen.contains(&short) => short,
                        _ => format!("sandbox-{id}"),
                    },
                };
                let held = names.contains_key(&name) && !replaced_names.contains(&name);
                if held || reserved.names.contains(&name) || !seen.insert(name.clone()) {
                    return Err(SupError::NameTaken(name));
                }
                records.push(SandboxRecord {
                    id,
                    name,
                    labels: req.labels,
                    spec: req.spec,
                    image,
                    restart: req.restart.unwrap_or_default(),
                    desired: if req.start { Desired::Running } else { Desired::Stopped },
                    state: State::Created,
                    exit: None,
                    restarts: 0,
                    created_at: now_ms(),
                    started_at: None,
                    finished_at: None,
                });
            }
            reservation.names = records.iter().map(|r| r.name.clone()).collect();
            reserved.names.extend(reservation.names.iter().cloned());
        }
        Ok(records)
    }

    /// Records the new sandboxes and deletes the replaced ones in one transaction, then ends
    /// the replaced ones.
    async fn commit_replacing(&self, replaced: &[Arc<Entry>], records: &[SandboxRecord]) -> Result<(), SupError> {
        let gone = replaced.iter().map(|e| Change::Delete(lock(&e.record).id.clone()));
        self.db
            .commit(gone.chain(records.iter().cloned().map(|r| Change::Put(Box::new(r)))).collect())
            .await
            .map_err(SupError::Db)?;
        for entry in replaced {
            self.kill_entry(entry, "killed: replaced".into()).await;
            // Killing queued the run's ending (a Put) after the deletion committed above; the
            // deletion again, queued after it, is what the database keeps.
            self.db.queue(Change::Delete(lock(&entry.record).id.clone()));
            self.forget(entry);
        }
        Ok(())
    }

    /// Announces the recorded sandboxes and starts those desired running.
    fn start_created(self: &Arc<Self>, records: Vec<SandboxRecord>) -> Result<Vec<Created>, SupError> {
        let mut created = Vec::with_capacity(records.len());
        for record in records {
            let start = record.desired == Desired::Running;
            created.push(Created { id: record.id.clone(), name: record.name.clone() });
            self.announce(&record, EventKind::Created);
            let id = record.id.clone();
            let image = record.image.clone();
            self.insert_entry(record, false);
            // Already pinned by the resolve; a failure here only reopens the narrow window the
            // second pin closes, so it is reported, not made the create's error.
            if let Some(image) = image
                && let Err(err) = self.programs.pin_image(&image)
            {
                tracing::warn!(%image, "cannot pin the image again: {err}");
            }
            if start {
                self.launch(&id)?;
            }
        }
        Ok(created)
    }

    /// Holds room for `n` more sandboxes under the policy's `max_sandboxes` until the create
    /// is recorded (or fails), so creates running side by side cannot pass it together.
    fn reserve(&self, n: usize) -> Result<Reservation<'_>, SupError> {
        let max = self.settings.policy.max_sandboxes;
        // Lock order, everywhere: entries, then names, then reserved.
        let entries = read(&self.entries);
        let mut reserved = lock(&self.reserved);
        let kept = entries.len().saturating_add(reserved.count);
        if kept.saturating_add(n) > max {
            return Err(SupError::TooMany { kept, max });
        }
        reserved.count += n;
        Ok(Reservation { reserved: &self.reserved, n, names: Vec::new() })
    }

    fn check_capacity(&self, more: usize) -> Result<(), SupError> {
        let live = self.live.load(Ordering::Relaxed);
        if live.saturating_add(more) > self.settings.capacity {
            return Err(SupError::Capacity { live, capacity: self.settings.capacity });
        }
        Ok(())
    }

    /// Starts a stopped or exited sandbox (durably marking it to be kept running).
    pub async fn start_sandbox(self: &Arc<Self>, key: &str) -> Result<SandboxRecord, SupError> {
        let (entry, _op) = self.exclusive(key).await?;
        if lock(&entry.running).is_some() {
            return Ok(lock(&entry.record).clone());
        }
        self.check_capacity(slots(&lock(&entry.record).spec))?;
        let record = {
            let mut r = lock(&entry.record);
            r.desired = Desired::Running;
            r.restarts = 0;
            r.clone()
        };
        self.db.commit(vec![Change::Put(Box::new(record.clone()))]).await.map_err(SupError::Db)?;
        self.launch(&record.id)?;
        Ok(lock(&entry.record).clone())
    }

    /// Spawns the run loop of a sandbox whose record says it should run.
    fn launch(self: &Arc<Self>, id: &str) -> Result<(), SupError> {
        let entry = self.find(id)?;
        let mut running = lock(&entry.running);
        if running.is_some() {
            return Ok(());
        }
        let digest = match &lock(&entry.record).spec.program {
            ProgramSource::Digest(d) => d.clone(),
            _ => return Err(SupError::Invalid("stored spec without a program digest".into())),
        };
        let runnable = self.runnable(&digest)?.runnable;
        entry.log.reopen();
        let stop = Arc::new(Notify::new());
        let meter = Arc::new(Meter::default());
        let taken = slots(&lock(&entry.record).spec);
        let task = tokio::spawn(run_loop(self.clone(), entry.clone(), runnable, stop.clone()));
        self.live.fetch_add(taken, Ordering::Relaxed);
        let now = Instant::now();
        *running = Some(Running { task, slots: taken, stop, meter, since: now, launched: now });
        Ok(())
    }

    /// Stops a sandbox: no more restarts; waits up to `grace` for the guest to end by itself
    /// (WASI has no signals, so this suits jobs about to finish), then kills it.
    pub async fn stop(&self, key: &str, grace: Duration) -> Result<SandboxRecord, SupError> {
        let (entry, _op) = self.exclusive(key).await?;
        self.want_stopped(&entry).await?;
        self.announce(&lock(&entry.record).clone(), EventKind::Stopped);
        let handle = lock(&entry.running).as_ref().map(|r| r.stop.clone());
        if let Some(stop) = handle {
            stop.notify_one();
            let deadline = Instant::now() + grace;
            while lock(&entry.running).is_some() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if lock(&entry.running).is_some() {
                self.kill_entry(
                    &entry,
                    format!("stopped: still running after the {} grace period", humantime::format_duration(grace)),
                )
                .await;
            }
        }
        Ok(lock(&entry.record).clone())
    }

    /// Kills a sandbox's guest now. It stays stopped.
    pub async fn kill(&self, key: &str) -> Result<SandboxRecord, SupError> {
        let (entry, _op) = self.exclusive(key).await?;
        self.want_stopped(&entry).await?;
        self.kill_entry(&entry, "killed by request".into()).await;
        Ok(lock(&entry.record).clone())
    }

    /// Durably records that the operator wants `entry` stopped (so no restart, now or after a
    /// daemon restart, brings it back).
    async fn want_stopped(&self, entry: &Arc<Entry>) -> Result<(), SupError> {
        let record = {
            let mut r = lock(&entry.record);
            r.desired = Desired::Stopped;
            r.clone()
        };
        self.db.commit(vec![Change::Put(Box::new(record))]).await.map_err(SupError::Db)
    }

    async fn kill_entry(&self, entry: &Arc<Entry>, message: String) {
        let Some(running) = lock(&entry.running).take() else { return };
        // Closed first: an HTTP app's instances are aborted with the run loop but may be in
        // the middle of a write on another worker thread.
        entry.log.close();
        running.task.abort();
        let _ = running.task.await;
        self.live.fetch_sub(running.slots, Ordering::Relaxed);
        *lock(&entry.last) = running.meter.clone();
        let record = {
            let mut r = lock(&entry.record);
            r.killed(message, now_ms());
            r.clone()
        };
        self.metrics.exits.fetch_add(1, Ordering::Relaxed);
        self.db.queue(Change::Put(Box::new(record.clone())));
        self.announce(&record, EventKind::Exited);
        self.announce(&record, EventKind::Killed);
        self.logs.close_followers(&record.id);
    }

    /// Removes a sandbox (`force` kills a running one first) and its logs.
    pub async fn remove(&self, key: &str, force: bool) -> Result<(), SupError> {
        let (entry, _op) = self.exclusive(key).await?;
        if lock(&entry.running).is_some() {
            if !force {
                return Err(SupError::Conflict(format!(
                    "sandbox {} is running; stop it first or remove with force",
                    lock(&entry.record).name
                )));
            }
            self.kill_entry(&entry, "killed: removed".into()).await;
        }
        let id = lock(&entry.record).id.clone();
        self.db.commit(vec![Change::Delete(id)]).await.map_err(SupError::Db)?;
        self.forget(&entry);
        self.release_program(&entry);
        Ok(())
    }

    /// The last sandbox of a program lets its linked form go: the cache is not to grow with
    /// every program ever run (a later create links it again, from the compile cache).
    fn release_program(&self, gone: &Entry) {
        let ProgramSource::Digest(digest) = lock(&gone.record).spec.program.clone() else { return };
        let entries = read(&self.entries);
        let used = entries.values().any(|e| lock(&e.record).spec.program == ProgramSource::Digest(digest.clone()));
        if !used {
            lock(&self.runnables).remove(&digest);
        }
    }

    /// Drops a sandbox whose record is deleted: its entry, name, log and its image's pin.
    fn forget(&self, entry: &Arc<Entry>) {
        entry.removed.store(true, Ordering::Release);
        let record = lock(&entry.record).clone();
        {
            let mut entries = write(&self.entries);
            entries.remove(&record.id);
            // The last sandbox of an image lets it go (a create re-pins once recorded).
            if let Some(image) = &record.image
                && !entries.values().any(|e| lock(&e.record).image.as_ref() == Some(image))
                && let Err(err) = self.programs.unpin_image(image)
            {
                tracing::warn!(%image, "cannot unpin the image: {err}");
            }
        }
        write(&self.names).remove(&record.name);
        entry.log.close();
        self.logs.remove(&record.id);
        self.announce(&record, EventKind::Removed);
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

/// One sandbox's life: run, record the ending, restart per policy with back-off, until it
/// should stop.
async fn run_loop(sup: Arc<Supervisor>, entry: Arc<Entry>, runnable: Arc<Runnable>, stop: Arc<Notify>) {
    let sinks = Sinks { stdout: Some(entry.log.sink(Stream::Out)), stderr: Some(entry.log.sink(Stream::Err)) };
    loop {
        let (spec, record) = {
            let mut r = lock(&entry.record);
            r.started(now_ms());
            let mut spec = r.spec.clone();
            // Each app's stores are its own (see `app_of`); the box's own and its LAN's
            // services are out of reach unless the operator allows them.
            spec.capabilities.key_value_namespace = Some(app_of(&r).to_owned());
            spec.public_network_only = !sup.settings.policy.private_network;
            (spec, r.clone())
        };
        // Not persisted: after a crash a sandbox runs again because it is *desired* running,
        // whatever state was last stored; its ending (below) is what the record must keep.
        sup.metrics.starts.fetch_add(1, Ordering::Relaxed);
        sup.announce(&record, EventKind::Started);
        let meter = Arc::new(Meter::default());
        if let Some(r) = lock(&entry.running).as_mut() {
            r.meter = meter.clone();
            if record.restarts > 0 {
                r.since = Instant::now();
            }
        }
        let status = match &spec.http {
            // An HTTP app: served until stopped, a fresh instance per request (the same
            // server as `spore serve`). A stop is a graceful shutdown.
            Some(http) => {
                let app =
                    spore_serve::App { name: record.name.clone(), runnable: runnable.clone(), spec: spec.clone() };
                let limits =
                    spore_serve::ServerLimits { concurrency: slots(&spec), ..spore_serve::ServerLimits::default() };
                match spore_serve::serve_app(app, &http.listen, limits, sinks.clone(), stop.notified()).await {
                    Ok(()) => ExitStatus::Exited { code: 0 },
                    Err(message) => ExitStatus::Trapped { message: format!("could not start: {message}") },
                }
            }
            None => match runnable.run_with(&spec, &sinks, &meter).await {
                Ok(report) => with_fix(report.status),
                Err(err) => ExitStatus::Trapped { message: format!("could not start: {}", start_error(&err)) },
            },
        };
        sup.metrics.exits.fetch_add(1, Ordering::Relaxed);
        let (record, again) = {
            let mut r = lock(&entry.record);
            let again = r.ended(status, now_ms());
            (r.clone(), again)
        };
        sup.db.queue(Change::Put(Box::new(record.clone())));
        sup.announce(&record, EventKind::Exited);
        if !again {
            break;
        }
        sup.metrics.restarts.fetch_add(1, Ordering::Relaxed);
        sup.announce(&record, EventKind::Restarted);
        tokio::select! {
            _ = tokio::time::sleep(RestartPolicy::backoff(record.restarts - 1)) => {}
            _ = stop.notified() => {
                let record = {
                    let mut r = lock(&entry.record);
                    r.restart_cancelled();
                    r.clone()
                };
                sup.db.queue(Change::Put(Box::new(record)));
                break;
            }
        }
    }
    // The run is over: free the slot and end follows (unless a kill already did).
    if let Some(running) = lock(&entry.running).take() {
        *lock(&entry.last) = running.meter;
        sup.live.fetch_sub(running.slots, Ordering::Relaxed);
    }
    sup.logs.close_followers(&lock(&entry.record).id);
}

/// A limit's ending, with what to raise in the API's terms (the spec field).
fn with_fix(status: ExitStatus) -> ExitStatus {
    match status {
        ExitStatus::LimitExceeded { limit, message } => {
            ExitStatus::LimitExceeded { limit, message: format!("{message}; raise spec.{}", limit.spec_field()) }
        }
        other => other,
    }
}

/// A spec the launch path does not admit, in the API's terms.
fn refused(err: LaunchError) -> SupError {
    match err {
        LaunchError::Spec(e) => SupError::Invalid(format!("spec: {e}")),
        LaunchError::Share { .. } => SupError::Invalid(format!("spec.{err}; leave it unset or lower it")),
        LaunchError::WrongKind { program, is: AppKind::Http, .. } => {
            SupError::Invalid(format!("{program} is {}: give spec.http.listen", AppKind::Http))
        }
        LaunchError::WrongKind { program, wanted: AppKind::Http, .. } => SupError::Invalid(format!(
            "spec.http is set, but {program} is not an HTTP app (it does not export wasi:http/incoming-handler)"
        )),
        other => SupError::Compile(other.to_string()),
    }
}

/// Why a sandbox could not start, with what to change in the API's terms.
fn start_error(err: &spore_sandbox::SandboxError) -> String {
    use spore_sandbox::SandboxError as E;
    match err {
        E::MemoryBelowMinimum { minimum, .. } => format!("{err}; raise spec.limits.memory_bytes to at least {minimum}"),
        E::NoEntryPoint { .. } => format!("{err}; name one in spec.invoke"),
        E::HttpApp { .. } => format!("{err}; give spec.http.listen"),
        _ => err.to_string(),
    }
}

/// Requests an HTTP app of the daemon runs at once unless its spec says otherwise.
pub const DEFAULT_HTTP_CONCURRENCY: usize = 16;

/// What creates in flight hold: room under `max_sandboxes`, and their names.
#[derive(Default)]
struct Reserved {
    count: usize,
    names: HashSet<String>,
}

/// Room and names held for sandboxes being created; given back when the create ends, by which
/// time they are entries (or never will be).
struct Reservation<'a> {
    reserved: &'a Mutex<Reserved>,
    n: usize,
    names: Vec<String>,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut reserved = lock(self.reserved);
        reserved.count -= self.n;
        for name in &self.names {
            reserved.names.remove(name);
        }
    }
}

/// The app a sandbox belongs to, whose key-value stores it opens: the app `spore deploy` made
/// it for (its `spore.app` label, shared by the replicas of one deploy), else its own name.
fn app_of(record: &SandboxRecord) -> &str {
    record.labels.get(APP_LABEL).map_or(record.name.as_str(), String::as_str)
}

/// Pool slots a sandbox takes while it runs: one for a command; one per request an HTTP app
/// may run at once, since each request's instance is a guest of the pool until it ends.
fn slots(spec: &SandboxSpec) -> usize {
    spec.http.as_ref().map_or(1, |h| h.concurrency.unwrap_or(DEFAULT_HTTP_CONCURRENCY).max(1))
}

fn short(digest: &str) -> String {
    spore_types::Digest::shorten(digest).to_owned()
}
