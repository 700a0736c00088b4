//! One link's session: the protocol's rules are `spore-session`'s, shared with the bare-metal
//! runner; this is the Linux runner's side of them — its store on disk, its apps, a thread per
//! run — and the loop that reads frames off the link and writes the answers.

use super::Runner;
use super::apps::{self, Watcher};
use super::store::Upload;
use crate::link::{FrameReader, FrameWriter, RawReader, RawWriter};
use spore_session::{Description, Entry, Refusal, Session};
use spore_wire::{
    Chunk, ChunkAck, Digest, ErrorCode, Instantiate, Interface, Message, ModuleBegin, RunnerLimits, Stats, StreamKind,
};
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// How long a link may take to say HELLO: an idle link does not hold a thread for long.
const HELLO_DEADLINE: Duration = Duration::from_secs(10);

/// What kind of link a session is on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkKind {
    /// HELLO must carry the runner's token (TCP).
    pub needs_token: bool,
    /// A serial line: it stays open whoever is at the other end, so it is never closed and has
    /// no HELLO deadline.
    pub serial: bool,
}

/// The runner as one link sees it: the runs it started, whose output goes to it.
struct Link {
    runner: Arc<Runner>,
    writer: Arc<FrameWriter>,
    watching: HashMap<u32, Arc<Watcher>>,
}

/// Serves one link until it closes.
pub(crate) fn serve(runner: Arc<Runner>, reader: RawReader, writer: RawWriter, peer: &str, kind: LinkKind) {
    let writer = Arc::new(FrameWriter::new(writer));
    let mut session = Session::new(Link { runner, writer: writer.clone(), watching: HashMap::new() }, kind.needs_token);
    let mut reader = FrameReader::new(reader, session.frame_limit());
    if !kind.serial {
        let _ = reader.set_timeout(Some(HELLO_DEADLINE));
    }
    let mut waiting_for_hello = !kind.serial;
    loop {
        let frame = match reader.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) if waiting_for_hello && matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
                eprintln!("spore-runner: link {peer}: no HELLO within {HELLO_DEADLINE:?}; closed");
                break;
            }
            Err(e) => {
                eprintln!("spore-runner: link {peer}: {e}");
                break;
            }
        };
        let answers = session.frame(frame.as_deref().map_err(Clone::clone));
        let mut refused_before_hello = false;
        for (id, answer) in answers {
            refused_before_hello |= session.max_payload().is_none()
                && matches!(&answer, Message::Error(e) if e.code == ErrorCode::UNAUTHORIZED);
            if writer.send(id, 0, &answer).is_err() {
                break;
            }
        }
        // A link that failed to authenticate gets no second guess (a serial line stays: it is
        // the only way in).
        if refused_before_hello && !kind.serial {
            break;
        }
        if let Some(m) = session.max_payload() {
            reader.set_max(m);
            if waiting_for_hello {
                waiting_for_hello = false;
                let _ = reader.set_timeout(None);
            }
        }
    }
    session.close();
}

impl spore_session::Runner for Link {
    type Upload = Upload;

    fn describe(&self) -> Description {
        let config = &self.runner.config;
        Description {
            runner: self.runner.id.clone(),
            backends: self.runner.engines.advertised(),
            limits: RunnerLimits {
                max_module_bytes: config.max_module_bytes,
                memory_bytes: config.memory_bytes,
                max_instances: config.max_instances,
            },
            interfaces: vec![Interface { name: "wasi_snapshot_preview1".into(), version: "1".into() }],
            devices: self.runner.devices(),
            max_payload: config.max_payload,
        }
    }

    fn token_matches(&self, token: &str) -> bool {
        let expected = self.runner.config.token.as_deref().unwrap_or("");
        !expected.is_empty() && spore_types::constant_time_eq(expected.as_bytes(), token.as_bytes())
    }

    fn begin(&mut self, m: &ModuleBegin) -> Result<(Message, Option<Upload>), Refusal> {
        self.runner.store.begin(m, &self.runner.engines)
    }

    fn received(&self, upload: &Upload) -> u64 {
        upload.received()
    }

    fn chunk(&mut self, upload: &mut Upload, c: &Chunk) -> Result<ChunkAck, Refusal> {
        self.runner.store.chunk(upload, c.digest, c.offset, &c.bytes)
    }

    fn complete(&mut self, upload: &Upload) -> Result<(), Refusal> {
        self.runner.store.complete(upload)
    }

    fn commit(&mut self, upload: Upload, digest: Digest) -> Result<(), Refusal> {
        self.runner.store.commit(upload, digest, &self.runner.engines)
    }

    fn release(&mut self, digest: &Digest, _: Upload) {
        // The part stays on disk, where the next MODULE_BEGIN resumes it.
        self.runner.store.release(digest);
    }

    fn instantiate(&mut self, spec: Instantiate) -> Result<u32, Refusal> {
        Ok(apps::instantiate(&self.runner, spec)?.id)
    }

    fn run(&mut self, request: u32, instance: u32, entry: Entry, max_payload: u32) -> Result<(), Refusal> {
        let app = self.runner.apps.get(instance)?;
        let watcher = Watcher::new(self.writer.clone(), request, max_payload);
        let writer = self.writer.clone();
        let accepted = Message::Accepted(spore_wire::Accepted { instance });
        // Sent by the run's thread before it runs, so ACCEPTED comes before any output.
        apps::run(&self.runner, &app, entry, Some(watcher.clone()), move || {
            let _ = writer.send(request, 0, &accepted);
        })?;
        self.watching.insert(instance, watcher);
        Ok(())
    }

    fn credit(&mut self, instance: u32, bytes: u32) {
        if let Some(w) = self.watching.get(&instance) {
            w.add_credit(bytes);
        }
    }

    fn kill(&mut self, instance: u32) -> Result<(), Refusal> {
        let app = self.runner.apps.get(instance)?;
        if !app.is_running() {
            return Err(Refusal::new(ErrorCode::CONFLICT, format!("{} is not running", app.spec.name)));
        }
        app.kill_and_wait()
    }

    fn drop_instance(&mut self, instance: u32) -> Result<(), Refusal> {
        let runner = &self.runner;
        let module = runner.apps.get(instance)?.spec.module;
        runner.apps.remove(instance)?;
        self.watching.remove(&instance);
        if runner.apps.uses(&module).is_empty() {
            runner.store.unload(&module);
        }
        Ok(())
    }

    fn drop_module(&mut self, digest: &Digest) -> Result<(), Refusal> {
        let users = self.runner.apps.uses(digest);
        if !users.is_empty() {
            return Err(Refusal::new(
                ErrorCode::CONFLICT,
                format!("apps use this module ({}); remove them first", users.join(", ")),
            ));
        }
        // An INSTANTIATE racing this finds the file gone and is refused (apps::instantiate).
        self.runner.store.remove(digest)
    }

    fn kept(&self, instance: u32, tail: u32) -> Result<Vec<(StreamKind, Vec<u8>)>, Refusal> {
        Ok(self.runner.apps.get(instance)?.kept(tail))
    }

    fn stats(&self) -> Stats {
        let runner = &self.runner;
        let instances: Vec<_> = runner.apps.all().iter().map(|a| a.info()).collect();
        Stats {
            uptime_ms: runner.started.elapsed().as_millis() as u64,
            memory_bytes: instances.iter().map(|i| i.memory_bytes).sum(),
            modules: runner.store.count(),
            instances,
        }
    }

    fn unwatch(&mut self) {
        for w in self.watching.values() {
            w.close();
        }
        self.watching.clear();
    }
}
