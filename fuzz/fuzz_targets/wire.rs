//! Any bytes from a link: the deframer holds at most one frame, and every frame it yields is
//! an error or a message; a message encodes back to a frame that decodes to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use spore_wire::{Deframer, decode, encode};

const MAX: u32 = 4096;

fuzz_target!(|bytes: &[u8]| {
    let mut deframer = Deframer::new(MAX);
    // As a stream, cut in two where the first byte says, and as one whole frame.
    let cut = bytes.first().map_or(0, |&b| b as usize % (bytes.len() + 1));
    let mut frames: Vec<Vec<u8>> = deframer.feed(&bytes[..cut]).flatten().collect();
    frames.extend(deframer.feed(&bytes[cut..]).flatten());
    for frame in frames.iter().map(Vec::as_slice).chain([bytes]) {
        assert!(frame.len() <= bytes.len());
        if let Ok((header, message)) = decode(frame, MAX) {
            let again = encode(header.request_id, header.flags, &message);
            let (h2, m2) = decode(&again, u32::MAX).expect("a decoded message encodes to a frame that decodes");
            assert_eq!((h2, m2), (header, message));
        }
    }
});
