//! `wasi:keyvalue@0.2.0-draft2` (store, atomics with compare-and-swap, batch): the name every
//! spin-sdk 5 world includes and Spin 3 serves, so apps built with SDKs that import the whole
//! world (componentize-js, …) link. The same stores, grants and namespaces as 0.2.0-draft
//! ([`crate::kv`]); what differs is the shape: string cursors, signed counters, and a `cas`
//! handle.
//!
//! A `cas` handle remembers the value its key held when it was made (or when its last swap
//! failed); `swap` writes only if the key still holds that value ([`spore_kv::Backend::swap_if`], atomic
//! in each backend) and otherwise answers a fresh handle, as the interface asks. The values
//! handles remember are host memory, so a sandbox's open handles may hold at most
//! [`CAS_HELD_MAX`] bytes between them; past that `new` is refused with the interface's
//! error.

use crate::bindings::wasi::keyvalue0_2_0_draft2::{atomics, batch, store};
use crate::kv::{Bucket, HasKv, KvView, Refused, charged};
use spore_kv::KvError;
use std::sync::atomic::Ordering;
use wasmtime::component::Resource;

/// The most the values remembered by one sandbox's open `cas` handles may hold together.
pub(crate) const CAS_HELD_MAX: usize = spore_kv::MAX_BATCH_BYTES;

/// A compare-and-swap in progress: the key, and the value it held when last read.
pub struct Cas {
    bucket: Bucket,
    key: String,
    seen: Option<Vec<u8>>,
}

impl Cas {
    /// The host memory this handle holds on the sandbox's account.
    fn held(&self) -> usize {
        self.key.len() + self.seen.as_ref().map_or(0, Vec::len)
    }
}

/// Links the three interfaces.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasKv>(linker, view)?;
    atomics::add_to_linker::<T, HasKv>(linker, view)?;
    batch::add_to_linker::<T, HasKv>(linker, view)?;
    Ok(())
}

fn other(e: KvError) -> store::Error {
    store::Error::Other(e.0)
}

impl KvView<'_> {
    /// Reads `key` into a new handle, on the sandbox's account (refused past [`CAS_HELD_MAX`]).
    async fn read_cas(&mut self, bucket: Bucket, key: String) -> wasmtime::Result<Result<Resource<Cas>, store::Error>> {
        let seen = match charged(self.meter, bucket.backend.get(&bucket.name, &key)).await {
            Ok(seen) => seen,
            Err(e) => return Ok(Err(other(e))),
        };
        let cas = Cas { bucket, key, seen };
        let held = self.grant.cas_held.fetch_add(cas.held(), Ordering::Relaxed) + cas.held();
        if held > CAS_HELD_MAX {
            self.grant.cas_held.fetch_sub(cas.held(), Ordering::Relaxed);
            return Ok(Err(store::Error::Other(format!(
                "this sandbox's open compare-and-swap handles would hold {held} bytes, over {CAS_HELD_MAX}: swap or drop some first"
            ))));
        }
        Ok(Ok(self.table.push(cas)?))
    }

    /// Takes a handle out of the table, off the sandbox's account.
    fn take_cas(&mut self, cas: Resource<Cas>) -> wasmtime::Result<Cas> {
        let cas = self.table.delete(cas)?;
        self.grant.cas_held.fetch_sub(cas.held(), Ordering::Relaxed);
        Ok(cas)
    }
}

impl store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> wasmtime::Result<Result<Resource<Bucket>, store::Error>> {
        match self.grant.open(&identifier) {
            Ok(bucket) => Ok(Ok(self.table.push(bucket)?)),
            Err(Refused::Denied) => Ok(Err(store::Error::AccessDenied)),
            Err(Refused::NoSuchStore) => Ok(Err(store::Error::NoSuchStore)),
        }
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let (name, b) = self.bucket(&bucket)?;
        Ok(charged(self.meter, b.get(&name, &key)).await.map_err(other))
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let (name, b) = self.bucket(&bucket)?;
        Ok(charged(self.meter, b.set(&name, &key, &value)).await.map_err(other))
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> wasmtime::Result<Result<(), store::Error>> {
        let (name, b) = self.bucket(&bucket)?;
        Ok(charged(self.meter, b.delete(&name, &key)).await.map_err(other))
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> wasmtime::Result<Result<bool, store::Error>> {
        let (name, b) = self.bucket(&bucket)?;
        Ok(charged(self.meter, b.exists(&name, &key)).await.map_err(other))
    }

    /// The backend's cursor is a number; the interface's is text, so it is that number
    /// written out, and text that is not one is refused rather than read as the first page.
    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        let (name, b) = self.bucket(&bucket)?;
        let cursor = match cursor.map(|c| c.parse::<u64>().map_err(|_| c)).transpose() {
            Ok(cursor) => cursor,
            Err(text) => {
                return Ok(Err(store::Error::Other(format!(
                    "list-keys cursor \"{}\" is not one list-keys answered; start again with none",
                    spore_types::shown(&text, 64)
                ))));
            }
        };
        Ok(charged(self.meter, b.list(&name, cursor))
            .await
            .map(|p| store::KeyResponse { keys: p.keys, cursor: p.cursor.map(|c| c.to_string()) })
            .map_err(other))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, store::Error>> {
        let (name, b) = self.bucket(&bucket)?;
        Ok(charged(self.meter, b.increment(&name, &key, delta)).await.map_err(other))
    }

    async fn swap(&mut self, cas: Resource<Cas>, value: Vec<u8>) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let Cas { bucket, key, seen } = self.take_cas(cas)?;
        let swapped = charged(self.meter, bucket.backend.swap_if(&bucket.name, &key, seen.as_deref(), &value)).await;
        match swapped {
            Ok(true) => Ok(Ok(())),
            Ok(false) => Ok(match self.read_cas(bucket, key).await? {
                Ok(fresh) => Err(atomics::CasError::CasFailed(fresh)),
                Err(e) => Err(atomics::CasError::StoreError(e)),
            }),
            Err(e) => Ok(Err(atomics::CasError::StoreError(other(e)))),
        }
    }
}

impl atomics::HostCas for KvView<'_> {
    async fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, store::Error>> {
        let bucket = self.table.get(&bucket)?.clone();
        self.read_cas(bucket, key).await
    }

    async fn current(&mut self, cas: Resource<Cas>) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        Ok(Ok(self.table.get(&cas)?.seen.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.take_cas(cas)?;
        Ok(())
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<(String, Option<Vec<u8>>)>, store::Error>> {
        let (name, b) = self.bucket(&bucket)?;
        Ok(charged(self.meter, b.get_many(&name, &keys))
            .await
            .map(|values| keys.into_iter().zip(values).collect())
            .map_err(other))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let (name, b) = self.bucket(&bucket)?;
        Ok(charged(self.meter, b.set_many(&name, &key_values)).await.map_err(other))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let (name, b) = self.bucket(&bucket)?;
        Ok(charged(self.meter, b.delete_many(&name, &keys)).await.map_err(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{KvGrant, KvStores};
    use spore_kv::Backend;
    use std::sync::Arc;
    use wasmtime::component::ResourceTable;

    /// A guest that makes handle after handle over a large value would have the host hold a
    /// copy of it in each, past the guest's memory limit; the copies are bounded together.
    #[tokio::test]
    async fn open_cas_handles_hold_a_bounded_amount_of_host_memory() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(spore_kv::Embedded::at(&dir.path().join("kv.redb")));
        backend.set("default", "big", &vec![7u8; 1 << 20]).await.unwrap();
        let mut stores = KvStores::default();
        stores.insert("default", backend);
        let grant = KvGrant {
            stores: Arc::new(stores),
            granted: vec!["default".to_owned()].into(),
            namespace: None,
            cas_held: Default::default(),
        };
        let meter = Arc::default();
        let mut table = ResourceTable::new();
        let mut view = KvView { table: &mut table, grant: &grant, meter: &meter };
        let bucket = store::Host::open(&mut view, "default".into()).await.unwrap().unwrap();
        let borrow = || Resource::<Bucket>::new_borrow(bucket.rep());

        let mut handles = Vec::new();
        let refusal = loop {
            match atomics::HostCas::new(&mut view, borrow(), "big".into()).await.unwrap() {
                Ok(cas) if handles.len() < 100 => handles.push(cas),
                Ok(_) => panic!("100 handles of a 1 MiB value were made"),
                Err(store::Error::Other(why)) => break why,
                Err(e) => panic!("{e:?}"),
            }
        };
        assert_eq!(handles.len(), 15, "15 MiB and their keys fit in 16 MiB, 16 do not");
        assert!(refusal.contains("over 16777216: swap or drop some first"), "{refusal}");
        // A dropped handle, a swap (consuming its handle) and a failed swap's fresh handle
        // are all counted.
        atomics::HostCas::drop(&mut view, handles.pop().unwrap()).await.unwrap();
        handles.push(atomics::HostCas::new(&mut view, borrow(), "big".into()).await.unwrap().unwrap());
        let swapped = atomics::Host::swap(&mut view, handles.pop().unwrap(), b"small".to_vec()).await.unwrap();
        assert!(swapped.is_ok());
        let stale = handles.pop().unwrap();
        let failed = atomics::Host::swap(&mut view, stale, b"x".to_vec()).await.unwrap();
        let Err(atomics::CasError::CasFailed(fresh)) = failed else { panic!("a stale swap went through") };
        assert_eq!(atomics::HostCas::current(&mut view, fresh).await.unwrap().unwrap().as_deref(), Some(&b"small"[..]));
        assert_eq!(grant.cas_held.load(Ordering::Relaxed), 13 * ((1 << 20) + 3) + 3 + 5);
    }
}
