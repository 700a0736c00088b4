//! Parsers for the flag syntaxes `spore run` shares with docker and wasmtime. Each error names
//! the flag, repeats what was given, and shows the accepted form.

use spore_sandbox::{AddrRule, Mount, NetworkPolicy};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `--memory 64M`: a byte count with an optional binary unit (K, M, G, with or without `i`/`B`).
pub use spore_sandbox::parse_size;

/// `--timeout 5s`, `--cpu-time 1500ms`: a duration with a unit.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    spore_types::HumanDuration::limit(s).map(spore_types::HumanDuration::get)
}

/// A server's timeout (`--request-timeout 30s`): a duration above zero, printed back as given.
pub fn positive_duration(s: &str) -> Result<spore_types::HumanDuration, String> {
    spore_types::HumanDuration::limit(s)
}

/// `--var KEY=VALUE` (a value is required, unlike `--env KEY`).
pub fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: write KEY=VALUE")),
    }
}

/// `--env K=V` (or `--env K`, which copies the host's value, as docker does).
pub fn parse_env(s: &str) -> Result<(String, String), String> {
    spore_types::env_setting(s, |k| std::env::var(k).ok())
}

/// `--env-file FILE`: `KEY=VALUE` lines; blank lines and `#` comments ignored.
pub fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--env-file {}: {e}", path.display()))?;
    let mut env = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = parse_env(line).map_err(|e| format!("--env-file {} line {}: {e}", path.display(), i + 1))?;
        env.insert(k, v);
    }
    Ok(env)
}

/// `--dir HOST[:GUEST][:ro|:rw]`. GUEST defaults to HOST's path as written; `ro` makes it
/// read-only. Host paths containing `:` are not supported by this syntax. Only the syntax is
/// checked here: the host path is checked where the sandbox runs (this machine for `run`, the
/// daemon's for `deploy`).
pub fn parse_dir(s: &str) -> Result<Mount, String> {
    let mut parts: Vec<&str> = s.split(':').collect();
    let read_only = match parts.last() {
        Some(&"ro") if parts.len() > 1 => {
            parts.pop();
            true
        }
        Some(&"rw") if parts.len() > 1 => {
            parts.pop();
            false
        }
        _ => false,
    };
    let (host, guest) = match parts.as_slice() {
        [host] => (*host, *host),
        [host, guest] => (*host, *guest),
        _ => return Err(format!("{s:?}: write HOST[:GUEST][:ro], e.g. ./data:/data:ro")),
    };
    if host.is_empty() || guest.is_empty() {
        return Err(format!("{s:?}: write HOST[:GUEST][:ro], e.g. ./data:/data:ro"));
    }
    let guest = if guest.starts_with('/') || guest.starts_with('.') { guest.to_owned() } else { format!("/{guest}") };
    Ok(Mount { host: PathBuf::from(host), guest, read_only, pin: None })
}

/// `--net none | allow=RULE,... | listen=RULE,...`, repeatable; later flags add to earlier ones.
pub fn apply_net(policy: &mut NetworkPolicy, s: &str) -> Result<(), String> {
    let rules = |list: &str| -> Result<Vec<AddrRule>, String> {
        list.split(',').filter(|r| !r.is_empty()).map(|r| r.parse::<AddrRule>().map_err(|e| e.to_string())).collect()
    };
    match s.split_once('=') {
        None if s == "none" => *policy = NetworkPolicy::default(),
        Some(("allow", list)) => policy.connect.extend(rules(list)?),
        Some(("listen", list)) => policy.listen.extend(rules(list)?),
        _ => return Err(format!("{s:?}: write none, allow=HOST:PORT,... or listen=ADDR:PORT,...")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("65536").unwrap(), 65536);
        assert!(parse_size("64X").unwrap_err().to_string().contains("64M"));
        assert!(parse_size("0").is_err());
        assert!(parse_size("-1M").is_err());
    }

    #[test]
    fn dirs() {
        let tmp = std::env::temp_dir();
        let t = tmp.to_str().unwrap();
        let m = parse_dir(&format!("{t}:/data:ro")).unwrap();
        assert_eq!((m.guest.as_str(), m.read_only), ("/data", true));
        let m = parse_dir(t).unwrap();
        assert_eq!((m.guest.as_str(), m.read_only), (t, false));
        assert!(parse_dir("a:b:c:d").unwrap_err().contains("HOST[:GUEST][:ro]"));
    }

    #[test]
    fn env() {
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert!(parse_env("=x").unwrap_err().contains("name is empty"));
    }

    #[test]
    fn net() {
        let mut p = NetworkPolicy::default();
        apply_net(&mut p, "allow=127.0.0.1:80,10.0.0.0/8").unwrap();
        apply_net(&mut p, "listen=127.0.0.1:8080").unwrap();
        assert_eq!((p.connect.len(), p.listen.len()), (2, 1));
        apply_net(&mut p, "none").unwrap();
        assert!(p.is_none());
        assert!(apply_net(&mut p, "everything").is_err());
        assert!(apply_net(&mut p, "allow=nohost").unwrap_err().contains("port is required"));
    }
}
