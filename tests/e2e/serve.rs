//! `spore serve` and `spore up` through the real binary and a real HTTP client: wasi:http
//! apps, limits, key-value on the embedded store and on a real redis-server, config,
//! outbound HTTP through the allowlist, and Spin-style manifests.

use crate::support::peers::RedisServer;
use crate::support::served::{Served, exchange, request};
use crate::support::*;
use std::io::{Read, Write};
use std::process::Command;

/// `spore` with its own data dir (embedded key-value stores live there).
fn spore_in(dir: &std::path::Path) -> Command {
    let mut cmd = spore();
    cmd.env("SPORE_DATA_DIR", dir.join("data")).env("SPORE_STORE", dir.join("store"));
    cmd
}

fn serve(dir: &std::path::Path, args: &[&str]) -> Served {
    let mut cmd = spore_in(dir);
    cmd.arg("serve").args(args);
    Served::start(cmd, dir)
}

#[test]
fn serves_a_wasi_http_app_with_limits_and_a_graceful_stop() {
    serves_with_limits_and_a_graceful_stop("http-hello");
}

#[test]
fn serves_a_wasi_0_3_http_app_with_the_same_limits_and_stop() {
    serves_with_limits_and_a_graceful_stop("http-hello-p3");
}

/// One app of http-hello's routes (WASI 0.2 or 0.3) through `spore serve`.
fn serves_with_limits_and_a_graceful_stop(app: &str) {
    let dir = tempfile::tempdir().unwrap();
    let hello = guest(app);
    let mut s = serve(
        dir.path(),
        &["--request-timeout", "1s", "--max-body", "1K", "-e", "COLOUR=green", hello.to_str().unwrap()],
    );
    assert_eq!(s.get("/abc"), (200, "Hello from Spore over HTTP at /abc\n".into()));
    assert_eq!(s.request("POST", "/echo", b"ping"), (200, "ping".into()));
    assert_eq!(s.get("/env/COLOUR"), (200, "green".into()), "flags reach each request's sandbox");
    let (status, _) = s.request("POST", "/echo", &[b'x'; 2000]);
    assert_eq!(status, 413, "Content-Length over --max-body");
    // A body that arrives without a length is cut at the limit; the guest sees the error.
    let (status, _) = request(
        &s.addr,
        "POST",
        "/echo",
        &[("transfer-encoding", "chunked")],
        b"7D0\r\n".iter().chain(&[b'y'; 2000]).chain(b"\r\n0\r\n\r\n").copied().collect::<Vec<_>>().as_slice(),
    );
    assert_eq!(status, 400, "{}", s.output());
    let started = std::time::Instant::now();
    assert_eq!(s.get("/slow").0, 504);
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(s.get("/trap").0, 500);
    assert_eq!(s.get("/after-the-trap").0, 200, "one failing request does not take the app down");
    // Headers over the limit.
    let big = "v".repeat(80 << 10);
    assert_eq!(request(&s.addr, "GET", "/", &[("x-big", &big)], b"").0, 431);

    let out = s.output();
    assert!(out.contains("\"GET /abc\" 200") && out.contains(&format!("{app}.wasm")), "access log: {out}");
    assert!(out.contains("the app trapped") && out.contains("answered 500"), "{out}");
    assert!(out.contains("answered 504"), "{out}");

    // Graceful: a request in flight when SIGTERM arrives still gets its answer.
    let addr = s.addr.clone();
    let slow = std::thread::spawn(move || {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.write_all(format!("GET /x HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes()).unwrap();
        let mut text = String::new();
        let _ = c.read_to_string(&mut text);
        text
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(s.stop(), 0);
    assert!(slow.join().unwrap().starts_with("HTTP/1.1 200"), "in-flight request finished");
    assert!(s.output().contains("Stopped"));
}

#[test]
fn a_component_that_is_not_an_http_app_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = spore_in(dir.path()).args(["serve", "--addr", "127.0.0.1:0"]).arg(guest("hello-p2")).output().unwrap();
    let seen = Seen::from(out);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("is not an HTTP app") && seen.stderr.contains("wasi:cli/command world"), "{seen:?}");
    // And an HTTP app is not a command.
    let seen = spore_in(dir.path()).arg("run").arg(guest("http-hello")).seen();
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("spore serve"), "{seen:?}");
}

/// The counter app on a store: grants, results, and what a refused store looks like.
fn counter(dir: &std::path::Path, extra: &[&str]) -> Served {
    let kv = guest("http-kv");
    let mut args = vec!["--key-value", "default"];
    args.extend_from_slice(extra);
    args.push(kv.to_str().unwrap());
    let mut cmd = spore_in(dir);
    cmd.arg("serve").args(&args);
    Served::start(cmd, dir)
}

#[test]
fn key_value_on_the_embedded_store_is_granted_by_name_and_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = counter(dir.path(), &[]);
    assert_eq!(s.get("/count"), (200, "1 1\n".into()));
    assert_eq!(s.get("/count"), (200, "2 2\n".into()));
    assert_eq!(s.get("/count?store=secrets"), (403, "access-denied\n".into()));
    assert!(s.output().contains("denied opening store \"secrets\""), "{}", s.output());
    assert_eq!(s.stop(), 0);
    let s = counter(dir.path(), &[]);
    assert_eq!(s.get("/count"), (200, "3 3\n".into()), "the embedded store survives a restart");
}

#[test]
fn a_store_over_its_quota_refuses_the_write_with_the_interfaces_error_and_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("runtime-config.toml");
    // "hits" and one digit fill 5 bytes; the tenth count needs a second digit.
    std::fs::write(&config, "[key_value_store.default]\nmax_bytes = 5\n").unwrap();
    let s = counter(dir.path(), &["--runtime-config", config.to_str().unwrap()]);
    for n in 1..=9 {
        assert_eq!(s.get("/count"), (200, format!("{n} {n}\n")));
    }
    let (status, body) = s.get("/count");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("store default is full") && body.contains("max_bytes of 5"), "{body}");
    assert!(s.output().contains("key-value: store default is full"), "a log line: {}", s.output());
    assert_eq!(s.get("/count"), (503, body), "nothing was written: still 9");
}

#[test]
fn two_servers_run_side_by_side_and_a_shared_store_file_names_its_holder() {
    let dir = tempfile::tempdir().unwrap();
    let first = counter(dir.path(), &[]);
    assert_eq!(first.get("/count"), (200, "1 1\n".into()));
    // Another server on this machine whose app uses no store starts and serves (before, it
    // failed at start on the store file's lock).
    let hello = serve(dir.path(), &[guest("http-hello").to_str().unwrap()]);
    assert_eq!(hello.get("/x").0, 200, "{}", hello.output());
    // One whose app uses the same store file gets the interface's error, naming the file
    // and the process that holds it.
    let second = counter(dir.path(), &[]);
    let (status, body) = second.get("/count");
    assert_eq!(status, 503, "{body}");
    let holder = format!("held by process {}", first.pid());
    assert!(body.contains("default.redb") && body.contains(&holder), "{body}");
    assert_eq!(first.get("/count"), (200, "2 2\n".into()), "the first goes on");
}

#[test]
fn key_value_on_redis_gives_the_same_results_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(0);
    let port = redis.port;
    let config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &config,
        format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{port}\"\n[key_value_store.default.tls]\n"),
    )
    .unwrap();
    let s = counter(dir.path(), &["--runtime-config", config.to_str().unwrap()]);
    assert!(s.output().contains("[key_value_store.default] tls is not supported"), "{}", s.output());
    assert_eq!(s.get("/count"), (200, "1 1\n".into()));
    assert_eq!(s.get("/count"), (200, "2 2\n".into()));
    drop(redis);
    let (status, body) = s.get("/count");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(&format!("127.0.0.1:{port}")), "the interface's error names Redis: {body}");
    assert!(s.output().contains("key-value: redis"), "a log line: {}", s.output());
    let _redis = RedisServer::start(port);
    assert_eq!(s.get("/count"), (200, "1 1\n".into()), "back (a fresh Redis: the counter starts again)");
}

#[test]
fn config_variables_reach_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let app = guest("http-config");
    let s = serve(dir.path(), &["--var", "greeting=hi there", app.to_str().unwrap()]);
    assert_eq!(s.get("/greeting"), (200, "hi there".into()));
    assert_eq!(s.get("/missing"), (404, "unset".into()));
}

#[test]
fn outbound_http_goes_only_where_it_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _up) = peers::upstream();
    let fetch = guest("http-fetch");
    let url = format!("/?url=http://127.0.0.1:{port}/x");

    let s = serve(dir.path(), &[fetch.to_str().unwrap()]);
    let (status, body) = s.get(&url);
    assert_eq!(status, 502);
    assert!(body.contains("HttpRequestDenied"), "{body}");
    assert!(s.output().contains(&format!("denied http://127.0.0.1:{port}")), "{}", s.output());
    drop(s);

    let grant = format!("http://127.0.0.1:{port}");
    let s = serve(dir.path(), &["--allow-outbound", &grant, fetch.to_str().unwrap()]);
    assert_eq!(s.get(&url), (200, "200 upstream ok".into()));
    drop(s);

    // A wildcard grant does not reach loopback.
    let s = serve(dir.path(), &["--allow-outbound", "*://*:*", fetch.to_str().unwrap()]);
    let (status, body) = s.get(&url);
    assert!(status == 502 && body.contains("HttpRequestDenied"), "{status} {body}");
    assert!(s.output().contains("private or loopback"), "{}", s.output());

    let seen = spore_in(dir.path()).args(["serve", "--allow-outbound", "ftp://x"]).arg(&fetch).seen();
    assert_eq!(seen.code, 125);
    assert!(seen.stderr.contains("\"ftp://x\"") && seen.stderr.contains("scheme"), "{seen:?}");
}

#[test]
fn up_runs_a_spin_manifest_with_routes_and_variables() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::copy(guest("http-hello"), app.join("hello.wasm")).unwrap();
    std::fs::copy(guest("http-config"), app.join("config.wasm")).unwrap();
    std::fs::copy(guest("http-kv"), app.join("kv.wasm")).unwrap();
    std::fs::write(
        app.join("spin.toml"),
        r#"spin_manifest_version = 2
[application]
name = "demo"
description = "two components"
[variables]
who = { default = "world" }
[[trigger.http]]
route = "/..."
component = "hello"
[[trigger.http]]
route = "/config/..."
component = "config"
[[trigger.http]]
route = "/count"
component = "kv"
[component.hello]
source = "hello.wasm"
environment = { MODE = "manifest" }
[component.config]
source = "config.wasm"
[component.config.variables]
message = "hello, {{ who }}"
[component.kv]
source = "kv.wasm"
key_value_stores = ["default"]
"#,
    )
    .unwrap();
    let mut cmd = spore_in(dir.path());
    cmd.args(["up", "-f"]).arg(app.join("spin.toml")).args(["--var", "who=spore"]);
    let s = Served::start(cmd, dir.path());
    assert!(s.output().contains("description is not supported"), "{}", s.output());
    assert_eq!(s.get("/env/MODE"), (200, "manifest".into()));
    // The config component is mounted under /config/...: it sees its own path.
    assert_eq!(s.get("/config/message"), (200, "hello, spore".into()));
    assert_eq!(s.get("/count"), (200, "1 1\n".into()));

    // A manifest mistake names the file and line.
    std::fs::write(app.join("bad.toml"), "[[trigger.http]]\nroute = \"/x\"\ncomponent = \"nope\"\n").unwrap();
    let seen = spore_in(dir.path()).args(["up", "-f"]).arg(app.join("bad.toml")).seen();
    assert_eq!(seen.code, 125);
    assert!(seen.stderr.contains("bad.toml:3:") && seen.stderr.contains("nope"), "{seen:?}");
}

/// The rest of what Spin users write in a spin.toml: a base for every route, a static response,
/// a private component, files picked by glob less `exclude_files`, a secret variable; and
/// Spin's request headers, which a client cannot forge.
#[test]
fn up_serves_static_responses_private_components_a_base_and_picked_files() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    for (file, text) in
        [("assets/a.txt", "a"), ("assets/b.md", "b"), ("assets/private/k.txt", "key"), ("docs/readme", "read me")]
    {
        std::fs::create_dir_all(app.join(file).parent().unwrap()).unwrap();
        std::fs::write(app.join(file), text).unwrap();
    }
    std::fs::copy(guest("http-hello"), app.join("hello.wasm")).unwrap();
    std::fs::write(
        app.join("spin.toml"),
        r#"spin_manifest_version = 2
[application]
name = "shop"
[application.trigger.http]
base = "/shop"
[variables]
token = { default = "t0ken", secret = true }
[[trigger.http]]
route = "/web/..."
component = "web"
[[trigger.http]]
route = "/health"
static_response = { status_code = 203, headers = { x-kind = "static" }, body = "fine" }
[[trigger.http]]
route = { private = true }
component = "hidden"
[component.web]
source = "hello.wasm"
files = ["assets/**/*.txt", { source = "docs", destination = "/d" }]
exclude_files = ["assets/private/**"]
environment = { TOKEN = "{{ token }}" }
[component.hidden]
source = "hello.wasm"
"#,
    )
    .unwrap();
    let staging = dir.path().join("tmp");
    std::fs::create_dir(&staging).unwrap();
    let mut cmd = spore_in(dir.path());
    cmd.env("TMPDIR", &staging).args(["up", "-f"]).arg(app.join("spin.toml"));
    let mut s = Served::start(cmd, dir.path());
    assert_eq!(s.get("/shop/web/file/assets/a.txt"), (200, "a".into()));
    assert_eq!(s.get("/shop/web/file/d/readme"), (200, "read me".into()));
    assert_eq!(s.get("/shop/web/file/assets/b.md").0, 404, "not picked by the glob");
    assert_eq!(s.get("/shop/web/file/assets/private/k.txt").0, 404, "excluded");
    assert_eq!(s.get("/shop/web/env/TOKEN"), (200, "t0ken".into()));
    let forged = [("spin-path-info", "/forged"), ("spin-path-match-x", "forged")];
    let seen = |path: &str| request(&s.addr, "GET", path, &forged, b"");
    assert_eq!(seen("/shop/web/header/spin-path-info"), (200, "/header/spin-path-info".into()));
    assert_eq!(seen("/shop/web/header/spin-matched-route"), (200, "/shop/web/...".into()));
    assert_eq!(seen("/shop/web/header/spin-component-route"), (200, "/shop/web".into()));
    assert_eq!(seen("/shop/web/header/spin-path-match-x"), (200, "-".into()));
    let (status, url) = seen("/shop/web/header/spin-full-url?q=1");
    assert_eq!((status, url), (200, format!("http://{}/shop/web/header/spin-full-url?q=1", s.addr)));
    let health = String::from_utf8(exchange(&s.addr, "GET", "/shop/health", &[], b"")).unwrap();
    assert!(
        health.starts_with("HTTP/1.1 203") && health.contains("x-kind: static") && health.ends_with("fine"),
        "{health}"
    );
    // The base applies to every route; the private component has none.
    assert_eq!(s.get("/web/file/assets/a.txt").0, 404);
    assert_eq!(s.get("/shop/hidden").0, 404);
    assert!(!s.output().contains("t0ken"), "a secret is never shown: {}", s.output());
    // The copied files go with the server.
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 1);
    assert_eq!(s.stop(), 0);
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0, "the staged files are removed");
}

/// The answer to a GET of `path` once something listens at `addr` (a deployed app's server
/// comes up just after its deploy returns); `(0, "")` if nothing does within 2 s.
fn first_answer(addr: &str, path: &str) -> (u16, String) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return request(addr, "GET", path, &[], b"");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (0, String::new())
}

#[test]
fn the_daemon_serves_http_apps_through_the_same_server() {
    let d = Daemon::start(&[]);
    let port = peers::free_port();
    let listen = format!("127.0.0.1:{port}");
    let kv = guest("http-kv");
    let seen =
        d.run(["deploy", "--name", "counter", "--http", &listen, "--key-value", "default", kv.to_str().unwrap()]);
    assert_eq!(seen.code, 0, "{seen:?}");
    d.wait_for("counter", 10, |r| r["state"] == "running");
    let answer = first_answer(&listen, "/count");
    assert_eq!(answer, (200, "1 1\n".into()), "daemon log:\n{}", d.log());
    assert_eq!(request(&listen, "GET", "/count", &[], b""), (200, "2 2\n".into()));
    // Another app granted `default` gets its own `default`, as in Spin (before, both shared
    // one store: this answered "3 3").
    let other = format!("127.0.0.1:{}", peers::free_port());
    let seen = d.run(["deploy", "--name", "other", "--http", &other, "--key-value", "default", kv.to_str().unwrap()]);
    assert_eq!(seen.code, 0, "{seen:?}");
    d.wait_for("other", 10, |r| r["state"] == "running");
    let answer = first_answer(&other, "/count");
    assert_eq!(answer, (200, "1 1\n".into()));
    assert_eq!(d.run(["rm", "-f", "other"]).code, 0);
    // A stop is a graceful shutdown: the port closes and the sandbox ends cleanly.
    let seen = d.run(["stop", "counter"]);
    assert_eq!(seen.code, 0, "{seen:?}");
    let record = d.wait_for("counter", 10, |r| r["state"] == "exited");
    assert_eq!(record["exit"], serde_json::json!({"kind": "exited", "code": 0}), "{record}");
    assert!(std::net::TcpStream::connect(&listen).is_err());

    // A WASI 0.3 app (wasi:http/handler@0.3.0) through the same server.
    let p3 = format!("127.0.0.1:{}", peers::free_port());
    let seen = d.run(["deploy", "--name", "p3", "--http", &p3, guest("http-hello-p3").to_str().unwrap()]);
    assert_eq!(seen.code, 0, "{seen:?}");
    d.wait_for("p3", 10, |r| r["state"] == "running");
    let answer = first_answer(&p3, "/abc");
    assert_eq!(answer, (200, "Hello from Spore over HTTP at /abc\n".into()), "daemon log:\n{}", d.log());
    assert_eq!(request(&p3, "POST", "/echo", &[("content-length", "4")], b"ping"), (200, "ping".into()));
    assert_eq!(request(&p3, "GET", "/trap", &[], b"").0, 500);
    assert_eq!(d.run(["rm", "-f", "p3"]).code, 0);

    // An HTTP app needs a listen address, and a command cannot have one.
    let seen = d.run(["deploy", "--name", "x", kv.to_str().unwrap()]);
    assert_ne!(seen.code, 0);
    assert!(seen.stderr.contains("is an HTTP app") && seen.stderr.contains("spec.http.listen"), "{seen:?}");
    let seen = d.run(["deploy", "--name", "y", "--http", &listen, guest("hello").to_str().unwrap()]);
    assert_ne!(seen.code, 0);
    assert!(seen.stderr.contains("not an HTTP app"), "{seen:?}");
}

/// Spin apps as Spin users build them — spin-sdk 7 (WASI 0.3, Spin 3's interfaces) and
/// spin-sdk 5 (WASI 0.2, Spin 2's) — as two components of one spin.toml under `spore up`: what a
/// client of each route sees. The components share the app's `default` store and database,
/// as in Spin, whichever interface version each uses.
#[test]
fn up_runs_spin_sdk_7_and_5_apps_with_their_stores_variables_and_outbound_calls() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    for sdk in ["spin7", "spin5"] {
        std::fs::copy(guest(sdk), app.join(format!("{sdk}.wasm"))).unwrap();
    }
    let component = |id: &str| {
        format!(
            r#"[[trigger.http]]
route = "/{id}/..."
component = "{id}"
[component.{id}]
source = "{id}.wasm"
key_value_stores = ["default"]
sqlite_databases = ["default"]
allowed_outbound_hosts = ["http://127.0.0.1:{{{{ upstream_port }}}}"]
[component.{id}.variables]
greeting = "{{{{ greeting }}}}"
upstream = "http://127.0.0.1:{{{{ upstream_port }}}}/up"
"#
        )
    };
    let manifest = format!(
        "spin_manifest_version = 2\n[application]\nname = \"spin\"\n[variables]\ngreeting = {{ default = \"Hello\" }}\nupstream_port = {{ required = true }}\n{}{}",
        component("spin7"),
        component("spin5")
    );
    std::fs::write(app.join("spin.toml"), manifest).unwrap();
    let (port, _upstream) = peers::upstream();
    let up = |extra: &[&str]| {
        let mut cmd = spore_in(dir.path());
        cmd.args(["up", "-f"]).arg(app.join("spin.toml")).args(extra);
        cmd
    };
    // A required variable without a value is named at start.
    let seen = up(&[]).seen();
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("upstream_port"), "{seen:?}");

    let port_var = format!("upstream_port={port}");
    let s = Served::start(up(&["--var", &port_var, "--var", "greeting=Hi"]), dir.path());
    assert_eq!(s.get("/spin7/hello"), (200, "Hi from spin-sdk 7\n".into()));
    assert_eq!(s.get("/spin5/hello"), (200, "Hi from spin-sdk 5\n".into()));
    assert_eq!(s.get("/spin7/count"), (200, "1 count\n".into()));
    assert_eq!(s.get("/spin5/count"), (200, "2 count\n".into()), "one store, either interface");
    for sdk in ["spin7", "spin5"] {
        assert_eq!(s.get(&format!("/{sdk}/denied")), (200, "refused: Error::AccessDenied\n".into()));
        assert_eq!(s.get(&format!("/{sdk}/fetch")), (200, "200 upstream ok".into()), "{}", s.output());
        assert_eq!(s.get(&format!("/{sdk}/nope")).0, 404);
    }
    assert_eq!(s.get("/spin7/sql"), (200, "rows 1 hi\n".into()));
    assert_eq!(s.get("/spin5/sql"), (200, "rows 2 hi\n".into()));
    // The same store through wasi:keyvalue@0.2.0-draft2 (spin-sdk 5's world).
    let bad_cursor =
        r#"Error::Other("list-keys cursor \"not-a-cursor\" is not one list-keys answered; start again with none")"#;
    assert_eq!(
        s.get("/spin5/wasi-kv"),
        (
            200,
            format!(
                "level -2 3; cas saw None, lost to theirs, now mine; batch b1=x,none=-,b2=y; keys count,level,word; {bad_cursor}; secret Error::AccessDenied\n"
            )
        )
    );
    assert_eq!(
        s.get("/spin5/wasi-kv"),
        (
            200,
            format!(
                "level 1 6; cas saw Some(\"mine\"), lost to theirs, now mine; batch b1=x,none=-,b2=y; keys count,level,word; {bad_cursor}; secret Error::AccessDenied\n"
            )
        )
    );
    assert!(dir.path().join("data/sqlite/default.db").is_file(), "the database is the data dir's");
    drop(s);

    // The data lives on across restarts, as Spin's does.
    let s = Served::start(up(&["--var", &port_var]), dir.path());
    assert_eq!(s.get("/spin5/count"), (200, "3 count,level,word\n".into()), "wasi:keyvalue's keys too");
    assert_eq!(s.get("/spin7/sql"), (200, "rows 3 hi\n".into()));
    assert_eq!(s.get("/spin7/hello"), (200, "Hello from spin-sdk 7\n".into()), "the default greeting");
}

/// The Spin apps deployed to the daemon with the CLI's grants: each app has its own store and
/// database of a label, as in Spin.
#[test]
fn the_daemon_runs_spin_apps_each_with_its_own_store_and_database() {
    let d = Daemon::start(&[]);
    let mut addrs = Vec::new();
    for sdk in ["spin7", "spin5"] {
        let addr = format!("127.0.0.1:{}", peers::free_port());
        let app = guest(sdk);
        let grants = ["--key-value", "default", "--sqlite", "default", "--var", "greeting=Hey"];
        let seen =
            d.run(["deploy", "--name", sdk, "--http", &addr].into_iter().chain(grants).chain([app.to_str().unwrap()]));
        assert_eq!(seen.code, 0, "{seen:?}");
        addrs.push((sdk, addr));
    }
    for (sdk, addr) in &addrs {
        let version = &sdk[4..];
        assert_eq!(first_answer(addr, "/hello"), (200, format!("Hey from spin-sdk {version}\n")), "{}", d.log());
        assert_eq!(request(addr, "GET", "/count", &[], b""), (200, "1 count\n".into()), "its own store");
        assert_eq!(request(addr, "GET", "/sql", &[], b""), (200, "rows 1 hi\n".into()), "its own database");
        assert_eq!(request(addr, "GET", "/sql", &[], b""), (200, "rows 2 hi\n".into()));
    }
    // wasi:keyvalue@0.2.0-draft2 in the daemon: the app's own store (spin7's keys are not in it).
    let (status, body) = request(&addrs[1].1, "GET", "/wasi-kv", &[], b"");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("level -2 3; cas saw None, lost to theirs, now mine;")
            && body.contains("keys count,level,word;"),
        "{body}"
    );
    // Without the grant, the database is refused by name.
    let addr = format!("127.0.0.1:{}", peers::free_port());
    let seen = d.run(["deploy", "--name", "nogrant", "--http", &addr, guest("spin7").to_str().unwrap()]);
    assert_eq!(seen.code, 0, "{seen:?}");
    let (status, body) = first_answer(&addr, "/sql");
    assert_eq!(status, 500);
    assert!(body.contains("AccessDenied"), "{body}");
    assert!(d.log().contains("sqlite: denied opening database \"default\""), "{}", d.log());
}
