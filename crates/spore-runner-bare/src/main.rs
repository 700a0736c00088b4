//! `spore-runner-bare`: Spore's edge runner as a board's firmware — no operating system, no
//! libc. One loop serves the wire protocol on the board's UART (the rules are
//! `spore-session`'s, the same as the Linux runner's) and runs the apps on wasmi in slices of
//! fuel, so a spinning app cannot starve the others or the link.
//!
//! Boards: QEMU's riscv64 `virt` (`--target riscv64gc-unknown-none-elf`) and its Cortex-M4F
//! `mps2-an386` (`--target thumbv7em-none-eabihf`). Built for the host,
//! this crate is only its tests (the runner's logic against a board made of memory).

#![cfg_attr(target_os = "none", no_std, no_main)]

// On a host the firmware is only its tests.
#[cfg(any(target_os = "none", test))]
extern crate alloc;

#[cfg(any(target_os = "none", test))]
mod board;
#[cfg(any(target_os = "none", test))]
mod devices;
#[cfg(any(target_os = "none", test))]
mod runner;
#[cfg(any(target_os = "none", test))]
mod serve;
#[cfg(test)]
mod tests;

#[cfg(all(target_arch = "arm", target_os = "none"))]
mod mps2;
#[cfg(all(target_arch = "riscv64", target_os = "none"))]
mod virt;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "spore-runner-bare is the firmware of a board: build it with \
         `cargo build --release --target riscv64gc-unknown-none-elf -p spore-runner-bare` \
         and boot it in QEMU (docs/edge.md, \"The bare-metal runner\")"
    );
    std::process::exit(2);
}
