//! Traps with `unreachable` inside a function whose name the host should report.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn boom(depth: u32) -> u32 {
    if depth == 0 {
        core::arch::wasm32::unreachable()
    }
    boom(std::hint::black_box(depth - 1)) + 1
}

fn main() {
    println!("about to trap");
    let n = boom(std::hint::black_box(3));
    println!("not reached {n}");
}
