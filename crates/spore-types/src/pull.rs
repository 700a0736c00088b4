//! When an image is fetched from its registry: the `--pull` of `spore run`, `deploy` and the
//! daemon's creates, as Docker's `--pull` reads.

use serde::{Deserialize, Serialize};

/// When `run`, `deploy` and the daemon fetch an image from its registry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Only when the local store does not have it.
    #[default]
    Missing,
    /// Every time (picks up a moved tag).
    Always,
    /// Never: the image must be in the local store.
    Never,
}

impl std::str::FromStr for PullPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "missing" => Ok(PullPolicy::Missing),
            "always" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            other => Err(format!("pull policy {other:?}: write missing, always or never")),
        }
    }
}
