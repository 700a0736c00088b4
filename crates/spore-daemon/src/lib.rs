//! `spore daemon`: one process that keeps many sandboxes alive — every sandbox an async task on
//! one tokio runtime, sharing one pooling engine and one compiled program per digest — behind
//! a local HTTP/JSON API, with state in a transactional database, logs on disk, restart
//! policies, and recovery after the daemon itself restarts.
//!
//! Layering: [`api`] (HTTP) → [`supervisor`] (state machine, tasks) → `spore-sandbox` (runs a
//! spec) → `spore-engine`; [`db`], [`logs`] and [`programs`] are the supervisor's storage.
//!
//! Depends on everything below it; nothing but the `spore` binary depends on it.

pub mod api;
pub mod config;
pub mod db;
mod locks;
pub mod logs;
pub mod programs;
pub mod supervisor;
pub mod syslimits;

// The API's vocabulary and the operator's policy over it live in spore-api (no wasmtime), so
// clients and fuzz targets use the daemon's own types.
pub use spore_api::{model, policy};

use config::DaemonConfig;
use spore_engine::{EngineConfig, SporeEngine};
use spore_types::ByteSize;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

/// Why the daemon did not start (or stopped serving); each names the flag, key or file.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `[policy]` is not usable.
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    /// The engine could not be made (its cache directory or key).
    #[error(transparent)]
    Engine(#[from] spore_engine::EngineError),
    /// The state database could not be opened.
    #[error(transparent)]
    Db(#[from] db::DbError),
    /// The program or image store could not be opened.
    #[error("program store: {0}")]
    ProgramStore(std::io::Error),
    /// The log directory could not be opened.
    #[error("log directory: {0}")]
    Logs(std::io::Error),
    /// The runtime config's stores could not be set up.
    #[error("runtime config: {0}")]
    Stores(spore_serve::runtime_config::StoresError),
    /// A flag or path the operator gave (socket, data dir, token, TLS, listen address) is not
    /// usable; the message names it and says what to do.
    #[error("{0}")]
    Setup(String),
}

/// The `[devices]` plugins, loaded and checked: one that does not is the daemon's start error.
fn load_devices(
    sections: &std::collections::BTreeMap<String, config::DeviceSection>,
) -> Result<spore_sandbox::Devices, StartError> {
    let mut plugins = Vec::new();
    for (name, section) in sections {
        let plugin = spore_plugin::Plugin::load(name, &section.library, &section.config)
            .map_err(|e| StartError::Setup(format!("[devices.{name}]: {e}")))?;
        if let Some(why) = spore_plugin::conflict(&plugins, &plugin) {
            return Err(StartError::Setup(format!("[devices.{name}]: {why}")));
        }
        plugins.push(Arc::new(plugin));
    }
    Ok(spore_sandbox::Devices::new(plugins))
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(config: DaemonConfig) -> Result<(), StartError> {
    if config.socket.as_os_str().is_empty() || config.data_dir.as_os_str().is_empty() {
        return Err(StartError::Setup("the daemon needs its socket and data directory (--socket, --data-dir)".into()));
    }
    let max_memory = config.pool.max_memory.bytes();
    let stack = config.pool.stack.bytes() as usize;
    let tick = config.engine.epoch_tick.get();
    let log_limits = logs::LogLimits {
        max_size: config.logs.max_size.bytes(),
        max_files: config.logs.max_files,
        buffer_per_sandbox: config.logs.buffer_per_sandbox.bytes() as usize,
    };
    let capacity = config.pool.sandboxes.max(1);
    let d = &config.defaults;
    let defaults = model::Defaults {
        memory_bytes: d.memory.map(ByteSize::bytes),
        // At least 1 ms, as the flags give it: a zero default would refuse every create.
        cpu_time_ms: d.cpu_time.map(|t| t.millis().max(1)),
        timeout_ms: d.timeout.map(|t| t.millis().max(1)),
        restart: d.restart.unwrap_or_default(),
    };
    let policy = policy::Policy::from_config(&config.policy, max_memory, &defaults)?;

    create_private_dir(&config.data_dir).map_err(StartError::Setup)?;
    let limits = syslimits::check(capacity as u64, 2 * max_memory + stack as u64);
    for note in &limits.notes {
        tracing::info!("{note}");
    }
    for warning in &limits.warnings {
        tracing::warn!("{warning}");
    }

    let engine = SporeEngine::new(
        EngineConfig::daemon(config.data_dir.join("compiled"), capacity, max_memory, tick, stack)
            .with_code(config.engine.code)
            .with_data_dirs(vec![config.data_dir.clone()]),
    )?;
    let (db, stored) = db::Db::open(&config.data_dir.join("state.redb"))?;
    let programs = programs::ProgramStore::open(
        &config.data_dir.join("programs"),
        policy.max_program_body as u64,
        &config.data_dir.join("store"),
        config.registries.insecure.clone(),
        spore_registry::AuthFiles::new(
            config.registries.auth_file.clone(),
            Some(config.registries.docker_config.clone()).filter(|p| !p.as_os_str().is_empty()),
        ),
        spore_registry::PullLimits { max_layers: policy.max_image_layers, max_bytes: policy.max_image_size },
        match policy.private_registry_hosts() {
            None => spore_registry::Reach::Anywhere,
            Some(named) => spore_registry::Reach::Public { named },
        },
    )
    .map_err(StartError::ProgramStore)?;
    let logs = logs::LogHub::start(&config.data_dir.join("logs"), log_limits).map_err(StartError::Logs)?;
    let kv = spore_serve::runtime_config::load(config.runtime_config.as_deref(), &config.data_dir)
        .map_err(StartError::Stores)?;
    for w in &kv.warnings {
        tracing::warn!("{w}");
    }
    let devices = load_devices(&config.devices)?;
    let settings = supervisor::Settings {
        capacity: capacity as usize,
        policy,
        defaults,
        kv_stores: Arc::new(kv.stores),
        devices: Arc::new(devices),
    };
    // Bound before any sandbox is brought back: the umask it sets for a moment is process-wide,
    // and a guest writing a file meanwhile would get it.
    let unix = bind_unix(&config.socket).map_err(StartError::Setup)?;
    let sup = supervisor::Supervisor::start(engine, programs, db, logs, stored, settings);

    let app = api::router(sup.clone());
    let shutdown = spore_serve::shutdown_signal();
    tokio::pin!(shutdown);
    let door = spore_serve::door::Door {
        header_read_timeout: config.api.header_read_timeout.get(),
        max_connections: config.api.max_connections,
    };
    let unix_server = serve_api(unix, app.clone(), door, same_user);
    let tcp_server = match &config.listen {
        None => None,
        Some(addr) => {
            let token_file = config.token_file.as_ref().ok_or_else(|| {
                StartError::Setup(format!(
                    "--listen {addr} needs --token-file FILE: the TCP API only works with a bearer token"
                ))
            })?;
            let token = std::fs::read_to_string(token_file)
                .map_err(|e| StartError::Setup(format!("--token-file {}: {e}", token_file.display())))?
                .trim()
                .to_owned();
            spore_types::check_token(&token, &format!("--token-file {}", token_file.display()))
                .map_err(StartError::Setup)?;
            let tls = match (&config.tls_cert, &config.tls_key) {
                (Some(cert), Some(key)) => Some(tls_acceptor(cert, key).map_err(StartError::Setup)?),
                (None, None) => None,
                _ => {
                    return Err(StartError::Setup(
                        "--tls-cert and --tls-key go together: give both, or neither".into(),
                    ));
                }
            };
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| StartError::Setup(format!("--listen {addr}: cannot listen: {e}")))?;
            let local = listener.local_addr().map_err(|e| StartError::Setup(format!("--listen {addr}: {e}")))?;
            if tls.is_none() && !local.ip().is_loopback() {
                return Err(StartError::Setup(format!(
                    "--listen {addr}: the token grants everything the policy allows, so beyond loopback the TCP API needs TLS; give --tls-cert FILE --tls-key FILE"
                )));
            }
            let token = Arc::new(token);
            let authed = app
                .clone()
                .layer(axum::middleware::from_fn(move |req, next| api::require_token(token.clone(), req, next)));
            let scheme = if tls.is_some() { "https" } else { "tcp" };
            eprintln!("spore daemon: also listening on {scheme}://{local} (bearer token required)");
            Some(serve_tcp(listener, authed, door, tls))
        }
    };
    eprintln!("spore daemon: listening on unix://{} (capacity {capacity} sandboxes)", config.socket.display());
    let servers = async {
        match tcp_server {
            Some(tcp) => {
                tokio::join!(unix_server, tcp);
            }
            None => unix_server.await,
        }
    };
    tokio::select! {
        () = servers => {}
        _ = &mut shutdown => {}
    }
    eprintln!("spore daemon: shutting down; running sandboxes will be brought back at the next start");
    sup.shutdown().await;
    let _ = std::fs::remove_file(&config.socket);
    Ok(())
}

/// Serves the API on `listener` until the daemon stops (this future is then dropped), each
/// connection held to the `door`'s bounds and let in only if `admit` says so.
async fn serve_api<L: axum::serve::Listener>(
    mut listener: L,
    app: axum::Router,
    door: spore_serve::door::Door,
    admit: fn(&L::Io) -> bool,
) {
    let gate = door.gate();
    loop {
        let permit = gate.enter().await;
        let (io, _) = listener.accept().await;
        if !admit(&io) {
            continue;
        }
        tokio::spawn(serve_connection(io, app.clone(), door, permit));
    }
}

/// Serves the API on TCP, over TLS when there is an acceptor. The handshake runs in the
/// connection's own task, held to the door's header timeout, so a slow one delays nobody.
async fn serve_tcp(
    mut listener: tokio::net::TcpListener,
    app: axum::Router,
    door: spore_serve::door::Door,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    use axum::serve::Listener;
    let gate = door.gate();
    loop {
        let permit = gate.enter().await;
        let (io, _) = Listener::accept(&mut listener).await;
        let Some(tls) = tls.clone() else {
            tokio::spawn(serve_connection(io, app.clone(), door, permit));
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(door.header_read_timeout, tls.accept(io)).await {
                Ok(Ok(stream)) => serve_connection(stream, app, door, permit).await,
                Ok(Err(e)) => tracing::debug!("API over TLS: handshake failed: {e}"),
                Err(_) => tracing::debug!("API over TLS: handshake timed out"),
            }
        });
    }
}

async fn serve_connection<IO>(
    io: IO,
    app: axum::Router,
    door: spore_serve::door::Door,
    permit: tokio::sync::OwnedSemaphorePermit,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(app);
    let _ = door.http1().serve_connection(hyper_util::rt::TokioIo::new(io), service).await;
    drop(permit);
}

/// The TLS acceptor for the TCP API, from PEM files; errors name the file.
fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("--tls-cert {}: no PEM certificate in it", cert.display()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Whether the other end of an API socket — a client, for the daemon; the daemon, for a
/// client — may be trusted: this process's own user, or root. One rule for both ends.
pub fn trusted_peer(uid: u32) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    uid == unsafe { libc::geteuid() } || uid == 0
}

/// Whether the peer on the API socket is this daemon's user or root (`SO_PEERCRED`): the
/// socket's mode already keeps others out; this holds if it is loosened.
fn same_user(stream: &tokio::net::UnixStream) -> bool {
    match stream.peer_cred() {
        Ok(peer) if trusted_peer(peer.uid()) => true,
        Ok(peer) => {
            tracing::warn!("API socket: refused a client of user {} (pid {:?})", peer.uid(), peer.pid());
            false
        }
        Err(e) => {
            tracing::warn!("API socket: cannot tell who connected ({e}); refused");
            false
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("--data-dir {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("--data-dir {}: {e}", dir.display()))
}

/// Binds the owner-only API socket, replacing a stale socket file but never a live daemon's.
///
/// Its directory must be this user's (or root's) and writable by nobody else: in a directory
/// another user can write, they could swap the socket for their own listener and receive every
/// client's specs and uploads. One the daemon creates is 0700. The socket is created under a
/// umask that leaves it 0600 from its first instant.
fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, String> {
    let shown = path.display();
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| format!("--socket {shown}: {e}"))?;
    }
    let meta = std::fs::symlink_metadata(parent).map_err(|e| format!("--socket {shown}: {e}"))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || (meta.uid() != me && meta.uid() != 0) || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "--socket {shown}: its directory {} must be yours (uid {me}) or root's and writable by nobody else (it is uid {}, mode {:o}); fix it (chmod go-w) or choose another --socket",
            parent.display(),
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "another spore daemon is already listening on {}; stop it or choose another --socket",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("--socket {}: cannot remove the stale socket: {e}", path.display()))?;
    }
    // SAFETY: umask has no preconditions; the old mask is restored at once (no sandbox runs
    // yet: the socket is bound before any is brought back).
    let old = unsafe { libc::umask(0o177) };
    let bound = tokio::net::UnixListener::bind(path);
    // SAFETY: as above; this puts the process's mask back.
    unsafe { libc::umask(old) };
    bound.map_err(|e| format!("--socket {shown}: {e}"))
}
