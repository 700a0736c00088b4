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
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// Answers kept for retransmitted requests.
const KEPT_ANSWERS: usize = 32;

/// Uploads one link may have under way at once.
const UPLOADS_PER_LINK: usize = 4;

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

/// Serves one link until it closes.
pub(crate) fn serve(runner: Arc<Runner>, reader: RawReader, writer: RawWriter, peer: &str, kind: LinkKind) {
    let max = runner.config.max_payload;
    let mut reader = FrameReader::new(reader, spore_wire::DEFAULT_MAX_PAYLOAD.min(max));
    if !kind.serial {
        let _ = reader.set_timeout(Some(HELLO_DEADLINE));
    }
    let mut session = Session {
        runner,
        writer: Arc::new(FrameWriter::new(writer)),
        needs_token: kind.needs_token,
        max_payload: None,
        uploads: HashMap::new(),
        watching: HashMap::new(),
        answered: VecDeque::new(),
    };
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
        let limit = session.max_payload.unwrap_or(spore_wire::DEFAULT_MAX_PAYLOAD.min(max));
        let answers = match frame {
            Err(e) => vec![(0, deframe_error(e))],
            Ok(bytes) => session.frame(&bytes, limit),
        };
        let limit = session.max_payload.unwrap_or(limit);
        let mut refused_before_hello = false;
        for (id, answer) in answers {
            refused_before_hello |= session.max_payload.is_none()
                && matches!(&answer, Message::Error(e) if e.code == ErrorCode::UNAUTHORIZED);
            if session.writer.send(id, 0, &fitted(answer, limit)).is_err() {
                break;
            }
        }
        // A link that failed to authenticate gets no second guess (a serial line stays: it is
        // the only way in).
        if refused_before_hello && !kind.serial {
            break;
        }
        if let Some(m) = session.max_payload {
            reader.set_max(m);
            if waiting_for_hello {
                waiting_for_hello = false;
                let _ = reader.set_timeout(None);
            }
        }
    }
    session.close();
}

/// `answer`, or a TOO_LARGE error if its payload is over what the agent accepts.
fn fitted(answer: Message, max_payload: u32) -> Message {
    let len = answer.payload().len();
    match len > max_payload as usize {
        true => Refusal::new(
            ErrorCode::TOO_LARGE,
            format!("the {} answer is {len} bytes, more than the {max_payload} negotiated; say HELLO with a larger max_payload", answer.name()),
        )
        .into_message(),
        false => answer,
    }
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
        // LOGS answers are long and harmless to repeat: not kept for retransmission.
        let kept = !matches!(message, Message::Logs(_));
        let answers: Vec<Message> = match self.request(id, message) {
            Ok(answers) => answers,
            Err(refusal) => vec![refusal.into_message()],
        };
        if !answers.is_empty() && kept {
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
                if let Some(up) = self.uploads.get(&m.digest) {
                    // This link's own upload, begun again (an agent that lost the answer).
                    return one(Message::SendFrom(spore_wire::SendFrom { digest: m.digest, offset: up.received() }));
                }
                if self.uploads.len() >= UPLOADS_PER_LINK {
                    return Err(Refusal::new(
                        ErrorCode::EXHAUSTED,
                        format!("{UPLOADS_PER_LINK} uploads are under way on this link; commit one first"),
                    ));
                }
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
                let up = self.uploads.get_mut(&c.digest).ok_or_else(no_upload)?;
                // Bytes missing: the upload stays, to be completed.
                runner.store.complete(up)?;
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
                app.kill_and_wait()?;
                one(Message::Done(()))
            }
            Message::Drop(DropTarget::Instance(i)) => {
                let module = runner.apps.get(i)?.spec.module;
                runner.apps.remove(i)?;
                self.watching.remove(&i);
                if runner.apps.uses(&module).is_empty() {
                    runner.store.unload(&module);
                }
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
                // An INSTANTIATE racing this finds the file gone and is refused (apps::instantiate).
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
        // A HELLO starts the link afresh (on a serial line, the next agent's): nothing of an
        // earlier agent's carries over — its answers, uploads or runs.
        self.close();
        self.uploads.clear();
        self.watching.clear();
        self.answered.clear();
        self.max_payload = None;
        if self.needs_token {
            let expected = self.runner.config.token.as_deref().unwrap_or("");
            if expected.is_empty() || !spore_types::constant_time_eq(expected.as_bytes(), hello.token.as_bytes()) {
                return Err(Refusal::new(ErrorCode::UNAUTHORIZED, "wrong or missing token for this runner's TCP link"));
            }
        }
        if hello.min_version > VERSION || hello.max_version < VERSION {
            return Err(Refusal::new(
                ErrorCode::VERSION,
                format!(
                    "this runner speaks protocol version {VERSION}; the agent speaks {}..={}: update one of them",
                    hello.min_version, hello.max_version
                ),
            ));
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
        let watcher = Watcher::new(self.writer.clone(), id, max_payload);
        let accepted = Message::Accepted(Accepted { instance });
        let (writer, first) = (self.writer.clone(), accepted.clone());
        // Sent by the run's thread before it runs, so ACCEPTED comes before any output.
        apps::run(&self.runner, &app, entry, Some(watcher.clone()), move || {
            let _ = writer.send(id, 0, &first);
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
    Refusal::new(ErrorCode::UNKNOWN_MODULE, "no upload of this module under way on this link; send MODULE_BEGIN first")
}

/// The request id of a frame whose header is sound.
fn request_id(bytes: &[u8]) -> u32 {
    bytes.get(8..12).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}
