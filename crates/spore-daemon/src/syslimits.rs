//! Kernel limits, planned before they bite: the daemon compares what its configured capacity
//! needs with what the kernel allows, raises what it may raise itself, and tells the operator
//! the exact command for what it may not.

/// Memory mappings one live sandbox may hold: its linear-memory slot (with a copy-on-write
/// image and guard), its fiber stack and guard, tables, and wasmtime's bookkeeping.
const MAPS_PER_SANDBOX: u64 = 6;
/// Mappings of the daemon itself: binary, libraries, heap arenas, thread stacks.
const BASE_MAPS: u64 = 4096;
/// File descriptors the daemon keeps besides per-sandbox ones (sockets, database, log files).
const BASE_FDS: u64 = 1024;

/// What the check found; printed at start.
#[derive(Debug, Default)]
pub struct LimitReport {
    /// Lines for the operator: what is short and how to raise it.
    pub warnings: Vec<String>,
    /// Lines describing what was adjusted.
    pub notes: Vec<String>,
}

/// Checks `vm.max_map_count`, `RLIMIT_NOFILE` and address space against `sandboxes` live
/// sandboxes reserving `slot_bytes` of address space each.
pub fn check(sandboxes: u64, slot_bytes: u64) -> LimitReport {
    let mut report = LimitReport::default();
    let maps_needed = sandboxes * MAPS_PER_SANDBOX + BASE_MAPS;
    if let Some(max_maps) =
        std::fs::read_to_string("/proc/sys/vm/max_map_count").ok().and_then(|s| s.trim().parse::<u64>().ok())
        && max_maps < maps_needed
    {
        report.warnings.push(format!(
            "vm.max_map_count is {max_maps}, but {sandboxes} sandboxes need about {maps_needed}: creates will fail \
             near {} live sandboxes. Raise it: sysctl -w vm.max_map_count={maps_needed}",
            max_maps.saturating_sub(BASE_MAPS) / MAPS_PER_SANDBOX
        ));
    }

    let mut nofile = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid pointer to an rlimit; RLIMIT_NOFILE is a valid resource.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut nofile) } == 0 && nofile.rlim_cur < nofile.rlim_max {
        let raised = libc::rlimit { rlim_cur: nofile.rlim_max, rlim_max: nofile.rlim_max };
        // SAFETY: as above; raising the soft limit up to the hard limit needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            report
                .notes
                .push(format!("raised the open-file soft limit from {} to {}", nofile.rlim_cur, nofile.rlim_max));
            nofile.rlim_cur = nofile.rlim_max;
        }
    }
    if nofile.rlim_cur < BASE_FDS {
        report.warnings.push(format!(
            "the open-file limit is {}; the daemon wants at least {BASE_FDS}. Raise it: ulimit -n {BASE_FDS} (or LimitNOFILE= in its systemd unit)",
            nofile.rlim_cur
        ));
    }

    let reserve = sandboxes.saturating_mul(slot_bytes);
    let mut aslimit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid pointer; RLIMIT_AS is a valid resource.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut aslimit) } == 0
        && aslimit.rlim_cur != libc::RLIM_INFINITY
        && aslimit.rlim_cur < reserve
    {
        report.warnings.push(format!(
            "the address-space limit (ulimit -v) is {} bytes, but the pool reserves {reserve}: lower [pool] sandboxes or max_memory, or run with ulimit -v unlimited",
            aslimit.rlim_cur
        ));
    }
    // x86-64 and aarch64 user space: 128 TiB with 4-level page tables.
    const USER_SPACE: u64 = 1 << 47;
    if reserve > USER_SPACE / 2 {
        report.warnings.push(format!(
            "the pool would reserve {} GiB of address space, more than half of the {} GiB user space: lower [pool] sandboxes or max_memory",
            reserve >> 30,
            USER_SPACE >> 30
        ));
    }
    report
}
