//! The byte streams a runner and its agent talk over — a Unix socket, TCP, a serial line — and
//! the framing both sides put on them (spore-wire's COBS stream form). One type for each end of
//! whichever link, so the protocol code above never knows which it has.

use spore_wire::{DeframeError, Deframer, Message};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Where a runner is, as the agent's `--host` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `runner+unix://PATH`
    Unix(PathBuf),
    /// `runner+tcp://HOST:PORT`
    Tcp(String),
    /// `serial:///dev/ttyX?baud=N` (115200 if not given)
    Serial {
        /// The device.
        path: PathBuf,
        /// Its speed.
        baud: u32,
    },
}

/// Speed of a serial line when none is given.
pub const DEFAULT_BAUD: u32 = 115_200;

impl Address {
    /// Parses a `--host` value that names a runner; `None` when it names something else (the
    /// daemon's addresses), an error when it is a runner address with a mistake in it.
    pub fn parse(host: &str) -> Option<Result<Address, String>> {
        if let Some(path) = host.strip_prefix("runner+unix://") {
            return Some(match path {
                "" => Err("runner+unix:// needs the socket's path, e.g. runner+unix:///run/spore-runner.sock".into()),
                path => Ok(Address::Unix(PathBuf::from(path))),
            });
        }
        if let Some(at) = host.strip_prefix("runner+tcp://") {
            return Some(match at.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => Ok(Address::Tcp(at.to_string())),
                _ => Err(format!("runner+tcp://{at}: give HOST:PORT, e.g. runner+tcp://10.0.0.7:7411")),
            });
        }
        let rest = host.strip_prefix("serial://")?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Some(Err("serial:// needs the device, e.g. serial:///dev/ttyUSB0?baud=115200".into()));
        }
        let mut baud = DEFAULT_BAUD;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("baud", n)) => match n.parse() {
                    Ok(n) if supported_baud(n).is_some() => baud = n,
                    _ => return Some(Err(format!("{host}: baud={n} is not a speed a serial line has (e.g. 115200)"))),
                },
                _ => return Some(Err(format!("{host}: unknown option {pair:?}; the one option is baud=N"))),
            }
        }
        Some(Ok(Address::Serial { path: PathBuf::from(path), baud }))
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "runner+unix://{}", path.display()),
            Address::Tcp(at) => write!(f, "runner+tcp://{at}"),
            Address::Serial { path, baud } => write!(f, "serial://{}?baud={baud}", path.display()),
        }
    }
}

/// The reading half of a link.
pub enum RawReader {
    /// A Unix socket.
    Unix(UnixStream),
    /// TCP.
    Tcp(TcpStream),
    /// A serial line, with the timeout its reads wait.
    Serial(File, Option<Duration>),
}

/// The writing half of a link.
pub enum RawWriter {
    /// A Unix socket.
    Unix(UnixStream),
    /// TCP.
    Tcp(TcpStream),
    /// A serial line.
    Serial(File),
}

impl RawReader {
    /// Makes reads give up (as `TimedOut`/`WouldBlock`) after `timeout`.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            RawReader::Unix(s) => s.set_read_timeout(timeout),
            RawReader::Tcp(s) => s.set_read_timeout(timeout),
            RawReader::Serial(_, t) => {
                *t = timeout;
                Ok(())
            }
        }
    }
}

impl Read for RawReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            RawReader::Unix(s) => s.read(buf),
            RawReader::Tcp(s) => s.read(buf),
            RawReader::Serial(file, timeout) => {
                if let Some(t) = timeout {
                    wait_ready(file, libc::POLLIN, *t)?;
                }
                file.read(buf)
            }
        }
    }
}

impl Write for RawWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            RawWriter::Unix(s) => s.write(buf),
            RawWriter::Tcp(s) => s.write(buf),
            RawWriter::Serial(f) => {
                wait_ready(f, libc::POLLOUT, WRITE_TIMEOUT)?;
                f.write(buf)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            RawWriter::Unix(s) => s.flush(),
            RawWriter::Tcp(s) => s.flush(),
            RawWriter::Serial(f) => f.flush(),
        }
    }
}

/// Waits until `file` is ready for `events` (reading or writing), at most `timeout`.
fn wait_ready(file: &File, events: libc::c_short, timeout: Duration) -> io::Result<()> {
    let mut fd = libc::pollfd { fd: file.as_raw_fd(), events, revents: 0 };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd for the duration of the call.
    match unsafe { libc::poll(&mut fd, 1, ms) } {
        -1 => Err(io::Error::last_os_error()),
        0 => Err(io::Error::new(io::ErrorKind::TimedOut, "the serial line was not ready in time")),
        _ => Ok(()),
    }
}

/// How long a write may wait for the peer to read: a peer that stops reading is gone, and
/// the run writing to it is not held forever.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Both halves of a link, as [`connect`] and [`Listener::accept`] give them.
pub fn split_unix(s: UnixStream) -> io::Result<(RawReader, RawWriter)> {
    s.set_write_timeout(Some(WRITE_TIMEOUT))?;
    Ok((RawReader::Unix(s.try_clone()?), RawWriter::Unix(s)))
}

fn split_tcp(s: TcpStream) -> io::Result<(RawReader, RawWriter)> {
    s.set_nodelay(true)?;
    s.set_write_timeout(Some(WRITE_TIMEOUT))?;
    Ok((RawReader::Tcp(s.try_clone()?), RawWriter::Tcp(s)))
}

fn split_serial(f: File) -> io::Result<(RawReader, RawWriter)> {
    Ok((RawReader::Serial(f.try_clone()?, None), RawWriter::Serial(f)))
}

/// The user on the other end of a Unix socket (`SO_PEERCRED`).
fn peer_uid(s: &UnixStream) -> io::Result<u32> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is that large, on a
    // descriptor `s` owns.
    let done = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast::<libc::c_void>(),
            &mut len,
        )
    };
    match done {
        0 => Ok(cred.uid),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Refuses a Unix link whose other end is neither this process's user nor root: the agent
/// would hand a runner planted at the path its apps (and native code), and a runner would take
/// them from another user if its socket's mode were loosened. The daemon's rule, both ends.
fn check_peer(s: &UnixStream, path: &Path) -> io::Result<()> {
    let peer = peer_uid(s)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    match peer == me || peer == 0 {
        true => Ok(()),
        false => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("the socket {} is held by user {peer}, neither this user ({me}) nor root; refused", path.display()),
        )),
    }
}

/// The agent's end: connects to a runner.
pub fn connect(address: &Address) -> io::Result<(RawReader, RawWriter)> {
    match address {
        Address::Unix(path) => {
            let s = UnixStream::connect(path)?;
            check_peer(&s, path)?;
            split_unix(s)
        }
        Address::Tcp(at) => split_tcp(TcpStream::connect(at)?),
        Address::Serial { path, baud } => split_serial(open_serial(path, *baud)?),
    }
}

/// Opens a serial device raw (no echo, no line editing, 8 data bits, no flow control) at
/// `baud`, so every byte of a frame goes through as it is.
pub fn open_serial(path: &Path, baud: u32) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let speed = supported_baud(baud)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{baud} is not a serial line speed")))?;
    let file = std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOCTTY).open(path)?;
    let fd = file.as_raw_fd();
    // SAFETY: termios is plain data; the calls read and write the one we own, on our open fd.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a serial line: {}", path.display(), io::Error::last_os_error()),
            ));
        }
        libc::cfmakeraw(&mut t);
        t.c_cflag |= libc::CLOCAL | libc::CREAD;
        t.c_cflag &= !libc::CRTSCTS;
        t.c_cc[libc::VMIN] = 1;
        t.c_cc[libc::VTIME] = 0;
        libc::cfsetispeed(&mut t, speed);
        libc::cfsetospeed(&mut t, speed);
        if libc::tcsetattr(fd, libc::TCSANOW, &t) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(file)
}

fn supported_baud(baud: u32) -> Option<libc::speed_t> {
    Some(match baud {
        9600 => libc::B9600,
        19200 => libc::B19200,
        38400 => libc::B38400,
        57600 => libc::B57600,
        115_200 => libc::B115200,
        230_400 => libc::B230400,
        460_800 => libc::B460800,
        921_600 => libc::B921600,
        1_000_000 => libc::B1000000,
        2_000_000 => libc::B2000000,
        4_000_000 => libc::B4000000,
        _ => return None,
    })
}

/// Frames read off a link: bytes in, whole frames (or what was wrong with them) out.
pub struct FrameReader {
    raw: RawReader,
    deframer: Deframer,
    ready: VecDeque<Result<Vec<u8>, DeframeError>>,
}

impl FrameReader {
    /// Reads `raw`, accepting payloads up to `max_payload` until [`FrameReader::set_max`].
    pub fn new(raw: RawReader, max_payload: u32) -> FrameReader {
        FrameReader { raw, deframer: Deframer::new(max_payload), ready: VecDeque::new() }
    }

    /// The largest payload accepted from now on (after `HELLO`).
    pub fn set_max(&mut self, max_payload: u32) {
        self.deframer.set_max(max_payload);
    }

    /// Makes [`FrameReader::next_frame`] give up after `timeout`.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.raw.set_timeout(timeout)
    }

    /// The next frame's bytes, or why the bytes up to its delimiter were not one; `None` when the
    /// link closed.
    pub fn next_frame(&mut self) -> io::Result<Option<Result<Vec<u8>, DeframeError>>> {
        let mut buf = [0u8; 8192];
        loop {
            if let Some(frame) = self.ready.pop_front() {
                return Ok(Some(frame));
            }
            let n = match self.raw.read(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.ready.extend(self.deframer.feed(&buf[..n]));
        }
    }
}

/// Writes frames onto a link; shared by the threads that answer requests and stream output.
pub struct FrameWriter(Mutex<RawWriter>);

impl FrameWriter {
    /// Writes onto `raw`.
    pub fn new(raw: RawWriter) -> FrameWriter {
        FrameWriter(Mutex::new(raw))
    }

    /// Sends `message` under `request_id`.
    pub fn send(&self, request_id: u32, flags: u16, message: &Message) -> io::Result<()> {
        self.send_raw(&spore_wire::to_stream(request_id, flags, message))
    }

    /// Sends bytes already in stream form (a frame kept for retransmission).
    pub fn send_raw(&self, bytes: &[u8]) -> io::Result<()> {
        let mut raw = self.0.lock().unwrap_or_else(|p| p.into_inner());
        raw.write_all(bytes)?;
        raw.flush()
    }
}

/// Where a runner listens.
pub enum Listener {
    /// A Unix socket (mode 0600: its authority is who may open it).
    Unix(UnixListener, PathBuf),
    /// TCP (every link must give the token).
    Tcp(TcpListener),
    /// A serial line: one link, opened again when it ends.
    Serial(PathBuf, u32),
}

impl Listener {
    /// Listens on a Unix socket at `path`, replacing a stale one; only the owner may connect.
    pub fn unix(path: &Path) -> io::Result<Listener> {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        match UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by another runner; stop it or choose another --socket", path.display()),
                ));
            }
            // A stale socket of an earlier runner is replaced; any other file is not ours to remove.
            Err(_) => match std::fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists and is not a socket; choose another --socket", path.display()),
                    ));
                }
                Err(_) => {}
            },
        }
        // Made owner-only from the start (umask), not after a window in which others may connect.
        // SAFETY: umask only swaps the process's file mode mask; restored right after bind.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let listener = bound?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Listener::Unix(listener, path.to_path_buf()))
    }

    /// Listens on TCP at `at` (`HOST:PORT`).
    pub fn tcp(at: &str) -> io::Result<Listener> {
        Ok(Listener::Tcp(TcpListener::bind(at)?))
    }

    /// Serves the serial line at `path`.
    pub fn serial(path: &Path, baud: u32) -> io::Result<Listener> {
        // Opened once now, so a missing device is an error at start, not a silent retry loop.
        drop(open_serial(path, baud)?);
        Ok(Listener::Serial(path.to_path_buf(), baud))
    }

    /// The next link, and who is on it (for the log).
    pub fn accept(&self) -> io::Result<(RawReader, RawWriter, String)> {
        match self {
            Listener::Unix(l, path) => loop {
                let (s, _) = l.accept()?;
                if let Err(e) = check_peer(&s, path) {
                    eprintln!("spore-runner: a link on {}: {e}", path.display());
                    continue;
                }
                let (r, w) = split_unix(s)?;
                return Ok((r, w, format!("unix:{}", path.display())));
            },
            Listener::Tcp(l) => {
                let (s, peer) = l.accept()?;
                let (r, w) = split_tcp(s)?;
                Ok((r, w, format!("tcp:{peer}")))
            }
            Listener::Serial(path, baud) => {
                let (r, w) = split_serial(open_serial(path, *baud)?)?;
                Ok((r, w, format!("serial:{}", path.display())))
            }
        }
    }

    /// What it listens on, for messages.
    pub fn describe(&self) -> String {
        match self {
            Listener::Unix(_, path) => format!("--socket {}", path.display()),
            Listener::Tcp(l) => format!("--listen {}", l.local_addr().map(|a| a.to_string()).unwrap_or_default()),
            Listener::Serial(path, _) => format!("--serial {}", path.display()),
        }
    }

    /// Whether links come one at a time (a serial line) rather than side by side.
    pub fn is_serial(&self) -> bool {
        matches!(self, Listener::Serial(..))
    }

    /// Whether links must give the token.
    pub fn needs_token(&self) -> bool {
        matches!(self, Listener::Tcp(_))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}
