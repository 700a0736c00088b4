//! The reference daemon: prints a line, sleeps N seconds (first argument, default 10), forever.
//! It is the density benchmark's guest: idle nearly all the time, alive all the time.
use std::io::Write;

fn main() {
    let secs: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let mut stdout = std::io::stdout();
    for tick in 0u64.. {
        let _ = writeln!(stdout, "tick {tick}");
        let _ = stdout.flush();
        std::thread::sleep(std::time::Duration::from_secs(secs));
    }
}
