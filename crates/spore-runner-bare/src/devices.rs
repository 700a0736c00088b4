//! The board's devices as apps import them: `spore:device/gpio@0.1` and
//! `spore:device/uart@0.1`, the same small interfaces a Linux runner's plugins serve (see
//! docs/devices.md). What a function does is here, once; reaching the device is the board's
//! ([`Board`]'s GPIO and second-UART methods).
//!
//! Every function answers an `i32`: what it asks for (a level, a count), or a negative errno.
//! A function that waits (a pin's change, bytes on the UART) parks the app, which the loop
//! wakes every millisecond to look again; nothing spins.

use crate::board::Board;
use alloc::string::ToString;
use alloc::vec::Vec;
use spore_wasip1::{Guest, Import, Stop, Ty, errno};
use spore_wire::Device;

/// The GPIO interface: `set(pin, level) -> 0`, `get(pin) -> level`, `watch(pin, level) ->
/// level` (waits until the pin is not at `level`, then answers the level it is at).
pub const GPIO: &str = "spore:device/gpio@0.1";

/// The UART interface: `write(ptr, len) -> written`, `read(ptr, len) -> read` (waits until at
/// least one byte has come).
pub const UART: &str = "spore:device/uart@0.1";

const GPIO_FUNCTIONS: &[Import] = &[
    Import { module: GPIO, name: "set", params: &[Ty::I32, Ty::I32], returns: true },
    Import { module: GPIO, name: "get", params: &[Ty::I32], returns: true },
    Import { module: GPIO, name: "watch", params: &[Ty::I32, Ty::I32], returns: true },
];

const UART_FUNCTIONS: &[Import] = &[
    Import { module: UART, name: "write", params: &[Ty::I32, Ty::I32], returns: true },
    Import { module: UART, name: "read", params: &[Ty::I32, Ty::I32], returns: true },
];

/// Bytes one `uart.write` or `uart.read` moves at most (a short count: the app calls again).
/// Writes take only what the UART has room for without waiting, so a far end that stops
/// reading parks the app, never the loop.
const MAX_UART_IO: u32 = 256;

/// How long a waiting function parks before it looks again.
const POLL_NS: u64 = 1_000_000;

/// A device a board has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Its GPIO pins (`--device gpio`).
    Gpio,
    /// Its second UART (`--device uart1`).
    Uart1,
}

impl Kind {
    /// What a grant calls it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Gpio => "gpio",
            Kind::Uart1 => "uart1",
        }
    }

    fn functions(self) -> &'static [Import] {
        match self {
            Kind::Gpio => GPIO_FUNCTIONS,
            Kind::Uart1 => UART_FUNCTIONS,
        }
    }
}

/// The devices `board` has, as `HELLO_ACK` lists them.
pub fn available<B: Board>(board: &B) -> Vec<Kind> {
    let mut kinds = Vec::new();
    if board.gpio_pins() > 0 {
        kinds.push(Kind::Gpio);
    }
    if board.has_uart1() {
        kinds.push(Kind::Uart1);
    }
    kinds
}

/// How `HELLO_ACK` names one.
pub fn described(kind: Kind) -> Device {
    Device { name: kind.name().to_string(), interface: kind.functions()[0].module.to_string() }
}

/// The devices an app was granted, with their functions in the order the app's host numbers
/// them.
#[derive(Default)]
pub struct Granted {
    functions: Vec<Import>,
}

impl Granted {
    /// The functions of these devices (already checked to be the board's).
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>, board: &[Kind]) -> Granted {
        let mut functions = Vec::new();
        for name in names {
            if let Some(kind) = board.iter().find(|k| k.name() == name) {
                functions.extend_from_slice(kind.functions());
            }
        }
        Granted { functions }
    }

    /// What the app may import beyond WASI.
    pub fn functions(&self) -> &[Import] {
        &self.functions
    }

    /// Calls function `index`: its answer, or a park while it waits.
    pub fn call<B: Board>(
        &self,
        board: &mut B,
        index: usize,
        memory: &mut Guest<'_>,
        args: &[u64],
    ) -> Result<i32, Stop> {
        let Some(import) = self.functions.get(index) else { return Ok(-errno::NOSYS) };
        let a = |i: usize| args.get(i).copied().unwrap_or(0) as u32;
        match (import.module, import.name) {
            (GPIO, "set") => Ok(match pin(board, a(0)) {
                Some(p) => {
                    board.gpio_set(p, a(1) != 0);
                    0
                }
                None => -errno::INVAL,
            }),
            (GPIO, "get") => Ok(pin(board, a(0)).map_or(-errno::INVAL, |p| i32::from(board.gpio_get(p)))),
            (GPIO, "watch") => match pin(board, a(0)) {
                Some(p) if board.gpio_get(p) == (a(1) != 0) => Err(park(board)),
                Some(p) => Ok(i32::from(board.gpio_get(p))),
                None => Ok(-errno::INVAL),
            },
            (UART, "write") => {
                let Ok(bytes) = memory.slice(a(0), a(1).min(MAX_UART_IO)) else { return Ok(-errno::FAULT) };
                match board.uart1_write(bytes) {
                    0 if !bytes.is_empty() => Err(park(board)),
                    n => Ok(n as i32),
                }
            }
            (UART, "read") => {
                let Ok(buf) = memory.slice_mut(a(0), a(1).min(MAX_UART_IO)) else { return Ok(-errno::FAULT) };
                match board.uart1_read(buf) {
                    0 if !buf.is_empty() => Err(park(board)),
                    n => Ok(n as i32),
                }
            }
            _ => Ok(-errno::NOSYS),
        }
    }
}

/// Pin `pin` if the board has it.
fn pin<B: Board>(board: &B, pin: u32) -> Option<u32> {
    (pin < board.gpio_pins()).then_some(pin)
}

/// Parks the app until it is time to look again.
fn park<B: Board>(board: &B) -> Stop {
    Stop::Park { until: Some(board.now_ns().saturating_add(POLL_NS)) }
}
