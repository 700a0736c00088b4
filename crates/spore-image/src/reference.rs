//! Image references as docker, podman and containerd write them:
//! `[REGISTRY[:PORT]/]REPOSITORY[:TAG][@sha256:DIGEST]`, normalised the same way (no registry
//! means `docker.io`, a one-part Docker Hub repository means `library/NAME`, no tag or digest
//! means `:latest`), so a name means the same image in every tool.

use spore_types::Digest;
use std::fmt;

/// The registry assumed when a reference names none.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, with its port when one was given.
    pub registry: String,
    /// Repository path inside the registry.
    pub repository: String,
    /// Tag, when given (or defaulted).
    pub tag: Option<String>,
    /// Digest, when pinned.
    pub digest: Option<Digest>,
}

/// A reference that does not follow the grammar; the message says which part and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image reference {reference:?}: {problem}")]
pub struct ReferenceError {
    reference: String,
    problem: String,
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, ReferenceError> {
        let err = |problem: &str| ReferenceError { reference: s.to_owned(), problem: problem.to_owned() };
        if s.is_empty() || s.len() > 4096 {
            return Err(err("it is empty or too long"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (
                rest,
                Some(Digest::parse(d).ok_or_else(|| err("the digest must be sha256:<64 lowercase hex digits>"))?),
            ),
            None => (s, None),
        };
        // A ':' after the last '/' starts the tag; one before it belongs to a registry port.
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(tag) = tag {
            let ok = !tag.is_empty()
                && tag.len() <= 128
                && tag.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !ok {
                return Err(err(
                    "the tag must be 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
                ));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_owned(), path.to_owned())
            }
            _ => (DEFAULT_REGISTRY.to_owned(), name.to_owned()),
        };
        if registry.is_empty()
            || !registry.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        {
            return Err(err("the registry must be a host name or address, with an optional :port"));
        }
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
                && c.ends_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
                && c.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-'))
        };
        if repository.is_empty() || !repository.split('/').all(component_ok) {
            return Err(err(
                "the repository must be lowercase letters, digits and '.', '_', '-' between '/'-separated parts",
            ));
        }
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some("latest".to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Reference { registry, repository, tag, digest })
    }
}

impl fmt::Display for Reference {
    /// The full, normalised form: `docker.io/library/hello:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        s.parse::<Reference>().unwrap_or_else(|e| panic!("{e}")).to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("hello"), "docker.io/library/hello:latest");
        assert_eq!(norm("hello:1.0"), "docker.io/library/hello:1.0");
        assert_eq!(norm("acme/app"), "docker.io/acme/app:latest");
        assert_eq!(norm("localhost:5000/app:v2"), "localhost:5000/app:v2");
        assert_eq!(norm("ghcr.io/org/team/app"), "ghcr.io/org/team/app:latest");
        assert_eq!(norm("127.0.0.1:5000/a/b:c"), "127.0.0.1:5000/a/b:c");
        let d = Digest::of(b"x");
        assert_eq!(norm(&format!("app@{d}")), format!("docker.io/library/app@{d}"));
        assert_eq!(norm(&format!("app:v1@{d}")), format!("docker.io/library/app:v1@{d}"));
    }

    #[test]
    fn names_the_part_that_is_wrong() {
        for (bad, part) in [
            ("", "empty"),
            ("Hello", "repository"),
            ("app:", "tag"),
            ("app:-x", "tag"),
            ("app@sha256:abc", "digest"),
            ("ghcr.io//app", "repository"),
            ("reg.io/App/x", "repository"),
        ] {
            let err = bad.parse::<Reference>().unwrap_err().to_string();
            assert!(err.contains(part), "{bad}: {err}");
        }
    }
}
