//! Wiring a sandbox's streams ([`spore_spec::StdioSpec`]) into its WASI context, with the
//! embedder's sinks (the daemon's logs) taking the place of the spec's outputs.

use crate::sink::{CaptureSink, OutputSink, SinkStream};
use spore_spec::{Input, Output, PIPE_CAPACITY, StdioSpec};
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::{InputFile, OutputFile};
use wasmtime_wasi::p2::pipe::{ClosedInputStream, MemoryInputPipe, SinkOutputStream};

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

/// Wires `spec`'s streams into a WASI context (embedder sinks first); returns the pipes to
/// read after the run.
pub(crate) fn apply(spec: &StdioSpec, wasi: &mut WasiCtxBuilder, sinks: &Sinks) -> std::io::Result<Captured> {
    match &spec.stdin {
        Input::Null => wasi.stdin(ClosedInputStream),
        Input::Inherit => wasi.inherit_stdin(),
        Input::File(path) => wasi.stdin(InputFile::new(open_input(path)?)),
        Input::Bytes(text) => wasi.stdin(MemoryInputPipe::new(text.clone().into_bytes())),
    };
    let mut captured = Captured::default();
    match (&sinks.stdout, &spec.stdout) {
        (Some(sink), _) => wasi.stdout(SinkStream(sink.clone())),
        (None, Output::Null) => wasi.stdout(SinkOutputStream),
        (None, Output::Inherit) => wasi.inherit_stdout(),
        (None, Output::File(path)) => wasi.stdout(OutputFile::new(open_output(path)?)),
        (None, Output::Pipe) => wasi.stdout(SinkStream(captured.stdout.insert(capture()).clone())),
    };
    match (&sinks.stderr, &spec.stderr) {
        (Some(sink), _) => wasi.stderr(SinkStream(sink.clone())),
        (None, Output::Null) => wasi.stderr(SinkOutputStream),
        (None, Output::Inherit) => wasi.inherit_stderr(),
        (None, Output::File(path)) => wasi.stderr(OutputFile::new(open_output(path)?)),
        (None, Output::Pipe) => wasi.stderr(SinkStream(captured.stderr.insert(capture()).clone())),
    };
    Ok(captured)
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
