//! The runner's error codes: a space of their own, never mixed with a guest's exit codes (an
//! app that exits 3 and a runner that refuses a request are different things to the agent).

use serde::{Deserialize, Serialize};

/// What kind of failure an [`crate::Message::Error`] reports. A `u16`, not an enum, so an
/// agent reads the codes of a newer runner (as [`ErrorCode::name`]'s "unknown") instead of
/// failing to decode the whole message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ErrorCode(pub u16);

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $value:literal, $text:literal;)*) => {
        impl ErrorCode {
            $($(#[$doc])* pub const $name: ErrorCode = ErrorCode($value);)*

            /// A short name for logs and messages.
            pub fn name(self) -> &'static str {
                match self { $(ErrorCode::$name => $text,)* _ => "unknown" }
            }
        }
    };
}

codes! {
    /// The frame was damaged or malformed (bad CRC, length, magic).
    BAD_FRAME = 1, "bad frame";
    /// No message has the frame's type.
    UNKNOWN_TYPE = 2, "unknown message type";
    /// A protocol version the runner does not speak.
    VERSION = 3, "unsupported version";
    /// A frame or module over the negotiated or configured maximum.
    TOO_LARGE = 4, "too large";
    /// The payload does not decode as its message.
    BAD_PAYLOAD = 5, "malformed payload";
    /// A request before `HELLO`, or a wrong token.
    UNAUTHORIZED = 6, "unauthorized";
    /// The module's bytes do not hash to the digest they were sent under.
    DIGEST_MISMATCH = 7, "digest mismatch";
    /// An artifact compiled for another engine, version or target.
    WRONG_ENGINE = 8, "wrong engine";
    /// A chunk at an offset other than the next one expected.
    BAD_OFFSET = 9, "bad offset";
    /// No module by that digest.
    UNKNOWN_MODULE = 10, "unknown module";
    /// No instance by that id.
    UNKNOWN_INSTANCE = 11, "unknown instance";
    /// The module does not load: invalid wasm, or imports the runner does not have.
    INVALID_MODULE = 12, "invalid module";
    /// Not in a state that allows it (running already, a name in use).
    CONFLICT = 13, "conflict";
    /// The runner is full (instances, memory, storage).
    EXHAUSTED = 14, "exhausted";
    /// The runner failed on its own side.
    INTERNAL = 15, "internal";
}

impl core::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}
