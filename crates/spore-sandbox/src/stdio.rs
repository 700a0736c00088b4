//! Where a sandbox's stdin comes from and its stdout/stderr go. Default: nothing in, output
//! discarded — a sandbox sees no host terminal unless the spec says so.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::{InputFile, OutputFile};
use wasmtime_wasi::p2::pipe::{ClosedInputStream, MemoryInputPipe, MemoryOutputPipe, SinkOutputStream};

/// Largest output a [`Output::Pipe`] keeps; beyond it the guest's writes fail.
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

/// Output pipes kept by the host while the guest runs, read when it ends.
#[derive(Default)]
pub(crate) struct Captured {
    pub(crate) stdout: Option<MemoryOutputPipe>,
    pub(crate) stderr: Option<MemoryOutputPipe>,
}

impl StdioSpec {
    /// Wires the streams into a WASI context; returns the pipes to read after the run.
    pub(crate) fn apply(&self, wasi: &mut WasiCtxBuilder) -> std::io::Result<Captured> {
        match &self.stdin {
            Input::Null => wasi.stdin(ClosedInputStream),
            Input::Inherit => wasi.inherit_stdin(),
            Input::File(path) => wasi.stdin(InputFile::new(open_input(path)?)),
            Input::Bytes(text) => wasi.stdin(MemoryInputPipe::new(text.clone().into_bytes())),
        };
        let mut captured = Captured::default();
        match &self.stdout {
            Output::Null => wasi.stdout(SinkOutputStream),
            Output::Inherit => wasi.inherit_stdout(),
            Output::File(path) => wasi.stdout(OutputFile::new(open_output(path)?)),
            Output::Pipe => wasi.stdout(captured.stdout.insert(MemoryOutputPipe::new(PIPE_CAPACITY)).clone()),
        };
        match &self.stderr {
            Output::Null => wasi.stderr(SinkOutputStream),
            Output::Inherit => wasi.inherit_stderr(),
            Output::File(path) => wasi.stderr(OutputFile::new(open_output(path)?)),
            Output::Pipe => wasi.stderr(captured.stderr.insert(MemoryOutputPipe::new(PIPE_CAPACITY)).clone()),
        };
        Ok(captured)
    }
}

fn open_input(path: &PathBuf) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| std::io::Error::new(e.kind(), format!("stdin file {}: {e}", path.display())))
}

fn open_output(path: &PathBuf) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("output file {}: {e}", path.display())))
}
