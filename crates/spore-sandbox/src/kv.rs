//! `wasi:keyvalue` (0.2.0-draft: store, atomics, batch) for guests, over the host's
//! [`spore_kv::Backend`]s.
//!
//! A guest opens a store by name. It gets `access-denied` unless the sandbox's spec grants
//! that name (`key_value_stores`), and `no-such-store` when the host has no backend for it;
//! backend failures (Redis down) are the interface's `other(...)` error, never a trap.

use spore_kv::Backend;
use std::collections::HashMap;
use std::sync::Arc;
use wasmtime::component::{HasData, Resource, ResourceTable};

use crate::bindings::wasi::keyvalue0_2_0_draft::{atomics, batch, store};
use crate::limits::Meter;

/// The host's stores by name (shared by every sandbox of an engine): its key-value backends,
/// and its SQLite databases.
#[derive(Clone, Default)]
pub struct KvStores {
    backends: HashMap<String, Arc<dyn Backend>>,
    pub(crate) databases: Arc<crate::Databases>,
}

impl KvStores {
    /// Puts `name` on `backend`.
    pub fn insert(&mut self, name: &str, backend: Arc<dyn Backend>) {
        self.backends.insert(name.to_owned(), backend);
    }

    /// Puts the host's SQLite databases beside its key-value stores (none without it).
    pub fn set_databases(&mut self, databases: crate::Databases) {
        self.databases = Arc::new(databases);
    }

    /// Whether the host has a SQLite database by this label.
    pub fn has_database(&self, label: &str) -> bool {
        self.databases.has(label)
    }

    /// Whether the host has a store by this name.
    pub fn has(&self, name: &str) -> bool {
        self.backends.contains_key(name)
    }
}

impl std::fmt::Debug for KvStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.backends.keys()).finish()
    }
}

/// An open store, as the guest's resource (wasi:keyvalue's `bucket`, Spin's `store`).
#[derive(Clone)]
pub struct Bucket {
    /// The name the backend keeps it under ([`KvGrant::backend_name`]).
    pub(crate) name: String,
    pub(crate) backend: Arc<dyn Backend>,
}

/// Why a guest may not open a store; each interface has its own error case for both.
pub(crate) enum Refused {
    /// The sandbox's spec does not grant the label.
    Denied,
    /// Granted, but the host has no store by that name.
    NoSuchStore,
}

/// What one sandbox may reach: the host's stores, the names its spec grants, and whose they
/// are.
pub(crate) struct KvGrant {
    pub(crate) stores: Arc<KvStores>,
    pub(crate) granted: Arc<[String]>,
    pub(crate) namespace: Option<String>,
    /// Bytes the sandbox's open compare-and-swap handles hold ([`crate::kv_draft2`]).
    pub(crate) cas_held: std::sync::atomic::AtomicUsize,
}

impl KvGrant {
    /// The name the backend keeps the store `label` under: the label itself where one app has
    /// the host to itself, else `app:APP/LABEL` — so two apps' `default` are two stores.
    /// Labels are plain names ([`spore_spec::valid_store_label`]) and app names hold no `/`, so no two
    /// (app, label) pairs meet.
    fn backend_name(&self, label: &str) -> String {
        match &self.namespace {
            None => label.to_owned(),
            Some(app) => format!("app:{app}/{label}"),
        }
    }

    /// Opens the store `label` for the guest, or says why not — in the host's log as well,
    /// since the interfaces' errors carry no text.
    pub(crate) fn open(&self, label: &str) -> Result<Bucket, Refused> {
        if !self.granted.iter().any(|g| g == label) {
            let label = spore_types::shown(label, 64);
            tracing::warn!(
                "key-value: denied opening store \"{label}\": not granted to this sandbox (grant it with key_value_stores = [\"{label}\"])"
            );
            return Err(Refused::Denied);
        }
        // Granted, so a plain name the operator wrote: safe in a line as it is.
        let Some(backend) = self.stores.backends.get(label).cloned() else {
            tracing::warn!(
                "key-value: store {label:?} is granted but the host has no such store (configure it in runtime-config.toml [key_value_store.{label}])"
            );
            return Err(Refused::NoSuchStore);
        };
        Ok(Bucket { name: self.backend_name(label), backend })
    }
}

/// The view the bindings work on.
pub(crate) struct KvView<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) grant: &'a KvGrant,
    /// The sandbox's CPU meter: a store operation's work happens off the guest's thread (on
    /// the blocking pool, or in Redis), so its wall time is charged to the guest's CPU time —
    /// a guest looping over `set` spends its own budget, not the host's.
    pub(crate) meter: &'a Arc<Meter>,
}

pub(crate) struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

/// Links wasi:keyvalue's three interfaces.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasKv>(linker, view)?;
    atomics::add_to_linker::<T, HasKv>(linker, view)?;
    batch::add_to_linker::<T, HasKv>(linker, view)?;
    Ok(())
}

fn other(e: spore_kv::KvError) -> store::Error {
    store::Error::Other(e.0)
}

/// Awaits a store operation and charges its wall time to the sandbox's CPU time.
pub(crate) async fn charged<T>(meter: &Meter, op: impl Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let out = op.await;
    meter.charge(started.elapsed());
    out
}

impl KvView<'_> {
    /// The backend name and backend of an open store, cloned so the view is free while the
    /// backend is awaited.
    pub(crate) fn bucket(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<(String, Arc<dyn Backend>)> {
        let b = self.table.get(bucket)?;
        Ok((b.name.clone(), b.backend.clone()))
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

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        let (name, b) = self.bucket(&bucket)?;
        Ok(charged(self.meter, b.list(&name, cursor))
            .await
            .map(|p| store::KeyResponse { keys: p.keys, cursor: p.cursor })
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
        delta: u64,
    ) -> wasmtime::Result<Result<u64, store::Error>> {
        // Counters are signed (0.2.0-draft2's are); this version's are not, so a delta or a
        // count outside what both can say is the interface's error, not a wrapped number.
        let Ok(delta) = i64::try_from(delta) else {
            return Ok(Err(store::Error::Other(format!("{key}: delta {delta} is larger than a counter holds"))));
        };
        let (name, b) = self.bucket(&bucket)?;
        Ok(charged(self.meter, b.increment(&name, &key, delta)).await.map_err(other).and_then(|n| {
            u64::try_from(n).map_err(|_| store::Error::Other(format!("{key}: the counter is {n}, below zero")))
        }))
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, store::Error>> {
        let (name, b) = self.bucket(&bucket)?;
        Ok(charged(self.meter, b.get_many(&name, &keys))
            .await
            .map(|values| keys.into_iter().zip(values).map(|(k, v)| v.map(|v| (k, v))).collect())
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
