//! Where a sandbox's stdin comes from and its stdout/stderr go. Default: nothing in, output
//! discarded — a sandbox sees no host terminal unless the spec says so.

use crate::sink::{CaptureSink, OutputSink, SinkStream};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::{InputFile, OutputFile};
use wasmtime_wasi::p2::pipe::{ClosedInputStream, MemoryInputPipe, SinkOutputStream};

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

/// Sinks supplied by the embedder, overriding the spec's stdout/stderr (the daemon's logs).
#[derive(Clone, Default)]
pub struct Sinks {
    /// Replaces the spec's stdout.
    pub stdout: Option<Arc<dyn OutputSink>>,
    /// Replaces the spec's stderr.
    pub stderr: Option<Arc<dyn OutputSink>>,
}

/// Output pipes kept by the host while the guest runs, read when it ends.
#[derive(Default)]
pub(crate) struct Captured {
    pub(crate) stdout: Option<Arc<CaptureSink>>,
    pub(crate) stderr: Option<Arc<CaptureSink>>,
}

impl StdioSpec {
    /// Wires the streams into a WASI context (embedder sinks first); returns the pipes to read
    /// after the run.
    pub(crate) fn apply(&self, wasi: &mut WasiCtxBuilder, sinks: &Sinks) -> std::io::Result<Captured> {
        match &self.stdin {
            Input::Null => wasi.stdin(ClosedInputStream),
            Input::Inherit => wasi.inherit_stdin(),
            Input::File(path) => wasi.stdin(InputFile::new(open_input(path)?)),
            Input::Bytes(text) => wasi.stdin(MemoryInputPipe::new(text.clone().into_bytes())),
        };
        let mut captured = Captured::default();
        match (&sinks.stdout, &self.stdout) {
            (Some(sink), _) => wasi.stdout(SinkStream(sink.clone())),
            (None, Output::Null) => wasi.stdout(SinkOutputStream),
            (None, Output::Inherit) => wasi.inherit_stdout(),
            (None, Output::File(path)) => wasi.stdout(OutputFile::new(open_output(path)?)),
            (None, Output::Pipe) => wasi.stdout(SinkStream(captured.stdout.insert(capture()).clone())),
        };
        match (&sinks.stderr, &self.stderr) {
            (Some(sink), _) => wasi.stderr(SinkStream(sink.clone())),
            (None, Output::Null) => wasi.stderr(SinkOutputStream),
            (None, Output::Inherit) => wasi.inherit_stderr(),
            (None, Output::File(path)) => wasi.stderr(OutputFile::new(open_output(path)?)),
            (None, Output::Pipe) => wasi.stderr(SinkStream(captured.stderr.insert(capture()).clone())),
        };
        Ok(captured)
    }
}

fn capture() -> Arc<CaptureSink> {
    Arc::new(CaptureSink::new(PIPE_CAPACITY))
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
