//! What every Spore edge runner does with one link, whatever it runs on: the Linux runner (a
//! thread per link) and the bare-metal one (one loop) both feed a [`Session`] the frames that
//! arrive and send what it answers. The protocol's rules live here once: `HELLO` first (with
//! the token where the link needs one), the payload size negotiated, requests answered in
//! order, a retransmitted request answered again and not carried out twice, uploads bounded
//! per link, every bad frame or request an `ERROR` and the session going on.
//!
//! What a runner *has* — its module store, its apps, how it runs them — stays behind the
//! [`Runner`] trait, so a rule changed here holds on every runner.
//!
//! `no_std + alloc`. Depends on `spore-wire` only.

#![no_std]

extern crate alloc;

#[cfg(test)]
mod tests;

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use spore_wire::{
    Backend, Chunk, ChunkAck, DeframeError, Device, Digest, DropTarget, ErrorCode, FLAG_RETRANSMIT, Hello, HelloAck,
    InstanceState, Instantiate, Interface, Message, ModuleBegin, Outcome, Output, Pong, RunnerLimits, SendFrom, Stats,
    StreamKind, VERSION, Value,
};

/// Answers kept for retransmitted requests.
const KEPT_ANSWERS: usize = 32;

/// Uploads one link may have under way at once.
pub const UPLOADS_PER_LINK: usize = 4;

/// A request refused: the code and the message of the `ERROR` that answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Its code.
    pub code: ErrorCode,
    /// What was wrong and what to do.
    pub message: String,
}

impl Refusal {
    /// A refusal with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal { code, message: message.into() }
    }

    /// The `ERROR` that says it.
    pub fn into_message(self) -> Message {
        Message::Error(spore_wire::Error { code: self.code, message: self.message })
    }
}

/// What a run calls.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// The command's `_start`.
    Start,
    /// An exported function, with its arguments.
    Export(String, Vec<Value>),
}

/// What a runner says of itself in `HELLO_ACK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// Its stable id.
    pub runner: String,
    /// Its engines.
    pub backends: Vec<Backend>,
    /// What it holds at most.
    pub limits: RunnerLimits,
    /// The host interfaces its apps may import.
    pub interfaces: Vec<Interface>,
    /// The devices it can grant an app.
    pub devices: Vec<Device>,
    /// The largest payload it accepts.
    pub max_payload: u32,
}

/// A runner's side of a session: its store, its apps, its runs. Each method is one request's
/// effect; the session has already checked that the link said `HELLO`, matched the answer to
/// the request, and kept it for a retransmission.
pub trait Runner {
    /// An upload under way on this link.
    type Upload;

    /// What `HELLO_ACK` says.
    fn describe(&self) -> Description;
    /// Whether `token` is this runner's (asked only on links that need one).
    fn token_matches(&self, token: &str) -> bool;

    /// `MODULE_BEGIN`: `HAVE`, or `SEND_FROM` with the upload to continue.
    fn begin(&mut self, m: &ModuleBegin) -> Result<(Message, Option<Self::Upload>), Refusal>;
    /// Bytes of `upload` held from the start.
    fn received(&self, upload: &Self::Upload) -> u64;
    /// `CHUNK`: bytes at an offset of an upload.
    fn chunk(&mut self, upload: &mut Self::Upload, chunk: &Chunk) -> Result<ChunkAck, Refusal>;
    /// Whether every byte of `upload` is there (if not, it stays, to be completed).
    fn complete(&mut self, upload: &Self::Upload) -> Result<(), Refusal>;
    /// `COMMIT`: verifies, loads and keeps a complete upload under `digest`.
    fn commit(&mut self, upload: Self::Upload, digest: Digest) -> Result<(), Refusal>;
    /// The link gave up an upload (a new `HELLO`, or the link closed): another may resume it.
    fn release(&mut self, digest: &Digest, upload: Self::Upload);

    /// `INSTANTIATE`: a new app; its id.
    fn instantiate(&mut self, spec: Instantiate) -> Result<u32, Refusal>;
    /// `RUN`/`INVOKE`: starts a run of `instance` whose output, `ACCEPTED` first, and `EXIT`
    /// go out under `request` within this link's credit; pieces of at most `max_payload`.
    fn run(&mut self, request: u32, instance: u32, entry: Entry, max_payload: u32) -> Result<(), Refusal>;
    /// `CREDIT` for a run this link started (a late one for an ended run is ignored).
    fn credit(&mut self, instance: u32, bytes: u32);
    /// `KILL`: answered once the run has ended.
    fn kill(&mut self, instance: u32) -> Result<(), Refusal>;
    /// `DROP` of an instance (killed first).
    fn drop_instance(&mut self, instance: u32) -> Result<(), Refusal>;
    /// `DROP` of a module no app uses.
    fn drop_module(&mut self, digest: &Digest) -> Result<(), Refusal>;
    /// `LOGS`: the output an instance's last run left, its last `tail` bytes.
    fn kept(&self, instance: u32, tail: u32) -> Result<Vec<(StreamKind, Vec<u8>)>, Refusal>;
    /// `STATS`.
    fn stats(&self) -> Stats;
    /// The link starts afresh or is gone: the runs it started go on unwatched.
    fn unwatch(&mut self);
}

/// One link's session.
pub struct Session<R: Runner> {
    /// The runner behind it.
    pub runner: R,
    needs_token: bool,
    /// Negotiated by `HELLO`; `None` before it.
    max_payload: Option<u32>,
    uploads: BTreeMap<Digest, R::Upload>,
    answered: VecDeque<(u32, Vec<Message>)>,
}

impl<R: Runner> Session<R> {
    /// A session on a link that needs the runner's token in `HELLO` (TCP) or not.
    pub fn new(runner: R, needs_token: bool) -> Session<R> {
        Session { runner, needs_token, max_payload: None, uploads: BTreeMap::new(), answered: VecDeque::new() }
    }

    /// The payload size agreed by `HELLO`; `None` until the link has said it.
    pub fn max_payload(&self) -> Option<u32> {
        self.max_payload
    }

    /// The largest payload a frame may have now: the agreed one, or before `HELLO` the
    /// smaller of the protocol's default and the runner's.
    pub fn frame_limit(&self) -> u32 {
        self.max_payload.unwrap_or_else(|| spore_wire::DEFAULT_MAX_PAYLOAD.min(self.runner.describe().max_payload))
    }

    /// Answers one frame off the link (or the deframer's error for bytes that were not one):
    /// `(request id, message)` pairs to send, in order. Each fits the agreed payload size.
    pub fn frame(&mut self, frame: Result<&[u8], DeframeError>) -> Vec<(u32, Message)> {
        let limit = self.frame_limit();
        let answers = match frame {
            Err(e) => vec![(0, deframe_error(e))],
            Ok(bytes) => self.decoded(bytes, limit),
        };
        let limit = self.frame_limit();
        answers.into_iter().map(|(id, m)| (id, fitted(m, limit))).collect()
    }

    /// The link is gone: its uploads may be resumed by another, its runs go on unwatched.
    pub fn close(&mut self) {
        for (digest, upload) in core::mem::take(&mut self.uploads) {
            self.runner.release(&digest, upload);
        }
        self.runner.unwatch();
    }

    fn decoded(&mut self, bytes: &[u8], limit: u32) -> Vec<(u32, Message)> {
        let (header, message) = match spore_wire::decode(bytes, limit) {
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
        // A retransmitted request gets its kept answer, the newest under its id. Never a
        // HELLO: every agent starts at id 1, and a new agent's HELLO sent again must start
        // its link afresh, not get the last agent's acknowledgement.
        if header.flags & FLAG_RETRANSMIT != 0
            && !matches!(message, Message::Hello(_))
            && let Some((_, kept)) = self.answered.iter().rev().find(|(i, _)| *i == id)
        {
            return kept.iter().map(|m| (id, m.clone())).collect();
        }
        // LOGS answers are long and harmless to repeat: not kept for retransmission.
        let kept = !matches!(message, Message::Logs(_));
        let answers = self.request(id, message).unwrap_or_else(|refusal| vec![refusal.into_message()]);
        if !answers.is_empty() && kept {
            self.keep(id, answers.clone());
        }
        answers.into_iter().map(|m| (id, m)).collect()
    }

    fn keep(&mut self, id: u32, answers: Vec<Message>) {
        self.answered.push_back((id, answers));
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
        let one = |m: Message| Ok(vec![m]);
        let runner = &mut self.runner;
        match message {
            Message::Hello(hello) => self.hello(hello).map(|ack| vec![ack]),
            Message::ModuleBegin(m) => {
                if let Some(up) = self.uploads.get(&m.digest) {
                    // This link's own upload, begun again (an agent that lost the answer).
                    return one(Message::SendFrom(SendFrom { digest: m.digest, offset: runner.received(up) }));
                }
                if self.uploads.len() >= UPLOADS_PER_LINK {
                    return Err(Refusal::new(
                        ErrorCode::EXHAUSTED,
                        format!("{UPLOADS_PER_LINK} uploads are under way on this link; commit one first"),
                    ));
                }
                let (answer, upload) = runner.begin(&m)?;
                if let Some(up) = upload {
                    self.uploads.insert(m.digest, up);
                }
                one(answer)
            }
            Message::Chunk(c) => {
                let up = self.uploads.get_mut(&c.digest).ok_or_else(no_upload)?;
                one(Message::ChunkAck(runner.chunk(up, &c)?))
            }
            Message::Commit(c) => {
                let up = self.uploads.get(&c.digest).ok_or_else(no_upload)?;
                // Bytes missing: the upload stays, to be completed.
                runner.complete(up)?;
                let up = self.uploads.remove(&c.digest).ok_or_else(no_upload)?;
                runner.commit(up, c.digest)?;
                one(Message::Done(()))
            }
            Message::Instantiate(spec) => {
                check_name(&spec.name)?;
                check_devices(&spec.devices, &runner.describe().devices)?;
                one(Message::Instance(spore_wire::Instance { id: runner.instantiate(spec)? }))
            }
            Message::Run(r) => self.start(id, r.instance, Entry::Start, max_payload),
            Message::Invoke(i) => self.start(id, i.instance, Entry::Export(i.export, i.args), max_payload),
            Message::Credit(c) => {
                // No answer: credit is a stream of its own.
                runner.credit(c.instance, c.bytes);
                Ok(Vec::new())
            }
            Message::Kill(k) => {
                runner.kill(k.instance)?;
                one(Message::Done(()))
            }
            Message::Drop(DropTarget::Instance(i)) => {
                runner.drop_instance(i)?;
                one(Message::Done(()))
            }
            Message::Drop(DropTarget::Module(d)) => {
                runner.drop_module(&d)?;
                one(Message::Done(()))
            }
            Message::Logs(l) => {
                let chunk = max_payload.saturating_sub(64).max(64) as usize;
                let mut out = Vec::new();
                for (stream, bytes) in runner.kept(l.instance, l.tail)? {
                    for piece in bytes.chunks(chunk) {
                        out.push(Message::Output(Output { instance: l.instance, stream, bytes: piece.to_vec() }));
                    }
                }
                out.push(Message::Done(()));
                Ok(out)
            }
            Message::Ping(p) => one(Message::Pong(Pong { nonce: p.nonce })),
            Message::StatsRequest(()) => one(fit_stats(runner.stats(), max_payload)),
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
        self.answered.clear();
        self.max_payload = None;
        if self.needs_token && !self.runner.token_matches(&hello.token) {
            return Err(Refusal::new(ErrorCode::UNAUTHORIZED, "wrong or missing token for this runner's TCP link"));
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
        let described = self.runner.describe();
        let max_payload = hello.max_payload.min(described.max_payload).max(spore_wire::frame::MIN_MAX_PAYLOAD);
        self.max_payload = Some(max_payload);
        Ok(Message::HelloAck(HelloAck {
            version: VERSION,
            max_payload,
            runner: described.runner,
            backends: described.backends,
            limits: described.limits,
            interfaces: described.interfaces,
            devices: described.devices,
        }))
    }

    fn start(&mut self, id: u32, instance: u32, entry: Entry, max_payload: u32) -> Result<Vec<Message>, Refusal> {
        self.runner.run(id, instance, entry, max_payload)?;
        // The runner sends ACCEPTED itself, before the run's output; kept for a retransmission.
        self.keep(id, vec![Message::Accepted(spore_wire::Accepted { instance })]);
        Ok(Vec::new())
    }
}

/// `answer`, or a TOO_LARGE error if its payload is over what the agent accepts.
fn fitted(answer: Message, max_payload: u32) -> Message {
    let len = answer.payload().len();
    match len > max_payload as usize {
        true => Refusal::new(
            ErrorCode::TOO_LARGE,
            format!(
                "the {} answer is {len} bytes, more than the {max_payload} negotiated; say HELLO with a larger max_payload",
                answer.name()
            ),
        )
        .into_message(),
        false => answer,
    }
}

/// Longest message text an `EXIT` carries (a trap's, a limit's): with the frame's other
/// fields it fits the smallest payload an agent may agree ([`spore_wire::frame::MIN_MAX_PAYLOAD`]).
pub const MAX_MESSAGE: usize = 512;

/// `outcome` with its message cut to [`MAX_MESSAGE`], as every runner sends it.
pub fn short(outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Trapped(mut m) => {
            cut(&mut m, MAX_MESSAGE);
            Outcome::Trapped(m)
        }
        Outcome::Limit { limit, mut message } => {
            cut(&mut message, MAX_MESSAGE);
            Outcome::Limit { limit, message }
        }
        other => other,
    }
}

/// Longest message of an ended app's outcome in a `STATS` too long for the link (`LOGS` and
/// the run's own `EXIT` have the whole).
const STATS_MESSAGE: usize = 80;

/// `STATS` within the payload size: if all of it does not fit, the outcomes' messages are cut.
fn fit_stats(mut stats: Stats, max_payload: u32) -> Message {
    if Message::Stats(stats.clone()).payload().len() > max_payload as usize {
        for info in &mut stats.instances {
            if let InstanceState::Ended(Outcome::Trapped(m) | Outcome::Limit { message: m, .. }) = &mut info.state {
                cut(m, STATS_MESSAGE);
            }
        }
    }
    Message::Stats(stats)
}

/// Cuts `text` to at most `max` bytes, at a character boundary, marking the cut with `…`.
pub fn cut(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
}

/// Whether `name` may name an app on a runner: what `spore ps` prints and `--name` takes, the
/// same rule on every runner — plain enough to be a file name (a Linux runner's boot mark),
/// short enough that a board's `STATS` of all its apps fits a frame.
pub fn check_name(name: &str) -> Result<(), Refusal> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    match ok {
        true => Ok(()),
        false => Err(Refusal::new(
            ErrorCode::BAD_PAYLOAD,
            format!("{name:?} is not an app name: 1–64 letters, digits, '.', '_' or '-', not starting with '.'"),
        )),
    }
}

/// Whether every device granted is one the runner has, each once.
fn check_devices(granted: &[String], devices: &[Device]) -> Result<(), Refusal> {
    for (i, name) in granted.iter().enumerate() {
        if !devices.iter().any(|d| &d.name == name) {
            return Err(Refusal::new(
                ErrorCode::BAD_PAYLOAD,
                format!("this runner has no device {name:?}; it has: {}", device_names(devices)),
            ));
        }
        if granted[..i].contains(name) {
            return Err(Refusal::new(
                ErrorCode::BAD_PAYLOAD,
                format!("device {name:?} is granted twice; once is enough"),
            ));
        }
    }
    Ok(())
}

fn device_names(devices: &[Device]) -> String {
    match devices.is_empty() {
        true => "none".into(),
        false => devices.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", "),
    }
}

/// The refusal of a module that imports `import` (`module::name`), which its app was not
/// granted: the grant that gives it, if the runner has one, or what the runner has.
pub fn ungranted(import: &str, devices: &[Device]) -> Refusal {
    let module = import.rsplit_once("::").map_or(import, |(m, _)| m);
    let message = match devices.iter().find(|d| d.interface == module) {
        Some(d) => format!("the module imports {import}; grant it with --device {}", d.name),
        None => format!(
            "the module imports {import}, which this runner does not have (WASI preview 1, and devices: {})",
            device_names(devices)
        ),
    };
    Refusal::new(ErrorCode::INVALID_MODULE, message)
}

fn deframe_error(e: DeframeError) -> Message {
    let code = match e {
        DeframeError::TooLong { .. } => ErrorCode::TOO_LARGE,
        _ => ErrorCode::BAD_FRAME,
    };
    Refusal::new(code, format!("{e}; the frame was dropped, send it again")).into_message()
}

fn no_upload() -> Refusal {
    Refusal::new(ErrorCode::UNKNOWN_MODULE, "no upload of this module under way on this link; send MODULE_BEGIN first")
}

/// The request id of a frame whose header is sound.
fn request_id(bytes: &[u8]) -> u32 {
    bytes.get(8..12).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Where a `CHUNK` goes in an upload that holds `received` of `size` bytes: every runner's
/// store answers offsets the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Bytes the upload has already (a chunk sent again): acknowledged, not written.
    Held,
    /// The next bytes: to append.
    Append,
}

/// Checks a chunk of `len` bytes at `offset` against an upload holding `received` of `size`.
pub fn place(received: u64, size: u64, offset: u64, len: usize) -> Result<Placement, Refusal> {
    let end = offset.saturating_add(len as u64);
    if end <= received {
        return Ok(Placement::Held);
    }
    if offset != received {
        return Err(Refusal::new(
            ErrorCode::BAD_OFFSET,
            format!("a chunk at offset {offset}; the runner holds {received} bytes, send from there"),
        ));
    }
    if end > size {
        return Err(Refusal::new(
            ErrorCode::BAD_OFFSET,
            format!("a chunk ending at {end}, past the module's declared size of {size}"),
        ));
    }
    Ok(Placement::Append)
}

/// Whether an upload holding `received` of `size` bytes may be committed.
pub fn complete(received: u64, size: u64) -> Result<(), Refusal> {
    match received == size {
        true => Ok(()),
        false => Err(Refusal::new(
            ErrorCode::BAD_OFFSET,
            format!("the runner holds {received} of the module's {size} bytes; send the rest before COMMIT"),
        )),
    }
}

/// Whether a whole upload's bytes hash to the digest it was begun under.
pub fn verify(bytes: &[u8], digest: &Digest) -> Result<(), Refusal> {
    use sha2::Digest as _;
    let got: Digest = sha2::Sha256::digest(bytes).into();
    match &got == digest {
        true => Ok(()),
        false => Err(Refusal::new(
            ErrorCode::DIGEST_MISMATCH,
            format!(
                "the bytes hash to sha256:{}, not sha256:{}; nothing was stored, upload again",
                hex::encode(got),
                hex::encode(digest)
            ),
        )),
    }
}

/// Admits an app that may use `wanted` bytes of memory, and `overhead` more of the runner's
/// for its host side, when the runner's apps hold `held` of its `budget` (the sum stays within
/// it), or says what is left.
pub fn admit_memory(wanted: u64, overhead: u64, held: u64, budget: u64) -> Result<(), Refusal> {
    match held.saturating_add(wanted).saturating_add(overhead) > budget {
        true => Err(Refusal::new(
            ErrorCode::EXHAUSTED,
            format!(
                "the app may use {wanted} bytes of memory{}; this runner has {} of its {budget} left (--memory)",
                match overhead {
                    0 => String::new(),
                    n => format!(" and {n} of the runner's for its stack and output"),
                },
                budget.saturating_sub(held)
            ),
        )),
        false => Ok(()),
    }
}
