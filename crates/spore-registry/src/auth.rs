//! Registry credentials, in the format every container tool reads: a JSON file with
//! `{"auths": {"HOST": {"auth": base64("user:password")}}}`.
//!
//! Spore keeps its own file (written by `spore login`, mode 0600, `SPORE_AUTH_FILE` or
//! `$XDG_CONFIG_HOME/spore/auth.json`) and also reads Docker's (`$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`), so a machine where `docker login` was run needs nothing more. Its
//! own file wins. Credential helpers (`credsStore`, `credHelpers`) are not run: Spore says so
//! once, and `spore login` stores the credentials instead.

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// Where credentials come from.
#[derive(Debug, Clone)]
pub struct AuthFiles {
    /// Spore's own file (read and written).
    pub spore: PathBuf,
    /// Docker's config.json (read only), when there is one to read.
    pub docker: Option<PathBuf>,
}

/// A credentials file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Not JSON, or not the docker shape.
    #[error("credentials file {path} is damaged ({message}); fix it or remove it and log in again")]
    Damaged {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Disk trouble.
    #[error("credentials file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

impl AuthFiles {
    /// Credentials in Spore's file `spore` (read and written by `spore login`) and, read
    /// only, Docker's `config.json` at `docker`. Where they are by default is the binary's to
    /// say (it reads `SPORE_AUTH_FILE`, `XDG_CONFIG_HOME`, `DOCKER_CONFIG`).
    pub fn new(spore: PathBuf, docker: Option<PathBuf>) -> Self {
        AuthFiles { spore, docker }
    }

    /// Spore's credentials file.
    pub fn spore(&self) -> &Path {
        &self.spore
    }

    /// Docker's `config.json`, when one is read.
    pub fn docker(&self) -> Option<&Path> {
        self.docker.as_deref()
    }

    /// The credentials for `registry` (`host[:port]`), or anonymous access.
    pub fn lookup(&self, registry: &str) -> Result<RegistryAuth, AuthError> {
        for file in std::iter::once(&self.spore).chain(self.docker.as_ref()) {
            let doc = read(file)?;
            for key in keys_for(registry) {
                if let Some(entry) = doc.get("auths").and_then(|a| a.get(&key))
                    && let Some(auth) = decode(entry, file)?
                {
                    return Ok(auth);
                }
            }
            let helper = doc.get("credHelpers").and_then(|h| keys_for(registry).find_map(|k| h.get(&k).cloned()));
            if let Some(helper) = helper.or_else(|| doc.get("credsStore").cloned()) {
                tracing::warn!(
                    "{} asks for the credential helper {helper} for {registry}; Spore does not run credential helpers: use `spore login {registry}`",
                    file.display()
                );
            }
        }
        Ok(RegistryAuth::Anonymous)
    }

    /// Stores credentials for `registry` in Spore's own file.
    pub fn store(&self, registry: &str, user: &str, password: &str) -> Result<(), AuthError> {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.change(|auths| {
            auths.insert(registry.to_owned(), json!({ "auth": auth }));
        })
        .map(|_| ())
    }

    /// Forgets `registry`; returns whether Spore's file had credentials for it.
    pub fn remove(&self, registry: &str) -> Result<bool, AuthError> {
        // Every spelling is removed, not just the first found.
        self.change(|auths| keys_for(registry).map(|k| auths.remove(&k).is_some()).collect::<Vec<_>>().contains(&true))
    }

    fn change<T>(&self, f: impl FnOnce(&mut Map<String, Value>) -> T) -> Result<T, AuthError> {
        let path = &self.spore;
        let io = |source| AuthError::Io { path: path.display().to_string(), source };
        let mut doc = read(path)?;
        if !doc.get("auths").is_some_and(Value::is_object) {
            doc.insert("auths".into(), json!({}));
        }
        let out = f(doc.get_mut("auths").and_then(Value::as_object_mut).expect("auths is an object"));
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        // Secrets: readable by the owner only, before the first byte is written.
        std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o600)).map_err(io)?;
        std::io::Write::write_all(&mut tmp, &serde_json::to_vec_pretty(&doc).expect("json")).map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(out)
    }
}

/// The keys a registry may be filed under: itself, and for Docker Hub the names docker uses.
fn keys_for(registry: &str) -> impl Iterator<Item = String> {
    let hub = ["docker.io", "index.docker.io", "registry-1.docker.io"].contains(&registry);
    let mut keys = vec![registry.to_owned(), format!("https://{registry}"), format!("http://{registry}")];
    if hub {
        keys.extend(
            ["https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io", "docker.io"].map(str::to_owned),
        );
    }
    keys.into_iter()
}

fn read(path: &Path) -> Result<Map<String, Value>, AuthError> {
    let damaged = |message: String| AuthError::Damaged { path: path.display().to_string(), message };
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(damaged("it is not a JSON object".into())),
            Err(e) => Err(damaged(e.to_string())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(AuthError::Io { path: path.display().to_string(), source: e }),
    }
}

/// One `auths` entry: `auth` (base64 user:password), `username`/`password`, or a
/// `registrytoken` (a bearer token).
fn decode(entry: &Value, file: &Path) -> Result<Option<RegistryAuth>, AuthError> {
    let damaged = |message: &str| AuthError::Damaged { path: file.display().to_string(), message: message.to_owned() };
    if let Some(token) = entry.get("registrytoken").and_then(Value::as_str) {
        return Ok(Some(RegistryAuth::Bearer(token.to_owned())));
    }
    if let (Some(u), Some(p)) =
        (entry.get("username").and_then(Value::as_str), entry.get("password").and_then(Value::as_str))
    {
        return Ok(Some(RegistryAuth::Basic(u.to_owned(), p.to_owned())));
    }
    let Some(auth) = entry.get("auth").and_then(Value::as_str).filter(|a| !a.is_empty()) else { return Ok(None) };
    let raw =
        base64::engine::general_purpose::STANDARD.decode(auth).map_err(|_| damaged("an auth value is not base64"))?;
    let text = String::from_utf8(raw).map_err(|_| damaged("an auth value is not UTF-8"))?;
    let (u, p) = text.split_once(':').ok_or_else(|| damaged("an auth value is not user:password"))?;
    Ok(Some(RegistryAuth::Basic(u.to_owned(), p.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(a: RegistryAuth) -> Option<(String, String)> {
        match a {
            RegistryAuth::Basic(u, p) => Some((u, p)),
            _ => None,
        }
    }

    #[test]
    fn spore_file_first_then_docker_then_anonymous() {
        let dir = tempfile::tempdir().unwrap();
        let files =
            AuthFiles { spore: dir.path().join("spore/auth.json"), docker: Some(dir.path().join("config.json")) };
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="},"reg.example:5000":{"auth":"ZDpw"}}}"#,
        )
        .unwrap();
        assert_eq!(basic(files.lookup("docker.io").unwrap()), Some(("hub".into(), "secret".into())));
        assert_eq!(basic(files.lookup("reg.example:5000").unwrap()), Some(("d".into(), "p".into())));
        assert!(matches!(files.lookup("other.example").unwrap(), RegistryAuth::Anonymous));

        files.store("reg.example:5000", "me", "pa:ss").unwrap();
        assert_eq!(basic(files.lookup("reg.example:5000").unwrap()), Some(("me".into(), "pa:ss".into())));
        let mode = std::fs::metadata(&files.spore).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        assert!(files.remove("reg.example:5000").unwrap());
        assert!(!files.remove("reg.example:5000").unwrap());
        assert_eq!(basic(files.lookup("reg.example:5000").unwrap()), Some(("d".into(), "p".into())), "docker's again");

        std::fs::write(&files.spore, "{not json").unwrap();
        let err = files.lookup("x").unwrap_err().to_string();
        assert!(err.contains("is damaged") && err.contains("auth.json"), "{err}");
    }
}
