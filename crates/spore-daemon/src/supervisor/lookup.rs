//! Finding a sandbox (by id, unique id prefix or name) and holding it while it is changed: the
//! supervisor's index of entries, kept in one place with its lock order (entries, then names,
//! then reserved).

use super::{Entry, SupError, Supervisor};
use crate::locks::{read, write};
use crate::model::SandboxRecord;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

impl Supervisor {
    /// Indexes a sandbox (by id and by name), its log opened (`existing`: a log from before a
    /// daemon restart is continued).
    pub(super) fn insert_entry(&self, record: SandboxRecord, existing: bool) -> Arc<Entry> {
        let entry = Arc::new(Entry {
            log: self.logs.open(&record.id, existing),
            running: Mutex::new(None),
            last: Mutex::new(Arc::default()),
            record: Mutex::new(record.clone()),
            op: Arc::default(),
            removed: Default::default(),
        });
        write(&self.names).insert(record.name.clone(), record.id.clone());
        write(&self.entries).insert(record.id, entry.clone());
        entry
    }

    /// The sandbox `key` names, with the right to change it until the guard is dropped (see
    /// `Entry::op`).
    pub(super) async fn exclusive(
        &self,
        key: &str,
    ) -> Result<(Arc<Entry>, tokio::sync::OwnedMutexGuard<()>), SupError> {
        let entry = self.find(key)?;
        let guard = entry.op.clone().lock_owned().await;
        if entry.removed.load(Ordering::Acquire) {
            return Err(SupError::NotFound(key.to_owned()));
        }
        Ok((entry, guard))
    }

    /// Resolves an id, a unique id prefix (4+ characters) or a name.
    pub(super) fn find(&self, key: &str) -> Result<Arc<Entry>, SupError> {
        let entries = read(&self.entries);
        if let Some(e) = entries.get(key) {
            return Ok(e.clone());
        }
        if let Some(id) = read(&self.names).get(key)
            && let Some(e) = entries.get(id)
        {
            return Ok(e.clone());
        }
        if key.len() >= 4 {
            let mut matches = entries.iter().filter(|(id, _)| id.starts_with(key));
            if let Some((_, e)) = matches.next() {
                return match matches.next() {
                    None => Ok(e.clone()),
                    Some(_) => Err(SupError::Ambiguous(key.to_owned())),
                };
            }
        }
        Err(SupError::NotFound(key.to_owned()))
    }
}
