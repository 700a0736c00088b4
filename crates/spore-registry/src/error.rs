//! [`RegistryError`]: what went wrong talking to a registry, and the one mapping of
//! oci-client's errors (a push's) and of a capped request's status to it.

use crate::AuthError;
use crate::session::Session;
use oci_client::errors::{OciDistributionError, OciErrorCode};
use spore_image::{ImageError, StoreError};
use spore_types::Digest;

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

impl Session {
    /// A registry answer as a message naming the registry and saying what to do.
    pub(crate) fn error(&self, err: OciDistributionError) -> RegistryError {
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
