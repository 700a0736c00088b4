//! Programs linked in memory, once per digest and shared by every sandbox of that program:
//! linked on first use, let go with the program's last sandbox, deleted with their stored form
//! and compiled code by a prune.

use super::{Entry, SupError, Supervisor};
use crate::locks::{lock, read};
use spore_sandbox::ProgramSource;
use spore_sandbox::launch::{self, Prepared};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

impl Supervisor {
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
        let wasm = self.programs.wasm(digest)?;
        let prepared = launch::link(
            &self.engine,
            &short(digest),
            &wasm,
            self.settings.kv_stores.clone(),
            self.settings.devices.clone(),
        )
        .map_err(|e| SupError::Compile(e.to_string()))?;
        lock(&self.runnables).insert(digest.to_owned(), prepared.clone());
        Ok(prepared)
    }

    /// The last sandbox of a program lets its linked form go: the cache is not to grow with
    /// every program ever run (a later create links it again, from the compile cache).
    pub(super) fn release_program(&self, gone: &Entry) {
        let ProgramSource::Digest(digest) = lock(&gone.record).spec.program.clone() else { return };
        let entries = read(&self.entries);
        let used = entries.values().any(|e| lock(&e.record).spec.program == ProgramSource::Digest(digest.clone()));
        if !used {
            lock(&self.runnables).remove(&digest);
        }
    }
}

fn short(digest: &str) -> String {
    spore_types::Digest::shorten(digest).to_owned()
}
