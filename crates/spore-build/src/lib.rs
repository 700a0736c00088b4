//! `spore build`: a `Sporefile` — Dockerfile syntax, the subset that makes sense without a
//! Linux kernel — turned into an image: the parser (instructions with their line numbers, every
//! instruction that needs a kernel refused with the line and the reason) and the planner that
//! reads the build context into a compat image.
//!
//! Depends on `spore-image` and `spore-types`; must not depend on wasmtime or the sandbox.

mod builder;
mod format;
mod sporefile;

pub use builder::{BuildError, BuildOptions, Planned, plan, write_root};
pub use format::{BuildFormat, FormatError, artifact, platforms};
pub use sporefile::{Instruction, Line, ParseError, Sporefile, substitute};
