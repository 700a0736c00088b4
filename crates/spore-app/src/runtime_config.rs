//! Where key-value stores live and how much they may hold: a `runtime-config.toml` as Spin
//! writes it, read into plain declarations (the host opens them).
//!
//! ```toml
//! [key_value_store.default]          # the embedded store (redb), in the data dir
//! type = "spore"                     # "spin" is read as "spore"
//! max_keys = 10000                   # per app: a write past it fails, nothing is lost
//! max_bytes = "64M"                  # keys and values together, per app (default 256M)
//!
//! [key_value_store.cache]
//! type = "redis"
//! url = "redis://127.0.0.1:6379"
//!
//! [key_value_store.local]
//! type = "spore"
//! path = "state/local.redb"          # relative to the file's directory
//!
//! [sqlite_database.default]          # Spin's SQLite (spin:sqlite), in the data dir
//! max_bytes = "256M"                 # per app's database: past it, database-full
//!
//! [sqlite_database.reports]
//! type = "spin"
//! path = "state/reports.db"          # relative to the file's directory; one file per app
//! ```
//!
//! The store and the database `default` exist without any file. Keys Spore does not read are
//! reported as warnings, one per key, never silently dropped.

use std::path::{Path, PathBuf};

/// A host's stores, declared, and what it could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// Stores in file order; `default` last when the file does not declare it.
    pub stores: Vec<Store>,
    /// SQLite databases in file order (`default` is the host's even when not declared).
    pub databases: Vec<Database>,
    /// Keys that were ignored, named.
    pub warnings: Vec<String>,
}

/// One `[key_value_store.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// The label apps ask for.
    pub name: String,
    /// Where its data lives.
    pub backend: Backend,
    /// At most this many keys in one app's store.
    pub max_keys: Option<u64>,
    /// At most this many bytes (keys plus values) in one app's store: `max_bytes`, else
    /// [`DEFAULT_STORE_MAX_BYTES`].
    pub max_bytes: u64,
}

/// How much one app's store holds when the runtime config does not say: as much as its SQLite
/// database may, so that a guest cannot fill the host's disk through a store nobody sized.
pub const DEFAULT_STORE_MAX_BYTES: u64 = 256 << 20;

/// One `[sqlite_database.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    /// The label apps ask for.
    pub name: String,
    /// Its file (resolved against the config file's directory), or the host's default place.
    pub path: Option<PathBuf>,
    /// At most this many bytes in one app's database.
    pub max_bytes: Option<u64>,
}

/// Where a store's data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A redb file: the given one (resolved against the config file's directory), or the
    /// host's default file when `None`.
    Embedded(Option<PathBuf>),
    /// A Redis server.
    Redis {
        /// `redis://HOST:PORT[/DB]`.
        url: String,
    },
}

/// A runtime config that cannot be used; the message names the file, the store and the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuntimeConfigError(String);

/// Reads `file`.
pub fn read(file: &Path) -> Result<Declared, RuntimeConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| RuntimeConfigError(format!("{}: {e}", file.display())))?;
    parse(&text, &file.display().to_string(), file.parent().unwrap_or(Path::new("")))
}

/// The declarations of no file at all: the embedded `default` store.
pub fn none() -> Declared {
    Declared { stores: vec![default_store()], databases: Vec::new(), warnings: Vec::new() }
}

fn default_store() -> Store {
    Store {
        name: "default".into(),
        backend: Backend::Embedded(None),
        max_keys: None,
        max_bytes: DEFAULT_STORE_MAX_BYTES,
    }
}

/// Reads a runtime config's `text`, shown in messages as `shown`, whose relative paths are
/// under `base`.
pub fn parse(text: &str, shown: &str, base: &Path) -> Result<Declared, RuntimeConfigError> {
    declarations(text, shown, base).map_err(RuntimeConfigError)
}

fn declarations(text: &str, shown: &str, base: &Path) -> Result<Declared, String> {
    let doc: toml::Table = text.parse().map_err(|e| format!("{shown}: {e}"))?;
    let mut warnings = Vec::new();
    let mut stores = Vec::new();
    let mut databases = Vec::new();
    for (key, value) in doc {
        match (key.as_str(), value) {
            ("key_value_store", toml::Value::Table(declared)) => {
                for (name, table) in declared {
                    let toml::Value::Table(table) = table else {
                        return Err(format!("{shown}: [key_value_store.{name}] must be a table"));
                    };
                    stores.push(store(shown, base, name, table, &mut warnings)?);
                }
            }
            ("key_value_store", _) => return Err(format!("{shown}: key_value_store must be a table of stores")),
            ("sqlite_database", toml::Value::Table(declared)) => {
                for (name, table) in declared {
                    let toml::Value::Table(table) = table else {
                        return Err(format!("{shown}: [sqlite_database.{name}] must be a table"));
                    };
                    databases.push(database(shown, base, name, table, &mut warnings)?);
                }
            }
            ("sqlite_database", _) => return Err(format!("{shown}: sqlite_database must be a table of databases")),
            (other, _) => warnings.push(format!("{shown}: [{other}] is not supported by Spore; ignored")),
        }
    }
    if !stores.iter().any(|s| s.name == "default") {
        stores.push(default_store());
    }
    Ok(Declared { stores, databases, warnings })
}

fn database(
    shown: &str,
    base: &Path,
    name: String,
    table: toml::Table,
    warnings: &mut Vec<String>,
) -> Result<Database, String> {
    let here = format!("{shown}: [sqlite_database.{name}]");
    for key in table.keys().filter(|k| !["type", "path", "max_bytes"].contains(&k.as_str())) {
        warnings.push(format!("{here} {key} is not supported by Spore; ignored"));
    }
    match table.get("type") {
        None => {}
        Some(toml::Value::String(t)) if t == "spin" || t == "spore" => {}
        Some(other) => {
            return Err(format!(
                "{here} type = {other} is not supported; Spore offers \"spin\" (an embedded SQLite file; libSQL is not offered)"
            ));
        }
    }
    let path = match table.get("path") {
        None => None,
        Some(toml::Value::String(p)) => Some(base.join(p)),
        Some(other) => return Err(format!("{here} path must be a string, not {}", other.type_str())),
    };
    Ok(Database { name, path, max_bytes: max_bytes(&here, table.get("max_bytes"))? })
}

/// A `max_bytes` value: a whole number of bytes, or a size such as "64M".
fn max_bytes(here: &str, value: Option<&toml::Value>) -> Result<Option<u64>, String> {
    match value {
        None => Ok(None),
        Some(toml::Value::Integer(n)) if *n > 0 => Ok(Some(*n as u64)),
        Some(toml::Value::String(s)) => {
            Ok(Some(spore_types::parse_size(s).map_err(|e| format!("{here} max_bytes: {e}"))?))
        }
        Some(other) => Err(format!("{here} max_bytes must be a size such as \"64M\", not {other}")),
    }
}

fn store(
    shown: &str,
    base: &Path,
    name: String,
    table: toml::Table,
    warnings: &mut Vec<String>,
) -> Result<Store, String> {
    let here = format!("{shown}: [key_value_store.{name}]");
    let text = |key: &str| -> Result<Option<&str>, String> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!("{here} {key} must be a string, not {}", other.type_str())),
        }
    };
    let kind = text("type")?.unwrap_or("spore");
    for key in table.keys().filter(|k| !["type", "path", "url", "max_keys", "max_bytes"].contains(&k.as_str())) {
        warnings.push(format!("{here} {key} is not supported by Spore; ignored"));
    }
    let backend = match kind {
        "spore" | "spin" => {
            let path = text("path")?.map(|p| base.join(p));
            if let (Some(path), "spin") = (&path, kind) {
                warnings.push(format!(
                    "{here} path {} is used as a Spore (redb) file; Spin's SQLite files are not read",
                    path.display()
                ));
            }
            Backend::Embedded(path)
        }
        "redis" => {
            let url =
                text("url")?.ok_or_else(|| format!("{here} type = \"redis\" needs url = \"redis://HOST:PORT\""))?;
            Backend::Redis { url: url.to_owned() }
        }
        other => {
            return Err(format!(
                "{here} type = {other:?} is not supported; Spore offers \"spore\" (embedded) and \"redis\""
            ));
        }
    };
    let max_keys = match table.get("max_keys") {
        None => None,
        Some(toml::Value::Integer(n)) if *n > 0 => Some(*n as u64),
        Some(other) => return Err(format!("{here} max_keys must be a positive whole number, not {other}")),
    };
    let max_bytes = max_bytes(&here, table.get("max_bytes"))?.unwrap_or(DEFAULT_STORE_MAX_BYTES);
    Ok(Store { name, backend, max_keys, max_bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_backends_and_quotas_are_read_and_the_rest_is_named() {
        let text = r#"
            [key_value_store.default]
            max_keys = 100
            max_bytes = "1M"
            [key_value_store.cache]
            type = "redis"
            url = "redis://127.0.0.1:6379"
            colour = "blue"
            [key_value_store.local]
            type = "spin"
            path = "state/local.db"
            [sqlite_database.default]
            type = "spin"
            [sqlite_database.reports]
            path = "state/reports.db"
            max_bytes = "1M"
            shape = "round"
        "#;
        let d = parse(text, "rc.toml", Path::new("app")).unwrap();
        let names: Vec<&str> = d.stores.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["cache", "default", "local"], "no second default");
        let default = &d.stores[1];
        assert_eq!((default.max_keys, default.max_bytes), (Some(100), 1 << 20));
        assert_eq!((d.stores[0].max_keys, d.stores[0].max_bytes), (None, 256 << 20), "sized even when not said");
        assert_eq!(default.backend, Backend::Embedded(None));
        assert_eq!(d.stores[0].backend, Backend::Redis { url: "redis://127.0.0.1:6379".into() });
        assert_eq!(d.stores[2].backend, Backend::Embedded(Some(PathBuf::from("app/state/local.db"))));
        let warnings = d.warnings.join("\n");
        let reports =
            Database { name: "reports".into(), path: Some("app/state/reports.db".into()), max_bytes: Some(1 << 20) };
        assert_eq!(d.databases[1], reports);
        for named in
            ["[key_value_store.cache] colour", "[sqlite_database.reports] shape", "Spin's SQLite files are not read"]
        {
            assert!(warnings.contains(named), "{named}: {warnings}");
        }
        assert_eq!(none().stores, [default_store()]);
        assert_eq!(none().stores[0].max_bytes, 256 << 20, "the store of no file at all is sized too");
    }

    #[test]
    fn bad_declarations_name_the_store_and_the_key() {
        for (text, named) in [
            ("[key_value_store.c]\ntype = \"redis\"\n", "[key_value_store.c] type = \"redis\" needs url"),
            ("[key_value_store.c]\ntype = \"mysql\"\n", "[key_value_store.c] type = \"mysql\" is not supported"),
            ("[key_value_store.c]\ntype = 3\n", "[key_value_store.c] type must be a string"),
            ("[key_value_store.c]\nmax_keys = 0\n", "[key_value_store.c] max_keys must be a positive"),
            ("[key_value_store.c]\nmax_bytes = \"lots\"\n", "[key_value_store.c] max_bytes: \"lots\" is not a size"),
            ("[key_value_store.c]\nmax_bytes = -1\n", "[key_value_store.c] max_bytes must be a size"),
            ("key_value_store = 1\n", "key_value_store must be a table"),
            ("[key_value_store]\nc = 1\n", "[key_value_store.c] must be a table"),
            ("[key_value_store.c\n", "rc.toml"),
            ("[sqlite_database.d]\ntype = \"libsql\"\n", "[sqlite_database.d] type = \"libsql\" is not supported"),
            ("[sqlite_database.d]\npath = 1\n", "[sqlite_database.d] path must be a string"),
            ("[sqlite_database.d]\nmax_bytes = 0\n", "[sqlite_database.d] max_bytes must be a size"),
            ("sqlite_database = 1\n", "sqlite_database must be a table"),
        ] {
            let err = parse(text, "rc.toml", Path::new(".")).unwrap_err().to_string();
            assert!(err.contains(named) && err.starts_with("rc.toml"), "{text}: {err}");
        }
    }
}
