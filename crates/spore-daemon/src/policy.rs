//! The operator's policy: what an API client may ask of the daemon.
//!
//! Whoever holds the socket (or the TCP token) may create sandboxes, but only within what the
//! operator allows in `[policy]`: which host directories a sandbox may mount, whether its stdin
//! may be a host file, where an HTTP app may listen, the most of each limit a create may set,
//! how many sandboxes the daemon keeps, how big a request may be, and whether secrets are ever
//! shown back. The defaults allow nothing of the host: no mounts, no stdin files, loopback
//! listeners on unprivileged ports only.
//!
//! A refusal names the rule and the config key that would allow it, since the reader is the
//! client's operator, who can change it.

use crate::config::PolicySection;
use crate::model::Defaults;
use spore_sandbox::{Input, Mount, SandboxSpec, human_bytes, parse_size};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Why the policy refuses a request.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The request asks for something of the host the operator has not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// A limit above the operator's cap, or a request too large (400).
    #[error("{0}")]
    OverCap(String),
}

/// `[policy]`, parsed and checked.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Canonical host directories under which mounts (and stdin files) may lie.
    mount_roots: Vec<PathBuf>,
    stdin_files: bool,
    listen: Vec<ListenRule>,
    caps: Caps,
    /// Sandboxes the daemon keeps, running or not.
    pub max_sandboxes: usize,
    /// Sandboxes one batch request may create.
    pub max_batch: usize,
    /// Largest request body, except program uploads.
    pub max_request_body: usize,
    /// Largest program upload.
    pub max_program_body: usize,
    reveal_variables: bool,
}

/// The most of each limit a create may ask; `None`: no cap beyond the pool's.
#[derive(Debug, Clone, Default)]
struct Caps {
    memory_bytes: Option<u64>,
    cpu_time_ms: Option<u64>,
    timeout_ms: Option<u64>,
    counts: [(&'static str, Option<usize>); 5],
}

/// An address HTTP apps may listen on: an IP (or any) and a port range.
#[derive(Debug, Clone, PartialEq)]
struct ListenRule {
    ip: Option<IpAddr>,
    ports: (u16, u16),
    text: String,
}

impl ListenRule {
    fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{text:?} is not HOST:PORTS (an IP or *, then a port, LOW-HIGH or *: e.g. \"127.0.0.1:8000-8999\", \"[::1]:*\")"
            )
        };
        let (host, ports) = text.rsplit_once(':').ok_or_else(bad)?;
        let ip = match host.trim_start_matches('[').trim_end_matches(']') {
            "*" => None,
            ip => Some(ip.parse::<IpAddr>().map_err(|_| bad())?),
        };
        let ports = match ports.split_once('-') {
            _ if ports == "*" => (1, u16::MAX),
            Some((lo, hi)) => (lo.parse().map_err(|_| bad())?, hi.parse().map_err(|_| bad())?),
            None => {
                let port = ports.parse().map_err(|_| bad())?;
                (port, port)
            }
        };
        if ports.0 == 0 || ports.0 > ports.1 {
            return Err(bad());
        }
        Ok(ListenRule { ip, ports, text: text.to_owned() })
    }

    fn allows(&self, addr: SocketAddr) -> bool {
        self.ip.is_none_or(|ip| ip == addr.ip()) && (self.ports.0..=self.ports.1).contains(&addr.port())
    }
}

impl Policy {
    /// Parses `[policy]`; `pool_max_memory` is the pool's slot, the memory cap when the policy
    /// sets none (or a larger one). The operator's `defaults` must lie within the caps.
    pub fn from_config(section: &PolicySection, pool_max_memory: u64, defaults: &Defaults) -> Result<Self, String> {
        let mut mount_roots = Vec::new();
        for root in &section.mount_roots {
            let canonical =
                std::fs::canonicalize(root).map_err(|e| format!("[policy] mount_roots: {}: {e}", root.display()))?;
            mount_roots.push(canonical);
        }
        let listen = section
            .listen
            .iter()
            .map(|l| ListenRule::parse(l))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("[policy] listen: {e}"))?;
        let size = |key: &str, v: &Option<String>| {
            v.as_deref().map(|s| parse_size(s).map_err(|e| format!("[policy] {key}: {e}"))).transpose()
        };
        let millis = |key: &str, v: &Option<String>| {
            v.as_deref()
                .map(|s| {
                    humantime::parse_duration(s)
                        .map(|d| d.as_millis() as u64)
                        .map_err(|e| format!("[policy] {key}: {e}"))
                })
                .transpose()
        };
        let memory_bytes =
            Some(size("max_memory", &section.max_memory)?.map_or(pool_max_memory, |m| m.min(pool_max_memory)));
        let caps = Caps {
            memory_bytes,
            cpu_time_ms: millis("max_cpu_time", &section.max_cpu_time)?,
            timeout_ms: millis("max_timeout", &section.max_timeout)?,
            counts: [
                ("max_open_files", section.max_open_files),
                ("max_instances", section.max_instances),
                ("max_tables", section.max_tables),
                ("max_table_elements", section.max_table_elements),
                ("max_memories", section.max_memories),
            ],
        };
        let policy = Policy {
            mount_roots,
            stdin_files: section.stdin_files,
            listen,
            caps,
            max_sandboxes: section.max_sandboxes,
            max_batch: section.max_batch,
            max_request_body: size("max_request_body", &Some(section.max_request_body.clone()))?.unwrap_or(0) as usize,
            max_program_body: size("max_program_body", &Some(section.max_program_body.clone()))?.unwrap_or(0) as usize,
            reveal_variables: section.reveal_variables,
        };
        // A default the caps refuse would refuse every create that leaves the limit unset.
        let mut probe = SandboxSpec::default();
        probe.limits.memory_bytes = defaults.memory_bytes;
        probe.limits.cpu_time_ms = defaults.cpu_time_ms;
        probe.limits.timeout_ms = defaults.timeout_ms;
        policy.check_limits(&probe).map_err(|e| format!("[defaults] must lie within [policy]: {e}"))?;
        Ok(policy)
    }

    /// Checks what a create asks before anything is fetched or compiled: stdin, where an HTTP
    /// app listens, every limit against its cap. Mounts are checked once resolved
    /// ([`Policy::check_mounts`]).
    pub fn check_request(&self, spec: &SandboxSpec) -> Result<(), Refusal> {
        match &spec.stdio.stdin {
            Input::Inherit => {
                return Err(Refusal::OverCap(
                    "spec.stdio.stdin inherit: the daemon has no terminal to give; use bytes, a file, or null".into(),
                ));
            }
            Input::File(file) => {
                if !self.stdin_files {
                    return Err(Refusal::Forbidden(format!(
                        "spec.stdio.stdin reads the host file {}: this daemon's policy does not allow stdin from host files ([policy] stdin_files = true, with the file under one of mount_roots)",
                        file.display()
                    )));
                }
                let canonical = std::fs::canonicalize(file)
                    .map_err(|e| Refusal::OverCap(format!("spec.stdio.stdin file {}: {e}", file.display())))?;
                self.inside_roots(&canonical, "spec.stdio.stdin file", file)?;
            }
            Input::Null | Input::Bytes(_) => {}
        }
        if let Some(http) = &spec.http {
            let addr: SocketAddr = http.listen.parse().map_err(|_| {
                Refusal::OverCap(format!("spec.http.listen {:?} is not IP:PORT (e.g. 127.0.0.1:8080)", http.listen))
            })?;
            if !self.listen.iter().any(|rule| rule.allows(addr)) {
                let allowed: Vec<&str> = self.listen.iter().map(|r| r.text.as_str()).collect();
                return Err(Refusal::Forbidden(format!(
                    "spec.http.listen {addr}: this daemon's policy allows HTTP apps to listen on {} only; add the address to [policy] listen",
                    if allowed.is_empty() { "nothing".to_owned() } else { allowed.join(", ") }
                )));
            }
        }
        self.check_limits(spec)
    }

    fn check_limits(&self, spec: &SandboxSpec) -> Result<(), Refusal> {
        let l = &spec.limits;
        let over = |field: &str, asked: String, cap: String, key: &str| {
            Refusal::OverCap(format!(
                "spec.limits.{field} {asked} is more than this daemon allows ({cap}, [policy] {key})"
            ))
        };
        if let (Some(asked), Some(cap)) = (l.memory_bytes, self.caps.memory_bytes)
            && asked > cap
        {
            return Err(over(
                "memory_bytes",
                human_bytes(asked),
                human_bytes(cap),
                "max_memory, within [pool] max_memory",
            ));
        }
        for (field, asked, cap, key) in [
            ("cpu_time_ms", l.cpu_time_ms, self.caps.cpu_time_ms, "max_cpu_time"),
            ("timeout_ms", l.timeout_ms, self.caps.timeout_ms, "max_timeout"),
        ] {
            if let (Some(asked), Some(cap)) = (asked, cap)
                && asked > cap
            {
                return Err(over(field, format!("{asked} ms"), format!("{cap} ms"), key));
            }
        }
        let asked = [l.max_open_files, l.max_instances, l.max_tables, l.max_table_elements, l.max_memories];
        for ((field, cap), asked) in self.caps.counts.iter().zip(asked) {
            if let (Some(asked), Some(cap)) = (asked, cap)
                && asked > *cap
            {
                return Err(over(field, asked.to_string(), cap.to_string(), field));
            }
        }
        Ok(())
    }

    /// Checks resolved (canonical, pinned) mounts: each host directory must lie under one of
    /// the operator's mount roots. `mounts` are the client's, not an image's own root.
    pub fn check_mounts(&self, mounts: &[Mount]) -> Result<(), Refusal> {
        mounts.iter().try_for_each(|m| self.inside_roots(&m.host, &format!("mount {}", m.guest), &m.host))
    }

    fn inside_roots(&self, canonical: &Path, what: &str, asked: &Path) -> Result<(), Refusal> {
        if self.mount_roots.iter().any(|root| canonical.starts_with(root)) {
            return Ok(());
        }
        let roots = match self.mount_roots.is_empty() {
            true => "none".to_owned(),
            false => self.mount_roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", "),
        };
        let through = if canonical != asked { format!(" (which is {})", canonical.display()) } else { String::new() };
        Err(Refusal::Forbidden(format!(
            "{what}: the host path {}{through} is outside the directories this daemon lets a sandbox mount ({roots}); add it, or a directory above it, to [policy] mount_roots",
            asked.display()
        )))
    }

    /// Whether a client may see secret values (`capabilities.variables`) in what it reads back.
    pub fn check_reveal(&self) -> Result<(), Refusal> {
        match self.reveal_variables {
            true => Ok(()),
            false => Err(Refusal::Forbidden(
                "this daemon's policy does not show variables' values back; set [policy] reveal_variables = true to allow it".into(),
            )),
        }
    }
}

/// What a record shows of its secret values unless revealed.
pub const REDACTED: &str = "(secret)";

/// Replaces every variable's value in `spec` by [`REDACTED`].
pub fn redact(spec: &mut SandboxSpec) {
    spec.capabilities.variables.values_mut().for_each(|v| *v = REDACTED.to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;
    use spore_sandbox::HttpSpec;

    fn policy(toml: &str) -> Result<Policy, String> {
        let section: PolicySection = toml::from_str(toml).map_err(|e| e.to_string())?;
        Policy::from_config(&section, 64 << 20, &Defaults::default())
    }

    fn listening(addr: &str) -> SandboxSpec {
        SandboxSpec { http: Some(HttpSpec { listen: addr.into(), concurrency: None }), ..Default::default() }
    }

    #[test]
    fn by_default_apps_listen_on_loopback_above_1023_and_nothing_of_the_host_is_allowed() {
        let p = policy("").unwrap();
        assert!(p.check_request(&listening("127.0.0.1:8080")).is_ok());
        assert!(p.check_request(&listening("[::1]:8080")).is_ok());
        for refused in ["0.0.0.0:8080", "127.0.0.1:80", "10.0.0.1:8080"] {
            let err = p.check_request(&listening(refused)).unwrap_err();
            assert!(matches!(err, Refusal::Forbidden(_)) && err.to_string().contains("[policy] listen"), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let err = p.check_mounts(&[Mount { host: dir.path().into(), guest: "/d".into(), read_only: true, pin: None }]);
        assert!(err.unwrap_err().to_string().contains("(none); add it"));
        let mut spec = SandboxSpec::default();
        spec.stdio.stdin = Input::File("/etc/passwd".into());
        assert!(matches!(p.check_request(&spec), Err(Refusal::Forbidden(_))));
        spec.stdio.stdin = Input::Inherit;
        assert!(matches!(p.check_request(&spec), Err(Refusal::OverCap(_))));
        assert!(p.check_reveal().is_err());
    }

    #[test]
    fn mounts_are_judged_by_where_they_lead_not_how_they_are_spelled() {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("apps");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("escape")).unwrap();
        let p = policy(&format!("mount_roots = [{:?}]", root.display().to_string())).unwrap();
        let mount = |host: PathBuf| Mount {
            host: std::fs::canonicalize(host).unwrap(),
            guest: "/d".into(),
            read_only: false,
            pin: None,
        };
        assert!(p.check_mounts(&[mount(root.join("a"))]).is_ok());
        assert!(p.check_mounts(&[mount(root.join("a/../../apps/a"))]).is_ok());
        assert!(p.check_mounts(&[mount(root.join("escape"))]).is_err(), "a link inside the root to /etc");
        assert!(p.check_mounts(&[mount(top.path().to_path_buf())]).is_err(), "the root's parent");
    }

    #[test]
    fn limits_above_their_caps_are_refused_by_name_and_defaults_must_fit() {
        let p = policy("max_cpu_time = \"2s\"\nmax_open_files = 64\nmax_memory = \"1G\"").unwrap();
        let mut spec = SandboxSpec::default();
        spec.limits.cpu_time_ms = Some(2000);
        spec.limits.max_open_files = Some(64);
        spec.limits.memory_bytes = Some(64 << 20);
        assert!(p.check_request(&spec).is_ok());
        spec.limits.cpu_time_ms = Some(2001);
        assert!(p.check_request(&spec).unwrap_err().to_string().contains(
            "spec.limits.cpu_time_ms 2001 ms is more than this daemon allows (2000 ms, [policy] max_cpu_time)"
        ));
        spec.limits.cpu_time_ms = None;
        spec.limits.max_open_files = Some(65);
        assert!(p.check_request(&spec).unwrap_err().to_string().contains("[policy] max_open_files"));
        spec.limits.max_open_files = None;
        spec.limits.memory_bytes = Some(65 << 20);
        assert!(p.check_request(&spec).unwrap_err().to_string().contains("64 MiB"), "the pool's slot is the cap");

        let section: PolicySection = toml::from_str("max_timeout = \"1m\"").unwrap();
        let defaults = Defaults { timeout_ms: Some(3_600_000), ..Default::default() };
        let err = Policy::from_config(&section, 64 << 20, &defaults).unwrap_err();
        assert!(err.contains("[defaults] must lie within [policy]") && err.contains("max_timeout"), "{err}");
        assert!(policy("listen = [\"localhost:80\"]").unwrap_err().contains("is not HOST:PORTS"));
    }
}
