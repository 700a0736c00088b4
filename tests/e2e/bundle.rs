//! `spore bundle`: an image as one executable, run where Spore is not installed — copied to an
//! empty directory, started with a clean environment and a home of its own, which must stay
//! empty (no cache, no store, nothing written).

use crate::support::{RunSeen, Seen, guest, spore};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A store of its own, an image built in it from `sporefile` and `files` (name, source path).
struct Built {
    dir: tempfile::TempDir,
}

impl Built {
    fn new(tag: &str, sporefile: &str, files: &[(&str, PathBuf)]) -> Built {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        for (name, from) in files {
            let to = ctx.join(name);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(from, to).unwrap();
        }
        std::fs::write(ctx.join("Sporefile"), sporefile).unwrap();
        let built = Built { dir };
        let seen = built.spore(&["build", "-t", tag, ctx.to_str().unwrap()]);
        assert_eq!(seen.code, 0, "{seen:?}");
        built
    }

    fn spore(&self, args: &[&str]) -> Seen {
        spore().env("SPORE_STORE", self.dir.path().join("store")).args(args).seen()
    }

    /// `spore bundle IMAGE -o <dir>/NAME EXTRA…`, which must succeed.
    fn bundle(&self, image: &str, name: &str, extra: &[&str]) -> PathBuf {
        let out = self.dir.path().join(name);
        let mut args = vec!["bundle", image, "-o", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let seen = self.spore(&args);
        assert_eq!(seen.code, 0, "{seen:?}");
        assert!(seen.stderr.contains(&format!("Bundled {image}")), "{seen:?}");
        out
    }
}

/// A machine without Spore: an empty directory holding only the bundle, and an empty home.
struct Elsewhere {
    dir: tempfile::TempDir,
    bundle: PathBuf,
}

impl Elsewhere {
    fn with(bundle: &Path) -> Elsewhere {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        let copy = dir.path().join("app");
        std::fs::copy(bundle, &copy).unwrap();
        Elsewhere { dir, bundle: copy }
    }

    /// `./app ARGS` with nothing of this machine's environment but a home of its own.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bundle);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("HOME", self.dir.path().join("home"))
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Seen {
        self.command(args).seen()
    }

    /// Everything in the directory and the home besides the bundle.
    fn left_behind(&self) -> Vec<String> {
        let mut found: Vec<String> = walk(self.dir.path()).into_iter().filter(|p| !p.ends_with("/app")).collect();
        found.retain(|p| !p.ends_with("/home"));
        found
    }
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.push(path.display().to_string());
        if path.is_dir() {
            out.extend(walk(&path));
        }
    }
    out
}

const FS_IMAGE: &str = "FROM scratch\nCOPY fs.wasm /bin/fs.wasm\nCOPY data /data\nENV GREETING=hi\n\
                        ENTRYPOINT [\"/bin/fs.wasm\"]\nCMD [\"ls\", \"/data\"]\n";

fn fs_image() -> Built {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("hello.txt"), "hello from the image\n").unwrap();
    std::fs::write(data.path().join("notes.md"), "# notes\n").unwrap();
    Built::new(
        "fs",
        FS_IMAGE,
        &[
            ("fs.wasm", guest("fs")),
            ("data/hello.txt", data.path().join("hello.txt")),
            ("data/nested/notes.md", data.path().join("notes.md")),
        ],
    )
}

/// The image's files are the bundle's read-only `/`; its Cmd runs when no arguments are given
/// and arguments replace it; stdin is the process's; nothing is written anywhere.
#[test]
fn a_bundle_runs_its_image_with_its_files_where_spore_is_not_installed() {
    let built = fs_image();
    let bundle = built.bundle("fs", "fs-bundle", &[]);
    let there = Elsewhere::with(&bundle);

    let seen = there.run(&[]);
    assert_eq!((seen.code, seen.stdout.as_str()), (0, "hello.txt\nnested\n"), "the image's Cmd: {seen:?}");
    let seen = there.run(&["cat", "/data/nested/notes.md"]);
    assert_eq!((seen.code, seen.stdout.as_str()), (0, "# notes\n"), "{seen:?}");
    let seen = there.run(&["cat", "data/hello.txt"]);
    assert_eq!(seen.stdout, "hello from the image\n", "a relative path is from /: {seen:?}");
    let seen = there.run(&["ls", "/bin"]);
    assert_eq!((seen.code, seen.stdout.as_str()), (0, ""), "the entrypoint is held compiled, not as a file: {seen:?}");

    let seen = there.run(&["write", "/data/hello.txt", "changed"]);
    assert_eq!(seen.code, 1, "{seen:?}");
    assert!(seen.stderr.contains("Read-only file system"), "{seen:?}");
    let seen = there.run(&["cat", "/../../etc/passwd"]);
    assert_eq!(seen.code, 1, "nothing of the host is reachable: {seen:?}");

    let mut child = there.command(&["stdin"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"typed in\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "stdin: typed in\n");

    // --spore-timeout holds while the app waits on a stdin nobody writes to (a host call the
    // engine cannot interrupt): the process ends as any timeout does.
    let mut child = there
        .command(&["stdin", "--spore-timeout", "1s"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _held_open = child.stdin.take();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if child.try_wait().unwrap().is_none() {
        child.kill().unwrap();
        panic!("the bundle waited on stdin past --spore-timeout 1s");
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("wall-clock limit of 1000 ms (raise it with --spore-timeout)"), "{said}");

    // Where /proc is not mounted (a mount namespace without it), the bundle finds itself by
    // the path it was started by, or in PATH, rather than start as a plain runner.
    let script = r#"umount -l /proc && [ ! -e /proc/self/exe ] && "$0" cat /data/hello.txt && PATH="${0%/*}" app cat /data/hello.txt"#;
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(&there.bundle)
        .current_dir(there.dir.path())
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from the image\n".repeat(2), "{out:?}");

    assert_eq!(there.left_behind(), Vec::<String>::new(), "a bundle writes nothing");
    let info = there.run(&["--spore-info"]);
    assert_eq!(info.code, 0, "{info:?}");
    assert!(info.stdout.contains("image:      fs") && info.stdout.contains("files:"), "{info:?}");
}

/// Argument and environment as `spore run IMAGE ARGS` has them: the image's Env, then the
/// bundle's `-e`, then `--spore-env`; the bundle's own flags taken out wherever they are.
#[test]
fn a_bundle_passes_the_apps_arguments_through_and_takes_its_own_flags_out() {
    let sporefile = "FROM scratch\nCOPY args-env.wasm /args-env.wasm\nENV GREETING=hi MODE=image\n\
                     ENTRYPOINT [\"/args-env.wasm\", \"--fixed\"]\nCMD [\"default\"]\n";
    let built = Built::new("args", sporefile, &[("args-env.wasm", guest("args-env"))]);
    let there = Elsewhere::with(&built.bundle("args", "args", &["-e", "MODE=bundle", "-e", "EXTRA=1"]));
    let seen = there.run(&[]);
    assert_eq!(
        seen.stdout,
        "arg[0]=/args-env.wasm\narg[1]=--fixed\narg[2]=default\nenv EXTRA=1\nenv GREETING=hi\nenv MODE=bundle\n",
        "{seen:?}"
    );
    let seen = there.run(&["-v", "--spore-env", "MODE=flag", "--name=x", "--spore-memory=32M", "--", "--spore-"]);
    assert_eq!(seen.code, 125, "an argument with the reserved prefix is the bundle's: {seen:?}");
    let seen = there.run(&["-v", "--spore-env", "MODE=flag", "--name=x", "--spore-memory=32M", "--"]);
    assert_eq!(
        seen.stdout,
        "arg[0]=/args-env.wasm\narg[1]=--fixed\narg[2]=-v\narg[3]=--name=x\narg[4]=--\nenv EXTRA=1\nenv GREETING=hi\nenv MODE=flag\n",
        "{seen:?}"
    );
}

/// Exit codes and limits are `spore run`'s, under the reserved flags.
#[test]
fn a_bundle_exits_as_spore_run_does_and_keeps_its_limits() {
    let built = Built::new(
        "exit",
        "FROM scratch\nCOPY exit-code.wasm /exit-code.wasm\nENTRYPOINT [\"/exit-code.wasm\"]\n",
        &[("exit-code.wasm", guest("exit-code"))],
    );
    let exit = Elsewhere::with(&built.bundle("exit", "exit", &[]));
    let seen = exit.run(&["7"]);
    assert_eq!((seen.code, seen.stdout.as_str()), (7, "exiting with 7\n"), "{seen:?}");

    let trap = Built::new(
        "trap",
        "FROM scratch\nCOPY trap.wasm /trap.wasm\nENTRYPOINT [\"/trap.wasm\"]\n",
        &[("trap.wasm", guest("trap"))],
    );
    let seen = Elsewhere::with(&trap.bundle("trap", "trap", &[])).run(&[]);
    assert_eq!(seen.code, 134, "{seen:?}");
    assert!(seen.stderr.contains("/trap.wasm: the guest trapped"), "{seen:?}");

    let bomb = Built::new(
        "bomb",
        "FROM scratch\nCOPY membomb.wasm /membomb.wasm\nENTRYPOINT [\"/membomb.wasm\"]\n",
        &[("membomb.wasm", guest("membomb"))],
    );
    let there = Elsewhere::with(&bomb.bundle("bomb", "bomb", &["--memory", "512M"]));
    let seen = there.run(&["--spore-memory", "16M"]);
    assert_eq!(seen.code, 137, "{seen:?}");
    assert!(seen.stderr.contains("raise it with --spore-memory"), "{seen:?}");
    assert!(seen.stderr.contains("16777216 bytes"), "the flag's limit, not the bundle's: {seen:?}");
    let seen = there.run(&[]);
    assert_eq!(seen.code, 137, "{seen:?}");
    assert!(seen.stderr.contains("536870912 bytes"), "the limit given to spore bundle: {seen:?}");
}

/// A reserved flag that is malformed or unknown is refused by name before anything runs.
#[test]
fn a_bundle_refuses_a_malformed_reserved_flag_and_runs_nothing() {
    let built = Built::new(
        "exit",
        "FROM scratch\nCOPY exit-code.wasm /exit-code.wasm\nENTRYPOINT [\"/exit-code.wasm\"]\n",
        &[("exit-code.wasm", guest("exit-code"))],
    );
    let there = Elsewhere::with(&built.bundle("exit", "exit", &[]));
    for (args, says) in [
        (&["--spore-memory", "lots"][..], "--spore-memory lots"),
        (&["3", "--spore-timeout"][..], "--spore-timeout needs a value"),
        (&["--spore-cpu-time=0s"][..], "a limit of zero"),
        (&["--spore-dir", "/tmp"][..], "--spore-dir: not a flag of this bundle"),
    ] {
        let seen = there.run(args);
        assert_eq!(seen.code, 125, "{args:?}: {seen:?}");
        assert!(seen.stderr.contains(says), "{args:?}: {seen:?}");
        assert_eq!(seen.stdout, "", "the app did not run: {seen:?}");
    }
    let help = there.run(&["--spore-help"]);
    assert_eq!(help.code, 0, "{help:?}");
    assert!(help.stdout.contains("--spore-memory SIZE"), "{help:?}");
}

/// A target without a runtime, a runtime for another machine, a component: each refused with
/// what to do, and no file written.
#[test]
fn spore_bundle_refuses_what_it_cannot_make_and_writes_nothing() {
    let built = Built::new(
        "exit",
        "FROM scratch\nCOPY e.wasm /e.wasm\nENTRYPOINT [\"/e.wasm\"]\n",
        &[("e.wasm", guest("exit-code"))],
    );
    let out = built.dir.path().join("out");
    let o = out.to_str().unwrap();
    let seen = built.spore(&["bundle", "exit", "-o", o, "--target", "aarch64-unknown-linux-gnu"]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(
        seen.stderr.contains("no runtime for aarch64-unknown-linux-gnu")
            && seen.stderr.contains("--target aarch64-unknown-linux-gnu")
            && seen.stderr.contains("--runtime FILE"),
        "{seen:?}"
    );
    let native_runtime = Path::new(env!("CARGO_BIN_EXE_spore")).with_file_name("spore-runner");
    let seen = built.spore(&[
        "bundle",
        "exit",
        "-o",
        o,
        "--target",
        "aarch64-unknown-linux-gnu",
        "--runtime",
        native_runtime.to_str().unwrap(),
    ]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("is for another machine"), "{seen:?}");
    let seen = built.spore(&["bundle", "exit", "-o", o, "--target", "mips-unknown-linux-gnu"]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("--target mips-unknown-linux-gnu"), "{seen:?}");
    let seen = built.spore(&["bundle", "exit", "-o", o, "--runtime", guest("hello").to_str().unwrap()]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("not an executable"), "{seen:?}");
    let bundle = built.bundle("exit", "already", &[]);
    let seen = built.spore(&["bundle", "exit", "-o", o, "--runtime", bundle.to_str().unwrap()]);
    assert!(seen.code == 125 && seen.stderr.contains("is a bundle already"), "{seen:?}");

    let p2 = Built::new(
        "p2",
        "FROM scratch\nCOPY h.wasm /h.wasm\nENTRYPOINT [\"/h.wasm\"]\n",
        &[("h.wasm", guest("hello-p2"))],
    );
    let seen = p2.spore(&["bundle", "p2", "-o", o]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("is a component") && seen.stderr.contains("wasm32-wasip1"), "{seen:?}");
    assert!(!out.exists() && !p2.dir.path().join("out").exists(), "nothing was written");
}

/// A bundle for another machine, with a runtime built for it (scripts/test cross-builds the
/// runner), runs there: here under qemu-user, as the edge tests run foreign runners.
#[test]
fn a_bundle_for_another_machine_runs_there() {
    let target = "aarch64-unknown-linux-gnu";
    let target_dir = Path::new(env!("CARGO_BIN_EXE_spore")).parent().unwrap().parent().unwrap();
    let runtime = target_dir.join("runner").join(target).join("debug/spore-runner");
    assert!(runtime.exists(), "{} is missing: scripts/test cross-builds it", runtime.display());
    let built = Built::new(
        "hello",
        "FROM scratch\nCOPY h.wasm /h.wasm\nENTRYPOINT [\"/h.wasm\"]\n",
        &[("h.wasm", guest("hello"))],
    );
    let bundle = built.bundle("hello", "hello-arm64", &["--target", target, "--runtime", runtime.to_str().unwrap()]);
    let seen = Command::new("qemu-aarch64").env("QEMU_LD_PREFIX", "/usr/aarch64-linux-gnu").arg(&bundle).seen();
    assert_eq!((seen.code, seen.stdout.as_str()), (0, "Hello from Spore!\n"), "{seen:?}");
}

/// boa (a JavaScript engine nobody here wrote), pre-initialised with its script at build time,
/// as one executable: it starts with the script's state already made.
#[test]
fn a_pre_initialised_javascript_engine_runs_as_a_bundle() {
    let sporefile = "FROM scratch\nCOPY js.wasm /js.wasm\nCOPY app.js /app.js\nINIT\nENTRYPOINT [\"/js.wasm\"]\n";
    let app_js = crate::support::source("guests/jsinit/app.js");
    let built = Built::new("js", sporefile, &[("js.wasm", guest("jsinit")), ("app.js", app_js)]);
    let there = Elsewhere::with(&built.bundle("js", "js", &[]));
    let seen = there.run(&["w1", "nope"]);
    assert_eq!(seen.stdout, "Hello from JavaScript: 20000 words, w1=17679 nope? (pre-initialised)\n", "{seen:?}");
}
