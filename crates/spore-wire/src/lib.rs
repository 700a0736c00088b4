//! The wire protocol between Spore's agent (`spore --host runner+…://`, `serial://…`) and its
//! edge runners: frames with a CRC-32C, COBS framing on byte streams, and postcard payloads.
//!
//! `no_std + alloc`: the Linux runner, the bare-metal runner and the agent use this crate
//! unchanged. It does no I/O and keeps no state beyond a [`Deframer`]'s one frame; transports
//! and the conversation (who answers what, retransmits, credit) belong to its users.
//!
//! Depends on no other Spore crate; must never depend on `std`, an async runtime or an engine.
//!
//! ```
//! use spore_wire::{Deframer, Message, Ping, DEFAULT_MAX_PAYLOAD};
//!
//! let bytes = spore_wire::to_stream(7, 0, &Message::Ping(Ping { nonce: 42 }));
//! let mut deframer = Deframer::new(DEFAULT_MAX_PAYLOAD);
//! let frame = deframer.feed(&bytes).next().unwrap().unwrap();
//! let (header, message) = spore_wire::decode(&frame, DEFAULT_MAX_PAYLOAD).unwrap();
//! assert_eq!((header.request_id, message), (7, Message::Ping(Ping { nonce: 42 })));
//! ```

#![no_std]

extern crate alloc;

pub mod bundle;
mod error;
pub mod frame;
mod message;
pub mod stream;

pub use error::ErrorCode;
pub use frame::{DEFAULT_MAX_PAYLOAD, FLAG_RETRANSMIT, FrameError, Header, VERSION};
pub use message::*;
pub use stream::{DeframeError, Deframer, delimit};

use alloc::vec::Vec;

/// Why received bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Not a sound frame.
    Frame(FrameError),
    /// A sound frame whose payload is not its message.
    Message(MessageError),
}

impl WireError {
    /// The code a runner answers this with.
    pub fn code(&self) -> ErrorCode {
        match self {
            WireError::Frame(FrameError::TooLarge { .. }) => ErrorCode::TOO_LARGE,
            WireError::Frame(FrameError::Version(_)) => ErrorCode::VERSION,
            WireError::Frame(_) => ErrorCode::BAD_FRAME,
            WireError::Message(MessageError::UnknownType(_)) => ErrorCode::UNKNOWN_TYPE,
            WireError::Message(_) => ErrorCode::BAD_PAYLOAD,
        }
    }
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WireError::Frame(e) => e.fmt(f),
            WireError::Message(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for WireError {}

impl From<FrameError> for WireError {
    fn from(e: FrameError) -> WireError {
        WireError::Frame(e)
    }
}

impl From<MessageError> for WireError {
    fn from(e: MessageError) -> WireError {
        WireError::Message(e)
    }
}

/// A message as one frame (header, payload, CRC).
pub fn encode(request_id: u32, flags: u16, message: &Message) -> Vec<u8> {
    frame::encode(Header { kind: message.kind(), flags, request_id }, &message.payload())
}

/// A message as it goes on a byte stream: its frame, COBS-encoded and delimited.
pub fn to_stream(request_id: u32, flags: u16, message: &Message) -> Vec<u8> {
    delimit(&encode(request_id, flags, message))
}

/// The message in one frame, refusing a payload over `max_payload`.
pub fn decode(frame: &[u8], max_payload: u32) -> Result<(Header, Message), WireError> {
    let (header, payload) = frame::decode(frame, max_payload)?;
    Ok((header, Message::decode(header.kind, payload)?))
}

#[cfg(test)]
extern crate std;

#[cfg(test)]
mod properties;
