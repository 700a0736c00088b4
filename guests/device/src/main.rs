//! An app that drives its runner's devices through Spore's device interfaces
//! (`spore:device/gpio@0.1`, `spore:device/uart@0.1`), as a vendor's app on a board would:
//!
//! - `device blink PIN COUNT MS`: toggles a pin COUNT times, MS milliseconds apart, and leaves
//!   it high; prints each level.
//! - `device watch PIN`: waits until the pin changes and prints its new level.
//! - `device echo`: says "ready" on the UART, then reads lines from it and sends each back in
//!   capitals until one is "bye"; prints what it read.
//!
//! Functions answer a level or a count, or a negative errno (an error is printed and the app
//! exits 1).

use std::time::Duration;

mod gpio {
    #[link(wasm_import_module = "spore:device/gpio@0.1")]
    unsafe extern "C" {
        pub fn set(pin: i32, level: i32) -> i32;
        pub fn get(pin: i32) -> i32;
        pub fn watch(pin: i32, level: i32) -> i32;
    }
}

mod uart {
    #[link(wasm_import_module = "spore:device/uart@0.1")]
    unsafe extern "C" {
        pub fn write(ptr: *const u8, len: i32) -> i32;
        pub fn read(ptr: *mut u8, len: i32) -> i32;
    }
}

/// A function's answer, or its errno as an error.
fn checked(what: &str, answer: i32) -> i32 {
    if answer < 0 {
        eprintln!("{what}: errno {}", -answer);
        std::process::exit(1);
    }
    answer
}

fn send(bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: the slice is ours to lend for the call.
        let n = checked("uart.write", unsafe { uart::write(rest.as_ptr(), rest.len() as i32) });
        rest = &rest[n as usize..];
    }
}

fn line() -> Vec<u8> {
    let mut line = Vec::new();
    loop {
        let mut byte = 0u8;
        // SAFETY: as above; the call waits until a byte has come.
        checked("uart.read", unsafe { uart::read(&mut byte, 1) });
        match byte {
            b'\n' => return line,
            b'\r' => {}
            b => line.push(b),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: i32| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    match args.first().map(String::as_str) {
        Some("blink") => {
            let (pin, count, ms) = (num(1, 0), num(2, 4), num(3, 100));
            for i in 0..count {
                let level = (i + 1) % 2;
                // SAFETY: a plain call with integers.
                checked("gpio.set", unsafe { gpio::set(pin, level) });
                println!("pin {pin} {}", checked("gpio.get", unsafe { gpio::get(pin) }));
                std::thread::sleep(Duration::from_millis(ms as u64));
            }
            // SAFETY: as above.
            checked("gpio.set", unsafe { gpio::set(pin, 1) });
        }
        Some("watch") => {
            let pin = num(1, 0);
            // SAFETY: as above.
            let level = checked("gpio.get", unsafe { gpio::get(pin) });
            let now = checked("gpio.watch", unsafe { gpio::watch(pin, level) });
            println!("pin {pin} went from {level} to {now}");
        }
        Some("echo") => {
            send(b"ready\n");
            loop {
                let got = line();
                println!("read {}", String::from_utf8_lossy(&got));
                if got == b"bye" {
                    break;
                }
                let mut upper = got.to_ascii_uppercase();
                upper.push(b'\n');
                send(&upper);
            }
        }
        _ => {
            eprintln!("usage: device blink PIN COUNT MS | watch PIN | echo");
            std::process::exit(2);
        }
    }
}
