//! Output sinks: how an embedder (the daemon's log writer, a test capturing output) receives a
//! guest's stdout/stderr without a thread, task or pipe per stream.
//!
//! A sink's `write` is called synchronously from the guest's WASI call and must not block: the
//! guest never waits on its reader. What a sink cannot keep it drops and counts — a log flood
//! costs the flooding sandbox its excess output, never its neighbours their progress.

use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Receives what a guest writes to one of its output streams.
pub trait OutputSink: Send + Sync + 'static {
    /// Takes bytes the guest wrote. Must not block; may drop what it cannot keep.
    fn write(&self, bytes: &[u8]);
}

/// Adapts a sink to wasmtime-wasi's stream traits (both the p2 stream used by components and
/// by the p1 adapter, and the `AsyncWrite` form).
#[derive(Clone)]
pub(crate) struct SinkStream(pub(crate) Arc<dyn OutputSink>);

/// Largest write a guest may issue at once; guests loop for more.
const WRITE_BUDGET: usize = 64 << 10;

impl IsTerminal for SinkStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for SinkStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for SinkStream {
    async fn ready(&mut self) {}
}

impl OutputStream for SinkStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.0.write(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

impl AsyncWrite for SinkStream {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.0.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Keeps up to `capacity` bytes in memory and counts the rest: the sink behind
/// [`crate::Output::Pipe`].
pub struct CaptureSink {
    inner: Mutex<(Vec<u8>, u64)>,
    capacity: usize,
}

impl CaptureSink {
    /// A capture of at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        CaptureSink { inner: Mutex::new((Vec::new(), 0)), capacity }
    }

    /// What was kept, and how many bytes were dropped beyond the capacity.
    pub fn contents(&self) -> (Vec<u8>, u64) {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (guard.0.clone(), guard.1)
    }
}

impl OutputSink for CaptureSink {
    fn write(&self, bytes: &[u8]) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let room = self.capacity.saturating_sub(guard.0.len());
        let keep = room.min(bytes.len());
        guard.0.extend_from_slice(&bytes[..keep]);
        guard.1 += (bytes.len() - keep) as u64;
    }
}
