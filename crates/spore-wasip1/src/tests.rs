//! The functions against a guest memory laid out as wasi-libc lays it out, with a host that
//! records what it is asked. (Real guests run through both engines in the runner's tests.)

use super::*;
use alloc::string::String;
use alloc::vec;

#[derive(Default)]
struct Recorder {
    out: Vec<(Stream, Vec<u8>)>,
    clock: u64,
    slept_until: Vec<u64>,
    /// Parks instead of waiting, as a board's one loop does.
    parks: bool,
    /// Room for output when it parks.
    room: usize,
    /// Says every call ends the guest's turn.
    preempts: bool,
}

impl Host for Recorder {
    fn write(&mut self, stream: Stream, bytes: &[u8]) -> Result<Taken, Stop> {
        if !self.parks {
            self.out.push((stream, bytes.to_vec()));
            return Ok(Taken::All);
        }
        let n = bytes.len().min(self.room).max(1);
        self.room -= n.min(self.room);
        self.out.push((stream, bytes[..n].to_vec()));
        Ok(if self.room == 0 { Taken::Full(n) } else { Taken::All })
    }
    fn now(&mut self, clock: Clock) -> Option<u64> {
        match clock {
            Clock::Monotonic => Some(self.clock),
            Clock::Realtime => Some(1_700_000_000_000_000_000 + self.clock),
            _ => None,
        }
    }
    fn resolution(&mut self, _: Clock) -> Option<u64> {
        Some(1000)
    }
    fn random(&mut self, buf: &mut [u8]) {
        buf.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8 ^ 0x5a);
    }
    fn sleep_until(&mut self, deadline: u64) -> Result<(), Stop> {
        self.slept_until.push(deadline);
        if self.parks {
            return Err(Stop::Park { until: Some(deadline) });
        }
        self.clock = self.clock.max(deadline);
        Ok(())
    }
    fn yield_now(&mut self) -> Result<(), Stop> {
        Ok(())
    }
    fn preempt(&mut self) -> bool {
        self.preempts
    }
    fn functions(&self) -> &[Import] {
        const LED: &[Import] = &[
            Import { module: "spore:device/gpio@0.1", name: "set", params: &[Ty::I32, Ty::I32], returns: true },
            Import { module: "spore:device/gpio@0.1", name: "watch", params: &[Ty::I32, Ty::I32], returns: true },
        ];
        LED
    }
    fn call_function(&mut self, index: usize, memory: &mut Guest<'_>, args: &[u64]) -> Result<i32, Stop> {
        match index {
            0 => Ok(memory.bytes(args[0] as u32, &[args[1] as u8]).map_or(errno::FAULT, |()| 0)),
            _ => Err(Stop::Park { until: Some(5) }),
        }
    }
    fn finish_function(&mut self, index: usize, memory: &mut Guest<'_>) -> Result<i32, Stop> {
        // What it waits for is a non-zero first byte.
        match memory.0[0] {
            0 => Err(Stop::Park { until: Some(6) }),
            b => Ok(b as i32 + index as i32),
        }
    }
}

fn wasi() -> Wasi<Recorder> {
    Wasi::new(["app.wasm", "--flag", "ünïcode"], [("HOME", "/"), ("A", "")], Recorder::default())
}

fn call(w: &mut Wasi<Recorder>, mem: &mut [u8], func: Func, args: &[u64]) -> Result<i32, Stop> {
    w.call(func as usize, mem, args)
}

fn u32_at(mem: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(mem[at..at + 4].try_into().unwrap())
}

fn strings(mem: &[u8], pointers: usize, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let p = u32_at(mem, pointers + 4 * i) as usize;
            let end = p + mem[p..].iter().position(|&b| b == 0).unwrap();
            String::from_utf8(mem[p..end].to_vec()).unwrap()
        })
        .collect()
}

#[test]
fn arguments_and_environment_are_laid_out_as_wasi_libc_reads_them() {
    let (mut w, mut mem) = (wasi(), vec![0u8; 1024]);
    assert_eq!(call(&mut w, &mut mem, Func::args_sizes_get, &[0, 4]), Ok(0));
    assert_eq!((u32_at(&mem, 0), u32_at(&mem, 4)), (3, 9 + 7 + 10));
    assert_eq!(call(&mut w, &mut mem, Func::args_get, &[100, 200]), Ok(0));
    assert_eq!(strings(&mem, 100, 3), ["app.wasm", "--flag", "ünïcode"]);
    assert_eq!(call(&mut w, &mut mem, Func::environ_sizes_get, &[0, 4]), Ok(0));
    assert_eq!((u32_at(&mem, 0), u32_at(&mem, 4)), (2, 7 + 3));
    assert_eq!(call(&mut w, &mut mem, Func::environ_get, &[300, 400]), Ok(0));
    assert_eq!(strings(&mem, 300, 2), ["HOME=/", "A="]);
}

#[test]
fn writes_gather_their_buffers_to_the_hosts_streams() {
    let (mut w, mut mem) = (wasi(), vec![0u8; 1024]);
    mem[500..505].copy_from_slice(b"hello");
    mem[600..607].copy_from_slice(b", world");
    // Two iovecs at 0: (500, 5), (600, 7).
    for (i, v) in [500u32, 5, 600, 7].iter().enumerate() {
        mem[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
    }
    assert_eq!(call(&mut w, &mut mem, Func::fd_write, &[1, 0, 2, 32]), Ok(0));
    assert_eq!(u32_at(&mem, 32), 12);
    assert_eq!(call(&mut w, &mut mem, Func::fd_write, &[2, 0, 1, 32]), Ok(0));
    let out: Vec<_> = w.host.out.iter().map(|(s, b)| (*s, b.as_slice())).collect();
    assert_eq!(out, [(Stream::Stdout, &b"hello"[..]), (Stream::Stdout, b", world"), (Stream::Stderr, b"hello")]);
    // Descriptor 3 is nobody's; a buffer past the memory's end is the guest's fault, not ours.
    assert_eq!(call(&mut w, &mut mem, Func::fd_write, &[3, 0, 1, 32]), Ok(errno::BADF));
    mem[0..4].copy_from_slice(&1020u32.to_le_bytes());
    assert_eq!(call(&mut w, &mut mem, Func::fd_write, &[1, 0, 1, 32]), Ok(errno::FAULT));
}

#[test]
fn exit_stops_the_guest_with_its_code() {
    let (mut w, mut mem) = (wasi(), vec![0u8; 64]);
    assert_eq!(call(&mut w, &mut mem, Func::proc_exit, &[u32::MAX as u64]), Err(Stop::Exit(-1)));
    assert_eq!(call(&mut w, &mut mem, Func::proc_exit, &[3]), Err(Stop::Exit(3)));
}

/// A subscription at `at`: userdata, tag, then the union (clock id, timeout, precision, flags
/// or the descriptor).
fn subscribe(mem: &mut [u8], at: usize, userdata: u64, tag: u8, id_or_fd: u32, timeout: u64, absolute: bool) {
    mem[at..at + 48].fill(0);
    mem[at..at + 8].copy_from_slice(&userdata.to_le_bytes());
    mem[at + 8] = tag;
    mem[at + 16..at + 20].copy_from_slice(&id_or_fd.to_le_bytes());
    mem[at + 24..at + 32].copy_from_slice(&timeout.to_le_bytes());
    mem[at + 40] = u8::from(absolute);
}

#[test]
fn a_clock_poll_parks_the_guest_until_the_earliest_deadline() {
    let (mut w, mut mem) = (wasi(), vec![0u8; 1024]);
    w.host.clock = 1_000;
    subscribe(&mut mem, 0, 7, 0, 1, 5_000, false);
    subscribe(&mut mem, 48, 8, 0, 1, 9_000, false);
    assert_eq!(call(&mut w, &mut mem, Func::poll_oneoff, &[0, 200, 2, 400]), Ok(0));
    assert_eq!(w.host.slept_until, [6_000]);
    // Only the due one fired.
    assert_eq!(u32_at(&mem, 400), 1);
    assert_eq!(u64::from_le_bytes(mem[200..208].try_into().unwrap()), 7);
    // An absolute deadline on the realtime clock, 2 µs ahead of it.
    let realtime = 1_700_000_000_000_000_000 + w.host.clock;
    subscribe(&mut mem, 0, 9, 0, 0, realtime + 2_000, true);
    assert_eq!(call(&mut w, &mut mem, Func::poll_oneoff, &[0, 200, 1, 400]), Ok(0));
    assert_eq!(w.host.slept_until, [6_000, 8_000]);
}

#[test]
fn a_parked_poll_learns_which_clocks_fired_when_the_guest_goes_on() {
    let (mut w, mut mem) = (wasi(), vec![0u8; 1024]);
    w.host.parks = true;
    w.host.clock = 1_000;
    subscribe(&mut mem, 0, 7, 0, 1, 5_000, false);
    subscribe(&mut mem, 48, 8, 0, 1, 9_000, false);
    mem[400..404].fill(0xff);
    assert_eq!(call(&mut w, &mut mem, Func::poll_oneoff, &[0, 200, 2, 400]), Err(Stop::Park { until: Some(6_000) }));
    assert_eq!(u32_at(&mem, 400), u32::MAX, "no events before the wait is over");
    // Its host wakes it later than asked: both deadlines are past by then.
    w.host.clock = 10_500;
    assert_eq!(w.finish(&mut mem), Ok(errno::SUCCESS));
    assert_eq!(u32_at(&mem, 400), 2);
    assert_eq!(u64::from_le_bytes(mem[232..240].try_into().unwrap()), 8);
}

#[test]
fn a_write_to_a_full_host_is_short_and_answered_when_the_guest_goes_on() {
    let (mut w, mut mem) = (wasi(), vec![0u8; 1024]);
    w.host.parks = true;
    mem[500..505].copy_from_slice(b"hello");
    mem[600..607].copy_from_slice(b", world");
    for (i, v) in [500u32, 5, 600, 7].iter().enumerate() {
        mem[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
    }
    // Room for the first buffer and two bytes of the second: the host holds no more than that.
    w.host.room = 7;
    assert_eq!(call(&mut w, &mut mem, Func::fd_write, &[1, 0, 2, 32]), Err(Stop::Park { until: None }));
    assert_eq!(u32_at(&mem, 32), 7);
    assert_eq!(w.host.out, [(Stream::Stdout, b"hello".to_vec()), (Stream::Stdout, b", ".to_vec())]);
    assert_eq!(w.finish(&mut mem), Ok(errno::SUCCESS));
    // Room for exactly the first buffer: the write ends after it, and the guest waits.
    w.host.room = 5;
    assert_eq!(call(&mut w, &mut mem, Func::fd_write, &[1, 0, 2, 32]), Err(Stop::Park { until: None }));
    assert_eq!(u32_at(&mem, 32), 5);
}

#[test]
fn a_call_that_ends_the_guests_turn_is_answered_when_it_goes_on() {
    let (mut w, mut mem) = (wasi(), vec![0u8; 256]);
    w.host.preempts = true;
    assert_eq!(call(&mut w, &mut mem, Func::random_get, &[16, 64]), Err(Stop::Park { until: Some(0) }));
    // The work is done before the guest waits; its answer waits for it.
    assert!(mem[16..80].iter().enumerate().all(|(i, b)| *b == i as u8 ^ 0x5a));
    assert_eq!(w.finish(&mut mem), Ok(errno::SUCCESS));
    assert_eq!(call(&mut w, &mut mem, Func::fd_seek, &[7, 0, 0, 0]), Err(Stop::Park { until: Some(0) }));
    assert_eq!(w.finish(&mut mem), Ok(errno::BADF));
}

#[test]
fn descriptor_polls_are_answered_at_once() {
    let (mut w, mut mem) = (wasi(), vec![0u8; 1024]);
    subscribe(&mut mem, 0, 1, 0, 1, 1_000_000_000, false);
    subscribe(&mut mem, 48, 2, 2, 1, 0, false);
    subscribe(&mut mem, 96, 3, 1, 5, 0, false);
    assert_eq!(call(&mut w, &mut mem, Func::poll_oneoff, &[0, 200, 3, 400]), Ok(0));
    assert!(w.host.slept_until.is_empty());
    assert_eq!(u32_at(&mem, 400), 2);
    // Stdout writable; descriptor 5 refused with EBADF in its event.
    assert_eq!((mem[200], mem[210], u16::from_le_bytes([mem[208], mem[209]])), (2, 2, 0));
    assert_eq!((mem[232], mem[242], u16::from_le_bytes([mem[240], mem[241]])), (3, 1, errno::BADF as u16));
    assert_eq!(call(&mut w, &mut mem, Func::poll_oneoff, &[0, 200, 0, 400]), Ok(errno::INVAL));
}

#[test]
fn the_rest_answers_with_an_errno_and_nothing_panics() {
    let (mut w, mut mem) = (wasi(), vec![0u8; 256]);
    assert_eq!(call(&mut w, &mut mem, Func::fd_prestat_get, &[3, 0]), Ok(errno::BADF));
    assert_eq!(call(&mut w, &mut mem, Func::path_open, &[3, 0, 0, 4, 0, 0, 0, 0, 0]), Ok(errno::BADF));
    assert_eq!(call(&mut w, &mut mem, Func::fd_seek, &[1, 0, 0, 0]), Ok(errno::SPIPE));
    assert_eq!(call(&mut w, &mut mem, Func::sock_accept, &[1, 0, 0]), Ok(errno::NOTSUP));
    assert_eq!(call(&mut w, &mut mem, Func::proc_raise, &[9]), Ok(errno::NOSYS));
    assert_eq!(w.call(IMPORTS.len() + 2, &mut mem, &[]), Ok(errno::NOSYS));
    // Every function with every argument at the edges of memory, or past it.
    for (i, import) in IMPORTS.iter().enumerate() {
        for edge in [0u64, 255, 256, u32::MAX as u64 - 3, u32::MAX as u64] {
            let args = vec![edge; import.params.len()];
            let n = w.host.out.len();
            match w.call(i, &mut mem, &args) {
                Ok(errno) => assert!((0..=76).contains(&errno), "{} gave {errno}", import.name),
                Err(Stop::Exit(_)) => assert_eq!(import.name, "proc_exit"),
                Err(stop) => panic!("{} stopped: {stop:?}", import.name),
            }
            // None of these names descriptor 1 or 2: nothing reaches the streams.
            assert_eq!(w.host.out.len(), n);
        }
    }
}

#[test]
fn streams_are_character_devices_and_random_fills_its_buffer() {
    let (mut w, mut mem) = (wasi(), vec![0u8; 256]);
    assert_eq!(call(&mut w, &mut mem, Func::fd_fdstat_get, &[1, 8]), Ok(0));
    assert_eq!(mem[8], CHARACTER_DEVICE);
    assert_eq!(u64::from_le_bytes(mem[16..24].try_into().unwrap()), RIGHTS_OUT);
    assert_eq!(call(&mut w, &mut mem, Func::fd_fdstat_get, &[4, 8]), Ok(errno::BADF));
    assert_eq!(call(&mut w, &mut mem, Func::random_get, &[100, 16]), Ok(0));
    assert_eq!(mem[100..116].iter().filter(|&&b| b != 0).count(), 16);
    assert_eq!(call(&mut w, &mut mem, Func::random_get, &[250, 16]), Ok(errno::FAULT));
    assert_eq!(call(&mut w, &mut mem, Func::clock_time_get, &[1, 0, 0]), Ok(0));
    assert_eq!(call(&mut w, &mut mem, Func::clock_time_get, &[2, 0, 0]), Ok(errno::INVAL));
}

#[test]
fn one_write_takes_at_most_max_write_bytes_and_max_vectors_buffers() {
    // 1,000 buffers of the same 4 KiB: 4 MB asked for, MAX_WRITE taken, the rest left to the
    // guest's libc (a short write), so one call's work is bounded.
    let (mut w, mut mem) = (wasi(), vec![0u8; 16 * 1024]);
    for i in 0..1000 {
        mem[8 * i..8 * i + 4].copy_from_slice(&8192u32.to_le_bytes());
        mem[8 * i + 4..8 * i + 8].copy_from_slice(&4096u32.to_le_bytes());
    }
    assert_eq!(call(&mut w, &mut mem, Func::fd_write, &[1, 0, 1000, 8000]), Ok(0));
    assert_eq!(u32_at(&mem, 8000), MAX_WRITE);
    assert_eq!(w.host.out.iter().map(|(_, b)| b.len() as u32).sum::<u32>(), MAX_WRITE);
    assert_eq!(call(&mut w, &mut mem, Func::fd_write, &[1, 0, MAX_VECTORS as u64 + 1, 8000]), Ok(errno::INVAL));
    assert_eq!(call(&mut w, &mut mem, Func::poll_oneoff, &[0, 0, MAX_VECTORS as u64 + 1, 8000]), Ok(errno::INVAL));
}

#[test]
fn a_sleep_ends_by_the_engines_deadline() {
    let (mut w, mut mem) = (wasi(), vec![0u8; 1024]);
    w.wake_by = Some(5_000);
    // One relative clock subscription at 0 (userdata 7, monotonic, 1 s).
    mem[0..8].copy_from_slice(&7u64.to_le_bytes());
    mem[8] = 0;
    mem[16..20].copy_from_slice(&1u32.to_le_bytes());
    mem[24..32].copy_from_slice(&1_000_000_000u64.to_le_bytes());
    assert_eq!(call(&mut w, &mut mem, Func::poll_oneoff, &[0, 200, 1, 400]), Ok(0));
    assert_eq!(w.host.slept_until, [5_000]);
    // Woken early: no event is due, and the engine ends the run at its limit.
    assert_eq!(u32_at(&mem, 400), 0);
}

#[test]
fn the_hosts_own_functions_are_called_after_wasis_and_may_park_like_them() {
    let (mut w, mut mem) = (wasi(), vec![0u8; 64]);
    let set = IMPORTS.len();
    assert_eq!(w.call(set, &mut mem, &[10, 1]), Ok(0));
    assert_eq!(mem[10], 1);
    assert_eq!(w.call(set, &mut mem, &[64, 1]), Ok(errno::FAULT), "memory is checked for them too");
    assert_eq!(w.call(set + 1, &mut mem, &[3, 0]), Err(Stop::Park { until: Some(5) }));
    assert_eq!(w.finish(&mut mem), Err(Stop::Park { until: Some(6) }), "not yet: it waits again");
    mem[0] = 40;
    assert_eq!(w.finish(&mut mem), Ok(41), "the parked function answers when its wait is over");
    assert_eq!(w.call(set + 2, &mut mem, &[]), Ok(errno::NOSYS), "past the host's functions");
    assert_eq!(w.host.functions()[0].signature(), "(i32, i32) -> i32");
    assert_eq!(IMPORTS[Func::proc_exit as usize].signature(), "(i32)");
}

/// Puts `path` at 900 and answers its length.
fn path(mem: &mut [u8], path: &str) -> u64 {
    mem[900..900 + path.len()].copy_from_slice(path.as_bytes());
    path.len() as u64
}

#[test]
fn a_root_tree_is_preopened_read_only_and_kept_inside() {
    let mut tree = Tree::new();
    tree.file("/etc/motd", b"hello, bundle");
    tree.file("/app.js", b"js");
    let mut w = wasi().with_root(tree);
    let mut mem = vec![0u8; 1024];
    // The preopen scan: 3 is "/", 4 ends it.
    assert_eq!(call(&mut w, &mut mem, Func::fd_prestat_get, &[3, 0]), Ok(0));
    assert_eq!((u32_at(&mem, 0), u32_at(&mem, 4)), (0, 1));
    assert_eq!(call(&mut w, &mut mem, Func::fd_prestat_dir_name, &[3, 8, 1]), Ok(0));
    assert_eq!(&mem[8..9], b"/");
    assert_eq!(call(&mut w, &mut mem, Func::fd_prestat_get, &[4, 0]), Ok(errno::BADF));
    // Open to read (rights: fd_read), read in two pieces, seek back, read at an offset.
    let n = path(&mut mem, "etc/../etc/./motd");
    assert_eq!(call(&mut w, &mut mem, Func::path_open, &[3, 0, 900, n, 0, 1 << 1, 0, 0, 16]), Ok(0));
    let fd = u64::from(u32_at(&mem, 16));
    assert_eq!(fd, 4);
    for (i, v) in [500u32, 5].iter().enumerate() {
        mem[20 + 4 * i..24 + 4 * i].copy_from_slice(&v.to_le_bytes());
    }
    assert_eq!(call(&mut w, &mut mem, Func::fd_read, &[fd, 20, 1, 40]), Ok(0));
    assert_eq!((u32_at(&mem, 40), &mem[500..505]), (5, &b"hello"[..]));
    assert_eq!(call(&mut w, &mut mem, Func::fd_read, &[fd, 20, 1, 40]), Ok(0));
    assert_eq!((u32_at(&mem, 40), &mem[500..505]), (5, &b", bun"[..]));
    assert_eq!(call(&mut w, &mut mem, Func::fd_pread, &[fd, 20, 1, 7, 40]), Ok(0));
    assert_eq!(&mem[500..505], b"bundl");
    assert_eq!(call(&mut w, &mut mem, Func::fd_seek, &[fd, (-3i64) as u64, 2, 48]), Ok(0));
    assert_eq!(call(&mut w, &mut mem, Func::fd_read, &[fd, 20, 1, 40]), Ok(0));
    assert_eq!((u32_at(&mem, 40), &mem[500..503]), (3, &b"dle"[..]));
    assert_eq!(call(&mut w, &mut mem, Func::fd_read, &[fd, 20, 1, 40]), Ok(0));
    assert_eq!(u32_at(&mem, 40), 0, "the end of the file");
    // Its size, by descriptor and by path.
    assert_eq!(call(&mut w, &mut mem, Func::fd_filestat_get, &[fd, 64]), Ok(0));
    assert_eq!((mem[64 + 16], u32_at(&mem, 64 + 32)), (4, 13));
    let n = path(&mut mem, "app.js");
    assert_eq!(call(&mut w, &mut mem, Func::path_filestat_get, &[3, 0, 900, n, 64]), Ok(0));
    assert_eq!(u32_at(&mem, 64 + 32), 2);
    // Nothing writes: not the file opened to read, not an open to write, create or truncate.
    assert_eq!(call(&mut w, &mut mem, Func::fd_write, &[fd, 20, 1, 40]), Ok(errno::BADF));
    assert_eq!(call(&mut w, &mut mem, Func::path_open, &[3, 0, 900, n, 0, 1 << 6, 0, 0, 16]), Ok(errno::ROFS));
    assert_eq!(call(&mut w, &mut mem, Func::path_open, &[3, 0, 900, n, 8, 1 << 1, 0, 0, 16]), Ok(errno::ROFS));
    let n = path(&mut mem, "new.txt");
    assert_eq!(call(&mut w, &mut mem, Func::path_open, &[3, 0, 900, n, 1, 1 << 1, 0, 0, 16]), Ok(errno::ROFS));
    assert_eq!(call(&mut w, &mut mem, Func::path_open, &[3, 0, 900, n, 0, 1 << 1, 0, 0, 16]), Ok(errno::NOENT));
    assert_eq!(call(&mut w, &mut mem, Func::path_create_directory, &[3, 900, n]), Ok(errno::ROFS));
    assert_eq!(call(&mut w, &mut mem, Func::path_unlink_file, &[3, 900, n]), Ok(errno::ROFS));
    // Nothing above the root, however it is spelled.
    for above in ["..", "etc/../../x", "/etc/motd"] {
        let n = path(&mut mem, above);
        assert_eq!(
            call(&mut w, &mut mem, Func::path_open, &[3, 0, 900, n, 0, 1 << 1, 0, 0, 16]),
            Ok(errno::NOTCAPABLE)
        );
    }
    // The root's entries; a closed descriptor is gone.
    assert_eq!(call(&mut w, &mut mem, Func::fd_readdir, &[3, 100, 200, 0, 40]), Ok(0));
    let used = u32_at(&mem, 40) as usize;
    assert_eq!(used, 24 + 6 + 24 + 3);
    assert_eq!((&mem[124..130], &mem[154..157]), (&b"app.js"[..], &b"etc"[..]));
    assert_eq!(call(&mut w, &mut mem, Func::fd_close, &[fd]), Ok(0));
    assert_eq!(call(&mut w, &mut mem, Func::fd_read, &[fd, 20, 1, 40]), Ok(errno::BADF));
}
