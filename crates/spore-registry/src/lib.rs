//! Moving images between OCI registries and Spore's content store.
//!
//! A pull makes its requests itself (the token handshake, manifests, blobs), each answer read
//! under a cap (`capped`); a push goes through `oci-client` (chunked uploads). What is Spore's
//! own besides is the walk: which documents and blobs an image needs, which of them the other
//! side already has, and that nothing unverified or half-pulled becomes visible. A pull writes every
//! blob through the store's verifying writer (digest and size against the manifest), holds the
//! store's GC lock while the image is unnamed, and names it only once the whole image opens.
//! When a pull fails, the blobs it wrote stay for `prune` to collect: another pull may have
//! found them there meanwhile and named an image that needs them. A push sends only the blobs the
//! registry lacks, then the manifest, then the tag.
//!
//! Depends on `spore-image` and `spore-types`; must not depend on wasmtime, the sandbox or the
//! daemon.

mod auth;
mod capped;
mod error;
mod progress;
mod reach;
mod session;

pub use auth::{AuthError, AuthFiles};
pub use error::RegistryError;
pub use progress::Progress;
pub use reach::Reach;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use session::Session;
use spore_image::{ContentStore, Document, INDEX_TYPES, ImageError, MANIFEST_TYPES, Reference, open_image};
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
    /// Where a pull's requests may go.
    pub reach: Reach,
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
        self.options
            .reach
            .check_registry(registry)
            .map_err(|detail| RegistryError::Protocol { registry: registry.to_owned(), detail })?;
        let builder = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(15))
            .read_timeout(std::time::Duration::from_secs(120))
            .user_agent(concat!("spore/", env!("CARGO_PKG_VERSION")));
        self.options
            .reach
            .apply(builder)
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
            reach: self.options.reach.clone(),
        };
        match op {
            // A pull makes its own requests, read under caps (see `capped`).
            RegistryOperation::Pull => {
                let token =
                    capped::token(&session.http, &session.url("/v2/"), &session.scope, &session.auth, &session.reach)
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
            reach: self.options.reach.clone(),
        };
        // A token registry checks the credentials when it issues the token; a basic-auth one
        // only when they are used, so a catalog request (which needs them) follows.
        let checked =
            match capped::token(&session.http, &session.url("/v2/"), &session.scope, &session.auth, &session.reach)
                .await
            {
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
