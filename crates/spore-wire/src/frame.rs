//! One frame: a fixed header, the payload, and a CRC-32C over both.
//!
//! ```text
//! magic u16 | version u8 | type u8 | flags u16 | reserved u16 | request_id u32 | len u32 | payload | crc32c u32
//! ```
//!
//! Little-endian throughout. The CRC is checked before any other field is believed, and the
//! declared length is checked against the negotiated maximum before anything is allocated, so a
//! hostile or noisy link costs at most one maximum-sized buffer.

use alloc::vec::Vec;
use core::fmt;

/// The first two bytes of every frame ("SP" on the wire).
pub const MAGIC: u16 = u16::from_le_bytes(*b"SP");
/// The protocol version this crate speaks.
pub const VERSION: u8 = 2;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 16;
/// Bytes after the payload (the CRC).
pub const TRAILER_LEN: usize = 4;
/// Largest payload until `HELLO` negotiates another (64 KiB).
pub const DEFAULT_MAX_PAYLOAD: u32 = 64 * 1024;
/// The smallest maximum a peer may negotiate: a `HELLO_ACK` with its lists must fit.
pub const MIN_MAX_PAYLOAD: u32 = 1024;

/// `flags`: this frame was sent before and no answer came; a runner that already carried out
/// this request id answers again from its record instead of doing it twice.
pub const FLAG_RETRANSMIT: u16 = 1;

/// CRC-32C (Castagnoli), as iSCSI and ext4 use: better burst detection than the zip CRC.
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// What a frame's header says besides its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Which message the payload holds (see [`crate::Message::kind`]).
    pub kind: u8,
    /// See [`FLAG_RETRANSMIT`]; other bits are ignored by this version.
    pub flags: u16,
    /// Chosen by the agent for each request; a runner's answers and the output and exit of a
    /// run carry the id of the request they belong to.
    pub request_id: u32,
}

/// Why bytes are not a frame. Each names what was wrong, for the peer's `ERROR` and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than a header and a CRC.
    Truncated {
        /// Bytes given.
        len: usize,
    },
    /// The first two bytes are not [`MAGIC`]: not a Spore frame.
    Magic(u16),
    /// The declared payload is longer than the negotiated maximum.
    TooLarge {
        /// Declared payload bytes.
        len: u32,
        /// The maximum.
        max: u32,
    },
    /// The declared payload length does not match the bytes that came.
    Length {
        /// Declared payload bytes.
        declared: u32,
        /// Payload bytes present.
        actual: usize,
    },
    /// The CRC does not match: the frame was damaged on the way.
    Crc {
        /// The CRC the frame carries.
        carried: u32,
        /// The CRC of what arrived.
        computed: u32,
    },
    /// A protocol version this side does not speak.
    Version(u8),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Truncated { len } => {
                write!(f, "truncated frame: {len} bytes, a frame has at least {}", HEADER_LEN + TRAILER_LEN)
            }
            FrameError::Magic(m) => write!(f, "not a Spore frame (magic {m:#06x}, expected {MAGIC:#06x})"),
            FrameError::TooLarge { len, max } => {
                write!(f, "frame payload of {len} bytes is over the negotiated maximum of {max}")
            }
            FrameError::Length { declared, actual } => {
                write!(f, "frame declares {declared} payload bytes but carries {actual}")
            }
            FrameError::Crc { carried, computed } => {
                write!(f, "frame damaged in transit (crc32c {carried:#010x}, computed {computed:#010x})")
            }
            FrameError::Version(v) => {
                write!(f, "wire protocol version {v} is not supported (this side speaks {VERSION})")
            }
        }
    }
}

impl core::error::Error for FrameError {}

/// Writes one frame: header, payload, CRC.
pub fn encode(header: Header, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + TRAILER_LEN);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.push(VERSION);
    out.push(header.kind);
    out.extend_from_slice(&header.flags.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&header.request_id.to_le_bytes());
    // A payload over u32::MAX cannot be negotiated: the caller's maximum refuses it first.
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = CRC32C.checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Reads one frame, whole (as the deframer or a datagram gives it), refusing a payload over
/// `max_payload`. Returns the header and the payload's place in `bytes`.
pub fn decode(bytes: &[u8], max_payload: u32) -> Result<(Header, &[u8]), FrameError> {
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(FrameError::Truncated { len: bytes.len() });
    }
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let magic = u16_at(0);
    if magic != MAGIC {
        return Err(FrameError::Magic(magic));
    }
    let declared = u32_at(12);
    if declared > max_payload {
        return Err(FrameError::TooLarge { len: declared, max: max_payload });
    }
    let actual = bytes.len() - HEADER_LEN - TRAILER_LEN;
    if declared as usize != actual {
        return Err(FrameError::Length { declared, actual });
    }
    let body = bytes.len() - TRAILER_LEN;
    let carried = u32_at(body);
    let computed = CRC32C.checksum(&bytes[..body]);
    if carried != computed {
        return Err(FrameError::Crc { carried, computed });
    }
    if bytes[2] != VERSION {
        return Err(FrameError::Version(bytes[2]));
    }
    let header = Header { kind: bytes[3], flags: u16_at(4), request_id: u32_at(8) };
    Ok((header, &bytes[HEADER_LEN..body]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_reads_back_as_written() {
        let header = Header { kind: 7, flags: FLAG_RETRANSMIT, request_id: 0xdead_beef };
        let bytes = encode(header, b"payload");
        assert_eq!(bytes.len(), HEADER_LEN + 7 + TRAILER_LEN);
        assert_eq!(&bytes[..2], b"SP");
        assert_eq!(decode(&bytes, 64), Ok((header, &b"payload"[..])));
    }

    #[test]
    fn the_crc_is_crc32c() {
        // The check value of CRC-32C: "123456789" → 0xE3069283.
        assert_eq!(CRC32C.checksum(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn a_length_over_the_maximum_is_refused_before_the_rest_is_read() {
        let mut bytes = encode(Header { kind: 1, flags: 0, request_id: 1 }, &[0; 100]);
        assert_eq!(decode(&bytes, 99), Err(FrameError::TooLarge { len: 100, max: 99 }));
        bytes[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&bytes, 1 << 20), Err(FrameError::TooLarge { len: u32::MAX, max: 1 << 20 }));
    }

    #[test]
    fn another_version_is_named() {
        let mut bytes = encode(Header { kind: 1, flags: 0, request_id: 1 }, b"");
        bytes[2] = 9;
        let body = bytes.len() - TRAILER_LEN;
        let crc = CRC32C.checksum(&bytes[..body]).to_le_bytes();
        bytes[body..].copy_from_slice(&crc);
        let err = decode(&bytes, 64).unwrap_err();
        assert_eq!(err, FrameError::Version(9));
        assert!(alloc::format!("{err}").contains("version 9 is not supported"));
    }
}
