//! Outbound HTTP: the `wasi:http/outgoing-handler` hooks that apply a sandbox's grants
//! ([`spore_spec::OutboundPolicy`]) to every request it sends.
//!
//! For a wildcard grant the host's name is resolved **once**, every address of the answer is
//! checked, and the connection goes to those very addresses ([`send_vetted`]): a name that
//! answers with a public address to the check and with `127.0.0.1` to a second lookup (DNS
//! rebinding, a TTL of zero) never gets the second lookup.

use spore_spec::outbound::{Grant, OutboundPolicy, default_port, is_private};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Resolves a host name to the addresses to connect to. Called once per request.
pub(crate) type Resolver = Arc<
    dyn Fn(String, u16) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>
        + Send
        + Sync,
>;

/// The system's resolver.
pub(crate) fn system_resolver() -> Resolver {
    Arc::new(|host, port| Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), port)).await?.collect()) }))
}

/// The wasi:http hooks of one sandbox: its outbound policy, applied to every request.
pub(crate) struct OutboundHooks {
    pub(crate) policy: Arc<OutboundPolicy>,
    pub(crate) resolver: Resolver,
    /// Every grant is held to public addresses, an exact one too
    /// ([`spore_spec::SandboxSpec::public_network_only`]).
    pub(crate) public_only: bool,
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let policy = self.policy.clone();
        let resolver = self.resolver.clone();
        let public_only = self.public_only;
        Box::new(async move {
            drop(fut);
            let uri = request.uri().clone();
            let scheme = uri.scheme_str().unwrap_or("https").to_owned();
            let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
            let port = uri.port_u16().or(default_port(&scheme)).unwrap_or(0);
            let deny = |why: &str| {
                tracing::warn!(
                    "outbound HTTP: denied {scheme}://{host}:{port}: {why}; allow it with allowed_outbound_hosts = [\"{scheme}://{host}:{port}\"]"
                );
                Err(HttpError::HttpRequestDenied)
            };
            // Where the host keeps its sandboxes from private addresses, an exact grant is
            // checked as a wildcard one is.
            let grant = policy.check(&scheme, &host, port).map(|g| if public_only { Grant::Wildcard } else { g });
            match grant {
                None => deny("not in the sandbox's allowed outbound hosts"),
                // Named exactly by the operator: sent as asked, private addresses included.
                Some(Grant::Exact) => {
                    let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
                    Ok((
                        res.map(http_body_util::BodyExt::boxed_unsync),
                        Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                    ))
                }
                Some(Grant::Wildcard) => {
                    let addrs = match host.parse::<IpAddr>() {
                        Ok(ip) => vec![SocketAddr::new(ip, port)],
                        Err(_) => resolver(host.clone(), port).await.map_err(|_| HttpError::DestinationNotFound)?,
                    };
                    if addrs.is_empty() {
                        return Err(HttpError::DestinationNotFound);
                    }
                    if addrs.iter().any(|a| is_private(a.ip())) {
                        return deny(match public_only {
                            true => {
                                "it is a private or loopback address, which this host's sandboxes do not reach (the daemon's [policy] private_network)"
                            }
                            false => "it is a private or loopback address, which a wildcard grant does not reach",
                        });
                    }
                    send_vetted(request, options, &addrs, &host, scheme == "https").await
                }
            }
        })
    }
}

/// Sends `request` over a connection to one of `addrs` — the addresses that were checked —
/// never resolving the host again: TCP (each address in turn), TLS for `https` (verified for
/// `host` against the web's roots), HTTP/1.1, with the request's timeouts.
async fn send_vetted(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    addrs: &[SocketAddr],
    host: &str,
    tls: bool,
) -> Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), HttpError>> + Send>), HttpError> {
    use http_body_util::BodyExt;
    let limit = |t: Option<Duration>| t.unwrap_or(Duration::from_secs(600));
    let connect = limit(options.and_then(|o| o.connect_timeout));
    let first_byte = limit(options.and_then(|o| o.first_byte_timeout));
    let tcp = tokio::time::timeout(connect, tokio::net::TcpStream::connect(addrs))
        .await
        .map_err(|_| HttpError::ConnectionTimeout)?
        .map_err(HttpError::Connect)?;
    let io: Box<dyn Io> = if tls {
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(HttpError::InvalidDnsNameError)?;
        let config = tls_config().ok_or(HttpError::TlsProtocolError)?;
        let stream = tokio::time::timeout(connect, tokio_rustls::TlsConnector::from(config).connect(name, tcp))
            .await
            .map_err(|_| HttpError::ConnectionTimeout)?
            .map_err(HttpError::Tls)?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) =
        tokio::time::timeout(connect, hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)))
            .await
            .map_err(|_| HttpError::ConnectionTimeout)??;
    // The connection is driven by its own task, which ends when the exchange does.
    let driver = tokio::spawn(conn);
    // On the wire the request line carries only the path (the Host header names the host).
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    *request.uri_mut() = path.parse().map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let response = tokio::time::timeout(first_byte, sender.send_request(request))
        .await
        .map_err(|_| HttpError::ConnectionReadTimeout)??;
    let done = async move {
        match driver.await {
            Ok(result) => result.map_err(HttpError::from),
            Err(_) => Ok(()),
        }
    };
    Ok((response.map(|b| b.map_err(HttpError::from).boxed_unsync()), Box::new(done)))
}

/// The client TLS configuration (the web's roots, ring's provider), built once per process.
fn tls_config() -> Option<Arc<rustls::ClientConfig>> {
    static CONFIG: std::sync::OnceLock<Option<Arc<rustls::ClientConfig>>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions();
            builder.ok().map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
        })
        .clone()
}

/// A byte stream HTTP can run over (TCP, or TLS over TCP).
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn policy(entries: &[&str]) -> OutboundPolicy {
        OutboundPolicy::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    /// The request goes to the address that was checked, under the name the guest used: the
    /// name is never looked up again (`.invalid` names never resolve, so a second lookup, as
    /// wasmtime's own sender makes, would fail the request instead of reaching the listener).
    #[tokio::test]
    async fn a_vetted_request_connects_to_the_checked_address_without_a_second_lookup() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let checked = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut head = vec![0; 4096];
            let n = conn.read(&mut head).await.unwrap();
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await.unwrap();
            String::from_utf8_lossy(&head[..n]).into_owned()
        });
        let body = http_body_util::Empty::new().map_err(|never| match never {}).boxed_unsync();
        let request = http::Request::get(format!("http://rebind.invalid:{}/path", checked.port()))
            .header(http::header::HOST, "rebind.invalid")
            .body(body)
            .unwrap();
        let (response, _io) = send_vetted(request, None, &[checked], "rebind.invalid", false).await.unwrap();
        assert_eq!(response.status(), 200);
        let head = server.await.unwrap();
        assert!(head.starts_with("GET /path HTTP/1.1\r\n") && head.contains("host: rebind.invalid"), "{head}");
    }

    #[tokio::test]
    async fn a_wildcard_grant_resolves_once_and_refuses_a_private_answer() {
        let lookups = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = lookups.clone();
        let resolver: Resolver = Arc::new(move |_, port| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move { Ok(vec![SocketAddr::new("100.100.100.200".parse().unwrap(), port)]) })
        });
        let mut hooks = OutboundHooks { policy: Arc::new(policy(&["*://*:*"])), resolver, public_only: false };
        let body = http_body_util::Empty::new().map_err(|never| match never {}).boxed_unsync();
        let request = http::Request::get("http://metadata.example/latest").body(body).unwrap();
        let sent = Box::into_pin(hooks.send_request(request, None, Box::new(async { Ok(()) }))).await;
        assert!(matches!(sent, Err(HttpError::HttpRequestDenied)));
        assert_eq!(lookups.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// Where the host keeps sandboxes to public addresses, a host named exactly is checked as
    /// a wildcard's is: its private answer is refused (without the flag it is sent as asked).
    #[tokio::test]
    async fn public_only_holds_an_exact_grant_to_public_addresses() {
        let resolver: Resolver =
            Arc::new(|_, port| Box::pin(async move { Ok(vec![SocketAddr::new("10.0.0.5".parse().unwrap(), port)]) }));
        let grants = Arc::new(policy(&["http://db.internal:8080", "http://10.0.0.5:8080"]));
        let mut hooks = OutboundHooks { policy: grants, resolver, public_only: true };
        for url in ["http://db.internal:8080/", "http://10.0.0.5:8080/"] {
            let body = http_body_util::Empty::new().map_err(|never| match never {}).boxed_unsync();
            let request = http::Request::get(url).body(body).unwrap();
            let sent = Box::into_pin(hooks.send_request(request, None, Box::new(async { Ok(()) }))).await;
            assert!(matches!(sent, Err(HttpError::HttpRequestDenied)), "{url}");
        }
    }
}
