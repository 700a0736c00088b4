//! An app that drives its runner's GPIO through Spore's device interface
//! `spore:device/gpio@0.1`, as a vendor's app on a board would:
//!
//! - `gpio blink PIN COUNT MS`: toggles a pin COUNT times, MS milliseconds apart, and leaves it
//!   high; prints each level.
//! - `gpio watch PIN`: waits until the pin changes and prints its new level.
//!
//! Functions answer a level, or a negative errno (printed; the app exits 1).

use std::time::Duration;

#[link(wasm_import_module = "spore:device/gpio@0.1")]
unsafe extern "C" {
    fn set(pin: i32, level: i32) -> i32;
    fn get(pin: i32) -> i32;
    fn watch(pin: i32, level: i32) -> i32;
}

/// A function's answer, or its errno as an error.
fn checked(what: &str, answer: i32) -> i32 {
    if answer < 0 {
        eprintln!("{what}: errno {}", -answer);
        std::process::exit(1);
    }
    answer
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: i32| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    match args.first().map(String::as_str) {
        Some("blink") => {
            let (pin, count, ms) = (num(1, 0), num(2, 4), num(3, 100));
            for i in 0..count {
                // SAFETY: plain calls with integers.
                checked("gpio.set", unsafe { set(pin, (i + 1) % 2) });
                println!("pin {pin} {}", checked("gpio.get", unsafe { get(pin) }));
                std::thread::sleep(Duration::from_millis(ms as u64));
            }
            // SAFETY: as above.
            checked("gpio.set", unsafe { set(pin, 1) });
        }
        Some("watch") => {
            let pin = num(1, 0);
            // SAFETY: as above.
            let level = checked("gpio.get", unsafe { get(pin) });
            let now = checked("gpio.watch", unsafe { watch(pin, level) });
            println!("pin {pin} went from {level} to {now}");
        }
        _ => {
            eprintln!("usage: gpio blink PIN COUNT MS | watch PIN");
            std::process::exit(2);
        }
    }
}
