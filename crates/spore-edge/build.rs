//! Names the target this crate is built for, which the native backend advertises: its
//! artifacts must have been compiled for exactly this triple.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo::rustc-env=SPORE_EDGE_TARGET={target}");
    println!("cargo::rerun-if-changed=build.rs");
}
