//! A command with an expensive start that Wizer's convention can do at build time: the
//! `wizer.initialize` export counts the primes below 5 000 000 (a sieve, some tens of
//! milliseconds) and reads `/greeting.txt` from the image; `main` prints what the state holds
//! and whether it was already there when the process started (pre-initialised) or had to be
//! made now. Exports that do not return, for the bad-input tests: `init-trap` (panics),
//! `init-exit` (exits 3), `init-spin` (computes forever), `init-socket` (accepts from a
//! socket it assumes was handed in as descriptor 3, ignoring the error it gets).

use std::sync::OnceLock;

struct State {
    primes: usize,
    greeting: String,
}

static STATE: OnceLock<State> = OnceLock::new();

fn setup() -> State {
    const N: usize = 5_000_000;
    let mut composite = vec![false; N];
    let mut primes = 0;
    for i in 2..N {
        if !composite[i] {
            primes += 1;
            for j in (i * i..N).step_by(i) {
                composite[j] = true;
            }
        }
    }
    let greeting = std::fs::read_to_string("/greeting.txt").unwrap_or_else(|e| format!("(no greeting: {e})"));
    State { primes, greeting: greeting.trim().to_owned() }
}

#[unsafe(export_name = "wizer.initialize")]
pub extern "C" fn init() {
    STATE.get_or_init(setup);
}

#[unsafe(export_name = "init-trap")]
pub extern "C" fn init_trap() {
    panic!("the init failed on purpose");
}

#[unsafe(export_name = "init-exit")]
pub extern "C" fn init_exit() {
    std::process::exit(3);
}

#[unsafe(export_name = "init-spin")]
pub extern "C" fn init_spin() {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

#[unsafe(export_name = "init-socket")]
pub extern "C" fn init_socket() {
    use std::os::fd::FromRawFd;
    // SAFETY: descriptor 3 is not owned elsewhere here; the listener is forgotten, not closed.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(3) };
    let _ = listener.accept();
    std::mem::forget(listener);
}

fn main() {
    let ready = STATE.get().is_some();
    let state = STATE.get_or_init(setup);
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!(
        "{} primes below 5000000; {}; {}; args {args:?}",
        state.primes,
        state.greeting,
        if ready { "pre-initialised" } else { "initialised at start" }
    );
}
