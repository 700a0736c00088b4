//! The single epoch ticker of a process. Every running guest checks the engine's epoch at
//! function entries and loop back-edges; one thread bumping it is all the preemption, CPU
//! accounting and timeout machinery needs — no timer or thread per sandbox.

use std::time::Duration;
use wasmtime::EngineWeak;

/// Starts the ticker. It holds only a weak reference and exits once the engine is dropped.
pub(crate) fn start(engine: EngineWeak, tick: Duration) {
    let spawned = std::thread::Builder::new().name("spore-epoch".into()).spawn(move || {
        loop {
            std::thread::sleep(tick);
            match engine.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
        }
    });
    if let Err(err) = spawned {
        // Without a ticker guests still run; they just cannot be preempted or time-limited.
        tracing::error!("cannot start the epoch ticker thread ({err}); CPU and timeout limits will not fire");
    }
}
