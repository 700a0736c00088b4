//! The network policy: which addresses a guest may connect to and listen on. Deny by default —
//! an empty policy gives the guest no sockets at all.
//!
//! Rules are written as users write them on the command line (`db.internal:5432`,
//! `10.0.0.0/8`, `[::1]:8080`, `api.example.com:*`) and kept in that form in the spec, so a
//! stored spec reads like the command that made it. Host names are resolved when a sandbox
//! starts (by the sandbox host), which then checks addresses only.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// One allowed address pattern: a host name or a network, and a port or any port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum AddrRule {
    /// A DNS name, resolved when the sandbox starts.
    Host {
        /// The name.
        host: String,
        /// The port, or `None` for any.
        port: Option<u16>,
    },
    /// An address or a CIDR network.
    Net {
        /// The network (a single address is a /32 or /128).
        net: IpNet,
        /// The port, or `None` for any.
        port: Option<u16>,
    },
}

/// Which sockets a sandbox may open.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkPolicy {
    /// Destinations the guest may connect or send to (TCP and UDP).
    pub connect: Vec<AddrRule>,
    /// Local addresses the guest may bind and listen on. Empty: no server sockets.
    pub listen: Vec<AddrRule>,
}

impl NetworkPolicy {
    /// True when the guest gets no sockets at all.
    pub fn is_none(&self) -> bool {
        self.connect.is_empty() && self.listen.is_empty()
    }

    /// Whether any rule names a host, which is the only case where the guest needs DNS.
    pub fn needs_name_lookup(&self) -> bool {
        self.connect.iter().chain(&self.listen).any(|r| matches!(r, AddrRule::Host { .. }))
    }
}

/// Why a network rule could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("network rule {rule:?}: {problem}; write HOST:PORT, HOST:*, IP:PORT, [IPv6]:PORT or a CIDR such as 10.0.0.0/8")]
pub struct AddrRuleError {
    rule: String,
    problem: String,
}

impl FromStr for AddrRule {
    type Err = AddrRuleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |problem: &str| AddrRuleError { rule: s.to_owned(), problem: problem.to_owned() };
        let parse_port = |p: &str| -> Result<Option<u16>, AddrRuleError> {
            match p {
                "*" => Ok(None),
                p => p.parse::<u16>().map(Some).map_err(|_| err("the port must be a number from 0 to 65535 or *")),
            }
        };
        if s.is_empty() {
            return Err(err("it is empty"));
        }
        // [IPv6] or [IPv6/prefix], then an optional :PORT.
        if let Some(rest) = s.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or_else(|| err("a `[` without its `]`"))?;
            let port = match after {
                "" => None,
                p => parse_port(p.strip_prefix(':').ok_or_else(|| err("expected `:PORT` after `]`"))?)?,
            };
            return Ok(AddrRule::Net {
                net: parse_net(inside).ok_or_else(|| err("not an IPv6 address or network"))?,
                port,
            });
        }
        // A CIDR, then an optional :PORT after the prefix length.
        if let Some((ip, rest)) = s.split_once('/') {
            let (prefix, port) = match rest.split_once(':') {
                Some((prefix, port)) => (prefix, parse_port(port)?),
                None => (rest, None),
            };
            let net = parse_net(&format!("{ip}/{prefix}")).ok_or_else(|| err("not a valid CIDR network"))?;
            return Ok(AddrRule::Net { net, port });
        }
        if s.parse::<std::net::Ipv6Addr>().is_ok() {
            return Err(err("IPv6 addresses need brackets when a port follows, as in [::1]:8080"));
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(|| err("a port is required (use HOST:* for any port)"))?;
        let port = parse_port(port)?;
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(AddrRule::Net { net: IpNet::from(ip), port });
        }
        let valid_name = !host.is_empty()
            && host.len() <= 253
            && host
                .split('.')
                .all(|l| !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !valid_name {
            return Err(err("the host is neither an IP address nor a valid DNS name"));
        }
        Ok(AddrRule::Host { host: host.to_ascii_lowercase(), port })
    }
}

fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>().ok().or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

impl TryFrom<String> for AddrRule {
    type Error = AddrRuleError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<AddrRule> for String {
    fn from(r: AddrRule) -> String {
        r.to_string()
    }
}

impl fmt::Display for AddrRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = |p: &Option<u16>| p.map_or("*".to_owned(), |p| p.to_string());
        match self {
            AddrRule::Host { host, port: p } => write!(f, "{host}:{}", port(p)),
            AddrRule::Net { net, port: None } if net.prefix_len() < net.max_prefix_len() => write!(f, "{net}"),
            AddrRule::Net { net: IpNet::V6(n), port: p } if n.prefix_len() == 128 => {
                write!(f, "[{}]:{}", n.addr(), port(p))
            }
            AddrRule::Net { net: IpNet::V6(n), port: Some(p) } => write!(f, "[{n}]:{p}"),
            AddrRule::Net { net: IpNet::V4(n), port: p } if n.prefix_len() == 32 => {
                write!(f, "{}:{}", n.addr(), port(p))
            }
            AddrRule::Net { net, port: Some(p) } => write!(f, "{net}:{p}"),
            AddrRule::Net { net, port: None } => write!(f, "{net}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> AddrRule {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parses_and_prints_every_form() {
        for s in [
            "example.com:443",
            "api.example.com:*",
            "127.0.0.1:8080",
            "10.0.0.0/8",
            "10.0.0.0/8:443",
            "[::1]:80",
            "fd00::/8",
            "[fd00::/8]:53",
        ] {
            assert_eq!(rule(s).to_string(), s, "round trip of {s}");
        }
    }

    #[test]
    fn rejects_what_it_cannot_read_with_the_fix() {
        for (s, hint) in [
            ("example.com", "port is required"),
            ("::1", "need brackets"),
            ("10.0.0.0/33", "CIDR"),
            ("host:99999", "0 to 65535"),
            ("bad_host!:80", "valid DNS name"),
            ("", "empty"),
        ] {
            let err = s.parse::<AddrRule>().unwrap_err().to_string();
            assert!(err.contains(hint), "{s}: {err}");
        }
    }
}
