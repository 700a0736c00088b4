//! Moving images between OCI registries and Spore's content store.
//!
//! The wire protocol is `oci-client`'s (token and basic auth, chunked uploads); what is Spore's
//! own is the walk: which documents and blobs an image needs, which of them the other side
//! already has, and that nothing unverified or half-pulled becomes visible. A pull writes every
//! blob through the store's verifying writer (digest and size against the manifest), holds the
//! store's GC lock while the image is unnamed, and names it only once the whole image opens.
//! When a pull fails, the blobs it wrote stay for `prune` to collect: another pull may have
//! found them there meanwhile and named an image that needs them. A push sends only the blobs the
//! registry lacks, then the manifest, then the tag.

mod auth;
mod capped;
mod progress;

pub use auth::{AuthError, AuthFiles};
pub use progress::Progress;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use spore_image::{
    ContentStore, Descriptor, Document, INDEX_TYPES, ImageError, MANIFEST_TYPES, Reference, StoreError, open_image,
};
use spore_types::Digest;
pub use spore_types::PullPolicy;
use std::collections::BTreeSet;

/// Manifests larger than this are refused, as docker and containerd do; the answer is read no
/// further.
pub const MAX_MANIFEST: usize = 4 << 20;

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) spoken to over plain HTTP. Loopback registries always are.
    pub insecure: Vec<String>,
    /// Where credentials are read and stored.
    pub auth: AuthFiles,
    /// How big an image a pull accepts.
    pub limits: PullLimits,
}

/// How big an image a pull accepts, judged from its manifest before any layer is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullLimits {
    /// Blobs (config and layers) in one image.
    pub max_layers: usize,
    /// Their sizes together, as the manifest gives them (each blob is then held to its size).
    pub max_bytes: u64,
}

impl PullLimits {
    /// 128 layers (Docker's old layer limit; a wasm image has one or two) and 4 GiB, what an
    /// image's layers may unpack to ([`spore_image::ExtractLimits::DEFAULT`]).
    pub const DEFAULT: PullLimits =
        PullLimits { max_layers: 128, max_bytes: spore_image::ExtractLimits::DEFAULT.max_bytes };
}

impl Default for PullLimits {
    fn default() -> Self {
        PullLimits::DEFAULT
    }
}

/// A registry operation failed. Nothing is named in the store when a pull fails.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// 401/403.
    #[error(
        "{registry} refused access to {reference} ({detail}); log in with `spore login {registry}`, or check the credentials stored for it"
    )]
    Unauthorized {
        /// The registry.
        registry: String,
        /// What was asked for.
        reference: String,
        /// What the registry said.
        detail: String,
    },
    /// `spore login` with credentials the registry does not accept.
    #[error("{registry} rejected the user name or password ({detail})")]
    LoginRejected {
        /// The registry.
        registry: String,
        /// What the registry said.
        detail: String,
    },
    /// No such repository, tag or manifest.
    #[error("{reference}: not found in {registry} ({detail})")]
    NotFound {
        /// The registry.
        registry: String,
        /// What was asked for.
        reference: String,
        /// What the registry said.
        detail: String,
    },
    /// Connection trouble.
    #[error("cannot reach the registry {registry}: {detail}{hint}")]
    Unreachable {
        /// The registry.
        registry: String,
        /// What went wrong.
        detail: String,
        /// How to fix it, when there is an obvious way.
        hint: &'static str,
    },
    /// Any other answer.
    #[error("{registry}: {detail}")]
    Protocol {
        /// The registry.
        registry: String,
        /// What went wrong.
        detail: String,
    },
    /// A blob whose bytes do not hash to its digest.
    #[error("{digest}: the registry sent content that does not match its digest ({detail}); nothing was stored")]
    BadContent {
        /// The blob.
        digest: Digest,
        /// What the check saw.
        detail: String,
    },
    /// A manifest that is too big or does not match the digest it was asked for by.
    #[error("{reference}: {detail}")]
    BadManifest {
        /// What was asked for.
        reference: String,
        /// What is wrong.
        detail: String,
    },
    /// An image bigger than the puller accepts ([`PullLimits`]); nothing of it was fetched.
    #[error("{reference}: {detail}; nothing was pulled")]
    TooLarge {
        /// What was asked for.
        reference: String,
        /// Which limit, and by how much.
        detail: String,
    },
    /// The image read is not one Spore runs (media types, JSON, no wasm platform).
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Verification (digest, size, cap) or disk trouble.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Credentials file trouble.
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// What a pull or push did.
#[derive(Debug, Clone)]
pub struct Transferred {
    /// The digest the reference names (an index or a manifest).
    pub digest: Digest,
    /// Blobs moved.
    pub moved: usize,
    /// Blobs skipped because the other side had them.
    pub skipped: usize,
    /// Bytes moved.
    pub bytes: u64,
}

/// A client for the registries one command talks to.
pub struct Registry {
    options: RegistryOptions,
}

impl Registry {
    /// A client with these options.
    pub fn new(options: RegistryOptions) -> Self {
        Registry { options }
    }

    /// Whether `registry` is spoken to over plain HTTP.
    pub fn is_insecure(&self, registry: &str) -> bool {
        let host = match registry.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(v6),
            None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
        };
        let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        loopback || self.options.insecure.iter().any(|i| i == registry || i == host)
    }

    /// Refuses, before any layer is fetched, an image with more blobs or bytes than the limits.
    fn check_size(&self, doc: &Document, reference: &Reference) -> Result<(), RegistryError> {
        let PullLimits { max_layers, max_bytes } = self.options.limits;
        let too_large = |detail: String| RegistryError::TooLarge { reference: reference.to_string(), detail };
        let blobs = doc.blobs().count();
        if blobs > max_layers {
            return Err(too_large(format!("its manifest lists {blobs} blobs; the limit is {max_layers}")));
        }
        let bytes = doc.blobs().fold(0u64, |sum, b| sum.saturating_add(b.size));
        if bytes > max_bytes {
            return Err(too_large(format!(
                "its manifest gives its blobs {} together; the limit is {}",
                spore_types::human_bytes(bytes),
                spore_types::human_bytes(max_bytes)
            )));
        }
        Ok(())
    }

    /// A client for the requests Spore makes itself, with the same timeouts as oci-client's.
    fn http(&self, registry: &str) -> Result<reqwest::Client, RegistryError> {
        reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(15))
            .read_timeout(std::time::Duration::from_secs(120))
            .user_agent(concat!("spore/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RegistryError::Protocol { registry: registry.to_owned(), detail: e.to_string() })
    }

    fn client(&self, registry: &str) -> Client {
        let protocol = if self.is_insecure(registry) { ClientProtocol::Http } else { ClientProtocol::Https };
        Client::new(ClientConfig {
            protocol,
            connect_timeout: Some(std::time::Duration::from_secs(15)),
            read_timeout: Some(std::time::Duration::from_secs(120)),
            user_agent: concat!("spore/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        })
    }

    /// Connects and authenticates for `op` on `reference`'s repository.
    async fn connect(&self, reference: &Reference, op: RegistryOperation) -> Result<Session, RegistryError> {
        let client = self.client(&reference.registry);
        let auth = self.options.auth.lookup(&reference.registry)?;
        let session = Session {
            client,
            http: self.http(&reference.registry)?,
            auth,
            reference: reference.clone(),
            insecure: self.is_insecure(&reference.registry),
            token: Default::default(),
            scope: format!("repository:{}:pull", reference.repository),
        };
        match op {
            // A pull makes its own requests, read under caps (see `capped`).
            RegistryOperation::Pull => {
                let token = capped::token(&session.http, &session.url("/v2/"), &session.scope, &session.auth)
                    .await
                    .map_err(|f| session.failed(f, "the registry's token service"))?;
                *session.token.lock().unwrap_or_else(|p| p.into_inner()) = token;
            }
            RegistryOperation::Push => {
                session.client.auth(&session.oci(None), &session.auth, op).await.map_err(|e| session.error(e))?;
            }
        }
        Ok(session)
    }

    /// Checks credentials against `registry` (as `docker login` does) and stores them.
    pub async fn login(&self, registry: &str, user: &str, password: &str) -> Result<(), RegistryError> {
        let probe: Reference = format!("{registry}/spore-login-probe:latest").parse().map_err(|e| {
            RegistryError::Protocol { registry: registry.to_owned(), detail: format!("not a registry name: {e}") }
        })?;
        let client = self.client(registry);
        let auth = RegistryAuth::Basic(user.to_owned(), password.to_owned());
        let session = Session {
            client,
            http: self.http(registry)?,
            auth,
            reference: probe,
            insecure: self.is_insecure(registry),
            token: Default::default(),
            scope: "repository:spore-login-probe:pull".to_owned(),
        };
        // A token registry checks the credentials when it issues the token; a basic-auth one
        // only when they are used, so a catalog request (which needs them) follows.
        let checked = match capped::token(&session.http, &session.url("/v2/"), &session.scope, &session.auth).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => match capped::read(session.get("/v2/_catalog?n=1"), capped::MAX_TOKEN).await {
                Ok(_) => Ok(()),
                Err(failed) => match session.failed(failed, "the registry's catalog") {
                    e @ (RegistryError::Unauthorized { .. } | RegistryError::Unreachable { .. }) => Err(e),
                    // Some registries hide the catalog; the credentials were accepted.
                    _ => Ok(()),
                },
            },
            Err(failed) => Err(session.failed(failed, "the registry's token service")),
        };
        match checked {
            Err(RegistryError::Unauthorized { registry, detail, .. }) => {
                return Err(RegistryError::LoginRejected { registry, detail });
            }
            other => other?,
        }
        self.options.auth.store(registry, user, password)?;
        Ok(())
    }

    /// Forgets the credentials Spore stored for `registry`.
    pub fn logout(&self, registry: &str) -> Result<bool, RegistryError> {
        Ok(self.options.auth.remove(registry)?)
    }

    /// The image `reference` names in `store`, pulled first as `policy` says; `None` when the
    /// policy is `never` and the store does not have it. Returns the digest and, when pulled,
    /// what the pull moved.
    pub async fn ensure(
        &self,
        store: &ContentStore,
        reference: &Reference,
        policy: PullPolicy,
        progress: &Progress,
    ) -> Result<(Option<Digest>, Option<Transferred>), RegistryError> {
        let local = match reference.digest.filter(|d| store.has(d)) {
            Some(d) => Some(d),
            None => store.resolve(reference)?,
        };
        match (policy, local) {
            (PullPolicy::Never, local) | (PullPolicy::Missing, local @ Some(_)) => Ok((local, None)),
            (PullPolicy::Always, _) | (PullPolicy::Missing, None) => {
                let done = self.pull(store, reference, progress).await?;
                Ok((Some(done.digest), Some(done)))
            }
        }
    }

    /// Pulls `reference` into `store` and names it there. For an index, the index and its wasm
    /// platform's manifest are pulled (other platforms are not Spore's to run).
    pub async fn pull(
        &self,
        store: &ContentStore,
        reference: &Reference,
        progress: &Progress,
    ) -> Result<Transferred, RegistryError> {
        let session = self.connect(reference, RegistryOperation::Pull).await?;
        let _gc = store.gc_guard()?;
        let (top, doc) = session.manifest(store, reference.digest, None).await?;
        let manifest = if doc.is_index() {
            let entry = doc.wasm_platform(top)?;
            let digest = entry.digest(top)?;
            session.manifest(store, Some(digest), Some(entry.size)).await?
        } else {
            (top, doc)
        };
        // Refuse what Spore cannot read, or will not hold, before downloading layers.
        check_types(&manifest.1, manifest.0)?;
        self.check_size(&manifest.1, reference)?;
        let mut done = Transferred { digest: top, moved: 0, skipped: 0, bytes: 0 };
        for blob in manifest.1.blobs() {
            let digest = blob.digest(manifest.0)?;
            if store.has(&digest) {
                done.skipped += 1;
                continue;
            }
            let bar = progress.blob("Pulling", &digest, blob.size);
            done.bytes += session.blob(store, digest, blob, &bar).await?;
            done.moved += 1;
            bar.finish("Pulled", blob.size);
        }
        open_image(store, top)?;
        store.set_ref(reference, top)?;
        Ok(done)
    }

    /// Pushes the image `local` (a manifest or index in `store`) as `target`.
    pub async fn push(
        &self,
        store: &ContentStore,
        local: Digest,
        target: &Reference,
        progress: &Progress,
    ) -> Result<Transferred, RegistryError> {
        let opened = open_image(store, local)?;
        let top = Document::parse(&store.get(&local)?, local)?;
        // An index travels whole when every manifest it names is here; otherwise (a pulled
        // multi-platform index holds only its wasm manifest) the wasm manifest goes alone.
        let whole = top.is_index() && top.manifests.iter().all(|m| m.digest(local).is_ok_and(|d| store.has(&d)));
        let (root, children) = if !top.is_index() {
            (local, vec![])
        } else if whole {
            (local, top.manifests.iter().map(|m| m.digest(local)).collect::<Result<Vec<_>, _>>()?)
        } else {
            (opened.manifest, vec![])
        };
        let session = self.connect(target, RegistryOperation::Push).await?;
        let mut done = Transferred { digest: root, moved: 0, skipped: 0, bytes: 0 };
        let mut sent = BTreeSet::new();
        for manifest in children.iter().copied().chain(std::iter::once(root)) {
            let bytes = store.get(&manifest)?;
            let doc = Document::parse(&bytes, manifest)?;
            for blob in doc.blobs() {
                let digest = blob.digest(manifest)?;
                if !sent.insert(digest) {
                    continue;
                }
                let bar = progress.blob("Pushing", &digest, blob.size);
                if session
                    .client
                    .blob_exists(&session.oci(None), &digest.to_string())
                    .await
                    .map_err(|e| session.error(e))?
                {
                    done.skipped += 1;
                    bar.finish("Already exists", blob.size);
                    continue;
                }
                session.upload(store, digest, &bar).await?;
                done.moved += 1;
                done.bytes += blob.size;
                bar.finish("Pushed", blob.size);
            }
            let media_type = doc
                .media_type
                .clone()
                .unwrap_or_else(|| if doc.is_index() { INDEX_TYPES[0] } else { MANIFEST_TYPES[0] }.to_owned());
            // Children by digest; the root by the tag asked for (or its digest).
            let name = if manifest == root { target.tag.clone().map_or(Some(root), |_| None) } else { Some(manifest) };
            let content_type = media_type.parse().map_err(|_| RegistryError::BadManifest {
                reference: manifest.to_string(),
                detail: format!("media type {media_type:?} cannot be sent as a header"),
            })?;
            session
                .client
                .push_manifest_raw(&session.oci(name), bytes, content_type)
                .await
                .map_err(|e| session.error(e))?;
        }
        Ok(done)
    }
}

/// One repository on one registry, authenticated.
struct Session {
    client: Client,
    http: reqwest::Client,
    auth: RegistryAuth,
    reference: Reference,
    insecure: bool,
    /// The bearer token of a pull's handshake, renewed when it runs out.
    token: std::sync::Mutex<Option<String>>,
    /// What the token is for (`repository:NAME:pull`).
    scope: String,
}

impl Session {
    /// `path` (from `/v2/`) on the registry, as oci-client addresses it (`docker.io` is
    /// `index.docker.io`).
    fn url(&self, path: &str) -> String {
        let scheme = if self.insecure { "http" } else { "https" };
        format!("{scheme}://{}{path}", self.oci(None).resolve_registry())
    }

    /// A GET of `path` on the registry with the pull's credentials.
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let token = self.token.lock().unwrap_or_else(|p| p.into_inner()).clone();
        capped::get(&self.http, &self.url(path), token.as_deref(), &self.auth)
    }

    /// GETs `path` (accepting `accept`) and opens the answer. A handshake's token runs out
    /// (Docker Hub's after five minutes, a big pull takes longer): a 401 with one gets a fresh
    /// handshake and one retry.
    async fn fetch(&self, path: &str, accept: Option<&str>) -> Result<reqwest::Response, capped::Failed> {
        let request = || {
            let request = self.get(path);
            match accept {
                Some(accept) => request.header(reqwest::header::ACCEPT, accept),
                None => request,
            }
        };
        let handshaken = self.token.lock().unwrap_or_else(|p| p.into_inner()).is_some()
            && !matches!(self.auth, RegistryAuth::Bearer(_));
        match capped::open(request()).await {
            Err(capped::Failed::Status(401, _)) if handshaken => {
                let fresh = capped::token(&self.http, &self.url("/v2/"), &self.scope, &self.auth).await?;
                *self.token.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
                capped::open(request()).await
            }
            other => other,
        }
    }

    /// A capped request's failure, as a message naming the registry; `what` is what answered.
    fn failed(&self, failed: capped::Failed, what: &str) -> RegistryError {
        let registry = self.reference.registry.clone();
        match failed {
            capped::Failed::Status(code, message) => {
                self.error(OciDistributionError::ServerError { code, url: what.to_owned(), message })
            }
            capped::Failed::Transport(e) => self.error(OciDistributionError::RequestError(e)),
            capped::Failed::TooBig(said) => RegistryError::Protocol {
                registry,
                detail: format!(
                    "{what} sent {} (read no further)",
                    said.map_or("an endless answer".to_owned(), |n| format!("an answer of {n} bytes"))
                ),
            },
            capped::Failed::Malformed(detail) => {
                RegistryError::Protocol { registry, detail: format!("{what}: {detail}") }
            }
        }
    }

    /// The oci-client reference for the repository, at `digest` or else at the tag.
    fn oci(&self, digest: Option<Digest>) -> oci_client::Reference {
        let r = &self.reference;
        match (digest, &r.tag) {
            (Some(d), _) => oci_client::Reference::with_digest(r.registry.clone(), r.repository.clone(), d.to_string()),
            (None, Some(tag)) => match r.digest {
                Some(d) => oci_client::Reference::with_digest(r.registry.clone(), r.repository.clone(), d.to_string()),
                None => oci_client::Reference::with_tag(r.registry.clone(), r.repository.clone(), tag.clone()),
            },
            (None, None) => oci_client::Reference::with_digest(
                r.registry.clone(),
                r.repository.clone(),
                r.digest.map(|d| d.to_string()).unwrap_or_default(),
            ),
        }
    }

    /// Fetches a manifest or index (by `digest`, or by the reference's tag), verifies it
    /// against the digest (and size) it was asked for by, and stores it.
    async fn manifest(
        &self,
        store: &ContentStore,
        digest: Option<Digest>,
        size: Option<u64>,
    ) -> Result<(Digest, Document), RegistryError> {
        let accept: Vec<&str> = MANIFEST_TYPES.iter().chain(INDEX_TYPES).copied().collect();
        let oref = self.oci(digest);
        let bad = |detail: String| RegistryError::BadManifest { reference: oref.whole(), detail };
        let at = oref.digest().or(oref.tag()).unwrap_or("latest");
        let ns = oref.namespace().map(|ns| format!("?ns={ns}")).unwrap_or_default();
        let path = format!("/v2/{}/manifests/{at}{ns}", oref.repository());
        let answer = match self.fetch(&path, Some(&accept.join(", "))).await {
            Ok(response) => capped::read_body(response, MAX_MANIFEST).await,
            Err(failed) => Err(failed),
        };
        let bytes = match answer {
            Ok(bytes) => bytes,
            Err(capped::Failed::TooBig(said)) => {
                let size = said.map(|n| format!(" of {n} bytes")).unwrap_or_else(|| " longer than that".into());
                return Err(bad(format!(
                    "the registry sent a manifest{size}; the limit is {MAX_MANIFEST} bytes (read no further)"
                )));
            }
            Err(failed) => return Err(self.failed(failed, &oref.whole())),
        };
        let actual = Digest::of(&bytes);
        if let Some(expected) = digest.or(self.reference.digest)
            && expected != actual
        {
            return Err(bad(format!("the registry sent content with digest {actual}, not {expected}")));
        }
        if let Some(size) = size
            && size != bytes.len() as u64
        {
            return Err(bad(format!("the index gives it {size} bytes, but the registry sent {}", bytes.len())));
        }
        let doc = Document::parse(&bytes, actual)?;
        if !store.has(&actual) {
            store.put(&actual, &bytes)?;
        }
        Ok((actual, doc))
    }

    /// Streams one blob into the store through its verifying writer.
    async fn blob(
        &self,
        store: &ContentStore,
        digest: Digest,
        desc: &Descriptor,
        bar: &progress::BlobProgress,
    ) -> Result<u64, RegistryError> {
        let mut writer = store.writer(&digest, Some(desc.size))?;
        let path = format!("/v2/{}/blobs/{digest}", self.oci(None).repository());
        let mut response = self.fetch(&path, None).await.map_err(|f| self.failed(f, &path))?;
        // The writer holds the blob to its size as it arrives (a longer answer stops there).
        loop {
            let chunk = response.chunk().await.map_err(|e| RegistryError::Unreachable {
                registry: self.reference.registry.clone(),
                detail: format!("while downloading {digest}: {e}"),
                hint: "",
            })?;
            let Some(chunk) = chunk else { break };
            writer.write(&chunk)?;
            bar.advance(chunk.len() as u64);
        }
        match writer.commit() {
            Ok(size) => Ok(size),
            Err(e @ StoreError::DigestMismatch { .. }) => {
                Err(RegistryError::BadContent { digest, detail: e.to_string() })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Uploads one stored blob in chunks (the registry checks the digest at the end).
    async fn upload(
        &self,
        store: &ContentStore,
        digest: Digest,
        bar: &progress::BlobProgress,
    ) -> Result<(), RegistryError> {
        let file = tokio::fs::File::open(store.path(&digest)).await.map_err(|_| StoreError::Missing(digest))?;
        let size = file.metadata().await.map_err(StoreError::from)?.len();
        let bar_counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = bar_counter.clone();
        // 1 MiB reads; oci-client groups them into its upload chunks.
        let stream = futures_util::stream::unfold(file, |mut file| async move {
            let mut buf = vec![0u8; 1 << 20];
            match tokio::io::AsyncReadExt::read(&mut file, &mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(bytes::Bytes::from(buf)), file))
                }
                Err(e) => Some((Err(OciDistributionError::IoError(e)), file)),
            }
        })
        .inspect(move |chunk| {
            if let Ok(c) = chunk {
                counter.fetch_add(c.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
        });
        self.client
            .push_blob_stream(&self.oci(None), stream, &digest.to_string(), Some(size))
            .await
            .map_err(|e| self.error(e))?;
        bar.advance(bar_counter.load(std::sync::atomic::Ordering::Relaxed));
        Ok(())
    }

    /// A registry answer as a message naming the registry and saying what to do.
    fn error(&self, err: OciDistributionError) -> RegistryError {
        let registry = self.reference.registry.clone();
        let reference = self.reference.to_string();
        let unauthorized = |detail: String| RegistryError::Unauthorized {
            registry: registry.clone(),
            reference: reference.clone(),
            detail,
        };
        let not_found = |detail: String| RegistryError::NotFound {
            registry: registry.clone(),
            reference: reference.clone(),
            detail,
        };
        match err {
            OciDistributionError::UnauthorizedError { .. } => unauthorized("401 Unauthorized".into()),
            OciDistributionError::AuthenticationFailure(detail) => unauthorized(detail),
            OciDistributionError::ImageManifestNotFoundError(detail) => not_found(detail),
            OciDistributionError::RegistryError { envelope, .. } => {
                let detail = envelope
                    .errors
                    .iter()
                    .map(|e| format!("{:?}: {}", e.code, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes.iter().any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied)) {
                    unauthorized(detail)
                } else if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                            | OciErrorCode::BlobUnknown
                    )
                }) {
                    not_found(detail)
                } else {
                    RegistryError::Protocol { registry, detail }
                }
            }
            OciDistributionError::ServerError { code: 401 | 403, message, .. } => unauthorized(message),
            OciDistributionError::ServerError { code: 404, message, .. } => not_found(message),
            OciDistributionError::RequestError(e) if e.status().is_some_and(|s| s == 401 || s == 403) => {
                unauthorized(e.status().map(|s| s.to_string()).unwrap_or_default())
            }
            OciDistributionError::RequestError(e) if e.status().is_some_and(|s| s == 404) => {
                not_found("404 Not Found".into())
            }
            OciDistributionError::RequestError(e) if e.status().is_some() => {
                RegistryError::Protocol { registry, detail: e.to_string() }
            }
            OciDistributionError::RequestError(e) => {
                let mut detail = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    detail.push_str(&format!(": {s}"));
                    source = s.source();
                }
                let hint = if self.insecure {
                    "; is the registry running there?"
                } else {
                    "; if it serves plain HTTP, mark it insecure with --insecure-registry (or SPORE_INSECURE_REGISTRIES)"
                };
                RegistryError::Unreachable { registry, detail, hint }
            }
            other => RegistryError::Protocol { registry, detail: other.to_string() },
        }
    }
}

/// Fails early, naming the media type, for manifests Spore cannot run.
fn check_types(doc: &Document, digest: Digest) -> Result<(), RegistryError> {
    if let Some(m) = doc.media_type.as_deref()
        && !MANIFEST_TYPES.contains(&m)
    {
        return Err(ImageError::UnknownMediaType {
            what: "manifest",
            media_type: m.to_owned(),
            supported: MANIFEST_TYPES.join(", "),
        }
        .into());
    }
    if doc.config.is_none() {
        return Err(
            ImageError::Malformed { what: "manifest", digest, message: "it has no config descriptor".into() }.into()
        );
    }
    Ok(())
}
