//! Outbound HTTP: which `wasi:http/outgoing-handler` requests a sandbox may send.
//!
//! Entries are written as Spin writes `allowed_outbound_hosts`: `SCHEME://HOST[:PORT]`, where
//! SCHEME may be `*`, HOST may be `*` or start with `*.`, and PORT may be `*` (omitted: the
//! scheme's default port). Nothing is allowed unless an entry matches. Loopback, private,
//! link-local and unspecified addresses are refused even then, unless the matching entry names
//! that host exactly (`http://localhost:3000`, `http://10.0.0.5:8080`): a wildcard grant for
//! the internet must not reach the box's own services or the LAN.
//!
//! This is the grant as written and the address check; the host that sends the requests
//! (spore-sandbox's outbound hooks) resolves a wildcard grant's host once and checks every
//! address with [`is_private`].

/// A parsed allow-list.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    /// `None`: any scheme.
    scheme: Option<String>,
    host: Host,
    /// `None`: any port.
    port: Option<u16>,
}

#[derive(Debug, Clone)]
enum Host {
    Any,
    /// `*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com`.
    Subdomains(String),
    Exact(String),
}

/// An allowed outbound host that does not parse, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allowed outbound host {entry:?}: {problem}")]
pub struct OutboundError {
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it, and how to write it.
    pub problem: String,
}

/// How a request matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// By an entry naming this very host: private addresses are fine.
    Exact,
    /// By a wildcard: only public addresses.
    Wildcard,
}

impl OutboundPolicy {
    /// Parses the entries, naming the first that is malformed.
    pub fn parse(entries: &[String]) -> Result<Self, OutboundError> {
        let rules =
            entries.iter().map(|e| parse_rule(e).map_err(|problem| OutboundError { entry: e.clone(), problem }));
        Ok(OutboundPolicy { rules: rules.collect::<Result<_, _>>()? })
    }

    /// Whether any entry allows `scheme://host:port`, and how.
    pub fn check(&self, scheme: &str, host: &str, port: u16) -> Option<Grant> {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let mut best = None;
        for r in &self.rules {
            if r.scheme.as_deref().is_some_and(|s| s != scheme) || r.port.is_some_and(|p| p != port) {
                continue;
            }
            match &r.host {
                Host::Exact(h) if *h == host => return Some(Grant::Exact),
                Host::Subdomains(suffix) if host.ends_with(&format!(".{suffix}")) => best = Some(Grant::Wildcard),
                Host::Any => best = Some(Grant::Wildcard),
                _ => {}
            }
        }
        best
    }
}

/// The port a scheme means when none is written.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

fn parse_rule(entry: &str) -> Result<Rule, String> {
    let (scheme, rest) = entry
        .split_once("://")
        .ok_or("write SCHEME://HOST[:PORT], e.g. https://api.example.com or http://localhost:3000")?;
    let scheme = match scheme {
        "*" => None,
        "http" | "https" => Some(scheme.to_owned()),
        other => return Err(format!("scheme {other:?} is not http, https or *")),
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') {
        return Err("paths are not part of a host grant; remove everything after the host and port".into());
    }
    // [v6]:port, host:port, or host.
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unclosed [ in an IPv6 address")?;
        (h.to_owned(), after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (rest.to_owned(), None),
        }
    };
    let port = match port {
        Some("*") => None,
        Some(p) => Some(p.parse::<u16>().map_err(|_| format!("port {p:?} is not a number or *"))?),
        None => match &scheme {
            Some(s) => default_port(s),
            None => None,
        },
    };
    let host = host.to_ascii_lowercase();
    let host = if host == "*" {
        Host::Any
    } else if let Some(suffix) = host.strip_prefix("*.") {
        Host::Subdomains(suffix.to_owned())
    } else if host.is_empty() || host.contains('*') {
        return Err("the host must be a name, an address, * or *.DOMAIN".into());
    } else {
        Host::Exact(host)
    };
    Ok(Rule { scheme, host, port })
}

pub use spore_types::is_private;

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> OutboundPolicy {
        OutboundPolicy::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn matches_as_spin_writes_it() {
        let p = policy(&["https://api.example.com", "http://localhost:3000", "*://*.cdn.net:*"]);
        assert_eq!(p.check("https", "api.example.com", 443), Some(Grant::Exact));
        assert_eq!(p.check("http", "api.example.com", 80), None, "scheme");
        assert_eq!(p.check("https", "api.example.com", 8443), None, "default port only");
        assert_eq!(p.check("http", "localhost", 3000), Some(Grant::Exact));
        assert_eq!(p.check("http", "img.cdn.net", 8080), Some(Grant::Wildcard));
        assert_eq!(p.check("https", "cdn.net", 443), None, "*.x is subdomains only");
        assert_eq!(policy(&[]).check("https", "example.com", 443), None, "deny by default");
        assert_eq!(policy(&["*://*:*"]).check("http", "10.1.2.3", 80), Some(Grant::Wildcard));
    }

    #[test]
    fn bad_entries_are_named() {
        for (bad, why) in [
            ("example.com", "SCHEME://"),
            ("ftp://x", "scheme"),
            ("http://x:99999", "port"),
            ("http://x/path", "paths"),
        ] {
            let err = OutboundPolicy::parse(&[bad.to_string()]).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn private_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "169.254.169.254",
            "100.100.100.200",
            "198.18.0.1",
            "192.0.0.8",
            "240.0.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "fd00::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1", "100.128.0.1", "64:ff9b::5db8:d822"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }
}
