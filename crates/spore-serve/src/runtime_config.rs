//! Where key-value stores live: a `runtime-config.toml` as Spin writes it.
//!
//! ```toml
//! [key_value_store.default]          # the embedded store (redb), in the data dir
//! type = "spore"                     # "spin" is read as "spore"
//!
//! [key_value_store.cache]
//! type = "redis"
//! url = "redis://127.0.0.1:6379"
//!
//! [key_value_store.local]
//! type = "spore"
//! path = "state/local.redb"          # relative to the file's directory
//! ```
//!
//! The store `default` exists without any file (embedded). Keys Spore does not read are
//! reported as warnings, one per key, never silently dropped.

use spore_kv::{Embedded, Redis};
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

/// Builds the stores from `file` (if any); embedded stores without a path share
/// `default_db`.
pub fn load(file: Option<&Path>, default_db: &Path) -> Result<RuntimeConfig, String> {
    let mut warnings = Vec::new();
    let mut declared: Vec<(String, toml::Table)> = Vec::new();
    let mut base = PathBuf::from(".");
    if let Some(file) = file {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let doc: toml::Table = text.parse().map_err(|e| format!("{}: {e}", file.display()))?;
        base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        for (key, value) in doc {
            match (key.as_str(), value) {
                ("key_value_store", toml::Value::Table(stores)) => {
                    for (name, table) in stores {
                        match table {
                            toml::Value::Table(t) => declared.push((name, t)),
                            _ => return Err(format!("{}: [key_value_store.{name}] must be a table", file.display())),
                        }
                    }
                }
                (other, _) => {
                    warnings.push(format!("{}: [{other}] is not supported by Spore; ignored", file.display()))
                }
            }
        }
    }
    if !declared.iter().any(|(n, _)| n == "default") {
        declared.push(("default".into(), toml::Table::new()));
    }
    let mut embedded: HashMap<PathBuf, Embedded> = HashMap::new();
    let mut stores = KvStores::default();
    for (name, table) in declared {
        let kind = table.get("type").and_then(|v| v.as_str()).unwrap_or("spore");
        for key in table.keys().filter(|k| !["type", "path", "url"].contains(&k.as_str())) {
            warnings.push(format!("[key_value_store.{name}] {key} is not supported by Spore; ignored"));
        }
        match kind {
            "spore" | "spin" => {
                let path = match table.get("path").and_then(|v| v.as_str()) {
                    Some(p) => base.join(p),
                    None => default_db.to_path_buf(),
                };
                if kind == "spin" && table.contains_key("path") {
                    warnings.push(format!(
                        "[key_value_store.{name}] path {} is used as a Spore (redb) file; Spin's SQLite files are not read",
                        path.display()
                    ));
                }
                // Opened on first use (see spore_kv::Embedded): a host whose apps use no
                // store never takes the file's lock, and a bad file fails its store only.
                let db = embedded.entry(path.clone()).or_insert_with(|| Embedded::at(&path)).clone();
                stores.insert(&name, Arc::new(db));
            }
            "redis" => {
                let url = table.get("url").and_then(|v| v.as_str()).ok_or_else(|| {
                    format!("[key_value_store.{name}] type = \"redis\" needs url = \"redis://HOST:PORT\"")
                })?;
                stores.insert(&name, Arc::new(Redis::new(url).map_err(|e| format!("[key_value_store.{name}]: {e}"))?));
            }
            other => {
                return Err(format!(
                    "[key_value_store.{name}] type = {other:?} is not supported; Spore offers \"spore\" (embedded) and \"redis\""
                ));
            }
        }
    }
    Ok(RuntimeConfig { stores, warnings })
}
