//! An environment setting as a command line gives it: `-e KEY=VALUE`, or `-e KEY` for the
//! caller's own value, as `docker run -e` has it.

/// `KEY=VALUE`, or `KEY` alone with `lookup(KEY)` as its value (empty when unset). A name that
/// is empty or holds a NUL is refused: no environment can carry it.
pub fn env_setting(s: &str, lookup: impl FnOnce(&str) -> Option<String>) -> Result<(String, String), String> {
    let (k, v) = match s.split_once('=') {
        Some((k, v)) => (k.to_owned(), v.to_owned()),
        None => (s.to_owned(), lookup(s).unwrap_or_default()),
    };
    if k.is_empty() || k.contains('\0') {
        return Err(format!("{s:?} is not KEY=VALUE (or KEY, to copy this shell's): the name is empty or holds a NUL"));
    }
    Ok((k, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_is_key_value_or_a_key_to_copy() {
        let home = |k: &str| (k == "HOME").then(|| "/home/x".to_owned());
        assert_eq!(env_setting("A=1=2", home), Ok(("A".into(), "1=2".into())));
        assert_eq!(env_setting("HOME", home), Ok(("HOME".into(), "/home/x".into())));
        assert_eq!(env_setting("UNSET", home), Ok(("UNSET".into(), String::new())));
        for bad in ["=1", "", "A\0B=1"] {
            assert!(env_setting(bad, home).unwrap_err().contains("the name is empty or holds a NUL"), "{bad:?}");
        }
    }
}
