//! The container's memory limit, as its cgroup shows it, and what of it the guest may grow to.

/// The container's memory limit and what of it the guest may grow to.
pub(crate) struct MemoryBudget {
    /// The container's limit, as its cgroup shows it (containerd set it from the OCI spec's
    /// `linux.resources.memory.limit`, the pod's `resources.limits.memory`).
    pub(crate) container: u64,
    /// That less what the process already uses and a margin for the runtime's own allocations.
    pub(crate) guest: u64,
}

impl MemoryBudget {
    const MARGIN: u64 = 16 << 20;

    /// Read from the container's cgroup (v2, else v1) when it is mounted in the container,
    /// which the CRI's spec does; `None` when there is no limit or no cgroup to read. Enforced
    /// by Spore, a guest that reaches it ends with "memory limit" (137) and a message, instead
    /// of the kernel OOM-killing the whole container without one.
    pub(crate) fn read() -> Option<MemoryBudget> {
        let read = |files: [&str; 2]| {
            files.iter().find_map(|f| std::fs::read_to_string(f).ok()).and_then(|t| t.trim().parse::<u64>().ok())
        };
        // "max" (v2) does not parse; v1 says "unlimited" with a huge page-aligned number.
        let container = read(["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"])
            .filter(|n| *n < (1 << 62))?;
        let used = read(["/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory/memory.usage_in_bytes"]).unwrap_or(0);
        let guest = container.saturating_sub(used).saturating_sub(Self::MARGIN).max(1 << 16);
        Some(MemoryBudget { container, guest })
    }
}
