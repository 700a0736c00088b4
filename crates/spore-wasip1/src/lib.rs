//! The part of WASI preview 1 that makes sense without an operating system, for Spore's edge
//! runners: arguments, environment, stdout and stderr, exit, clocks, randomness and clock
//! sleeps. Every other preview 1 function links and answers `EBADF` (a descriptor this guest
//! cannot have: there are no files, preopens or sockets) or `ENOSYS`.
//!
//! Engine-agnostic: an engine binds each entry of [`IMPORTS`] to [`Wasi::call`] with the
//! guest's linear memory as a byte slice, so the wasmtime runner and the wasmi one (on Linux
//! and on bare metal) run the same code. What a platform provides — where output goes, its
//! clocks, its entropy, how a guest waits — is its [`Host`].
//!
//! `no_std + alloc`. Depends on no other Spore crate and on nothing at all; must never depend
//! on `std` or an engine.

#![no_std]

extern crate alloc;

mod abi;
mod files;
mod memory;

pub use abi::{Func, IMPORTS, Import, MODULE, Ty, errno, signature};
pub use files::Tree;
pub use memory::{Fault, Guest};

use alloc::vec::Vec;
use memory::{Event, SubKind, Subscription};

/// Why a guest stops inside a WASI call instead of getting an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// It called `proc_exit` with this code.
    Exit(i32),
    /// Its host ended it while it waited (a kill, a time limit).
    Interrupted,
    /// The call has done its work, but the guest is to wait before it gets the answer: until
    /// the monotonic clock reaches `until`, or (`None`) until its host has room for more
    /// output. What a host with one loop for every guest (a board) answers instead of
    /// blocking, and after any call once the guest's turn is over ([`Host::preempt`]); the
    /// engine suspends the guest and, when it is resumed, gives it [`Wasi::finish`]'s answer.
    Park {
        /// Monotonic nanoseconds at which the wait is over; `None`: when the host says.
        until: Option<u64>,
    },
}

/// A guest's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Descriptor 1.
    Stdout,
    /// Descriptor 2.
    Stderr,
}

/// WASI's clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Wall-clock time since the Unix epoch.
    Realtime,
    /// Time that only goes forward, from an arbitrary start.
    Monotonic,
    /// CPU time of the process.
    ProcessCputime,
    /// CPU time of the thread.
    ThreadCputime,
}

/// What a host did with one buffer of a guest's `fd_write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// All of it; the guest goes on.
    All,
    /// Its first bytes, this many (at least one), and the host has no room for more: the
    /// write ends there — short, if that is not all, as POSIX allows — and the guest waits
    /// for its answer until the host has room again ([`Stop::Park`] until `None`). How a
    /// board bounds what a guest's output holds of its RAM.
    Full(usize),
}

/// What a platform gives a guest.
pub trait Host {
    /// Takes the guest's output: all of it (waiting, if it must, until the agent has room: the
    /// guest waits, nothing is lost), or what it has room for ([`Taken::Full`]); or ends the
    /// guest instead.
    fn write(&mut self, stream: Stream, bytes: &[u8]) -> Result<Taken, Stop>;
    /// A clock's time in nanoseconds, or `None` where the platform has no such clock.
    fn now(&mut self, clock: Clock) -> Option<u64>;
    /// A clock's resolution in nanoseconds.
    fn resolution(&mut self, clock: Clock) -> Option<u64>;
    /// Fills `buf` with random bytes (the platform's entropy source, or — said where it is used
    /// — a seeded generator).
    fn random(&mut self, buf: &mut [u8]);
    /// Parks the guest until the monotonic clock reaches `deadline` (nanoseconds), without
    /// spinning: by waiting (a thread of its own), or by answering [`Stop::Park`] (a loop
    /// that runs every guest). Ends early with [`Stop::Interrupted`] when the guest is to end.
    fn sleep_until(&mut self, deadline: u64) -> Result<(), Stop>;
    /// Lets others run.
    fn yield_now(&mut self) -> Result<(), Stop>;
    /// Reads the guest's stdin into `buf`: how many bytes, 0 at its end. A platform with no
    /// input for its guests keeps the default: the end at once.
    fn read_stdin(&mut self, buf: &mut [u8]) -> Result<usize, Stop> {
        let _ = buf;
        Ok(0)
    }
    /// Whether the guest's turn is over, asked after each call: a host with one loop for every
    /// guest answers yes once the call (say, a large `random_get`) has taken the guest past
    /// its slice's time, since fuel counts the guest's work, not its host's. The guest then
    /// waits for its answer until the loop comes back to it. A host whose guests have threads
    /// of their own never needs to.
    fn preempt(&mut self) -> bool {
        false
    }

    /// Host functions beyond WASI preview 1 that this guest may import: those its runner
    /// granted it (a board's devices, a Linux runner's plugins). They are numbered after
    /// [`IMPORTS`] in [`Wasi::call`], so a park, a preemption, a kill or a limit holds for
    /// them as for WASI's own.
    fn functions(&self) -> &[Import] {
        &[]
    }

    /// Calls `functions()[index]` with the guest's memory: its answer (an errno, a count; `0`
    /// for a function that answers nothing), or why the guest stops. [`Stop::Park`] has the
    /// guest wait; [`Host::finish_function`] gives the answer when it goes on.
    fn call_function(&mut self, index: usize, memory: &mut Guest<'_>, args: &[u64]) -> Result<i32, Stop> {
        let _ = (index, memory, args);
        Ok(errno::NOSYS)
    }

    /// The answer of a function call a park suspended, once its wait is over: or
    /// [`Stop::Park`] again if what it waits for has not come yet (a host that looks for it
    /// at each wake).
    fn finish_function(&mut self, index: usize, memory: &mut Guest<'_>) -> Result<i32, Stop> {
        let _ = (index, memory);
        Ok(errno::NOSYS)
    }
}

/// One guest's WASI state: its arguments, environment and host.
pub struct Wasi<H> {
    args: Vec<Vec<u8>>,
    env: Vec<Vec<u8>>,
    /// The platform's side.
    pub host: H,
    /// Monotonic nanoseconds by which any sleep ends, whatever the guest asked: the engine's
    /// wall-clock deadline, so a guest cannot outwait its limit inside one call.
    pub wake_by: Option<u64>,
    /// The call a [`Stop::Park`] suspended, to be finished when the guest goes on.
    parked: Option<Parked>,
    /// Its read-only files, when it was given a [`Tree`].
    files: Option<files::Files>,
}

/// A call whose guest waits for its answer.
enum Parked {
    /// Its answer is ready.
    Answer(i32),
    /// One of the host's own functions, which answers when the guest goes on.
    Function(usize),
    /// A `poll_oneoff` on clocks: which fired is known when the guest goes on.
    Poll { subs: Vec<Subscription>, deadlines: Vec<Option<u64>>, output: u32, events: u32 },
}

/// Bytes one `fd_write` takes at most (a short write, as POSIX allows: the guest's libc writes
/// the rest), so one call's work is bounded and a kill or a limit is looked at between calls.
pub const MAX_WRITE: u32 = 1 << 20;

/// Buffers one `fd_write` takes, and subscriptions one `poll_oneoff` takes (Linux's IOV_MAX).
pub const MAX_VECTORS: u32 = 1024;

/// Rights of descriptor 0 (`fd_read`, `poll_fd_readwrite`) and 1–2 (`fd_write`,
/// `poll_fd_readwrite`), as `fd_fdstat_get` reports them.
const RIGHTS_IN: u64 = (1 << 1) | (1 << 27);
const RIGHTS_OUT: u64 = (1 << 6) | (1 << 27);
/// `filetype::character_device`: what a terminal-like stream is.
const CHARACTER_DEVICE: u8 = 2;

impl<H: Host> Wasi<H> {
    /// A guest with these arguments (the first is the program's name) and `KEY=VALUE` pairs.
    pub fn new<'a>(
        args: impl IntoIterator<Item = &'a str>,
        env: impl IntoIterator<Item = (&'a str, &'a str)>,
        host: H,
    ) -> Wasi<H> {
        let args = args.into_iter().map(|a| a.as_bytes().to_vec()).collect();
        let env = env
            .into_iter()
            .map(|(k, v)| {
                let mut pair = Vec::with_capacity(k.len() + 1 + v.len());
                pair.extend_from_slice(k.as_bytes());
                pair.push(b'=');
                pair.extend_from_slice(v.as_bytes());
                pair
            })
            .collect();
        Wasi { args, env, host, wake_by: None, parked: None, files: None }
    }

    /// Gives the guest `tree`, read-only, as its preopened `/` (descriptor 3).
    pub fn with_root(mut self, tree: Tree) -> Wasi<H> {
        self.files = Some(files::Files::new(tree));
        self
    }

    /// Carries out the preview 1 function at `index` of [`IMPORTS`], with its arguments as
    /// the engine passed them (each `i32` zero-extended) and the guest's linear memory.
    /// Returns the errno for the guest, or why it stops.
    pub fn call(&mut self, index: usize, memory: &mut [u8], args: &[u64]) -> Result<i32, Stop> {
        match self.dispatch(index, memory, args) {
            // Done, but the guest's turn is over: it has the answer when it goes on.
            Ok(errno) if self.host.preempt() => {
                self.parked = Some(Parked::Answer(errno));
                Err(Stop::Park { until: Some(0) })
            }
            other => other,
        }
    }

    fn dispatch(&mut self, index: usize, memory: &mut [u8], args: &[u64]) -> Result<i32, Stop> {
        let mut mem = Guest(memory);
        let Some(func) = Func::from_index(index) else {
            let index = index - IMPORTS.len();
            if index >= self.host.functions().len() {
                return Ok(errno::NOSYS);
            }
            return match self.host.call_function(index, &mut mem, args) {
                Err(Stop::Park { until }) => {
                    self.parked = Some(Parked::Function(index));
                    Err(Stop::Park { until })
                }
                other => other,
            };
        };
        let a = |i: usize| args.get(i).copied().unwrap_or(0) as u32;
        let result = match func {
            Func::args_get => list_get(&mut mem, &self.args, a(0), a(1)),
            Func::args_sizes_get => list_sizes(&mut mem, &self.args, a(0), a(1)),
            Func::environ_get => list_get(&mut mem, &self.env, a(0), a(1)),
            Func::environ_sizes_get => list_sizes(&mut mem, &self.env, a(0), a(1)),
            Func::clock_res_get => match clock(a(0)).and_then(|c| self.host.resolution(c)) {
                Some(ns) => mem.u64(a(1), ns).map(|()| errno::SUCCESS),
                None => Ok(errno::INVAL),
            },
            Func::clock_time_get => match clock(a(0)).and_then(|c| self.host.now(c)) {
                Some(ns) => mem.u64(a(2), ns).map(|()| errno::SUCCESS),
                None => Ok(errno::INVAL),
            },
            Func::fd_write => return self.fd_write(&mut mem, a(0), a(1), a(2), a(3)),
            Func::fd_read if a(0) == 0 => return self.fd_read_stdin(&mut mem, a(1), a(2), a(3)),
            Func::fd_fdstat_get => match a(0) {
                fd @ 0..=2 => {
                    let rights = if fd == 0 { RIGHTS_IN } else { RIGHTS_OUT };
                    let mut stat = [0u8; 24];
                    stat[0] = CHARACTER_DEVICE;
                    stat[8..16].copy_from_slice(&rights.to_le_bytes());
                    mem.bytes(a(1), &stat).map(|()| errno::SUCCESS)
                }
                fd => self.files(fd, |f| f.fdstat_get(&mut mem, fd, a(1))),
            },
            Func::fd_filestat_get => match a(0) {
                0..=2 => {
                    let mut stat = [0u8; 64];
                    stat[16] = CHARACTER_DEVICE;
                    mem.bytes(a(1), &stat).map(|()| errno::SUCCESS)
                }
                fd => self.files(fd, |f| f.filestat_get(&mut mem, fd, a(1))),
            },
            // Without files, EBADF at once is what ends wasi-libc's scan for preopens.
            Func::fd_prestat_get => self.files(a(0), |f| f.prestat_get(&mut mem, a(0), a(1))),
            Func::fd_prestat_dir_name => self.files(a(0), |f| f.prestat_dir_name(&mut mem, a(0), a(1), a(2))),
            Func::fd_close if a(0) > 2 => self.files(a(0), |f| Ok(f.close(a(0)))),
            Func::fd_close | Func::fd_sync | Func::fd_datasync | Func::fd_fdstat_set_flags if a(0) <= 2 => {
                Ok(errno::SUCCESS)
            }
            Func::fd_seek | Func::fd_tell if a(0) <= 2 => Ok(errno::SPIPE),
            Func::fd_read => self.files(a(0), |f| f.read(&mut mem, a(0), a(1), a(2), None, a(3))),
            Func::fd_pread => self.files(a(0), |f| f.read(&mut mem, a(0), a(1), a(2), Some(args[3]), a(4))),
            Func::fd_seek => self.files(a(0), |f| f.seek(&mut mem, a(0), args[1] as i64, a(2), a(3))),
            Func::fd_tell => self.files(a(0), |f| f.tell(&mut mem, a(0), a(1))),
            Func::fd_readdir => self.files(a(0), |f| f.readdir(&mut mem, a(0), a(1), a(2), args[3], a(4))),
            Func::fd_advise | Func::fd_sync | Func::fd_datasync => self.files(a(0), |_| Ok(errno::SUCCESS)),
            Func::path_open => self.files(a(0), |f| f.path_open(&mut mem, a(0), a(2), a(3), a(4), args[5], a(8))),
            Func::path_filestat_get => self.files(a(0), |f| f.path_filestat_get(&mut mem, a(0), a(2), a(3), a(4))),
            Func::poll_oneoff => return self.poll_oneoff(&mut mem, a(0), a(1), a(2), a(3)),
            Func::proc_exit => return Err(Stop::Exit(a(0) as i32)),
            Func::sched_yield => return self.host.yield_now().map(|()| errno::SUCCESS),
            Func::random_get => {
                let (ptr, len) = (a(0), a(1));
                mem.slice_mut(ptr, len).map(|buf| {
                    self.host.random(buf);
                    errno::SUCCESS
                })
            }
            Func::proc_raise => Ok(errno::NOSYS),
            // Everything else names a descriptor: of its read-only files, it would write (or,
            // on a file opened to read, write to it); a file, directory or socket it was not
            // given is a bad descriptor; on 0–2 it is not supported.
            _ => Ok(match &self.files {
                Some(files) if has_fd_first(func) && files.has(a(0)) => match func {
                    Func::fd_write | Func::fd_pwrite => errno::BADF,
                    _ => files.read_only(a(0)),
                },
                _ if a(0) <= 2 && has_fd_first(func) => errno::NOTSUP,
                _ => errno::BADF,
            }),
        };
        Ok(result.unwrap_or(errno::FAULT))
    }

    /// A call on descriptor `fd` of the guest's files (`EBADF` when it has none, or `fd` is not
    /// one of them).
    fn files(&mut self, fd: u32, call: impl FnOnce(&mut files::Files) -> Result<i32, Fault>) -> Result<i32, Fault> {
        match &mut self.files {
            Some(files) if files.has(fd) => call(files),
            _ => Ok(errno::BADF),
        }
    }

    /// `fd_read` of descriptor 0: into the first buffer with room, what the host has (a short
    /// read, as POSIX allows; the guest's libc reads again).
    fn fd_read_stdin(&mut self, mem: &mut Guest<'_>, iovs: u32, count: u32, read: u32) -> Result<i32, Stop> {
        if count > MAX_VECTORS {
            return Ok(errno::INVAL);
        }
        for i in 0..count {
            let Ok((ptr, len)) = mem.iovec(iovs, i) else { return Ok(errno::FAULT) };
            if len == 0 {
                continue;
            }
            let Ok(buf) = mem.slice_mut(ptr, len.min(MAX_WRITE)) else { return Ok(errno::FAULT) };
            let n = self.host.read_stdin(buf)?.min(buf.len());
            return Ok(mem.u32(read, n as u32).map_or(errno::FAULT, |()| errno::SUCCESS));
        }
        Ok(mem.u32(read, 0).map_or(errno::FAULT, |()| errno::SUCCESS))
    }

    fn fd_write(&mut self, mem: &mut Guest<'_>, fd: u32, iovs: u32, count: u32, written: u32) -> Result<i32, Stop> {
        let stream = match fd {
            1 => Stream::Stdout,
            2 => Stream::Stderr,
            _ => return Ok(errno::BADF),
        };
        if count > MAX_VECTORS {
            return Ok(errno::INVAL);
        }
        let mut total: u32 = 0;
        for i in 0..count {
            let Ok((ptr, len)) = mem.iovec(iovs, i) else { return Ok(errno::FAULT) };
            let len = len.min(MAX_WRITE - total);
            let Ok(bytes) = mem.slice(ptr, len) else { return Ok(errno::FAULT) };
            let taken = if bytes.is_empty() { Taken::All } else { self.host.write(stream, bytes)? };
            match taken {
                Taken::All => total += len,
                // The write ends here; the guest's libc writes the rest once it goes on.
                Taken::Full(n) => {
                    total += (n as u32).min(len);
                    let answer = mem.u32(written, total).map_or(errno::FAULT, |()| errno::SUCCESS);
                    self.parked = Some(Parked::Answer(answer));
                    return Err(Stop::Park { until: None });
                }
            }
            if total == MAX_WRITE {
                break;
            }
        }
        Ok(mem.u32(written, total).map_or(errno::FAULT, |()| errno::SUCCESS))
    }

    /// The answer of the call a [`Stop::Park`] suspended, once the guest may have it: a
    /// parked poll learns now which of its clocks have fired. A host function whose wait is
    /// not over parks again (the guest stays suspended in the same call). Call it only after
    /// a park.
    pub fn finish(&mut self, memory: &mut [u8]) -> Result<i32, Stop> {
        match self.parked.take() {
            Some(Parked::Answer(errno)) => Ok(errno),
            Some(Parked::Function(index)) => {
                let answer = self.host.finish_function(index, &mut Guest(memory));
                if let Err(Stop::Park { .. }) = answer {
                    self.parked = Some(Parked::Function(index));
                }
                answer
            }
            Some(Parked::Poll { subs, deadlines, output, events }) => {
                Ok(poll_events(&mut self.host, &mut Guest(memory), &subs, &deadlines, output, events))
            }
            None => Ok(errno::SUCCESS),
        }
    }

    /// Clock subscriptions park the guest until the earliest is due; descriptor ones are
    /// answered at once (stdout and stderr are always writable, stdin is at its end).
    fn poll_oneoff(
        &mut self,
        mem: &mut Guest<'_>,
        input: u32,
        output: u32,
        count: u32,
        events: u32,
    ) -> Result<i32, Stop> {
        if count == 0 || count > MAX_VECTORS {
            return Ok(errno::INVAL);
        }
        let Ok(subs) = (0..count).map(|i| mem.subscription(input, i)).collect::<Result<Vec<_>, _>>() else {
            return Ok(errno::FAULT);
        };
        let start = monotonic(&mut self.host);
        // Each clock subscription's deadline on the monotonic clock (`None`: a clock this
        // platform does not have).
        let deadlines: Vec<Option<u64>> = subs
            .iter()
            .map(|s| match s.kind {
                SubKind::Clock { timeout, absolute: false, .. } => Some(start.saturating_add(timeout)),
                SubKind::Clock { id, timeout, absolute: true } => {
                    let now = clock(id).and_then(|c| self.host.now(c))?;
                    Some(start.saturating_add(timeout.saturating_sub(now)))
                }
                _ => None,
            })
            .collect();
        let answer_now =
            subs.iter().zip(&deadlines).any(|(s, d)| !matches!(s.kind, SubKind::Clock { .. }) || d.is_none());
        if !answer_now && let Some(&earliest) = deadlines.iter().flatten().min() {
            match self.host.sleep_until(earliest.min(self.wake_by.unwrap_or(u64::MAX))) {
                Ok(()) => {}
                Err(Stop::Park { until }) => {
                    self.parked = Some(Parked::Poll { subs, deadlines, output, events });
                    return Err(Stop::Park { until });
                }
                Err(stop) => return Err(stop),
            }
        }
        Ok(poll_events(&mut self.host, mem, &subs, &deadlines, output, events))
    }
}

/// Writes the events of a poll whose wait is over: the clocks that have fired by now, and the
/// descriptors (always ready); the count goes to `events`.
fn poll_events<H: Host>(
    host: &mut H,
    mem: &mut Guest<'_>,
    subs: &[Subscription],
    deadlines: &[Option<u64>],
    output: u32,
    events: u32,
) -> i32 {
    let after = monotonic(host);
    let mut n = 0;
    for (s, deadline) in subs.iter().zip(deadlines) {
        let (error, kind, hangup) = match (s.kind, deadline) {
            (SubKind::Clock { .. }, Some(d)) if *d <= after => (0, 0, false),
            (SubKind::Clock { .. }, Some(_)) => continue,
            (SubKind::Clock { .. }, None) => (errno::INVAL, 0, false),
            (SubKind::Fd { fd: 0, write: false }, _) => (0, 1, true),
            (SubKind::Fd { fd: 1 | 2, write: true }, _) => (0, 2, false),
            (SubKind::Fd { write, .. }, _) => (errno::BADF, if write { 2 } else { 1 }, false),
            (SubKind::Unknown, _) => (errno::INVAL, 0, false),
        };
        let event = Event { userdata: s.userdata, error: error as u16, kind, nbytes: 0, hangup };
        if mem.event(output, n, &event).is_err() {
            return errno::FAULT;
        }
        n += 1;
    }
    mem.u32(events, n).map_or(errno::FAULT, |()| errno::SUCCESS)
}

/// The monotonic time, or 0 on a platform without one (then sleeps end at once).
fn monotonic<H: Host>(host: &mut H) -> u64 {
    host.now(Clock::Monotonic).unwrap_or(0)
}

fn clock(id: u32) -> Option<Clock> {
    match id {
        0 => Some(Clock::Realtime),
        1 => Some(Clock::Monotonic),
        2 => Some(Clock::ProcessCputime),
        3 => Some(Clock::ThreadCputime),
        _ => None,
    }
}

/// Whether a function's first argument is a descriptor (every `fd_*` and `sock_*`; a `path_*`
/// one's is its directory).
fn has_fd_first(func: Func) -> bool {
    let name = IMPORTS[func as usize].name;
    name.starts_with("fd_") || name.starts_with("sock_") || name.starts_with("path_")
}

/// `args_get`/`environ_get`: the pointers, then the NUL-terminated strings.
fn list_get(mem: &mut Guest<'_>, list: &[Vec<u8>], pointers: u32, buf: u32) -> Result<i32, Fault> {
    let mut at = buf;
    for (i, item) in list.iter().enumerate() {
        mem.u32(pointers.checked_add(4 * i as u32).ok_or(Fault)?, at)?;
        mem.bytes(at, item)?;
        mem.bytes(at.checked_add(item.len() as u32).ok_or(Fault)?, &[0])?;
        at = at.checked_add(item.len() as u32 + 1).ok_or(Fault)?;
    }
    Ok(errno::SUCCESS)
}

/// `args_sizes_get`/`environ_sizes_get`: how many, and their bytes with terminators.
fn list_sizes(mem: &mut Guest<'_>, list: &[Vec<u8>], count: u32, size: u32) -> Result<i32, Fault> {
    let bytes: usize = list.iter().map(|i| i.len() + 1).sum();
    let Ok(bytes) = u32::try_from(bytes) else { return Ok(errno::OVERFLOW) };
    mem.u32(count, list.len() as u32)?;
    mem.u32(size, bytes)?;
    Ok(errno::SUCCESS)
}

#[cfg(test)]
extern crate std;

#[cfg(test)]
mod tests;
