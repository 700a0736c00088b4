//! QEMU's riscv64 `virt` board, booted with `-bios none` (machine mode, no firmware): the
//! NS16550A UART at 0x1000_0000 is the link, the CLINT's `mtime` (10 MHz) the clock, and the
//! SiFive test device at 0x10_0000 ends QEMU when the firmware cannot go on.
//!
//! Memory map (`boards/virt.x`): RAM from 0x8000_0000, 126 MiB used — the image, then the
//! heap for modules and apps, then 1 MiB of stack at the top. `random_get` reads the board's
//! virtio entropy device when QEMU gives it one (`-device virtio-rng-device`); without one it
//! is a generator seeded from the clock at boot, which docs/edge.md says plainly.

use crate::board::Board;
use crate::serve::Firmware;
use alloc::string::{String, ToString};
use core::ptr::{read_volatile, write_volatile};
use embedded_alloc::LlffHeap;

#[global_allocator]
static HEAP: LlffHeap = LlffHeap::empty();

const UART: usize = 0x1000_0000;
/// Line status: a byte has come (bit 0), the transmitter has room (bit 5).
const LSR: usize = UART + 5;
/// Interrupt enable (bit 0: a byte has come), FIFO control, line control, modem control.
const IER: usize = UART + 1;
const FCR: usize = UART + 2;
const LCR: usize = UART + 3;
const MCR: usize = UART + 4;
/// The PLIC: the UART is its source 10; context 0 is hart 0 in machine mode.
const PLIC: usize = 0x0c00_0000;
const UART_IRQ: usize = 10;
const PLIC_ENABLE: usize = PLIC + 0x2000;
const PLIC_THRESHOLD: usize = PLIC + 0x20_0000;
const PLIC_CLAIM: usize = PLIC + 0x20_0004;
const MTIME: usize = 0x0200_BFF8;
const MTIMECMP: usize = 0x0200_4000;
const TEST: usize = 0x10_0000;
/// Nanoseconds per `mtime` tick (10 MHz).
const TICK_NS: u64 = 100;

const RAM_END: usize = 0x8000_0000 + (126 << 20);
const STACK: usize = 1 << 20;

/// The board's devices (their registers are at fixed addresses: nothing to hold).
#[derive(Clone, Copy)]
struct Virt;

/// The state of `random_get`'s generator, seeded at boot.
static SEED: spin::Mutex<u64> = spin::Mutex::new(0);

impl Board for Virt {
    const TARGET: &'static str = "riscv64gc-unknown-none-elf";

    fn read(&mut self) -> Option<u8> {
        // SAFETY: the UART's registers, mapped by the board at these addresses.
        unsafe { (read_volatile(LSR as *const u8) & 1 != 0).then(|| read_volatile(UART as *const u8)) }
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            // SAFETY: as above.
            unsafe {
                while read_volatile(LSR as *const u8) & 0x20 == 0 {
                    core::hint::spin_loop();
                }
                write_volatile(UART as *mut u8, b);
            }
        }
    }

    fn now_ns(&self) -> u64 {
        // SAFETY: the CLINT's free-running timer.
        unsafe { read_volatile(MTIME as *const u64) * TICK_NS }
    }

    fn random(&mut self, buf: &mut [u8]) {
        let mut rng = RNG.lock();
        if !rng.as_mut().is_some_and(|r| r.fill(buf)) {
            // No device, or it stopped answering: the seeded generator, not a dead board.
            *rng = None;
            crate::board::seeded_random(&SEED, buf);
        }
    }

    fn idle(&mut self, until: Option<u64>) {
        // The timer's and the UART's interrupts are enabled but never taken (interrupts stay
        // off in mstatus): `wfi` returns when a byte comes or the timer is due, whichever is
        // first, and the UART's is claimed and completed so the PLIC raises it again.
        // SAFETY: the CLINT's and the PLIC's registers for hart 0; `wfi` only waits.
        unsafe {
            let now = read_volatile(MTIME as *const u64);
            let due = until.map_or(u64::MAX, |ns| ns.div_ceil(TICK_NS));
            write_volatile(MTIMECMP as *mut u64, due.min(now + 10_000));
            riscv::asm::wfi();
            let source = read_volatile(PLIC_CLAIM as *const u32);
            if source != 0 {
                write_volatile(PLIC_CLAIM as *mut u32, source);
            }
        }
    }

    fn id(&self) -> String {
        "qemu-virt-riscv64".to_string()
    }
}

/// The virtio entropy device, if the board has one.
static RNG: spin::Mutex<Option<entropy::Rng>> = spin::Mutex::new(None);

mod entropy {
    use core::ptr::NonNull;
    use virtio_drivers::device::rng::VirtIORng;
    use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
    use virtio_drivers::transport::{DeviceType, Transport};
    use virtio_drivers::{BufferDirection, Hal, PhysAddr};

    /// The eight virtio-mmio slots of `virt`.
    const SLOTS: core::ops::Range<usize> = 0..8;
    const SLOT_BASE: usize = 0x1000_1000;
    const SLOT_SIZE: usize = 0x1000;

    /// DMA as this board has it: one address space, identity-mapped, no cache to manage.
    struct Dma;

    // SAFETY: addresses are physical addresses (no MMU in use), buffers come from the heap and
    // stay allocated until the driver gives them back.
    unsafe impl Hal for Dma {
        fn dma_alloc(pages: usize, _: BufferDirection) -> (PhysAddr, NonNull<u8>) {
            let layout = core::alloc::Layout::from_size_align(pages * 4096, 4096).expect("a page-sized layout");
            // SAFETY: a non-zero size.
            let ptr = NonNull::new(unsafe { alloc::alloc::alloc_zeroed(layout) }).expect("memory for a virtqueue");
            (ptr.as_ptr() as PhysAddr, ptr)
        }

        unsafe fn dma_dealloc(_: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
            let layout = core::alloc::Layout::from_size_align(pages * 4096, 4096).expect("a page-sized layout");
            // SAFETY: allocated by `dma_alloc` with this layout.
            unsafe { alloc::alloc::dealloc(vaddr.as_ptr(), layout) };
            0
        }

        unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _: usize) -> NonNull<u8> {
            NonNull::new(paddr as *mut u8).expect("a device address")
        }

        unsafe fn share(buffer: NonNull<[u8]>, _: BufferDirection) -> PhysAddr {
            buffer.as_ptr() as *mut u8 as PhysAddr
        }

        unsafe fn unshare(_: PhysAddr, _: NonNull<[u8]>, _: BufferDirection) {}
    }

    /// The entropy device's driver.
    pub struct Rng(VirtIORng<Dma, MmioTransport<'static>>);

    // SAFETY: one hart, and the driver is only used under the board's lock.
    unsafe impl Send for Rng {}

    impl Rng {
        /// The first entropy device on the board's virtio-mmio slots.
        pub fn find() -> Option<Rng> {
            SLOTS
                .filter_map(|i| {
                    let header = NonNull::new((SLOT_BASE + i * SLOT_SIZE) as *mut VirtIOHeader)?;
                    // SAFETY: each slot is a virtio-mmio region of the board, valid for ever.
                    let transport = unsafe { MmioTransport::new(header, SLOT_SIZE) }.ok()?;
                    (transport.device_type() == DeviceType::EntropySource).then_some(transport)
                })
                .next()
                .and_then(|t| VirtIORng::new(t).ok())
                .map(Rng)
        }

        /// Fills `buf` from the device (it may give fewer bytes than asked at a time); false
        /// if it stops answering.
        pub fn fill(&mut self, buf: &mut [u8]) -> bool {
            let mut filled = 0;
            while filled < buf.len() {
                match self.0.request_entropy(&mut buf[filled..]) {
                    Ok(n) if n > 0 => filled += n,
                    _ => return false,
                }
            }
            true
        }
    }
}

#[riscv_rt::entry]
fn main() -> ! {
    unsafe extern "C" {
        static __sheap: u8;
    }
    // SAFETY: only the symbol's address is taken: where the linker ended the image.
    let start = unsafe { &__sheap as *const u8 as usize };
    let size = RAM_END - STACK - start;
    // SAFETY: the heap is the RAM between the image's end and the stack, used by nothing else,
    // and this is its one initialisation, before anything allocates.
    unsafe { HEAP.init(start, size) };
    *SEED.lock() = Virt.now_ns() ^ 0x5EED;
    *RNG.lock() = entropy::Rng::find();
    // SAFETY: the UART's and the PLIC's registers; the timer and external interrupts enabled
    // in `mie` (and not in mstatus) only make `wfi` return.
    unsafe {
        write_volatile(LCR as *mut u8, 0x03); // 8 bits, no parity, one stop bit
        write_volatile(FCR as *mut u8, 0x07); // FIFOs on and emptied
        write_volatile(MCR as *mut u8, 0x08); // OUT2: the UART's interrupt line connected
        write_volatile(IER as *mut u8, 0x01); // an interrupt when a byte comes
        write_volatile((PLIC + 4 * UART_IRQ) as *mut u32, 1);
        write_volatile(PLIC_ENABLE as *mut u32, 1 << UART_IRQ);
        write_volatile(PLIC_THRESHOLD as *mut u32, 0);
        riscv::register::mie::set_mtimer();
        riscv::register::mie::set_mext();
    }
    Firmware::new(Virt, size as u64 / 2).serve()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    crate::board::report_panic(Virt, info);
    // SAFETY: the test device: QEMU exits with code 101.
    unsafe { write_volatile(TEST as *mut u32, 0x3333 | (101 << 16)) };
    loop {
        core::hint::spin_loop();
    }
}
