//! What the runner needs from a board: its link's UART, a clock, entropy, and the devices it
//! may grant apps. Each board module implements it over the board's registers; the tests over
//! memory.

use alloc::string::String;

/// A board's devices, as the runner and its apps use them. Cheap to clone (registers are
/// global), so every app's WASI host holds one.
pub trait Board: Clone + Send + 'static {
    /// The Rust target the firmware was built for, as `HELLO_ACK` names it.
    const TARGET: &'static str;

    /// A byte from the link, if one has come.
    fn read(&mut self) -> Option<u8>;

    /// Sends bytes on the link, waiting for room in the UART.
    fn write(&mut self, bytes: &[u8]);

    /// Nanoseconds since the board started (a monotonic clock).
    fn now_ns(&self) -> u64;

    /// Fills `buf` with random bytes.
    fn random(&mut self, buf: &mut [u8]);

    /// Waits, when the runner has nothing to do, instead of spinning: until the link has a
    /// byte, `until` (monotonic nanoseconds: a parked app's wake) or a millisecond has
    /// passed, whichever is first.
    #[cfg_attr(not(target_os = "none"), allow(dead_code))]
    fn idle(&mut self, until: Option<u64>);

    /// A name for this board that stays the same across restarts of one machine.
    fn id(&self) -> String;

    /// GPIO pins apps may be granted (`--device gpio`), numbered from 0; 0 for none.
    fn gpio_pins(&self) -> u32 {
        0
    }

    /// Drives pin `pin` (below [`Board::gpio_pins`]) high or low.
    fn gpio_set(&mut self, pin: u32, high: bool) {
        let _ = (pin, high);
    }

    /// Whether pin `pin` is high.
    fn gpio_get(&self, pin: u32) -> bool {
        let _ = pin;
        false
    }

    /// Whether it has a second UART apps may be granted (`--device uart1`).
    fn has_uart1(&self) -> bool {
        false
    }

    /// Sends what the second UART has room for now, without waiting (its other end may not be
    /// reading: the loop must not wait on it); how many.
    fn uart1_write(&mut self, bytes: &[u8]) -> usize {
        let _ = bytes;
        0
    }

    /// Bytes that have come on the second UART, at most `buf`'s length; how many.
    fn uart1_read(&mut self, buf: &mut [u8]) -> usize {
        let _ = buf;
        0
    }
}

/// Random bytes for a board without an entropy source: splitmix64 over a counter seeded at boot
/// (from a clock). Not a source of secrets, and docs/edge.md says so.
#[cfg(target_os = "none")]
pub fn seeded_random(state: &spin::Mutex<u64>, buf: &mut [u8]) {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut state = state.lock();
    for chunk in buf.chunks_mut(8) {
        *state = state.wrapping_add(GAMMA);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
}

/// Writes a panic's message on the link between two frame delimiters, so an agent's deframer
/// drops it as one bad frame (and a person on the line can read it).
#[cfg(target_os = "none")]
pub fn report_panic<B: Board>(mut board: B, info: &core::panic::PanicInfo<'_>) {
    use core::fmt::Write;
    struct Link<B>(B);
    impl<B: Board> Write for Link<B> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            self.0.write(s.as_bytes());
            Ok(())
        }
    }
    board.write(&[0]);
    let mut link = Link(board.clone());
    let _ = write!(link, "spore-runner-bare: {info}");
    board.write(&[0]);
}
