//! A reactor: no `main`, only exported functions, called with `spore run --invoke`.
use std::sync::atomic::{AtomicU32, Ordering};

static CALLS: AtomicU32 = AtomicU32::new(0);

/// Sum of two integers.
#[unsafe(no_mangle)]
pub extern "C" fn add(a: i32, b: i32) -> i32 {
    CALLS.fetch_add(1, Ordering::Relaxed);
    a.wrapping_add(b)
}

/// The n-th Fibonacci number (wrapping).
#[unsafe(no_mangle)]
pub extern "C" fn fib(n: u32) -> u64 {
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..n {
        (a, b) = (b, a.wrapping_add(b));
    }
    a
}

/// Half of a float, to show float parameters and results.
#[unsafe(no_mangle)]
pub extern "C" fn half(x: f64) -> f64 {
    x / 2.0
}
