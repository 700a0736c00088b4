//! Per-sandbox logs: append-only JSON-lines files with size-based rotation, written by one
//! thread for the whole daemon.
//!
//! The guest side never waits. A sandbox's sink frames its output into lines and hands them to
//! the writer through a queue; each sandbox may have at most `buffer_per_sandbox` bytes queued.
//! Beyond that, output is **dropped and counted**, not back-pressured: a log flood costs the
//! flooding guest its excess lines (and a marker line says how many bytes went missing), while
//! its neighbours and the daemon keep their pace. Followers (`logs -f`) get each line as it is
//! written.
//!
//! A queued line is charged what it really costs the daemon — its text plus [`LINE_COST`] for
//! the message, its allocation and the writer's work — so a flood of empty or one-byte lines
//! fills the budget as surely as a flood of long ones, and the queue of one sandbox never holds
//! more than `buffer_per_sandbox / LINE_COST` lines.
//!
//! File format, one object per line: `{"n":seq,"t":unix_ms,"s":"out"|"err"|"spore","m":text}`.

use crate::locks::lock;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use spore_sandbox::OutputSink;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc};

/// Longest line kept whole; a longer run without a newline is cut into lines of this size.
const MAX_LINE: usize = 16 << 10;
/// What queueing one line costs beyond its text: the queue message (an `Arc`, a `Bytes`, a
/// timestamp), the text's allocation, and the JSON framing the writer adds. A measured
/// upper bound, rounded up, so that short lines are never cheaper than they are.
pub const LINE_COST: usize = 128;
/// Open log files kept by the writer; more sandboxes than this reopen their file when they write.
const OPEN_FILES: usize = 256;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stream {
    /// The guest's stdout.
    #[serde(rename = "out")]
    Out,
    /// The guest's stderr.
    #[serde(rename = "err")]
    Err,
    /// Spore's own notes (dropped output).
    #[serde(rename = "spore")]
    Spore,
}

/// One stored log line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    /// Sequence number within the sandbox's log.
    pub n: u64,
    /// Unix milliseconds when the guest wrote it.
    pub t: u64,
    /// Stream.
    pub s: Stream,
    /// The text (invalid UTF-8 replaced).
    pub m: String,
}

/// Rotation and flood limits.
#[derive(Debug, Clone)]
pub struct LogLimits {
    /// Rotate at this size.
    pub max_size: u64,
    /// Rotated files kept.
    pub max_files: u32,
    /// Bytes one sandbox may have queued.
    pub buffer_per_sandbox: usize,
}

enum Msg {
    Line { log: Arc<SandboxLog>, stream: Stream, t: u64, text: Bytes },
    Remove(String),
}

/// The daemon's log writer and reader.
pub struct LogHub {
    dir: PathBuf,
    limits: LogLimits,
    tx: mpsc::UnboundedSender<Msg>,
    followers: Mutex<HashMap<String, broadcast::Sender<LogLine>>>,
}

/// One sandbox's log state, shared by its two sinks and the writer.
pub struct SandboxLog {
    id: String,
    hub: Arc<LogHub>,
    queued: AtomicUsize,
    dropped: AtomicU64,
    dropped_lines: AtomicU64,
    /// Dropped bytes and lines not yet reported by a marker line.
    unreported: AtomicU64,
    unreported_lines: AtomicU64,
    next_seq: AtomicU64,
    partial: [Mutex<Vec<u8>>; 2],
    /// Set when the sandbox is killed or removed: an HTTP app's instance still ending on
    /// another thread writes nothing more (nor re-creates a removed log's file).
    closed: std::sync::atomic::AtomicBool,
}

impl LogHub {
    /// Starts the writer thread over `dir`.
    pub fn start(dir: &Path, limits: LogLimits) -> std::io::Result<Arc<LogHub>> {
        std::fs::create_dir_all(dir)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let hub = Arc::new(LogHub { dir: dir.to_owned(), limits, tx, followers: Mutex::new(HashMap::new()) });
        let writer = Writer { hub: Arc::downgrade(&hub), dir: dir.to_owned(), files: HashMap::new(), failing: false };
        std::thread::Builder::new().name("spore-logs".into()).spawn(move || writer.run(rx))?;
        Ok(hub)
    }

    /// The log of sandbox `id`: a new one (`existing` false) starts at sequence 0; a stored
    /// sandbox continues its numbering from what is on disk.
    pub fn open(self: &Arc<Self>, id: &str, existing: bool) -> Arc<SandboxLog> {
        let next = if existing { self.last_seq(id).map_or(0, |n| n + 1) } else { 0 };
        Arc::new(SandboxLog {
            id: id.to_owned(),
            hub: self.clone(),
            queued: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            dropped_lines: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
            unreported_lines: AtomicU64::new(0),
            next_seq: AtomicU64::new(next),
            partial: [Mutex::new(Vec::new()), Mutex::new(Vec::new())],
            closed: Default::default(),
        })
    }

    fn file(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.log"))
    }

    /// The sequence number of a sandbox's last stored line, read from the end of its newest
    /// file: a daemon restarting with many sandboxes reads a little of each log, not all of it.
    fn last_seq(&self, id: &str) -> Option<u64> {
        use std::io::{Read, Seek, SeekFrom};
        const TAIL: u64 = 64 << 10;
        for path in [self.file(id), self.rotated(id, 1)] {
            let Ok(mut file) = File::open(&path) else { continue };
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            if len == 0 {
                continue;
            }
            let mut tail = Vec::new();
            if file.seek(SeekFrom::Start(len.saturating_sub(TAIL))).and_then(|_| file.read_to_end(&mut tail)).is_err() {
                continue;
            }
            let last = tail.split(|&b| b == b'\n').rev().find_map(|l| serde_json::from_slice::<LogLine>(l).ok());
            match last {
                Some(line) => return Some(line.n),
                // A last line longer than the tail: read the file whole, once.
                None => return self.read(id, None, None).last().map(|l| l.n),
            }
        }
        None
    }

    fn rotated(&self, id: &str, n: u32) -> PathBuf {
        self.dir.join(format!("{id}.log.{n}"))
    }

    /// Stored lines, oldest first: those after `since` (Unix ms), then only the last `tail`.
    pub fn read(&self, id: &str, since: Option<u64>, tail: Option<usize>) -> Vec<LogLine> {
        let mut files: Vec<PathBuf> = (1..=self.limits.max_files).rev().map(|n| self.rotated(id, n)).collect();
        files.push(self.file(id));
        let mut lines = Vec::new();
        for path in files {
            let Ok(file) = File::open(&path) else { continue };
            for line in BufReader::new(file).lines() {
                let Ok(line) = line else { break };
                if let Ok(parsed) = serde_json::from_str::<LogLine>(&line)
                    && since.is_none_or(|s| parsed.t >= s)
                {
                    lines.push(parsed);
                }
            }
        }
        if let Some(tail) = tail {
            let skip = lines.len().saturating_sub(tail);
            lines.drain(..skip);
        }
        lines
    }

    /// Subscribes to lines of `id` written from now on.
    pub fn follow(&self, id: &str) -> broadcast::Receiver<LogLine> {
        let mut followers = lock(&self.followers);
        followers.entry(id.to_owned()).or_insert_with(|| broadcast::channel(1024).0).subscribe()
    }

    /// Ends every follow of `id` (its last run is over, or it was removed).
    pub fn close_followers(&self, id: &str) {
        lock(&self.followers).remove(id);
    }

    /// Deletes `id`'s files (after everything queued for it is written).
    pub fn remove(&self, id: &str) {
        self.close_followers(id);
        let _ = self.tx.send(Msg::Remove(id.to_owned()));
    }

    fn publish(&self, id: &str, line: &LogLine) {
        let followers = lock(&self.followers);
        if let Some(tx) = followers.get(id) {
            let _ = tx.send(line.clone());
        }
    }
}

impl SandboxLog {
    /// A sink for one of the guest's streams.
    pub fn sink(self: &Arc<Self>, stream: Stream) -> Arc<dyn OutputSink> {
        Arc::new(LogSink { log: self.clone(), stream })
    }

    /// Bytes of output dropped so far because the sandbox outpaced its log.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Takes no more output until [`Self::reopen`]: the sandbox was killed or removed.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Takes output again (the sandbox is started anew).
    pub fn reopen(&self) {
        self.closed.store(false, Ordering::SeqCst);
    }

    /// Lines of output dropped so far (an empty line counts, though it has no bytes).
    pub fn dropped_lines(&self) -> u64 {
        self.dropped_lines.load(Ordering::Relaxed)
    }

    fn emit(self: &Arc<Self>, stream: Stream, text: &[u8]) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let budget = self.hub.limits.buffer_per_sandbox;
        let cost = text.len() + LINE_COST;
        if self.queued.load(Ordering::Relaxed) + cost > budget {
            self.dropped.fetch_add(text.len() as u64, Ordering::Relaxed);
            self.dropped_lines.fetch_add(1, Ordering::Relaxed);
            self.unreported.fetch_add(text.len() as u64, Ordering::Relaxed);
            self.unreported_lines.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.queued.fetch_add(cost, Ordering::Relaxed);
        let msg =
            Msg::Line { log: self.clone(), stream, t: crate::model::now_ms(), text: Bytes::copy_from_slice(text) };
        let _ = self.hub.tx.send(msg);
    }
}

struct LogSink {
    log: Arc<SandboxLog>,
    stream: Stream,
}

impl OutputSink for LogSink {
    fn write(&self, bytes: &[u8]) {
        let slot = if self.stream == Stream::Err { 1 } else { 0 };
        let mut partial = lock(&self.log.partial[slot]);
        partial.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(pos) = partial[start..].iter().position(|&b| b == b'\n') {
            self.log.emit(self.stream, &partial[start..start + pos]);
            start += pos + 1;
        }
        while partial.len() - start >= MAX_LINE {
            self.log.emit(self.stream, &partial[start..start + MAX_LINE]);
            start += MAX_LINE;
        }
        partial.drain(..start);
    }
}

struct Writer {
    hub: std::sync::Weak<LogHub>,
    dir: PathBuf,
    files: HashMap<String, (BufWriter<File>, u64)>,
    /// Set while writes fail (a full disk): the failure is logged once, not per line, and its
    /// end once.
    failing: bool,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        while let Some(msg) = rx.blocking_recv() {
            let Some(hub) = self.hub.upgrade() else { return };
            match msg {
                Msg::Remove(id) => {
                    self.files.remove(&id);
                    let _ = std::fs::remove_file(hub.file(&id));
                    for n in 1..=hub.limits.max_files {
                        let _ = std::fs::remove_file(hub.rotated(&id, n));
                    }
                }
                Msg::Line { log, stream, t, text } => {
                    log.queued.fetch_sub(text.len() + LINE_COST, Ordering::Relaxed);
                    let lost_lines = log.unreported_lines.swap(0, Ordering::Relaxed);
                    if lost_lines > 0 {
                        let lost = log.unreported.swap(0, Ordering::Relaxed);
                        let note = format!(
                            "[spore: {lost} bytes of output dropped ({lost_lines} lines): the sandbox wrote faster than its log is stored]"
                        );
                        self.append(&hub, &log, Stream::Spore, t, note);
                    }
                    self.append(&hub, &log, stream, t, String::from_utf8_lossy(&text).into_owned());
                }
            }
            // Flush when the queue is drained: batches writes under load, prompt when idle.
            if rx.is_empty() {
                for (file, _) in self.files.values_mut() {
                    let _ = file.flush();
                }
            }
        }
    }

    fn append(&mut self, hub: &LogHub, log: &SandboxLog, s: Stream, t: u64, m: String) {
        let line = LogLine { n: log.next_seq.fetch_add(1, Ordering::Relaxed), t, s, m };
        let mut json = serde_json::to_vec(&line).expect("log lines always serialize");
        json.push(b'\n');
        match self.write_rotating(hub, &log.id, &json) {
            Err(err) if !self.failing => {
                self.failing = true;
                tracing::warn!(sandbox = %log.id, dir = %self.dir.display(), "cannot write logs: {err}; lines are lost until writes succeed again");
            }
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::warn!(dir = %self.dir.display(), "writing logs again");
            }
            _ => {}
        }
        hub.publish(&log.id, &line);
    }

    fn write_rotating(&mut self, hub: &LogHub, id: &str, bytes: &[u8]) -> std::io::Result<()> {
        if !self.files.contains_key(id) {
            if self.files.len() >= OPEN_FILES {
                let evict = self.files.keys().next().cloned().expect("non-empty");
                self.files.remove(&evict);
            }
            let file = OpenOptions::new().create(true).append(true).open(hub.file(id))?;
            let size = file.metadata()?.len();
            self.files.insert(id.to_owned(), (BufWriter::with_capacity(8192, file), size));
        }
        let (file, size) = self.files.get_mut(id).expect("just inserted");
        if *size > 0 && *size + bytes.len() as u64 > hub.limits.max_size {
            self.files.remove(id);
            for n in (1..hub.limits.max_files).rev() {
                let _ = std::fs::rename(hub.rotated(id, n), hub.rotated(id, n + 1));
            }
            if hub.limits.max_files > 0 {
                std::fs::rename(hub.file(id), hub.rotated(id, 1))?;
            } else {
                std::fs::remove_file(hub.file(id))?;
            }
            return self.write_rotating(hub, id, bytes);
        }
        file.write_all(bytes)?;
        *size += bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopened_log_continues_its_numbering_from_the_end_of_its_newest_file() {
        let dir = tempfile::tempdir().unwrap();
        let limits = LogLimits { max_size: 1 << 20, max_files: 2, buffer_per_sandbox: 1 << 20 };
        let hub = LogHub::start(dir.path(), limits).unwrap();
        let line = |n: u64, m: &str| {
            let mut l = serde_json::to_vec(&LogLine { n, t: 0, s: Stream::Out, m: m.into() }).unwrap();
            l.push(b'\n');
            l
        };
        // A rotated file, and a current one whose last line is long.
        let rotated: Vec<u8> = (0..500).flat_map(|n| line(n, "tick")).collect();
        std::fs::write(hub.rotated("a", 1), rotated).unwrap();
        let mut current: Vec<u8> = (500..900).flat_map(|n| line(n, "tick")).collect();
        current.extend(line(900, &"x".repeat(100 << 10)));
        std::fs::write(hub.file("a"), &current).unwrap();
        assert_eq!(hub.open("a", true).next_seq.load(Ordering::Relaxed), 901);
        // Only a rotated file (the current one was just rotated away).
        std::fs::remove_file(hub.file("a")).unwrap();
        assert_eq!(hub.open("a", true).next_seq.load(Ordering::Relaxed), 500);
        assert_eq!(hub.open("b", true).next_seq.load(Ordering::Relaxed), 0, "no log yet");
    }
}
