//! A serial port as a device for apps: `spore:device/uart@0.1` — `write(ptr, len) -> written`
//! and `read(ptr, len) -> read` — the interface a board's second UART has, so an app that
//! talks to a serial device runs unchanged on a board and on Linux. Load it with
//! `spore-runner --plugin NAME=libspore_plugin_serial.so,/dev/ttyUSB0`; the configuration is
//! the device's path, opened raw (no echo, no line editing) and non-blocking: a read with
//! nothing to read answers `SPORE_AGAIN` and the runner calls again.

use spore_plugin::abi::{Descriptor, Function};
use std::ffi::{CStr, c_char, c_void};

const INTERFACE: &CStr = c"spore:device/uart@0.1";

static FUNCTIONS: [Function; 2] = [
    Function { name: c"write".as_ptr(), params: c"ii".as_ptr(), call: Some(write) },
    Function { name: c"read".as_ptr(), params: c"ii".as_ptr(), call: Some(read) },
];

static DESCRIPTOR: Descriptor = Descriptor {
    abi: spore_plugin::ABI,
    interface: INTERFACE.as_ptr(),
    functions: FUNCTIONS.as_ptr(),
    function_count: FUNCTIONS.len(),
    open: Some(open),
    close: Some(close),
};

/// The plugin's entry: its description.
#[unsafe(no_mangle)]
pub extern "C" fn spore_plugin_v1() -> *const Descriptor {
    &DESCRIPTOR
}

/// The open port.
struct Port {
    fd: libc::c_int,
}

/// Opens the tty at `config`, raw and non-blocking.
unsafe extern "C" fn open(config: *const c_char, error: *mut c_char, error_len: usize) -> *mut c_void {
    let fail = |message: String| {
        if error_len == 0 {
            return std::ptr::null_mut();
        }
        let bytes = message.as_bytes();
        let n = bytes.len().min(error_len.saturating_sub(1));
        // SAFETY: the runner's buffer of `error_len` bytes; at most that is written.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), error.cast::<u8>(), n);
            *error.add(n) = 0;
        }
        std::ptr::null_mut()
    };
    // SAFETY: a NUL-terminated string, per the ABI.
    let path = unsafe { CStr::from_ptr(config) };
    if path.is_empty() {
        return fail("give the serial device's path, e.g. NAME=libspore_plugin_serial.so,/dev/ttyUSB0".into());
    }
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if fd < 0 {
        return fail(format!("cannot open {}: {}", path.to_string_lossy(), std::io::Error::last_os_error()));
    }
    // SAFETY: a termios for the descriptor just opened.
    let mut tio: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::tcgetattr(fd, &mut tio) } != 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: ours to close.
        unsafe { libc::close(fd) };
        return fail(format!("{} is not a serial device: {e}", path.to_string_lossy()));
    }
    // SAFETY: as above.
    unsafe {
        libc::cfmakeraw(&mut tio);
        libc::tcsetattr(fd, libc::TCSANOW, &tio);
    }
    Box::into_raw(Box::new(Port { fd })).cast()
}

unsafe extern "C" fn close(state: *mut c_void) {
    // SAFETY: the port `open` made, closed once.
    let port = unsafe { Box::from_raw(state.cast::<Port>()) };
    // SAFETY: ours to close.
    unsafe { libc::close(port.fd) };
}

/// `[ptr, ptr + len)` of the app's memory, if it lies within it.
fn within(memory_len: usize, ptr: u64, len: u64) -> Option<(usize, usize)> {
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    (ptr.checked_add(len)? <= memory_len).then_some((ptr, len))
}

/// What a failed `read`/`write` answers, in WASI's numbers as the ABI has them:
/// `SPORE_AGAIN` when the port has no room or no bytes, otherwise the nearest WASI errno.
fn errno_answer() -> i32 {
    use spore_wasip1::errno;
    -match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => return spore_plugin::AGAIN,
        Some(libc::EBADF) => errno::BADF,
        Some(libc::EFAULT) => errno::FAULT,
        Some(libc::EINVAL) => errno::INVAL,
        Some(libc::ENXIO | libc::ENODEV) => errno::NXIO,
        _ => errno::IO,
    }
}

unsafe extern "C" fn write(state: *mut c_void, memory: *mut u8, memory_len: usize, args: *const u64) -> i32 {
    // SAFETY: two arguments, as declared; the state is the port.
    let (port, ptr, len) = unsafe { (&*state.cast::<Port>(), *args, *args.add(1)) };
    let Some((at, len)) = within(memory_len, ptr, len) else { return -spore_wasip1::errno::FAULT };
    // SAFETY: `len` bytes of the app's memory at `at`, checked within it above.
    let n = unsafe { libc::write(port.fd, memory.add(at).cast(), len.min(4096)) };
    if n < 0 { errno_answer() } else { n as i32 }
}

unsafe extern "C" fn read(state: *mut c_void, memory: *mut u8, memory_len: usize, args: *const u64) -> i32 {
    // SAFETY: as in `write`.
    let (port, ptr, len) = unsafe { (&*state.cast::<Port>(), *args, *args.add(1)) };
    let Some((at, len)) = within(memory_len, ptr, len) else { return -spore_wasip1::errno::FAULT };
    if len == 0 {
        return 0;
    }
    // SAFETY: as in `write`.
    let n = unsafe { libc::read(port.fd, memory.add(at).cast(), len.min(4096)) };
    match n {
        // The other end closed (a pty's master gone): nothing will come until it is back.
        0 => spore_plugin::AGAIN,
        n if n < 0 => errno_answer(),
        n => n as i32,
    }
}
