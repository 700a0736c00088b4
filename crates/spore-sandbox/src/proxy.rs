//! One HTTP request through a `wasi:http` proxy component: a fresh store and instance from
//! the program's pre-instantiated component (the pooling allocator makes this cheap), the
//! request handed to the guest's handler (`wasi:http/incoming-handler` of WASI 0.2, `wasi:http/handler` of
//! 0.3), and the response the guest answers with.
//!
//! The guest keeps running after it has sent the response head (it may still be streaming the
//! body, or just linger), so the call runs as its own task and the response is returned as
//! soon as it exists. That task is still the sandbox: it is CPU-metered and stopped at the
//! spec's CPU and wall-clock limits like a command, it holds its [`Instances`] slot until it
//! ends (so a server's concurrency limit counts instances, not answered requests), and
//! [`Instances::drain`] ends every one of them when the app stops.

use crate::limits::{CpuTimeExceeded, Metered};
use crate::runner::{HttpEntry, Runnable};
use crate::stdio::Sinks;
use crate::{Meter, SandboxError};
use spore_spec::SandboxSpec;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// The response a guest produced.
pub type ProxyResponse = hyper::Response<HyperOutgoingBody>;

/// A request that produced no response; each maps to a status the server sends instead.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The program is not an HTTP app.
    #[error(
        "{program} is not an HTTP app: it exports neither wasi:http/incoming-handler@0.2 (the wasi:http/proxy world) nor wasi:http/handler@0.3 (the wasi:http/service world); its exports: {exports}"
    )]
    NotHttp {
        /// Program name.
        program: String,
        /// What it exports instead.
        exports: String,
    },
    /// The sandbox could not be set up (pool full, spec problem).
    #[error(transparent)]
    Setup(#[from] SandboxError),
    /// No response within the request timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The guest trapped, hit a limit, or returned an error code without a response.
    #[error("{0}")]
    Guest(String),
}

/// The live instances of one server (or app): a slot each, held from the request's arrival
/// until its instance has ended — not merely answered — and the means to end them all.
pub struct Instances {
    slots: Arc<Semaphore>,
    max: u32,
    tasks: Mutex<HashMap<u64, AbortHandle>>,
    next: AtomicU64,
}

/// A slot for one instance, taken before the request is handled; the permit is given back
/// when the instance's task ends.
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Instances {
    /// Room for `max` instances at once (at least one).
    pub fn new(max: usize) -> Arc<Instances> {
        let max = u32::try_from(max.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        Arc::new(Instances {
            slots: Arc::new(Semaphore::new(max as usize)),
            max,
            tasks: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
        })
    }

    /// Waits for a free slot; `None` once the instances are being drained (no new ones).
    pub async fn acquire(&self) -> Option<Slot> {
        self.slots.clone().acquire_owned().await.ok().map(Slot)
    }

    /// Instances running now (including those still streaming or lingering after their response).
    pub fn live(&self) -> usize {
        self.max as usize - self.slots.available_permits()
    }

    /// Refuses new instances, gives the running ones `grace` to end by themselves, then aborts
    /// the rest and waits until they are gone: when this returns, no guest of this server runs.
    pub async fn drain(&self, grace: Duration) {
        // Every slot back means every instance has ended.
        let all_back = || tokio::time::timeout(grace, self.slots.acquire_many(self.max));
        let mut back = all_back().await;
        if back.is_err() {
            self.abort_tasks();
            // Aborted tasks end at their next yield (a guest yields at every epoch tick).
            back = all_back().await;
        }
        // Closed while the slots are held, so no request starts in between.
        self.slots.close();
        drop(back);
    }

    /// Aborts every running instance at once (a kill, or a server dropped without draining).
    pub fn abort_all(&self) {
        self.slots.close();
        self.abort_tasks();
    }

    fn abort_tasks(&self) {
        for task in lock(&self.tasks).values() {
            task.abort();
        }
    }

    fn register(self: &Arc<Self>, task: AbortHandle) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.tasks).insert(id, task);
        id
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Held by an instance's task: frees its slot and its entry when the task ends, however.
struct Running {
    instances: Arc<Instances>,
    id: Option<u64>,
    _slot: Slot,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            lock(&self.instances.tasks).remove(&id);
        }
    }
}

impl Runnable {
    /// Handles one request in a fresh sandbox described by `spec`, in the `slot` taken from
    /// `instances`; answers 504-worthy [`HandleError::Timeout`] after `timeout` without a
    /// response head. The instance itself lives on until it ends, is stopped by the spec's
    /// limits, or is drained.
    pub async fn handle<B>(
        self: &Arc<Self>,
        spec: &SandboxSpec,
        sinks: &Sinks,
        request: hyper::Request<B>,
        timeout: Duration,
        instances: &Arc<Instances>,
        slot: Slot,
    ) -> Result<ProxyResponse, HandleError>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let Some(pre) = self.http_entry().cloned() else {
            return Err(HandleError::NotHttp { program: self.name.clone(), exports: self.describe_exports() });
        };
        let meter = Arc::new(Meter::default());
        let (mut store, _captured) = self.store(spec, sinks, meter.clone(), crate::state::Moment::Live).await?;
        // The response head, or the error code the guest answered with instead.
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<ProxyResponse, String>>();
        let setup = |e: wasmtime::Error| HandleError::Guest(format!("{e:#}"));
        let answered = Arc::new(AtomicBool::new(false));
        let wall = spec.limits.timeout_ms.map(Duration::from_millis);
        let guest: Pin<Box<dyn Future<Output = wasmtime::Result<()>> + Send>> = match pre {
            HttpEntry::P2(pre) => {
                let req = store.data_mut().http().new_incoming_request(Scheme::Http, request).map_err(setup)?;
                let out = store
                    .data_mut()
                    .http()
                    .new_response_outparam_from_callback(move |res| {
                        let _ = tx.send(res.map_err(|code| format!("{code:?}")));
                    })
                    .map_err(setup)?;
                Box::pin(async move {
                    let proxy = pre.instantiate_async(&mut store).await?;
                    store.data().cpu.mark_entered();
                    proxy.wasi_http_incoming_handler().call_handle(&mut store, req, out).await
                })
            }
            HttpEntry::P3(pre) => {
                let (req, request_io) =
                    wasmtime_wasi_http::p3::Request::from_http(store.data_mut().http().hooks, request);
                Box::pin(async move {
                    let service = pre.instantiate_async(&mut store).await?;
                    store.data().cpu.mark_entered();
                    store
                        .run_concurrent(async move |accessor| {
                            match service.handle(accessor, req).await? {
                                Ok(res) => {
                                    let res = accessor.with(|mut store| res.into_http(&mut store, request_io))?;
                                    let _ = tx.send(Ok(res));
                                }
                                Err(code) => {
                                    let _ = tx.send(Err(format!("{code:?}")));
                                }
                            }
                            // The body is written by the guest's tasks after `handle` returned:
                            // the store runs them until none is left, as a 0.2 guest runs on
                            // after setting its response.
                            std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
                            Ok(())
                        })
                        .await?
                })
            }
        };
        let guest = Metered::new(guest, meter);
        let mut running = Running { instances: instances.clone(), id: None, _slot: slot };
        let (name, after_answer) = (self.name.clone(), answered.clone());
        let (start, started) = tokio::sync::oneshot::channel::<Running>();
        let task = tokio::spawn(async move {
            // The slot is held (and the entry removed) by this task alone, whatever ends it.
            let _running = started.await;
            let ended = match wall {
                None => guest.await,
                Some(wall) => match tokio::time::timeout(wall, guest).await {
                    Ok(ended) => ended,
                    Err(_) => Err(wasmtime::Error::new(WallTimeExceeded(wall))),
                },
            };
            if let Err(err) = &ended
                && after_answer.load(Ordering::Relaxed)
            {
                tracing::warn!("{name}: instance stopped after its response: {}", describe(err));
            }
            ended
        });
        running.id = Some(instances.register(task.abort_handle()));
        let _ = start.send(running);
        let abort = task.abort_handle();
        let outcome = tokio::time::timeout(timeout, async {
            match rx.await {
                Ok(Ok(response)) => {
                    answered.store(true, Ordering::Relaxed);
                    Ok(response)
                }
                Ok(Err(code)) => Err(HandleError::Guest(format!("the app answered with the error {code}"))),
                // The guest ended without setting a response: its own result says why.
                Err(_) => Err(match task.await {
                    Ok(Ok(())) => HandleError::Guest("the app returned without setting a response".into()),
                    Ok(Err(e)) => HandleError::Guest(describe(&e)),
                    Err(e) => HandleError::Guest(e.to_string()),
                }),
            }
        })
        .await;
        match outcome {
            Ok(result) => result,
            Err(_) => {
                abort.abort();
                Err(HandleError::Timeout(timeout))
            }
        }
    }
}

/// An instance ran past the spec's wall-clock limit.
#[derive(Debug)]
struct WallTimeExceeded(Duration);

impl std::fmt::Display for WallTimeExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "wall-clock timeout of {} reached", humantime::format_duration(self.0))
    }
}

impl std::error::Error for WallTimeExceeded {}

/// A guest failure in one line: the trap or limit, not wasmtime's whole chain.
fn describe(err: &wasmtime::Error) -> String {
    if err.downcast_ref::<CpuTimeExceeded>().is_some() {
        return "the app used up its CPU time".into();
    }
    if let Some(wall) = err.downcast_ref::<WallTimeExceeded>() {
        return format!("the app ran into its {wall}");
    }
    if crate::outcome::is_table_full(err) {
        return "the app reached its open-handle limit (files, sockets, streams)".into();
    }
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("the app trapped: {trap}"),
        None => format!("{err:#}"),
    }
}
