//! Any text read as a runtime config is a set of store declarations or an error naming the
//! file — never a panic — and the declarations always hold exactly one `default` store.
#![no_main]
use libfuzzer_sys::fuzz_target;
use spore_app::runtime_config;
use std::path::Path;

fuzz_target!(|text: &str| {
    if let Ok(d) = runtime_config::parse(text, "runtime-config.toml", Path::new("base")) {
        assert_eq!(d.stores.iter().filter(|s| s.name == "default").count(), 1);
    }
});
