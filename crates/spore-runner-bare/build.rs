//! The board's memory map for the firmware's link, by target: `boards/<board>.x` becomes the
//! `memory.x` the startup crate's linker script includes. Nothing for a host build.

use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=boards");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os != "none" {
        return;
    }
    // riscv-rt's link.x wants the memory map given before it; cortex-m-rt's includes it.
    let (board, scripts): (&str, &[&str]) = match arch.as_str() {
        "riscv64" => ("virt", &["memory.x", "link.x"]),
        "arm" => ("mps2-an386", &["link.x"]),
        other => panic!("spore-runner-bare has no board for {other}; see docs/edge.md, porting to a board"),
    };
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let map = std::fs::read(format!("boards/{board}.x")).expect("the board's memory map is in boards/");
    std::fs::write(out.join("memory.x"), map).expect("OUT_DIR is writable");
    println!("cargo::rustc-link-search={}", out.display());
    for script in scripts {
        println!("cargo::rustc-link-arg-bins=-T{script}");
    }
}
