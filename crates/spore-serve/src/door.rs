//! Front doors: how every HTTP listener of Spore — the daemon's API (Unix socket and TCP),
//! `spore serve`/`up`, the daemon's HTTP apps and the shim's — holds its connections, so that a
//! client who opens connections and sends nothing (or a byte at a time) cannot take them all.
//!
//! Two bounds, the same everywhere: a connection must deliver a request's headers within
//! `header_read_timeout` of the server starting to wait for them — on a fresh connection and
//! between the requests of a kept-alive one, so it is the idle timeout too — or it is closed;
//! and at most `max_connections` are open at once (beyond it the listener stops accepting, and
//! new clients wait in the kernel's backlog until a connection closes).

use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A listener's connection bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Door {
    /// Longest wait for a request's headers (and so for the next request on an idle
    /// kept-alive connection).
    pub header_read_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Default for Door {
    fn default() -> Self {
        Door { header_read_timeout: Duration::from_secs(30), max_connections: 1024 }
    }
}

impl Door {
    /// An HTTP/1.1 connection builder holding these bounds (its timer is tokio's: without one,
    /// hyper's header timeout silently does nothing).
    pub fn http1(&self) -> http1::Builder {
        let mut b = http1::Builder::new();
        b.timer(TokioTimer::new()).header_read_timeout(self.header_read_timeout).keep_alive(true);
        b
    }

    /// The gate a listener passes each connection through: hold the permit for the
    /// connection's life.
    pub fn gate(&self) -> Gate {
        Gate(Arc::new(Semaphore::new(self.max_connections.max(1))))
    }
}

/// Open connections, counted.
#[derive(Clone)]
pub struct Gate(Arc<Semaphore>);

impl Gate {
    /// Waits until a connection may be accepted.
    pub async fn enter(&self) -> OwnedSemaphorePermit {
        self.0.clone().acquire_owned().await.expect("the gate's semaphore is never closed")
    }
}
