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
}
