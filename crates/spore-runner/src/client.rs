//! The agent's side of a runner link: `HELLO`, requests with retransmission (a serial line
//! loses and damages frames; a request whose answer does not come is sent again, marked, and a
//! runner that already did it answers again), content-addressed uploads that resume where a cut
//! link left them, and runs whose output streams back within the credit this side gives.

use crate::link::{self, Address, FrameReader, FrameWriter};
use sha2::{Digest as _, Sha256};
use spore_wire::{
    Chunk, Commit, Credit, Digest, DropTarget, ErrorCode, Exit, FLAG_RETRANSMIT, Hello, HelloAck, InstanceState,
    Instantiate, Invoke, Kill, Logs, Message, ModuleBegin, ModuleKind, Output, Ping, Run, Stats, VERSION, Value,
};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Why a request to a runner failed.
#[derive(Debug)]
pub enum ClientError {
    /// The link failed (with what was being done).
    Io(String, io::Error),
    /// The runner refused, with its code and message.
    Refused(ErrorCode, String),
    /// No answer after every retransmission.
    Timeout(String),
    /// The runner answered something that is not an answer to the request.
    Protocol(String),
    /// An upload stopped by its caller after this many bytes; the runner keeps them.
    Stopped(u64),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Io(what, e) => write!(f, "{what}: {e}"),
            ClientError::Refused(code, message) => write!(f, "the runner refused ({code}): {message}"),
            ClientError::Timeout(what) => {
                write!(f, "no answer from the runner to {what}; is it running, and is this its link?")
            }
            ClientError::Protocol(what) => write!(f, "the runner answered out of protocol: {what}"),
            ClientError::Stopped(at) => write!(f, "the upload stopped at {at} bytes; uploading again resumes there"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A link to a runner, after `HELLO`.
pub struct Client {
    reader: FrameReader,
    writer: FrameWriter,
    next_id: u32,
    /// What the runner said it is.
    pub ack: HelloAck,
    timeout: Duration,
    retries: u32,
}

/// How long `HELLO` waits for its answer, each time it is sent.
const HELLO_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a request waits for its answer before it is sent again, per link kind.
fn timeout_for(address: &Address) -> (Duration, u32) {
    match address {
        // A serial line damages and drops frames: retransmit soon, several times.
        Address::Serial { .. } => (Duration::from_secs(2), 8),
        // A stream socket loses nothing; a long wait is a runner busy loading a large module.
        _ => (Duration::from_secs(60), 1),
    }
}

impl Client {
    /// Connects and says `HELLO` (with `token` for TCP).
    pub fn connect(address: &Address, agent: &str, token: &str) -> Result<Client, ClientError> {
        let (reader, writer) = link::connect(address).map_err(|e| {
            let hint = match address {
                Address::Serial { .. } => "check the device exists and this user may open it",
                Address::Unix(_) => "is the runner running with this --socket?",
                Address::Tcp(_) => "is the runner listening there?",
            };
            ClientError::Io(format!("cannot open {address} ({hint})"), e)
        })?;
        let (timeout, retries) = timeout_for(address);
        let mut reader = FrameReader::new(reader, spore_wire::DEFAULT_MAX_PAYLOAD);
        reader.set_timeout(Some(timeout)).map_err(|e| ClientError::Io("setting the link's timeout".into(), e))?;
        let placeholder = HelloAck {
            version: VERSION,
            max_payload: spore_wire::DEFAULT_MAX_PAYLOAD,
            runner: String::new(),
            backends: Vec::new(),
            limits: spore_wire::RunnerLimits { max_module_bytes: 0, memory_bytes: 0, max_instances: 0 },
            interfaces: Vec::new(),
            devices: Vec::new(),
        };
        let mut client =
            Client { reader, writer: FrameWriter::new(writer), next_id: 1, ack: placeholder, timeout, retries };
        // A runner answers HELLO at once: a silent link is not worth a long wait.
        let patience = timeout.min(HELLO_TIMEOUT);
        client
            .reader
            .set_timeout(Some(patience))
            .map_err(|e| ClientError::Io("setting the link's timeout".into(), e))?;
        let hello = Message::Hello(Hello {
            min_version: VERSION,
            max_version: VERSION,
            max_payload: spore_wire::DEFAULT_MAX_PAYLOAD,
            agent: agent.to_string(),
            token: token.to_string(),
        });
        match client.call(hello)? {
            Message::HelloAck(ack) => {
                client.reader.set_max(ack.max_payload);
                client
                    .reader
                    .set_timeout(Some(timeout))
                    .map_err(|e| ClientError::Io("setting the link's timeout".into(), e))?;
                client.ack = ack;
                Ok(client)
            }
            other => Err(ClientError::Protocol(format!("{} to HELLO", other.name()))),
        }
    }

    fn id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    fn send(&self, id: u32, flags: u16, message: &Message) -> Result<(), ClientError> {
        self.writer.send(id, flags, message).map_err(|e| ClientError::Io(format!("sending {}", message.name()), e))
    }

    /// The next sound frame, `None` on a timeout; damaged frames from the runner are skipped
    /// (the request they answered is sent again).
    fn next(&mut self) -> Result<Option<(u32, Message)>, ClientError> {
        loop {
            match self.reader.next_frame() {
                Ok(Some(Ok(bytes))) => {
                    match spore_wire::decode(&bytes, self.ack.max_payload.max(spore_wire::DEFAULT_MAX_PAYLOAD)) {
                        Ok((header, message)) => return Ok(Some((header.request_id, message))),
                        Err(_) => continue,
                    }
                }
                Ok(Some(Err(_))) => continue,
                Ok(None) => {
                    return Err(ClientError::Io(
                        "the runner closed the link".into(),
                        io::Error::from(io::ErrorKind::UnexpectedEof),
                    ));
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => return Ok(None),
                Err(e) => return Err(ClientError::Io("reading from the runner".into(), e)),
            }
        }
    }

    /// Sends a request and waits for its answer, sending it again (marked) when none comes or
    /// the runner says a frame arrived damaged.
    fn call(&mut self, message: Message) -> Result<Message, ClientError> {
        let id = self.id();
        self.send(id, 0, &message)?;
        let mut attempts = 0;
        loop {
            let again = match self.next()? {
                Some((i, Message::Error(e))) if i == id => return Err(ClientError::Refused(e.code, e.message)),
                Some((i, answer)) if i == id => return Ok(answer),
                // A frame of ours arrived damaged: the runner could not tell whose.
                Some((0, Message::Error(e))) if matches!(e.code, ErrorCode::BAD_FRAME | ErrorCode::TOO_LARGE) => true,
                // Answers to earlier attempts, output of runs nobody watches: not ours.
                Some(_) => false,
                None => true,
            };
            if again {
                attempts += 1;
                if attempts > self.retries {
                    return Err(ClientError::Timeout(message.name().to_string()));
                }
                self.send(id, FLAG_RETRANSMIT, &message)?;
            }
        }
    }

    /// Uploads a module unless the runner has it; resumes where an earlier, cut upload
    /// stopped. `progress` hears (bytes held by the runner, total) and stops the upload by
    /// answering `false` (a later upload resumes it).
    pub fn upload(
        &mut self,
        bytes: &[u8],
        kind: ModuleKind,
        compat: &str,
        mut progress: impl FnMut(u64, u64) -> bool,
    ) -> Result<Digest, ClientError> {
        let digest: Digest = Sha256::digest(bytes).into();
        let size = bytes.len() as u64;
        let begin = ModuleBegin { digest, size, kind, compat: compat.to_string() };
        let mut offset = match self.call(Message::ModuleBegin(begin))? {
            Message::Have(_) => {
                let _ = progress(size, size);
                return Ok(digest);
            }
            Message::SendFrom(s) => s.offset,
            other => return Err(ClientError::Protocol(format!("{} to MODULE_BEGIN", other.name()))),
        };
        // Room for the chunk's own fields inside the negotiated payload.
        let piece = self.ack.max_payload.saturating_sub(64).max(256) as u64;
        while offset < size {
            if !progress(offset, size) {
                return Err(ClientError::Stopped(offset));
            }
            let end = (offset + piece).min(size);
            let chunk = Chunk { digest, offset, bytes: bytes[offset as usize..end as usize].to_vec() };
            offset = match self.call(Message::Chunk(chunk))? {
                Message::ChunkAck(ack) if ack.received <= size => ack.received,
                other => return Err(ClientError::Protocol(format!("{} to CHUNK", other.name()))),
            };
        }
        let _ = progress(size, size);
        match self.call(Message::Commit(Commit { digest }))? {
            Message::Done(()) => Ok(digest),
            other => {
                Err(ClientError::Protocol(format!("{} to COMMIT of sha256:{}", other.name(), hex::encode(digest))))
            }
        }
    }

    /// Makes an app; its instance id.
    pub fn instantiate(&mut self, spec: Instantiate) -> Result<u32, ClientError> {
        match self.call(Message::Instantiate(spec))? {
            Message::Instance(i) => Ok(i.id),
            other => Err(ClientError::Protocol(format!("{} to INSTANTIATE", other.name()))),
        }
    }

    /// Runs an instance's `_start` to its end, giving each output to `output`. When
    /// `interrupted` becomes true (Ctrl-C), the run is killed and its exit still awaited.
    pub fn run(
        &mut self,
        instance: u32,
        interrupted: &AtomicBool,
        output: impl FnMut(&Output),
    ) -> Result<Exit, ClientError> {
        self.watch(Message::Run(Run { instance }), instance, interrupted, output)
    }

    /// Starts an instance's `_start` and leaves it running (its output is kept at the runner).
    pub fn start(&mut self, instance: u32) -> Result<(), ClientError> {
        match self.call(Message::Run(Run { instance }))? {
            Message::Accepted(_) => Ok(()),
            other => Err(ClientError::Protocol(format!("{} to RUN", other.name()))),
        }
    }

    /// Calls an export with plain values, as [`Client::run`].
    pub fn invoke(
        &mut self,
        instance: u32,
        export: &str,
        args: Vec<Value>,
        interrupted: &AtomicBool,
        output: impl FnMut(&Output),
    ) -> Result<Exit, ClientError> {
        let invoke = Message::Invoke(Invoke { instance, export: export.to_string(), args });
        self.watch(invoke, instance, interrupted, output)
    }

    fn watch(
        &mut self,
        start: Message,
        instance: u32,
        interrupted: &AtomicBool,
        mut output: impl FnMut(&Output),
    ) -> Result<Exit, ClientError> {
        let id = self.next_id;
        match self.call(start)? {
            Message::Accepted(_) => {}
            other => return Err(ClientError::Protocol(format!("{} to RUN", other.name()))),
        }
        // The runner starts each run with four payloads of credit; give it back in halves.
        let window = 4 * u64::from(self.ack.max_payload);
        let mut unreturned = 0u64;
        let mut killed = false;
        self.reader
            .set_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| ClientError::Io("setting the link's timeout".into(), e))?;
        let mut quiet = Duration::ZERO;
        let result = loop {
            if interrupted.load(Ordering::Acquire) && !killed {
                killed = true;
                let kill = self.id();
                self.send(kill, 0, &Message::Kill(Kill { instance }))?;
            }
            match self.next() {
                Ok(Some((i, Message::Output(o)))) if i == id => {
                    quiet = Duration::ZERO;
                    unreturned += o.bytes.len() as u64;
                    output(&o);
                    if unreturned >= window / 2 {
                        self.send(0, 0, &Message::Credit(Credit { instance, bytes: unreturned as u32 }))?;
                        unreturned = 0;
                    }
                }
                Ok(Some((i, Message::Exit(exit)))) if i == id => break Ok(exit),
                Ok(Some(_)) => {}
                Ok(None) => {
                    quiet += Duration::from_millis(100);
                    // A long silence on a lossy link: the exit or a credit may have been lost.
                    if quiet >= Duration::from_secs(2) {
                        quiet = Duration::ZERO;
                        self.send(0, 0, &Message::Credit(Credit { instance, bytes: window as u32 }))?;
                        if let Some(exit) = self.ended(instance)? {
                            break Ok(exit);
                        }
                    }
                }
                Err(e) => break Err(e),
            }
        };
        let _ = self.reader.set_timeout(Some(self.timeout));
        result
    }

    /// The exit of an instance that ended, from `STATS` (when its `EXIT` frame was lost).
    fn ended(&mut self, instance: u32) -> Result<Option<Exit>, ClientError> {
        let stats = self.stats()?;
        Ok(stats.instances.into_iter().find(|i| i.id == instance).and_then(|i| match i.state {
            InstanceState::Ended(outcome) => {
                Some(Exit { instance, outcome, fuel_used: None, cpu_us: i.cpu_us, wall_us: 0 })
            }
            _ => None,
        }))
    }

    /// Ends a running instance.
    pub fn kill(&mut self, instance: u32) -> Result<(), ClientError> {
        self.done(Message::Kill(Kill { instance }))
    }

    /// Forgets an instance (killing it) or a module.
    pub fn remove(&mut self, target: DropTarget) -> Result<(), ClientError> {
        self.done(Message::Drop(target))
    }

    /// The kept output of an instance's runs, the last `tail` bytes.
    pub fn logs(&mut self, instance: u32, tail: u32) -> Result<Vec<Output>, ClientError> {
        let id = self.next_id;
        let mut out = Vec::new();
        match self.call(Message::Logs(Logs { instance, tail }))? {
            Message::Output(o) => out.push(o),
            Message::Done(()) => return Ok(out),
            other => return Err(ClientError::Protocol(format!("{} to LOGS", other.name()))),
        }
        loop {
            match self.next()? {
                Some((i, Message::Output(o))) if i == id => out.push(o),
                Some((i, Message::Done(()))) if i == id => return Ok(out),
                Some(_) => {}
                None => return Err(ClientError::Timeout("LOGS".into())),
            }
        }
    }

    /// The runner's figures and instances.
    pub fn stats(&mut self) -> Result<Stats, ClientError> {
        match self.call(Message::StatsRequest(()))? {
            Message::Stats(s) => Ok(s),
            other => Err(ClientError::Protocol(format!("{} to STATS", other.name()))),
        }
    }

    /// Round trip.
    pub fn ping(&mut self, nonce: u64) -> Result<(), ClientError> {
        match self.call(Message::Ping(Ping { nonce }))? {
            Message::Pong(p) if p.nonce == nonce => Ok(()),
            other => Err(ClientError::Protocol(format!("{} to PING", other.name()))),
        }
    }

    fn done(&mut self, message: Message) -> Result<(), ClientError> {
        let name = message.name();
        match self.call(message)? {
            Message::Done(()) => Ok(()),
            other => Err(ClientError::Protocol(format!("{} to {name}", other.name()))),
        }
    }
}
