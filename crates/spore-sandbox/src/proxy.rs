//! One HTTP request through a `wasi:http` proxy component: a fresh store and instance from
//! the program's pre-instantiated component (the pooling allocator makes this cheap), the
//! request handed to `wasi:http/incoming-handler.handle`, and the response the guest sets.
//!
//! The guest keeps running after it has sent the response head (it may still be streaming the
//! body), so the call runs as its own task; the response is returned as soon as it exists.

use crate::runner::Runnable;
use crate::spec::SandboxSpec;
use crate::stdio::Sinks;
use crate::{Meter, SandboxError};
use std::sync::Arc;
use std::time::Duration;
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
        "{program} is not an HTTP app: it does not export wasi:http/incoming-handler (the wasi:http/proxy world); its exports: {exports}"
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

impl Runnable {
    /// Handles one request in a fresh sandbox described by `spec`; gives up after `timeout`.
    pub async fn handle<B>(
        self: &Arc<Self>,
        spec: &SandboxSpec,
        sinks: &Sinks,
        request: hyper::Request<B>,
        timeout: Duration,
    ) -> Result<ProxyResponse, HandleError>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let Some(pre) = self.proxy_pre().cloned() else {
            return Err(HandleError::NotHttp { program: self.name.clone(), exports: self.describe_exports() });
        };
        let (mut store, _captured) = self.store(spec, sinks, Arc::new(Meter::default())).await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let setup = |e: wasmtime::Error| HandleError::Guest(format!("{e:#}"));
        let req = store.data_mut().http().new_incoming_request(Scheme::Http, request).map_err(setup)?;
        let out = store.data_mut().http().new_response_outparam(tx).map_err(setup)?;
        let task = tokio::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            store.data().cpu.mark_entered();
            proxy.wasi_http_incoming_handler().call_handle(&mut store, req, out).await
        });
        let abort = task.abort_handle();
        let outcome = tokio::time::timeout(timeout, async {
            match rx.await {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(code)) => Err(HandleError::Guest(format!("the app answered with the error {code:?}"))),
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

/// A guest failure in one line: the trap or limit, not wasmtime's whole chain.
fn describe(err: &wasmtime::Error) -> String {
    if err.downcast_ref::<crate::limits::CpuTimeExceeded>().is_some() {
        return "the app used up its CPU time".into();
    }
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("the app trapped: {trap}"),
        None => format!("{err:#}"),
    }
}
