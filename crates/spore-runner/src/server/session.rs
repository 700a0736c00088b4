//! One link's session: `HELLO` first (with the token on TCP), then requests answered in order.
//! Every bad frame or request gets an `ERROR` and the session goes on; a retransmitted request
//! that was already carried out gets its answer again, not a second doing.

use super::apps::{self, Entry, Watcher};
use super::store::Upload;
use super::{Refusal, Runner};
use crate::link::{FrameReader, FrameWriter, RawReader, RawWriter};
use spore_wire::{
    Accepted, DeframeError, Digest, DropTarget, ErrorCode, FLAG_RETRANSMIT, Hello, HelloAck, Message, Output, Pong,
    RunnerLimits, Stats, VERSION,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Answers kept for retransmitted requests.
const KEPT_ANSWERS: usize = 32;

struct Session {
    runner: Arc<Runner>,
    writer: Arc<FrameWriter>,
    needs_token: bool,
    /// Negotiated by `HELLO`; `None` before it.
    max_payload: Option<u32>,
    uploads: HashMap<Digest, Upload>,
    /// Runs this link started, whose output it may give credit for.
    watching: HashMap<u32, Arc<Watcher>>,
    answered: VecDeque<(u32, Vec<Vec<u8>>)>,
}

/// Serves one link until it closes.
pub(crate) fn serve(runner: Arc<Runner>, reader: RawReader, writer: RawWriter, peer: &str, needs_token: bool) {
    let max = runner.config.max_payload;
    let mut reader = FrameReader::new(reader, spore_wire::DEFAULT_MAX_PAYLOAD.min(max));
    let mut session = Session {
        runner,
        writer: Arc::new(FrameWriter::new(writer)),
        needs_token,
        max_payload: None,
        uploads: HashMap::new(),
        watching: HashMap::new(),
        answered: VecDeque::new(),
    };
    loop {
        let frame = match reader.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                eprintln!("spore-runner: link {peer}: {e}");
                break;
            }
        };
        let limit = session.max_payload.unwrap_or(spore_wire::DEFAULT_MAX_PAYLOAD.min(max));
        let answers = match frame {
            Err(e) => vec![(0, deframe_error(e))],
            Ok(bytes) => session.frame(&bytes, limit),
        };
        for (id, answer) in answers {
            if session.writer.send(id, 0, &answer).is_err() {
                break;
            }
        }
        if let Some(m) = session.max_payload {
            reader.set_max(m);
        }
    }
    session.close();
}

fn deframe_error(e: DeframeError) -> Message {
    let code = match e {
        DeframeError::TooLong { .. } => ErrorCode::TOO_LARGE,
        _ => ErrorCode::BAD_FRAME,
    };
    Refusal::new(code, format!("{e}; the frame was dropped, send it again")).into_message()
}

impl Session {
    /// Answers one frame: `(request id, message)` pairs to send.
    fn frame(&mut self, bytes: &[u8], max_payload: u32) -> Vec<(u32, Message)> {
        let (header, message) = match spore_wire::decode(bytes, max_payload) {
            Ok(decoded) => decoded,
            Err(e) => {
                // The id is only trusted from a frame whose CRC held (a payload error).
                let id = match &e {
                    spore_wire::WireError::Message(_) => request_id(bytes),
                    spore_wire::WireError::Frame(_) => 0,
                };
                return vec![(id, Refusal::new(e.code(), e.to_string()).into_message())];
            }
        };
        let id = header.request_id;
        if header.flags & FLAG_RETRANSMIT != 0
            && let Some((_, frames)) = self.answered.iter().find(|(i, _)| *i == id)
        {
            for f in frames.clone() {
                let _ = self.writer.send_raw(&f);
            }
            return Vec::new();
        }
        let answers: Vec<Message> = match self.request(id, message) {
            Ok(answers) => answers,
            Err(refusal) => vec![refusal.into_message()],
        };
        if !answers.is_empty() {
            self.keep_answer(id, &answers);
        }
        answers.into_iter().map(|m| (id, m)).collect()
    }

    fn keep_answer(&mut self, id: u32, answers: &[Message]) {
        self.answered.push_back((id, answers.iter().map(|m| spore_wire::to_stream(id, 0, m)).collect()));
        if self.answered.len() > KEPT_ANSWERS {
            self.answered.pop_front();
        }
    }

    fn request(&mut self, id: u32, message: Message) -> Result<Vec<Message>, Refusal> {
        let Some(max_payload) = self.max_payload else {
            return match message {
                Message::Hello(hello) => self.hello(hello).map(|ack| vec![ack]),
                other => Err(Refusal::new(
                    ErrorCode::UNAUTHORIZED,
                    format!("{} before HELLO; every link starts with HELLO", other.name()),
                )),
            };
        };
        let runner = &self.runner;
        let one = |m: Message| Ok(vec![m]);
        match message {
            Message::Hello(hello) => self.hello(hello).map(|ack| vec![ack]),
            Message::ModuleBegin(m) => {
                let (answer, upload) = runner.store.begin(&m, &runner.engines)?;
                if let Some(up) = upload {
                    self.uploads.insert(m.digest, up);
                }
                one(answer)
            }
            Message::Chunk(c) => {
                let up = self.uploads.get_mut(&c.digest).ok_or_else(no_upload)?;
                one(Message::ChunkAck(runner.store.chunk(up, c.digest, c.offset, &c.bytes)?))
            }
            Message::Commit(c) => {
                let up = self.uploads.remove(&c.digest).ok_or_else(no_upload)?;
                runner.store.commit(up, c.digest, &runner.engines)?;
                one(Message::Done(()))
            }
            Message::Instantiate(spec) => {
                let app = apps::instantiate(runner, spec)?;
                one(Message::Instance(spore_wire::Instance { id: app.id }))
            }
            Message::Run(r) => self.start(id, r.instance, Entry::Start, max_payload),
            Message::Invoke(i) => self.start(id, i.instance, Entry::Export(i.export, i.args), max_payload),
            Message::Credit(c) => {
                // No answer: credit is a stream of its own, and a late one for an ended run is harmless.
                if let Some(w) = self.watching.get(&c.instance) {
                    w.add_credit(c.bytes);
                }
                Ok(Vec::new())
            }
            Message::Kill(k) => {
                let app = runner.apps.get(k.instance)?;
                if !app.is_running() {
                    return Err(Refusal::new(ErrorCode::CONFLICT, format!("{} is not running", app.spec.name)));
                }
                app.kill();
                one(Message::Done(()))
            }
            Message::Drop(DropTarget::Instance(i)) => {
                runner.apps.remove(i)?;
                self.watching.remove(&i);
                one(Message::Done(()))
            }
            Message::Drop(DropTarget::Module(d)) => {
                let users = runner.apps.uses(&d);
                if !users.is_empty() {
                    return Err(Refusal::new(
                        ErrorCode::CONFLICT,
                        format!("apps use this module ({}); remove them first", users.join(", ")),
                    ));
                }
                runner.store.remove(&d)?;
                one(Message::Done(()))
            }
            Message::Logs(l) => {
                let app = runner.apps.get(l.instance)?;
                let chunk = max_payload.saturating_sub(64).max(64) as usize;
                let mut out = Vec::new();
                for (stream, bytes) in app.kept(l.tail) {
                    for piece in bytes.chunks(chunk) {
                        out.push(Message::Output(Output { instance: app.id, stream, bytes: piece.to_vec() }));
                    }
                }
                out.push(Message::Done(()));
                Ok(out)
            }
            Message::Ping(p) => one(Message::Pong(Pong { nonce: p.nonce })),
            Message::StatsRequest(()) => {
                let instances: Vec<_> = runner.apps.all().iter().map(|a| a.info()).collect();
                one(Message::Stats(Stats {
                    uptime_ms: runner.started.elapsed().as_millis() as u64,
                    memory_bytes: instances.iter().map(|i| i.memory_bytes).sum(),
                    modules: runner.store.count(),
                    instances,
                }))
            }
            other => Err(Refusal::new(
                ErrorCode::UNKNOWN_TYPE,
                format!("{} is a runner's message, not a request", other.name()),
            )),
        }
    }

    fn hello(&mut self, hello: Hello) -> Result<Message, Refusal> {
        if hello.min_version > VERSION || hello.max_version < VERSION {
            return Err(Refusal::new(
                ErrorCode::VERSION,
                format!(
                    "this runner speaks protocol version {VERSION}; the agent speaks {}..={}: update one of them",
                    hello.min_version, hello.max_version
                ),
            ));
        }
        if self.needs_token {
            let expected = self.runner.config.token.as_deref().unwrap_or("");
            if expected.is_empty() || !same(expected.as_bytes(), hello.token.as_bytes()) {
                return Err(Refusal::new(ErrorCode::UNAUTHORIZED, "wrong or missing token for this runner's TCP link"));
            }
        }
        let max_payload = hello.max_payload.min(self.runner.config.max_payload).max(spore_wire::frame::MIN_MAX_PAYLOAD);
        self.max_payload = Some(max_payload);
        let config = &self.runner.config;
        Ok(Message::HelloAck(HelloAck {
            version: VERSION,
            max_payload,
            runner: self.runner.id.clone(),
            backends: self.runner.engines.advertised(),
            limits: RunnerLimits {
                max_module_bytes: config.max_module_bytes,
                memory_bytes: config.memory_bytes,
                max_instances: config.max_instances,
            },
            interfaces: vec![spore_wire::Interface { name: "wasi_snapshot_preview1".into(), version: "1".into() }],
        }))
    }

    fn start(&mut self, id: u32, instance: u32, entry: Entry, max_payload: u32) -> Result<Vec<Message>, Refusal> {
        let app = self.runner.apps.get(instance)?;
        let watcher = Watcher::new(self.writer.clone(), id, 4 * u64::from(max_payload));
        let accepted = Message::Accepted(Accepted { instance });
        let writer = self.writer.clone();
        // Sent once the run is sure to start and before it can write, so ACCEPTED comes first.
        apps::run(&self.runner, &app, entry, Some(watcher.clone()), || {
            let _ = writer.send(id, 0, &accepted);
        })?;
        self.watching.insert(instance, watcher);
        self.keep_answer(id, &[accepted]);
        Ok(Vec::new())
    }

    /// The link is gone: its uploads may be resumed by another, its runs go on unwatched.
    fn close(&mut self) {
        for digest in self.uploads.keys() {
            self.runner.store.release(digest);
        }
        for w in self.watching.values() {
            w.close();
        }
    }
}

fn no_upload() -> Refusal {
    Refusal::new(ErrorCode::BAD_OFFSET, "no upload of this module under way on this link; send MODULE_BEGIN first")
}

/// The request id of a frame whose header is sound.
fn request_id(bytes: &[u8]) -> u32 {
    bytes.get(8..12).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Compares secrets in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
