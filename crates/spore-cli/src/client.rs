//! The daemon client: HTTP/1.1 over the daemon's Unix socket, or over TCP with a bearer token.
//! Every failure to reach the daemon says where it looked and how to start one.

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use std::path::PathBuf;

/// Where the daemon is.
#[derive(Clone, Debug)]
pub enum Host {
    /// `unix:///path/to/spore.sock`
    Unix(PathBuf),
    /// `tcp://host:port`
    Tcp(String),
    /// `https://host:port`: TCP with TLS, the server checked against the CA.
    Tls(String),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Unix(p) => write!(f, "unix://{}", p.display()),
            Host::Tcp(a) => write!(f, "tcp://{a}"),
            Host::Tls(a) => write!(f, "https://{a}"),
        }
    }
}

/// A connection recipe for the daemon's API.
pub struct Client {
    host: Host,
    token: Option<String>,
    /// Roots a TLS daemon's certificate is checked against: `--tls-ca`, else the system's.
    tls_ca: Option<PathBuf>,
}

impl Client {
    /// From `--host`/`SPORE_HOST` (default: the local daemon's socket), `--token`/`SPORE_TOKEN`
    /// and `--tls-ca`/`SPORE_TLS_CA`.
    pub fn new(host: Option<&str>, token: Option<String>, tls_ca: Option<PathBuf>) -> anyhow::Result<Client> {
        let host = match host {
            None => Host::Unix(crate::paths::daemon_paths().0),
            Some(h) => {
                if let Some(path) = h.strip_prefix("unix://") {
                    Host::Unix(PathBuf::from(path))
                } else if let Some(addr) = h.strip_prefix("tcp://") {
                    Host::Tcp(addr.to_owned())
                } else if let Some(addr) = h.strip_prefix("https://") {
                    Host::Tls(addr.trim_end_matches('/').to_owned())
                } else {
                    bail!("--host {h:?}: write unix:///path/to/spore.sock, https://HOST:PORT or tcp://HOST:PORT")
                }
            }
        };
        Ok(Client { host, token, tls_ca })
    }

    /// Sends one request and returns the response, body unread.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Bytes)>,
    ) -> anyhow::Result<Response<Incoming>> {
        let unreachable = |e: std::io::Error| {
            anyhow!(
                "cannot reach the spore daemon at {}: {e}. Start one with `spore daemon`, or point --host (SPORE_HOST) at a running one",
                self.host
            )
        };
        let mut builder = Request::builder().method(method).uri(path).header(hyper::header::HOST, "spore");
        if let Some(token) = &self.token {
            builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some((content_type, bytes)) => {
                builder.header(hyper::header::CONTENT_TYPE, content_type).body(Full::new(bytes))
            }
            None => builder.body(Full::new(Bytes::new())),
        }?;
        let response = match &self.host {
            Host::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path).await.map_err(unreachable)?;
                // Whoever listens there gets the request's specs and uploads: it must be this
                // user's daemon (or root's), not one a local user planted at the path.
                let served_by = stream.peer_cred().map(|c| c.uid()).map_err(unreachable)?;
                if !spore_daemon::trusted_peer(served_by) {
                    // SAFETY: geteuid has no preconditions and cannot fail.
                    let me = unsafe { libc::geteuid() };
                    bail!(
                        "the socket {} is served by user {served_by}, neither you ({me}) nor root; refusing to talk to it (remove it, or point --host at your own daemon)",
                        path.display()
                    );
                }
                exchange(stream, request).await
            }
            Host::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr).await.map_err(unreachable)?;
                exchange(stream, request).await
            }
            Host::Tls(addr) => {
                let connector = self.tls_connector()?;
                let name = server_name(addr)?;
                let stream = tokio::net::TcpStream::connect(addr).await.map_err(unreachable)?;
                let stream = connector.connect(name, stream).await.map_err(|e| {
                    anyhow!(
                        "TLS with the spore daemon at {}: {e}{}",
                        self.host,
                        if self.tls_ca.is_none() {
                            "; if its certificate is your own CA's, pass --tls-ca FILE"
                        } else {
                            ""
                        }
                    )
                })?;
                exchange(stream, request).await
            }
        };
        response.with_context(|| format!("talking to the spore daemon at {}", self.host))
    }

    /// A TLS connector trusting `--tls-ca` (PEM), or else the system's roots.
    fn tls_connector(&self) -> anyhow::Result<tokio_rustls::TlsConnector> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        match &self.tls_ca {
            Some(ca) => {
                for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("--tls-ca {}", ca.display()))? {
                    roots.add(cert.with_context(|| format!("--tls-ca {}", ca.display()))?)?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        let config =
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
        Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)))
    }

    /// GETs `path`, a stream of lines (logs, events), and hands each line (with its newline)
    /// to `each` as it arrives; a non-2xx answer becomes its error message.
    pub async fn lines(&self, path: &str, mut each: impl FnMut(&[u8]) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let response = self.send(Method::GET, path, None).await?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let bytes = body.collect().await?.to_bytes();
            return Err(server_error(status, &bytes));
        }
        let mut pending = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else { continue };
            pending.extend_from_slice(&data);
            while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=pos).collect();
                each(&line)?;
            }
        }
        Ok(())
    }

    /// Sends a request and decodes a JSON answer; a non-2xx answer becomes its error message.
    pub async fn json<T: DeserializeOwned>(&self, method: Method, path: &str) -> anyhow::Result<T> {
        self.exchange_json(method, path, None).await
    }

    /// Sends `body` (the daemon's own request types) as JSON and decodes the JSON answer.
    pub async fn post<B: serde::Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        let bytes = serde_json::to_vec(body).context("encoding the request")?;
        self.exchange_json(Method::POST, path, Some(("application/json", Bytes::from(bytes)))).await
    }

    async fn exchange_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Bytes)>,
    ) -> anyhow::Result<T> {
        let response = self.send(method, path, body).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            return Err(server_error(status, &bytes));
        }
        let bytes = if bytes.is_empty() { Bytes::from_static(b"null") } else { bytes };
        serde_json::from_slice(&bytes)
            .with_context(|| format!("unexpected answer from the daemon: {}", String::from_utf8_lossy(&bytes)))
    }
}

async fn exchange<S>(stream: S, request: Request<Full<Bytes>>) -> anyhow::Result<Response<Incoming>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender.send_request(request).await?)
}

/// The daemon's `{"error": ...}` body as an error, or the status when there is none.
pub fn server_error(status: StatusCode, body: &[u8]) -> anyhow::Error {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    if message.is_empty() { anyhow!("the daemon answered {status}") } else { anyhow!("{message}") }
}

/// The name a TLS daemon's certificate must carry: the host part of `HOST:PORT` (an IP
/// address, `[v6]`, or a DNS name).
fn server_name(addr: &str) -> anyhow::Result<rustls::pki_types::ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| anyhow!("--host https://{addr}: {host:?} is not a host name or address: {e}"))
}

/// Percent-encodes a query or path component.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The first twelve characters of an id, as docker shows them (all of it if shorter: the
/// daemon's answer is not trusted to be well formed).
pub(crate) fn short_id(id: &str) -> &str {
    id.char_indices().nth(12).map_or(id, |(end, _)| &id[..end])
}

#[cfg(test)]
mod tests {

    #[test]
    fn ids_are_shortened_without_trusting_their_length() {
        assert_eq!(super::short_id("0123456789abcdef"), "0123456789ab");
        assert_eq!(super::short_id("short"), "short");
        assert_eq!(super::short_id("ééééééééééééé"), "éééééééééééé");
    }
}
