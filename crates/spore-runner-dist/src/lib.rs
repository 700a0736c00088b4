//! Nothing to link: this crate's build script builds the shipping `spore-runner` from
//! `runner/` — a workspace of its own, so Cargo's feature unification cannot put the agent's
//! Cranelift into it — whenever the workspace is built with `--release`, and copies it to
//! `target/release/spore-runner`, beside `spore`. Debug builds and tests use the workspace's
//! own build of the same `main.rs` (with the compiler unified in, which tests do not mind).
