//! `spore daemon` end to end: the real daemon binary, driven over its socket by the real CLI
//! (and by raw HTTP where the API itself is under test).

use crate::support::*;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

fn g(name: &str) -> String {
    guest(name).to_str().unwrap().to_owned()
}

#[test]
fn lifecycle_deploy_ps_logs_stop_start_kill_rm() {
    let d = Daemon::start(&[]);
    let seen = d.run(["deploy", "--name", "hello", &g("hello")]);
    assert_eq!(seen.code, 0, "{seen:?}");
    assert!(seen.stdout.ends_with("  hello\n"), "{seen:?}");
    let record = d.wait_for("hello", 10, |r| r["state"] == "exited");
    assert_eq!(record["exit"], serde_json::json!({"kind": "exited", "code": 0}));
    assert_eq!(d.run(["logs", "hello"]).stdout, "Hello from Spore!\n");

    // A second deploy of the same bytes skips the upload.
    let seen = d.run(["deploy", "--name", "hello2", &g("hello")]);
    assert!(seen.stderr.contains("already has sha256:"), "{seen:?}");

    assert_eq!(d.run(["deploy", "--name", "ticker", &g("refdaemon"), "1"]).code, 0);
    d.wait_for("ticker", 10, |r| r["state"] == "running");
    let ps = d.run(["ps"]);
    assert!(ps.stdout.contains("ticker") && !ps.stdout.contains("hello"), "ps shows running ones only: {ps:?}");
    let ps = d.run(["ps", "-a"]);
    assert!(ps.stdout.contains("hello") && ps.stdout.contains("exited (0)"), "{ps:?}");

    let seen = d.run(["stop", "-t", "0.2", "ticker"]);
    assert_eq!(seen.code, 0, "{seen:?}");
    let record = d.inspect("ticker");
    assert_eq!((record["state"].as_str(), record["desired"].as_str()), (Some("exited"), Some("stopped")));
    assert_eq!(record["exit"]["kind"], "killed", "{record:#}");

    assert_eq!(d.run(["start", "ticker"]).code, 0);
    d.wait_for("ticker", 10, |r| r["state"] == "running");
    assert_eq!(d.run(["kill", "ticker"]).code, 0);
    assert_eq!(d.inspect("ticker")["exit"]["message"], "killed by request");

    let seen = d.run(["rm", "ticker"]);
    assert_eq!(seen.code, 0, "{seen:?}");
    let seen = d.run(["inspect", "ticker"]);
    assert_eq!(seen.code, 1, "{seen:?}");
    assert!(seen.stderr.contains("no sandbox \"ticker\""), "{seen:?}");
    assert!(!d.dir.path().join("data/logs").read_dir().unwrap().any(|e| {
        let id = record["id"].as_str().unwrap().to_owned();
        e.unwrap().file_name().to_string_lossy().starts_with(&id)
    }));
}

#[test]
fn rm_refuses_a_running_sandbox_without_force() {
    let d = Daemon::start(&[]);
    d.run(["deploy", "--name", "t", &g("refdaemon"), "5"]);
    d.wait_for("t", 10, |r| r["state"] == "running");
    let seen = d.run(["rm", "t"]);
    assert_eq!(seen.code, 1, "{seen:?}");
    assert!(seen.stderr.contains("is running; stop it first"), "{seen:?}");
    assert_eq!(d.run(["rm", "-f", "t"]).code, 0);
}

#[test]
fn deploying_a_name_again_replaces_the_old_version() {
    let d = Daemon::start(&[]);
    d.run(["deploy", "--name", "web", "--replicas", "3", &g("refdaemon"), "5"]);
    let first: Vec<String> =
        (0..3).map(|i| d.inspect(&format!("web-{i}"))["id"].as_str().unwrap().to_owned()).collect();
    let seen = d.run(["deploy", "--name", "web", "--replicas", "2", &g("refdaemon"), "7"]);
    assert!(seen.stderr.contains("replaced 3 sandbox(es) of web"), "{seen:?}");
    let (_, body) = http(&d.socket(), "GET", "/v1/sandboxes?label=spore.app%3Dweb", None);
    let list: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(list.len(), 2);
    for r in &list {
        assert!(!first.contains(&r["id"].as_str().unwrap().to_owned()));
        assert_eq!(r["spec"]["args"], serde_json::json!(["7"]));
    }

    // A redeploy the daemon refuses leaves the running version as it was.
    d.wait_for("web-0", 10, |r| r["state"] == "running");
    let before = d.inspect("web-0")["id"].clone();
    for bad in [
        vec!["deploy", "--name", "web", "--replicas", "2", "--memory", "99G"],
        vec!["deploy", "--name", "web", "--replicas", "2", "--http", "127.0.0.1:18777"],
    ] {
        let seen = d.run(bad.into_iter().chain([g("refdaemon").as_str(), "9"]));
        assert_eq!(seen.code, 125, "{seen:?}");
        assert!(seen.stderr.contains("web was not redeployed; its 2 sandbox(es) were left as they were"), "{seen:?}");
        let record = d.inspect("web-0");
        assert_eq!((&record["id"], record["state"].as_str()), (&before, Some("running")), "{record:#}");
        assert_eq!(record["spec"]["args"], serde_json::json!(["7"]));
    }
    // The app's name addresses all its replicas, as a compose service does.
    d.wait_for("web-1", 10, |r| r["state"] == "running");
    let logs = d.run(["logs", "web"]).stdout;
    assert!(logs.contains("web-0 | tick 0") && logs.contains("web-1 | tick 0"), "{logs}");
    let stats = d.run(["stats", "web"]).stdout;
    assert!(stats.contains("web-0") && stats.contains("web-1"), "{stats}");
    assert_eq!(d.run(["stop", "-t", "0", "web"]).code, 0);
    for r in ["web-0", "web-1"] {
        assert_eq!(d.inspect(r)["desired"], "stopped");
    }
    let seen = d.run(["rm", "web"]);
    assert_eq!(seen.code, 0, "{seen:?}");
    assert!(d.run(["ps", "-aq"]).stdout.trim().is_empty());
    assert!(d.run(["logs", "web"]).stderr.contains("no sandbox \"web\""), "gone, by its name too");

    // Replacing takes the old ones' names and slots: a daemon at capacity redeploys too.
    let d = Daemon::start(&["--capacity", "2"]);
    assert_eq!(d.run(["deploy", "--name", "full", "--replicas", "2", &g("refdaemon"), "5"]).code, 0);
    let seen = d.run(["deploy", "--name", "full", "--replicas", "2", &g("refdaemon"), "6"]);
    assert_eq!(seen.code, 0, "{seen:?}");
    d.wait_for("full-1", 10, |r| r["state"] == "running" && r["spec"]["args"] == serde_json::json!(["6"]));
}

#[test]
fn logs_tail_and_follow() {
    let d = Daemon::start(&[]);
    d.run(["deploy", "--name", "ticker", &g("refdaemon"), "1"]);
    let mut follower = d.cli().args(["logs", "-f", "ticker"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    for expected in ["tick 0", "tick 1", "tick 2"] {
        assert_eq!(lines.next().unwrap().unwrap(), expected);
    }
    follower.kill().unwrap();
    follower.wait().unwrap();
    let tail = d.run(["logs", "--tail", "1", "ticker"]);
    assert_eq!(tail.stdout.lines().count(), 1, "{tail:?}");
    assert!(tail.stdout.starts_with("tick "), "{tail:?}");
    let stamped = d.run(["logs", "-t", "--tail", "1", "ticker"]);
    assert!(stamped.stdout.contains('T') && stamped.stdout.contains("Z tick "), "{stamped:?}");

    // Following a sandbox that ends stops when it ends.
    d.run(["deploy", "--name", "short", &g("hello")]);
    d.wait_for("short", 10, |r| r["state"] == "exited");
    let seen = d.run(["logs", "-f", "short"]);
    assert_eq!((seen.code, seen.stdout.as_str()), (0, "Hello from Spore!\n"), "{seen:?}");
}

#[test]
fn restart_policies() {
    let d = Daemon::start(&[]);
    d.run(["deploy", "--name", "flaky", "--restart", "on-failure:2", &g("exit-code"), "3"]);
    let r = d.wait_for("flaky", 20, |r| r["state"] == "exited" && r["restarts"] == 2);
    assert_eq!(r["exit"]["code"], 3);
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(d.inspect("flaky")["restarts"], 2, "no third restart");
    assert_eq!(d.run(["logs", "flaky"]).stdout, "exiting with 3\n".repeat(3));

    d.run(["deploy", "--name", "fine", "--restart", "on-failure", &g("hello")]);
    let r = d.wait_for("fine", 10, |r| r["state"] == "exited");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(r["restarts"], 0, "a success is not a failure");

    d.run(["deploy", "--name", "loop", "--restart", "always", &g("hello")]);
    d.wait_for("loop", 20, |r| r["restarts"].as_u64() >= Some(3));
    assert_eq!(d.run(["stop", "-t", "1", "loop"]).code, 0);
    let stopped = d.inspect("loop")["restarts"].as_u64().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(d.inspect("loop")["restarts"].as_u64().unwrap(), stopped, "stop ends the restarts");

    let events = d.run(["ps", "-a", "--json"]);
    assert!(events.stdout.contains("\"restart\": \"always\""), "{events:?}");
}

#[test]
fn config_defaults_apply_to_creates_that_leave_them_unset() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("daemon.toml");
    std::fs::write(&config, "[defaults]\nmemory = \"16M\"\nrestart = \"on-failure:1\"\n").unwrap();
    let d = Daemon::start(&["--config", config.to_str().unwrap()]);
    d.run(["deploy", "--name", "bomb", &g("membomb")]);
    let r = d.wait_for("bomb", 20, |r| r["state"] == "exited" && r["restarts"] == 1);
    assert_eq!(r["exit"]["limit"], "memory", "{r:#}");
    assert_eq!(r["spec"]["limits"]["memory_bytes"], 16 << 20);
    assert_eq!(r["restart"], "on-failure:1");
    // What the request says wins over the defaults.
    d.run(["deploy", "--name", "ok", "--restart", "no", "--memory", "32M", &g("hello")]);
    let r = d.wait_for("ok", 10, |r| r["state"] == "exited");
    assert_eq!((r["restart"].as_str(), r["spec"]["limits"]["memory_bytes"].as_u64()), (Some("no"), Some(32 << 20)));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[defaults]\nmemroy = \"1M\"\n").unwrap();
    let seen = spore_run(["daemon", "--config", bad.to_str().unwrap()]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("unknown field `memroy`"), "{seen:?}");
}

#[test]
fn sandboxes_survive_a_sigkill_of_the_daemon_exactly_once() {
    let mut d = Daemon::start(&[]);
    // Upload the program once, then create sandboxes one by one over raw HTTP while the daemon
    // is killed at an arbitrary moment.
    let wasm = std::fs::read(guest("refdaemon")).unwrap();
    let digest = format!("sha256:{}", sha256_hex(&wasm));
    let (status, body) = http(&d.socket(), "PUT", &format!("/v1/programs/{digest}"), Some(("application/wasm", &wasm)));
    assert_eq!(status, 201, "{body}");
    let socket = d.socket();
    let creator = std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        for i in 0..10_000 {
            let body = format!(r#"{{"name":"s-{i}","spec":{{"program":{{"digest":"{digest}"}},"args":["10"]}}}}"#);
            match http(&socket, "POST", "/v1/sandboxes", Some(("application/json", body.as_bytes()))).0 {
                201 => acknowledged.push(format!("s-{i}")),
                _ => break,
            }
        }
        acknowledged
    });
    std::thread::sleep(std::time::Duration::from_millis(700));
    d.kill9();
    let acknowledged = creator.join().unwrap();
    assert!(acknowledged.len() > 5, "the daemon should have created some before the kill");

    d.spawn();
    let (_, body) = http(&d.socket(), "GET", "/v1/sandboxes", None);
    let list: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = list.iter().map(|r| r["name"].as_str().unwrap()).collect();
    let unique: std::collections::HashSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "no sandbox duplicated");
    for name in &acknowledged {
        assert!(unique.contains(name.as_str()), "acknowledged sandbox {name} was lost");
    }
    // Everything that should run runs again (acknowledged ones plus any committed but unanswered).
    for r in &list {
        let name = r["name"].as_str().unwrap();
        d.wait_for(name, 20, |r| r["state"] == "running");
    }
    let logs = d.run(["logs", acknowledged[0].as_str()]);
    assert!(logs.stdout.starts_with("tick 0\n"), "{logs:?}");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Uploads the program at `path` to `d`; its digest.
fn upload(d: &Daemon, path: &std::path::Path) -> String {
    let wasm = std::fs::read(path).unwrap();
    let digest = format!("sha256:{}", sha256_hex(&wasm));
    let (status, body) = http(&d.socket(), "PUT", &format!("/v1/programs/{digest}"), Some(("application/wasm", &wasm)));
    assert!(status == 200 || status == 201, "upload: {status} {body}");
    digest
}

#[test]
fn tcp_requires_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token-for-tests\n").unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start(&["--listen", &addr, "--token-file", token_file.to_str().unwrap()]);
    let tcp = format!("tcp://{addr}");
    let seen = spore().args(["--host", &tcp, "ps"]).seen();
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("missing or wrong bearer token"), "{seen:?}");
    let seen = spore().args(["--host", &tcp, "--token", "wrong-token-wrong-token", "ps"]).seen();
    assert!(seen.stderr.contains("bearer token"), "{seen:?}");
    let seen = spore().args(["--host", &tcp, "ps"]).env("SPORE_TOKEN", "s3cret-token-for-tests").seen();
    assert_eq!(seen.code, 0, "{seen:?}");
    drop(d);

    // --listen without a token file is refused at start.
    let seen = Seen::from(
        spore()
            .args(["daemon", "--listen", "127.0.0.1:0", "--socket"])
            .arg(dir.path().join("x.sock"))
            .arg("--data-dir")
            .arg(dir.path().join("x"))
            .output()
            .unwrap(),
    );
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("needs --token-file"), "{seen:?}");
}

#[test]
fn the_socket_is_owner_only_and_a_second_daemon_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let d = Daemon::start(&[]);
    let mode = std::fs::metadata(d.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let seen = Seen::from(
        spore()
            .arg("daemon")
            .arg("--socket")
            .arg(d.socket())
            .arg("--data-dir")
            .arg(d.dir.path().join("other"))
            .output()
            .unwrap(),
    );
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("another spore daemon is already listening"), "{seen:?}");
}

#[test]
fn runaways_are_stopped_by_their_limits_while_a_neighbour_keeps_going() {
    let d = Daemon::start(&[]);
    d.run(["deploy", "--name", "neighbour", &g("refdaemon"), "1"]);
    d.wait_for("neighbour", 10, |r| r["state"] == "running");
    let flood_started = now_ms();
    d.run(["deploy", "--name", "spin", "--cpu-time", "500ms", &g("spin")]);
    d.run(["deploy", "--name", "bomb", "--memory", "16M", &g("membomb")]);
    d.run(["deploy", "--name", "flood", "--timeout", "3s", &g("flood")]);

    let spin = d.wait_for("spin", 20, |r| r["state"] == "exited");
    assert_eq!(spin["exit"]["limit"], "cpu_time", "{spin:#}");
    let bomb = d.wait_for("bomb", 20, |r| r["state"] == "exited");
    assert_eq!(bomb["exit"]["limit"], "memory", "{bomb:#}");
    let flood = d.wait_for("flood", 20, |r| r["state"] == "exited");
    assert_eq!(flood["exit"]["limit"], "timeout", "{flood:#}");
    let flood_ended = now_ms();

    let stats = d.run(["--json", "stats", "flood"]);
    let stats: Vec<serde_json::Value> = serde_json::from_str(&stats.stdout).unwrap();
    assert!(stats[0]["log_dropped_bytes"].as_u64().unwrap() > 0, "the flood's excess is dropped and counted");
    let flood_log = d.run(["logs", "flood"]);
    assert!(flood_log.stderr.contains("bytes of output dropped"), "a marker says so");

    // The neighbour kept ticking through the whole episode and the API kept answering.
    let (_, body) = http(&d.socket(), "GET", &format!("/v1/sandboxes/neighbour/logs?since={flood_started}"), None);
    let during: Vec<u64> = body
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|l| l["t"].as_u64().unwrap())
        .filter(|&t| t <= flood_ended)
        .collect();
    assert!(during.len() >= 2, "the neighbour logged during the flood: {body}");
    assert_eq!(d.inspect("neighbour")["state"], "running");
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[test]
fn bad_requests_get_4xx_with_the_reason_and_the_daemon_lives_on() {
    let d = Daemon::start(&["--capacity", "2"]);
    let s = d.socket();
    let post = |path: &str, body: &str| http(&s, "POST", path, Some(("application/json", body.as_bytes())));

    let (status, body) = post("/v1/sandboxes", "{not json");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid request body"), "{body}");
    let (status, body) = post("/v1/sandboxes", r#"{"spec": {"program": {"digest": "sha256:00"}}, "colour": "red"}"#);
    assert_eq!(status, 400);
    assert!(body.contains("unknown field `colour`"), "{body}");
    let (status, body) = post("/v1/sandboxes", r#"{"spec": {"programm": {}}}"#);
    assert_eq!(status, 400);
    assert!(body.contains("unknown field `programm`"), "{body}");

    let missing = format!("sha256:{}", "ab".repeat(32));
    // The app label names files on disk (the app's SQLite databases): a path is refused.
    let (status, body) = post(
        "/v1/sandboxes",
        &format!(r#"{{"spec": {{"program": {{"digest": "{missing}"}}}}, "labels": {{"spore.app": "../../x"}}}}"#),
    );
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("label spore.app: name \"../../x\""), "{body}");
    let (status, body) = post("/v1/sandboxes", &format!(r#"{{"spec": {{"program": {{"digest": "{missing}"}}}}}}"#));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("is not on this daemon") && body.contains("upload it first"), "{body}");

    let (status, body) = http(&s, "GET", "/v1/sandboxes/nope", None);
    assert_eq!(status, 404);
    assert!(error_of(&body).contains("no sandbox \"nope\""), "{body}");
    assert_eq!(http(&s, "GET", "/v1/nothing", None).0, 404);

    // A wasm that does not compile: the compile error comes back with the upload.
    let mut broken = std::fs::read(guest("hello")).unwrap();
    broken.truncate(broken.len() / 2);
    let digest = format!("sha256:{}", sha256_hex(&broken));
    let (status, body) = http(&s, "PUT", &format!("/v1/programs/{digest}"), Some(("application/wasm", &broken)));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("invalid WebAssembly module"), "{body}");
    let (status, body) =
        http(&s, "PUT", &format!("/v1/programs/{missing}"), Some(("application/wasm", b"\0asm\x01\0\0\0")));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("does not match its digest"), "{body}");

    let (status, body) = post(
        "/v1/sandboxes",
        &format!(
            r#"{{"spec": {{"program": {{"digest": "{missing}"}}, "limits": {{"memory_bytes": 1099511627776}}}}}}"#
        ),
    );
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("is more than this daemon allows (64 MiB, [policy] max_memory"), "{body}");

    // Over capacity: 429 with the reason, and nothing half-created.
    let seen = d.run(["deploy", "--name", "many", "--replicas", "3", &g("refdaemon"), "5"]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("at capacity: 0 of 2 sandbox slots are taken"), "{seen:?}");
    let (_, body) = http(&s, "GET", "/v1/sandboxes", None);
    assert_eq!(body, "[]");

    // A grace period too long to add to the present (it used to panic the handler).
    for t in ["1e20", "1e19", "-1", "NaN"] {
        let (status, body) = post(&format!("/v1/sandboxes/many-0/stop?timeout={t}"), "");
        assert_eq!(status, 400, "timeout={t}: {body}");
    }

    assert_eq!(http(&s, "GET", "/v1/health", None).0, 200, "the daemon survived all of it");
}

#[test]
fn health_openapi_metrics_and_events() {
    let d = Daemon::start(&[]);
    let (status, body) = http(&d.socket(), "GET", "/v1/openapi.json", None);
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/v1/sandboxes/{id}/logs"].is_object());

    let mut events = d.cli().args(["events"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(events.stdout.take().unwrap()).lines();
    std::thread::sleep(std::time::Duration::from_millis(200));
    d.run(["deploy", "--name", "hello", &g("hello")]);
    let kinds: Vec<String> = (0..3).map(|_| lines.next().unwrap().unwrap()).collect();
    events.kill().unwrap();
    events.wait().unwrap();
    assert!(kinds[0].contains(" created ") && kinds[0].contains("hello"), "{kinds:?}");
    assert!(kinds[1].contains(" started "), "{kinds:?}");
    assert!(kinds[2].contains(" exited ") && kinds[2].contains("exited with code 0"), "{kinds:?}");

    d.run(["deploy", "--name", "ticker", &g("refdaemon"), "5"]);
    d.wait_for("ticker", 10, |r| r["state"] == "running");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (_, metrics) = http(&d.socket(), "GET", "/metrics", None);
    assert!(metrics.contains("spore_sandboxes{state=\"exited\"} 1"), "{metrics}");
    assert!(metrics.contains("spore_sandboxes{state=\"running\"} 1"), "{metrics}");
    assert!(metrics.contains("spore_sandbox_starts_total 2"), "{metrics}");
    assert!(metrics.contains("spore_start_latency_seconds{quantile=\"0.5\"} 0.0"), "{metrics}");
}

#[test]
fn no_daemon_means_a_message_saying_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let seen = spore_run(["--host", &format!("unix://{}/none.sock", dir.path().display()), "ps"]);
    assert_eq!(seen.code, 125);
    assert!(seen.stderr.contains("cannot reach the spore daemon") && seen.stderr.contains("spore daemon"), "{seen:?}");
}

#[test]
fn the_operators_policy_bounds_what_a_client_may_ask() {
    let apps = tempfile::tempdir().unwrap();
    let allowed = apps.path().join("allowed");
    std::fs::create_dir(&allowed).unwrap();
    std::fs::write(allowed.join("input"), "from a file\n").unwrap();
    std::os::unix::fs::symlink("/etc", allowed.join("escape")).unwrap();
    let outside = tempfile::tempdir().unwrap();

    // The defaults: nothing of the host, loopback listeners, variables hidden.
    let d = Daemon::start(&[]);
    let seen = d.run(["deploy", "--name", "m", "--dir", &format!("{}:/d", outside.path().display()), &g("hello")]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("is outside the directories this daemon lets a sandbox use (none)"), "{seen:?}");
    assert!(seen.stderr.contains("[policy] mount_roots"), "{seen:?}");
    let seen = d.run(["deploy", "--name", "w", "--http", "0.0.0.0:18099", &g("http-hello")]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("allows listening on 127.0.0.1:1024-65535, [::1]:1024-65535 only"), "{seen:?}");
    assert!(d.run(["ps", "-aq"]).stdout.trim().is_empty(), "nothing was created");

    let digest = upload(&d, &guest("args-env"));
    let create = |body: String| http(&d.socket(), "POST", "/v1/sandboxes", Some(("application/json", body.as_bytes())));
    let (status, body) = create(format!(
        r#"{{"spec": {{"program": {{"digest": "{digest}"}}, "stdio": {{"stdin": {{"file": "/etc/passwd"}}}}}}}}"#
    ));
    assert_eq!(status, 403, "{body}");
    assert!(error_of(&body).contains("[policy] stdin_files"), "{body}");
    let (status, body) =
        create(format!(r#"{{"spec": {{"program": {{"digest": "{digest}"}}, "stdio": {{"stdin": "inherit"}}}}}}"#));
    assert_eq!(status, 400, "{body}");

    // Secrets: hidden in inspect and list; asking to see them is refused by default.
    assert_eq!(d.run(["deploy", "--name", "v", "--var", "api_key=s3cret", &g("hello")]).code, 0);
    let record = d.run(["inspect", "v"]).stdout;
    assert!(record.contains("\"api_key\": \"(secret)\"") && !record.contains("s3cret"), "{record}");
    let (status, body) = http(&d.socket(), "GET", "/v1/sandboxes", None);
    assert!(status == 200 && !body.contains("s3cret"), "{body}");
    let (status, body) = http(&d.socket(), "GET", "/v1/sandboxes/v?secrets=true", None);
    assert_eq!(status, 403, "{body}");
    assert!(error_of(&body).contains("[policy] reveal_variables"), "{body}");
    for action in ["start", "stop", "kill"] {
        let (_, body) = http(&d.socket(), "POST", &format!("/v1/sandboxes/v/{action}"), None);
        assert!(!body.contains("s3cret"), "{action}: {body}");
    }

    // A request body above the policy's cap is refused before it is read whole.
    let big = format!(r#"{{"spec": {{"args": ["{}"]}}}}"#, "x".repeat(2 << 20));
    assert_eq!(create(big).0, 413);
    drop(d);

    // An operator who allows a directory, stdin files, an address, secrets shown; and caps.
    let config = format!(
        "[defaults]\ncpu_time = \"1s\"\n[policy]\nmount_roots = [{:?}]\nstdin_files = true\nlisten = [\"127.0.0.1:*\"]\nreveal_variables = true\nmax_cpu_time = \"2s\"\nmax_open_files = 64\nmax_sandboxes = 3\nmax_batch = 2\n",
        allowed.display().to_string()
    );
    let d = Daemon::start_with_config(&config, &[]);
    let seen = d.run(["deploy", "--name", "ok", "--dir", &format!("{}:/d", allowed.display()), &g("hello")]);
    assert_eq!(seen.code, 0, "{seen:?}");
    // Judged by where it leads: a link inside the root to /etc is outside.
    let seen = d.run(["deploy", "--name", "esc", "--dir", &format!("{}/escape:/d", allowed.display()), &g("hello")]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("mount /d: the host path /etc is outside"), "{seen:?}");
    let digest = upload(&d, &guest("args-env"));
    let create = |body: String| http(&d.socket(), "POST", "/v1/sandboxes", Some(("application/json", body.as_bytes())));
    let input = allowed.join("input").display().to_string();
    let (status, body) = create(format!(
        r#"{{"name": "in", "spec": {{"program": {{"digest": "{digest}"}}, "stdio": {{"stdin": {{"file": "{input}"}}}}}}}}"#
    ));
    assert_eq!(status, 201, "{body}");
    // Read once, at create: the record holds the contents, not a path to reopen.
    assert_eq!(d.inspect("in")["spec"]["stdio"]["stdin"]["bytes"], "from a file\n");
    d.wait_for("in", 10, |r| r["state"] == "exited");
    let seen = d.run(["deploy", "--name", "cpu", "--cpu-time", "5s", &g("hello")]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(
        seen.stderr.contains(
            "spec.limits.cpu_time_ms 5000 ms is more than this daemon allows (2000 ms, [policy] max_cpu_time)"
        ),
        "{seen:?}"
    );
    let seen = d.run(["deploy", "--name", "fds", "--max-open-files", "65", &g("hello")]);
    assert!(seen.code == 125 && seen.stderr.contains("[policy] max_open_files"), "{seen:?}");
    // The operator's default applies under the cap; a limit left unset with no default gets
    // its cap, never more.
    assert_eq!(d.inspect("ok")["spec"]["limits"]["cpu_time_ms"], 1000);
    assert_eq!(d.inspect("ok")["spec"]["limits"]["max_open_files"], 64);
    let (status, body) = http(&d.socket(), "GET", "/v1/sandboxes/ok?secrets=true", None);
    assert_eq!(status, 200, "{body}");

    // Batches and the number of sandboxes kept are capped too.
    let batch = |count: u32| {
        let body = format!(
            r#"{{"template": {{"start": false, "spec": {{"program": {{"digest": "{digest}"}}}}}}, "count": {count}}}"#
        );
        http(&d.socket(), "POST", "/v1/sandboxes/batch", Some(("application/json", body.as_bytes())))
    };
    let (status, body) = batch(3);
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("[policy] max_batch"), "{body}");
    let (status, body) = batch(2);
    assert_eq!(status, 429, "two kept, two more would make four: {body}");
    assert!(error_of(&body).contains("at most 3 sandboxes ([policy] max_sandboxes) and has 2"), "{body}");
    assert_eq!(batch(1).0, 201);
    drop(d);

    // A default above its cap is the operator's mistake, named at start.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("d.toml"), "[defaults]\ntimeout = \"1h\"\n[policy]\nmax_timeout = \"1m\"\n")
        .unwrap();
    let seen = Seen::from(
        std::process::Command::new(env!("CARGO_BIN_EXE_spore"))
            .args(["daemon", "--socket"])
            .arg(dir.path().join("s.sock"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(dir.path().join("d.toml"))
            .output()
            .unwrap(),
    );
    assert_ne!(seen.code, 0);
    assert!(seen.stderr.contains("[defaults] must lie within [policy]"), "{seen:?}");
}

#[test]
fn logs_show_a_guests_terminal_escapes_instead_of_obeying_them() {
    let d = Daemon::start(&[]);
    assert_eq!(d.run(["deploy", "--name", "esc", &g("args-env"), "\x1b[2J\x1b]0;owned\x07"]).code, 0);
    d.wait_for("esc", 10, |r| r["state"] == "exited");
    let shown = d.run(["logs", "esc"]).stdout;
    assert!(shown.contains("\\x1b[2J\\x1b]0;owned\\x07") && !shown.contains('\x1b'), "{shown:?}");
    let raw = d.run(["logs", "--raw", "esc"]).stdout;
    assert!(raw.contains("\x1b[2J\x1b]0;owned\x07"), "{raw:?}");
}

/// A module that takes the compiler a while: `n` functions of arithmetic, `seed` making each
/// module's bytes (and so its compile) its own.
fn slow_to_compile(n: usize, seed: usize) -> Vec<u8> {
    let mut wat = String::from("(module (memory (export \"memory\") 1)");
    for i in 0..n {
        wat.push_str(&format!("(func $f{i} (param i32) (result i32)"));
        for j in 0..40 {
            wat.push_str(&format!(" (local.get 0) (i32.const {}) (i32.mul) (local.set 0)", j + seed));
        }
        wat.push_str(" (local.get 0))");
    }
    wat.push_str(" (func (export \"_start\")))");
    wat::parse_str(&wat).unwrap()
}

#[test]
fn slow_creates_stall_neither_the_api_nor_other_sandboxes() {
    let d = Daemon::start(&[]);
    let store = d.dir.path().join("data/store");
    // Two images, each a wasm that takes a while to compile and 16 MiB of files to unpack.
    for i in 0..2 {
        let ctx = d.dir.path().join(format!("ctx{i}"));
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("app.wasm"), slow_to_compile(6_000, i)).unwrap();
        std::fs::write(ctx.join("data"), vec![i as u8; 16 << 20]).unwrap();
        std::fs::write(ctx.join("Sporefile"), "FROM scratch\nCOPY app.wasm data /\nENTRYPOINT [\"/app.wasm\"]\n")
            .unwrap();
        let seen = Seen::from(
            spore().env("SPORE_STORE", &store).args(["build", "-t", &format!("big{i}")]).arg(&ctx).output().unwrap(),
        );
        assert_eq!(seen.code, 0, "{seen:?}");
    }
    assert_eq!(d.run(["deploy", "--name", "neighbour", &g("refdaemon"), "1"]).code, 0);

    let started = std::time::Instant::now();
    let creates: Vec<_> = (0..2)
        .map(|i| {
            let mut cmd = d.cli();
            cmd.args(["deploy", "--pull", "never", "--name", &format!("big{i}"), &format!("big{i}")]);
            std::thread::spawn(move || cmd.seen())
        })
        .collect();
    let mut slowest = std::time::Duration::ZERO;
    while !creates.iter().all(|c| c.is_finished()) {
        let asked = std::time::Instant::now();
        assert_eq!(http(&d.socket(), "GET", "/v1/health", None).0, 200);
        slowest = slowest.max(asked.elapsed());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let took = started.elapsed();
    for c in creates {
        let seen = c.join().unwrap();
        assert_eq!(seen.code, 0, "{seen:?}");
    }
    // With the work on the runtime's two workers, the API answered only once a create was
    // done: its slowest answer took as long as the creates (measured: 8.6 s of 10.6 s; with
    // the work on the blocking pool, 8 ms).
    assert!(slowest * 4 < took, "the API's slowest answer took {slowest:?} while the creates took {took:?}");
    assert_eq!(d.inspect("neighbour")["state"], "running");
}

/// `python3 -c CODE` as user nobody (65534).
fn as_nobody(code: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", code]);
    cmd
}

#[test]
fn the_api_socket_is_the_users_own_on_both_ends() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test switches users, so it runs as root");
    // A directory others may write is refused: they could swap the socket for their own.
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let seen = Seen::from(
        std::process::Command::new(env!("CARGO_BIN_EXE_spore"))
            .args(["daemon", "--socket"])
            .arg(open.path().join("s.sock"))
            .arg("--data-dir")
            .arg(open.path().join("data"))
            .output()
            .unwrap(),
    );
    assert_ne!(seen.code, 0);
    assert!(seen.stderr.contains("writable by nobody else (it is uid 0, mode 777)"), "{seen:?}");

    // The daemon lets in only its own user (or root), even through a socket made 0666.
    let d = Daemon::start(&[]);
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(d.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let probe = format!(
        "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({:?})\ntry:\n s.sendall(b'GET /v1/health HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n s.settimeout(5)\n print(repr(s.recv(100)))\nexcept OSError:\n print(repr(b''))",
        d.socket().display().to_string()
    );
    let out = as_nobody(&probe).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.trim() == "b''",
        "another user got: {said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(http(&d.socket(), "GET", "/v1/health", None).0, 200, "its own user still gets in");

    // The CLI talks only to its own user's (or root's) daemon, not to a listener planted by
    // another user at the path.
    let planted = tempfile::tempdir().unwrap();
    std::fs::set_permissions(planted.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = planted.path().join("spore.sock");
    let listen = format!(
        "import socket, time; s = socket.socket(socket.AF_UNIX); s.bind({:?}); s.listen(); time.sleep(30)",
        path.display().to_string()
    );
    let mut impostor = as_nobody(&listen).spawn().unwrap();
    for _ in 0..100 {
        if path.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let seen = spore().args(["--host", &format!("unix://{}", path.display()), "ps"]).seen();
    let _ = impostor.kill();
    let _ = impostor.wait();
    assert_ne!(seen.code, 0);
    assert!(seen.stderr.contains("is served by user 65534, neither you (0) nor root; refusing"), "{seen:?}");
}

#[test]
fn the_tcp_api_beyond_loopback_needs_tls_and_the_cli_checks_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token-for-tests\n").unwrap();
    let token = token_file.to_str().unwrap();
    let start = |extra: &[&str]| {
        Seen::from(
            spore()
                .args(["daemon", "--token-file", token, "--socket"])
                .arg(dir.path().join("x.sock"))
                .arg("--data-dir")
                .arg(dir.path().join("x"))
                .args(extra)
                .output()
                .unwrap(),
        )
    };
    // Every interface, in clear: refused, naming the fix.
    let seen = start(&["--listen", "0.0.0.0:0"]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("needs TLS; give --tls-cert FILE --tls-key FILE"), "{seen:?}");

    // A CA and the daemon's certificate, made with openssl as an operator would.
    let openssl = |args: &[&str]| {
        let made = std::process::Command::new("openssl")
            .current_dir(dir.path())
            .args(args)
            .output()
            .expect("openssl is installed by scripts/setup");
        assert!(made.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&made.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509", "-days", "1", "-subj", "/CN=spore-test-ca", "-keyout", "ca.key", "-out", "ca.pem"][..],
            &ec,
        ]
        .concat(),
    );
    openssl(&[&["req", "-subj", "/CN=spore-daemon", "-keyout", "key.pem", "-out", "req.pem"][..], &ec].concat());
    std::fs::write(dir.path().join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "req.pem",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "cert.pem",
    ]);
    let port = peers::free_port();
    let addr = format!("127.0.0.1:{port}");
    let (ca, cert, key) = (dir.path().join("ca.pem"), dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (ca, cert, key) = (ca.to_str().unwrap(), cert.to_str().unwrap(), key.to_str().unwrap());
    let _d = Daemon::start(&["--listen", &addr, "--token-file", token, "--tls-cert", cert, "--tls-key", key]);
    let cli = |args: &[&str]| spore().env("SPORE_TOKEN", "s3cret-token-for-tests").args(args).arg("ps").seen();
    let https = format!("https://{addr}");
    let seen = cli(&["--host", &https, "--tls-ca", ca]);
    assert_eq!(seen.code, 0, "{seen:?}");
    // Not trusted without the CA; and the token never goes out in clear to a TLS port.
    let seen = cli(&["--host", &https]);
    assert_ne!(seen.code, 0);
    assert!(seen.stderr.contains("TLS with the spore daemon") && seen.stderr.contains("--tls-ca"), "{seen:?}");
    let seen = cli(&["--host", &format!("tcp://{addr}")]);
    assert_ne!(seen.code, 0, "{seen:?}");
}

#[test]
fn a_corrupt_state_database_is_named_with_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("state.redb"), vec![0x5a; 8192]).unwrap();
    let seen = Seen::from(
        spore()
            .args(["daemon", "--socket"])
            .arg(dir.path().join("s.sock"))
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap(),
    );
    assert_ne!(seen.code, 0);
    let db = data.join("state.redb").display().to_string();
    assert!(seen.stderr.contains(&format!("cannot open the state database {db}")), "{seen:?}");
    assert!(seen.stderr.contains(&format!("mv {db} {db}.broken")), "{seen:?}");
}

#[test]
fn of_concurrent_creates_with_one_name_exactly_one_wins() {
    let d = Daemon::start(&[]);
    let digest = upload(&d, &guest("refdaemon"));
    for round in 0..5 {
        let name = format!("same-{round}");
        let body = format!(r#"{{"name":"{name}","start":false,"spec":{{"program":{{"digest":"{digest}"}}}}}}"#);
        let racers: Vec<_> = (0..16)
            .map(|_| {
                let (socket, body) = (d.socket(), body.clone());
                std::thread::spawn(move || {
                    http(&socket, "POST", "/v1/sandboxes", Some(("application/json", body.as_bytes()))).0
                })
            })
            .collect();
        let mut statuses: Vec<u16> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        statuses.sort();
        assert_eq!(statuses.iter().filter(|&&s| s == 201).count(), 1, "{statuses:?}");
        assert!(statuses.iter().all(|&s| s == 201 || s == 409), "{statuses:?}");
        let (_, body) = http(&d.socket(), "GET", "/v1/sandboxes", None);
        let listed = serde_json::from_str::<Vec<serde_json::Value>>(&body).unwrap();
        assert_eq!(listed.iter().filter(|r| r["name"] == name.as_str()).count(), 1);
    }
}

#[test]
fn a_remove_racing_starts_and_stops_never_comes_back() {
    let mut d = Daemon::start(&[]);
    let digest = upload(&d, &guest("refdaemon"));
    let mut removed = Vec::new();
    for round in 0..30 {
        let name = format!("r{round}");
        let body = format!(
            r#"{{"name":"{name}","start":false,"spec":{{"program":{{"digest":"{digest}"}},"args":["3600"]}}}}"#
        );
        assert_eq!(http(&d.socket(), "POST", "/v1/sandboxes", Some(("application/json", body.as_bytes()))).0, 201);
        // Starts and stops hammer the sandbox while one client removes it.
        let racers: Vec<_> = ["start", "stop?timeout=0", "start", "stop?timeout=0", "start"]
            .into_iter()
            .map(|action| {
                let (socket, path) = (d.socket(), format!("/v1/sandboxes/{name}/{action}"));
                std::thread::spawn(move || {
                    for _ in 0..5 {
                        http(&socket, "POST", &path, None);
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(round % 5));
        let (status, body) = http(&d.socket(), "DELETE", &format!("/v1/sandboxes/{name}?force=true"), None);
        assert_eq!(status, 204, "{body}");
        removed.push(name);
        for r in racers {
            r.join().unwrap();
        }
    }
    // What was removed stays removed, in memory and after a restart.
    let listed = |d: &Daemon| http(&d.socket(), "GET", "/v1/sandboxes", None).1;
    let now = listed(&d);
    d.kill9();
    d.spawn();
    let after = listed(&d);
    for name in &removed {
        let quoted = format!("\"name\":\"{name}\"");
        assert!(!now.contains(&quoted) && !after.contains(&quoted), "{name} came back: {after}");
    }
}

#[test]
fn a_programs_linked_form_goes_with_its_last_sandbox() {
    let d = Daemon::start(&[]);
    let linked = || {
        let (_, body) = http(&d.socket(), "GET", "/metrics", None);
        body.lines().find_map(|l| l.strip_prefix("spore_programs_linked ")).unwrap().parse::<usize>().unwrap()
    };
    assert_eq!(d.run(["deploy", "--name", "a", "--replicas", "2", &g("refdaemon"), "5"]).code, 0);
    assert_eq!(d.run(["deploy", "--name", "b", &g("hello")]).code, 0);
    assert_eq!(linked(), 2);
    assert_eq!(d.run(["rm", "-f", "a-0"]).code, 0);
    assert_eq!(linked(), 2, "a-1 still runs it");
    assert_eq!(d.run(["rm", "-f", "a-1", "b"]).code, 0);
    assert_eq!(linked(), 0, "the cache does not grow with every program ever run");
    // Deployed again, it is linked again.
    assert_eq!(d.run(["deploy", "--name", "a", &g("refdaemon"), "5"]).code, 0);
    d.wait_for("a", 10, |r| r["state"] == "running");
    assert_eq!(linked(), 1);
    // A redeploy with another program lets the replaced one's go.
    assert_eq!(d.run(["deploy", "--name", "a", &g("hello")]).code, 0);
    assert_eq!(linked(), 1, "hello only");
}

#[test]
fn replaced_sandboxes_stay_gone_after_a_daemon_restart() {
    let mut d = Daemon::start(&[]);
    assert_eq!(d.run(["deploy", "--name", "web", "--replicas", "2", &g("refdaemon"), "5"]).code, 0);
    d.wait_for("web-1", 10, |r| r["state"] == "running");
    assert_eq!(d.run(["deploy", "--name", "web", "--replicas", "2", &g("refdaemon"), "7"]).code, 0);
    d.wait_for("web-1", 10, |r| r["state"] == "running" && r["spec"]["args"] == serde_json::json!(["7"]));
    // The old ones' endings were written after their deletion; a restart must not bring them back.
    d.kill9();
    d.spawn();
    let (_, body) = http(&d.socket(), "GET", "/v1/sandboxes", None);
    let list: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(list.len(), 2, "{body}");
    assert!(list.iter().all(|r| r["spec"]["args"] == serde_json::json!(["7"])), "{body}");
}

#[test]
fn programs_no_sandbox_uses_are_pruned_with_their_compiled_code_and_used_ones_kept() {
    use sha2::Digest as _;
    let d = Daemon::start(&[]);
    assert_eq!(d.run(["deploy", "--name", "kept", &g("refdaemon"), "5"]).code, 0);
    assert_eq!(d.run(["deploy", "--name", "gone", &g("hello")]).code, 0);
    let hex = |name: &str| hex::encode(sha2::Sha256::digest(std::fs::read(g(name)).unwrap()));
    let (hello, refdaemon) = (hex("hello"), hex("refdaemon"));
    let stored = |hex: &str| d.dir.path().join("data/programs/blobs/sha256").join(hex).exists();
    // The compile cache names each wasm's artifact in `<wasm sha256>.ref`.
    let compiled = |hex: &str| {
        let cache = d.dir.path().join("data/compiled");
        std::fs::read_dir(&cache).unwrap().flatten().any(|dir| dir.path().join(format!("{hex}.ref")).exists())
    };
    assert!(stored(&hello) && compiled(&hello) && stored(&refdaemon) && compiled(&refdaemon));
    assert_eq!(d.run(["rm", "-f", "gone"]).code, 0);

    // Just uploaded: a deploy between its upload and its create keeps its program.
    let seen = d.run(["program", "prune"]);
    assert_eq!(seen.code, 0, "{seen:?}");
    assert!(seen.stdout.contains("Deleted 0 program(s)"), "{seen:?}");
    assert!(stored(&hello));
    let seen = d.run(["program", "prune", "--grace", "0s"]);
    assert_eq!(seen.code, 0, "{seen:?}");
    assert!(
        seen.stdout.contains(&format!("Deleted sha256:{hello}")) && seen.stdout.contains("Deleted 1 program(s)"),
        "{seen:?}"
    );
    assert!(!stored(&hello) && !compiled(&hello), "the program and its compiled code are gone");
    assert!(stored(&refdaemon) && compiled(&refdaemon), "a program a sandbox uses stays");
    // Asking whether the daemon has a program (as a deploy does before creating) is a use.
    assert_eq!(d.run(["rm", "-f", "kept"]).code, 0);
    let blob = d.dir.path().join("data/programs/blobs/sha256").join(&refdaemon);
    let hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options().write(true).open(&blob).unwrap().set_modified(hours_ago).unwrap();
    let path = format!("/v1/programs/sha256:{refdaemon}");
    assert_eq!(http(&d.socket(), "HEAD", &path, None).0, 200);
    let seen = d.run(["program", "prune", "--grace", "1m"]);
    assert!(seen.stdout.contains("Deleted 0 program(s)") && stored(&refdaemon), "{seen:?}");
    // Deployed again, it is uploaded (and compiled) again.
    assert_eq!(d.run(["deploy", "--name", "gone", &g("hello")]).code, 0);
    assert!(stored(&hello) && compiled(&hello));
    let seen = d.run(["program", "prune", "--grace", "soon"]);
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("grace \"soon\""), "{seen:?}");
}

#[test]
fn sandboxes_reach_neither_the_box_nor_its_lan_unless_the_operator_allows_it() {
    use std::io::{Read, Write};
    // A service on the box's loopback (a database, another app's Redis, the daemon's own TCP
    // API): a vendor's sandbox granting itself a way there must not get it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut ping = [0u8; 4];
            if conn.read_exact(&mut ping).is_ok() {
                let _ = conn.write_all(b"pong");
            }
        }
    });
    let probe = |d: &Daemon, name: &str, rule: &str, to: &str| {
        d.run(["deploy", "--name", name, "--net", &format!("allow={rule}"), &g("netprobe"), "connect", to])
    };
    let d = Daemon::start(&[]);
    let seen = probe(&d, "ip", &format!("127.0.0.1:{port}"), &format!("127.0.0.1:{port}"));
    assert_eq!(seen.code, 125, "{seen:?}");
    assert!(seen.stderr.contains("[policy] private_network = true allows it"), "{seen:?}");
    // A name (or a network) can only be judged where it leads, when the sandbox runs.
    let seen = probe(&d, "named", &format!("localhost:{port}"), &format!("localhost:{port}"));
    assert_eq!(seen.code, 0, "{seen:?}");
    let r = d.wait_for("named", 10, |r| r["state"] == "exited");
    assert_eq!(r["exit"]["code"], 1, "{r}");
    let logs = d.run(["logs", "named"]);
    assert!(logs.stderr.contains("netprobe connect"), "{logs:?}");
    assert!(d.log().contains("denied TcpConnect"), "{}", d.log());
    let seen = probe(&d, "everything", "0.0.0.0/0:*", &format!("127.0.0.1:{port}"));
    assert_eq!(seen.code, 0, "{seen:?}");
    let r = d.wait_for("everything", 10, |r| r["state"] == "exited");
    assert_eq!(r["exit"]["code"], 1, "a rule for every address reaches the internet only: {r}");

    // The operator may allow it.
    let d = Daemon::start_with_config("[policy]\nprivate_network = true\n", &[]);
    let seen = probe(&d, "ip", &format!("127.0.0.1:{port}"), &format!("127.0.0.1:{port}"));
    assert_eq!(seen.code, 0, "{seen:?}");
    let r = d.wait_for("ip", 10, |r| r["state"] == "exited");
    assert_eq!(r["exit"]["code"], 0, "{r}");
    assert!(d.run(["logs", "ip"]).stdout.contains("pong"));
}

#[test]
fn the_effective_configuration_prints_as_toml_that_reads_back_and_bad_values_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("daemon.toml");
    std::fs::write(
        &config,
        "[pool]\nmax_memory = \"32M\"\n[defaults]\ncpu_time = \"1m 30s\"\nrestart = \"on-failure:3\"\n[policy]\nmax_request_body = 65536\n",
    )
    .unwrap();
    let print = |config: &std::path::Path, extra: &[&str]| {
        let mut cmd = spore();
        cmd.args(["daemon", "--config"]).arg(config).arg("--print-config").args(extra);
        cmd.seen()
    };
    let seen = print(&config, &["--capacity", "7"]);
    assert_eq!(seen.code, 0, "{seen:?}");
    let printed: toml::Table = toml::from_str(&seen.stdout).unwrap();
    assert_eq!(printed["pool"]["sandboxes"].as_integer(), Some(7), "flags win over the file");
    assert_eq!(printed["pool"]["max_memory"].as_str(), Some("32M"));
    assert_eq!(printed["pool"]["stack"].as_str(), Some("256K"), "defaults fill the rest");
    assert_eq!(printed["defaults"]["cpu_time"].as_str(), Some("1m 30s"));
    assert_eq!(printed["defaults"]["restart"].as_str(), Some("on-failure:3"));
    assert_eq!(printed["policy"]["max_request_body"].as_str(), Some("64K"));
    // What it prints is a configuration that gives the same again.
    let again = dir.path().join("printed.toml");
    std::fs::write(&again, &seen.stdout).unwrap();
    assert_eq!(print(&again, &[]).stdout, seen.stdout);

    for (section, bad, named) in [
        ("pool", "max_memory = \"lots\"", "\"lots\" is not a size"),
        ("api", "header_read_timeout = \"soon\"", "\"soon\" is not a duration"),
        ("defaults", "restart = \"sometimes\"", "on-failure:N"),
        ("policy", "max_colour = 3", "max_colour"),
    ] {
        std::fs::write(&config, format!("[{section}]\n{bad}\n")).unwrap();
        let seen = print(&config, &[]);
        assert_eq!(seen.code, 125, "{bad}: {seen:?}");
        let key = bad.split(' ').next().unwrap();
        assert!(seen.stderr.contains(key) && seen.stderr.contains(named), "{bad}: {seen:?}");
    }
}

/// Each documented method answers at its path, and the methods a path does not document are
/// refused there (405): openapi.json says what the daemon does.
#[test]
fn every_documented_method_answers_and_no_other() {
    let d = Daemon::start(&[]);
    let (_, body) = http(&d.socket(), "GET", "/v1/openapi.json", None);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let digest = format!("sha256:{}", "0".repeat(64));
    for (path, item) in doc["paths"].as_object().unwrap() {
        if path == "/v1/events" {
            continue; // a stream that stays open: answered, as health_openapi_metrics_and_events shows
        }
        let url = path.replace("{id}", "nobody").replace("{digest}", &digest);
        let documented: Vec<String> =
            item.as_object().unwrap().keys().filter(|k| *k != "parameters").cloned().collect();
        for method in ["GET", "HEAD", "POST", "PUT", "DELETE"] {
            let lower = method.to_ascii_lowercase();
            // HTTP lets HEAD go wherever GET does.
            let allowed = documented.contains(&lower) || (method == "HEAD" && documented.contains(&"get".to_owned()));
            let body = matches!(method, "POST" | "PUT").then_some(("application/json", &b"{}"[..]));
            let (status, answer) = http(&d.socket(), method, &url, body);
            if allowed {
                assert!(status != 405 && !answer.contains("no such endpoint"), "{method} {url}: {status} {answer}");
            } else {
                assert_eq!(status, 405, "{method} {url} is not documented but answered: {answer}");
            }
        }
    }
}

/// Every kind of event the API documents is sent: a restart by policy, a stop announced when
/// it is asked, a guest that outlives its grace period killed and announced so, a removal.
#[test]
fn restarts_stops_kills_and_removals_are_announced() {
    let d = Daemon::start(&[]);
    let mut events = d.cli().args(["events", "--json"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(events.stdout.take().unwrap()).lines();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut next = |name: &str| {
        let line = lines.next().unwrap().unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(event["name"], name, "{line}");
        event["kind"].as_str().unwrap().to_owned()
    };
    assert_eq!(d.run(["deploy", "--name", "fails", "--restart", "on-failure:1", &g("exit-code"), "3"]).code, 0);
    let kinds: Vec<String> = (0..6).map(|_| next("fails")).collect();
    assert_eq!(kinds, ["created", "started", "exited", "restarted", "started", "exited"]);

    assert_eq!(d.run(["deploy", "--name", "ticker", &g("refdaemon"), "5"]).code, 0);
    assert_eq!((next("ticker"), next("ticker")), ("created".into(), "started".into()));
    assert_eq!(d.run(["stop", "-t", "0.2", "ticker"]).code, 0);
    assert_eq!(d.run(["rm", "ticker"]).code, 0);
    let kinds: Vec<String> = (0..4).map(|_| next("ticker")).collect();
    assert_eq!(kinds, ["stopped", "exited", "killed", "removed"]);
    events.kill().unwrap();
    events.wait().unwrap();
}

/// `[engine] code = "pulley"`: the daemon's sandboxes run on wasmtime's bytecode interpreter,
/// and no code of theirs is ever mapped executable (a native daemon maps its compiled guests'
/// code into anonymous executable memory, after authenticating it).
#[test]
fn a_daemon_configured_for_pulley_maps_no_guest_code_executable() {
    let executable_guest_code = |d: &Daemon| {
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", d.pid())).unwrap();
        // Executable and anonymous: not a library's or the binary's own code.
        maps.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.len() == 5 && f[1].contains('x'))
            .count()
    };
    for (config, native) in [("[engine]\ncode = \"pulley\"\n", false), ("", true)] {
        let d = Daemon::start_with_config(config, &[]);
        assert_eq!(d.run(["deploy", "--name", "ticker", &g("refdaemon"), "100"]).code, 0);
        d.wait_for("ticker", 10, |r| r["state"] == "running");
        assert_eq!(executable_guest_code(&d) > 0, native, "{config:?}");
        let seen = d.run(["deploy", "--name", "nbody", &g("nbody"), "1000"]);
        assert_eq!(seen.code, 0, "{seen:?}");
        d.wait_for("nbody", 20, |r| r["state"] == "exited");
        assert_eq!(d.run(["logs", "nbody"]).stdout, "-0.169075164\n-0.169087605\n");
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("daemon.toml");
    std::fs::write(&config, "[engine]\ncode = \"jit\"\n").unwrap();
    let seen = spore().args(["daemon", "--config"]).arg(&config).arg("--print-config").seen();
    assert_ne!(seen.code, 0, "{seen:?}");
    assert!(seen.stderr.contains("code") && seen.stderr.contains("pulley"), "{seen:?}");
}

#[test]
fn the_daemons_device_plugins_serve_the_sandboxes_granted_them() {
    let pty = PtyPair::new();
    let config = format!(
        "[devices.uart1]\nlibrary = {:?}\nconfig = {:?}\n",
        serial_plugin().display().to_string(),
        pty.device.display().to_string()
    );
    let d = Daemon::start_with_config(&config, &[]);
    let uart = guest("uart").display().to_string();
    // Denied by default, naming the grant; a device the daemon lacks named with what it has.
    let seen = spore().args(["--host", &d.host(), "deploy", "--name", "echo", &uart]).seen();
    assert_ne!(seen.code, 0, "{seen:?}");
    assert!(seen.stderr.contains("imports spore:device/uart@0.1::"), "{seen:?}");
    assert!(seen.stderr.contains("; grant it with --device uart1"), "{seen:?}");
    let seen = spore().args(["--host", &d.host(), "deploy", "--name", "echo", "--device", "gpio", &uart]).seen();
    assert_ne!(seen.code, 0, "{seen:?}");
    assert!(seen.stderr.contains("this host has no device \"gpio\"; it has: uart1"), "{seen:?}");

    // Granted: the same app as at a runner, talked to from our end of the pty.
    let ours = std::fs::OpenOptions::new().read(true).write(true).open(&pty.ours).unwrap();
    let seen = spore().args(["--host", &d.host(), "deploy", "--name", "echo", "--device", "uart1", &uart]).seen();
    assert_eq!(seen.code, 0, "{seen:?}");
    echo_conversation(&ours, "hello daemon");
    d.wait_for("echo", 20, |r| r["state"] == "exited");
    let logs = spore().args(["--host", &d.host(), "logs", "echo"]).seen();
    assert_eq!(logs.stdout, "read hello daemon\nread bye\n", "{logs:?}");
}

#[test]
fn a_device_plugin_that_does_not_load_stops_the_daemon_at_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("daemon.toml");
    let missing = dir.path().join("libnothing.so");
    std::fs::write(&config, format!("[devices.uart1]\nlibrary = {:?}\n", missing.display().to_string())).unwrap();
    let seen = spore()
        .args(["daemon", "--socket"])
        .arg(dir.path().join("s.sock"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .seen();
    assert_ne!(seen.code, 0, "{seen:?}");
    assert!(
        seen.stderr.contains("[devices.uart1]: plugin uart1 (") && seen.stderr.contains("cannot load it"),
        "{seen:?}"
    );
}

/// A pre-initialised image (built with `INIT`) is an image like any other to the daemon: its
/// sandbox starts where the build's init ended, with the image's files and the run's args.
#[test]
fn the_daemon_runs_a_pre_initialised_image() {
    let d = Daemon::start(&[]);
    let store = d.dir.path().join("data/store");
    let ctx = d.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(guest("preinit"), ctx.join("app.wasm")).unwrap();
    std::fs::write(ctx.join("greeting.txt"), "Hello from the image\n").unwrap();
    std::fs::write(
        ctx.join("Sporefile"),
        "FROM scratch\nCOPY app.wasm greeting.txt /\nINIT\nENTRYPOINT [\"/app.wasm\"]\n",
    )
    .unwrap();
    let seen = Seen::from(spore().env("SPORE_STORE", &store).args(["build", "-t", "pre"]).arg(&ctx).output().unwrap());
    assert_eq!(seen.code, 0, "{seen:?}");
    let seen = d.run(["deploy", "--pull", "never", "--name", "pre", "pre", "x"]);
    assert_eq!(seen.code, 0, "{seen:?}");
    let record = d.wait_for("pre", 10, |r| r["state"] == "exited");
    assert_eq!(record["exit"], serde_json::json!({"kind": "exited", "code": 0}), "{}", d.log());
    assert_eq!(
        d.run(["logs", "pre"]).stdout,
        "348425 primes below 5000000; Hello from the image; pre-initialised; args [\"x\"]\n"
    );
}
