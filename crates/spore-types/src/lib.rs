//! Spore's shared vocabulary: what every layer — images, registries, builds, the engine, the
//! daemon and the edge runners to come — names the same way. Plain data and pure functions: no
//! wasmtime, no async runtime, so the crates that only move bytes build without a compiler.
//!
//! Depends on no other Spore crate; must never depend on wasmtime, tokio or anything that needs
//! an OS beyond `std` (the bare-metal runner will use it).

mod command;
mod digest;
mod duration;
mod env;
mod exit;
mod net;
mod pull;
mod secret;
mod size;
mod text;
mod wasm;

pub use command::image_args;
pub use digest::Digest;
pub use duration::{DurationError, HumanDuration};
pub use env::env_setting;
pub use exit::exit_code;
pub use net::is_private;
pub use pull::PullPolicy;
pub use secret::{MIN_TOKEN_LEN, check_token, constant_time_eq};
pub use size::{ByteSize, SizeError, human_bytes, parse_size};
pub use text::{escape_controls, plain_name, shown};
pub use wasm::{HeaderError, Wasm, WasmFileError, WasmKind, detect};
