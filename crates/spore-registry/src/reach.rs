//! Where a pull's requests may go. Spore's own commands go anywhere the user names; the
//! daemon pulls for API clients with its own network and logins, so there a pull — its
//! registry, every redirect, the token realm — reaches public addresses only, but for the
//! registries the operator named.

use std::net::SocketAddr;
use std::sync::Arc;

/// Which addresses a pull's requests may reach.
#[derive(Debug, Clone, Default)]
pub enum Reach {
    /// Any (a user's own commands).
    #[default]
    Anywhere,
    /// Public addresses, and any address of these hosts (lower case, without ports).
    Public {
        /// Hosts named on purpose (a LAN registry), whose names may resolve anywhere.
        named: Vec<String>,
    },
}

impl Reach {
    /// Whether a request to `host` (a name or an address, no port) may be made at all, before
    /// its name is resolved.
    fn allows_host(&self, host: &str) -> bool {
        match self {
            Reach::Anywhere => true,
            Reach::Public { named } => {
                let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
                if named.contains(&host) {
                    return true;
                }
                match host.parse::<std::net::IpAddr>() {
                    Ok(ip) => !spore_types::is_private(ip),
                    // A name: judged by its addresses when it is resolved.
                    Err(_) => host != "localhost",
                }
            }
        }
    }

    /// Refuses a registry outside this reach, by the host a URL makes of it: `0x7f.0.0.1` or
    /// `2130706433` are 127.0.0.1 to the URL parser, and an address is connected to without
    /// the resolver that would drop it.
    pub(crate) fn check_registry(&self, registry: &str) -> Result<(), String> {
        let Reach::Public { .. } = self else { return Ok(()) };
        let host = reqwest::Url::parse(&format!("http://{registry}/"))
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .ok_or_else(|| format!("{registry} is not a registry's HOST[:PORT]"))?;
        match self.allows_host(&host) {
            true => Ok(()),
            false => Err(format!(
                "{registry} is {host}, a loopback or private address this daemon pulls from only when named in [policy] registries"
            )),
        }
    }

    /// Refuses a URL (a token realm) whose host is outside this reach.
    pub(crate) fn check_url(&self, url: &str) -> Result<(), String> {
        let Reach::Public { .. } = self else { return Ok(()) };
        let Some(host) = reqwest::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)) else {
            return Err(format!("{url} is not a URL"));
        };
        match self.allows_host(&host) {
            true => Ok(()),
            false => Err(format!("{url} is a loopback or private address this daemon does not reach")),
        }
    }

    /// Sets up `builder` to keep to this reach: every redirect judged (to an address outside
    /// it, refused), and names resolved to the addresses it allows only.
    pub(crate) fn apply(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        let Reach::Public { .. } = self else { return builder };
        let reach = self.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            let host = attempt.url().host_str().unwrap_or("").to_owned();
            if attempt.previous().len() >= 10 {
                attempt.error("more than 10 redirects")
            } else if !reach.allows_host(&host) {
                let to = attempt.url().to_string();
                attempt
                    .error(format!("redirected to {to}, a loopback or private address this daemon does not pull from"))
            } else {
                attempt.follow()
            }
        });
        // No proxy: it would resolve names where this resolver cannot judge them.
        builder.redirect(redirects).dns_resolver(Arc::new(PublicOnly(self.clone()))).no_proxy()
    }
}

/// The system's resolver, keeping only the addresses a [`Reach`] allows.
struct PublicOnly(Reach);

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let named = matches!(&self.0, Reach::Public { named } if named.contains(&host));
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> =
                found.iter().copied().filter(|a| named || !spore_types::is_private(a.ip())).collect();
            if kept.is_empty() && !found.is_empty() {
                return Err(format!(
                    "{host} resolves to loopback or private addresses only, which this daemon pulls from only for a registry named in [policy] registries"
                )
                .into());
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_reach_refuses_the_box_and_its_lan_but_what_was_named() {
        let reach = Reach::Public { named: vec!["10.0.0.5".into(), "registry.lan".into()] };
        for ok in ["ghcr.io", "registry.lan", "10.0.0.5", "1.1.1.1", "[2606:4700::1111]"] {
            assert!(reach.allows_host(ok), "{ok}");
        }
        for no in ["127.0.0.1", "localhost", "169.254.169.254", "10.0.0.6", "[::1]", "192.168.0.1"] {
            assert!(!reach.allows_host(no), "{no}");
        }
        assert!(Reach::Anywhere.allows_host("127.0.0.1"));
        for disguised in ["0x7f.0.0.1:5000", "2130706433", "127.1", "[::ffff:127.0.0.1]:80", "LOCALHOST:5000"] {
            let err = reach.check_registry(disguised).unwrap_err();
            assert!(err.contains("loopback or private address"), "{disguised}: {err}");
        }
        assert!(reach.check_registry("ghcr.io").is_ok() && reach.check_registry("10.0.0.5:5000").is_ok());
        assert!(reach.check_url("https://auth.docker.io/token").is_ok());
        for realm in ["http://169.254.169.254/latest/", "http://0x7f.0.0.1/t", "http://[::1]:5/", "nonsense"] {
            assert!(reach.check_url(realm).is_err(), "{realm}");
        }
    }
}
