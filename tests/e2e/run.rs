//! `spore run` and `spore compile`, end to end: the real binary on the real guests, asserting
//! what a user sees — stdout, stderr, exit codes, files on disk.

use crate::support::*;
use std::io::{Read, Write};
use std::process::Stdio;

#[test]
fn hello_prints_and_exits_zero() {
    let seen = spore_run(["run".as_ref(), guest("hello").as_os_str()]);
    assert_eq!(seen.code, 0, "{seen:?}");
    assert_eq!(seen.stdout, "Hello from Spore!\n");
    assert_eq!(seen.stderr, "");
}

#[test]
fn args_env_and_env_file_reach_the_guest_and_nothing_else_does() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("app.env");
    std::fs::write(&env_file, "# comment\n\nFROM_FILE=yes\nOVERRIDDEN=file\n").unwrap();
    let seen = Seen::from(
        spore()
            .env("HOST_ONLY", "secret")
            .args(["run", "--env", "A=1", "-e", "OVERRIDDEN=flag", "--env-file"])
            .arg(&env_file)
            .arg(guest("args-env"))
            .args(["first", "--flag", "with space"])
            .output()
            .unwrap(),
    );
    assert_eq!(seen.code, 0, "{seen:?}");
    let expected = "arg[0]=args-env.wasm\narg[1]=first\narg[2]=--flag\narg[3]=with space\n\
                    env A=1\nenv FROM_FILE=yes\nenv OVERRIDDEN=flag\n";
    assert_eq!(seen.stdout, expected, "{seen:?}");
}

#[test]
fn mapped_dirs_read_write_and_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    let rw = dir.path().join("rw");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::write(ro.join("greeting.txt"), "hi from the host\n").unwrap();
    let ro_flag = format!("{}:/in:ro", ro.display());
    let rw_flag = format!("{}:/out", rw.display());

    let seen = spore_run(["run", "--dir", &ro_flag, guest("fs").to_str().unwrap(), "cat", "/in/greeting.txt"]);
    assert_eq!((seen.code, seen.stdout.as_str()), (0, "hi from the host\n"), "{seen:?}");

    let seen = spore_run(["run", "--dir", &ro_flag, guest("fs").to_str().unwrap(), "write", "/in/new.txt", "x"]);
    assert_eq!(seen.code, 1, "writing to a read-only mount must fail: {seen:?}");
    assert!(seen.stderr.contains("fs write"), "{seen:?}");
    assert!(!ro.join("new.txt").exists(), "nothing may appear in the read-only host dir");

    let seen = spore_run([
        "run",
        "--dir",
        &rw_flag,
        guest("fs").to_str().unwrap(),
        "write",
        "/out/new.txt",
        "written by wasm",
    ]);
    assert_eq!(seen.code, 0, "{seen:?}");
    assert_eq!(std::fs::read_to_string(rw.join("new.txt")).unwrap(), "written by wasm");

    // Nothing unmapped is visible, not even with a path that escapes the mount.
    let seen = spore_run(["run", "--dir", &rw_flag, guest("fs").to_str().unwrap(), "cat", "/out/../ro/greeting.txt"]);
    assert_eq!(seen.code, 1, "{seen:?}");
    let seen = spore_run(["run", guest("fs").to_str().unwrap(), "ls", "/"]);
    assert_eq!(seen.code, 1, "no mounts, no filesystem: {seen:?}");
}

#[test]
fn stdin_is_passed_through() {
    let mut child = spore()
        .args(["run".as_ref(), guest("fs").as_os_str(), "stdin".as_ref()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"piped text\n").unwrap();
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(out, "stdin: piped text\n");
}

#[test]
fn the_guests_exit_code_is_spores() {
    for code in ["0", "3", "42"] {
        let seen = spore_run(["run", guest("exit-code").to_str().unwrap(), code]);
        assert_eq!(seen.code.to_string(), code, "{seen:?}");
        assert_eq!(seen.stdout, format!("exiting with {code}\n"));
    }
}

#[test]
fn a_trap_names_the_trap_and_the_function() {
    let seen = spore_run(["run", guest("trap").to_str().unwrap()]);
    assert_eq!(seen.code, 134, "{seen:?}");
    assert_eq!(seen.stdout, "about to trap\n");
    assert!(seen.stderr.contains("wasm trap: wasm `unreachable` instruction executed"), "{seen:?}");
    assert!(seen.stderr.contains("in function `boom`"), "{seen:?}");
}

#[test]
fn wall_clock_timeout_stops_a_spinning_guest() {
    let seen = spore_run(["run", "--timeout", "1s", guest("spin").to_str().unwrap()]);
    assert_eq!(seen.code, 124, "{seen:?}");
    assert!(seen.stderr.contains("wall-clock timeout of 1s reached"), "{seen:?}");
}

#[test]
fn cpu_time_limit_stops_a_spinning_guest() {
    let seen = spore_run(["run", "--cpu-time", "300ms", guest("spin").to_str().unwrap()]);
    assert_eq!(seen.code, 152, "{seen:?}");
    assert!(seen.stderr.contains("CPU time limit reached"), "{seen:?}");
}

#[test]
fn sleeping_costs_no_cpu_time() {
    // The reference daemon sleeps; a CPU allowance far below the wall time is never reached,
    // so the run ends by its timeout (124), not by the CPU limit (152).
    let seen = spore_run(["run", "--cpu-time", "200ms", "--timeout", "2s", guest("refdaemon").to_str().unwrap(), "1"]);
    assert_eq!(seen.code, 124, "{seen:?}");
    assert!(seen.stdout.starts_with("tick 0\ntick 1\n"), "{seen:?}");
}

#[test]
fn the_lean_reference_daemon_ticks_until_stopped() {
    let seen = spore_run(["run", "--timeout", "1500ms", guest("refdaemon-lean").to_str().unwrap(), "1"]);
    assert_eq!(seen.code, 124, "{seen:?}");
    assert_eq!(seen.stdout, "tick 0\ntick 1\n", "{seen:?}");
}

#[test]
fn memory_limit_stops_a_memory_bomb_with_its_own_code() {
    let seen = spore_run(["run", "--memory", "32M", guest("membomb").to_str().unwrap()]);
    assert_eq!(seen.code, 137, "{seen:?}");
    assert!(seen.stderr.contains("memory limit of 32 MiB reached"), "{seen:?}");
    assert!(seen.stderr.contains("allocated 16 MiB"), "the guest ran until refused: {seen:?}");
}

#[test]
fn nbody_computes_the_reference_energies() {
    let seen = spore_run(["run", guest("nbody").to_str().unwrap(), "1000"]);
    assert_eq!(seen.code, 0, "{seen:?}");
    assert_eq!(seen.stdout, "-0.169075164\n-0.169087605\n");
}

#[test]
fn a_p2_component_command_runs_with_args_env_and_exit_code() {
    let seen = spore_run(["run", "-e", "GREETING=Hi", guest("hello-p2").to_str().unwrap(), "a", "b"]);
    assert_eq!(seen.code, 0, "{seen:?}");
    assert_eq!(seen.stdout, "Hi from a component! args=[\"a\", \"b\"]\n");
    // WASI 0.2's `exit` carries success or failure only; Rust's std maps exit(7) to failure.
    let seen = spore_run(["run", "-e", "EXIT_CODE=7", guest("hello-p2").to_str().unwrap()]);
    assert_eq!(seen.code, 1, "{seen:?}");
}

#[test]
fn a_wasi_0_3_component_command_runs_with_args_env_files_and_exit_code() {
    // wasi:cli/run@0.3.0 (guests/hello-p3, the wasip3 crate): output through a 0.3 stream, a
    // file read through wasi:filesystem@0.3.0, its exit code through exit-with-code.
    let seen = spore_run(["run", guest("hello-p3").to_str().unwrap(), "a", "b"]);
    assert_eq!(seen.code, 0, "{seen:?}");
    assert_eq!(seen.stdout, "Hello from WASI 0.3! args=[\"hello-p3.wasm\", \"a\", \"b\"] GREETING=-\n");

    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("in.txt"), "from the host\n").unwrap();
    let mount = format!("{}:/data", data.path().display());
    let app = guest("hello-p3");
    let seen = spore_run(["run", "-e", "GREETING=hi", "--dir", &mount, app.to_str().unwrap(), "--exit=7"]);
    assert_eq!(seen.code, 7, "{seen:?}");
    assert_eq!(
        seen.stdout,
        "Hello from WASI 0.3! args=[\"hello-p3.wasm\", \"--exit=7\"] GREETING=hi\nin.txt: from the host\n"
    );
}

#[test]
fn a_reactor_runs_named_exports() {
    let reactor = guest("reactor");
    let r = reactor.to_str().unwrap();
    let seen = spore_run(["run", "--invoke", "add", r, "2", "40"]);
    assert_eq!((seen.code, seen.stdout.as_str()), (0, "42\n"), "{seen:?}");
    let seen = spore_run(["run", "--invoke", "fib", r, "50"]);
    assert_eq!(seen.stdout, "12586269025\n", "{seen:?}");
    let seen = spore_run(["run", "--invoke", "half", r, "3"]);
    assert_eq!(seen.stdout, "1.5\n", "{seen:?}");

    let seen = spore_run(["run", "--invoke", "nope", r]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("no exported function `nope`") && seen.stderr.contains("add, fib, half"), "{seen:?}");

    let seen = spore_run(["run", r]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("no `_start` export") && seen.stderr.contains("--invoke"), "{seen:?}");

    let seen = spore_run(["run", "--invoke", "add", r, "2"]);
    assert!(seen.code == 125 && seen.stderr.contains("takes 2 argument(s) (i32, i32), 1 given"), "{seen:?}");
    let seen = spore_run(["run", "--invoke", "add", r, "2", "two"]);
    assert!(seen.code == 125 && seen.stderr.contains("\"two\" is not a valid i32"), "{seen:?}");
}

#[test]
fn network_is_denied_by_default_and_granted_by_rule() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        // Serve exactly the one connection the granted run makes.
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).unwrap();
        conn.write_all(b"pong").unwrap();
    });
    let probe = guest("netprobe");
    let p = probe.to_str().unwrap();

    let seen = spore_run(["run", p, "connect", &addr]);
    assert_eq!(seen.code, 1, "no --net, no connection: {seen:?}");
    assert!(seen.stderr.contains("netprobe connect"), "{seen:?}");

    let seen = spore_run(["run", "--net", "allow=127.0.0.1:1", p, "connect", &addr]);
    assert_eq!(seen.code, 1, "another port is not granted: {seen:?}");
    assert!(seen.stderr.contains("denied TcpConnect"), "the denial is logged: {seen:?}");

    let seen = spore_run(["run", "--net", &format!("allow={addr}"), p, "connect", &addr]);
    assert_eq!(seen.code, 0, "{seen:?}");
    assert_eq!(seen.stdout, format!("connected to {addr}: pong\n"));
    server.join().unwrap();

    let seen = spore_run(["run", "--net", &format!("allow={addr}"), p, "listen", "127.0.0.1:0"]);
    assert_eq!(seen.code, 1, "connect rights do not grant listening: {seen:?}");
    let seen = spore_run(["run", "--net", "listen=127.0.0.0/8", p, "listen", "127.0.0.1:0"]);
    assert_eq!(seen.code, 0, "{seen:?}");
    assert!(seen.stdout.starts_with("listening on 127.0.0.1:"), "{seen:?}");
}

#[test]
fn second_run_compiles_nothing_and_corrupt_entries_are_rebuilt() {
    let cache = tempfile::tempdir().unwrap();
    let hello = guest("hello");
    let compile = || spore_with_cache(&cache.path().join("compiled")).arg("compile").arg(&hello).seen();

    let first = compile();
    assert_eq!(first.code, 0, "{first:?}");
    assert!(first.stdout.contains(": compiled module sha256:"), "{first:?}");
    let second = compile();
    assert!(second.stdout.contains("already compiled"), "{second:?}");

    // A run after compile finds the entry and leaves it untouched.
    let artifact = first.stdout.trim().rsplit(" -> ").next().unwrap().to_owned();
    let before = std::fs::metadata(&artifact).unwrap().modified().unwrap();
    let seen = Seen::from(
        spore_with_cache(&cache.path().join("compiled"))
            .arg("run")
            .arg(&hello)
            .env("SPORE_LOG", "debug")
            .output()
            .unwrap(),
    );
    assert_eq!(seen.stdout, "Hello from Spore!\n", "{seen:?}");
    assert!(seen.stderr.contains("compile cache hit"), "{seen:?}");
    assert_eq!(std::fs::metadata(&artifact).unwrap().modified().unwrap(), before);

    // Flip bytes in the middle of the compiled code: detected, rebuilt, and the run still works.
    let mut bytes = std::fs::read(&artifact).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&artifact, &bytes).unwrap();
    let seen = spore_with_cache(&cache.path().join("compiled")).arg("run").arg(&hello).seen();
    assert_eq!((seen.code, seen.stdout.as_str()), (0, "Hello from Spore!\n"), "{seen:?}");
    assert!(seen.stderr.contains("compile cache entry rejected (not made by this host"), "{seen:?}");
    assert!(compile().stdout.contains("already compiled"), "the entry was replaced by a good one");

    // Truncated to a fraction.
    std::fs::write(&artifact, &bytes[..bytes.len() / 4]).unwrap();
    let seen = spore_with_cache(&cache.path().join("compiled")).arg("run").arg(&hello).seen();
    assert_eq!((seen.code, seen.stdout.as_str()), (0, "Hello from Spore!\n"), "{seen:?}");
}

#[test]
fn concurrent_first_runs_share_one_cache_safely() {
    let cache = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..6)
        .map(|_| {
            spore_with_cache(&cache.path().join("compiled"))
                .arg("run")
                .arg(guest("nbody"))
                .arg("10")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let seen = Seen::from(child.wait_with_output().unwrap());
        assert_eq!(seen.code, 0, "{seen:?}");
        assert_eq!(seen.stdout, "-0.169075164\n-0.169073022\n");
        assert_eq!(seen.stderr, "", "racing writers must never make a reader see a bad entry: {seen:?}");
    }
    let seen = Seen::from(
        spore_with_cache(&cache.path().join("compiled")).arg("compile").arg(guest("nbody")).output().unwrap(),
    );
    assert!(seen.stdout.contains("already compiled"), "{seen:?}");
}

// ---- bad input: one clear line, exit 125, never a panic ----

fn assert_clear_error(seen: &Seen, needles: &[&str]) {
    assert_eq!(seen.code, 125, "{seen:?}");
    for n in needles {
        assert!(seen.stderr.contains(n), "expected {n:?} in stderr: {seen:?}");
    }
    assert!(!seen.stderr.contains("panicked"), "{seen:?}");
}

#[test]
fn bad_input_gets_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let text = d.join("notes.wasm");
    std::fs::write(&text, "just some text\n").unwrap();
    assert_clear_error(&spore_run(["run".as_ref(), text.as_os_str()]), &["notes.wasm", "not a WebAssembly binary"]);

    let wat_text = d.join("source.wasm");
    std::fs::write(&wat_text, "(module)").unwrap();
    assert_clear_error(&spore_run(["run".as_ref(), wat_text.as_os_str()]), &["text format", "wasm-tools parse"]);

    let truncated = d.join("truncated.wasm");
    let hello = std::fs::read(guest("hello")).unwrap();
    std::fs::write(&truncated, &hello[..hello.len() / 2]).unwrap();
    assert_clear_error(
        &spore_run(["run".as_ref(), truncated.as_os_str()]),
        &["truncated.wasm", "invalid WebAssembly module"],
    );

    let missing_import =
        wat_file(d, "imports.wasm", r#"(module (import "vendor" "gpio_write" (func)) (func (export "_start")))"#);
    assert_clear_error(
        &spore_run(["run".as_ref(), missing_import.as_os_str()]),
        &["cannot link", "vendor::gpio_write"],
    );

    let big_min = wat_file(d, "bigmem.wasm", r#"(module (memory (export "memory") 32) (func (export "_start")))"#);
    assert_clear_error(
        &spore_run(["run".as_ref(), "--memory".as_ref(), "1M".as_ref(), big_min.as_os_str()]),
        &["memory limit 1 MiB is below the 2 MiB", "raise --memory"],
    );

    assert_clear_error(&spore_run(["run", "/no/such/app.wasm"]), &["/no/such/app.wasm: no such file"]);
    let h = guest("hello");
    let h = h.to_str().unwrap();
    assert_clear_error(
        &spore_run(["run", "--dir", "/no/such/dir:/data", h]),
        &["--dir /no/such/dir: host path does not exist"],
    );
    assert_clear_error(&spore_run(["run", "--env", "=oops", h]), &["--env", "name is empty"]);
    assert_clear_error(&spore_run(["run", "--memory", "lots", h]), &["--memory", "64M"]);
    assert_clear_error(&spore_run(["run", "--timeout", "5", h]), &["--timeout", "5s"]);
    assert_clear_error(&spore_run(["run", "--net", "allow=example.com", h]), &["--net", "port is required"]);
    assert_clear_error(&spore_run(["run", "--env-file", "/no/such.env", h]), &["--env-file /no/such.env"]);
}

#[test]
fn version_and_help() {
    let seen = spore_run(["--version"]);
    assert_eq!(seen.code, 0);
    assert!(seen.stdout.starts_with("spore 0."), "{seen:?}");
    let seen = spore_run(["run", "--help"]);
    assert_eq!(seen.code, 0);
    assert!(seen.stdout.contains("Examples:") && seen.stdout.contains("--dir ./site:/www:ro"), "{seen:?}");
    let seen = spore_run(["--help"]);
    assert!(seen.stdout.contains("Exit codes:"), "{seen:?}");
}

/// docs/configuration.md lists every flag every command takes and every key of the daemon's
/// configuration, so that a knob added without its line fails here.
#[test]
fn the_configuration_page_names_every_flag_and_daemon_key() {
    let doc = std::fs::read_to_string(source("docs/configuration.md")).unwrap();
    let commands = [
        "run",
        "serve",
        "up",
        "compile",
        "bundle",
        "daemon",
        "deploy",
        "ps",
        "start",
        "stop",
        "kill",
        "rm",
        "inspect",
        "logs",
        "stats",
        "events",
        "build",
        "load",
        "save",
        "images",
        "tag",
        "rmi",
        "pull",
        "push",
        "login",
        "logout",
        "image prune",
        "image inspect",
        "program prune",
    ];
    let mut missing = Vec::new();
    for command in commands {
        let help = spore_run(command.split(' ').chain(["--help"])).stdout;
        // The options, not the examples (whose flags may be the app's own).
        let options = help.split("\nExamples").next().unwrap_or_default();
        for word in options.split_whitespace() {
            let flag = word.trim_end_matches(',');
            let is_flag = flag.starts_with("--")
                && flag.len() > 2
                && flag[2..].chars().all(|c| c.is_ascii_lowercase() || c == '-');
            if is_flag && !["--help", "--version"].contains(&flag) && !doc.contains(&format!("`{flag}")) {
                missing.push(format!("spore {command} {flag}"));
            }
        }
    }
    let printed = spore_run(["daemon", "--print-config"]).stdout;
    let config: toml::Table = toml::from_str(&printed).unwrap();
    for (key, value) in &config {
        let keys: Vec<String> = match value.as_table() {
            Some(section) => section.keys().cloned().collect(),
            None => vec![key.clone()],
        };
        for k in keys {
            if !doc.contains(&format!("`{k}`")) && !doc.contains(&format!("{k} = ")) {
                missing.push(format!("[{key}] {k}"));
            }
        }
    }
    missing.dedup();
    assert!(missing.is_empty(), "docs/configuration.md does not name: {missing:?}");
}

/// `--engine pulley`: the same guests and the same limits, on wasmtime's bytecode interpreter —
/// its artifacts kept in the compile cache apart from native code's.
#[test]
fn pulley_runs_the_guests_with_the_same_results_and_limits() {
    let cache = tempfile::tempdir().unwrap();
    let pulley = |args: &[&str]| spore_with_cache(cache.path()).args(["run", "--engine", "pulley"]).args(args).seen();
    let seen = pulley(&[guest("hello").to_str().unwrap()]);
    assert_eq!((seen.code, seen.stdout.as_str()), (0, "Hello from Spore!\n"), "{seen:?}");
    let seen = pulley(&[guest("nbody").to_str().unwrap(), "1000"]);
    assert_eq!(seen.stdout, "-0.169075164\n-0.169087605\n", "{seen:?}");
    let seen = pulley(&[guest("exit-code").to_str().unwrap(), "3"]);
    assert_eq!(seen.code, 3, "{seen:?}");
    let seen = pulley(&[guest("trap").to_str().unwrap()]);
    assert_eq!(seen.code, 134, "{seen:?}");
    let seen = pulley(&["--timeout", "300ms", guest("spin").to_str().unwrap()]);
    assert_eq!(seen.code, 124, "{seen:?}");
    let seen = pulley(&["--memory", "16M", guest("membomb").to_str().unwrap()]);
    assert_eq!(seen.code, 137, "{seen:?}");

    // Native code for the same guest goes to an engine directory of its own.
    let engines = |dir: &std::path::Path| {
        std::fs::read_dir(dir).unwrap().filter_map(Result::ok).filter(|e| e.path().is_dir()).count()
    };
    assert_eq!(engines(cache.path()), 1);
    let seen = spore_with_cache(cache.path()).args(["run", guest("hello").to_str().unwrap()]).seen();
    assert_eq!(seen.code, 0, "{seen:?}");
    assert_eq!(engines(cache.path()), 2, "native and Pulley artifacts are kept apart");

    let seen =
        spore_with_cache(cache.path()).args(["run", "--engine", "wasmi", guest("hello").to_str().unwrap()]).seen();
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("here: native or pulley"), "{seen:?}");
}
