//! Frames on a byte stream (a socket, a serial line): each frame COBS-encoded and ended by one
//! `0x00`, so the receiver finds the next frame after any damage — a lost byte, line noise, a
//! peer that restarted mid-frame — by waiting for the next zero.

use crate::frame::{HEADER_LEN, TRAILER_LEN};
use alloc::vec::Vec;
use cobs::{DecodeResult, DecoderState};
use core::fmt;

/// A frame as it goes on a byte stream: COBS-encoded, then the `0x00` delimiter.
pub fn delimit(frame: &[u8]) -> Vec<u8> {
    let mut out = alloc::vec![0; cobs::max_encoding_length(frame.len()) + 1];
    let n = cobs::encode(frame, &mut out);
    out.truncate(n);
    out.push(0);
    out
}

/// Why bytes between two delimiters were dropped. The deframer goes on with the next frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeframeError {
    /// The bytes were not valid COBS (damaged, or a frame cut short by a delimiter).
    Encoding,
    /// More bytes came before a delimiter than the largest frame allowed; they were dropped.
    TooLong {
        /// The largest frame allowed, header and CRC included.
        max: usize,
    },
}

impl fmt::Display for DeframeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeframeError::Encoding => f.write_str("damaged bytes on the link (not a COBS frame); dropped"),
            DeframeError::TooLong { max } => {
                write!(f, "more than {max} bytes without a frame delimiter; dropped up to the next one")
            }
        }
    }
}

impl core::error::Error for DeframeError {}

/// Splits a byte stream into frames. Holds at most one frame's bytes, however long the stream
/// runs without a delimiter.
pub struct Deframer {
    state: DecoderState,
    buf: Vec<u8>,
    max: usize,
    /// Dropping bytes up to the next delimiter (after a frame grew too long).
    skipping: bool,
}

impl Deframer {
    /// A deframer for frames whose payload is at most `max_payload` bytes.
    pub fn new(max_payload: u32) -> Deframer {
        Deframer { state: DecoderState::Idle, buf: Vec::new(), max: 0, skipping: false }.with_max(max_payload)
    }

    /// Changes the largest payload accepted (after `HELLO` negotiated it).
    pub fn with_max(mut self, max_payload: u32) -> Deframer {
        self.set_max(max_payload);
        self
    }

    /// Changes the largest payload accepted from the next frame on.
    pub fn set_max(&mut self, max_payload: u32) {
        self.max = HEADER_LEN + max_payload as usize + TRAILER_LEN;
    }

    /// The frames (or errors) that `data` completes, in order; bytes of an unfinished frame are
    /// kept for the next call.
    pub fn feed<'d, 'a>(&'d mut self, data: &'a [u8]) -> Feed<'d, 'a> {
        Feed { deframer: self, data }
    }

    fn push(&mut self, byte: u8) -> Option<Result<Vec<u8>, DeframeError>> {
        if self.skipping {
            if byte == 0 {
                self.skipping = false;
                self.state = DecoderState::Idle;
                self.buf.clear();
            }
            return None;
        }
        match self.state.feed(byte) {
            Ok(DecodeResult::NoData) => None,
            Ok(DecodeResult::DataContinue(b)) => {
                if self.buf.len() == self.max {
                    self.skipping = true;
                    return Some(Err(DeframeError::TooLong { max: self.max }));
                }
                self.buf.push(b);
                None
            }
            Ok(DecodeResult::DataComplete) => Some(Ok(core::mem::take(&mut self.buf))),
            // A delimiter inside a run: the state is idle again, ready for the next frame.
            Err(_) => {
                self.buf.clear();
                Some(Err(DeframeError::Encoding))
            }
        }
    }
}

/// The frames one call of [`Deframer::feed`] completes.
pub struct Feed<'d, 'a> {
    deframer: &'d mut Deframer,
    data: &'a [u8],
}

impl Iterator for Feed<'_, '_> {
    type Item = Result<Vec<u8>, DeframeError>;

    fn next(&mut self) -> Option<Self::Item> {
        while let Some((&byte, rest)) = self.data.split_first() {
            self.data = rest;
            if let Some(out) = self.deframer.push(byte) {
                return Some(out);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn frames_split_wherever_the_stream_breaks() {
        let a = delimit(b"first\0frame");
        let b = delimit(&[0u8; 600]);
        let stream: Vec<u8> = a.iter().chain(&b).copied().collect();
        // Zeros only where frames end, however many the frames hold.
        assert_eq!(stream.iter().filter(|&&x| x == 0).count(), 2);
        for cut in 0..stream.len() {
            let mut d = Deframer::new(1024);
            let mut got: Vec<_> = d.feed(&stream[..cut]).collect();
            got.extend(d.feed(&stream[cut..]));
            assert_eq!(got, vec![Ok(b"first\0frame".to_vec()), Ok(vec![0u8; 600])], "cut at {cut}");
        }
    }

    #[test]
    fn a_stream_without_delimiters_holds_one_frame_at_most() {
        let mut d = Deframer::new(0);
        let max = HEADER_LEN + TRAILER_LEN;
        let noise = vec![1u8; 1 << 20];
        let got: Vec<_> = d.feed(&noise).collect();
        assert_eq!(got, vec![Err(DeframeError::TooLong { max })]);
        assert!(d.buf.capacity() <= 2 * max);
        // The next delimiter ends the skipping; the frame after it comes through.
        let frame = vec![7u8; max];
        let mut tail = vec![0];
        tail.extend(delimit(&frame));
        assert_eq!(d.feed(&tail).collect::<Vec<_>>(), vec![Ok(frame)]);
    }

    #[test]
    fn a_frame_cut_short_is_dropped_and_the_next_one_read() {
        let mut stream = delimit(b"cut short");
        stream.truncate(4);
        stream.push(0);
        stream.extend(delimit(b"whole"));
        let mut d = Deframer::new(64);
        assert_eq!(d.feed(&stream).collect::<Vec<_>>(), vec![Err(DeframeError::Encoding), Ok(b"whole".to_vec())]);
    }
}
