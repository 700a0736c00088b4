//! `spore build`: a `Sporefile` — Dockerfile syntax, the subset that makes sense without a
//! Linux kernel — turned into an image. This first part is the parser: instructions with their
//! line numbers, and every instruction that needs a kernel refused with the line and the reason.

mod sporefile;

pub use sporefile::{Instruction, Line, ParseError, Sporefile, substitute};
