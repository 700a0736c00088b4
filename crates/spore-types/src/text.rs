//! Text from others shown on a terminal or in a log: a guest's output, a registry's error
//! answer. Terminals act on control characters (escape sequences, cursor moves, title changes,
//! a carriage return that overwrites a line, a newline that forges one) and editors on bidi
//! overrides, so such text is shown with those escaped, never obeyed.

use std::borrow::Cow;

/// Whether `c` would be acted on rather than shown: every control character but tab (C0,
/// DEL, C1) and the bidirectional formatting characters.
fn acted_on(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every character a terminal would act on shown as `\xNN` (ASCII) or `\u{NNNN}`.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(acted_on) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if acted_on(c) && (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if acted_on(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.into()
}

/// `text` for one line of a log or message, however long or strange its sender made it:
/// at most `max` characters of it (then `…` and how many bytes were left out), escaped as
/// [`escape_controls`] does. A guest that names a store in 100 MB must not write 100 MB to
/// the host's log each time it is refused.
pub fn shown(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => escape_controls(text).into_owned(),
        Some((cut, _)) => format!("{}… ({} more bytes)", escape_controls(&text[..cut]), text.len() - cut),
    }
}

/// Whether `name` is a plain name, as store labels and device names are: 1–64 ASCII letters,
/// digits, `-` or `_` — safe in a path, a header, a log line.
pub fn plain_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(escape_controls("plain\ttext, ünïcode"), "plain\ttext, ünïcode");
        assert_eq!(escape_controls("\x1b[2J\x1b]0;owned\x07done\r"), "\\x1b[2J\\x1b]0;owned\\x07done\\x0d");
        assert_eq!(escape_controls("\u{9b}31m\x7f"), "\\u{9b}31m\\x7f");
        assert_eq!(escape_controls("ok\nspore: forged line"), "ok\\x0aspore: forged line");
        assert_eq!(escape_controls("abc\u{202e}fed"), "abc\\u{202e}fed");
    }

    #[test]
    fn long_text_is_cut_for_a_line() {
        assert_eq!(shown("short", 8), "short");
        assert_eq!(shown("exactly8", 8), "exactly8");
        assert_eq!(shown("ünïcode text", 3), "ünï… (9 more bytes)");
        assert_eq!(shown("a\nb", 8), "a\\x0ab");
        assert_eq!(shown(&"x".repeat(1 << 20), 4), format!("xxxx… ({} more bytes)", (1 << 20) - 4));
    }
}
