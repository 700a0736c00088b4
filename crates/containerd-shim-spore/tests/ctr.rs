#![allow(dead_code)]
//! The shim under real containerd 1.6 (its own config, socket, root and state in a temp dir;
//! the shim's directory on its PATH), driven by `ctr` as an operator would: images built with
//! Spore's image code and pushed to a real registry, pulled by containerd, run with
//! `--runtime io.containerd.spore.v1`.

mod support;

use support::peers::{Containerd, Registry};
use support::{Image, guest, shim_dir};

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
    let push = |image: Image| image.push(&reg, work.path());
    let hello = push(Image::wasm("hello", "/hello.wasm", guest("hello"), &["/hello.wasm"]));
    let exit = push(Image::wasm("exit", "/bin/exit.wasm", guest("exit-code"), &["/bin/exit.wasm"]));
    let spin = push(Image::wasm("spin", "/spin.wasm", guest("spin"), &["/spin.wasm"]));
    let broken = push(Image::wasm("broken", "/app.wasm", b"\0asm\x01\0\0\0\x01\xff".to_vec(), &["/app.wasm"]));
    let missing = push(Image::wasm("missing", "/other.wasm", guest("hello"), &["/app.wasm"]));

    let bin = shim_dir(work.path(), env!("CARGO_BIN_EXE_containerd-shim-spore-v1").as_ref());
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
