//! Property tests: every message round-trips through a byte stream however it is cut, and
//! damaged, truncated, oversized or random bytes are an error — never a panic, a hang, or a
//! different message.

use crate::frame::{HEADER_LEN, TRAILER_LEN};
use crate::*;
use alloc::vec::Vec;
use proptest::prelude::*;

/// The frames and errors a deframer yields for `stream` fed in pieces cut at `cuts`.
fn deframe(stream: &[u8], cuts: &[usize], max: u32) -> Vec<Result<Vec<u8>, DeframeError>> {
    let mut deframer = Deframer::new(max);
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.sort_unstable();
    let mut out = Vec::new();
    let mut from = 0;
    for to in points.into_iter().chain([stream.len()]) {
        out.extend(deframer.feed(&stream[from..to]));
        from = to;
    }
    out
}

proptest! {
    #[test]
    fn any_message_round_trips_however_the_stream_is_cut(
        message: Message,
        request_id: u32,
        flags: u16,
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let stream = to_stream(request_id, flags, &message);
        let max = u32::MAX;
        let frames = deframe(&stream, &cuts, max);
        prop_assert_eq!(frames.len(), 1);
        let frame = frames.into_iter().next().unwrap().unwrap();
        let (header, back) = decode(&frame, max).unwrap();
        prop_assert_eq!(header, Header { kind: message.kind(), flags, request_id });
        prop_assert_eq!(back, message);
    }

    /// CRC-32C catches every burst of damage up to 32 bits long, wherever it falls.
    #[test]
    fn a_damaged_frame_is_an_error(
        message: Message,
        at in any::<usize>(),
        burst in 1u32..,
    ) {
        let mut frame = encode(1, 0, &message);
        let bit = at % (frame.len() * 8 - 31);
        for i in 0..32 {
            if burst & (1 << i) != 0 {
                let b = bit + i;
                frame[b / 8] ^= 1 << (b % 8);
            }
        }
        prop_assert!(decode(&frame, u32::MAX).is_err());
    }

    /// A byte changed on the link (a code byte, a delimiter, data) never yields a message
    /// other than the one sent: what the deframer makes of it fails to decode.
    #[test]
    fn damage_on_the_stream_never_becomes_another_message(
        message: Message,
        at in any::<usize>(),
        xor in 1u8..,
    ) {
        let mut stream = to_stream(9, 0, &message);
        let at = at % stream.len();
        stream[at] ^= xor;
        for frame in deframe(&stream, &[], u32::MAX).into_iter().flatten() {
            prop_assert!(decode(&frame, u32::MAX).is_err());
        }
    }

    #[test]
    fn a_truncated_frame_is_an_error(message: Message, keep in any::<usize>()) {
        let frame = encode(1, 0, &message);
        let keep = keep % frame.len();
        prop_assert!(decode(&frame[..keep], u32::MAX).is_err());
    }

    /// Over the maximum is refused by the deframer (it stops buffering) or by the frame's
    /// declared length — whichever sees it first — never read.
    #[test]
    fn a_frame_over_the_maximum_is_refused(bytes in proptest::collection::vec(any::<u8>(), 1..4096), max in 0u32..4096) {
        let message = Message::Output(Output { instance: 1, stream: StreamKind::Stdout, bytes });
        let frame = encode(1, 0, &message);
        let payload = (frame.len() - HEADER_LEN - TRAILER_LEN) as u32;
        let decoded = decode(&frame, max);
        if payload > max {
            prop_assert_eq!(decoded, Err(WireError::Frame(FrameError::TooLarge { len: payload, max })));
            let got = deframe(&delimit(&frame), &[], max);
            prop_assert_eq!(got, alloc::vec![Err(DeframeError::TooLong { max: HEADER_LEN + max as usize + TRAILER_LEN })]);
        } else {
            prop_assert!(decoded.is_ok());
        }
    }

    #[test]
    fn random_bytes_are_an_error_or_a_message_never_a_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        kind: u8,
    ) {
        let _ = decode(&bytes, DEFAULT_MAX_PAYLOAD);
        let _ = Message::decode(kind, &bytes);
        for frame in deframe(&bytes, &[], 64).into_iter().flatten() {
            prop_assert!(frame.len() <= HEADER_LEN + 64 + TRAILER_LEN);
        }
    }
}

/// The wire format, pinned: a change to the header, the CRC, COBS or a payload's coding breaks
/// runners in the field, so it must be a new protocol version, not an accident. (The bytes
/// were made independently of this crate, by a few lines of Python computing the CRC-32C and
/// COBS by hand. Version 2 added the devices of `HELLO_ACK` and `INSTANTIATE`.)
#[test]
fn the_wire_format_is_what_runners_in_the_field_read() {
    let ping = Message::Ping(Ping { nonce: 42 });
    let frame: &[u8] = &[
        0x53, 0x50, 0x02, 0x30, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x2a, 0x24,
        0xeb, 0x51, 0xab,
    ];
    assert_eq!(encode(7, 0, &ping), frame);
    let hello = Message::Hello(Hello {
        min_version: 2,
        max_version: 2,
        max_payload: 65536,
        agent: "spore".into(),
        token: "".into(),
    });
    let stream: &[u8] = &[
        0x05, 0x53, 0x50, 0x02, 0x01, 0x01, 0x01, 0x01, 0x02, 0x01, 0x01, 0x01, 0x02, 0x0c, 0x01, 0x01, 0x0c, 0x02,
        0x02, 0x80, 0x80, 0x04, 0x05, 0x73, 0x70, 0x6f, 0x72, 0x65, 0x05, 0xe1, 0xf2, 0x8f, 0xc0, 0x00,
    ];
    assert_eq!(to_stream(1, 0, &hello), stream);
}
