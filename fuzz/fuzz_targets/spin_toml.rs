//! Any text read as a Spin-style manifest is a manifest or an error naming the file — never a
//! panic — and an accepted manifest mounts nothing from outside the app's directory, however
//! its `files` spell the path (the directory holds a link that leads out, and one that does not).
#![no_main]
use libfuzzer_sys::fuzz_target;
use spore_app::manifest;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::LazyLock;

/// The app's directory: `static/` (a directory), `hello.wasm`, `escape` → `/etc`, `inner` → `static`.
static APP: LazyLock<(tempfile::TempDir, PathBuf)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("static")).expect("static");
    std::fs::write(dir.path().join("hello.wasm"), b"\0asm").expect("wasm");
    std::os::unix::fs::symlink("/etc", dir.path().join("escape")).expect("escape");
    std::os::unix::fs::symlink("static", dir.path().join("inner")).expect("inner");
    let real = dir.path().canonicalize().expect("canonical");
    (dir, real)
});

fuzz_target!(|text: &str| {
    let (dir, root) = &*APP;
    let given = manifest::Given {
        flags: BTreeMap::from([("greeting".to_owned(), "hi".to_owned())]),
        environment: BTreeMap::from([("api_key".to_owned(), "k".to_owned())]),
    };
    let Ok(m) = manifest::parse(text, "spin.toml", dir.path(), &given) else { return };
    for c in m.components.values() {
        // Mounted directories and files to copy alike: none from outside the app's directory.
        let (manifest::Files::Mounts(taken) | manifest::Files::Staged(taken)) = &c.files;
        for (host, _) in taken {
            if let Ok(real) = host.canonicalize() {
                assert!(real.starts_with(root), "a manifest took {} from outside its directory", real.display());
            }
        }
    }
});
