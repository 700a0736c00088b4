#![allow(dead_code)]
//! The shim under real containerd 1.6 (its own config, socket, root and state in a temp dir;
//! the shim's directory on its PATH), driven by `ctr` as an operator would: images built with
//! Spore's image code and pushed to a real registry, pulled by containerd, run with
//! `--runtime io.containerd.spore.v1`.

use crate::support::peers::{Containerd, Registry};
use crate::support::{Image, guest, shim_dir};
use sha2::{Digest, Sha256};

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
    pull_as(c, "wasip1/wasm", image);
}

fn pull_as(c: &Containerd, platform: &str, image: &str) {
    let r = ctr(c, &["images", "pull", "--plain-http", "--platform", platform, image]);
    assert_eq!(r.code, 0, "pull: {}", r.out);
}

fn run(c: &Containerd, image: &str, id: &str, args: &[&str]) -> Ran {
    run_as(c, "wasip1/wasm", image, id, args)
}

fn run_as(c: &Containerd, platform: &str, image: &str, id: &str, args: &[&str]) -> Ran {
    let mut all = vec!["run", "--rm", "--platform", platform, "--runtime", "io.containerd.spore.v1", image, id];
    all.extend_from_slice(args);
    ctr(c, &all)
}

/// `GET path` from an app served on 127.0.0.1:`port` (waiting up to 5 s for it to listen):
/// the whole HTTP/1.1 answer.
fn get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut answer = String::new();
    for _ in 0..100 {
        if let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            write!(conn, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
            conn.read_to_string(&mut answer).unwrap();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    answer
}

/// Waits (up to 5 s) for task `id` to stop, then deletes it and its container.
fn stopped(c: &Containerd, id: &str) {
    stopped_within(c, id, std::time::Duration::from_secs(5));
}

/// Waits (up to `wait`) for task `id` to stop, then deletes it and its container.
fn stopped_within(c: &Containerd, id: &str, wait: std::time::Duration) {
    let done = (0..wait.as_millis() / 50).any(|_| {
        let stopped = ctr(c, &["task", "ls"]).out.lines().any(|l| l.starts_with(id) && l.contains("STOPPED"));
        if !stopped {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        stopped
    });
    assert!(done, "{id} stopped: {}", ctr(c, &["task", "ls"]).out);
    ctr(c, &["task", "delete", id]);
    ctr(c, &["container", "delete", id]);
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
    let p2 =
        push(Image { os: "wasip2", ..Image::wasm("p2", "/hello-p2.wasm", guest("hello-p2"), &["/hello-p2.wasm"]) });
    let http = push(Image { os: "wasip2", ..Image::wasm("http", "/http.wasm", guest("http-hello"), &["/http.wasm"]) });
    let reactor = push(Image::wasm("reactor", "/lib.wasm", guest("reactor"), &["/lib.wasm#add"]));
    let fs = push(Image::wasm("fs", "/fs.wasm", guest("fs"), &["/fs.wasm"]));
    let membomb = push(Image::wasm("membomb", "/membomb.wasm", guest("membomb"), &["/membomb.wasm"]));

    let bin = shim_dir(work.path(), env!("CARGO_BIN_EXE_containerd-shim-spore-v1").as_ref());
    let c = Containerd::start_with_path(&bin);
    for image in [&hello, &exit, &p2, &http, &spin, &broken, &missing, &reactor, &fs, &membomb] {
        pull(&c, image);
    }

    let r = run(&c, &hello, "hello", &[]);
    assert_eq!((r.code, r.out.trim()), (0, "Hello from Spore!"), "{}", r.out);
    // Compiled once for the node: the code is in the shim's cache, keyed by the wasm's digest.
    let digest = format!("{:x}", Sha256::digest(guest("hello")));
    let cached = std::fs::read_dir(c.dir.path().join("shim-cache"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|engine_dir| engine_dir.path().join(format!("{digest}.ref")).is_file());
    assert!(cached, "hello's compiled code is in the shim's compile cache");
    let r = run(&c, &hello, "hello-again", &[]);
    assert_eq!((r.code, r.out.trim()), (0, "Hello from Spore!"), "from the cache: {}", r.out);

    let r = run(&c, &exit, "exit", &["/bin/exit.wasm", "7"]);
    assert_eq!(r.code, 7, "the guest's exit code is the task's: {}", r.out);
    assert!(r.out.contains("exiting with 7"), "{}", r.out);

    // A WASI 0.2 component (a command), with env from `ctr run --env`.
    let rt = ["run", "--rm", "--runtime", "io.containerd.spore.v1", "--env", "GREETING=Hi"];
    let r = ctr(&c, &[&rt[..], &[&p2, "p2", "/hello-p2.wasm", "a", "b"]].concat());
    assert_eq!((r.code, r.out.trim()), (0, "Hi from a component! args=[\"a\", \"b\"]"), "{}", r.out);
    // An HTTP app is served from the container (here on the host's network, on the port the
    // env names) until SIGTERM stops it gracefully.
    let port = crate::support::peers::free_port();
    let listen = format!("SPORE_HTTP_LISTEN=127.0.0.1:{port}");
    let rt = ["run", "-d", "--net-host", "--runtime", "io.containerd.spore.v1", "--env", &listen];
    let r = ctr(&c, &[&rt[..], &[&http, "http"]].concat());
    assert_eq!(r.code, 0, "{}", r.out);
    let answer = get(port, "/pods");
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("Hello from Spore over HTTP at /pods\n"), "{answer}");
    assert_eq!(ctr(&c, &["task", "kill", "http"]).code, 0);
    stopped(&c, "http");

    // runwasi's `path#export` entrypoint calls that export with the process's other args.
    let r = run(&c, &reactor, "add", &["/lib.wasm#add", "2", "40"]);
    assert_eq!((r.code, r.out.trim()), (0, "42"), "{}", r.out);
    let r = run(&c, &reactor, "fib", &["/lib.wasm#fib", "50"]);
    assert_eq!((r.code, r.out.trim()), (0, "12586269025"), "{}", r.out);
    let r = run(&c, &reactor, "nope", &["/lib.wasm#nope"]);
    assert!(r.code == 125 && r.out.contains("no exported function `nope`"), "{}", r.out);

    // A looping guest: started detached, stopped by `ctr task kill`.
    let r = ctr(&c, &["run", "-d", "--platform", "wasip1/wasm", "--runtime", "io.containerd.spore.v1", &spin, "spin"]);
    assert_eq!(r.code, 0, "{}", r.out);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let tasks = ctr(&c, &["task", "ls"]).out;
    let pid = tasks.lines().find(|l| l.starts_with("spin") && l.contains("RUNNING")).expect("it spins");
    let pid = pid.split_whitespace().nth(1).unwrap();
    // Its process holds the node's compile cache open (as /proc/self/fd/N); its guest cannot
    // reach the directory through that.
    let cache = c.dir.path().join("shim-cache");
    let fd = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .find(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == cache))
        .map(|fd| fd.file_name().to_string_lossy().into_owned())
        .expect("the container's process holds the compile cache open");
    for path in [format!("/proc/self/fd/{fd}/escaped"), format!("/proc/1/fd/{fd}/escaped")] {
        let r = run(&c, &fs, "escape", &["/fs.wasm", "write", &path, "x"]);
        assert!(r.code == 1 && r.out.contains("fs write: "), "{path}: {}", r.out);
    }
    assert!(!cache.join("escaped").exists(), "a guest wrote into the compile cache");
    // `ctr task kill`'s default signal, SIGTERM: the runtime is PID 1 of the container, which
    // would ignore it without a handler of its own.
    let r = ctr(&c, &["task", "kill", "spin"]);
    assert_eq!(r.code, 0, "{}", r.out);
    stopped(&c, "spin");

    // `--memory-limit` is the container's cgroup limit. Where the container can read its cgroup
    // (the CRI mounts it always; `ctr run` when asked to), Spore caps the guest below it and
    // says so; the status is the same 137 the kernel's OOM kill gives.
    let limit = ["--memory-limit", "67108864"];
    let cgroup = ["--mount", "type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=ro"];
    let r = ctr(
        &c,
        &[&["run", "--rm", "--runtime", "io.containerd.spore.v1"][..], &limit, &cgroup, &[&membomb, "membomb"]]
            .concat(),
    );
    assert_eq!(r.code, 137, "{}", r.out);
    assert!(r.out.contains("memory limit of") && r.out.contains("allocated 16 MiB"), "{}", r.out);
    let r = ctr(
        &c,
        &[&["run", "--rm", "--runtime", "io.containerd.spore.v1"][..], &limit, &[&membomb, "membomb-oom"]].concat(),
    );
    assert_eq!(r.code, 137, "without its cgroup, the kernel stops it at the limit: {}", r.out);

    // `spore build` → OCI layout tar → `ctr images import`: the image's Entrypoint, Cmd and
    // Env reach the guest.
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("args.wasm"), guest("args-env")).unwrap();
    std::fs::write(
        ctx.join("Sporefile"),
        "FROM scratch\nCOPY args.wasm /bin/args.wasm\nENV GREETING=\"hello world\"\nENTRYPOINT [\"/bin/args.wasm\"]\nCMD [\"from-cmd\"]\n",
    )
    .unwrap();
    let archive = crate::support::build_archive(&ctx, "docker.io/library/built:v1", &work.path().join("built.tar"));
    let r = ctr(&c, &["images", "import", "--platform", "wasip1/wasm", archive.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.out);
    let r = run(&c, "docker.io/library/built:v1", "built", &[]);
    assert_eq!(r.code, 0, "{}", r.out);
    for line in ["arg[0]=/bin/args.wasm", "arg[1]=from-cmd", "env GREETING=hello world"] {
        assert!(r.out.lines().any(|l| l == line), "{line}: {}", r.out);
    }

    // Bad images fail the task (125, as `spore run`) with the reason on its stderr.
    let r = run(&c, &broken, "broken", &[]);
    assert_eq!(r.code, 125, "{}", r.out);
    assert!(r.out.contains("/app.wasm does not compile"), "{}", r.out);
    let r = run(&c, &missing, "missing", &[]);
    assert_eq!(r.code, 125, "{}", r.out);
    assert!(r.out.contains("no wasm entrypoint: looked for /app.wasm"), "{}", r.out);
}

/// Docker names the wasm platform `wasi/wasm`, runwasi and Go `wasip1/wasm`: containerd finds
/// Spore's images under either. A single manifest (the default) is not matched against the
/// platform by containerd 1.6 (`ctr` or the CRI); an index built for both names lists a
/// manifest under each, for the tools that do match.
#[test]
fn ctr_finds_spore_images_under_either_wasm_platform_name() {
    let work = tempfile::tempdir().unwrap();
    let reg = Registry::start(None);
    let hello = Image::wasm("hello", "/hello.wasm", guest("hello"), &["/hello.wasm"]).push(&reg, work.path());
    let bin = shim_dir(work.path(), env!("CARGO_BIN_EXE_containerd-shim-spore-v1").as_ref());
    let c = Containerd::start_with_path(&bin);
    pull_as(&c, "wasi/wasm", &hello);
    let r = run_as(&c, "wasi/wasm", &hello, "pulled-as-wasi", &[]);
    assert_eq!((r.code, r.out.trim()), (0, "Hello from Spore!"), "{}", r.out);

    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello.wasm"), guest("hello")).unwrap();
    std::fs::write(ctx.join("Sporefile"), "FROM scratch\nCOPY hello.wasm /hello.wasm\nENTRYPOINT [\"/hello.wasm\"]\n")
        .unwrap();
    let both = "docker.io/library/both:v1";
    let archive = crate::support::build_archive_for(&ctx, both, &work.path().join("both.tar"), &["wasi", "wasip1"]);
    for platform in ["wasi/wasm", "wasip1/wasm"] {
        let r = ctr(&c, &["images", "import", "--platform", platform, archive.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}", r.out);
        let listed = ctr(&c, &["images", "ls"]).out;
        let line = listed.lines().find(|l| l.starts_with(both)).unwrap_or_else(|| panic!("not listed: {listed}"));
        assert!(line.contains("wasi/wasm,wasip1/wasm"), "{line}");
        let id = format!("both-{}", platform.replace('/', "-"));
        let r = run_as(&c, platform, both, &id, &[]);
        assert_eq!((r.code, r.out.trim()), (0, "Hello from Spore!"), "{platform}: {}", r.out);
        assert_eq!(ctr(&c, &["images", "rm", both]).code, 0);
    }
}

/// Spin apps as Spin users build them (spin-sdk 7: WASI 0.3; spin-sdk 5: WASI 0.2) served from
/// a container: variables from the env SpinKube sets; stores, databases and outbound hosts
/// only where the pod grants them (`/etc/spore/grants.toml` on a read-only volume), their data
/// in the pod's data volume, which the guest does not get.
#[test]
fn ctr_serves_spin_sdk_apps_with_the_pods_grants_and_variables() {
    let work = tempfile::tempdir().unwrap();
    let reg = Registry::start(None);
    let bin = shim_dir(work.path(), env!("CARGO_BIN_EXE_containerd-shim-spore-v1").as_ref());
    let c = Containerd::start_with_path(&bin);
    let (upstream, _up) = crate::support::peers::upstream();
    let grants = tempfile::tempdir().unwrap();
    std::fs::write(
        grants.path().join("grants.toml"),
        format!(
            "key_value_stores = [\"default\"]\nsqlite_databases = [\"default\"]\nallowed_outbound_hosts = [\"http://127.0.0.1:{upstream}\"]\ndata_dir = \"/data\"\n"
        ),
    )
    .unwrap();
    let upstream_var = format!("SPIN_VARIABLE_UPSTREAM=http://127.0.0.1:{upstream}/up");
    for sdk in ["spin7", "spin5"] {
        let path = format!("/{sdk}.wasm");
        let entry = [path.as_str()];
        let image = Image { os: "wasip2", ..Image::wasm(sdk, &path, guest(sdk), &entry) }.push(&reg, work.path());
        pull_as(&c, "wasi/wasm", &image);
        let data = tempfile::tempdir().unwrap();
        let serve = |id: &str, granted: bool| {
            let port = crate::support::peers::free_port();
            let listen = format!("SPORE_HTTP_LISTEN=127.0.0.1:{port}");
            let mut args: Vec<String> = ["run", "-d", "--net-host", "--runtime", "io.containerd.spore.v1"]
                .into_iter()
                .map(String::from)
                .collect();
            for env in [listen.as_str(), "SPIN_VARIABLE_GREETING=Hey", upstream_var.as_str()] {
                args.extend(["--env".to_owned(), env.to_owned()]);
            }
            if granted {
                args.extend([
                    "--mount".to_owned(),
                    format!("type=bind,src={},dst=/etc/spore,options=rbind:ro", grants.path().display()),
                    "--mount".to_owned(),
                    format!("type=bind,src={},dst=/data,options=rbind:rw", data.path().display()),
                ]);
            }
            args.extend([image.clone(), id.to_owned()]);
            let r = ctr(&c, &args.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(r.code, 0, "{}", r.out);
            port
        };
        // Nothing granted: variables only.
        let port = serve(sdk, false);
        let answer = get(port, "/hello");
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.contains(&format!("Hey from spin-sdk {}\n", &sdk[4..])),
            "{answer}"
        );
        for route in ["/count", "/sql"] {
            let answer = get(port, route);
            assert!(answer.starts_with("HTTP/1.1 500") && answer.contains("AccessDenied"), "{route}: {answer}");
        }
        let answer = get(port, "/fetch");
        assert!(answer.contains("HttpRequestDenied") || answer.contains("denied"), "{answer}");
        assert_eq!(ctr(&c, &["task", "kill", sdk]).code, 0);
        stopped(&c, sdk);

        // Granted by the pod: the store, the database and the upstream, the data in its volume.
        let id = format!("{sdk}-granted");
        let port = serve(&id, true);
        for n in 1..=2 {
            let answer = get(port, "/count");
            assert!(answer.starts_with("HTTP/1.1 200") && answer.contains(&format!("\n{n} count\n")), "{answer}");
        }
        let answer = get(port, "/sql");
        assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("rows 1 hi\n"), "{answer}");
        let answer = get(port, "/fetch");
        assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("200 upstream ok"), "{answer}");
        assert_eq!(ctr(&c, &["task", "kill", &id]).code, 0);
        stopped(&c, &id);
        assert!(data.path().join("kv/default.redb").is_file() && data.path().join("sqlite/default.db").is_file());
    }

    // The grants are the pod's: an image carrying its own is refused, and so is a grants file
    // on a writable volume (the guest could have written it); the data volume is not the guest's.
    let hostile = Image {
        files: vec![
            ("/fs.wasm", guest("fs")),
            ("/etc/spore/grants.toml", b"allowed_outbound_hosts = [\"http://*:*\"]\n".to_vec()),
        ],
        ..Image::wasm("self-granted", "/fs.wasm", Vec::new(), &["/fs.wasm"])
    }
    .push(&reg, work.path());
    pull(&c, &hostile);
    let r = run(&c, &hostile, "self-granted", &["/fs.wasm", "ls", "/"]);
    assert_eq!(r.code, 125, "{}", r.out);
    assert!(r.out.contains("/etc/spore/grants.toml is the image's own file, not a volume of the pod"), "{}", r.out);
    let plain = Image::wasm("fs", "/fs.wasm", guest("fs"), &["/fs.wasm"]).push(&reg, work.path());
    pull(&c, &plain);
    let data = tempfile::tempdir().unwrap();
    let with = |id: &str, grants_mode: &str, args: &[&str]| {
        let mounts = [
            format!("type=bind,src={},dst=/etc/spore,options=rbind:{grants_mode}", grants.path().display()),
            format!("type=bind,src={},dst=/data,options=rbind:rw", data.path().display()),
        ];
        let head = ["run", "--rm", "--runtime", "io.containerd.spore.v1", "--mount", &mounts[0], "--mount", &mounts[1]];
        ctr(&c, &[&head[..], &[plain.as_str(), id, "/fs.wasm"], args].concat())
    };
    let r = with("writable-grants", "rw", &["ls", "/"]);
    assert_eq!(r.code, 125, "{}", r.out);
    assert!(r.out.contains("is on the writable volume /etc/spore"), "{}", r.out);
    let r = with("data-kept", "ro", &["write", "/data/planted", "x"]);
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(!data.path().join("planted").exists(), "the guest wrote in the stores' data volume");
}

#[test]
fn a_guest_sees_its_image_read_only_and_its_volumes_but_nothing_of_the_container_runtime() {
    let work = tempfile::tempdir().unwrap();
    let reg = Registry::start(None);
    let image = Image {
        files: vec![("/hostile.wasm", guest("hostile")), ("/fs.wasm", guest("fs"))],
        ..Image::wasm("hostile", "/hostile.wasm", Vec::new(), &["/hostile.wasm"])
    }
    .push(&reg, work.path());
    let http =
        Image { os: "wasip2", ..Image::wasm("http-hostile", "/app.wasm", guest("http-hostile"), &["/app.wasm"]) }
            .push(&reg, work.path());
    let bin = shim_dir(work.path(), env!("CARGO_BIN_EXE_containerd-shim-spore-v1").as_ref());
    let c = Containerd::start_with_path(&bin);
    pull(&c, &image);
    pull(&c, &http);

    // The runtime's /proc (its own memory, PID 1's environment) and the image's root for
    // writing: all refused. Before, the guest opened /proc/self/mem for writing.
    let r = run(&c, &image, "proc", &["/hostile.wasm", "proc"]);
    assert_eq!(r.code, 0, "{}", r.out);
    for line in [
        "write /proc/self/mem: refused",
        "read /proc/self/maps: refused",
        "read /proc/1/environ: refused",
        "create /pwned: refused",
    ] {
        assert!(r.out.contains(line), "{line}: {}", r.out);
    }
    // A descriptor bomb ends at the guest's open-handle limit, held below the container's
    // RLIMIT_NOFILE (1024 under `ctr run`), not at the kernel's EMFILE.
    let r = run(&c, &image, "fds", &["/hostile.wasm", "fd-bomb", "/hostile.wasm"]);
    assert_eq!(r.code, 137, "{}", r.out);
    assert!(r.out.contains("open-handle limit of") && r.out.contains("reached"), "{}", r.out);
    // The image's own files are its `/`.
    let r = run(&c, &image, "ls", &["/hostile.wasm", "ls", "/"]);
    assert!(r.code == 0 && r.out.contains("fs.wasm hostile.wasm"), "{}", r.out);

    // Volumes, as the pod mounts them: written where writable, refused where read-only.
    let rw = tempfile::tempdir().unwrap();
    let ro = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("config"), "from the host\n").unwrap();
    let mounts = [
        "--mount".to_owned(),
        format!("type=bind,src={},dst=/data,options=rbind:rw", rw.path().display()),
        "--mount".to_owned(),
        format!("type=bind,src={},dst=/config,options=rbind:ro", ro.path().display()),
    ];
    let mounts: Vec<&str> = mounts.iter().map(String::as_str).collect();
    let with_volumes = |id: &str, args: &[&str]| {
        let head = ["run", "--rm", "--runtime", "io.containerd.spore.v1"];
        ctr(&c, &[&head[..], &mounts, &[image.as_str(), id, "/fs.wasm"], args].concat())
    };
    let r = with_volumes("write-rw", &["write", "/data/out", "written"]);
    assert_eq!(r.code, 0, "{}", r.out);
    assert_eq!(std::fs::read_to_string(rw.path().join("out")).unwrap(), "written");
    let r = with_volumes("read-ro", &["cat", "/config/config"]);
    assert!(r.code == 0 && r.out.contains("from the host"), "{}", r.out);
    let r = with_volumes("write-ro", &["write", "/config/out", "x"]);
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(!ro.path().join("out").exists());

    // An HTTP app whose instance computes on after its answer: the app answers on (the
    // instance is a task among others, not the server's thread), a descriptor bomb fails only
    // its own request, and SIGTERM ends the spinning instance with the server (after the
    // grace period, by abort) instead of leaving the task running.
    let port = crate::support::peers::free_port();
    let listen = format!("SPORE_HTTP_LISTEN=127.0.0.1:{port}");
    let rt = ["run", "-d", "--net-host", "--runtime", "io.containerd.spore.v1", "--env", &listen];
    let r = ctr(&c, &[&rt[..], &[&http, "linger"]].concat());
    assert_eq!(r.code, 0, "{}", r.out);
    let answer = get(port, "/linger");
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("now spinning"), "{answer}");
    let answer = get(port, "/fd-bomb");
    assert!(answer.starts_with("HTTP/1.1 500"), "stopped at its open-handle limit: {answer}");
    assert!(get(port, "/nothing").starts_with("HTTP/1.1 404"), "the app answers on");
    assert_eq!(ctr(&c, &["task", "kill", "linger"]).code, 0);
    stopped_within(&c, "linger", std::time::Duration::from_secs(20));
}

/// A pre-initialised module (its init run once, its state shipped, as `spore build --init`
/// makes it) runs in a container like any other: it starts where its init ended.
#[test]
fn ctr_runs_a_pre_initialised_module() {
    let work = tempfile::tempdir().unwrap();
    let reg = Registry::start(None);
    let plain = guest("preinit");
    let engine = spore_engine::SporeEngine::new(spore_engine::EngineConfig::one_shot(None, true)).unwrap();
    let runnable = spore_sandbox::Runnable::new(&engine, engine.load(&plain).unwrap(), "preinit.wasm").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let spec = spore_sandbox::SandboxSpec::default();
    let snapshot = runtime.block_on(runnable.preinit(&plain, &spec, spore_sandbox::DEFAULT_INIT_EXPORT)).unwrap();
    let image = Image {
        files: vec![("/app.wasm", snapshot), ("/greeting.txt", b"Hello from the image\n".to_vec())],
        ..Image::wasm("preinit", "/app.wasm", Vec::new(), &["/app.wasm"])
    }
    .push(&reg, work.path());
    let bin = shim_dir(work.path(), env!("CARGO_BIN_EXE_containerd-shim-spore-v1").as_ref());
    let c = Containerd::start_with_path(&bin);
    pull(&c, &image);
    let r = run(&c, &image, "preinit", &["/app.wasm", "x"]);
    assert_eq!(r.code, 0, "{}", r.out);
    // The init ran with no files here, so its greeting is the one it could not read.
    assert!(
        r.out.contains("348425 primes below 5000000; (no greeting: ")
            && r.out.contains("pre-initialised; args [\"x\"]"),
        "{}",
        r.out
    );
}
