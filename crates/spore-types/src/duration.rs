//! Durations as a flag or a config file gives them (`30s`, `"1h 30m"`, `500ms`), through
//! humantime, printed back in a form that parses to the same duration.

use std::time::Duration;

/// A duration written for people. In TOML and JSON it is a string (`"30s"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// A limit as a flag gives it (`--timeout 5s`): a duration above zero, since a limit of
    /// zero would stop the guest before it starts.
    pub fn limit(s: &str) -> Result<HumanDuration, String> {
        let d = s.parse::<HumanDuration>().map_err(|e| e.to_string())?;
        match d.0.is_zero() {
            true => Err(format!("{s:?}: a limit of zero would stop the guest before it starts")),
            false => Ok(d),
        }
    }

    /// The duration in whole milliseconds (at least 1 for any duration above zero), as limits
    /// keep it.
    pub fn millis(self) -> u64 {
        let ms = self.0.as_millis().min(u64::MAX as u128) as u64;
        if ms == 0 && !self.0.is_zero() { 1 } else { ms }
    }
}

/// Text that is not a duration; its message repeats it and shows the accepted forms.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{text:?} is not a duration ({source}); write e.g. 500ms, 30s, 10m or 1h")]
pub struct DurationError {
    text: String,
    source: humantime::DurationError,
}

impl std::str::FromStr for HumanDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, DurationError> {
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|source| DurationError { text: s.to_owned(), source })
    }
}

impl std::fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.is_zero() {
            true => f.write_str("0s"),
            false => write!(f, "{}", humantime::format_duration(self.0)),
        }
    }
}

impl serde::Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_prints_what_parses_back() {
        for text in ["30s", "1h 30m", "500ms", "0s", "1day"] {
            let d: HumanDuration = text.parse().unwrap();
            assert_eq!(d.to_string().parse::<HumanDuration>().unwrap(), d, "{text}");
        }
        assert_eq!("10m".parse::<HumanDuration>().unwrap().millis(), 600_000);
        assert_eq!(HumanDuration(Duration::from_micros(10)).millis(), 1, "never rounded to no limit");
        assert!("soon".parse::<HumanDuration>().unwrap_err().to_string().contains("write e.g. 500ms"));
        #[derive(serde::Deserialize)]
        struct Config {
            t: HumanDuration,
        }
        assert_eq!(toml::from_str::<Config>("t = \"2s\"").unwrap().t.get(), Duration::from_secs(2));
        assert!(toml::from_str::<Config>("t = \"2 fortnights\"").is_err());
    }
}
