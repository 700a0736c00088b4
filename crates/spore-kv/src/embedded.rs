//! The embedded backend: one redb file, one table per store. Every write is its own ACID
//! transaction (durable when it returns); reads see the last commit. What each store holds
//! (keys, bytes) is kept in a table of its own, updated in the write's transaction, so a
//! quota is checked exactly, however many writers race. redb calls block, so they
//! run on tokio's blocking pool, never on the threads that drive guests.
//!
//! The file is opened on first use, not when the host starts: a server whose apps use no store
//! never takes its lock (two servers run side by side), and a file that is corrupt or held by
//! another process fails the store's operations — with a message naming the file and, for a
//! lock, the process holding it — not the host.

use crate::{Backend, KeyPage, KvError, Quota, Usage, parse_counter};
use futures_util::future::BoxFuture;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Keys per `list` page.
const PAGE: usize = 1000;

/// Stores in a redb file.
#[derive(Clone)]
pub struct Embedded {
    path: Arc<PathBuf>,
    db: Arc<Mutex<Option<Arc<Database>>>>,
    quota: Quota,
}

type Table<'t> = redb::Table<'t, &'static str, &'static [u8]>;

fn table(store: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(store)
}

/// (keys, bytes) by store. Its name starts with a NUL, which no store name may.
const USAGE: TableDefinition<&str, (u64, u64)> = TableDefinition::new("\0usage");

/// What `t` holds, counted (a store written before usage was kept).
fn count(t: &Table) -> Result<Usage, KvError> {
    let mut usage = Usage::default();
    for entry in t.iter().map_err(err)? {
        let (k, v) = entry.map_err(err)?;
        usage.add(k.value(), v.value().len());
    }
    Ok(usage)
}

/// Sets `key` in `t`, keeping `usage`.
fn put(t: &mut Table, usage: &mut Usage, key: &str, value: &[u8]) -> Result<(), KvError> {
    if let Some(old) = t.insert(key, value).map_err(err)? {
        usage.remove(key, old.value().len());
    }
    usage.add(key, value.len());
    Ok(())
}

/// Removes `key` from `t`, keeping `usage`.
fn take(t: &mut Table, usage: &mut Usage, key: &str) -> Result<(), KvError> {
    if let Some(old) = t.remove(key).map_err(err)? {
        usage.remove(key, old.value().len());
    }
    Ok(())
}

fn err(e: impl std::fmt::Display) -> KvError {
    KvError(format!("embedded key-value store: {e}"))
}

impl Embedded {
    /// A store in the file at `path` (created on first use).
    pub fn at(path: &Path) -> Self {
        Embedded { path: Arc::new(path.to_owned()), db: Arc::default(), quota: Quota::default() }
    }

    /// The same file (one handle, one lock), its stores held to `quota`.
    pub fn with_quota(&self, quota: Quota) -> Self {
        Embedded { quota, ..self.clone() }
    }

    /// Opens (or creates) the file at `path` now, failing as a first use would.
    pub fn open(path: &Path) -> Result<Self, KvError> {
        let kv = Embedded::at(path);
        kv.database()?;
        Ok(kv)
    }

    /// The open database, opened now if it is not yet. Blocks: call on the blocking pool.
    fn database(&self) -> Result<Arc<Database>, KvError> {
        let mut slot = self.db.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        let path = self.path.as_path();
        // The user's alone, whatever the umask: stores hold apps' data.
        if let Some(dir) = path.parent() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| KvError(format!("{}: {e}", dir.display())))?;
        }
        let db = Database::create(path).map_err(|e| {
            let held = matches!(e, redb::DatabaseError::DatabaseAlreadyOpen)
                .then(|| lock_holder(path))
                .flatten()
                .map(|pid| format!(" (held by process {pid}{})", process_name(pid)))
                .unwrap_or_default();
            let message = format!("key-value store file {}: {e}{held}", path.display());
            tracing::warn!("{message}");
            KvError(message)
        })?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        let db = Arc::new(db);
        *slot = Some(db.clone());
        Ok(db)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, KvError> + Send + 'static,
    ) -> Result<T, KvError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.database().and_then(|db| f(&db))).await.map_err(err)?
    }

    /// Runs `f` on the store's table and its usage inside one write transaction, committed when
    /// `f` returns Ok and the quota admits what it did; otherwise nothing is written.
    async fn write<T: Send + 'static>(
        &self,
        store: &str,
        f: impl FnOnce(&mut Table, &mut Usage) -> Result<T, KvError> + Send + 'static,
    ) -> Result<T, KvError> {
        if store.starts_with('\0') {
            return Err(KvError(format!("{store:?} is not a store name")));
        }
        let (store, quota) = (store.to_owned(), self.quota);
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(err)?;
            let done = (|| {
                let mut t = tx.open_table(table(&store)).map_err(err)?;
                let mut kept = tx.open_table(USAGE).map_err(err)?;
                let before = match kept.get(store.as_str()).map_err(err)? {
                    Some(row) => Usage { keys: row.value().0, bytes: row.value().1 },
                    None => count(&t)?,
                };
                let mut usage = before;
                let out = f(&mut t, &mut usage)?;
                quota.admit(&store, before, usage)?;
                kept.insert(store.as_str(), (usage.keys, usage.bytes)).map_err(err)?;
                Ok(out)
            })();
            match done {
                Ok(out) => tx.commit().map_err(err).map(|()| out),
                Err(e) => {
                    let _ = tx.abort();
                    Err(e)
                }
            }
        })
        .await
    }

    /// Runs `f` on the store's table for reading; a store never written reads as empty.
    async fn read<T: Send + 'static>(
        &self,
        store: &str,
        empty: T,
        f: impl FnOnce(&redb::ReadOnlyTable<&'static str, &'static [u8]>) -> Result<T, KvError> + Send + 'static,
    ) -> Result<T, KvError> {
        let store = store.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(err)?;
            match tx.open_table(table(&store)) {
                Ok(t) => f(&t),
                Err(TableError::TableDoesNotExist(_)) => Ok(empty),
                Err(e) => Err(err(e)),
            }
        })
        .await
    }
}

impl Backend for Embedded {
    fn get<'a>(&'a self, store: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, KvError>> {
        let key = key.to_owned();
        Box::pin(self.read(store, None, move |t| Ok(t.get(key.as_str()).map_err(err)?.map(|v| v.value().to_vec()))))
    }

    fn set<'a>(&'a self, store: &'a str, key: &'a str, value: &'a [u8]) -> BoxFuture<'a, Result<(), KvError>> {
        let (key, value) = (key.to_owned(), value.to_vec());
        Box::pin(self.write(store, move |t, usage| put(t, usage, &key, &value)))
    }

    fn delete<'a>(&'a self, store: &'a str, key: &'a str) -> BoxFuture<'a, Result<(), KvError>> {
        let key = key.to_owned();
        Box::pin(self.write(store, move |t, usage| take(t, usage, &key)))
    }

    fn exists<'a>(&'a self, store: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool, KvError>> {
        let key = key.to_owned();
        Box::pin(self.read(store, false, move |t| Ok(t.get(key.as_str()).map_err(err)?.is_some())))
    }

    fn list<'a>(&'a self, store: &'a str, cursor: Option<u64>) -> BoxFuture<'a, Result<KeyPage, KvError>> {
        let skip = cursor.unwrap_or(0) as usize;
        Box::pin(self.read(store, KeyPage::default(), move |t| {
            let mut keys = Vec::new();
            let mut more = false;
            for (i, entry) in t.iter().map_err(err)?.enumerate().skip(skip) {
                if i >= skip + PAGE {
                    more = true;
                    break;
                }
                keys.push(entry.map_err(err)?.0.value().to_owned());
            }
            Ok(KeyPage { keys, cursor: more.then_some((skip + PAGE) as u64) })
        }))
    }

    fn increment<'a>(&'a self, store: &'a str, key: &'a str, delta: i64) -> BoxFuture<'a, Result<i64, KvError>> {
        let (store_name, key) = (store.to_owned(), key.to_owned());
        Box::pin(self.write(store, move |t, usage| {
            let current = {
                let v = t.get(key.as_str()).map_err(err)?;
                parse_counter(&store_name, &key, v.as_ref().map(|v| v.value()))?
            };
            let next = current
                .checked_add(delta)
                .ok_or_else(|| KvError(format!("{store_name}/{key}: the counter would overflow")))?;
            put(t, usage, &key, next.to_string().as_bytes())?;
            Ok(next)
        }))
    }

    fn swap_if<'a>(
        &'a self,
        store: &'a str,
        key: &'a str,
        expected: Option<&'a [u8]>,
        value: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, KvError>> {
        let (key, expected, value) = (key.to_owned(), expected.map(<[u8]>::to_vec), value.to_vec());
        Box::pin(self.write(store, move |t, usage| {
            let current = t.get(key.as_str()).map_err(err)?.map(|v| v.value().to_vec());
            if current != expected {
                return Ok(false);
            }
            put(t, usage, &key, &value)?;
            Ok(true)
        }))
    }

    fn set_many<'a>(&'a self, store: &'a str, pairs: &'a [(String, Vec<u8>)]) -> BoxFuture<'a, Result<(), KvError>> {
        let pairs = pairs.to_vec();
        Box::pin(self.write(store, move |t, usage| pairs.iter().try_for_each(|(k, v)| put(t, usage, k, v))))
    }

    fn delete_many<'a>(&'a self, store: &'a str, keys: &'a [String]) -> BoxFuture<'a, Result<(), KvError>> {
        let keys = keys.to_vec();
        Box::pin(self.write(store, move |t, usage| keys.iter().try_for_each(|k| take(t, usage, k))))
    }
}

/// The process holding a lock on `path`, from the kernel's lock table (`/proc/locks`:
/// `ID: TYPE MODE ACCESS PID MAJ:MIN:INODE START END`).
fn lock_holder(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (pid, id) = (fields.get(4)?, fields.get(5)?);
        let inode: u64 = id.rsplit(':').next()?.parse().ok()?;
        (inode == meta.ino()).then(|| pid.parse().ok()).flatten()
    })
}

/// `: NAME` of process `pid`, when it can be read.
fn process_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|n| format!(": {}", n.trim())).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn behaves_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.redb");
        let kv = Embedded::open(&path).unwrap();
        crate::conformance::check(&kv).await;
        drop(kv);
        let kv = Embedded::open(&path).unwrap();
        assert_eq!(kv.get("s", "n").await.unwrap().as_deref(), Some(&b"5"[..]), "durable");
    }

    #[tokio::test]
    async fn quotas_hold_across_handles_and_count_stores_written_before_usage_was_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.redb");
        let quota = Quota { max_keys: Some(3), max_bytes: Some(30) };
        let kv = Embedded::open(&path).unwrap();
        crate::conformance::quota(&kv.with_quota(quota)).await;
        // One file, two labels: the quota is the handle's, the file's lock is shared.
        kv.set("q", "d", b"1").await.unwrap();
        drop(kv);
        // A store whose table has no usage row yet is counted when first written.
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut t = tx.open_table(table("old")).unwrap();
                for k in ["a", "b", "c"] {
                    t.insert(k, &b"v"[..]).unwrap();
                }
            }
            tx.commit().unwrap();
        }
        let kv = Embedded::open(&path).unwrap().with_quota(quota);
        assert!(kv.set("old", "d", b"v").await.unwrap_err().0.contains("max_keys of 3"));
        kv.delete("old", "a").await.unwrap();
        kv.set("old", "d", b"v").await.unwrap();
        assert!(kv.set("\0usage", "k", b"v").await.unwrap_err().0.contains("is not a store name"));
    }

    #[tokio::test]
    async fn a_file_is_opened_on_first_use_and_trouble_fails_the_store_not_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.redb");
        let kv = Embedded::at(&path);
        assert!(!path.exists(), "nothing opened before use");
        kv.set("s", "k", b"v").await.unwrap();
        // A second holder of the same file (another process would be told which one).
        let err = Embedded::at(&path).get("s", "k").await.unwrap_err().0;
        assert!(err.contains(&path.display().to_string()), "{err}");
        let corrupt = dir.path().join("corrupt.redb");
        std::fs::write(&corrupt, b"not a database").unwrap();
        let err = Embedded::at(&corrupt).get("s", "k").await.unwrap_err().0;
        assert!(err.contains("corrupt.redb"), "{err}");
    }
}
