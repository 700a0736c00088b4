//! The process exit codes Spore documents: what a shell, a CI job or an edge agent reads when
//! a sandbox ends in something other than the guest's own `exit(n)`.

/// Documented exit codes for endings that are not the guest's own `exit(n)`.
pub mod exit_code {
    /// The guest trapped (unreachable, out-of-bounds access, stack overflow…): 128 + SIGABRT,
    /// as wasmtime reports a trap.
    pub const TRAP: i32 = 134;
    /// The guest needed more memory than its limit allowed: 128 + SIGKILL, as an OOM kill.
    pub const MEMORY: i32 = 137;
    /// The sandbox was stopped by an operator (kill, or stop past its grace period): 128 + SIGKILL.
    pub const KILLED: i32 = 137;
    /// The guest used up its CPU-time allowance: 128 + SIGXCPU, as RLIMIT_CPU reports it.
    pub const CPU_TIME: i32 = 152;
    /// The guest tried to hold more host handles (files, sockets, streams) than its limit: as
    /// the memory limit, a resource ceiling the sandbox is ended for, 128 + SIGKILL.
    pub const OPEN_FILES: i32 = 137;
    /// The guest ran past its wall-clock timeout: 124, as coreutils `timeout` reports it.
    pub const TIMEOUT: i32 = 124;
    /// Spore could not start the program (bad flag, bad file, link error): as `docker run`.
    pub const SPORE_ERROR: i32 = 125;
}
