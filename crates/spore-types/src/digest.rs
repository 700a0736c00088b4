//! [`Digest`]: the sha256 that names every blob, program and compiled artifact.

use sha2::{Digest as _, Sha256};
use std::fmt;

/// The sha256 of a wasm binary: its identity in caches, stores and logs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    /// Lower-case hex, without the algorithm prefix (for file names).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Reads the OCI form `sha256:<64 lowercase hex>`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Digest> {
        let hex = s.strip_prefix("sha256:")?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).ok()?;
        Some(Digest(out))
    }

    /// The short form people read in lists and logs: `sha256:` and the first 12 hex digits,
    /// as docker shortens ids.
    pub fn short(&self) -> String {
        format!("sha256:{}", &self.hex()[..12])
    }

    /// The short form of a digest in text (`sha256:<hex>`); text that is not one is shown as
    /// it is, so a client never slices what a server sent.
    pub fn shorten(text: &str) -> &str {
        match Digest::parse(text) {
            Some(_) => &text[..19],
            None => text,
        }
    }

    /// Wraps a finished sha256.
    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    /// The 32 bytes of the hash.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Digest {
    /// The OCI form, `sha256:<hex>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms_are_the_first_twelve_digits_and_never_slice_other_text() {
        let d = Digest::of(b"hello");
        assert_eq!(d.short(), format!("sha256:{}", &d.hex()[..12]));
        assert_eq!(Digest::shorten(&d.to_string()), d.short());
        assert_eq!(Digest::shorten("sha256:é"), "sha256:é");
        assert_eq!(Digest::shorten("short"), "short");
    }
}
