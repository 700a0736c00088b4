//! A sandbox's life after its create: the operator's start, stop, kill and remove, and the run
//! loop that runs the guest, records how each run ended and restarts it per its policy.

use super::{Entry, Running, SupError, Supervisor, slots};
use crate::db::Change;
use crate::locks::{lock, write};
use crate::logs::Stream;
use crate::model::*;
use spore_sandbox::{ExitStatus, Meter, ProgramSource, Runnable, Sinks};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

impl Supervisor {
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
    pub(super) fn launch(self: &Arc<Self>, id: &str) -> Result<(), SupError> {
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

    pub(super) async fn kill_entry(&self, entry: &Arc<Entry>, message: String) {
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

    /// Drops a sandbox whose record is deleted: its entry, name, log and its image's pin.
    pub(super) fn forget(&self, entry: &Arc<Entry>) {
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
                let app = spore_serve::App {
                    name: record.name.clone(),
                    runnable: runnable.clone(),
                    spec: spec.clone(),
                    spin_headers: false,
                };
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

/// The app a sandbox belongs to, whose key-value stores it opens: the app `spore deploy` made
/// it for (its `spore.app` label, shared by the replicas of one deploy), else its own name.
fn app_of(record: &SandboxRecord) -> &str {
    record.labels.get(APP_LABEL).map_or(record.name.as_str(), String::as_str)
}
