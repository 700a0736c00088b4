#![allow(dead_code)]
//! The shim under real containerd 1.6 (its own config, socket, root and state in a temp dir;
//! the shim's directory on its PATH), driven by `ctr` as an operator would: images built with
//! Spore's image code and pushed to a real registry, pulled by containerd, run with
//! `--runtime io.containerd.spore.v1`.

#[path = "../../../tests/support/peers.rs"]
mod peers;

use peers::{Containerd, Registry};
use spore_image::{CompatImage, ContentStore, Reference, export_layout};
use std::path::{Path, PathBuf};
use std::process::Command;

fn guest(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guests/out").join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|_| panic!("{} is missing: run guests/build.sh", path.display()))
}

/// A directory holding only the shim, for containerd's PATH.
fn shim_dir(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_containerd-shim-spore-v1"), bin.join("containerd-shim-spore-v1")).unwrap();
    bin
}

/// Pushes a compat image (files, entrypoint) to the registry with skopeo from an OCI layout.
fn push(reg: &Registry, work: &Path, name: &str, files: &[(&str, Vec<u8>)], entrypoint: &[&str]) -> String {
    let store = ContentStore::open(&work.join("store")).unwrap();
    let mut image = CompatImage { os: "wasip1".into(), ..Default::default() };
    for (path, bytes) in files {
        image.files.insert((*path).into(), (bytes.clone(), 0o755));
    }
    image.entrypoint = entrypoint.iter().map(|s| s.to_string()).collect();
    let written = image.write(&store).unwrap();
    let reference = format!("{}/shim/{name}:v1", reg.addr);
    let layout = work.join(format!("layout-{name}"));
    export_layout(&store, &reference.parse::<Reference>().unwrap(), written.manifest, &layout).unwrap();
    let out = Command::new("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}", layout.display()))
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo is not installed: run scripts/setup");
    assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));
    reference
}

struct Ran {
    code: i32,
    out: String,
}

fn ctr(c: &Containerd, args: &[&str]) -> Ran {
    let o = c.ctr(args);
    Ran {
        code: o.status.code().unwrap_or(-1),
        out: format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
    }
}

fn pull(c: &Containerd, image: &str) {
    let r = ctr(c, &["images", "pull", "--plain-http", "--platform", "wasip1/wasm", image]);
    assert_eq!(r.code, 0, "pull: {}", r.out);
}

fn run(c: &Containerd, image: &str, id: &str, args: &[&str]) -> Ran {
    let mut all = vec!["run", "--rm", "--platform", "wasip1/wasm", "--runtime", "io.containerd.spore.v1", image, id];
    all.extend_from_slice(args);
    ctr(c, &all)
}

#[test]
fn ctr_runs_spore_images_with_output_exit_codes_kill_and_clear_errors() {
    let work = tempfile::tempdir().unwrap();
    let reg = Registry::start(None);
    let hello = push(&reg, work.path(), "hello", &[("/hello.wasm", guest("hello"))], &["/hello.wasm"]);
    let exit = push(&reg, work.path(), "exit", &[("/bin/exit.wasm", guest("exit-code"))], &["/bin/exit.wasm"]);
    let spin = push(&reg, work.path(), "spin", &[("/spin.wasm", guest("spin"))], &["/spin.wasm"]);
    let broken =
        push(&reg, work.path(), "broken", &[("/app.wasm", b"\0asm\x01\0\0\0\x01\xff".to_vec())], &["/app.wasm"]);
    let missing = push(&reg, work.path(), "missing", &[("/other.wasm", guest("hello"))], &["/app.wasm"]);

    let bin = shim_dir(work.path());
    let c = Containerd::start_with_path(&bin);
    for image in [&hello, &exit, &spin, &broken, &missing] {
        pull(&c, image);
    }

    let r = run(&c, &hello, "hello", &[]);
    assert_eq!((r.code, r.out.trim()), (0, "Hello from Spore!"), "{}", r.out);

    let r = run(&c, &exit, "exit", &["/bin/exit.wasm", "7"]);
    assert_eq!(r.code, 7, "the guest's exit code is the task's: {}", r.out);
    assert!(r.out.contains("exiting with 7"), "{}", r.out);

    // A looping guest: started detached, killed by `ctr task kill`.
    let r = ctr(&c, &["run", "-d", "--platform", "wasip1/wasm", "--runtime", "io.containerd.spore.v1", &spin, "spin"]);
    assert_eq!(r.code, 0, "{}", r.out);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(ctr(&c, &["task", "ls"]).out.contains("RUNNING"), "it spins");
    let r = ctr(&c, &["task", "kill", "-s", "SIGKILL", "spin"]);
    assert_eq!(r.code, 0, "{}", r.out);
    let mut stopped = false;
    for _ in 0..100 {
        if ctr(&c, &["task", "ls"]).out.lines().any(|l| l.starts_with("spin") && l.contains("STOPPED")) {
            stopped = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(stopped, "killed: {}", ctr(&c, &["task", "ls"]).out);
    ctr(&c, &["task", "delete", "spin"]);
    ctr(&c, &["container", "delete", "spin"]);

    // Bad images fail the task (125, as `spore run`) with the reason on its stderr.
    let r = run(&c, &broken, "broken", &[]);
    assert_eq!(r.code, 125, "{}", r.out);
    assert!(r.out.contains("/app.wasm does not compile"), "{}", r.out);
    let r = run(&c, &missing, "missing", &[]);
    assert_eq!(r.code, 125, "{}", r.out);
    assert!(r.out.contains("no wasm entrypoint: looked for /app.wasm"), "{}", r.out);
}
