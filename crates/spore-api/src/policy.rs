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

use crate::model::Defaults;
use serde::{Deserialize, Serialize};
use spore_spec::outbound::is_private;
use spore_spec::{AddrRule, DEFAULT_MAX_OPEN_FILES, Input, Limits, Mount, SandboxSpec};
use spore_types::{ByteSize, HumanDuration, human_bytes};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// `[policy]`: what an API client may ask of the daemon (see `policy.rs` and
/// docs/security.md). The defaults allow nothing of the host.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySection {
    /// Host directories under which a create may mount (or read stdin from). Default: none.
    pub mount_roots: Vec<PathBuf>,
    /// Whether a create may read stdin from a host file (under `mount_roots`). Default: no.
    pub stdin_files: bool,
    /// Where HTTP apps may listen: `IP:PORT`, `IP:LOW-HIGH`, `IP:*`, `*:PORT`…
    pub listen: Vec<String>,
    /// The most memory a create may ask (never above `[pool] max_memory`), e.g. "32M".
    pub max_memory: Option<ByteSize>,
    /// The most CPU time a create may ask, e.g. "1h".
    pub max_cpu_time: Option<HumanDuration>,
    /// The longest wall-clock limit a create may ask, e.g. "1d".
    pub max_timeout: Option<HumanDuration>,
    /// The most open handles a create may ask.
    pub max_open_files: Option<usize>,
    /// The most core instances a create may ask (the pool's share caps it too).
    pub max_instances: Option<usize>,
    /// The most tables a create may ask (the pool's share caps it too).
    pub max_tables: Option<usize>,
    /// The largest table a create may ask (the pool's share caps it too).
    pub max_table_elements: Option<usize>,
    /// The most linear memories a create may ask (the pool's share caps it too).
    pub max_memories: Option<usize>,
    /// Requests an HTTP app may ask to run at once (`spec.http.concurrency`; each takes a
    /// sandbox slot).
    pub max_concurrency: usize,
    /// Sandboxes the daemon keeps, running or not; creates beyond it get 429.
    pub max_sandboxes: usize,
    /// Sandboxes one batch request may create.
    pub max_batch: usize,
    /// Largest request body but program uploads, e.g. "1M".
    pub max_request_body: ByteSize,
    /// Largest program upload, e.g. "512M".
    pub max_program_body: ByteSize,
    /// Whether `?secrets=true` may show `capabilities.variables` values back. Default: no.
    pub reveal_variables: bool,
    /// Whether a sandbox's network grants (sockets, outbound HTTP) may reach loopback,
    /// private and link-local addresses: the box's own services and its LAN's. Default: no.
    pub private_network: bool,
    /// Registries a create may name an image from: `HOST` (any port) or `HOST:PORT`, or `*` for
    /// any. One on a loopback, private or link-local address (or `localhost`) must be named
    /// here, not by `*`, unless `private_network` is on: the daemon pulls with its own network
    /// and logins. Default: any.
    pub registries: Vec<String>,
    /// The largest image a create may have pulled, its blobs' sizes together as its manifest
    /// gives them, e.g. "4G"; judged before any layer is fetched.
    pub max_image_size: ByteSize,
    /// The most blobs (config and layers) an image a create has pulled may have.
    pub max_image_layers: usize,
}

impl Default for PolicySection {
    fn default() -> Self {
        PolicySection {
            mount_roots: Vec::new(),
            stdin_files: false,
            listen: vec!["127.0.0.1:1024-65535".into(), "[::1]:1024-65535".into()],
            max_memory: None,
            max_cpu_time: None,
            max_timeout: None,
            max_open_files: Some(4096),
            max_instances: None,
            max_tables: None,
            max_table_elements: None,
            max_memories: None,
            max_concurrency: 1024,
            max_sandboxes: 100_000,
            max_batch: 10_000,
            max_request_body: ByteSize(1 << 20),
            max_program_body: ByteSize(512 << 20),
            reveal_variables: false,
            private_network: false,
            registries: vec!["*".into()],
            max_image_size: ByteSize(4 << 30),
            max_image_layers: 128,
        }
    }
}

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

impl crate::Classified for Refusal {
    fn kind(&self) -> crate::ErrorKind {
        match self {
            Refusal::Forbidden(_) => crate::ErrorKind::Forbidden,
            Refusal::OverCap(_) => crate::ErrorKind::Invalid,
        }
    }
}

/// A `[policy]` that cannot be used; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(String);

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
    /// Requests an HTTP app may run at once (each is a sandbox slot).
    max_concurrency: usize,
    /// The largest image a create may have pulled (its blobs together, per its manifest).
    pub max_image_size: u64,
    /// The most blobs such an image may have.
    pub max_image_layers: usize,
    /// The pool's slot: the memory a sandbox gets when it asks for none.
    pool_max_memory: u64,
    reveal_variables: bool,
    /// Whether sandboxes may reach non-public addresses (else their grants reach public
    /// ones only: [`spore_spec::SandboxSpec::public_network_only`]).
    pub private_network: bool,
    /// Registries named (lower case), `HOST` or `HOST:PORT`; `any` when `*` was among them.
    registries: Vec<String>,
    any_registry: bool,
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

    /// Whether a guest's socket grant to listen on `rule` lies within this rule: one address
    /// (or any, where this rule allows any) and a port in range (any port, or 0 for an
    /// ephemeral one, only where this rule allows every port).
    fn covers(&self, rule: &AddrRule) -> bool {
        let every_port = self.ports == (1, u16::MAX);
        let (ip_ok, port) = match rule {
            AddrRule::Net { net, port } => {
                let single = net.prefix_len() == net.max_prefix_len();
                (self.ip.is_none() || (single && self.ip == Some(net.addr())), *port)
            }
            AddrRule::Host { port, .. } => (self.ip.is_none(), *port),
        };
        ip_ok
            && match port {
                None | Some(0) => every_port,
                Some(p) => (self.ports.0..=self.ports.1).contains(&p),
            }
    }
}

impl Policy {
    /// Parses `[policy]`; `pool_max_memory` is the pool's slot, the memory cap when the policy
    /// sets none (or a larger one). The operator's `defaults` must lie within the caps.
    pub fn from_config(
        section: &PolicySection,
        pool_max_memory: u64,
        defaults: &Defaults,
    ) -> Result<Self, PolicyError> {
        Policy::build(section, pool_max_memory, defaults).map_err(PolicyError)
    }

    fn build(section: &PolicySection, pool_max_memory: u64, defaults: &Defaults) -> Result<Self, String> {
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
        let memory_bytes = Some(section.max_memory.map_or(pool_max_memory, |m| m.bytes().min(pool_max_memory)));
        let caps = Caps {
            memory_bytes,
            cpu_time_ms: section.max_cpu_time.map(|t| t.get().as_millis() as u64),
            timeout_ms: section.max_timeout.map(|t| t.get().as_millis() as u64),
            counts: [
                ("max_open_files", section.max_open_files),
                ("max_instances", section.max_instances),
                ("max_tables", section.max_tables),
                ("max_table_elements", section.max_table_elements),
                ("max_memories", section.max_memories),
            ],
        };
        let mut policy = Policy {
            mount_roots,
            stdin_files: section.stdin_files,
            listen,
            caps,
            max_sandboxes: section.max_sandboxes,
            max_batch: section.max_batch,
            max_request_body: section.max_request_body.bytes() as usize,
            max_program_body: section.max_program_body.bytes() as usize,
            max_concurrency: section.max_concurrency,
            max_image_size: section.max_image_size.bytes(),
            max_image_layers: section.max_image_layers,
            pool_max_memory,
            reveal_variables: section.reveal_variables,
            private_network: section.private_network,
            registries: Vec::new(),
            any_registry: false,
        };
        for entry in &section.registries {
            match entry.trim() {
                "*" => policy.any_registry = true,
                host if !host.is_empty() && !host.contains(['/', '@', ' ']) => {
                    policy.registries.push(host.to_ascii_lowercase());
                }
                _ => {
                    return Err(format!(
                        "[policy] registries: {entry:?} is not a registry (HOST or HOST:PORT, e.g. \"ghcr.io\", \"10.0.0.5:5000\", or \"*\")"
                    ));
                }
            }
        }
        for (key, value) in [
            ("max_sandboxes", policy.max_sandboxes),
            ("max_batch", policy.max_batch),
            ("max_concurrency", policy.max_concurrency),
            ("max_request_body", policy.max_request_body),
            ("max_program_body", policy.max_program_body),
            ("max_image_layers", policy.max_image_layers),
        ] {
            if value == 0 {
                return Err(format!("[policy] {key} must be at least 1"));
            }
        }
        // A default the caps refuse would refuse every create that leaves the limit unset.
        let mut probe = SandboxSpec::default();
        probe.limits.memory_bytes = defaults.memory_bytes;
        probe.limits.cpu_time_ms = defaults.cpu_time_ms;
        probe.limits.timeout_ms = defaults.timeout_ms;
        policy.check_limits(&probe).map_err(|e| format!("[defaults] must lie within [policy]: {e}"))?;
        Ok(policy)
    }

    /// Judges what a create asks before anything is fetched or compiled: its mounts as written
    /// (each must name a path under a mount root; [`Policy::check_mounts`] judges them again
    /// once resolved), stdin, where an HTTP app and its sockets listen, every limit against
    /// its cap. A stdin file is read now, into the spec: a path reopened at every start could
    /// be swapped for a link by then.
    pub fn admit_request(&self, spec: &mut SandboxSpec) -> Result<(), Refusal> {
        for m in &spec.mounts {
            if !m.host.is_absolute() {
                return Err(Refusal::OverCap(format!(
                    "mount {}: the host path {} must be absolute",
                    m.guest,
                    m.host.display()
                )));
            }
            self.inside_roots(&lexical(&m.host), &format!("mount {}", m.guest), &m.host)?;
        }
        match &spec.stdio.stdin {
            Input::Inherit => {
                return Err(Refusal::OverCap(
                    "spec.stdio.stdin inherit: the daemon has no terminal to give; use bytes, a file, or null".into(),
                ));
            }
            Input::File(file) => {
                let file = file.clone();
                spec.stdio.stdin = Input::Bytes(self.read_stdin(&file)?);
            }
            Input::Null | Input::Bytes(_) => {}
        }
        if let Some(http) = &spec.http {
            let addr: SocketAddr = http.listen.parse().map_err(|_| {
                Refusal::OverCap(format!("spec.http.listen {:?} is not IP:PORT (e.g. 127.0.0.1:8080)", http.listen))
            })?;
            if !self.listen.iter().any(|rule| rule.allows(addr)) {
                return Err(self.listen_refused(&format!("spec.http.listen {addr}")));
            }
            if let Some(n) = http.concurrency
                && n > self.max_concurrency
            {
                return Err(Refusal::OverCap(format!(
                    "spec.http.concurrency {n} is more than this daemon allows ({}, [policy] max_concurrency)",
                    self.max_concurrency
                )));
            }
        }
        if let Some(rule) = spec.network.listen.iter().find(|r| !self.listen.iter().any(|l| l.covers(r))) {
            return Err(self.listen_refused(&format!("spec.network.listen {rule}")));
        }
        self.check_reach(spec)?;
        self.check_limits(spec)
    }

    /// Refuses, unless the operator allows private networks, a grant that can only reach a
    /// non-public address: a rule for one such address, an outbound host that is one (or
    /// `localhost`). Grants that name networks or host names are held to public addresses
    /// when the sandbox runs, which this check cannot foresee.
    fn check_reach(&self, spec: &SandboxSpec) -> Result<(), Refusal> {
        if self.private_network {
            return Ok(());
        }
        let refused = |what: String| {
            Refusal::Forbidden(format!(
                "{what} reaches a loopback or private address, which this daemon's sandboxes do not reach (the box's own services and its LAN's); [policy] private_network = true allows it"
            ))
        };
        for rule in &spec.network.connect {
            if let AddrRule::Net { net, .. } = rule
                && net.prefix_len() == net.max_prefix_len()
                && is_private(net.addr())
            {
                return Err(refused(format!("spec.network.connect {rule}")));
            }
        }
        for entry in &spec.capabilities.allowed_outbound_hosts {
            let host = entry.split_once("://").map_or(entry.as_str(), |(_, rest)| rest);
            let host = match host.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or(v6),
                None => host.split(['/', ':']).next().unwrap_or(host),
            };
            let private = host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(is_private);
            if private {
                return Err(refused(format!("capabilities.allowed_outbound_hosts {entry:?}")));
            }
        }
        Ok(())
    }

    /// Judges the registry of an image a create names (`registry` as the reference gives it,
    /// `HOST[:PORT]`), before anything is fetched: it must be one `[policy] registries` names,
    /// or any under `*` — but a registry on the box or its LAN only when named, or with
    /// `private_network`: a client must not make the daemon's own pulls (its network, its
    /// logins) reach the box's services or its LAN, as its sandboxes may not.
    pub fn admit_registry(&self, image: &str, registry: &str) -> Result<(), Refusal> {
        let registry = registry.to_ascii_lowercase();
        let host = registry_host(&registry);
        if self.registries.iter().any(|r| *r == registry || r == host) {
            return Ok(());
        }
        if !self.any_registry {
            return Err(Refusal::Forbidden(format!(
                "image {image}: this daemon's policy allows images from {} only; add {registry} to [policy] registries",
                if self.registries.is_empty() { "no registry".to_owned() } else { self.registries.join(", ") }
            )));
        }
        let private = host == "localhost" || host.parse::<IpAddr>().is_ok_and(is_private);
        if private && !self.private_network {
            return Err(Refusal::Forbidden(format!(
                "image {image}: its registry {registry} is a loopback or private address, which this daemon pulls from only when named: add it to [policy] registries (or set [policy] private_network = true)"
            )));
        }
        Ok(())
    }

    /// The hosts whose every address the daemon's pulls may reach: `None` for any address
    /// (`private_network`), else the registries named in `[policy] registries`, without ports
    /// (a pull's redirects and token realm are held to public addresses but for these).
    pub fn private_registry_hosts(&self) -> Option<Vec<String>> {
        if self.private_network {
            return None;
        }
        Some(self.registries.iter().map(|r| registry_host(r).to_owned()).collect())
    }

    fn listen_refused(&self, what: &str) -> Refusal {
        let allowed: Vec<&str> = self.listen.iter().map(|r| r.text.as_str()).collect();
        Refusal::Forbidden(format!(
            "{what}: this daemon's policy allows listening on {} only; add the address to [policy] listen",
            if allowed.is_empty() { "nothing".to_owned() } else { allowed.join(", ") }
        ))
    }

    /// A stdin file's contents, if the policy lets a create read it: a regular file under a
    /// mount root, no larger than a request body.
    fn read_stdin(&self, file: &Path) -> Result<String, Refusal> {
        if !self.stdin_files {
            return Err(Refusal::Forbidden(format!(
                "spec.stdio.stdin reads the host file {}: this daemon's policy does not allow stdin from host files ([policy] stdin_files = true, with the file under one of mount_roots)",
                file.display()
            )));
        }
        self.inside_roots(&lexical(file), "spec.stdio.stdin file", file)?;
        let unreadable = |e: std::io::Error| Refusal::OverCap(format!("spec.stdio.stdin file {}: {e}", file.display()));
        let canonical = std::fs::canonicalize(file).map_err(unreadable)?;
        self.inside_roots(&canonical, "spec.stdio.stdin file", file)?;
        let opened = std::fs::File::open(&canonical).map_err(unreadable)?;
        let meta = opened.metadata().map_err(unreadable)?;
        if !meta.is_file() || meta.len() > self.max_request_body as u64 {
            return Err(Refusal::OverCap(format!(
                "spec.stdio.stdin file {} must be a regular file of at most {} ([policy] max_request_body)",
                file.display(),
                human_bytes(self.max_request_body as u64)
            )));
        }
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(opened, self.max_request_body as u64), &mut text)
            .map_err(unreadable)?;
        Ok(text)
    }

    /// Fills the limits a create left unset (after the operator's defaults) from the caps, so
    /// leaving a limit out never gets more than asking for it would.
    pub fn fill_unset(&self, limits: &mut Limits) {
        let caps = &self.caps;
        limits.memory_bytes = limits.memory_bytes.or(caps.memory_bytes.filter(|&cap| cap < self.pool_max_memory));
        limits.cpu_time_ms = limits.cpu_time_ms.or(caps.cpu_time_ms);
        limits.timeout_ms = limits.timeout_ms.or(caps.timeout_ms);
        let [open_files, instances, tables, elements, memories] = caps.counts.map(|(_, cap)| cap);
        limits.max_open_files = limits.max_open_files.or(open_files.filter(|&cap| cap < DEFAULT_MAX_OPEN_FILES));
        limits.max_instances = limits.max_instances.or(instances);
        limits.max_tables = limits.max_tables.or(tables);
        limits.max_table_elements = limits.max_table_elements.or(elements);
        limits.max_memories = limits.max_memories.or(memories);
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

    /// Refuses `path` (as resolved or normalised) outside every mount root. The message
    /// repeats only what the client asked, so a refusal tells nothing of the host.
    fn inside_roots(&self, path: &Path, what: &str, asked: &Path) -> Result<(), Refusal> {
        if self.mount_roots.iter().any(|root| path.starts_with(root)) {
            return Ok(());
        }
        let roots = match self.mount_roots.is_empty() {
            true => "none".to_owned(),
            false => self.mount_roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", "),
        };
        Err(Refusal::Forbidden(format!(
            "{what}: the host path {} is outside the directories this daemon lets a sandbox use ({roots}); add it, or a directory above it, to [policy] mount_roots",
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

/// `path` with `.` and `..` taken out as written (no link followed): where an absolute path
/// names before anything on the host is consulted.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            std::path::Component::Normal(name) => out.push(name),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// What a record shows of its secret values unless revealed.
pub const REDACTED: &str = "(secret)";

/// Replaces every variable's value in `spec` by [`REDACTED`].
pub fn redact(spec: &mut SandboxSpec) {
    spec.capabilities.variables.values_mut().for_each(|v| *v = REDACTED.to_owned());
}

/// The host of a registry's `HOST[:PORT]` (an IPv6 address without its brackets).
fn registry_host(registry: &str) -> &str {
    match registry.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => registry.rsplit_once(':').map_or(registry, |(host, _)| host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spore_spec::HttpSpec;

    fn policy(toml: &str) -> Result<Policy, String> {
        let section: PolicySection = toml::from_str(toml).map_err(|e| e.to_string())?;
        Policy::from_config(&section, 64 << 20, &Defaults::default()).map_err(|e| e.to_string())
    }

    fn listening(addr: &str) -> SandboxSpec {
        SandboxSpec { http: Some(HttpSpec { listen: addr.into(), concurrency: None }), ..Default::default() }
    }

    #[test]
    fn by_default_apps_listen_on_loopback_above_1023_and_nothing_of_the_host_is_allowed() {
        let p = policy("").unwrap();
        assert!(p.admit_request(&mut listening("127.0.0.1:8080")).is_ok());
        assert!(p.admit_request(&mut listening("[::1]:8080")).is_ok());
        for refused in ["0.0.0.0:8080", "127.0.0.1:80", "10.0.0.1:8080"] {
            let err = p.admit_request(&mut listening(refused)).unwrap_err();
            assert!(matches!(err, Refusal::Forbidden(_)) && err.to_string().contains("[policy] listen"), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let err = p.check_mounts(&[Mount { host: dir.path().into(), guest: "/d".into(), read_only: true, pin: None }]);
        assert!(err.unwrap_err().to_string().contains("(none); add it"));
        // Judged as written before anything on the host is looked at: no probing.
        for host in ["/etc", "/nonexistent/x", "/etc/../root"] {
            let mut spec = SandboxSpec::default();
            spec.mounts.push(Mount { host: host.into(), guest: "/d".into(), read_only: true, pin: None });
            let err = p.admit_request(&mut spec).unwrap_err().to_string();
            assert!(err.contains(&format!("the host path {host} is outside")), "{err}");
        }
        // A guest's own sockets listen where HTTP apps may.
        let mut spec = SandboxSpec::default();
        spec.network.listen = vec!["127.0.0.1:9000".parse().unwrap()];
        assert!(p.admit_request(&mut spec).is_ok());
        for refused in ["0.0.0.0:9000", "127.0.0.1:22", "127.0.0.0/8:9000", "127.0.0.1:*", "localhost:9000"] {
            spec.network.listen = vec![refused.parse().unwrap()];
            let err = p.admit_request(&mut spec).unwrap_err().to_string();
            assert!(err.contains("spec.network.listen"), "{refused}: {err}");
        }
        let mut spec = SandboxSpec::default();
        spec.stdio.stdin = Input::File("/etc/passwd".into());
        assert!(matches!(p.admit_request(&mut spec), Err(Refusal::Forbidden(_))));
        spec.stdio.stdin = Input::Inherit;
        assert!(matches!(p.admit_request(&mut spec), Err(Refusal::OverCap(_))));
        assert!(p.check_reveal().is_err());
    }

    #[test]
    fn a_stdin_file_is_read_once_when_allowed() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("input"), "hello\n").unwrap();
        let p =
            policy(&format!("mount_roots = [{:?}]\nstdin_files = true", root.path().display().to_string())).unwrap();
        let mut spec = SandboxSpec::default();
        spec.stdio.stdin = Input::File(root.path().join("input"));
        p.admit_request(&mut spec).unwrap();
        assert_eq!(spec.stdio.stdin, Input::Bytes("hello\n".into()), "the contents, not a path to reopen");
        spec.stdio.stdin = Input::File("/etc/passwd".into());
        assert!(matches!(p.admit_request(&mut spec), Err(Refusal::Forbidden(_))), "outside the roots");
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
        assert!(p.admit_request(&mut spec).is_ok());
        spec.limits.cpu_time_ms = Some(2001);
        assert!(p.admit_request(&mut spec).unwrap_err().to_string().contains(
            "spec.limits.cpu_time_ms 2001 ms is more than this daemon allows (2000 ms, [policy] max_cpu_time)"
        ));
        spec.limits.cpu_time_ms = None;
        spec.limits.max_open_files = Some(65);
        assert!(p.admit_request(&mut spec).unwrap_err().to_string().contains("[policy] max_open_files"));
        spec.limits.max_open_files = None;
        spec.limits.memory_bytes = Some(65 << 20);
        assert!(p.admit_request(&mut spec).unwrap_err().to_string().contains("64 MiB"), "the pool's slot is the cap");

        // Left unset, a limit gets its cap, never more than asking would.
        let mut limits = Limits::default();
        p.fill_unset(&mut limits);
        assert_eq!((limits.cpu_time_ms, limits.max_open_files, limits.memory_bytes), (Some(2000), Some(64), None));

        let section: PolicySection = toml::from_str("max_timeout = \"1m\"").unwrap();
        let defaults = Defaults { timeout_ms: Some(3_600_000), ..Default::default() };
        let err = Policy::from_config(&section, 64 << 20, &defaults).unwrap_err().to_string();
        assert!(err.contains("[defaults] must lie within [policy]") && err.contains("max_timeout"), "{err}");
        assert!(policy("listen = [\"localhost:80\"]").unwrap_err().contains("is not HOST:PORTS"));
    }

    #[test]
    fn grants_that_only_reach_private_addresses_are_refused_unless_allowed() {
        let p = policy("").unwrap();
        let connect = |rule: &str| {
            let mut spec = SandboxSpec::default();
            spec.network.connect = vec![rule.parse().unwrap()];
            spec
        };
        let outbound = |entry: &str| {
            let mut spec = SandboxSpec::default();
            spec.capabilities.allowed_outbound_hosts = vec![entry.into()];
            spec
        };
        for mut spec in [
            connect("127.0.0.1:6379"),
            connect("[::1]:80"),
            connect("10.0.0.5:*"),
            connect("169.254.169.254:80"),
            outbound("http://localhost:6379"),
            outbound("http://127.0.0.1:8080"),
            outbound("https://[fd00::1]"),
            outbound("http://192.168.1.1/"),
        ] {
            let err = p.admit_request(&mut spec).unwrap_err().to_string();
            assert!(err.contains("[policy] private_network = true"), "{spec:?}: {err}");
        }
        // Public addresses, networks and names pass (names and networks are held to public
        // addresses when the sandbox runs).
        for mut spec in [
            connect("93.184.216.34:443"),
            connect("0.0.0.0/0:443"),
            connect("db.internal:5432"),
            outbound("https://api.example.com"),
            outbound("*://*:*"),
        ] {
            assert!(p.admit_request(&mut spec).is_ok(), "{spec:?}");
        }
        let open = policy("private_network = true").unwrap();
        assert!(open.admit_request(&mut connect("127.0.0.1:6379")).is_ok());
        assert!(open.private_network && !p.private_network);
    }

    #[test]
    fn pulled_images_are_held_to_the_operators_size_and_layers() {
        let p = policy("").unwrap();
        assert_eq!((p.max_image_size, p.max_image_layers), (4 << 30, 128));
        let p = policy("max_image_size = \"64M\"\nmax_image_layers = 4").unwrap();
        assert_eq!((p.max_image_size, p.max_image_layers), (64 << 20, 4));
        assert!(policy("max_image_layers = 0").unwrap_err().contains("[policy] max_image_layers must be at least 1"));
        let err = policy("max_image_size = \"big\"").unwrap_err();
        assert!(err.contains("max_image_size") && err.contains("\"big\" is not a size"), "{err}");
    }

    #[test]
    fn images_come_from_the_registries_the_operator_names_and_never_the_box_unnamed() {
        let any = policy("").unwrap();
        assert!(any.admit_registry("docker.io/library/hello", "docker.io").is_ok());
        assert!(any.admit_registry("ghcr.io/x/y", "ghcr.io").is_ok());
        for private in
            ["127.0.0.1:5000", "localhost:5000", "10.0.0.5", "169.254.169.254", "[::1]:5000", "192.168.1.2:80"]
        {
            let err = any.admit_registry("x", private).unwrap_err().to_string();
            assert!(err.contains("add it to [policy] registries"), "{private}: {err}");
        }
        let lan = policy("registries = [\"*\", \"10.0.0.5\", \"LOCALHOST:5000\"]").unwrap();
        assert!(lan.admit_registry("x", "10.0.0.5:5000").is_ok(), "a host named allows each of its ports");
        assert!(lan.admit_registry("x", "localhost:5000").is_ok());
        assert!(lan.admit_registry("x", "localhost:5001").is_err(), "a port named allows that port only");
        let open = policy("private_network = true").unwrap();
        assert!(open.admit_registry("x", "127.0.0.1:5000").is_ok());

        let only = policy("registries = [\"ghcr.io\"]").unwrap();
        assert!(only.admit_registry("ghcr.io/x/y", "ghcr.io").is_ok());
        let err = only.admit_registry("docker.io/library/hello", "docker.io").unwrap_err().to_string();
        assert!(err.contains("allows images from ghcr.io only; add docker.io to [policy] registries"), "{err}");
        let none = policy("registries = []").unwrap();
        assert!(none.admit_registry("x", "ghcr.io").unwrap_err().to_string().contains("from no registry"));
        for bad in ["\"\"", "\"https://ghcr.io\"", "\"ghcr.io/team\""] {
            let err = policy(&format!("registries = [{bad}]")).unwrap_err();
            assert!(err.contains("[policy] registries"), "{bad}: {err}");
        }
    }
}
