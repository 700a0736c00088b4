//! Plugins written in C against `include/spore_plugin.h`, compiled by the system's C compiler
//! here: a sound one is loaded and called, each unsound one refused by name at load.

use spore_plugin::{AGAIN, Plugin};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A counter device: `add(ptr, n)` adds the i64 `n` to the i64 at `ptr` in the app's memory;
/// `take()` answers SPORE_AGAIN once, then how many adds there were.
const COUNTER: &str = r#"
#include <stdlib.h>
#include <string.h>
#include "spore_plugin.h"

typedef struct { int adds; int asked; } counter;

static int32_t add(void *state, uint8_t *memory, size_t memory_len, const uint64_t *args) {
    uint32_t ptr = (uint32_t)args[0];
    if ((uint64_t)ptr + 8 > memory_len) return -21;
    int64_t value;
    memcpy(&value, memory + ptr, 8);
    value += (int64_t)args[1];
    memcpy(memory + ptr, &value, 8);
    return ++((counter *)state)->adds;
}

static int32_t take(void *state, uint8_t *memory, size_t memory_len, const uint64_t *args) {
    counter *c = state;
    return c->asked++ == 0 ? SPORE_AGAIN : c->adds;
}

static const spore_function functions[] = {{"add", "iI", add}, {"take", "", take}};

static void *open_counter(const char *config, char *error, size_t error_len) {
    if (strcmp(config, "fail") == 0) {
        strncpy(error, "the counter is unplugged", error_len);
        return NULL;
    }
    return calloc(1, sizeof(counter));
}

static void close_counter(void *state) { free(state); }

static const spore_plugin plugin = {
    ABI, "spore:test/counter@0.1", functions, FUNCTIONS, open_counter, close_counter,
};

const spore_plugin *spore_plugin_v1(void) { return &plugin; }
"#;

/// Compiles `source` with `defines` into a shared library in `dir`.
fn compile(dir: &Path, name: &str, source: &str, defines: &[&str]) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, source).unwrap();
    let so = dir.join(format!("lib{name}.so"));
    let include = Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("include");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-Wall", "-o"])
        .arg(&so)
        .arg("-I")
        .arg(include)
        .args(defines.iter().map(|d| format!("-D{d}")))
        .arg(&c)
        .status()
        .expect("a C compiler (cc)");
    assert!(status.success(), "{name} did not compile");
    so
}

/// The counter plugin, declaring ABI `abi`.
fn counter(dir: &Path, name: &str, abi: &str) -> PathBuf {
    compile(dir, name, COUNTER, &[&format!("ABI={abi}"), "FUNCTIONS=2"])
}

#[test]
fn a_sound_plugin_is_loaded_and_its_functions_called_with_the_apps_memory() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = Plugin::load("counter", &counter(dir.path(), "counter", "SPORE_PLUGIN_ABI"), "").unwrap();
    assert_eq!((plugin.name(), plugin.interface()), ("counter", "spore:test/counter@0.1"));
    let signatures: Vec<String> = plugin.functions().iter().map(|f| format!("{} {}", f.name, f.signature())).collect();
    assert_eq!(signatures, ["add (i32, i64) -> i32", "take () -> i32"]);
    let mut memory = vec![0u8; 64];
    memory[8..16].copy_from_slice(&40i64.to_le_bytes());
    assert_eq!(plugin.call(0, &mut memory, &[8, 2]), 1);
    assert_eq!(i64::from_le_bytes(memory[8..16].try_into().unwrap()), 42);
    assert_eq!(plugin.call(0, &mut memory, &[60, 1]), -21, "the plugin checks the app's memory");
    assert_eq!(plugin.call(1, &mut memory, &[]), AGAIN);
    assert_eq!(plugin.call(1, &mut memory, &[]), 1, "one add went through");
}

#[test]
fn an_unsound_plugin_is_refused_at_load_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |path: &Path, config: &str| Plugin::load("dev", path, config).unwrap_err().to_string();
    let text = dir.path().join("notes.so");
    std::fs::write(&text, "not a library").unwrap();
    assert!(refused(&text, "").contains("cannot load it"), "{}", refused(&text, ""));
    let none = compile(dir.path(), "none", "int nothing_here(void) { return 0; }", &[]);
    assert!(refused(&none, "").contains("exports no spore_plugin_v1: not a Spore plugin"));
    let future = counter(dir.path(), "future", "2");
    assert!(refused(&future, "").contains("built for plugin ABI 2; this runner loads ABI 1"));
    let bad = compile(dir.path(), "bad", &COUNTER.replace("\"iI\"", "\"if\""), &["ABI=1", "FUNCTIONS=2"]);
    let message = refused(&bad, "");
    assert!(message.contains("function add has parameters \"if\": 'f' is not 'i' (i32) or 'I' (i64)"), "{message}");
    let twice = compile(
        dir.path(),
        "twice",
        &COUNTER.replace("{\"take\", \"\", take}", "{\"add\", \"\", take}"),
        &["ABI=1", "FUNCTIONS=2"],
    );
    assert!(refused(&twice, "").contains("declares add twice"));
    let wasi = compile(
        dir.path(),
        "wasi",
        &COUNTER.replace("spore:test/counter@0.1", "wasi_snapshot_preview1"),
        &["ABI=1", "FUNCTIONS=2"],
    );
    assert!(refused(&wasi, "").contains("no plugin may: name its own interface"));
    let good = counter(dir.path(), "good", "SPORE_PLUGIN_ABI");
    let message = refused(&good, "fail");
    assert!(message.starts_with("plugin dev ("), "{message}");
    assert!(message.ends_with("its device did not open with \"fail\": the counter is unplugged"), "{message}");
}

#[test]
fn one_host_has_one_device_a_name_and_an_interface() {
    let dir = tempfile::tempdir().unwrap();
    let library = counter(dir.path(), "counter", "SPORE_PLUGIN_ABI");
    let first = std::sync::Arc::new(Plugin::load("counter", &library, "").unwrap());
    let again = Plugin::load("counter", &library, "").unwrap();
    let loaded = [first];
    assert_eq!(spore_plugin::conflict(&loaded, &again).unwrap(), "a device named counter is loaded already");
    let other = Plugin::load("counter2", &library, "").unwrap();
    assert_eq!(
        spore_plugin::conflict(&loaded, &other).unwrap(),
        "counter serves spore:test/counter@0.1 already; a host has one device an interface"
    );
    let dotted = Plugin::load("a.b", &library, "").unwrap();
    assert!(spore_plugin::conflict(&[], &dotted).unwrap().contains("is not a device name"));
    assert_eq!(spore_plugin::conflict(&[], &other), None);
}
