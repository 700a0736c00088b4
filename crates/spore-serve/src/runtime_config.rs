//! The stores a host offers, opened from the runtime config's declarations
//! ([`spore_app::runtime_config`]). Embedded stores that name the same file share one handle
//! (one lock); each keeps its own quota.

use spore_app::runtime_config::{self as declared, Backend};
use spore_kv::{Embedded, Quota, Redis};
use spore_sandbox::KvStores;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The stores a host offers, and what it could not read.
pub struct RuntimeConfig {
    /// Stores by name.
    pub stores: KvStores,
    /// Keys that were ignored, named.
    pub warnings: Vec<String>,
}

/// Why the host's stores could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StoresError {
    /// The runtime config cannot be read or says something Spore does not do.
    #[error(transparent)]
    Config(#[from] declared::RuntimeConfigError),
    /// A Redis store's URL is not one.
    #[error("[key_value_store.{store}]: {error}")]
    Redis {
        /// The store's label.
        store: String,
        /// Why (in the message, so not also a cause: it would print twice).
        error: spore_kv::KvError,
    },
}

/// Opens the stores `file` declares (with none, the embedded `default`); embedded stores
/// without a path share the data dir's `kv/default.redb`, and SQLite databases without one
/// live under its `sqlite/`.
pub fn load(file: Option<&Path>, data_dir: &Path) -> Result<RuntimeConfig, StoresError> {
    let default_db = data_dir.join("kv/default.redb");
    let declared = match file {
        Some(file) => declared::read(file)?,
        None => declared::none(),
    };
    let mut files: HashMap<PathBuf, Embedded> = HashMap::new();
    let mut stores = KvStores::default();
    for store in declared.stores {
        let quota = Quota { max_keys: store.max_keys, max_bytes: Some(store.max_bytes) };
        match store.backend {
            Backend::Embedded(path) => {
                let path = path.unwrap_or_else(|| default_db.clone());
                // Opened on first use (see spore_kv::Embedded): a host whose apps use no
                // store never takes the file's lock, and a bad file fails its store only.
                let file = files.entry(path.clone()).or_insert_with(|| Embedded::at(&path));
                stores.insert(&store.name, Arc::new(file.with_quota(quota)));
            }
            Backend::Redis { url } => {
                let redis =
                    Redis::new(&url).map_err(|error| StoresError::Redis { store: store.name.clone(), error })?;
                stores.insert(&store.name, Arc::new(redis.with_quota(quota)));
            }
        }
    }
    // SQLite files are opened per guest call, so nothing is opened here.
    let mut databases = spore_sandbox::Databases::new(&data_dir.join("sqlite"));
    for db in declared.databases {
        databases.insert(&db.name, db.path, db.max_bytes);
    }
    stores.set_databases(databases);
    Ok(RuntimeConfig { stores, warnings: declared.warnings })
}
