//! An HTTP app in a pod: served from the container as `spore serve` serves it.

use spore_sandbox::{Runnable, SandboxSpec, Sinks};
use spore_serve::ServerLimits;
use std::sync::Arc;

/// Where an HTTP app listens in its container unless `SPORE_HTTP_LISTEN` (in the pod's env)
/// says otherwise: every address on port 80, as a `containerPort: 80` and a Service expect.
const DEFAULT_HTTP_LISTEN: &str = "0.0.0.0:80";

/// An HTTP app (a `wasi:http` proxy component): served from the container as `spore serve`
/// serves it, a fresh instance per request, until SIGTERM or SIGINT, which stop it gracefully
/// (requests in flight finish; then status 0).
pub(crate) async fn serve(name: String, runnable: Arc<Runnable>, spec: SandboxSpec) -> anyhow::Result<i32> {
    let listen = spec.env.get("SPORE_HTTP_LISTEN").cloned().unwrap_or_else(|| DEFAULT_HTTP_LISTEN.into());
    let app = spore_serve::App { name: name.clone(), runnable, spec, spin_headers: false };
    spore_serve::serve_app(app, &listen, ServerLimits::default(), Sinks::default(), spore_serve::shutdown_signal())
        .await
        .map_err(|message| anyhow::anyhow!("{name}: {message}; set SPORE_HTTP_LISTEN in the pod's env to ADDR:PORT"))?;
    Ok(0)
}
