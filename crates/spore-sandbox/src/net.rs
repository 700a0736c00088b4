//! A sandbox's network rules ([`spore_spec::NetworkPolicy`]) as the per-socket check sees
//! them: host names resolved when the sandbox starts, then addresses compared on every
//! socket operation wasmtime-wasi asks about.

use ipnet::IpNet;
use spore_spec::outbound::is_private;
use spore_spec::{AddrRule, NetworkPolicy};
use std::net::SocketAddr;
use std::sync::Arc;
use wasmtime_wasi::sockets::SocketAddrUse;

/// Resolves `policy`'s host names into addresses, giving the address-only form checked per
/// socket call; with `public_only`, no rule reaches a non-public address.
pub(crate) async fn resolve(policy: &NetworkPolicy, public_only: bool) -> Arc<ResolvedPolicy> {
    Arc::new(ResolvedPolicy {
        connect: resolve_all(&policy.connect).await,
        listen: resolve_all(&policy.listen).await,
        public_only,
    })
}

async fn resolve_all(rules: &[AddrRule]) -> Vec<(IpNet, Option<u16>)> {
    let mut out = Vec::new();
    for rule in rules {
        match rule {
            AddrRule::Net { net, port } => out.push((*net, *port)),
            AddrRule::Host { host, port } => match tokio::net::lookup_host((host.as_str(), 0)).await {
                Ok(addrs) => out.extend(addrs.map(|a| (IpNet::from(a.ip()), *port))),
                Err(err) => {
                    tracing::warn!(%host, "network rule {rule}: cannot resolve host ({err}); it allows nothing");
                }
            },
        }
    }
    out
}

/// A policy with names resolved: what the per-socket check compares against.
#[derive(Debug, Default)]
pub(crate) struct ResolvedPolicy {
    connect: Vec<(IpNet, Option<u16>)>,
    listen: Vec<(IpNet, Option<u16>)>,
    /// Destinations must be public addresses, whatever the rules say
    /// ([`spore_spec::SandboxSpec::public_network_only`]).
    public_only: bool,
}

impl ResolvedPolicy {
    /// The decision for one socket operation, as wasmtime-wasi asks it.
    pub(crate) fn allows(&self, addr: SocketAddr, use_: SocketAddrUse) -> bool {
        let matches = |rules: &[(IpNet, Option<u16>)]| {
            rules.iter().any(|(net, port)| net.contains(&addr.ip()) && port.is_none_or(|p| p == addr.port()))
        };
        let reachable = !(self.public_only && is_private(addr.ip()));
        // Binding the wildcard address to an ephemeral port is what the OS does implicitly
        // before an outgoing connect or send; it opens nothing to the outside by itself.
        let implicit_bind = addr.ip().is_unspecified() && addr.port() == 0;
        match use_ {
            SocketAddrUse::TcpConnect | SocketAddrUse::UdpSend => reachable && matches(&self.connect),
            SocketAddrUse::UdpReceive => reachable && (matches(&self.connect) || !self.listen.is_empty()),
            SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => {
                (implicit_bind && !self.connect.is_empty()) || matches(&self.listen)
            }
            SocketAddrUse::TcpListen => matches(&self.listen),
            SocketAddrUse::TcpAccept => !self.listen.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decides_connect_bind_and_listen() {
        let p =
            ResolvedPolicy { connect: vec![(rule_net("10.0.0.0/8"), Some(443))], listen: vec![], public_only: false };
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(p.allows(a("10.1.2.3:443"), SocketAddrUse::TcpConnect));
        assert!(!p.allows(a("10.1.2.3:80"), SocketAddrUse::TcpConnect));
        assert!(!p.allows(a("192.168.1.1:443"), SocketAddrUse::TcpConnect));
        assert!(p.allows(a("0.0.0.0:0"), SocketAddrUse::TcpBind), "implicit bind before connect");
        assert!(!p.allows(a("0.0.0.0:8080"), SocketAddrUse::TcpBind));
        assert!(!p.allows(a("0.0.0.0:8080"), SocketAddrUse::TcpListen));
        let none = ResolvedPolicy::default();
        assert!(!none.allows(a("0.0.0.0:0"), SocketAddrUse::TcpBind), "no policy, no sockets");
        // Public only: a rule for everything reaches the internet, not the box or its LAN.
        let everything = vec![(rule_net("0.0.0.0/0"), None)];
        let p = ResolvedPolicy { connect: everything, listen: vec![], public_only: true };
        assert!(p.allows(a("93.184.216.34:443"), SocketAddrUse::TcpConnect));
        for private in ["127.0.0.1:6379", "10.0.0.5:80", "169.254.169.254:80", "192.168.1.1:53"] {
            assert!(!p.allows(a(private), SocketAddrUse::TcpConnect), "{private}");
            assert!(!p.allows(a(private), SocketAddrUse::UdpSend), "{private}");
        }
        assert!(p.allows(a("0.0.0.0:0"), SocketAddrUse::TcpBind), "the implicit bind before a connect");
    }

    fn rule_net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
}
