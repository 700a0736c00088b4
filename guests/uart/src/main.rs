//! An app that talks on its runner's serial port through Spore's device interface
//! `spore:device/uart@0.1` — a board's second UART, or a Linux runner's serial-port plugin: it
//! says "ready", then reads lines and sends each back in capitals until one is "bye", printing
//! what it read.
//!
//! Functions answer a count, or a negative errno (printed; the app exits 1).

#[link(wasm_import_module = "spore:device/uart@0.1")]
unsafe extern "C" {
    fn write(ptr: *const u8, len: i32) -> i32;
    fn read(ptr: *mut u8, len: i32) -> i32;
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
        let n = checked("uart.write", unsafe { write(rest.as_ptr(), rest.len() as i32) });
        rest = &rest[n as usize..];
    }
}

/// A line, without its end; the call waits until bytes have come.
fn line() -> Vec<u8> {
    let mut line = Vec::new();
    loop {
        let mut byte = 0u8;
        // SAFETY: as above.
        checked("uart.read", unsafe { read(&mut byte, 1) });
        match byte {
            b'\n' => return line,
            b'\r' => {}
            b => line.push(b),
        }
    }
}

fn main() {
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
