//! A periodic task: wakes every PERIOD microseconds (first argument, default 1000) COUNT times
//! (second, default 1000), each time at an absolute deadline, and prints how late its wakes
//! were: the timing jitter a runner gives a real-time app.
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().ok());
    let period = Duration::from_micros(args.next().flatten().unwrap_or(1000));
    let count = args.next().flatten().unwrap_or(1000) as usize;
    let start = Instant::now();
    let mut late = Vec::with_capacity(count);
    for i in 1..=count {
        let deadline = start + period * i as u32;
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
        late.push(Instant::now().saturating_duration_since(deadline).as_micros() as u64);
    }
    late.sort_unstable();
    let at = |q: f64| late[((late.len() - 1) as f64 * q) as usize];
    println!(
        "period {} us, {count} wakes: late p50 {} us, p99 {} us, max {} us",
        period.as_micros(),
        at(0.5),
        at(0.99),
        late[late.len() - 1]
    );
}
