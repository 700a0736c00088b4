//! How a run's end is told to a shell, the same for `spore run --host` (the agent) and a
//! bundle (the runner itself): the exit code `spore run` gives it, and why, for stderr.

use spore_types::exit_code;
use spore_wire::{LimitKind, Outcome};

/// The exit code for `outcome` and, unless the guest ended by itself, a line saying why. Limit
/// flags are named with `flags` before them: `--` for `spore run`'s, `--spore-` for a bundle's.
pub fn exit_code(outcome: &Outcome, flags: &str) -> (i32, Option<String>) {
    match outcome {
        Outcome::Exited(code) => (*code, None),
        Outcome::Returned(_) => (0, None),
        Outcome::Trapped(message) => (exit_code::TRAP, Some(format!("the guest trapped: {message}"))),
        Outcome::Limit { limit, message } => {
            let (flag, code) = match limit {
                LimitKind::Memory => ("memory", exit_code::MEMORY),
                LimitKind::Cpu | LimitKind::Fuel => ("cpu-time", exit_code::CPU_TIME),
                LimitKind::Wall => ("timeout", exit_code::TIMEOUT),
            };
            (code, Some(format!("the guest {message} (raise it with {flags}{flag})")))
        }
        Outcome::Killed => (exit_code::KILLED, Some("killed".to_string())),
    }
}
