//! Link `spore` as a position-dependent executable. A PIE of this size carries ~40,000
//! relative relocations that the loader applies at every start, copy-on-write-faulting the
//! whole RELRO region; resolved at link time instead, a start is about a millisecond faster —
//! which is most of what a one-shot `spore run` costs. (The objects are still PIC; only the
//! final link changes.)
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bin=spore=-no-pie");
    }
}
