//! What a pod grants its guest beyond its files: key-value stores, SQLite databases, outbound
//! hosts, and where the stores' data lives — the pod's part of a Spin app's `spin.toml` and
//! `runtime-config.toml`, which a container has no other place for.
//!
//! ```toml
//! # /etc/spore/grants.toml, on a read-only volume (a ConfigMap or Secret)
//! key_value_stores = ["default"]
//! sqlite_databases = ["default"]
//! allowed_outbound_hosts = ["https://api.example.com"]
//! data_dir = "/data"           # a writable volume's mount path (emptyDir, PersistentVolumeClaim)
//! ```
//!
//! Beside it, `/etc/spore/runtime-config.toml` (Spin's format, as `spore serve` reads it) may
//! size the stores or put one on Redis.
//!
//! Grants are the deployer's, never the image's: an image's author could write any file into
//! it and any variable into its env (containerd merges the image's `Env` into the process's),
//! so both files are read only from a **read-only volume** of the pod — a file the image
//! carries at that path, or one on a writable volume the guest could have written, is refused
//! and the container does not start. The data dir is kept from the guest (not mounted for it),
//! so it cannot write its stores' files behind the quotas' back.

use crate::confine::View;
use anyhow::{anyhow, bail};
use serde::Deserialize;
use spore_sandbox::KvStores;
use std::path::{Path, PathBuf};

/// Where the deployer's files are looked for.
pub(crate) const DIR: &str = "/etc/spore";

/// The pod's grants file.
const GRANTS: &str = "/etc/spore/grants.toml";

/// The pod's runtime config (stores' backends and quotas).
const RUNTIME_CONFIG: &str = "/etc/spore/runtime-config.toml";

/// What `grants.toml` says. A key Spore does not know is an error, not a warning: a grant
/// misspelt would otherwise be a grant silently missing.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Grants {
    /// Key-value store labels the guest may open.
    #[serde(default)]
    pub(crate) key_value_stores: Vec<String>,
    /// SQLite database labels the guest may open.
    #[serde(default)]
    pub(crate) sqlite_databases: Vec<String>,
    /// Where the guest may send HTTP requests (as in `spin.toml`).
    #[serde(default)]
    pub(crate) allowed_outbound_hosts: Vec<String>,
    /// The writable volume holding the embedded stores and SQLite files.
    data_dir: Option<PathBuf>,
}

impl Grants {
    /// Reads grants from `text`, shown in messages as `shown`.
    fn parse(text: &str, shown: &str) -> anyhow::Result<Grants> {
        let grants: Grants = toml::from_str(text).map_err(|e| anyhow!("{shown}: {}", e.to_string().trim_end()))?;
        let stores = !grants.key_value_stores.is_empty() || !grants.sqlite_databases.is_empty();
        if stores && grants.data_dir.is_none() {
            bail!(
                "{shown} grants key-value stores or SQLite databases but names no data_dir: mount a writable volume (an emptyDir or a PersistentVolumeClaim) and set data_dir to its mount path"
            );
        }
        Ok(grants)
    }
}

/// The pod's grants and the stores they open.
pub(crate) struct Granted {
    pub(crate) grants: Grants,
    pub(crate) stores: KvStores,
    /// Runtime-config keys Spore ignored, named.
    pub(crate) warnings: Vec<String>,
}

/// Reads what the pod grants (nothing, without a grants file) and opens its stores, keeping
/// the data dir out of the guest's `view`.
pub(crate) fn read(view: &mut View) -> anyhow::Result<Granted> {
    let grants = match deployers(view, Path::new(GRANTS))? {
        Some(file) => {
            let text = std::fs::read_to_string(file).map_err(|e| anyhow!("{GRANTS}: {e}"))?;
            Grants::parse(&text, GRANTS)?
        }
        None => Grants::default(),
    };
    let runtime_config = deployers(view, Path::new(RUNTIME_CONFIG))?;
    let Some(data_dir) = grants.data_dir.clone() else {
        return Ok(Granted { grants, stores: KvStores::default(), warnings: Vec::new() });
    };
    if !view.hide(&data_dir) {
        bail!(
            "{GRANTS}: data_dir {} is not the mount path of a writable volume of the pod; mount one there (an emptyDir or a PersistentVolumeClaim, read-write)",
            data_dir.display()
        );
    }
    let loaded = spore_serve::runtime_config::load(runtime_config, &data_dir)?;
    Ok(Granted { grants, stores: loaded.stores, warnings: loaded.warnings })
}

/// `path`, if it exists and the pod's deployer wrote it: a file on a read-only volume.
fn deployers<'p>(view: &View, path: &'p Path) -> anyhow::Result<Option<&'p Path>> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(None);
    }
    match view.volume_of(path) {
        None => bail!(
            "{} is the image's own file, not a volume of the pod: grants come from whoever deploys the pod, never from the image; mount a ConfigMap or Secret at {DIR}",
            path.display()
        ),
        Some(volume) if volume.writable => bail!(
            "{} is on the writable volume {}, where the guest could write its own grants; mount it read-only (a ConfigMap or Secret at {DIR})",
            path.display(),
            volume.point.display()
        ),
        Some(_) => Ok(Some(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_read_and_bad_ones_named() {
        let text = "key_value_stores = [\"default\"]\nsqlite_databases = [\"default\"]\nallowed_outbound_hosts = [\"https://api.example.com\"]\ndata_dir = \"/data\"\n";
        let grants = Grants::parse(text, "g.toml").unwrap();
        assert_eq!(grants.key_value_stores, ["default"]);
        assert_eq!(grants.allowed_outbound_hosts, ["https://api.example.com"]);
        assert_eq!(grants.data_dir.as_deref(), Some(Path::new("/data")));
        assert_eq!(Grants::parse("allowed_outbound_hosts = [\"https://x.example\"]", "g.toml").unwrap().data_dir, None);
        for (text, named) in [
            ("key_value_store = [\"default\"]\n", "unknown field `key_value_store`"),
            ("key_value_stores = \"default\"\n", "invalid type"),
            ("key_value_stores = [\"default\"]\n", "names no data_dir"),
            ("sqlite_databases = [\"default\"]\n", "names no data_dir"),
            ("[oops\n", "g.toml"),
        ] {
            let err = Grants::parse(text, "g.toml").unwrap_err().to_string();
            assert!(err.starts_with("g.toml") && err.contains(named), "{text}: {err}");
        }
    }
}
