//! Sizes as people write and read them: `--memory 64M`, `max_bytes = "1G"`, "64 MiB" in a
//! message. Binary units throughout, so what a flag takes is what a message prints.

/// Parses a size as users write it for `--memory` and in config files: `64M`, `512K`, `1G`,
/// `64MiB` or a byte count (binary units). The error shows the accepted forms.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a size; write e.g. 64M, 512K, 1G or a byte count");
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

#[cfg(test)]
mod tests {
    use super::*;

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
            assert!(parse_size(bad).unwrap_err().contains("is not a size"), "{bad}");
        }
    }
}
