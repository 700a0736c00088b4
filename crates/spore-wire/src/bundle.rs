//! A bundle: one executable file that is an edge runner with an app attached to its end.
//!
//! `spore bundle` writes the runner's own executable, then the app's precompiled artifact and
//! its image's files, then a [`Bundle`] header (postcard) that says where each is, then a
//! fixed-size [`Trailer`]. The runner looks at the last [`Trailer::LEN`] bytes of its own
//! executable when it starts: with the magic there, it runs the app instead of serving links.
//! Offsets are from the start of the payload (the first byte after the runner), so the layout
//! does not depend on the runner's size.

use crate::{Limits, ModuleKind};
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Where a piece of the payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// Bytes from the payload's start.
    pub offset: u64,
    /// Its length.
    pub len: u64,
}

/// One entry of the embedded root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    /// Its path from the root, `/`-separated, without a leading `/`.
    pub path: String,
    /// A regular file's bytes; `None` for a directory.
    pub data: Option<Span>,
}

/// What a bundle holds besides its runner: the app and how it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// The image it was made from, for `--spore-info` and messages.
    pub image: String,
    /// The image's digest.
    pub digest: String,
    /// What the artifact is: the engine that runs it.
    pub kind: ModuleKind,
    /// The engine configuration the artifact was compiled for (the runner refuses another).
    pub compat: String,
    /// The precompiled app.
    pub artifact: Span,
    /// The image's Entrypoint then Cmd: argv, program name first.
    pub argv: Vec<String>,
    /// How many of `argv` are the Entrypoint (the rest, the Cmd, is replaced by the
    /// arguments the bundle is run with, as docker does).
    pub entrypoint_len: u32,
    /// The image's environment.
    pub env: Vec<(String, String)>,
    /// Limits it runs with unless the `--spore-*` flags say otherwise.
    pub limits: Limits,
    /// The image's files, read-only under `/`.
    pub files: Vec<File>,
}

/// The last bytes of a bundle: where its header is, and a magic number that says it is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// Where the payload starts in the file (the runner's length, padded).
    pub payload: u64,
    /// The header's length; it ends where the trailer starts.
    pub header_len: u64,
}

impl Trailer {
    /// The trailer's size in bytes.
    pub const LEN: usize = 24;
    /// Its magic number, last in the file.
    pub const MAGIC: [u8; 8] = *b"SPOREBN1";

    /// The trailer's bytes.
    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..8].copy_from_slice(&self.payload.to_le_bytes());
        out[8..16].copy_from_slice(&self.header_len.to_le_bytes());
        out[16..].copy_from_slice(&Self::MAGIC);
        out
    }

    /// Reads a trailer from a file's last [`Trailer::LEN`] bytes: `None` if it is not one.
    pub fn parse(bytes: &[u8]) -> Option<Trailer> {
        let bytes: &[u8; Self::LEN] = bytes.try_into().ok()?;
        if bytes[16..] != Self::MAGIC {
            return None;
        }
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or_default());
        Some(Trailer { payload: u64_at(0), header_len: u64_at(8) })
    }
}

/// Where a payload starts is rounded up to this, so an artifact at its start is page-aligned in
/// the file (and in a mapping of it).
pub const ALIGN: usize = 4096;

/// How a bundle is laid out around its payload, for a writer that streams the pieces: the
/// runtime (a runner's executable), `padding` zeros (to [`ALIGN`]), the payload, then `tail`
/// (the encoded header, whose spans are into the payload, and the [`Trailer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Zeros between the runtime and the payload.
    pub padding: usize,
    /// What follows the payload.
    pub tail: Vec<u8>,
}

impl Layout {
    /// The layout of `header`'s bundle after a runtime of `runtime_len` bytes.
    pub fn new(runtime_len: usize, header: &Bundle) -> Result<Layout, postcard::Error> {
        let mut tail = header.encode()?;
        let start = runtime_len.div_ceil(ALIGN) * ALIGN;
        let trailer = Trailer { payload: start as u64, header_len: tail.len() as u64 };
        tail.extend_from_slice(&trailer.to_bytes());
        Ok(Layout { padding: start - runtime_len, tail })
    }
}

impl Bundle {
    /// The header's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_allocvec(self)
    }

    /// A header from its bytes, all of them (bytes left over mean the trailer's length is not
    /// the header's).
    pub fn decode(bytes: &[u8]) -> Result<Bundle, postcard::Error> {
        match postcard::take_from_bytes(bytes)? {
            (header, []) => Ok(header),
            _ => Err(postcard::Error::DeserializeBadEncoding),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_and_its_trailer_read_back() {
        let bundle = Bundle {
            image: "docker.io/library/hello:latest".into(),
            digest: "sha256:00".into(),
            kind: ModuleKind::Native,
            compat: "x".into(),
            artifact: Span { offset: 0, len: 10 },
            argv: alloc::vec!["/app.wasm".into(), "--default".into()],
            entrypoint_len: 1,
            env: alloc::vec![("A".into(), "1".into())],
            limits: Limits::default(),
            files: alloc::vec![File { path: "etc/motd".into(), data: Some(Span { offset: 10, len: 3 }) }],
        };
        assert_eq!(Bundle::decode(&bundle.encode().unwrap()).unwrap(), bundle);
        let mut longer = bundle.encode().unwrap();
        longer.push(0);
        assert!(Bundle::decode(&longer).is_err(), "a header with bytes after it is not one");
        let trailer = Trailer { payload: 4096, header_len: 77 };
        assert_eq!(Trailer::parse(&trailer.to_bytes()), Some(trailer));
        let mut other = trailer.to_bytes();
        other[23] ^= 1;
        assert_eq!(Trailer::parse(&other), None, "no magic, no bundle");
        assert_eq!(Trailer::parse(&[0; 3]), None);

        let layout = Layout::new(3, &bundle).unwrap();
        let parts: [&[u8]; 4] = [b"ELF", &alloc::vec![0; layout.padding], b"0123456789abc", &layout.tail];
        let whole = parts.concat();
        let trailer = Trailer::parse(&whole[whole.len() - Trailer::LEN..]).unwrap();
        assert_eq!(trailer.payload, ALIGN as u64, "the payload starts on a page");
        let header_start = whole.len() - Trailer::LEN - trailer.header_len as usize;
        assert_eq!(Bundle::decode(&whole[header_start..whole.len() - Trailer::LEN]).unwrap(), bundle);
        assert_eq!(&whole[ALIGN + 10..ALIGN + 13], b"abc", "spans are from the payload's start");
    }
}
