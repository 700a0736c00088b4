//! How a sandbox ended, and the process exit code each ending maps to.
//!
//! The codes follow the conventions users already read: the guest's own code when it exits;
//! 128+signal numbers for abnormal ends (as a shell reports a killed process), and Docker's
//! 125 for "Spore itself could not run the program".

use serde::{Deserialize, Serialize};
use spore_types::exit_code;
use std::fmt;

/// Which resource ceiling stopped a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// Linear memory and tables (`limits.memory_bytes`).
    Memory,
    /// CPU time (`limits.cpu_time_ms`).
    CpuTime,
    /// Wall-clock time (`limits.timeout_ms`).
    Timeout,
    /// Open host handles: files, sockets, streams (`limits.max_open_files`).
    OpenFiles,
}

impl LimitKind {
    /// The spec field that sets this limit, for messages that say what to raise.
    pub fn spec_field(self) -> &'static str {
        match self {
            LimitKind::Memory => "limits.memory_bytes",
            LimitKind::CpuTime => "limits.cpu_time_ms",
            LimitKind::Timeout => "limits.timeout_ms",
            LimitKind::OpenFiles => "limits.max_open_files",
        }
    }

    /// The exit code this limit maps to.
    pub fn exit_code(self) -> i32 {
        match self {
            LimitKind::Memory => exit_code::MEMORY,
            LimitKind::CpuTime => exit_code::CPU_TIME,
            LimitKind::Timeout => exit_code::TIMEOUT,
            LimitKind::OpenFiles => exit_code::OPEN_FILES,
        }
    }
}

/// How a guest's run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ExitStatus {
    /// The guest returned from its entry point (code 0) or called `exit(code)`.
    Exited {
        /// The guest's exit code.
        code: i32,
    },
    /// The guest trapped or a host call failed fatally.
    Trapped {
        /// The trap and the wasm function it happened in.
        message: String,
    },
    /// An operator stopped the sandbox before the guest ended by itself.
    Killed {
        /// Who stopped it and why (kill, stop after the grace period, daemon shutdown).
        message: String,
    },
    /// A resource limit stopped the guest.
    LimitExceeded {
        /// Which limit.
        limit: LimitKind,
        /// What was exceeded and by how much (each front end adds how to raise it).
        message: String,
    },
}

impl ExitStatus {
    /// The process exit code for this ending.
    pub fn code(&self) -> i32 {
        match self {
            ExitStatus::Exited { code } => *code,
            ExitStatus::Trapped { .. } => exit_code::TRAP,
            ExitStatus::Killed { .. } => exit_code::KILLED,
            ExitStatus::LimitExceeded { limit, .. } => limit.exit_code(),
        }
    }

    /// Whether the guest ended successfully.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Exited { code: 0 })
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited { code } => write!(f, "exited with code {code}"),
            ExitStatus::Trapped { message } => write!(f, "{message} (exit code {})", exit_code::TRAP),
            ExitStatus::Killed { message } => write!(f, "{message} (exit code {})", exit_code::KILLED),
            ExitStatus::LimitExceeded { limit, message } => write!(f, "{message} (exit code {})", limit.exit_code()),
        }
    }
}
