//! Writes log lines as fast as it can, forever: the log-flood runaway.
use std::io::Write;

fn main() {
    let mut out = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
    for n in 0u64.. {
        let _ = writeln!(out, "flood line {n:>12} ................................................................");
    }
}
