//! `cargo build --release` → `runner/` built with `cargo build --release --locked`, its binary
//! copied beside `spore`. Only for release builds: debug builds and tests have the workspace's
//! own `spore-runner`. `SPORE_NO_RUNNER_DIST=1` skips it (a release build of `spore` alone).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = here.join("../..");
    for watched in [
        "runner/Cargo.toml",
        "runner/Cargo.lock",
        "runner/.cargo/config.toml",
        "crates/spore-runner/src",
        "crates/spore-edge/src",
        "crates/spore-wire/src",
        "crates/spore-session/src",
        "crates/spore-wasip1/src",
        "crates/spore-types/src",
    ] {
        println!("cargo::rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo::rerun-if-env-changed=SPORE_NO_RUNNER_DIST");
    if std::env::var("PROFILE").as_deref() != Ok("release") || std::env::var_os("SPORE_NO_RUNNER_DIST").is_some() {
        return;
    }
    // OUT_DIR is <target>/release/build/<pkg>-<hash>/out (or with a target triple before release).
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let profile_dir = out.ancestors().nth(3).expect("OUT_DIR is inside the target directory").to_path_buf();
    let target_dir = profile_dir.parent().expect("the profile directory is inside the target directory").join("runner");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        // In runner/, so its .cargo/config.toml (link flags) applies.
        .current_dir(root.join("runner"))
        .args(["build", "--release", "--locked", "--target-dir"])
        .arg(&target_dir)
        // The outer build's settings are not the runner's: it has its own profile.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    // Share the outer build's job slots instead of starting as many jobs again.
    if let Ok(flags) = std::env::var("CARGO_MAKEFLAGS") {
        build.env("MAKEFLAGS", flags);
    }
    let status = build.status().expect("cannot start cargo to build runner/");
    assert!(status.success(), "building runner/ (the shipping spore-runner) failed; see above");
    let built = target_dir.join("release/spore-runner");
    let beside = profile_dir.join("spore-runner");
    std::fs::copy(&built, &beside)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", built.display(), beside.display()));
}
