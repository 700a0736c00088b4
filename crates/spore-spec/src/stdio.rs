//! Where a sandbox's stdin comes from and its stdout/stderr go. Default: nothing in, output
//! discarded — a sandbox sees no host terminal unless the spec says so.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Largest output a [`Output::Pipe`] keeps; the rest is dropped and counted.
pub const PIPE_CAPACITY: usize = 4 << 20;

/// The three standard streams.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StdioSpec {
    /// Standard input.
    pub stdin: Input,
    /// Standard output.
    pub stdout: Output,
    /// Standard error.
    pub stderr: Output,
}

/// A source for stdin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    /// Immediately at end of file.
    #[default]
    Null,
    /// The host process's stdin (one-shot runs).
    Inherit,
    /// A host file, read from the start.
    File(PathBuf),
    /// Fixed bytes given in the spec.
    Bytes(String),
}

/// A destination for stdout or stderr.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// Discarded.
    #[default]
    Null,
    /// The host process's stream (one-shot runs).
    Inherit,
    /// A host file, appended to.
    File(PathBuf),
    /// Kept in memory (up to [`PIPE_CAPACITY`]) and returned with the run's report.
    Pipe,
}
