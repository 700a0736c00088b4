//! Serving `wasi:http` apps: the HTTP/1.1 server that `spore serve`, `spore up` and the daemon
//! share. Each request is matched to a route, then handled in a fresh sandbox from the app's
//! pre-instantiated component ([`spore_sandbox::Runnable::handle`]) — per-request isolation,
//! with the pooling allocator keeping an instantiation in the microseconds.
//!
//! ServerLimits, as a user of a serious server expects: request headers (hyper's buffer; 431),
//! request body (`Content-Length` checked up front, streamed bodies cut at the limit; 413),
//! a concurrency limit (requests wait for a slot), a per-request timeout (504). A guest that
//! traps or fails answers 500 with a log line saying why. One access-log line per request.
//! Shutdown is graceful: no new connections, in-flight requests finish (up to a grace period).
//!
//! A manifest's component gets Spin's request headers (`spin-path-info`, `spin-full-url`,
//! `spin-matched-route`, …, set by the server: a client's own are dropped), which Spin SDKs'
//! routers read. A route may instead answer with a static response, no app run.
//!
//! The concurrency limit counts *instances*, not requests waiting for their answer: an
//! instance that keeps running after its response holds its slot until it ends (or its spec's
//! CPU or wall-clock limit stops it). When the server stops, every instance is ended before
//! [`Server::serve`] returns — after the grace period by abort — and dropping the server's
//! future (a daemon's kill) aborts them at once.
//!
//! Depends on the sandbox, `spore-app` and `spore-kv`; must not know of the daemon.

pub mod door;
pub mod runtime_config;

pub use spore_app::manifest::StaticResponse;
pub use spore_app::{manifest, router};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use router::Router;
use spore_sandbox::{HandleError, Instances, Runnable, SandboxSpec, Sinks};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// One app behind one or more routes.
pub struct App {
    /// Its name (the component id in a manifest, else the file or image).
    pub name: String,
    /// The linked program.
    pub runnable: Arc<Runnable>,
    /// The sandbox every request of it runs in (capabilities, env, mounts, limits).
    pub spec: SandboxSpec,
    /// Whether its requests carry Spin's request headers: for the components of a manifest,
    /// mounted under routes of their own (they cost about 8% of a hello app's req/s, so an app
    /// alone on `/...`, whose `spin-path-info` would be its whole path, goes without).
    pub spin_headers: bool,
}

/// What answers a route.
#[derive(Clone)]
pub enum Target {
    /// An app, run per request.
    App(Arc<App>),
    /// A response the server gives itself.
    Static(Arc<StaticResponse>),
}

impl Target {
    /// The name the access log shows.
    fn name(&self) -> &str {
        match self {
            Target::App(app) => &app.name,
            Target::Static(_) => "static",
        }
    }
}

/// Server limits.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Longest a request may take until its response head (then 504).
    pub request_timeout: Duration,
    /// Largest request body.
    pub max_body: u64,
    /// Header buffer per connection (at least 8 KiB).
    pub max_header_bytes: usize,
    /// Instances running at once (an instance counts until it ends, even after its
    /// response); more requests wait.
    pub concurrency: usize,
    /// How long shutdown waits for requests in flight.
    pub grace: Duration,
    /// Connection bounds: header-read (and idle) timeout, open connections.
    pub door: door::Door,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            request_timeout: Duration::from_secs(30),
            max_body: 10 << 20,
            max_header_bytes: 64 << 10,
            concurrency: 256,
            grace: Duration::from_secs(10),
            door: door::Door::default(),
        }
    }
}

/// The server: routes, limits, and where guests' output goes.
pub struct Server {
    router: Router<Target>,
    limits: ServerLimits,
    instances: Arc<Instances>,
    sinks: Sinks,
    access_log: bool,
}

type Body = HyperOutgoingBody;

fn plain(status: StatusCode, text: impl Into<String>) -> Response<Body> {
    let text = text.into();
    let mut r = Response::new(Full::new(Bytes::from(text + "\n")).map_err(|never| match never {}).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8".parse().expect("header"));
    r
}

impl Server {
    /// A server for `router`, with guests' stdout/stderr going to `sinks`.
    pub fn new(router: Router<Target>, limits: ServerLimits, sinks: Sinks, access_log: bool) -> Arc<Server> {
        let instances = Instances::new(limits.concurrency);
        Arc::new(Server { router, limits, instances, sinks, access_log })
    }

    /// The server's live instances (for stats and tests).
    pub fn instances(&self) -> &Arc<Instances> {
        &self.instances
    }

    /// Accepts connections until `shutdown` resolves, then lets requests in flight finish.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        // Dropped before the end (a kill): no guest of this server may run on.
        let _abort = AbortOnDrop(self.instances.clone());
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let gate = self.limits.door.gate();
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                permit = gate.enter() => permit,
            };
            let (stream, remote) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a moment rather than spin.
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            let service = hyper::service::service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, std::convert::Infallible>(server.respond(req, remote).await) }
            });
            let conn = self
                .limits
                .door
                .http1()
                .max_buf_size(self.limits.max_header_bytes.max(8192))
                .serve_connection(TokioIo::new(stream), service);
            let watched = graceful.watch(conn);
            tokio::spawn(async move {
                let _ = watched.await;
                drop(permit);
            });
        }
        drop(listener);
        let deadline = tokio::time::Instant::now() + self.limits.grace;
        if tokio::time::timeout_at(deadline, graceful.shutdown()).await.is_err() {
            tracing::warn!("shutdown: requests still running after {:?} were cut off", self.limits.grace);
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if self.instances.live() > 0 {
            self.instances.drain(left).await;
        } else {
            self.instances.abort_all();
        }
    }

    /// One request, start to access-log line.
    async fn respond(&self, req: Request<Incoming>, remote: SocketAddr) -> Response<Body> {
        let start = Instant::now();
        let (method, uri) = (req.method().clone(), req.uri().clone());
        let (response, app) = self.dispatch(req, remote).await;
        if self.access_log {
            eprintln!(
                "{remote} \"{method} {uri}\" {} {:.2}ms {}",
                response.status().as_u16(),
                start.elapsed().as_secs_f64() * 1e3,
                app.unwrap_or("-")
            );
        }
        response
    }

    async fn dispatch(&self, mut req: Request<Incoming>, remote: SocketAddr) -> (Response<Body>, Option<&str>) {
        let Some(matched) = self.router.find(req.uri().path()) else {
            return (plain(StatusCode::NOT_FOUND, format!("no route for {}", req.uri().path())), None);
        };
        let name = Some(matched.target.name());
        let app = match matched.target {
            Target::App(app) => app.clone(),
            Target::Static(response) => return (static_response(response), name),
        };
        if app.spin_headers {
            spin_headers(&mut req, &matched, remote);
        }
        let header_bytes: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
        if header_bytes > self.limits.max_header_bytes {
            let max = self.limits.max_header_bytes;
            return (
                plain(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    format!("request headers over the {max}-byte limit"),
                ),
                None,
            );
        }
        let max = self.limits.max_body;
        let declared = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return (plain(StatusCode::PAYLOAD_TOO_LARGE, format!("request body over the {max}-byte limit")), name);
        }
        let Some(slot) = self.instances.acquire().await else {
            return (plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down"), name);
        };
        let req = req.map(|body| {
            Limited::new(body, max as usize).map_err(move |e| match e.downcast::<hyper::Error>() {
                Ok(h) => wasmtime_wasi_http::Error::from(*h),
                Err(_) => wasmtime_wasi_http::Error::HttpRequestBodySize(Some(max)),
            })
        });
        let handled =
            app.runnable.handle(&app.spec, &self.sinks, req, self.limits.request_timeout, &self.instances, slot).await;
        let response = match handled {
            Ok(response) => response,
            Err(HandleError::Timeout(t)) => {
                tracing::warn!("{}: no response within {t:?}; answered 504", app.name);
                plain(StatusCode::GATEWAY_TIMEOUT, format!("{} did not answer within {t:?}", app.name))
            }
            Err(HandleError::Setup(spore_sandbox::SandboxError::Capacity { message, .. })) => {
                tracing::warn!("{}: {message}; answered 503", app.name);
                plain(StatusCode::SERVICE_UNAVAILABLE, "no free instance slot; try again")
            }
            Err(e) => {
                tracing::warn!("{}: {e}; answered 500", app.name);
                plain(StatusCode::INTERNAL_SERVER_ERROR, "the app failed; see the server log")
            }
        };
        (response, name)
    }
}

/// A route's static response (its headers checked when the manifest was read).
fn static_response(r: &StaticResponse) -> Response<Body> {
    let body = Full::new(Bytes::from(r.body.clone())).map_err(|never| match never {}).boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(r.status_code).unwrap_or(StatusCode::OK);
    for (name, value) in &r.headers {
        if let (Ok(name), Ok(value)) =
            (hyper::header::HeaderName::try_from(name.as_str()), hyper::header::HeaderValue::try_from(value.as_str()))
        {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// Sets Spin's request headers, as Spin's HTTP trigger does: which route matched and what of
/// the path it left (`spin-path-info`, which Spin SDKs' routers read), the whole URL, each
/// `:name` segment, the client's address. A client's own headers of these names are dropped
/// first: the app must be able to trust them.
fn spin_headers<B>(req: &mut Request<B>, matched: &router::Matched<'_, Target>, remote: SocketAddr) {
    use hyper::header::{HeaderName, HeaderValue};
    let theirs: Vec<HeaderName> = req.headers().keys().filter(|k| k.as_str().starts_with("spin-")).cloned().collect();
    for name in theirs {
        req.headers_mut().remove(name);
    }
    let host = req.headers().get(hyper::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let full_url = format!("http://{host}{}", req.uri().path_and_query().map_or("/", |p| p.as_str()));
    let component_route = matched.route.strip_suffix("/...").unwrap_or(matched.route);
    let headers = req.headers_mut();
    let mut set = |name: HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set(HeaderName::from_static("spin-full-url"), &full_url);
    set(HeaderName::from_static("spin-path-info"), &matched.rest);
    set(HeaderName::from_static("spin-matched-route"), matched.route);
    set(HeaderName::from_static("spin-raw-component-route"), matched.route);
    set(HeaderName::from_static("spin-component-route"), component_route);
    set(HeaderName::from_static("spin-client-addr"), &remote.to_string());
    for (name, value) in &matched.params {
        if let Ok(name) = HeaderName::try_from(format!("spin-path-match-{}", name.to_ascii_lowercase())) {
            set(name, value);
        }
    }
}

/// Aborts every instance of a server whose future is dropped.
struct AbortOnDrop(Arc<Instances>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort_all();
    }
}

/// Serves one app on every path at `listen` until `shutdown` resolves: what the daemon runs
/// for an HTTP sandbox. Fails only if it cannot listen.
pub async fn serve_app(
    app: App,
    listen: &str,
    limits: ServerLimits,
    sinks: Sinks,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let listener = TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let mut router = Router::default();
    router.add("/...", Target::App(Arc::new(app))).expect("one route");
    Server::new(router, limits, sinks, false).serve(listener, shutdown).await;
    Ok(())
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
