//! Any text is an image reference or a `ReferenceError`; a reference's normal form parses back
//! to the same reference.
#![no_main]
use libfuzzer_sys::fuzz_target;
use spore_image::Reference;

fuzz_target!(|text: &str| {
    if let Ok(r) = text.parse::<Reference>() {
        let again: Reference = r.to_string().parse().expect("a reference's normal form parses");
        assert_eq!(again, r, "{text:?} → {r} → {again}");
    }
});
