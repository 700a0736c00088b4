//! The embedded backend: one redb file, one table per store. Every write is its own ACID
//! transaction (durable when it returns); reads see the last commit. redb calls block, so they
//! run on tokio's blocking pool, never on the threads that drive guests.

use crate::{Backend, KeyPage, KvError, parse_counter};
use futures_util::future::BoxFuture;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError};
use std::path::Path;
use std::sync::Arc;

/// Keys per `list` page.
const PAGE: usize = 1000;

/// Stores in a redb file.
#[derive(Clone)]
pub struct Embedded {
    db: Arc<Database>,
}

fn table(store: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(store)
}

fn err(e: impl std::fmt::Display) -> KvError {
    KvError(format!("embedded key-value store: {e}"))
}

impl Embedded {
    /// Opens (or creates) the file at `path`.
    pub fn open(path: &Path) -> Result<Self, KvError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| KvError(format!("{}: {e}", dir.display())))?;
        }
        let db = Database::create(path).map_err(|e| KvError(format!("{}: {e}", path.display())))?;
        Ok(Embedded { db: Arc::new(db) })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, KvError> + Send + 'static,
    ) -> Result<T, KvError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(err)?
    }

    /// Runs `f` on the store's table inside one write transaction, committed when it returns Ok.
    async fn write<T: Send + 'static>(
        &self,
        store: &str,
        f: impl FnOnce(&mut redb::Table<&'static str, &'static [u8]>) -> Result<T, KvError> + Send + 'static,
    ) -> Result<T, KvError> {
        let store = store.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(err)?;
            let out = {
                let mut t = tx.open_table(table(&store)).map_err(err)?;
                f(&mut t)?
            };
            tx.commit().map_err(err)?;
            Ok(out)
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
        Box::pin(self.write(store, move |t| {
            t.insert(key.as_str(), value.as_slice()).map_err(err)?;
            Ok(())
        }))
    }

    fn delete<'a>(&'a self, store: &'a str, key: &'a str) -> BoxFuture<'a, Result<(), KvError>> {
        let key = key.to_owned();
        Box::pin(self.write(store, move |t| {
            t.remove(key.as_str()).map_err(err)?;
            Ok(())
        }))
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

    fn increment<'a>(&'a self, store: &'a str, key: &'a str, delta: u64) -> BoxFuture<'a, Result<u64, KvError>> {
        let (store_name, key) = (store.to_owned(), key.to_owned());
        Box::pin(self.write(store, move |t| {
            let current = {
                let v = t.get(key.as_str()).map_err(err)?;
                parse_counter(&store_name, &key, v.as_ref().map(|v| v.value()))?
            };
            let next = current
                .checked_add(delta)
                .ok_or_else(|| KvError(format!("{store_name}/{key}: the counter would overflow")))?;
            t.insert(key.as_str(), next.to_string().as_bytes()).map_err(err)?;
            Ok(next)
        }))
    }

    fn set_many<'a>(&'a self, store: &'a str, pairs: &'a [(String, Vec<u8>)]) -> BoxFuture<'a, Result<(), KvError>> {
        let pairs = pairs.to_vec();
        Box::pin(self.write(store, move |t| {
            for (k, v) in &pairs {
                t.insert(k.as_str(), v.as_slice()).map_err(err)?;
            }
            Ok(())
        }))
    }

    fn delete_many<'a>(&'a self, store: &'a str, keys: &'a [String]) -> BoxFuture<'a, Result<(), KvError>> {
        let keys = keys.to_vec();
        Box::pin(self.write(store, move |t| {
            for k in &keys {
                t.remove(k.as_str()).map_err(err)?;
            }
            Ok(())
        }))
    }

    fn get_many<'a>(
        &'a self,
        store: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>, KvError>> {
        let keys = keys.to_vec();
        let n = keys.len();
        Box::pin(self.read(store, vec![None; n], move |t| {
            keys.iter().map(|k| Ok(t.get(k.as_str()).map_err(err)?.map(|v| v.value().to_vec()))).collect()
        }))
    }
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
}
