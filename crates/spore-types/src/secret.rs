//! Comparing secrets (bearer tokens) given by a peer, for every front door that takes one.

/// The fewest characters a bearer token may have, for every front door that takes one: a
/// short one could be guessed (one guess per connection) by anyone who can reach the port.
pub const MIN_TOKEN_LEN: usize = 16;

/// Refuses a token shorter than [`MIN_TOKEN_LEN`], naming where it came from.
pub fn check_token(token: &str, from: &str) -> Result<(), String> {
    match token.chars().count() {
        0 => Err(format!("{from}: the file is empty; put a token of at least {MIN_TOKEN_LEN} characters in it")),
        n if n < MIN_TOKEN_LEN => Err(format!(
            "{from}: the token must be at least {MIN_TOKEN_LEN} characters (e.g. `head -c 24 /dev/urandom | base64`)"
        )),
        _ => Ok(()),
    }
}

/// Whether `a` and `b` are equal, in time that does not depend on where they first differ, so
/// a peer guessing a token learns nothing from how long a refusal takes.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn equal_only_when_every_byte_and_the_length_are() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(constant_time_eq(b"", b""));
    }
}
