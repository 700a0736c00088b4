//! Images in the local store, end to end: an OCI layout loaded, listed, run (its files as a
//! read-only `/`), saved, tagged and untagged through the real binary.

use crate::support::*;
use spore_image::{CompatImage, ContentStore, Reference, export_layout};

/// A compat image around the `fs` guest, with a file of its own and a default Cmd, written as
/// an OCI layout into `dir`.
fn layout(dir: &std::path::Path) -> std::path::PathBuf {
    let staging = ContentStore::open(&dir.join("staging")).unwrap();
    let mut image = CompatImage { os: "wasip1".into(), ..Default::default() };
    image.files.insert("/bin/fs.wasm".into(), (std::fs::read(guest("fs")).unwrap(), 0o755));
    image.files.insert("/etc/greeting.txt".into(), (b"hello from the image\n".to_vec(), 0o644));
    image.entrypoint = vec!["/bin/fs.wasm".into()];
    image.cmd = vec!["cat".into(), "/etc/greeting.txt".into()];
    image.env = vec!["FROM_IMAGE=yes".into()];
    let written = image.write(&staging).unwrap();
    let name: Reference = "localhost:5000/demo/fs:v1".parse().unwrap();
    let out = dir.join("layout");
    export_layout(&staging, &name, written.manifest, &out).unwrap();
    out
}

fn with_store(store: &std::path::Path) -> std::process::Command {
    let mut cmd = spore();
    cmd.env("SPORE_STORE", store);
    cmd
}

#[test]
fn load_list_run_save_tag_rmi() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let layout = layout(dir.path());
    let run = |args: &[&str]| with_store(&store).args(args).seen();

    let seen = run(&["load", "-i", layout.to_str().unwrap()]);
    assert_eq!(seen.code, 0, "{seen:?}");
    assert_eq!(seen.stdout, "Loaded image: localhost:5000/demo/fs:v1\n");
    let seen = run(&["images"]);
    assert!(seen.stdout.contains("localhost:5000/demo/fs:v1") && seen.stdout.contains("sha256:"), "{seen:?}");

    // The image's Cmd runs by default and reads the image's own file.
    let seen = run(&["run", "localhost:5000/demo/fs:v1"]);
    assert_eq!((seen.code, seen.stdout.as_str()), (0, "hello from the image\n"), "{seen:?}");
    // Arguments replace Cmd; the root is read-only.
    let seen = run(&["run", "localhost:5000/demo/fs:v1", "write", "/new.txt", "x"]);
    assert_eq!(seen.code, 1, "{seen:?}");
    assert!(seen.stderr.contains("fs write"), "{seen:?}");
    let seen = run(&["run", "localhost:5000/demo/fs:v1", "ls", "/"]);
    assert_eq!(seen.stdout, "bin\netc\n", "{seen:?}");

    // Save as a tar, load into another store, run there.
    let tarball = dir.path().join("fs.tar");
    assert_eq!(run(&["save", "localhost:5000/demo/fs:v1", "-o", tarball.to_str().unwrap()]).code, 0);
    let other = dir.path().join("other");
    let seen = with_store(&other).args(["load", "-i", tarball.to_str().unwrap()]).seen();
    assert_eq!(seen.code, 0, "{seen:?}");
    let seen = with_store(&other).args(["run", "localhost:5000/demo/fs:v1"]).seen();
    assert_eq!(seen.stdout, "hello from the image\n", "{seen:?}");

    assert_eq!(run(&["tag", "localhost:5000/demo/fs:v1", "fs:latest"]).code, 0);
    assert_eq!(run(&["run", "fs"]).stdout, "hello from the image\n");
    let seen = run(&["rmi", "fs"]);
    assert_eq!(seen.stdout, "Untagged: docker.io/library/fs:latest\n", "{seen:?}");
    let seen = run(&["run", "--pull", "never", "fs"]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(
        seen.stderr.contains("no image docker.io/library/fs:latest in the local store")
            && seen.stderr.contains("spore load"),
        "{seen:?}"
    );
    let seen = run(&["rmi", "fs"]);
    assert_eq!(seen.code, 1, "{seen:?}");
}

#[test]
fn bad_layouts_and_names_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let run = |args: &[&str]| with_store(&store).args(args).seen();
    let seen = run(&["load", "-i", dir.path().to_str().unwrap()]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("is not an OCI image layout"), "{seen:?}");
    let seen = run(&["run", "Not/Valid:"]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("image reference \"Not/Valid:\""), "{seen:?}");
    let seen = run(&["run", "missing.wasm"]);
    assert!(seen.stderr.contains("missing.wasm: no such file"), "{seen:?}");
}

#[test]
fn build_is_reproducible_precompiles_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let cache = dir.path().join("cache");
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("target")).unwrap();
    std::fs::copy(guest("hello"), ctx.join("target/hello.wasm")).unwrap();
    std::fs::write(ctx.join("README.md"), "not in the image").unwrap();
    std::fs::write(ctx.join(".sporeignore"), "README.md\n").unwrap();
    std::fs::write(
        ctx.join("Sporefile"),
        "FROM scratch\nCOPY target/hello.wasm /hello.wasm\nENTRYPOINT [\"/hello.wasm\"]\n",
    )
    .unwrap();
    let build = || {
        Seen::from(
            spore_with_cache(&cache)
                .env("SPORE_STORE", &store)
                .args(["build", "-t", "hello:v1"])
                .arg(&ctx)
                .output()
                .unwrap(),
        )
    };
    let first = build();
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first.stdout.contains("Tagged docker.io/library/hello:v1") && first.stdout.contains("Built sha256:"),
        "{first:?}"
    );
    let second = build();
    assert_eq!(first.stdout, second.stdout, "same inputs, same digest");

    // The build precompiled the entrypoint: the first run is a cache hit.
    let seen = Seen::from(
        spore_with_cache(&cache)
            .env("SPORE_STORE", &store)
            .env("SPORE_LOG", "debug")
            .args(["run", "hello:v1"])
            .output()
            .unwrap(),
    );
    assert_eq!(seen.stdout, "Hello from Spore!\n", "{seen:?}");
    assert!(seen.stderr.contains("compile cache hit"), "{seen:?}");

    std::fs::write(ctx.join("Sporefile"), "FROM scratch\nRUN cargo build\n").unwrap();
    let seen = build();
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("Sporefile line 2: RUN needs a Linux kernel"), "{seen:?}");
}

#[test]
fn build_an_artifact_of_a_component_and_run_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(guest("hello-p2"), ctx.join("hello.wasm")).unwrap();
    std::fs::write(
        ctx.join("Sporefile"),
        "FROM scratch\nCOPY hello.wasm /hello.wasm\nENV GREETING=Hi\nENTRYPOINT [\"/hello.wasm\"]\n",
    )
    .unwrap();
    let run = |args: &[&str]| with_store(&store).args(args).seen();
    let seen = run(&["build", "--format", "artifact", "-t", "hello-p2", ctx.to_str().unwrap()]);
    assert_eq!(seen.code, 0, "{seen:?}");
    assert!(seen.stdout.contains("wasip2/wasm, artifact"), "{seen:?}");
    assert!(seen.stderr.contains("no place for ENV"), "{seen:?}");
    let seen = run(&["run", "hello-p2", "a"]);
    assert_eq!(seen.stdout, "Hello from a component! args=[\"a\"]\n", "{seen:?}");

    std::fs::write(ctx.join("extra.txt"), "x").unwrap();
    std::fs::write(ctx.join("Sporefile"), "FROM scratch\nCOPY hello.wasm extra.txt /\nENTRYPOINT [\"/hello.wasm\"]\n")
        .unwrap();
    let seen = run(&["build", "--format", "artifact", ctx.to_str().unwrap()]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("holds only the wasm") && seen.stderr.contains("/extra.txt"), "{seen:?}");
}

/// `--platform` names the image as Docker (`wasi/wasm`) or runwasi and Go (`wasip1/wasm`) do,
/// or both in an index; Spore runs, saves and loads each, and refuses a name the wasm is not for.
#[test]
fn build_for_either_or_both_wasm_platform_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(guest("hello"), ctx.join("hello.wasm")).unwrap();
    std::fs::write(ctx.join("Sporefile"), "FROM scratch\nCOPY hello.wasm /hello.wasm\nENTRYPOINT [\"/hello.wasm\"]\n")
        .unwrap();
    let run = |args: &[&str]| with_store(&store).args(args).seen();
    let c = ctx.to_str().unwrap();
    let seen = run(&["build", "--platform", "wasi/wasm", "-t", "docker-named", c]);
    assert!(seen.code == 0 && seen.stdout.contains("wasi/wasm, compat"), "{seen:?}");
    let seen = run(&["build", "--platform", "wasi/wasm,wasip1/wasm", "-t", "both", c]);
    assert!(seen.code == 0 && seen.stdout.contains("wasi/wasm, wasip1/wasm, compat"), "{seen:?}");
    for image in ["docker-named", "both"] {
        assert_eq!(run(&["run", image]).stdout, "Hello from Spore!\n", "{image}");
    }
    // An index saves whole (both manifests) and loads back to the same digest.
    let inspect = |store: &std::path::Path| {
        let seen = with_store(store).args(["image", "inspect", "both"]).seen();
        let v: serde_json::Value = serde_json::from_str(&seen.stdout).unwrap_or_else(|_| panic!("{seen:?}"));
        v["Digest"].as_str().unwrap_or_default().to_owned()
    };
    let saved = dir.path().join("both.tar");
    assert_eq!(run(&["save", "both", "-o", saved.to_str().unwrap()]).code, 0);
    let other = dir.path().join("other-store");
    let seen = with_store(&other).args(["load", "-i", saved.to_str().unwrap()]).seen();
    assert_eq!(seen.code, 0, "{seen:?}");
    assert_eq!(inspect(&other), inspect(&store));
    assert_eq!(with_store(&other).args(["run", "both"]).seen().stdout, "Hello from Spore!\n");

    let seen = run(&["build", "--platform", "wasip2/wasm", c]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(
        seen.stderr.contains("--platform")
            && seen.stderr.contains("core module wasm; name it wasi/wasm or wasip1/wasm"),
        "{seen:?}"
    );
}

/// `INIT` / `--init`: the entrypoint's init export runs at build time with the image's files
/// (read-only), and its state ships in the image: a start begins where the init ended. The same
/// inputs build the same digest; an init that is missing, traps or exits fails the build with
/// how, and nothing is tagged.
#[test]
fn build_pre_initialises_the_entrypoint_reproducibly_and_refuses_an_init_that_does_not_return() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(guest("preinit"), ctx.join("app.wasm")).unwrap();
    std::fs::write(ctx.join("greeting.txt"), "Hello from the image\n").unwrap();
    let plain = "FROM scratch\nCOPY app.wasm /app.wasm\nCOPY greeting.txt /greeting.txt\nENTRYPOINT [\"/app.wasm\"]\n";
    std::fs::write(ctx.join("Sporefile.plain"), plain).unwrap();
    std::fs::write(ctx.join("Sporefile"), plain.replace("ENTRYPOINT", "INIT\nENTRYPOINT")).unwrap();
    let run = |args: &[&str]| with_store(&store).args(args).seen();
    let c = ctx.to_str().unwrap();
    let plain_file = ctx.join("Sporefile.plain");
    let plain_file = plain_file.to_str().unwrap();

    let seen = run(&["build", "-f", plain_file, "-t", "plain", c]);
    assert_eq!(seen.code, 0, "{seen:?}");
    let seen = run(&["run", "plain", "a"]);
    assert_eq!(seen.stdout, "348425 primes below 5000000; Hello from the image; initialised at start; args [\"a\"]\n");

    let digest = |tag: &str| {
        let seen = run(&["build", "-t", tag, c]);
        assert!(
            seen.code == 0 && seen.stderr.contains("pre-initialised /app.wasm with `wizer.initialize`"),
            "{seen:?}"
        );
        let v: serde_json::Value = serde_json::from_str(&run(&["image", "inspect", tag]).stdout).unwrap();
        assert_eq!(v["Config"]["config"]["Labels"]["dev.spore.preinit"], "wizer.initialize", "recorded");
        v["Digest"].as_str().unwrap().to_owned()
    };
    let first = digest("pre");
    assert_eq!(digest("again"), first, "the same inputs build the same image");
    let seen = run(&["run", "pre", "a", "b"]);
    assert_eq!(
        seen.stdout, "348425 primes below 5000000; Hello from the image; pre-initialised; args [\"a\", \"b\"]\n",
        "{seen:?}"
    );

    // Inits that do not return: each named, nothing tagged.
    for (flag, said) in [
        (
            "--init=nope",
            "--init: /app.wasm has no init export `nope` (a function of no arguments and no results); its exported functions: _start, __main_void, init-exit, init-socket, init-spin, init-trap, wizer.initialize",
        ),
        ("--init=init-trap", "pre-initialising /app.wasm with `init-trap`: it must return; wasm trap"),
        ("--init=init-exit", "pre-initialising /app.wasm with `init-exit`: it must return; exited with code 3"),
        // It ignores the error it gets: without the refusal the build would succeed.
        ("--init=init-socket", "pre-initialising /app.wasm with `init-socket`: it used a socket (`sock_accept`)"),
    ] {
        let seen = run(&["build", flag, "-t", "bad", c]);
        assert_eq!(seen.code, 125, "{seen:?}");
        assert!(seen.stderr.contains(said), "{flag}: {seen:?}");
    }
    assert!(run(&["image", "inspect", "bad"]).code != 0, "a failed init tagged nothing");
    std::fs::write(ctx.join("Sporefile"), plain.replace("ENTRYPOINT", "INIT a b\nENTRYPOINT")).unwrap();
    let seen = run(&["build", c]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("Sporefile line 4: INIT a b: expected INIT [EXPORT]"), "{seen:?}");
    std::fs::write(ctx.join("Sporefile"), plain.replace("ENTRYPOINT", "INIT init-exit\nENTRYPOINT")).unwrap();
    let seen = run(&["build", c]);
    assert!(seen.code == 125 && seen.stderr.contains("Sporefile line 4: INIT: pre-initialising"), "{seen:?}");
}

/// A program nobody here wrote: boa, a JavaScript engine from crates.io, whose init makes the
/// engine's context and runs the image's `/app.js` (building a 20 000-entry table). Built with
/// `INIT`, the image starts with all that done; built plainly, each start does it.
#[test]
fn a_javascript_engine_is_pre_initialised_with_its_script() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(guest("jsinit"), ctx.join("js.wasm")).unwrap();
    std::fs::copy(source("guests/jsinit/app.js"), ctx.join("app.js")).unwrap();
    let plain = "FROM scratch\nCOPY js.wasm /js.wasm\nCOPY app.js /app.js\nENTRYPOINT [\"/js.wasm\"]\n";
    std::fs::write(ctx.join("Sporefile.plain"), plain).unwrap();
    std::fs::write(ctx.join("Sporefile"), plain.replace("ENTRYPOINT", "INIT\nENTRYPOINT")).unwrap();
    let run = |args: &[&str]| with_store(&store).args(args).seen();
    let c = ctx.to_str().unwrap();
    let plain_file = ctx.join("Sporefile.plain");
    assert_eq!(run(&["build", "-f", plain_file.to_str().unwrap(), "-t", "js-plain", c]).code, 0);
    let seen = run(&["build", "-t", "js", c]);
    assert_eq!(seen.code, 0, "{seen:?}");
    let seen = run(&["run", "js-plain", "w1", "nope"]);
    assert_eq!(seen.stdout, "Hello from JavaScript: 20000 words, w1=17679 nope? (initialised at start)\n", "{seen:?}");
    let seen = run(&["run", "js", "w1", "nope"]);
    assert_eq!(seen.stdout, "Hello from JavaScript: 20000 words, w1=17679 nope? (pre-initialised)\n", "{seen:?}");
}

/// An image's entrypoint is read and hashed once; later starts know it by the digest recorded
/// beside its unpacked root. Changed on disk after that, it is refused whenever it would be
/// compiled (the code run is always the recorded program's, never the changed file's).
#[test]
fn an_entrypoint_changed_on_disk_after_it_was_recorded_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(guest("hello"), ctx.join("app.wasm")).unwrap();
    std::fs::write(ctx.join("Sporefile"), "FROM scratch\nCOPY app.wasm /app.wasm\nENTRYPOINT [\"/app.wasm\"]\n")
        .unwrap();
    let run = |cache: &str, args: &[&str]| {
        with_store(&store).env("SPORE_CACHE_DIR", dir.path().join(cache)).args(args).seen()
    };
    assert_eq!(run("cache", &["build", "-t", "app", ctx.to_str().unwrap()]).code, 0);
    let first = run("cache", &["run", "app"]);
    assert_eq!(first.code, 0, "{first:?}");
    let roots = store.join("rootfs");
    let root = std::fs::read_dir(&roots).unwrap().map(|e| e.unwrap().path()).find(|p| p.is_dir()).unwrap();
    assert!(root.with_extension("entrypoint").is_file(), "the first start recorded the digest");
    // Another program's bytes in its place.
    std::fs::write(root.join("app.wasm"), std::fs::read(guest("exit-code")).unwrap()).unwrap();
    assert_eq!(run("cache", &["run", "app"]).stdout, first.stdout, "the recorded program's code");
    let seen = run("cold-cache", &["run", "app"]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(
        seen.stderr.contains("app.wasm changed on disk since it was recorded as sha256:")
            && seen.stderr.contains("remove the image and pull or build it again"),
        "{seen:?}"
    );
}

/// `spore compile --init`: a wasm file pre-initialised outside any image, its init reading the
/// directories given (read-only); the result written and compiled. A bad export writes nothing.
#[test]
fn compile_pre_initialises_a_module_into_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::write(assets.join("greeting.txt"), "Hi from a directory\n").unwrap();
    let out = dir.path().join("app.init.wasm");
    // A cache of its own, so the compile of the result is this test's.
    let spore = |args: &[&str]| {
        with_store(&dir.path().join("store")).env("SPORE_CACHE_DIR", dir.path().join("cache")).args(args).seen()
    };
    let app = guest("preinit");
    let (app, out_s) = (app.to_str().unwrap(), out.to_str().unwrap());
    let mount = format!("{}:/", assets.display());
    let seen = spore(&["compile", "--init", "--dir", &mount, app, "-o", out_s]);
    assert!(seen.code == 0 && seen.stdout.contains("app.init.wasm: compiled module"), "{seen:?}");
    let seen = spore(&["run", out_s]);
    assert_eq!(seen.stdout, "348425 primes below 5000000; Hi from a directory; pre-initialised; args []\n", "{seen:?}");
    // The plain module, run without the directory, does its own start and finds no greeting.
    let seen = spore(&["run", app]);
    assert!(seen.stdout.contains("(no greeting: ") && seen.stdout.contains("initialised at start"), "{seen:?}");
    let bad = dir.path().join("bad.wasm");
    let seen = spore(&["compile", "--init=init-trap", app, "-o", bad.to_str().unwrap()]);
    assert!(seen.code == 125 && seen.stderr.contains("--init=init-trap: pre-initialising"), "{seen:?}");
    assert!(!bad.exists(), "nothing written");
    let seen = spore(&["compile", "--init", app]);
    assert!(seen.code != 0 && seen.stderr.contains("--output"), "{seen:?}");
}
