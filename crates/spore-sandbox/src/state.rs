//! The per-sandbox store state: WASI (the p1 context also serves components), limits, the CPU
//! meter and the capabilities the spec grants — built for each run from the spec
//! ([`Runnable::state`]), so a sandbox holds exactly what its spec grants.

use crate::SandboxError;
use crate::kv::{KvGrant, KvView};
use crate::limits::{Limiter, Meter};
use crate::outbound::OutboundHooks;
use crate::runner::Runnable;
use crate::sqlite::{SqliteGrant, SqliteView};
use crate::stdio::{Captured, Sinks};
use crate::variables::{Variables, VarsView};
use spore_engine::ProgramCode;
use spore_spec::{ProgramSource, SandboxSpec, SpecError};
use std::sync::Arc;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Per-store state: WASI (the p1 context also serves components), limits, the CPU meter, and
/// the capabilities the spec grants (HTTP, key-value, variables).
pub(crate) struct SandboxState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: Limiter,
    pub(crate) cpu: Arc<Meter>,
    /// The cap set on the resource table, and whether the process's own descriptor limit set
    /// it, for the message when it is reached.
    pub(crate) open_files_limit: (usize, bool),
    http: WasiHttpCtx,
    hooks: OutboundHooks,
    kv: KvGrant,
    sqlite: SqliteGrant,
    variables: Arc<Variables>,
}

impl WasiView for SandboxState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiView::ctx(&mut self.wasi)
    }
}

impl WasiHttpView for SandboxState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        let SandboxState { wasi, http, hooks, .. } = self;
        WasiHttpCtxView { ctx: http, table: WasiView::ctx(wasi).table, hooks }
    }
}

pub(crate) fn kv_view(s: &mut SandboxState) -> KvView<'_> {
    let SandboxState { wasi, kv, cpu, .. } = s;
    KvView { table: WasiView::ctx(wasi).table, grant: kv, meter: cpu }
}

pub(crate) fn sqlite_view(s: &mut SandboxState) -> SqliteView<'_> {
    let SandboxState { wasi, sqlite, cpu, .. } = s;
    SqliteView { table: WasiView::ctx(wasi).table, grant: sqlite, meter: cpu }
}

pub(crate) fn vars_view(s: &mut SandboxState) -> VarsView<'_> {
    VarsView(&s.variables)
}

impl Runnable {
    /// The per-sandbox WASI context: exactly what the spec grants.
    pub(crate) async fn state(
        &self,
        spec: &SandboxSpec,
        sinks: &Sinks,
        cpu: Arc<Meter>,
        moment: Moment,
    ) -> Result<(SandboxState, Captured), SandboxError> {
        let mut b = WasiCtxBuilder::new();
        if let Moment::Frozen(seed) = moment {
            // A snapshot keeps what the init read: the same bytes for the same wasm, so the
            // same inputs build the same image (and no host's clock or entropy is baked in).
            b.secure_random(wasmtime_wasi::Deterministic::new(seed.to_vec()));
            b.insecure_random(wasmtime_wasi::Deterministic::new(seed.iter().rev().copied().collect()));
            b.insecure_random_seed(u128::from_le_bytes(seed[..16].try_into().expect("16 of 32 bytes")));
            b.wall_clock(Epoch);
            b.monotonic_clock(Ticks::default());
        }
        b.arg(spec.argv0.clone().unwrap_or_else(|| default_argv0(spec, &self.name)));
        b.args(&spec.args);
        for (k, v) in &spec.env {
            b.env(k, v);
        }
        let (protected, data) = (self.engine.protected_paths(), self.engine.data_paths());
        for m in &spec.mounts {
            let perms = if m.read_only { FsPerms::ReadOnly } else { FsPerms::ReadWrite };
            // The very directory pinned at create, then checked to be clear of the cache.
            let dir = crate::mounts::open(m)?;
            crate::mounts::check_exposure(m, &dir.path(), protected, data)?;
            // Calls on the mount's directory (open, stat, readdir by path) run on the guest's
            // own thread instead of tokio's blocking pool, so their CPU is the guest's —
            // metered and limited: a loop of `stat`s spends the guest's budget, not the
            // host's. Each preopen takes the setting when it is made.
            b.allow_blocking_current_thread(true);
            b.preopened_dir(dir.path(), &m.guest, perms).map_err(|err| SpecError::MountHost {
                host: m.host.display().to_string(),
                problem: format!("{err:#}"),
            })?;
        }
        // Files a component opens take the context's setting, so their reads and writes are
        // the guest's too. A module's cannot: WASI p1 also reads the setting to sleep with
        // `thread::sleep`, which would block the executor every sandbox shares (and no timer
        // could stop it), so for a module it is switched off again; its file reads and writes
        // do the kernel's part on tokio's blocking pool, the copy into the guest on its thread.
        b.allow_blocking_current_thread(matches!(self.program.code, ProgramCode::Component(_)));
        let captured = crate::stdio::apply(&spec.stdio, &mut b, sinks)?;
        if spec.network.is_none() {
            b.allow_tcp(false).allow_udp(false);
        } else {
            let policy = crate::net::resolve(&spec.network, spec.public_network_only).await;
            // wasmtime-wasi disables the protocols by default; the address check below is what
            // grants or denies each use.
            b.allow_tcp(true).allow_udp(true);
            b.allow_ip_name_lookup(spec.network.needs_name_lookup());
            b.socket_addr_check(move |addr, use_| {
                let allowed = policy.allows(addr, use_);
                if !allowed {
                    tracing::warn!(
                        "network: denied {use_:?} {addr}: not granted by the sandbox's network policy (spec.network)"
                    );
                }
                Box::pin(async move { allowed })
            });
        }
        let caps = &spec.capabilities;
        let policy = spore_spec::OutboundPolicy::parse(&caps.allowed_outbound_hosts).map_err(SpecError::Outbound)?;
        let mut wasi = b.build_p1();
        // Every file, socket, stream and HTTP body the guest holds is an entry of this table:
        // capping it caps the sandbox's host descriptors (and their memory), where wasmtime's
        // default would let one guest take a million.
        let (asked, allowed) = (spec.limits.open_files(), crate::limits::process_open_files());
        let (open_files, by_process) = (asked.min(allowed), allowed < asked);
        WasiView::ctx(&mut wasi).table.set_max_capacity(open_files);
        let state = SandboxState {
            wasi,
            limiter: Limiter::new(&spec.limits, crate::counts_for(&self.engine), cpu.clone()),
            cpu,
            open_files_limit: (open_files, by_process),
            http: WasiHttpCtx::new(),
            hooks: OutboundHooks {
                policy: Arc::new(policy),
                resolver: crate::outbound::system_resolver(),
                public_only: spec.public_network_only,
            },
            kv: KvGrant {
                stores: self.kv_stores.clone(),
                granted: caps.key_value_stores.clone().into(),
                namespace: caps.key_value_namespace.clone(),
                cas_held: Default::default(),
            },
            sqlite: SqliteGrant {
                databases: self.kv_stores.databases.clone(),
                granted: caps.sqlite_databases.clone().into(),
                namespace: caps.key_value_namespace.clone(),
                cpu_limit_ns: spec.limits.cpu_time_ms.map(|ms| ms.saturating_mul(1_000_000)),
                turn: Default::default(),
                connections: Default::default(),
            },
            variables: Arc::new(caps.variables.clone()),
        };
        Ok((state, captured))
    }
}

/// The time and entropy a guest sees.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Moment {
    /// The host's clock and entropy: every run.
    Live,
    /// Randomness from the seed, the wall clock at the UNIX epoch, a monotonic clock that
    /// counts its reads: an init whose state is snapshotted at build time.
    Frozen([u8; 32]),
}

/// A wall clock stopped at the UNIX epoch.
struct Epoch;

impl wasmtime_wasi::HostWallClock for Epoch {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }

    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// A monotonic clock that starts at zero and moves one microsecond each time it is read: it
/// never stands still (a loop timing itself ends) and reads the same every run.
#[derive(Default)]
struct Ticks(std::sync::atomic::AtomicU64);

impl wasmtime_wasi::HostMonotonicClock for Ticks {
    fn resolution(&self) -> u64 {
        1_000
    }

    fn now(&self) -> u64 {
        self.0.fetch_add(1_000, std::sync::atomic::Ordering::Relaxed)
    }
}

fn default_argv0(spec: &SandboxSpec, name: &str) -> String {
    match &spec.program {
        ProgramSource::Path(p) => {
            p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| name.to_owned())
        }
        ProgramSource::Digest(_) | ProgramSource::Image(_) => name.to_owned(),
    }
}
