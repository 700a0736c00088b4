//! How a run ended: the [`RunReport`] and the mapping from what wasmtime returned (an exit
//! code, a trap, a limit's denial) to an [`ExitStatus`].

use crate::limits::CpuTimeExceeded;
use crate::state::SandboxState;
use spore_spec::{ExitStatus, LimitKind};
use spore_types::human_bytes;
use std::time::Duration;
use wasmtime::{Store, Trap, WasmBacktrace};
use wasmtime_wasi::I32Exit;

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// How the guest ended.
    pub status: ExitStatus,
    /// Return values of an `--invoke`d function, formatted.
    pub results: Vec<String>,
    /// Captured stdout, when the spec asked for a pipe.
    pub stdout: Option<Vec<u8>>,
    /// Captured stderr, when the spec asked for a pipe.
    pub stderr: Option<Vec<u8>>,
    /// CPU time the guest used.
    pub cpu_time: Duration,
    /// Wall-clock time from start to end.
    pub wall_time: Duration,
    /// Linear memory the guest had committed when it ended (memories never shrink, so this is
    /// also its peak). Zero when it was stopped by the wall-clock timeout.
    pub memory_bytes: u64,
}

pub(crate) fn limiter_limit(store: &Store<SandboxState>) -> Option<u64> {
    store.data().limiter.memory_limit()
}

/// Maps how a call ended to a status: the guest's exit code, a limit, or a trap.
pub(crate) fn status_of(result: wasmtime::Result<i32>, store: &Store<SandboxState>) -> ExitStatus {
    let err = match result {
        Ok(code) => return ExitStatus::Exited { code },
        Err(err) => err,
    };
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return ExitStatus::Exited { code: exit.0 };
    }
    if err.downcast_ref::<CpuTimeExceeded>().is_some() {
        let used = Duration::from_millis(store.data().cpu.cpu_ns() / 1_000_000);
        let message =
            format!("CPU time limit reached after {} of CPU; the guest was stopped", humantime::format_duration(used));
        return ExitStatus::LimitExceeded { limit: LimitKind::CpuTime, message };
    }
    if is_table_full(&err) {
        let (limit, by_process) = store.data().open_files_limit;
        let whose = if by_process { " (what this process's RLIMIT_NOFILE leaves a guest)" } else { "" };
        let message = format!(
            "open-handle limit of {limit}{whose} reached: the guest held that many files, sockets and streams and asked for another; it was stopped"
        );
        return ExitStatus::LimitExceeded { limit: LimitKind::OpenFiles, message };
    }
    let trap = describe_trap(&err);
    let limiter = &store.data().limiter;
    if let (Some(limit), Some((used, asked))) = (limiter.memory_limit(), limiter.memory_denied) {
        let message = format!(
            "memory limit of {} reached: the guest had {} and asked for {} in all, was refused, then failed ({trap})",
            human_bytes(limit),
            human_bytes(used),
            human_bytes(asked)
        );
        return ExitStatus::LimitExceeded { limit: LimitKind::Memory, message };
    }
    ExitStatus::Trapped { message: trap }
}

/// Whether a guest ended because its resource table (its host handles) was full.
pub(crate) fn is_table_full(err: &wasmtime::Error) -> bool {
    use wasmtime::component::ResourceTableError;
    err.chain().any(|cause| matches!(cause.downcast_ref::<ResourceTableError>(), Some(ResourceTableError::Full)))
}

/// "wasm trap: <what> in function `<name>`" from the trap code and the innermost frames, so
/// the user sees where in *their* code it happened (an `abort` alone says little).
fn describe_trap(err: &wasmtime::Error) -> String {
    let what = match err.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("guest failed: {}", err.root_cause()),
    };
    let Some(bt) = err.downcast_ref::<WasmBacktrace>() else { return what };
    let names: Vec<String> = bt
        .frames()
        .iter()
        .take(3)
        .map(|f| {
            f.func_name()
                .map_or_else(|| format!("#{}", f.func_index()), |n| format!("{:#}", rustc_demangle::demangle(n)))
        })
        .collect();
    match names.split_first() {
        None => what,
        Some((inner, [])) => format!("{what} in function `{inner}`"),
        Some((inner, callers)) => format!("{what} in function `{inner}` (called from `{}`)", callers.join("` ← `")),
    }
}
