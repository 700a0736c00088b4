//! The one launch path every front end shares — `spore run`, `serve`, `up`, the daemon and the
//! shim: from a program's bytes and a spec to a sandbox that may start. Each front end keeps
//! only its own I/O (where the bytes and the spec come from, where output goes, how a problem
//! is worded for its user); what is checked, and how, is decided here once, so a limit or
//! grant cannot hold in one front end and not in another.
//!
//! [`from_image`] turns an opened image into the program's bytes and puts the image's settings
//! under the spec (where the image comes from — a file, the local store, a pull — is the front
//! end's I/O). [`prepare`] = [`link`] (compile or fetch from the cache, link against WASI and Spore's
//! capabilities, tell what kind of app it is) + [`admit`] (the spec is valid, its mounts pinned
//! and clear of the compile cache, its counts within the engine's share, the app of the kind
//! the front end runs). The daemon links once per program and admits every create against it.

use crate::SandboxError;
use crate::devices::Devices;
use crate::kv::KvStores;
use crate::runner::Runnable;
use spore_engine::{LoadError, SporeEngine, Wasm};
use spore_image::{ContentStore, ImageError, OpenedImage};
use spore_spec::{Mount, SandboxSpec, SpecError};
use std::fmt;
use std::sync::Arc;

/// What a program is, from what it exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    /// Runs to its end: a module with `_start`, or a component exporting `wasi:cli/run`.
    Command,
    /// Answers requests: a component exporting `wasi:http/incoming-handler` (WASI 0.2) or
    /// `wasi:http/handler` (0.3).
    Http,
    /// Neither: a reactor or library, whose exports are called by name.
    Library,
}

impl fmt::Display for AppKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AppKind::Command => "a command (it exports wasi:cli/run or _start)",
            AppKind::Http => "an HTTP app (it exports wasi:http/incoming-handler or wasi:http/handler)",
            AppKind::Library => "a library or reactor (no command or HTTP entry point)",
        })
    }
}

/// A program linked and classified, ready for [`admit`].
#[derive(Clone)]
pub struct Prepared {
    /// The linked program, shared by every sandbox of it.
    pub runnable: Arc<Runnable>,
    /// What it is.
    pub kind: AppKind,
}

/// Why a sandbox may not be launched. Each names the concept or the spec field; front ends add
/// the fix in their own terms.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The spec is wrong as written (mounts, env, limits, grants).
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The bytes are not a program this engine runs.
    #[error("{program}: {source}")]
    Load {
        /// Program name.
        program: String,
        /// What is wrong with it.
        #[source]
        source: LoadError,
    },
    /// The program imports what Spore does not provide.
    #[error(transparent)]
    Link(#[from] SandboxError),
    /// A count above what one sandbox may take of the engine's pool.
    #[error("limits.{field} {asked} is more than a sandbox may take here ({share}, its share of the pool)")]
    Share {
        /// The spec field (under `limits`).
        field: &'static str,
        /// What the spec asks.
        asked: usize,
        /// The most it may.
        share: usize,
    },
    /// The program is not of the kind this front end runs.
    #[error("{program} is {is}, not {wanted}; its exports: {exports}")]
    WrongKind {
        /// Program name.
        program: String,
        /// What it is.
        is: AppKind,
        /// What was asked for.
        wanted: AppKind,
        /// What it exports, for the user to see what it is.
        exports: String,
    },
}

/// The wasm an image runs, its settings put under `spec`'s as docker does: `spec.args` are the
/// user's arguments, which replace the image's Cmd when given (its Entrypoint stays); the
/// image's environment goes under the spec's; argv\[0\] is the entrypoint unless the spec
/// names one; and the image's files, when it has any, become the read-only `/` (pinned with
/// the other mounts by [`admit`]).
pub fn from_image(store: &ContentStore, image: &OpenedImage, spec: &mut SandboxSpec) -> Result<Wasm, ImageError> {
    let (wasm, rootfs) = image.entrypoint_wasm(store)?;
    if spec.argv0.is_none() {
        spec.argv0 = image.argv.first().cloned();
    }
    if spec.invoke.is_none() {
        spec.args = spore_types::image_args(&image.argv, image.entrypoint_len, std::mem::take(&mut spec.args));
    }
    let mut env: std::collections::BTreeMap<String, String> =
        image.env.iter().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    env.extend(std::mem::take(&mut spec.env));
    spec.env = env;
    if let Some(root) = rootfs {
        spec.mounts.insert(0, Mount { host: root, guest: "/".into(), read_only: true, pin: None });
    }
    Ok(wasm)
}

/// Compiles (or fetches from the cache) and links `wasm`, named `name` in messages, with the
/// host's key-value stores and devices, and tells what kind of app it is.
pub fn link(
    engine: &SporeEngine,
    name: &str,
    wasm: &Wasm,
    kv: Arc<KvStores>,
    devices: Arc<Devices>,
) -> Result<Prepared, LaunchError> {
    let program = engine.load_wasm(wasm).map_err(|source| LaunchError::Load { program: name.to_owned(), source })?;
    let runnable = Runnable::with_devices(engine, program, name, devices)?.with_kv_stores(kv);
    let kind = if runnable.is_http() {
        AppKind::Http
    } else if runnable.is_command() {
        AppKind::Command
    } else {
        AppKind::Library
    };
    Ok(Prepared { runnable: Arc::new(runnable), kind })
}

/// Checks `spec` for a sandbox of `linked`, as a front end that runs a `wanted` kind of app
/// (`None`: any), and pins its mounts: after this, every start of the spec opens the very
/// directories resolved now (see [`crate::pin_mounts`]).
pub fn admit(linked: &Prepared, spec: &mut SandboxSpec, wanted: Option<AppKind>) -> Result<(), LaunchError> {
    spec.validate()?;
    crate::pin_mounts(spec)?;
    linked.runnable.check_mounts(spec)?;
    linked.runnable.check_devices(spec)?;
    if let Some((field, asked, share)) = crate::counts_for(&linked.runnable.engine).exceeded_by(&spec.limits) {
        return Err(LaunchError::Share { field, asked, share });
    }
    // A command's front end also runs libraries (a named export, or a clear message that
    // one must be named); only an HTTP app is of another kind for it.
    let fits = |wanted| linked.kind == wanted || (wanted == AppKind::Command && linked.kind == AppKind::Library);
    match wanted {
        Some(wanted) if !fits(wanted) => Err(LaunchError::WrongKind {
            program: linked.runnable.name.clone(),
            is: linked.kind,
            wanted,
            exports: linked.runnable.describe_exports(),
        }),
        _ => Ok(()),
    }
}

/// [`link`] then [`admit`]: what a front end that runs one program once calls.
pub fn prepare(
    engine: &SporeEngine,
    name: &str,
    wasm: &Wasm,
    spec: &mut SandboxSpec,
    kv: Arc<KvStores>,
    wanted: Option<AppKind>,
) -> Result<Prepared, LaunchError> {
    let linked = link(engine, name, wasm, kv, Arc::default())?;
    admit(&linked, spec, wanted)?;
    Ok(linked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spore_image::{CompatImage, open_image};

    fn image(store: &ContentStore) -> OpenedImage {
        let mut image = CompatImage {
            os: "wasip1".into(),
            entrypoint: vec!["/app.wasm".into(), "--fixed".into()],
            cmd: vec!["--port".into(), "80".into()],
            env: vec!["A=image".into(), "B=image".into()],
            ..Default::default()
        };
        image.files.insert("/app.wasm".into(), (b"\0asm\x01\0\0\0".to_vec(), 0o755));
        open_image(store, image.write(store).unwrap().manifest).unwrap()
    }

    #[test]
    fn an_image_puts_its_settings_under_the_spec_as_docker_does() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let image = image(&store);

        let mut spec = SandboxSpec::default();
        assert_eq!(from_image(&store, &image, &mut spec).unwrap().bytes().unwrap(), &b"\0asm\x01\0\0\0"[..]);
        assert_eq!(spec.argv0.as_deref(), Some("/app.wasm"));
        assert_eq!(spec.args, ["--fixed", "--port", "80"], "Entrypoint's arguments, then Cmd");
        assert_eq!(spec.mounts[0].guest, "/");
        assert!(
            spec.mounts[0].read_only && spec.mounts[0].host.join("app.wasm").is_file(),
            "the image's files, read-only"
        );

        let mut spec = SandboxSpec { args: vec!["--verbose".into()], ..Default::default() };
        spec.env.insert("B".into(), "user".into());
        spec.argv0 = Some("app".into());
        from_image(&store, &image, &mut spec).unwrap();
        assert_eq!(spec.args, ["--fixed", "--verbose"], "the user's arguments replace Cmd, not the Entrypoint");
        assert_eq!((spec.env["A"].as_str(), spec.env["B"].as_str()), ("image", "user"), "the user's env wins");
        assert_eq!(spec.argv0.as_deref(), Some("app"));
    }
}
