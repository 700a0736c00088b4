//! The messages, each a frame type with a postcard payload.
//!
//! The frame's type byte says which message the payload holds, so the payload is the message's
//! fields alone. Codes and field order are the wire format: append new messages and new enum
//! variants at the end, never reorder (a runner in the field speaks the old order).
//!
//! A→R marks what the agent sends, R→A what the runner sends.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

#[cfg(test)]
use proptest_derive::Arbitrary;

/// A module's identity: the sha256 of its bytes.
pub type Digest = [u8; 32];

/// A→R, first on every link: the versions the agent speaks and the largest frame it accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Hello {
    /// Oldest protocol version the agent speaks.
    pub min_version: u8,
    /// Newest protocol version the agent speaks.
    pub max_version: u8,
    /// Largest payload the agent accepts.
    pub max_payload: u32,
    /// Who is asking (e.g. `spore 0.1.0`), for the runner's log.
    pub agent: String,
    /// The bearer token of a TCP link (empty elsewhere: a Unix socket's authority is its file
    /// mode, a serial line's the wire itself).
    pub token: String,
}

/// R→A: what this runner is and can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct HelloAck {
    /// The version both sides speak from now on.
    pub version: u8,
    /// Largest payload the runner accepts (each side sends at most the smaller of the two).
    pub max_payload: u32,
    /// The runner's stable id (kept under its data dir).
    pub runner: String,
    /// The engines it can run modules on.
    pub backends: Vec<Backend>,
    /// What it can hold.
    pub limits: RunnerLimits,
    /// Host interfaces an app may import beyond WASI, with versions (`kv@1`, `gpio@1`, …).
    pub interfaces: Vec<Interface>,
    /// The devices it can grant an app (`INSTANTIATE`'s `devices`).
    pub devices: Vec<Device>,
}

/// A device a runner can grant an app: a board's GPIO or second UART, a Linux runner's plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Device {
    /// What a grant names it (`gpio`, `uart1`): `--device NAME`.
    pub name: String,
    /// The import module its functions are under (`spore:device/gpio@0.1`).
    pub interface: String,
}

/// One engine a runner has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Backend {
    /// Which kind.
    pub kind: BackendKind,
    /// The target triple its artifacts are for (native code), or the interpreter's (Pulley's
    /// `pulley64`); for wasmi, the runner's own.
    pub target: String,
    /// Engine and version (`wasmtime 48.0.0`, `wasmi 2.0.0`).
    pub engine: String,
    /// What an artifact must have been compiled for (wasmtime's precompile compatibility
    /// hash, hex); empty where plain wasm is loaded.
    pub compat: String,
}

/// The engines a runner may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub enum BackendKind {
    /// wasmtime runtime-only with native code compiled by the agent for the runner's target.
    Native,
    /// wasmtime runtime-only with Pulley bytecode: no executable memory needed.
    Pulley,
    /// wasmi, an interpreter of plain wasm: no artifacts, deterministic fuel.
    Wasmi,
}

/// A runner's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct RunnerLimits {
    /// Largest module it accepts.
    pub max_module_bytes: u64,
    /// Memory it gives all its instances together.
    pub memory_bytes: u64,
    /// Instances at once.
    pub max_instances: u32,
}

/// A host interface and its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Interface {
    /// Its name (`wasi:cli`, `kv`, `gpio`).
    pub name: String,
    /// Its version.
    pub version: String,
}

/// What an upload's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub enum ModuleKind {
    /// A wasm module, for an interpreter that loads wasm.
    Wasm,
    /// A wasmtime artifact of native code.
    Native,
    /// A wasmtime artifact of Pulley bytecode.
    Pulley,
}

/// A→R: the agent has a module to upload. Answered by [`Have`] (cached: nothing to send) or
/// [`SendFrom`] (send from this offset: 0, or where an interrupted upload stopped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct ModuleBegin {
    /// sha256 of the whole module.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// What it is.
    pub kind: ModuleKind,
    /// For an artifact, the compatibility hash it was compiled for (see [`Backend::compat`]).
    pub compat: String,
}

/// R→A: the runner has this module already.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Have {
    /// The module.
    pub digest: Digest,
}

/// R→A: send the module's bytes from `offset` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct SendFrom {
    /// The module.
    pub digest: Digest,
    /// Bytes the runner holds already.
    pub offset: u64,
}

/// A→R: part of a module. Idempotent by offset: a chunk sent twice is stored once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Chunk {
    /// The module.
    pub digest: Digest,
    /// Where these bytes go.
    pub offset: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// R→A: the module's bytes up to `received` are stored (answers a [`Chunk`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct ChunkAck {
    /// The module.
    pub digest: Digest,
    /// Contiguous bytes held from the start.
    pub received: u64,
}

/// A→R: all bytes are sent; the runner checks the sha256 and loads the module (answered by
/// [`Done`] or an [`Error`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Commit {
    /// The module.
    pub digest: Digest,
}

/// Limits for one instance; `None` leaves the runner's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Limits {
    /// Linear memory, bytes.
    pub memory_bytes: Option<u64>,
    /// CPU time, milliseconds.
    pub cpu_ms: Option<u64>,
    /// Wall-clock time, milliseconds.
    pub wall_ms: Option<u64>,
    /// Fuel (interpreters with deterministic fuel).
    pub fuel: Option<u64>,
}

/// A→R: make an instance of a stored module (answered by [`Instance`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Instantiate {
    /// The module.
    pub module: Digest,
    /// The app's name on this runner (unique; what `ps` shows).
    pub name: String,
    /// Arguments (the first is the program name, as WASI has it).
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Its limits.
    pub limits: Limits,
    /// Run it again whenever the runner starts.
    pub boot: bool,
    /// The devices granted to it, by name (`HELLO_ACK`'s `devices`): it may import their
    /// functions, and no others beyond WASI.
    pub devices: Vec<String>,
}

/// R→A: the instance made (answers [`Instantiate`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Instance {
    /// Its id on this runner.
    pub id: u32,
}

/// A→R: run an instance's command entry (`_start`); answered by [`Accepted`] now and by
/// [`Exit`] — with this request's id — when it ends. Output comes meanwhile as [`Output`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Run {
    /// The instance.
    pub instance: u32,
}

/// A plain wasm value, for [`Invoke`] arguments and results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub enum Value {
    /// `i32`.
    I32(i32),
    /// `i64`.
    I64(i64),
    /// `f32`, as its bits (so NaNs round-trip exactly).
    F32(u32),
    /// `f64`, as its bits.
    F64(u64),
}

/// A→R: call an exported function; answered like [`Run`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Invoke {
    /// The instance.
    pub instance: u32,
    /// The export's name.
    pub export: String,
    /// Its arguments.
    pub args: Vec<Value>,
}

/// R→A: a run or invoke started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Accepted {
    /// The instance.
    pub instance: u32,
}

/// Which stream output came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub enum StreamKind {
    /// The guest's stdout.
    Stdout,
    /// The guest's stderr.
    Stderr,
    /// The runner's own log line about the instance.
    Log,
}

/// R→A: output of a running instance, under the id of the request that started it. Sent only
/// while the agent has credit for it (see [`Credit`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Output {
    /// The instance.
    pub instance: u32,
    /// Which stream.
    pub stream: StreamKind,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A→R: the agent can take `bytes` more output of this instance. A runner starts each run
/// with an initial window (its `HELLO_ACK` maximum payload, 4 times) and holds the guest's
/// writes — the guest waits, nothing is lost — while the credit is spent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Credit {
    /// The instance.
    pub instance: u32,
    /// Further bytes.
    pub bytes: u32,
}

/// Which limit ended a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub enum LimitKind {
    /// Linear memory or tables.
    Memory,
    /// CPU time.
    Cpu,
    /// Wall-clock time.
    Wall,
    /// Fuel.
    Fuel,
}

/// How a run ended (never an error code: [`Error`] has its own space).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub enum Outcome {
    /// An invoked function returned these values.
    Returned(Vec<Value>),
    /// The command exited with this code (`proc_exit`, or 0 on return from `_start`).
    Exited(i32),
    /// The guest trapped.
    Trapped(String),
    /// A limit ended it.
    Limit {
        /// Which.
        limit: LimitKind,
        /// What happened, for people.
        message: String,
    },
    /// A [`Kill`] ended it.
    Killed,
}

/// R→A: a run ended, under the id of the request that started it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Exit {
    /// The instance.
    pub instance: u32,
    /// How.
    pub outcome: Outcome,
    /// Fuel used, where the backend counts it.
    pub fuel_used: Option<u64>,
    /// CPU time used, microseconds.
    pub cpu_us: u64,
    /// Wall-clock time, microseconds.
    pub wall_us: u64,
}

/// A→R: end a running instance now (its [`Exit`] says `Killed`); answered by [`Done`] once the
/// run has ended, so the instance is no longer running when the agent hears it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Kill {
    /// The instance.
    pub instance: u32,
}

/// What a [`Message::Drop`] forgets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub enum DropTarget {
    /// An instance (killed first if it runs), with its boot mark and kept output.
    Instance(u32),
    /// A stored module no instance uses.
    Module(Digest),
}

/// A→R: liveness; answered by [`Pong`] with the same nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Ping {
    /// Echoed.
    pub nonce: u64,
}

/// R→A: the answer to a [`Ping`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Pong {
    /// The ping's.
    pub nonce: u64,
}

/// A run's state, as [`Stats`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub enum InstanceState {
    /// Made, not run.
    Created,
    /// Running.
    Running,
    /// Ended.
    Ended(Outcome),
}

/// One instance, as [`Stats`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct InstanceInfo {
    /// Its id.
    pub id: u32,
    /// Its name.
    pub name: String,
    /// Its module.
    pub module: Digest,
    /// Its state.
    pub state: InstanceState,
    /// Linear memory now, bytes.
    pub memory_bytes: u64,
    /// CPU time used, microseconds.
    pub cpu_us: u64,
    /// Started again at each runner start.
    pub boot: bool,
}

/// R→A: the runner's figures and its instances (answers [`Message::StatsRequest`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Stats {
    /// Since the runner started, milliseconds.
    pub uptime_ms: u64,
    /// Memory the runner's instances hold, bytes.
    pub memory_bytes: u64,
    /// Stored modules.
    pub modules: u32,
    /// Its instances.
    pub instances: Vec<InstanceInfo>,
}

/// A→R: send the output an instance's last run left (at most `tail` bytes of it), as
/// [`Output`] frames, then [`Done`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Logs {
    /// The instance.
    pub instance: u32,
    /// Most bytes wanted, from the end.
    pub tail: u32,
}

/// R→A: a request failed. Codes are the runner's own space, never a guest's exit code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct Error {
    /// What kind of failure (see [`crate::ErrorCode`]).
    pub code: crate::ErrorCode,
    /// For people: what was wrong and what to do.
    pub message: String,
}

/// Why a payload is not the message its frame type names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageError {
    /// No message has this type code (a newer peer, or damage past the CRC).
    UnknownType(u8),
    /// The payload does not decode as the message.
    Payload {
        /// The message's name.
        message: &'static str,
        /// What the decoder said.
        error: postcard::Error,
    },
    /// Bytes left over after the message.
    Trailing {
        /// The message's name.
        message: &'static str,
        /// Bytes left.
        bytes: usize,
    },
}

impl core::fmt::Display for MessageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MessageError::UnknownType(t) => write!(f, "unknown message type {t:#04x}"),
            MessageError::Payload { message, error } => write!(f, "malformed {message} payload: {error}"),
            MessageError::Trailing { message, bytes } => write!(f, "{bytes} stray bytes after a {message} payload"),
        }
    }
}

impl core::error::Error for MessageError {}

/// The messages with their type codes: one list, from which the enum, the codes and the
/// payload coding are made, so a code and its payload type cannot disagree.
macro_rules! messages {
    ($($(#[$doc:meta])* $code:literal $name:ident($ty:ty),)*) => {
        /// Every message of the protocol.
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[cfg_attr(test, derive(Arbitrary))]
        pub enum Message {
            $($(#[$doc])* $name($ty),)*
        }

        impl Message {
            /// Its frame type code.
            pub fn kind(&self) -> u8 {
                match self { $(Message::$name(_) => $code,)* }
            }

            /// Its name, as logs and errors say it.
            pub fn name(&self) -> &'static str {
                match self { $(Message::$name(_) => stringify!($name),)* }
            }

            /// Its payload bytes.
            pub fn payload(&self) -> Vec<u8> {
                let encoded = match self { $(Message::$name(m) => postcard::to_allocvec(m),)* };
                // Serialising plain structs of sized fields into a growable buffer cannot fail.
                encoded.unwrap_or_default()
            }

            /// The message a frame of type `kind` carries in `payload`.
            pub fn decode(kind: u8, payload: &[u8]) -> Result<Message, MessageError> {
                match kind {
                    $($code => whole::<$ty>(stringify!($name), payload).map(Message::$name),)*
                    other => Err(MessageError::UnknownType(other)),
                }
            }
        }
    };
}

messages! {
    /// A→R: version and frame size; first on every link.
    0x01 Hello(Hello),
    /// R→A: who the runner is and what it can do.
    0x02 HelloAck(HelloAck),
    /// A→R: a module to upload.
    0x10 ModuleBegin(ModuleBegin),
    /// R→A: the module is cached.
    0x11 Have(Have),
    /// R→A: send from an offset.
    0x12 SendFrom(SendFrom),
    /// A→R: module bytes.
    0x13 Chunk(Chunk),
    /// R→A: bytes stored.
    0x14 ChunkAck(ChunkAck),
    /// A→R: the upload is complete.
    0x15 Commit(Commit),
    /// A→R: make an instance.
    0x20 Instantiate(Instantiate),
    /// R→A: the instance made.
    0x21 Instance(Instance),
    /// A→R: run its command.
    0x22 Run(Run),
    /// A→R: call an export.
    0x23 Invoke(Invoke),
    /// R→A: the run started.
    0x24 Accepted(Accepted),
    /// R→A: output.
    0x25 Output(Output),
    /// A→R: room for more output.
    0x26 Credit(Credit),
    /// R→A: a run ended.
    0x27 Exit(Exit),
    /// A→R: end a run now.
    0x28 Kill(Kill),
    /// A→R: forget an instance or module.
    0x29 Drop(DropTarget),
    /// A→R: an instance's kept output.
    0x2a Logs(Logs),
    /// A→R: liveness.
    0x30 Ping(Ping),
    /// R→A: alive.
    0x31 Pong(Pong),
    /// A→R: the runner's figures.
    0x32 StatsRequest(()),
    /// R→A: the figures.
    0x33 Stats(Stats),
    /// R→A: a request done that has nothing else to say.
    0x3e Done(()),
    /// R→A: a request failed.
    0x3f Error(Error),
}

/// A payload decoded as `T`, all of it.
fn whole<'a, T: Deserialize<'a>>(message: &'static str, payload: &'a [u8]) -> Result<T, MessageError> {
    let (value, rest) =
        postcard::take_from_bytes::<T>(payload).map_err(|error| MessageError::Payload { message, error })?;
    if !rest.is_empty() {
        return Err(MessageError::Trailing { message, bytes: rest.len() });
    }
    Ok(value)
}
