//! The state database: every sandbox record in a redb file, written only by one thread.
//!
//! Why redb: pure Rust (no C toolchain or SQLite version to manage), ACID transactions with a
//! copy-on-write B-tree, so a daemon killed at any instant reopens at the last committed
//! transaction — never half a write. Why one writer thread: writes group-commit. Every change
//! queued while a commit is in flight goes into the next transaction, so a burst of thousands
//! of creates or exits costs a handful of fsyncs, not thousands.

use crate::model::SandboxRecord;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use tokio::sync::{mpsc, oneshot};

const SANDBOXES: TableDefinition<&str, &[u8]> = TableDefinition::new("sandboxes");

/// A change to the stored state.
pub enum Change {
    /// Insert or replace a record. (Boxed: changes are queued by the thousand.)
    Put(Box<SandboxRecord>),
    /// Remove a record by id.
    Delete(String),
}

type Reply = oneshot::Sender<Result<(), DbError>>;

/// Handle to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    tx: mpsc::UnboundedSender<(Vec<Change>, Option<Reply>)>,
}

/// The database could not be opened, or could not commit.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    /// Another process holds the file.
    #[error(
        "the state database {path} is in use by another process: is another spore daemon running with this --data-dir?"
    )]
    InUse {
        /// The file.
        path: String,
    },
    /// Corrupt, unreadable, or not a redb file.
    #[error(
        "cannot open the state database {path}: {message}. To start anyway, move it aside (mv {path} {path}.broken): the daemon then starts with no sandboxes, and the moved file keeps the old records for inspection"
    )]
    Open {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A transaction failed (the disk is full, or failing); what it asked is not recorded.
    #[error("the state database could not commit: {0}")]
    Commit(String),
    /// The writer thread is gone (the daemon is shutting down).
    #[error("the state database has shut down")]
    Closed,
}

/// What the database held at start.
pub struct Stored {
    /// Every record this version reads.
    pub records: Vec<SandboxRecord>,
    /// Names of records it cannot read (written by a newer version): kept taken, so a create
    /// cannot give a second sandbox a name the stored one will have again after an upgrade.
    pub unreadable_names: Vec<String>,
}

impl Db {
    /// Opens (or creates) the database and returns what it holds.
    pub fn open(path: &Path) -> Result<(Db, Stored), DbError> {
        let shown = path.display().to_string();
        let open_err = |message: String| DbError::Open { path: shown.clone(), message };
        let db = match Database::create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(DbError::InUse { path: shown }),
            Err(err) => return Err(open_err(err.to_string())),
        };
        // Create the table on first use so reads never meet a missing table.
        let txn = db.begin_write().map_err(|e| open_err(e.to_string()))?;
        txn.open_table(SANDBOXES).map_err(|e| open_err(e.to_string()))?;
        txn.commit().map_err(|e| open_err(e.to_string()))?;

        let mut records = Vec::new();
        let mut unreadable_names = Vec::new();
        let read = db.begin_read().map_err(|e| open_err(e.to_string()))?;
        let table = read.open_table(SANDBOXES).map_err(|e| open_err(e.to_string()))?;
        for entry in table.iter().map_err(|e| open_err(e.to_string()))? {
            let (key, value) = entry.map_err(|e| open_err(e.to_string()))?;
            match serde_json::from_slice::<SandboxRecord>(value.value()) {
                Ok(record) => records.push(record),
                // A record this version cannot read is kept on disk, untouched, and reported;
                // its name, if it can be told, stays taken (see `Stored::unreadable_names`).
                Err(err) => {
                    tracing::error!(id = key.value(), "skipping unreadable sandbox record: {err}");
                    let name = serde_json::from_slice::<serde_json::Value>(value.value())
                        .ok()
                        .and_then(|v| v["name"].as_str().map(str::to_owned));
                    unreadable_names.extend(name);
                }
            }
        }
        drop(table);
        drop(read);

        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("spore-db".into())
            .spawn(move || writer(db, rx))
            .map_err(|e| open_err(format!("cannot start the writer thread: {e}")))?;
        Ok((Db { tx }, Stored { records, unreadable_names }))
    }

    /// Applies `changes` in one transaction and waits until it is durable.
    pub async fn commit(&self, changes: Vec<Change>) -> Result<(), DbError> {
        let (reply, done) = oneshot::channel();
        self.tx.send((changes, Some(reply))).map_err(|_| DbError::Closed)?;
        done.await.map_err(|_| DbError::Closed)?
    }

    /// Queues a change for the next commit without waiting (observed state: starts, exits).
    pub fn queue(&self, change: Change) {
        let _ = self.tx.send((vec![change], None));
    }
}

/// The writer thread: takes everything queued, commits it as one transaction, answers.
fn writer(db: Database, mut rx: mpsc::UnboundedReceiver<(Vec<Change>, Option<Reply>)>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < 100_000
            && let Ok(more) = rx.try_recv()
        {
            batch.push(more);
        }
        let result = apply(&db, batch.iter().flat_map(|(changes, _)| changes.iter())).map_err(|e| {
            tracing::error!("state database commit failed: {e}");
            DbError::Commit(e.to_string())
        });
        for (_, reply) in batch {
            if let Some(reply) = reply {
                let _ = reply.send(result.clone());
            }
        }
    }
}

fn apply<'a>(db: &Database, changes: impl Iterator<Item = &'a Change>) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(SANDBOXES)?;
        for change in changes {
            match change {
                Change::Put(record) => {
                    let json = serde_json::to_vec(record).expect("records always serialize");
                    table.insert(record.id.as_str(), json.as_slice())?;
                }
                Change::Delete(id) => {
                    table.remove(id.as_str())?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_this_version_cannot_read_keeps_its_name_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(SANDBOXES).unwrap();
                // As a newer daemon might write it: a field this version does not know.
                t.insert("abc", br#"{"id":"abc","name":"web","colour":"red"}"#.as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let (_db, stored) = Db::open(&path).unwrap();
        assert!(stored.records.is_empty());
        assert_eq!(stored.unreadable_names, ["web"]);
    }
}
