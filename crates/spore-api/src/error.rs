//! What kind of failure an error is: the one classification every daemon-side error reports,
//! mapped to an HTTP status in one place ([`ErrorKind::http_status`]) — and, for the edge
//! runner to come, to its own protocol's codes — so no handler picks a status by hand.

/// The kind of a failure, as a client can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// What the request names does not exist (404).
    NotFound,
    /// The request is malformed or asks for something impossible (400).
    Invalid,
    /// The operator's policy does not allow it (403).
    Forbidden,
    /// It conflicts with the present state: a name taken, a sandbox running (409).
    Conflict,
    /// A body or blob over its limit (413).
    TooLarge,
    /// The program or image cannot be run as asked: it does not compile, is of the wrong
    /// kind, or is missing its parts (422).
    Unrunnable,
    /// A capacity is used up: slots, sandboxes (429).
    Exhausted,
    /// Missing or wrong credentials (401).
    Unauthorized,
    /// A service Spore depends on failed: a registry (502).
    Upstream,
    /// Spore's own trouble: disk, database (500).
    Internal,
}

impl ErrorKind {
    /// The HTTP status the API answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::NotFound => 404,
            ErrorKind::Invalid => 400,
            ErrorKind::Forbidden => 403,
            ErrorKind::Conflict => 409,
            ErrorKind::TooLarge => 413,
            ErrorKind::Unrunnable => 422,
            ErrorKind::Exhausted => 429,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Upstream => 502,
            ErrorKind::Internal => 500,
        }
    }
}

/// An error that knows its kind.
pub trait Classified: std::error::Error {
    /// What kind of failure this is.
    fn kind(&self) -> ErrorKind;
}
