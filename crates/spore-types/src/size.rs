//! Sizes as people write and read them: `--memory 64M`, `max_bytes = "1G"`, "64 MiB" in a
//! message. Binary units throughout, so what a flag takes is what a message prints.

/// Text that is not a size; its message repeats it and shows the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a size; write e.g. 64M, 512K, 1G or a byte count")]
pub struct SizeError(pub String);

/// Parses a size as users write it for `--memory` and in config files: `64M`, `512K`, `1G`,
/// `64MiB` or a byte count (binary units).
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let bad = || SizeError(s.to_owned());
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: u64 = num.parse().map_err(|_| bad())?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "ki" | "kib" => 10,
        "m" | "mb" | "mi" | "mib" => 20,
        "g" | "gb" | "gi" | "gib" => 30,
        _ => return Err(bad()),
    };
    num.checked_mul(1 << shift).filter(|&n| n > 0).ok_or_else(bad)
}

/// Human-readable bytes for limit messages (binary units, as `--memory` takes them).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A size in bytes as a flag or a config file gives it (`64M`, `"1G"`, `4096`), printed back
/// in a form that parses to the same number (`64M`). In TOML and JSON it is a string or a
/// plain byte count; zero is not a size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The number of bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl std::str::FromStr for ByteSize {
    type Err = SizeError;
    fn from_str(s: &str) -> Result<Self, SizeError> {
        parse_size(s).map(ByteSize)
    }
}

impl std::fmt::Display for ByteSize {
    /// The largest unit that divides it exactly, so the text parses back to the same size.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0;
        match [(30, "G"), (20, "M"), (10, "K")].into_iter().find(|&(shift, _)| n != 0 && n.is_multiple_of(1 << shift)) {
            Some((shift, unit)) => write!(f, "{}{unit}", n >> shift),
            None => write!(f, "{n}"),
        }
    }
}

impl serde::Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size such as \"64M\", \"512K\", \"1G\" or a byte count")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                match v {
                    0 => Err(E::custom("0 is not a size")),
                    v => Ok(ByteSize(v)),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v).map_err(|_| E::custom(format!("{v} is not a size"))).and_then(|v| self.visit_u64(v))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_size_prints_what_parses_back_and_reads_strings_and_counts() {
        for (text, n) in
            [("64M", 64 << 20), ("1G", 1 << 30), ("512K", 512 << 10), ("1000", 1000), ("1536K", 1536 << 10)]
        {
            let size: ByteSize = text.parse().unwrap();
            assert_eq!((size.bytes(), size.to_string()), (n, text.to_owned()));
        }
        #[derive(serde::Deserialize)]
        struct Config {
            a: ByteSize,
            b: ByteSize,
        }
        let c: Config = toml::from_str("a = \"2M\"\nb = 4096").unwrap();
        assert_eq!((c.a, c.b), (ByteSize(2 << 20), ByteSize(4096)));
        for bad in ["a = \"lots\"", "a = 0", "a = -1", "a = 1.5"] {
            let err = toml::from_str::<Config>(&format!("{bad}\nb = 1")).err().unwrap().to_string();
            assert!(err.contains("a"), "{bad}: {err}");
        }
    }

    #[test]
    fn human_bytes_reads_like_the_flag() {
        assert_eq!(human_bytes(64 << 20), "64 MiB");
        assert_eq!(human_bytes(1536 << 10), "1.5 MiB");
        assert_eq!(human_bytes(100), "100 B");
    }

    #[test]
    fn sizes_parse_in_every_written_form_and_zero_or_overflow_is_refused() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size(" 512k "), Ok(512 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1234"), Ok(1234));
        for bad in ["", "0", "M", "1T", "-1", "99999999999999999999G", "1.5M"] {
            assert!(parse_size(bad).unwrap_err().to_string().contains("is not a size"), "{bad}");
        }
    }
}
