//! Spin's key-value interface on the host's [`spore_kv::Backend`]s: Spin 2's
//! (`fermyon:spin/key-value@2.0.0`, spin-sdk 5) and Spin 3's (`spin:key-value/key-value@3.0.0`,
//! spin-sdk 7, whose functions are WIT `async`). Both open stores through the same
//! [`KvGrant`](crate::kv::KvGrant) as wasi:keyvalue — the same labels, grants and per-app
//! namespaces — so an app sees the same store whichever interface it uses.

use crate::bindings::fermyon::spin::key_value as v2;
use crate::bindings::spin::key_value::key_value as v3;
use crate::kv::{Bucket, HasKv, KvView, Refused, charged};
use spore_kv::{Backend, KvError};
use std::sync::Arc;
use wasmtime::component::{Accessor, FutureReader, Resource, StreamReader};

/// Links both versions.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    v2::add_to_linker::<T, HasKv>(linker, view)?;
    v3::add_to_linker::<T, HasKv>(linker, view)?;
    Ok(())
}

/// Every key of a store, page by page — Spin's `get-keys` has no cursor, so the host gathers
/// them all before the guest sees one; refused past [`spore_kv::MAX_BATCH_BYTES`] of keys, as
/// a batch read is, rather than holding a store of millions of keys in host memory.
async fn all_keys(backend: &dyn Backend, name: &str) -> Result<Vec<String>, KvError> {
    let (mut keys, mut cursor, mut held) = (Vec::new(), None, 0usize);
    loop {
        let page = backend.list(name, cursor).await?;
        held = page.keys.iter().fold(held, |n, k| n.saturating_add(k.len()));
        if held > spore_kv::MAX_BATCH_BYTES {
            return Err(KvError(format!(
                "the store's keys take more than {} bytes, more than get-keys answers at once: list them page by page with wasi:keyvalue's list-keys",
                spore_kv::MAX_BATCH_BYTES
            )));
        }
        keys.extend(page.keys);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(keys),
        }
    }
}

impl KvView<'_> {
    /// Opens `label` into the guest's table: `Ok(Err(_))` for what the guest is told.
    fn open_store<E>(&mut self, label: &str, err: fn(Refused) -> E, full: E) -> Result<Resource<Bucket>, E> {
        let bucket = self.grant.open(label).map_err(err)?;
        self.table.push(bucket).map_err(|_| full)
    }
}

fn refused_v2(r: Refused) -> v2::Error {
    match r {
        Refused::Denied => v2::Error::AccessDenied,
        Refused::NoSuchStore => v2::Error::NoSuchStore,
    }
}

fn refused_v3(r: Refused) -> v3::Error {
    match r {
        Refused::Denied => v3::Error::AccessDenied,
        Refused::NoSuchStore => v3::Error::NoSuchStore,
    }
}

impl v2::Host for KvView<'_> {}

impl v2::HostStore for KvView<'_> {
    async fn open(&mut self, label: String) -> wasmtime::Result<Result<Resource<Bucket>, v2::Error>> {
        Ok(self.open_store(&label, refused_v2, v2::Error::StoreTableFull))
    }

    async fn get(
        &mut self,
        store: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, v2::Error>> {
        let (name, b) = self.bucket(&store)?;
        Ok(charged(self.meter, b.get(&name, &key)).await.map_err(|e| v2::Error::Other(e.0)))
    }

    async fn set(
        &mut self,
        store: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), v2::Error>> {
        let (name, b) = self.bucket(&store)?;
        Ok(charged(self.meter, b.set(&name, &key, &value)).await.map_err(|e| v2::Error::Other(e.0)))
    }

    async fn delete(&mut self, store: Resource<Bucket>, key: String) -> wasmtime::Result<Result<(), v2::Error>> {
        let (name, b) = self.bucket(&store)?;
        Ok(charged(self.meter, b.delete(&name, &key)).await.map_err(|e| v2::Error::Other(e.0)))
    }

    async fn exists(&mut self, store: Resource<Bucket>, key: String) -> wasmtime::Result<Result<bool, v2::Error>> {
        let (name, b) = self.bucket(&store)?;
        Ok(charged(self.meter, b.exists(&name, &key)).await.map_err(|e| v2::Error::Other(e.0)))
    }

    async fn get_keys(&mut self, store: Resource<Bucket>) -> wasmtime::Result<Result<Vec<String>, v2::Error>> {
        let (name, b) = self.bucket(&store)?;
        Ok(charged(self.meter, all_keys(&*b, &name)).await.map_err(|e| v2::Error::Other(e.0)))
    }

    async fn drop(&mut self, store: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

/// A Spin 3 call's store, backend and meter, taken from the view so the backend is awaited
/// without holding the store.
fn taken<U>(
    accessor: &Accessor<U, HasKv>,
    store: &Resource<Bucket>,
) -> wasmtime::Result<(String, Arc<dyn Backend>, Arc<crate::Meter>)> {
    accessor.with(|mut access| {
        let view = access.get();
        let (name, backend) = view.bucket(store)?;
        Ok((name, backend, view.meter.clone()))
    })
}

impl v3::Host for KvView<'_> {}

impl v3::HostStore for KvView<'_> {
    async fn drop(&mut self, store: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl<U: 'static> v3::HostStoreWithStore<U> for HasKv {
    async fn open(
        accessor: &Accessor<U, Self>,
        label: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, v3::Error>> {
        Ok(accessor.with(|mut access| access.get().open_store(&label, refused_v3, v3::Error::StoreTableFull)))
    }

    async fn get(
        accessor: &Accessor<U, Self>,
        store: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, v3::Error>> {
        let (name, b, meter) = taken(accessor, &store)?;
        Ok(charged(&meter, b.get(&name, &key)).await.map_err(|e| v3::Error::Other(e.0)))
    }

    async fn set(
        accessor: &Accessor<U, Self>,
        store: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), v3::Error>> {
        let (name, b, meter) = taken(accessor, &store)?;
        Ok(charged(&meter, b.set(&name, &key, &value)).await.map_err(|e| v3::Error::Other(e.0)))
    }

    async fn delete(
        accessor: &Accessor<U, Self>,
        store: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), v3::Error>> {
        let (name, b, meter) = taken(accessor, &store)?;
        Ok(charged(&meter, b.delete(&name, &key)).await.map_err(|e| v3::Error::Other(e.0)))
    }

    async fn exists(
        accessor: &Accessor<U, Self>,
        store: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, v3::Error>> {
        let (name, b, meter) = taken(accessor, &store)?;
        Ok(charged(&meter, b.exists(&name, &key)).await.map_err(|e| v3::Error::Other(e.0)))
    }

    /// The keys as a stream, and the listing's outcome as its future (a failed listing is an
    /// empty stream and the error).
    async fn get_keys(
        accessor: &Accessor<U, Self>,
        store: Resource<Bucket>,
    ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), v3::Error>>)> {
        let (name, b, meter) = taken(accessor, &store)?;
        let listed = charged(&meter, all_keys(&*b, &name)).await;
        let (keys, outcome) = match listed {
            Ok(keys) => (keys, Ok(())),
            Err(e) => (Vec::new(), Err(v3::Error::Other(e.0))),
        };
        accessor.with(|mut access| {
            let keys = StreamReader::new(&mut access, keys)?;
            let outcome = FutureReader::new(&mut access, async move { Ok::<_, wasmtime::Error>(outcome) })?;
            Ok((keys, outcome))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spin's `get-keys` answers every key at once: a store of many long keys is refused
    /// rather than gathered whole in host memory.
    #[tokio::test]
    async fn get_keys_gathers_a_bounded_amount() {
        let dir = tempfile::tempdir().unwrap();
        let kv = spore_kv::Embedded::at(&dir.path().join("kv.redb"));
        let pairs: Vec<(String, Vec<u8>)> =
            (0..4200).map(|i| (format!("{i:04}{}", "k".repeat(3996)), Vec::new())).collect();
        kv.set_many("s", &pairs[..4000]).await.unwrap();
        assert_eq!(all_keys(&kv, "s").await.unwrap().len(), 4000, "16 000 000 bytes of keys: answered");
        kv.set_many("s", &pairs[4000..]).await.unwrap();
        let Err(KvError(err)) = all_keys(&kv, "s").await else { panic!("16 800 000 bytes of keys were gathered") };
        assert!(err.contains("more than 16777216 bytes") && err.contains("list-keys"), "{err}");
    }
}
