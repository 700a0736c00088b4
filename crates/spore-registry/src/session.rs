//! [`Session`]: one repository on one registry, authenticated — the requests of a pull
//! (made by Spore, read under caps: see `capped`) and of a push (through oci-client).

use crate::MAX_MANIFEST;
use crate::capped;
use crate::error::RegistryError;
use crate::progress;
use futures_util::StreamExt;
use oci_client::Client;
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use spore_image::{ContentStore, Descriptor, Document, INDEX_TYPES, MANIFEST_TYPES, Reference, StoreError};
use spore_types::Digest;

/// One repository on one registry, authenticated.
pub(crate) struct Session {
    pub(crate) client: Client,
    pub(crate) http: reqwest::Client,
    pub(crate) auth: RegistryAuth,
    pub(crate) reference: Reference,
    pub(crate) insecure: bool,
    /// The bearer token of a pull's handshake, renewed when it runs out.
    pub(crate) token: std::sync::Mutex<Option<String>>,
    /// What the token is for (`repository:NAME:pull`).
    pub(crate) scope: String,
    /// Where its requests may go (the token realm is the registry's to name).
    pub(crate) reach: crate::Reach,
}

impl Session {
    /// `path` (from `/v2/`) on the registry, as oci-client addresses it (`docker.io` is
    /// `index.docker.io`).
    pub(crate) fn url(&self, path: &str) -> String {
        let scheme = if self.insecure { "http" } else { "https" };
        format!("{scheme}://{}{path}", self.oci(None).resolve_registry())
    }

    /// A GET of `path` on the registry with the pull's credentials.
    pub(crate) fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let token = self.token.lock().unwrap_or_else(|p| p.into_inner()).clone();
        capped::get(&self.http, &self.url(path), token.as_deref(), &self.auth)
    }

    /// GETs `path` (accepting `accept`) and opens the answer. A handshake's token runs out
    /// (Docker Hub's after five minutes, a big pull takes longer): a 401 with one gets a fresh
    /// handshake and one retry.
    pub(crate) async fn fetch(&self, path: &str, accept: Option<&str>) -> Result<reqwest::Response, capped::Failed> {
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
                let fresh = capped::token(&self.http, &self.url("/v2/"), &self.scope, &self.auth, &self.reach).await?;
                *self.token.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
                capped::open(request()).await
            }
            other => other,
        }
    }

    /// A capped request's failure, as a message naming the registry; `what` is what answered.
    pub(crate) fn failed(&self, failed: capped::Failed, what: &str) -> RegistryError {
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
    pub(crate) fn oci(&self, digest: Option<Digest>) -> oci_client::Reference {
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
    pub(crate) async fn manifest(
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
    pub(crate) async fn blob(
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
    pub(crate) async fn upload(
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
}
