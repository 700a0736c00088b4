//! QEMU's `mps2-an386` board: a Cortex-M4F microcontroller with a few MiB of RAM. The CMSDK
//! UART0 at 0x4000_4000 is the link (QEMU's first `-serial`); UART1 (the second) and the two
//! user LEDs are the devices apps may be granted (`uart1`, `gpio`). CMSDK timer 0 (25 MHz, counting
//! down from 2^32 - 1) the clock, extended to 64 bits in software; SysTick and the UART's
//! receive interrupt only wake `wfi` (interrupts stay masked: no handler runs). A panic writes
//! its message between two frame delimiters and resets the board, as a watchdog would.
//!
//! Memory map (`boards/mps2-an386.x`): the image and vector table in SSRAM1 at 0, data and
//! stack in SSRAM2/3 at 0x2000_0000, the heap in the 16 MiB of PSRAM at 0x2100_0000. No
//! entropy device: `random_get` is a generator seeded from the clock at boot.

use crate::board::Board;
use crate::serve::Firmware;
use alloc::string::{String, ToString};
use core::ptr::{read_volatile, write_volatile};
use cortex_m_rt::entry;
use embedded_alloc::LlffHeap;

#[global_allocator]
static HEAP: LlffHeap = LlffHeap::empty();

const HEAP_START: usize = 0x2100_0000;
const HEAP_SIZE: usize = 16 << 20;

const UART: usize = 0x4000_4000;
const UART_DATA: usize = UART;
/// Bit 0: the transmitter is full; bit 1: a byte has come.
const UART_STATE: usize = UART + 0x4;
/// Bit 0: transmit on; bit 1: receive on; bit 3: interrupt when a byte comes.
const UART_CTRL: usize = UART + 0x8;
/// Write 1 to bit 1 to clear the receive interrupt.
const UART_INTCLEAR: usize = UART + 0xC;
const UART_BAUDDIV: usize = UART + 0x10;
/// UART0's receive interrupt.
const UART0_RX_IRQ: usize = 0;

/// UART1, the second `-serial`: granted to apps as `uart1`.
const UART1: usize = 0x4000_5000;

/// The FPGA's LED register: bits 0 and 1 are the board's two user LEDs, granted to apps as GPIO
/// pins 0 and 1 (QEMU's monitor reads them back: `xp /1wx 0x40028000`).
const FPGAIO_LED: usize = 0x4002_8000;
const LEDS: u32 = 2;

const TIMER: usize = 0x4000_0000;
const TIMER_CTRL: usize = TIMER;
const TIMER_VALUE: usize = TIMER + 0x4;
const TIMER_RELOAD: usize = TIMER + 0x8;
/// Nanoseconds per tick of the 25 MHz peripheral clock.
const TICK_NS: u64 = 40;

const SYST_CSR: usize = 0xE000_E010;
const SYST_RVR: usize = 0xE000_E014;
const SYST_CVR: usize = 0xE000_E018;
const NVIC_ISER: usize = 0xE000_E100;
const NVIC_ICPR: usize = 0xE000_E280;
const SCB_ICSR: usize = 0xE000_ED04;

/// The board's devices (their registers are at fixed addresses: nothing to hold).
#[derive(Clone, Copy)]
struct Mps2;

static SEED: spin::Mutex<u64> = spin::Mutex::new(0);
/// The timer's last reading, and the ticks counted up to it (its 32 bits, extended).
static CLOCK: spin::Mutex<(u32, u64)> = spin::Mutex::new((u32::MAX, 0));

impl Board for Mps2 {
    const TARGET: &'static str = "thumbv7em-none-eabihf";

    fn read(&mut self) -> Option<u8> {
        // SAFETY: the UART's registers, mapped by the board at these addresses.
        unsafe {
            (read_volatile(UART_STATE as *const u32) & 2 != 0).then(|| read_volatile(UART_DATA as *const u32) as u8)
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            // SAFETY: as above.
            unsafe {
                while read_volatile(UART_STATE as *const u32) & 1 != 0 {
                    core::hint::spin_loop();
                }
                write_volatile(UART_DATA as *mut u32, u32::from(b));
            }
        }
    }

    fn now_ns(&self) -> u64 {
        // The timer counts down and wraps every 171 s; the loop reads it far more often (an
        // idle wait is at most a millisecond; a slice, the host call in it and a start
        // function are bounded to milliseconds), so the ticks since the last reading are the
        // difference, modulo 2^32. One core, and no interrupt handler runs: nothing reads it
        // concurrently.
        // SAFETY: timer 0's current value.
        let raw = unsafe { read_volatile(TIMER_VALUE as *const u32) };
        let mut clock = CLOCK.lock();
        let (last, ticks) = *clock;
        let ticks = ticks + u64::from(last.wrapping_sub(raw));
        *clock = (raw, ticks);
        ticks * TICK_NS
    }

    fn random(&mut self, buf: &mut [u8]) {
        crate::board::seeded_random(&SEED, buf);
    }

    fn idle(&mut self, until: Option<u64>) {
        // SysTick counts the wait down from the next wake (at most a millisecond).
        let wait = until.map_or(u64::MAX, |ns| ns.saturating_sub(self.now_ns()) / TICK_NS);
        let ticks = wait.clamp(100, 25_000) as u32;
        // SAFETY: the SysTick's, NVIC's and UART's registers; `wfi` only waits.
        unsafe {
            write_volatile(SYST_RVR as *mut u32, ticks - 1);
            write_volatile(SYST_CVR as *mut u32, 0);
            cortex_m::asm::wfi();
            // Whatever woke it is noted; clear it so the next `wfi` waits again.
            write_volatile(UART_INTCLEAR as *mut u32, 2);
            write_volatile(NVIC_ICPR as *mut u32, 1 << UART0_RX_IRQ);
            write_volatile(SCB_ICSR as *mut u32, 1 << 25); // PENDSTCLR
        }
    }

    fn id(&self) -> String {
        "qemu-mps2-an386".to_string()
    }

    fn gpio_pins(&self) -> u32 {
        LEDS
    }

    fn gpio_set(&mut self, pin: u32, high: bool) {
        // SAFETY: the FPGA's LED register; only this loop writes it.
        unsafe {
            let leds = read_volatile(FPGAIO_LED as *const u32);
            let leds = if high { leds | 1 << pin } else { leds & !(1 << pin) };
            write_volatile(FPGAIO_LED as *mut u32, leds);
        }
    }

    fn gpio_get(&self, pin: u32) -> bool {
        // SAFETY: as above.
        unsafe { read_volatile(FPGAIO_LED as *const u32) & (1 << pin) != 0 }
    }

    fn has_uart1(&self) -> bool {
        true
    }

    fn uart1_write(&mut self, bytes: &[u8]) -> usize {
        let mut n = 0;
        // SAFETY: UART1's registers, laid out as UART0's: a byte goes in while it has room.
        while n < bytes.len() && unsafe { read_volatile((UART1 + 0x4) as *const u32) } & 1 == 0 {
            // SAFETY: as above.
            unsafe { write_volatile(UART1 as *mut u32, u32::from(bytes[n])) };
            n += 1;
        }
        n
    }

    fn uart1_read(&mut self, buf: &mut [u8]) -> usize {
        // The UART holds one byte; QEMU gives the next once it is read.
        // SAFETY: UART1's state register.
        let ready = || unsafe { read_volatile((UART1 + 0x4) as *const u32) } & 2 != 0;
        let mut n = 0;
        while n < buf.len() && ready() {
            // SAFETY: UART1's data register, with a byte in it.
            buf[n] = unsafe { read_volatile(UART1 as *const u32) } as u8;
            n += 1;
        }
        n
    }
}

#[entry]
fn main() -> ! {
    // Interrupts stay masked: pending ones only wake `wfi`.
    cortex_m::interrupt::disable();
    // SAFETY: the PSRAM, used by nothing else; the one initialisation, before any allocation.
    unsafe { HEAP.init(HEAP_START, HEAP_SIZE) };
    // SAFETY: the board's timer, UART, SysTick and NVIC registers.
    unsafe {
        write_volatile(TIMER_RELOAD as *mut u32, u32::MAX);
        write_volatile(TIMER_VALUE as *mut u32, u32::MAX);
        write_volatile(TIMER_CTRL as *mut u32, 1); // counting
        write_volatile(UART_BAUDDIV as *mut u32, 25_000_000 / 115_200);
        write_volatile(UART_CTRL as *mut u32, 0b1011); // TX, RX, RX interrupt
        write_volatile((UART1 + 0x10) as *mut u32, 25_000_000 / 115_200);
        write_volatile((UART1 + 0x8) as *mut u32, 0b11); // TX, RX
        write_volatile(NVIC_ISER as *mut u32, 1 << UART0_RX_IRQ);
        // SysTick: 1 ms at the 25 MHz core clock, its exception pending at each wrap.
        write_volatile(SYST_RVR as *mut u32, 25_000 - 1);
        write_volatile(SYST_CVR as *mut u32, 0);
        write_volatile(SYST_CSR as *mut u32, 0b111);
    }
    *SEED.lock() = Mps2.now_ns() ^ 0x5EED;
    Firmware::new(Mps2, HEAP_SIZE as u64 / 2).serve()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    crate::board::report_panic(Mps2, info);
    cortex_m::peripheral::SCB::sys_reset()
}
