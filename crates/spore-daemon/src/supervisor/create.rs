//! Creating sandboxes: a create is a plan of named steps (hold what it replaces, judge the
//! requests, reserve room and names, resolve images, link programs, build the records, commit,
//! start), each of which can refuse before anything is committed.

use super::{Entry, SupError, Supervisor, slots};
use crate::db::Change;
use crate::locks::{lock, read};
use crate::model::*;
use crate::programs::ProgramError;
use spore_sandbox::launch::{self, AppKind, LaunchError, Prepared};
use spore_sandbox::{ProgramSource, SandboxSpec};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

impl Supervisor {
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
            // An image's registry too, before the pull: a reference that does not parse is
            // refused by the pull, with its reason.
            if let ProgramSource::Image(image) = &req.spec.program
                && let Ok(reference) = image.parse::<spore_image::Reference>()
            {
                policy.admit_registry(image, &reference.registry)?;
            }
            // The app label names the app's stores and its SQLite files on disk: a name, never
            // a path.
            if let Some(app) = req.labels.get(APP_LABEL) {
                check_name(app).map_err(|e| SupError::Invalid(format!("label {APP_LABEL}: {e}")))?;
            }
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

    pub(super) fn check_capacity(&self, more: usize) -> Result<(), SupError> {
        let live = self.live.load(Ordering::Relaxed);
        if live.saturating_add(more) > self.settings.capacity {
            return Err(SupError::Capacity { live, capacity: self.settings.capacity });
        }
        Ok(())
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

/// What creates in flight hold: room under `max_sandboxes`, and their names.
#[derive(Default)]
pub(super) struct Reserved {
    pub(super) count: usize,
    pub(super) names: HashSet<String>,
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
