//! Any text is a Sporefile or a `ParseError` naming a line — never a panic or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Err(e) = spore_build::Sporefile::parse(text) {
        let _ = e.to_string();
    }
});
